import { expect } from "chai";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { compileFile } from "../../compiler/compile.js";
import { readModelFile } from "../../compiler/serde/read.js";
import {
  CHARLM_MODEL, DIGITS_VIT_MODEL, evalCharLm, evalDigitsVit, readNpy, recordedMetrics, trainedDir,
} from "../../models/trained/eval.js";
import { tempDir } from "../support/tmp.js";

const dir = trainedDir();
const recorded = recordedMetrics(dir);

/** MatMul/Gemm nodes whose B input is a constant 2-D initializer: what vnmc can rewrite. */
function constantWeightMatMuls(path: string): string[] {
  const { model } = readModelFile(path);
  return model.graph.nodes
    .filter((n) => (n.opType === "MatMul" || n.opType === "Gemm") && n.inputs[1]?.initializer !== undefined && n.inputs[1]!.initializer!.dims.length === 2)
    .map((n) => n.name);
}

describe("trained test models (models/trained)", function () {
  this.timeout(60_000);

  it("committed artifacts stay under 8 MB together", () => {
    const files = [CHARLM_MODEL, DIGITS_VIT_MODEL, "charlm.eval.npy", "charlm.vocab.json", "digits.eval.images.npy", "digits.eval.labels.npy",
      "calib/charlm/tokens_0.npy", "calib/charlm/tokens_1.npy", "calib/charlm/tokens_2.npy", "calib/charlm/tokens_3.npy",
      "calib/digits_vit/pixels_0.npy", "calib/digits_vit/pixels_1.npy"];
    const total = files.reduce((s, f) => s + statSync(join(dir, f)).size, 0);
    expect(total).to.be.below(8_000_000);
  });

  it("the README records the metrics of metrics.json", () => {
    const readme = readFileSync(join(dir, "README.md"), "utf8");
    expect(readme).to.include(recorded.charlm.perplexity.toFixed(3));
    expect(readme).to.include((recorded.digitsVit.accuracy * 100).toFixed(2));
  });

  it("the models expose their weights as MatMul/Gemm with constant 2-D weights, named after their modules", () => {
    const lm = constantWeightMatMuls(join(dir, CHARLM_MODEL));
    expect(lm).to.have.length(17);
    for (let b = 0; b < 4; b++) for (const l of ["attn/qkv", "attn/proj", "mlp/fc1", "mlp/fc2"]) expect(lm).to.include(`/blocks.${b}/${l}/MatMul`);
    expect(lm).to.include("/lm_head/MatMul");
    const vit = constantWeightMatMuls(join(dir, DIGITS_VIT_MODEL));
    expect(vit).to.have.length(9);
    expect(vit).to.include("/blocks.1/mlp/fc2/MatMul");
  });

  it(`charlm reaches its recorded per-character perplexity (${recorded.charlm.perplexity})`, async () => {
    const r = await evalCharLm(join(dir, CHARLM_MODEL));
    expect(r.windows).to.equal(recorded.charlm.windows);
    expect(r.chars).to.equal(recorded.charlm.chars);
    expect(r.perplexity).to.be.closeTo(recorded.charlm.perplexity, 0.01);
  });

  it(`digits ViT reaches its recorded test accuracy (${recorded.digitsVit.accuracy})`, async () => {
    const r = await evalDigitsVit(join(dir, DIGITS_VIT_MODEL));
    expect(r.total).to.equal(recorded.digitsVit.images);
    expect(r.accuracy).to.be.closeTo(recorded.digitsVit.accuracy, 1.5 / r.total); // one image either way
  });

  it("evaluates a vnmc-compiled model through its fallback function in stock onnxruntime", async () => {
    const tmp = tempDir();
    try {
      const output = join(tmp.dir, "digits_vit.vnm.onnx");
      const { report } = await compileFile(join(dir, DIGITS_VIT_MODEL), { vnm: "16:2:4", minSize: 0, output, verify: false, threads: 0 });
      expect(report.totals.rewritten).to.be.greaterThan(0);
      const r = await evalDigitsVit(output);
      expect(r.total).to.equal(recorded.digitsVit.images);
      // Pruned without retraining: worse than dense, far better than chance (0.1).
      expect(r.accuracy).to.be.greaterThan(0.3).and.at.most(recorded.digitsVit.accuracy + 1.5 / r.total);
    } finally {
      tmp.cleanup();
    }
  });

  it("reads the eval data with the shapes the README gives", () => {
    const lm = readNpy(join(dir, "charlm.eval.npy"));
    expect(lm.dtype).to.equal("|u1");
    expect(lm.shape).to.deep.equal([128, 129]);
    const vocab = JSON.parse(readFileSync(join(dir, "charlm.vocab.json"), "utf8")) as { vocab: string[] };
    expect(Math.max(...lm.data as Uint8Array)).to.be.below(vocab.vocab.length);
    expect(readNpy(join(dir, "digits.eval.images.npy")).shape).to.deep.equal([359, 1, 8, 8]);
    expect(readNpy(join(dir, "digits.eval.labels.npy")).shape).to.deep.equal([359]);
    expect(readNpy(join(dir, "calib/charlm/tokens_0.npy"))).to.include({ dtype: "<i8" });
  });
});
