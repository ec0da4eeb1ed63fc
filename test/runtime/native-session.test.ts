import { expect } from "chai";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { compileFile } from "../../compiler/compile.js";
import { NativeSession } from "../../compiler/runtime/native-session.js";
import { encodeModel, writeModelFile } from "../../compiler/serde/write.js";
import { asFloat } from "../../compiler/verify/compare.js";
import { inputSpecs, randomFeeds, type TensorCtor } from "../../compiler/verify/random-inputs.js";
import { readModelFile } from "../../compiler/serde/read.js";
import { buildModel, type ModelKind } from "../../models/index.js";
import { requireNative } from "../support/native.js";
import { layerModel, randomLayer, TestRng } from "../support/packed-layer.js";
import { tempDir } from "../support/tmp.js";

function maxRelDiff(a: ort.Tensor, b: ort.Tensor): number {
  const x = asFloat(a.type, a.data)!, y = asFloat(b.type, b.data)!;
  expect(x.length).to.equal(y.length);
  let maxAbs = 0, maxRef = 0;
  for (let i = 0; i < y.length; i++) {
    const d = Math.abs(x[i]! - y[i]!);
    maxAbs = Number.isNaN(d) ? Infinity : Math.max(maxAbs, d);
    maxRef = Math.max(maxRef, Math.abs(y[i]!));
  }
  return maxAbs / (maxRef || 1);
}

describe("runtime: NativeSession (vnmc/runtime)", function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof tempDir>;
  before(function () {
    requireNative(this);
    tmp = tempDir("vnmc-runtime-");
  });
  after(() => tmp?.cleanup());

  const configs: Array<[ModelKind, string, "fp32" | "fp16"]> = [
    ["mlp", "16:2:8", "fp32"], ["bert", "32:2:5", "fp32"], ["vit", "16:2:6", "fp32"], ["llama", "64:2:8", "fp32"],
    ["mlp", "16:2:8", "fp16"], ["llama", "32:2:8", "fp16"],
  ];
  for (const [kind, vnm, dtype] of configs) {
    it(`${kind} (${dtype}) at ${vnm}: native kernels and the fallback function give the same outputs`, async () => {
      const input = join(tmp.dir, `${kind}-${dtype}.onnx`);
      writeModelFile(buildModel(kind, dtype === "fp16" ? { dtype: "fp16" } : {}), input);
      const { outputPath, report } = await compileFile(input, { vnm, minSize: 0, verify: false });
      expect(report.totals.rewritten).to.be.greaterThan(0);
      const model = readModelFile(outputPath).model;
      const feeds = randomFeeds(inputSpecs(model, {}), ort.Tensor as unknown as TensorCtor, 5) as Record<string, ort.Tensor>;
      const native = await NativeSession.create(outputPath, { logSeverityLevel: 3 });
      const fallback = await ort.InferenceSession.create(outputPath, { logSeverityLevel: 3 });
      expect([...native.inputNames]).to.deep.equal([...fallback.inputNames]);
      expect([...native.outputNames]).to.deep.equal([...fallback.outputNames]);
      const yn = await native.run(feeds);
      const yf = await fallback.run(feeds);
      await native.release();
      await fallback.release();
      for (const name of fallback.outputNames) {
        expect(yn[name]!.dims, name).to.deep.equal(yf[name]!.dims);
        expect(yn[name]!.type, name).to.equal(yf[name]!.type);
        expect(maxRelDiff(yn[name]! as unknown as ort.Tensor, yf[name]!), `${kind} ${name}`).to.be.at.most(dtype === "fp16" ? 1e-2 : 1e-5);
      }
    });
  }

  it("creates sessions from bytes and from paths, runs concurrently, and returns onnxruntime-common Tensors", async () => {
    const rng = new TestRng(3);
    const layer = randomLayer({ K: 96, N: 80, V: 16, M: 6, act: "float32", values: "float32", columns: "permuted", rowIndex: true, bias: true }, rng);
    const bytes = encodeModel(layerModel(layer, 1));
    const path = join(tmp.dir, "layer.onnx");
    writeFileSync(path, bytes);
    const a = await NativeSession.create(path);
    const b = await NativeSession.create(readFileSync(path));
    expect(a.inputNames).to.deep.equal(["A"]);
    expect(a.outputNames).to.deep.equal(["Y"]);
    const feeds = Array.from({ length: 8 }, (_, i) => new ort.Tensor("float32", Float32Array.from({ length: (i + 1) * 96 }, () => rng.normal()), [i + 1, 96]));
    const ys = await Promise.all(feeds.map((A, i) => (i % 2 ? a : b).run({ A })));
    const again = await Promise.all(feeds.map((A, i) => (i % 2 ? b : a).run({ A })));
    ys.forEach((y, i) => {
      expect(y.Y!.dims).to.deep.equal([i + 1, 80]);
      expect(y.Y!.type).to.equal("float32");
      expect(typeof y.Y!.getData).to.equal("function"); // an onnxruntime-common Tensor
      expect(Buffer.from((y.Y!.data as Float32Array).buffer).equals(Buffer.from((again[i]!.Y!.data as Float32Array).buffer))).to.equal(true);
    });
    // fetches select outputs; a release during a run waits for the run.
    const pending = a.run({ A: feeds[7]! }, ["Y"]);
    await a.release();
    expect((await pending).Y!.dims).to.deep.equal([8, 80]);
    await a.release(); // idempotent
    await b.release();
    let err: unknown;
    try {
      await a.run({ A: feeds[0]! });
    } catch (e) {
      err = e;
    }
    expect(String(err)).to.match(/released/);
  });

  it("runs int64, int32, bool and float16 inputs and outputs of ordinary ops (no custom op)", async () => {
    // A plain model: Cast/Not/Add of several types, run with the custom ops registered and not.
    const { Graph, NameScope } = await import("../../compiler/ir/graph.js");
    const { Model } = await import("../../compiler/ir/model.js");
    const { DataType } = await import("../../compiler/ir/dtype.js");
    const g = new Graph("types", new NameScope());
    const mk = (name: string, t: number) => {
      const v = g.createValue(name, { elemType: t, shape: ["n"] });
      g.inputs.push(v);
      return v;
    };
    const i64 = mk("i64", DataType.INT64), i32 = mk("i32", DataType.INT32), b = mk("b", DataType.BOOL), h = mk("h", DataType.FLOAT16);
    const out = (name: string, op: string, inputs: typeof i64[], t: number) => {
      const v = g.createValue(name, { elemType: t, shape: ["n"] });
      g.addNode({ opType: op, inputs, outputs: [v], name: `${name}_node` });
      g.outputs.push(v);
    };
    out("i64x2", "Add", [i64, i64], DataType.INT64);
    out("i32x2", "Add", [i32, i32], DataType.INT32);
    out("notb", "Not", [b], DataType.BOOL);
    out("hx2", "Add", [h, h], DataType.FLOAT16);
    const m = new Model(g);
    m.irVersion = 10;
    m.opsetImports = [{ domain: "", version: 18 }];
    for (const customOps of [true, false]) {
      const s = await NativeSession.create(encodeModel(m), { customOps });
      const y = await s.run({
        i64: new ort.Tensor("int64", BigInt64Array.from([1n, -2n, 2n ** 40n]), [3]),
        i32: new ort.Tensor("int32", Int32Array.from([1, -2, 3]), [3]),
        b: new ort.Tensor("bool", Uint8Array.from([1, 0, 1]), [3]),
        h: new ort.Tensor("float16", Uint16Array.from([0x3c00, 0xc000, 0x3800]), [3]), // 1, -2, 0.5
      });
      await s.release();
      expect([...(y.i64x2!.data as BigInt64Array)]).to.deep.equal([2n, -4n, 2n ** 41n]);
      expect([...(y.i32x2!.data as Int32Array)]).to.deep.equal([2, -4, 6]);
      expect(y.notb!.type).to.equal("bool");
      expect([...(y.notb!.data as Uint8Array)]).to.deep.equal([0, 1, 0]);
      expect(y.hx2!.type).to.equal("float16");
      expect([...(y.hx2!.data as Uint16Array)]).to.deep.equal([0x4000, 0xc400, 0x3c00]);
    }
  });

  it("rejects bad feeds with an error, not a crash", async () => {
    const rng = new TestRng(4);
    const layer = randomLayer({ K: 32, N: 16, V: 16, M: 8, act: "float32", values: "float32", columns: "windowed", rowIndex: false, bias: false }, rng);
    const s = await NativeSession.create(encodeModel(layerModel(layer, 1)), { logSeverityLevel: 4 });
    const bad = async (feeds: Record<string, ort.Tensor>, re: RegExp) => {
      let err: unknown;
      try {
        await s.run(feeds);
      } catch (e) {
        err = e;
      }
      expect(String(err)).to.match(re);
    };
    await bad({ A: new ort.Tensor("float32", new Float32Array(2 * 31), [2, 31]) }, /VNMSparseGemm|dimension|K|31/i); // wrong K
    await bad({ A: new ort.Tensor("int32", new Int32Array(2 * 32), [2, 32]) }, /type/i);
    await bad({ B: new ort.Tensor("float32", new Float32Array(32), [1, 32]) }, /B|input/);
    await bad({}, /input|A/i);
    const ok = await s.run({ A: new ort.Tensor("float32", new Float32Array(32), [1, 32]) });
    expect(ok.Y!.dims).to.deep.equal([1, 16]);
    await s.release();
  });
});
