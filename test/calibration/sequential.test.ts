import { expect } from "chai";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { calibrate } from "../../compiler/calibration/calibrate.js";
import { withExtraOutputs } from "../../compiler/calibration/collect.js";
import { openCalibration } from "../../compiler/calibration/samples.js";
import { calibrateSequentially, weightStages } from "../../compiler/calibration/sequential.js";
import { compileFile, type CompileOptions } from "../../compiler/compile.js";
import type { CompileState } from "../../compiler/compile-state.js";
import { DiagnosticSink, VnmcError } from "../../compiler/diagnostics.js";
import { DataType } from "../../compiler/ir/dtype.js";
import { InMemoryTensor } from "../../compiler/ir/tensor.js";
import { PassManager } from "../../compiler/pass/manager.js";
import { readModelFile } from "../../compiler/serde/read.js";
import { encodeModel, writeModelFile } from "../../compiler/serde/write.js";
import { formatVnm, parseVnm } from "../../compiler/vnm/config.js";
import { recipeKey } from "../../compiler/weights/weight-recipe.js";
import { DEFAULT_SPARSEGPT_REFIT, DEFAULT_SPARSEGPT_REFIT_SWEEPS } from "../../compiler/weights/sparsegpt.js";
import { buildModel } from "../../models/index.js";
import { FindCandidates } from "../../passes/find-candidates.js";
import { deadOnInput } from "../../passes/remove-unused.js";
import { normals } from "../support/calib-models.js";
import { npyBytes } from "../support/npy-files.js";
import { tempDir } from "../support/tmp.js";

const IN = 32, HIDDEN = 64, OUT = 16, TOKENS = 24, SAMPLES = 3;

/** Σ over the samples of Aᵀ·B in float64, A and B [tokens, K] row-major. */
function gram(pairs: Array<[Float32Array, Float32Array]>, K: number): Float64Array {
  const g = new Float64Array(K * K);
  for (const [a, b] of pairs) {
    const n = a.length / K;
    for (let t = 0; t < n; t++) for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) g[i * K + j]! += a[t * K + i]! * b[t * K + j]!;
  }
  return g;
}

function relDiff(a: Float64Array, b: Float64Array): number {
  let d = 0, n = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i]! - b[i]!) ** 2;
    n += b[i]! ** 2;
  }
  return Math.sqrt(d / n);
}

describe("sequential calibration (--method sparsegpt)", function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  let mlp: string, calib: string, llama: string, llamaCalib: string;
  const samples: Float32Array[] = [];
  before(() => {
    tmp = tempDir();
    mlp = join(tmp.dir, "mlp.onnx");
    writeModelFile(buildModel("mlp", { inFeatures: IN, hidden: HIDDEN, outFeatures: OUT, layers: 2 }), mlp);
    calib = join(tmp.dir, "calib");
    mkdirSync(calib);
    for (let s = 0; s < SAMPLES; s++) {
      samples.push(normals(TOKENS * IN, 40 + s));
      writeFileSync(join(calib, `s${s}.npy`), npyBytes("<f4", [TOKENS, IN], samples[s]!));
    }
    llama = join(tmp.dir, "llama.onnx");
    writeModelFile(buildModel("llama", { hidden: 64, intermediate: 128, vocab: 32, heads: 2 }), llama);
    llamaCalib = join(tmp.dir, "llama-calib");
    mkdirSync(llamaCalib);
    for (let s = 0; s < 2; s++) writeFileSync(join(llamaCalib, `s${s}.npy`), npyBytes("<f4", [1, 32, 64], normals(32 * 64, 70 + s)));
  });
  after(() => tmp.cleanup());

  it("stage 2's XᵀX and X̂ᵀX equal a direct computation on the model with layer 1 pruned", async () => {
    const model = readModelFile(mlp).model;
    const state: CompileState = {
      options: { vnm: parseVnm("16:2:5"), include: [], exclude: [], minSize: 0, emit: "sparse", retainPacked: true, score: "magnitude", sparsegpt: { maskScore: "obs", damping: 0.01 } },
      candidates: [], skipped: [], weights: new Map(), initiallyUnused: deadOnInput(model),
    };
    new PassManager<CompileState>([new FindCandidates()]).run(model, { diagnostics: new DiagnosticSink(), state });
    expect(state.candidates.length).to.equal(2);
    const [c1, c2] = state.candidates as [typeof state.candidates[0], typeof state.candidates[0]];
    const k1 = recipeKey(c1.recipe, formatVnm(c1.config)), k2 = recipeKey(c2.recipe, formatVnm(c2.config));
    expect(weightStages(model, state.candidates)).to.deep.equal([[k1], [k2]]);
    const source = openCalibration(calib, model, {});
    const summary = await calibrate(mlp, model, state, source, "magnitude", new DiagnosticSink());
    const dense = state.scoring!.get(k2)!.sparsegpt!.hessian;
    const seq = await calibrateSequentially(mlp, model, state, source, "magnitude", summary.rowsPerActivation, undefined, "dense");
    expect(seq).to.deep.include({ stages: 2, passes: 1 });
    const got = state.scoring!.get(k2)!.sparsegpt!;

    // Reference: the pruned-prefix model built by hand (layer 1's MatMul reads W1 ⊙ mask, [in, out]),
    // with layer 2's input as an extra output, run in onnxruntime on every sample.
    const W1 = new Float32Array(state.weights.get(k1)!.prunedDense().slice().buffer); // [HIDDEN, IN]
    const B1 = new Float32Array(IN * HIDDEN);
    for (let o = 0; o < HIDDEN; o++) for (let i = 0; i < IN; i++) B1[i * HIDDEN + o] = W1[o * IN + i]!;
    const ref = readModelFile(mlp).model;
    const weight = ref.graph.initializers.find((v) => v.name === c1.weightInput.name)!;
    weight.initializer = new InMemoryTensor(DataType.FLOAT, [IN, HIDDEN], new Uint8Array(B1.buffer));
    const xName = c2.node.inputs[0]!.name;
    const run = async (bytes: Uint8Array) => {
      const session = await ort.InferenceSession.create(withExtraOutputs(bytes, [{ name: xName, elemType: DataType.FLOAT }]));
      const outs: Float32Array[] = [];
      for (const x of samples) outs.push((await session.run({ [ref.graph.inputs[0]!.name]: new ort.Tensor("float32", x, [TOKENS, IN]) }, [xName]))[xName]!.data as Float32Array);
      await session.release();
      return outs;
    };
    const pruned = await run(encodeModel(ref));
    const orig = await run(new Uint8Array(readFileSync(mlp)));
    const H = gram(pruned.map((x) => [x, x]), HIDDEN);
    const C = gram(pruned.map((x, i) => [x, orig[i]!]), HIDDEN);
    expect(relDiff(got.hessian, H)).to.be.below(1e-5);
    expect(relDiff(got.cross!, C)).to.be.below(1e-5);
    expect(got.tokens).to.equal(TOKENS * SAMPLES);
    expect(relDiff(dense, H), "pruning layer 1 changed layer 2's statistics").to.be.above(1e-3);
    // Layer 1 (stage 1) reads the model input: its statistics stay the dense ones, with no cross term.
    expect(state.scoring!.get(k1)!.sparsegpt!.cross).to.equal(undefined);
  });

  it("end to end on a llama block: staged, verified, recorded; --no-sequential and select", async () => {
    const base: CompileOptions = { vnm: "32:2:5", minSize: 0, calib: llamaCalib, method: "sparsegpt" };
    const r = await compileFile(llama, { ...base, output: join(tmp.dir, "seq.onnx") });
    expect(r.report.verification!.passed).to.equal(true);
    expect(r.report.calibration!.sequential!.stages).to.be.at.least(4);
    expect(r.report.calibration!.sequential!.passes).to.equal(r.report.calibration!.sequential!.stages - 1);
    const recorded = JSON.parse(readModelFile(r.outputPath).model.metadata.find(([k]) => k === "vnmc.options")![1]);
    expect(recorded.method).to.deep.equal({ name: "sparsegpt", maskScore: "obs", damping: 0.01, sequential: "dense", refit: DEFAULT_SPARSEGPT_REFIT ? { sweeps: DEFAULT_SPARSEGPT_REFIT_SWEEPS } : false });
    const plain = await compileFile(llama, { ...base, sequential: false, output: join(tmp.dir, "plain.onnx") });
    expect(plain.report.calibration!.sequential).to.equal(undefined);
    expect(readFileSync(plain.outputPath).equals(readFileSync(r.outputPath))).to.equal(false);
    const pruned = await compileFile(llama, { ...base, sequentialTarget: "pruned", permute: true, permuteTime: 0.3, output: join(tmp.dir, "pruned.onnx") });
    expect(pruned.report.verification!.passed).to.equal(true);
    try {
      await compileFile(llama, { vnm: "32:2:5", calib: llamaCalib, method: "select", sequential: true, output: join(tmp.dir, "x.onnx") });
      expect.fail("--sequential with --method select");
    } catch (e) {
      expect((e as VnmcError).code).to.equal("VNMC-U016");
    }
  });

  it("with --permute, input permutations folded into producers (fc1 -> act -> fc2) are applied when the stages prune: verified", async () => {
    const r = await compileFile(mlp, { vnm: "16:2:5", minSize: 0, calib, method: "sparsegpt", permute: true, permuteTime: 0.3, output: join(tmp.dir, "fold.onnx") });
    expect(r.report.verification!.passed).to.equal(true);
    expect(r.report.calibration!.sequential!.stages).to.equal(2);
    expect(r.report.layers.some((l) => l.permutation?.input === "folded")).to.equal(true);
  });

  it("is deterministic: byte-identical with and without worker threads, with --permute", async () => {
    const opts: CompileOptions = { vnm: "16:2:5", minSize: 0, calib: llamaCalib, method: "sparsegpt", permute: true, permuteTime: 0.3, verify: false };
    const a = await compileFile(llama, { ...opts, output: join(tmp.dir, "d1.onnx") });
    const b = await compileFile(llama, { ...opts, threads: 0, output: join(tmp.dir, "d2.onnx") });
    expect(readFileSync(a.outputPath).equals(readFileSync(b.outputPath))).to.equal(true);
  });
});
