import { expect } from "chai";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { compileFile } from "../../compiler/compile.js";
import { DataType } from "../../compiler/ir/dtype.js";
import { InMemoryTensor } from "../../compiler/ir/tensor.js";
import { readModelFile } from "../../compiler/serde/read.js";
import { writeModelFile } from "../../compiler/serde/write.js";
import { parseVnm } from "../../compiler/vnm/config.js";
import { runPruneJob } from "../../compiler/weights/prune-job.js";
import { buildModel } from "../../models/index.js";
import { normals } from "../support/calib-models.js";
import { rebuiltLayers } from "../support/compiled-weights.js";
import { npyBytes } from "../support/npy-files.js";
import { TinyModel } from "../support/tiny-models.js";
import { tempDir } from "../support/tmp.js";
import { seededRandom } from "../support/vnm-reference.js";

const OUT = 24, IN = 32;

/**
 * W [24, 32] with the 8:2:4 pattern: in every (block of 8 rows, group of 4 columns) each row keeps 2
 * weights. Some kept weights are tiny (denormal) and one input channel carries only kept weights of
 * a channel that the calibration data never activates: a score-based selection could drop those.
 */
function sparseWeight(): Float32Array {
  const r = seededRandom(77);
  const W = new Float32Array(OUT * IN);
  for (let o = 0; o < OUT; o++) {
    for (let g = 0; g < IN / 4; g++) {
      const a = Math.floor(r() * 4);
      const b = (a + 1 + Math.floor(r() * 3)) % 4;
      for (const p of [a, b]) W[o * IN + g * 4 + p] = (r() - 0.5) * 2;
    }
    W[o * IN + 5] = W[o * IN + 5] !== 0 ? 1e-40 : 0; // denormal, where kept
  }
  return W;
}

describe("already V:N:M-sparse weights are packed exactly, not pruned again", function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let input: string, calib: string;
  const W = sparseWeight();
  before(() => {
    tmp = tempDir();
    const t = new TinyModel(1);
    const x = t.input("x", ["batch", IN]);
    // MatMul reads B = Wᵀ [32, 24].
    const B = new Float32Array(IN * OUT);
    for (let o = 0; o < OUT; o++) for (let k = 0; k < IN; k++) B[k * OUT + o] = W[o * IN + k]!;
    const b = t.graph.addInitializer("B", new InMemoryTensor(DataType.FLOAT, [IN, OUT], new Uint8Array(B.buffer)));
    t.output(t.op("MatMul", [x, b], "fc"), ["batch", OUT]);
    input = join(tmp.dir, "sparse.onnx");
    writeModelFile(t.model(), input);
    // Calibration data in which input channel 5 is always zero.
    calib = join(tmp.dir, "calib");
    mkdirSync(calib);
    for (let s = 0; s < 3; s++) {
      const x = normals(4 * IN, 40 + s);
      for (let t = 0; t < 4; t++) x[t * IN + 5] = 0;
      writeFileSync(join(calib, `s${s}.npy`), npyBytes("<f4", [4, IN], x));
    }
  });
  after(() => tmp.cleanup());

  const runs: Array<[string, { score?: "magnitude" | "wanda" | "ria"; calib?: "dir" | "random" }]> = [
    ["magnitude, no calibration", {}],
    ["wanda on data with a silent channel", { score: "wanda", calib: "dir" }],
    ["ria on data with a silent channel", { score: "ria", calib: "dir" }],
    ["wanda on random samples", { score: "wanda", calib: "random" }],
  ];
  for (const [what, o] of runs) {
    it(`${what}: identical nonzeros, status "already sparse"`, async () => {
      const { outputPath, report } = await compileFile(input, {
        vnm: "8:2:4", minSize: 0, output: join(tmp.dir, `out-${what.split(" ")[0]}.onnx`), score: o.score,
        calib: o.calib === "dir" ? calib : o.calib === "random" ? "random:2" : undefined,
      });
      const row = report.layers.find((l) => l.node === "fc")!;
      expect(row.status).to.equal("already sparse");
      expect(row.keptMagnitude).to.equal(1);
      expect(row.keptScore).to.equal(1);
      if (o.calib) expect(row.outputError).to.equal(0);
      const [layer] = rebuiltLayers(readModelFile(outputPath).model);
      // Bit-identical: every nonzero kept (denormals and silent channels included), nothing added.
      expect(new Uint32Array(layer!.W.buffer)).to.deep.equal(new Uint32Array(W.buffer));
      expect(report.verification?.passed).to.equal(true);
    });
  }

  it("keeps a nonzero that plain |W| selection loses to float64 rounding (a denormal-only column at M = 8)", () => {
    // The block uses columns 1, 2, 3 and 7; column 7 holds only 1e-40. By |W|, the subsets {0,1,2,3}
    // and {1,2,3,7} tie in float64 and the lower one wins, dropping the denormal; the nonzero
    // indicator keeps it.
    const W = new Float32Array(64);
    for (let o = 0; o < 8; o++) {
      W[o * 8 + 1] = 0.5 + o / 10;
      W[o * 8 + 2] = o % 2 ? 0.3 : 0;
      W[o * 8 + 3] = o % 2 || o === 0 ? 0 : 0.4;
    }
    W[7] = 1e-40;
    const out = runPruneJob({
      source: { kind: "bytes", bytes: new Uint8Array(W.buffer.slice(0)) }, baseType: DataType.FLOAT, baseDims: [8, 8], config: parseVnm("8:2:8"),
      recipe: { baseName: "W", transposed: false, dataType: DataType.FLOAT, scale: 1, outFeatures: 8, inFeatures: 8 },
    });
    expect([out.alreadySparse, out.nonzerosBefore, out.nonzerosAfter]).to.deep.equal([true, 16, 16]);
    expect(Array.from(out.columns)).to.deep.equal([1, 2, 3, 7]);
  });

  it("a builder model whose weights were pruned to 16:2:8 by a first compile compiles to the same weights again", async () => {
    const mlp = join(tmp.dir, "mlp.onnx");
    writeModelFile(buildModel("mlp", { inFeatures: 64, hidden: 128, outFeatures: 32 }), mlp);
    const first = await compileFile(mlp, { vnm: "16:2:8", minSize: 0, output: join(tmp.dir, "mlp1.onnx"), verify: false });
    // The first compile's weights, written back as a dense model.
    const dense = readModelFile(mlp).model;
    const rebuilt = rebuiltLayers(readModelFile(first.outputPath).model);
    for (const l of rebuilt) {
      const node = dense.graph.nodes.find((n) => n.name === l.node.name)!;
      const B = new Float32Array(l.inFeatures * l.outFeatures);
      for (let o = 0; o < l.outFeatures; o++) for (let k = 0; k < l.inFeatures; k++) B[k * l.outFeatures + o] = l.W[o * l.inFeatures + k]!;
      node.setInput(1, dense.graph.addInitializer(`${l.node.name}.sparse`, new InMemoryTensor(DataType.FLOAT, [l.inFeatures, l.outFeatures], new Uint8Array(B.buffer))));
    }
    const sparseInput = join(tmp.dir, "mlp-sparse.onnx");
    writeModelFile(dense, sparseInput);
    const second = await compileFile(sparseInput, { vnm: "16:2:8", minSize: 0, output: join(tmp.dir, "mlp2.onnx"), calib: "random:2", score: "wanda" });
    expect(second.report.layers.map((l) => l.status)).to.deep.equal(["already sparse", "already sparse"]);
    const again = rebuiltLayers(readModelFile(second.outputPath).model);
    again.forEach((l, i) => expect(new Uint32Array(l.W.buffer), l.node.name).to.deep.equal(new Uint32Array(rebuilt[i]!.W.buffer)));
    expect(readFileSync(second.outputPath).length).to.be.greaterThan(0);
  });
});
