import { expect } from "chai";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openCalibration } from "../../compiler/calibration/samples.js";
import { compileFile } from "../../compiler/compile.js";
import { VnmcError } from "../../compiler/diagnostics.js";
import { DataType } from "../../compiler/ir/dtype.js";
import { writeModelFile } from "../../compiler/serde/write.js";
import { TinyModel } from "../support/tiny-models.js";
import { runCli } from "../support/cli.js";
import { IN, normals, oneInputModel, twoInputModel, writePb } from "../support/calib-models.js";
import { npyBytes, npzOf } from "../support/npy-files.js";
import { tempDir } from "../support/tmp.js";

const f32 = (a: Uint8Array) => Array.from(new Float32Array(new Uint8Array(a).buffer));

describe("calibration samples: layouts and matching to model inputs", () => {
  let tmp: ReturnType<typeof tempDir>;
  let n = 0;
  const fresh = () => {
    const d = join(tmp.dir, `c${n++}`);
    mkdirSync(d);
    return d;
  };
  before(() => (tmp = tempDir()));
  after(() => tmp.cleanup());

  it("reads the ONNX test-data layout, by tensor name or by position, ignoring outputs, in natural order", () => {
    const d = fresh();
    const x = normals(2 * IN, 1), m = normals(2 * IN, 2);
    // test_data_set_10 sorts after test_data_set_2.
    writePb(join(d, "test_data_set_10", "input_0.pb"), "mask", [2, IN], m);
    writePb(join(d, "test_data_set_10", "input_1.pb"), "x", [2, IN], x);
    writePb(join(d, "test_data_set_2", "input_0.pb"), "", [1, IN], x.subarray(0, IN));
    writePb(join(d, "test_data_set_2", "input_1.pb"), "", [1, IN], m.subarray(0, IN));
    writePb(join(d, "test_data_set_2", "output_0.pb"), "y", [1, 8], new Float32Array(8));
    writeFileSync(join(d, "README"), "not a sample");
    const src = openCalibration(d, twoInputModel(), {});
    expect(src.count).to.equal(2);
    expect(src.dataFree).to.equal(false);
    const s0 = src.sample(0), s1 = src.sample(1);
    expect(s0.label).to.equal("test_data_set_2");
    expect(s0.inputs.map((i) => [i.name, i.dims])).to.deep.equal([["x", [1, IN]], ["mask", [1, IN]]]);
    expect(f32(s0.inputs[0]!.data)).to.deep.equal(Array.from(x.subarray(0, IN)));
    expect(s1.inputs.map((i) => [i.name, i.dims])).to.deep.equal([["x", [2, IN]], ["mask", [2, IN]]]);
    expect(f32(s1.inputs[1]!.data)).to.deep.equal(Array.from(m));
  });

  it("reads .npz samples by member name or by position (arr_0, arr_1), and .npy sample folders", () => {
    const d = fresh();
    const x = normals(3 * IN, 3), m = normals(3 * IN, 4);
    writeFileSync(join(d, "a.npz"), npzOf({ mask: [[3, IN], m], x: [[3, IN], x] }));
    writeFileSync(join(d, "b.npz"), npzOf({ arr_0: [[3, IN], x], arr_1: [[3, IN], m] }, { deflate: true }));
    mkdirSync(join(d, "c"));
    writeFileSync(join(d, "c", "x.npy"), npyBytes("<f4", [3, IN], x));
    writeFileSync(join(d, "c", "mask.npy"), npyBytes("<f4", [3, IN], m));
    const src = openCalibration(d, twoInputModel(), {});
    expect(src.count).to.equal(3);
    for (let i = 0; i < 3; i++) {
      const s = src.sample(i);
      expect(s.inputs.map((v) => v.name), s.label).to.deep.equal(["x", "mask"]);
      expect(f32(s.inputs[0]!.data), s.label).to.deep.equal(Array.from(x));
      expect(f32(s.inputs[1]!.data), s.label).to.deep.equal(Array.from(m));
    }
  });

  it("takes each .npy file as a sample of a one-input model, and a single file as one sample", () => {
    const d = fresh();
    for (const name of ["s1.npy", "s2.npy"]) writeFileSync(join(d, name), npyBytes("<f4", [2, IN], normals(2 * IN, 5)));
    expect(openCalibration(d, oneInputModel(), {}).count).to.equal(2);
    const one = openCalibration(join(d, "s1.npy"), oneInputModel(), {});
    expect([one.count, one.sample(0).inputs[0]!.name]).to.deep.equal([1, "x"]);
  });

  it("generates random:N samples with --shape dims, reproducibly, and says they are data-free", () => {
    const src = openCalibration("random:3", twoInputModel(), { x: [5, IN], mask: [5, IN] });
    expect([src.count, src.dataFree, src.kind]).to.deep.equal([3, true, "random"]);
    expect(src.description).to.match(/3 random samples \(x=5x16 mask=5x16; data-free\)/);
    expect(src.sample(1).inputs[0]!.dims).to.deep.equal([5, IN]);
    expect(src.sample(1).inputs[0]!.data).to.deep.equal(src.sample(1).inputs[0]!.data);
    expect(f32(src.sample(0).inputs[0]!.data)).to.not.deep.equal(f32(src.sample(1).inputs[0]!.data));
  });
});

describe("bad calibration input: one clear sentence, exit 1 (usage errors exit 2), nothing written", function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let model: string, single: string;
  let n = 0;
  const fresh = () => {
    const d = join(tmp.dir, `bad${n++}`);
    mkdirSync(d);
    return d;
  };
  before(() => {
    tmp = tempDir();
    model = join(tmp.dir, "two.onnx");
    writeModelFile(twoInputModel(), model);
    single = join(tmp.dir, "one.onnx");
    writeModelFile(oneInputModel(), single);
  });
  after(() => tmp.cleanup());

  async function expectError(calib: string, code: string, msg: RegExp, input = model): Promise<void> {
    const before = readdirSync(tmp.dir).sort();
    let err: unknown;
    try {
      await compileFile(input, { calib, vnm: "8:2:4", minSize: 0, output: join(tmp.dir, "out.onnx") });
    } catch (e) {
      err = e;
    }
    expect(err, "an error").to.be.instanceOf(VnmcError);
    const e = err as VnmcError;
    expect(e.code, e.message).to.equal(code);
    expect(e.message).to.match(msg);
    expect(e.message.trim().split("\n"), "one line").to.have.length(1);
    expect(readdirSync(tmp.dir).sort(), "nothing written").to.deep.equal(before);
  }

  const x = normals(2 * IN, 7), m = normals(2 * IN, 8);
  const cases: Array<[string, () => string, string, RegExp, string?]> = [
    ["a path that does not exist", () => join(tmp.dir, "nope"), "VNMC-E012", /'.*nope' does not exist/],
    ["an empty folder", () => fresh(), "VNMC-E013", /holds no samples/],
    ["a folder without sample files", () => {
      const d = fresh();
      writeFileSync(join(d, "notes.txt"), "x");
      mkdirSync(join(d, "sub"));
      return d;
    }, "VNMC-E013", /holds no samples/],
    ["a file of another kind", () => {
      const p = join(fresh(), "data.csv");
      writeFileSync(p, "1,2,3");
      return p;
    }, "VNMC-E014", /not a folder, \.npz, \.npy or \.pb file/],
    ["a truncated .npy", () => {
      const d = fresh();
      const a = npyBytes("<f4", [2, IN], x);
      writeFileSync(join(d, "s.npy"), a.subarray(0, a.length - 8));
      return d;
    }, "VNMC-E014", /calibration file '.*s\.npy' cannot be read: it is truncated/, "single"],
    ["a truncated .npz", () => {
      const d = fresh();
      const z = npzOf({ x: [[2, IN], x], mask: [[2, IN], m] });
      writeFileSync(join(d, "s.npz"), z.subarray(0, z.length - 30));
      return d;
    }, "VNMC-E014", /s\.npz' cannot be read/],
    ["an unreadable .pb", () => {
      const d = fresh();
      mkdirSync(join(d, "t"));
      writeFileSync(join(d, "t", "input_0.pb"), new Uint8Array([0xff, 0xff, 0xff]));
      return d;
    }, "VNMC-E014", /input_0\.pb' cannot be read: it does not decode as an ONNX TensorProto/, "single"],
    ["a name that is no input", () => {
      const d = fresh();
      writeFileSync(join(d, "s.npz"), npzOf({ x: [[2, IN], x], attention_mask: [[2, IN], m] }));
      return d;
    }, "VNMC-E015", /'attention_mask', which is not an input of the model \(inputs: x, mask\)/],
    ["a missing input", () => {
      const d = fresh();
      writeFileSync(join(d, "s.npz"), npzOf({ x: [[2, IN], x] }));
      return d;
    }, "VNMC-E015", /has no value for the model input 'mask' \(it gives x; the model needs x, mask\)/],
    ["more arrays than inputs", () => {
      const d = fresh();
      writeFileSync(join(d, "s.npz"), npzOf({ arr_0: [[2, IN], x], arr_1: [[2, IN], m], arr_2: [[2, IN], m] }));
      return d;
    }, "VNMC-E015", /array #2, but the model has only 2 inputs/],
    ["a wrong dtype", () => {
      const d = fresh();
      mkdirSync(join(d, "s"));
      writeFileSync(join(d, "s", "x.npy"), npyBytes("<f8", [2, IN], Float64Array.from(x)));
      writeFileSync(join(d, "s", "mask.npy"), npyBytes("<f4", [2, IN], m));
      return d;
    }, "VNMC-E017", /'x' in '.*x\.npy' is double, but the model expects float; convert it \(e\.g\. arr\.astype\(np\.float32\)\)/],
    ["a wrong rank", () => {
      const d = fresh();
      writeFileSync(join(d, "s.npz"), npzOf({ x: [[2 * IN], x], mask: [[2, IN], m] }));
      return d;
    }, "VNMC-E016", /'x' .* has shape \[32\] \(rank 1\), but the model's input is \[batch, 16\] \(rank 2\)/],
    ["a wrong fixed dimension", () => {
      const d = fresh();
      writeFileSync(join(d, "s.npz"), npzOf({ x: [[IN, 2], x], mask: [[2, IN], m] }));
      return d;
    }, "VNMC-E016", /has shape \[16, 2\], but the model's input is \[batch, 16\] \(dimension 1 must be 16\)/],
    ["NaN in the data", () => {
      const d = fresh();
      const bad = x.slice();
      bad[3] = NaN;
      writeFileSync(join(d, "s.npz"), npzOf({ x: [[2, IN], bad], mask: [[2, IN], m] }));
      return d;
    }, "VNMC-E019", /NaN or infinite/],
  ];
  for (const [what, make, code, msg, which] of cases) {
    it(what, async () => {
      await expectError(make(), code, msg, which === "single" ? single : model);
    });
  }

  it("a sample onnxruntime cannot run", async () => {
    const t = new TinyModel(9);
    const flat = t.input("flat", ["n"]);
    const shape = t.graph.addInitializer("shape", new (await import("../../compiler/ir/tensor.js")).InMemoryTensor(DataType.INT64, [2], new Uint8Array(BigInt64Array.from([2n, BigInt(IN)]).buffer)));
    t.output(t.op("MatMul", [t.op("Reshape", [flat, shape], "reshape"), t.init("W", [IN, 32])], "fc"));
    const p = join(tmp.dir, "reshape.onnx");
    writeModelFile(t.model(), p);
    const d = fresh();
    writeFileSync(join(d, "s.npy"), npyBytes("<f4", [15], new Float32Array(15)));
    await expectError(d, "VNMC-E018", /onnxruntime could not run the model on calibration sample 's\.npy'/, p);
  });

  it("usage errors exit 2, bad data exits 1, each with one line on stderr", () => {
    const d = fresh();
    const cases: Array<[string[], number, RegExp]> = [
      [["--calib", "random:0"], 2, /random:N needs a sample count N from 1/],
      [["--calib", "random:many"], 2, /random:N needs a sample count/],
      [["--score", "wanda"], 2, /--score wanda needs --calib/],
      [["--score", "ria"], 2, /--score ria needs --calib/],
      [["--score", "fisher", "--calib", "random:2"], 2, /--score must be one of magnitude, wanda, ria/],
      [["--calib", d], 1, /holds no samples.*\[VNMC-E013\]/],
    ];
    for (const [args, code, msg] of cases) {
      const r = runCli(["compile", model, "-o", join(tmp.dir, "cli.onnx"), "--min-size", "0", ...args]);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).to.equal(code);
      expect(r.stderr).to.match(msg);
      expect(r.stderr.trim().split("\n"), args.join(" ")).to.have.length(1);
    }
  });
});
