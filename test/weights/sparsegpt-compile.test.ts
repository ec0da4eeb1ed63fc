import { expect } from "chai";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { compileFile, type CompileOptions } from "../../compiler/compile.js";
import { VnmcError } from "../../compiler/diagnostics.js";
import type { Model } from "../../compiler/ir/model.js";
import { readModelFile } from "../../compiler/serde/read.js";
import { writeModelFile } from "../../compiler/serde/write.js";
import { toFloat32 } from "../../compiler/weights/float-view.js";
import { DEFAULT_SPARSEGPT_REFIT, DEFAULT_SPARSEGPT_REFIT_SWEEPS } from "../../compiler/weights/sparsegpt.js";
import { buildModel } from "../../models/index.js";
import { normals } from "../support/calib-models.js";
import { runCli } from "../support/cli.js";
import { rebuiltLayers } from "../support/compiled-weights.js";
import { npyBytes } from "../support/npy-files.js";
import { tempDir } from "../support/tmp.js";

/** The weight a rebuilt layer came from, as W [out, in] (MatMul's B is stored [in, out]). */
function originalWeight(m: Model, node: string): Float32Array {
  const n = [...m.graph.allGraphs()].flatMap((g) => g.nodes).find((x) => x.name === node)!;
  const init = n.inputs[1]!.initializer!;
  const [inF, out] = init.dims as [number, number];
  const B = toFloat32(init.read(), init.dataType);
  return Float32Array.from({ length: out * inF }, (_, i) => B[(i % inF) * out + Math.floor(i / inF)]!);
}

describe("--method sparsegpt end to end", function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  let llama: string, mlp16: string, calib: string;
  before(() => {
    tmp = tempDir();
    llama = join(tmp.dir, "llama.onnx");
    writeModelFile(buildModel("llama", { hidden: 128, intermediate: 256, vocab: 64, heads: 2 }), llama);
    mlp16 = join(tmp.dir, "mlp16.onnx");
    writeModelFile(buildModel("mlp", { inFeatures: 64, hidden: 128, outFeatures: 32, layers: 3, dtype: "fp16" }), mlp16);
    calib = join(tmp.dir, "calib");
    mkdirSync(calib);
    for (let s = 0; s < 3; s++) writeFileSync(join(calib, `s${s}.npy`), npyBytes("<f4", [1, 64, 128], normals(64 * 128, 90 + s)));
  });
  after(() => tmp.cleanup());

  let n = 0;
  const out = () => join(tmp.dir, `o${n++}.onnx`);

  it("a llama block: verification passes, kept weights are updated, and every layer's output error is below wanda's", async () => {
    // Without sequential calibration, so that the layer output error measured is the one minimised (on the dense inputs).
    const sg = await compileFile(llama, { vnm: "32:2:8", minSize: 0, calib, method: "sparsegpt", sequential: false, output: out() });
    const wanda = await compileFile(llama, { vnm: "32:2:8", minSize: 0, calib, score: "wanda", output: out() });
    expect(sg.report.verification!.passed).to.equal(true);
    expect(sg.report.method).to.equal("sparsegpt");
    expect(wanda.report.method).to.equal("select");
    const rewritten = sg.report.layers.filter((l) => l.status === "sparse");
    expect(rewritten.length).to.be.at.least(7);
    let sumSg = 0, sumWanda = 0;
    for (const l of rewritten) {
      expect(l.sparsegpt, l.node).to.deep.include({ maskScore: "obs", deadChannels: 0 });
      expect(l.score, l.node).to.equal(undefined);
      const w = wanda.report.layers.find((x) => x.node === l.node)!;
      expect(l.outputError!, `${l.node}: sparsegpt ${l.outputError} vs wanda ${w.outputError}`).to.be.below(w.outputError!);
      sumSg += l.outputError!;
      sumWanda += w.outputError!;
    }
    expect(sumSg / sumWanda, "sparsegpt's mean layer error is well below wanda's").to.be.below(0.95);
    // Kept weights changed: the packed values are not the original weights at their positions.
    const orig = readModelFile(llama).model;
    let kept = 0, changed = 0;
    for (const layer of rebuiltLayers(readModelFile(sg.outputPath).model)) {
      const W = originalWeight(orig, layer.node.name);
      for (let i = 0; i < W.length; i++) {
        if (layer.W[i] === 0) continue;
        kept++;
        if (layer.W[i] !== W[i]) changed++;
      }
    }
    expect(changed / kept).to.be.above(0.9);
  });

  it("fp16 weights: the updated kept weights are written in fp16 and verification passes", async () => {
    const { report, outputPath } = await compileFile(mlp16, { vnm: "16:2:5", minSize: 0, calib: "random:4", shapes: { input: [32, 64] }, method: "sparsegpt", output: out() });
    expect(report.verification!.passed).to.equal(true);
    const layers = rebuiltLayers(readModelFile(outputPath).model);
    expect(layers.length).to.equal(3);
    const m = readModelFile(outputPath).model;
    const values = [...m.graph.allGraphs()].flatMap((g) => g.nodes).filter((x) => x.opType === "VNMSparseGemm").map((x) => x.inputs[1]!.initializer!.dataType);
    expect(values).to.deep.equal([10, 10, 10]); // FLOAT16
    expect(report.layers.filter((l) => l.sparsegpt).length).to.equal(3);
  });

  it("is deterministic: byte-identical output twice, with and without worker threads, and records the method", async () => {
    const opts: CompileOptions = { vnm: "32:2:5", minSize: 0, calib, method: "sparsegpt", verify: false };
    const a = await compileFile(llama, { ...opts, output: out() });
    const b = await compileFile(llama, { ...opts, output: out() });
    const c = await compileFile(llama, { ...opts, threads: 0, output: out() });
    const bytes = [a, b, c].map((r) => readFileSync(r.outputPath));
    expect(bytes[0]!.equals(bytes[1]!), "same options").to.equal(true);
    expect(bytes[0]!.equals(bytes[2]!), "threads 0 vs pool").to.equal(true);
    const recorded = JSON.parse(readModelFile(a.outputPath).model.metadata.find(([k]) => k === "vnmc.options")![1]);
    expect(recorded.method).to.deep.equal({ name: "sparsegpt", maskScore: "obs", damping: 0.01, sequential: "dense", refit: DEFAULT_SPARSEGPT_REFIT ? { sweeps: DEFAULT_SPARSEGPT_REFIT_SWEEPS } : false });
    const plain = await compileFile(llama, { vnm: "32:2:5", minSize: 0, verify: false, output: out() });
    expect(JSON.parse(readModelFile(plain.outputPath).model.metadata.find(([k]) => k === "vnmc.options")![1]).method).to.equal("select");
  });

  it("combines with --permute: verified (the updated values are packed in permuted order), folds, lower error than without", async () => {
    const plain = await compileFile(llama, { vnm: "32:2:8", minSize: 0, calib, method: "sparsegpt", permute: false, output: out() });
    const permuted = await compileFile(llama, { vnm: "32:2:8", minSize: 0, calib, method: "sparsegpt", permute: true, permuteTime: 0.5, output: out() });
    expect(permuted.report.verification?.passed).to.equal(true);
    expect(permuted.report.layers.some((l) => l.permutation?.input === "folded")).to.equal(true);
    const meanError = (r: typeof plain) => {
      const e = r.report.layers.flatMap((l) => (l.outputError === undefined ? [] : [l.outputError]));
      return e.reduce((a, b) => a + b, 0) / e.length;
    };
    expect(meanError(permuted)).to.be.below(meanError(plain));
  });

  it("keeps a layer's permutation only where it lowers the calibration output error (unfolded layers)", async () => {
    const opts = { vnm: "32:2:8", minSize: 0, calib, method: "sparsegpt" as const, sequential: false, verify: false };
    const plain = await compileFile(llama, { ...opts, permute: false, output: out() });
    const permuted = await compileFile(llama, { ...opts, permute: true, permuteTime: 0.5, output: out() });
    for (const l of permuted.report.layers.filter((x) => x.permutation && x.permutation.input === "columns" && !x.permutation.rowsCarry)) {
      const p = plain.report.layers.find((x) => x.node === l.node)!;
      expect(l.outputError!, l.node).to.be.at.most(p.outputError! * (1 + 1e-9));
      if (l.permutation!.dropped) expect(l.outputError, l.node).to.equal(p.outputError);
    }
  });

  it("gives clear usage errors: without --calib, with --score, or an unknown method", async () => {
    const fails = async (opts: CompileOptions, code: string, message: RegExp) => {
      try {
        await compileFile(llama, { minSize: 0, output: out(), ...opts });
        expect.fail("should have failed");
      } catch (e) {
        expect(e).to.be.instanceOf(VnmcError);
        expect((e as VnmcError).code).to.equal(code);
        expect((e as VnmcError).kind).to.equal("usage");
        expect((e as Error).message).to.match(message);
      }
    };
    await fails({ method: "sparsegpt" }, "VNMC-U013", /--method sparsegpt needs --calib/);
    await fails({ method: "sparsegpt", calib, score: "wanda" }, "VNMC-U014", /--score applies to --method select/);
    await fails({ method: "obs" as CompileOptions["method"], calib }, "VNMC-U012", /--method must be one of select, sparsegpt/);
    const r = runCli(["compile", llama, "--method", "sparsegpt", "-o", out()]);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/VNMC-U013/);
  });

  it("the CLI report says the kept weights were updated", () => {
    const r = runCli(["compile", llama, "--vnm", "32:2:8", "--min-size", "0", "--calib", calib, "--method", "sparsegpt", "--no-verify", "-o", out()]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/method sparsegpt: the KEPT WEIGHTS of \d+ layer\(s\) were UPDATED/);
    expect(r.stdout).to.match(/calibration: .*; method sparsegpt;/);
  });
});
