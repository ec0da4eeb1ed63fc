import { expect } from "chai";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { compileFile } from "../../compiler/compile.js";
import { DataType } from "../../compiler/ir/dtype.js";
import { InMemoryTensor } from "../../compiler/ir/tensor.js";
import { readModelFile } from "../../compiler/serde/read.js";
import { encodeModel, writeModelFile } from "../../compiler/serde/write.js";
import { inputSpecs, randomFeeds, type TensorCtor } from "../../compiler/verify/random-inputs.js";
import { buildModel, type ModelKind } from "../../models/index.js";
import { rebuiltLayers } from "../support/compiled-weights.js";
import { tempDir } from "../support/tmp.js";
import { checkVnmPattern } from "../support/vnm-reference.js";

/** W [out, in] → B [in, out], the layout MatMul reads. */
function transpose(w: Float32Array, out: number, inF: number): Float32Array {
  const b = new Float32Array(w.length);
  for (let o = 0; o < out; o++) for (let k = 0; k < inF; k++) b[k * out + o] = w[o * inF + k]!;
  return b;
}

const configs: Array<[ModelKind, string]> = [["mlp", "16:2:8"], ["bert", "32:2:5"], ["vit", "16:2:6"], ["llama", "64:2:8"]];

describe("builder models end to end: compiled model vs the dense model of its rebuilt weights", function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir()));
  after(() => tmp.cleanup());

  for (const [kind, vnm] of configs) {
    it(`${kind} at ${vnm}: max relative error <= 1e-5 (fp32), weights follow the pattern`, async () => {
      const input = join(tmp.dir, `${kind}.onnx`);
      writeModelFile(buildModel(kind, {}), input);
      const { outputPath, report } = await compileFile(input, { vnm, minSize: 0, verify: false });
      expect(report.totals.rewritten).to.be.greaterThan(0);
      const compiled = readModelFile(outputPath).model;
      const layers = rebuiltLayers(compiled);
      // The dense reference: the original model whose MatMul weights are replaced by the rebuilt W.
      const dense = readModelFile(input).model;
      for (const l of layers) {
        expect(checkVnmPattern(l.W, l.outFeatures, l.inFeatures, l.v, l.m), l.node.name).to.deep.equal([]);
        const node = [...dense.graph.allGraphs()].flatMap((g) => g.nodes).find((n) => n.name === l.node.name)!;
        expect(node.opType, l.node.name).to.equal("MatMul");
        const b = transpose(l.W, l.outFeatures, l.inFeatures);
        const v = node.graph.addInitializer(node.graph.names.fresh(`${l.node.name}.rebuilt`), new InMemoryTensor(DataType.FLOAT, [l.inFeatures, l.outFeatures], new Uint8Array(b.buffer)));
        node.setInput(1, v);
      }
      const feeds = randomFeeds(inputSpecs(dense, {}), ort.Tensor as unknown as TensorCtor, 99);
      const opts = { logSeverityLevel: 3 as const };
      const s1 = await ort.InferenceSession.create(outputPath, opts);
      const s2 = await ort.InferenceSession.create(encodeModel(dense), opts);
      const [y1, y2] = [await s1.run(feeds), await s2.run(feeds)];
      await s1.release(); await s2.release();
      for (const name of Object.keys(y2)) {
        const a = y1[name]!.data as Float32Array, b = y2[name]!.data as Float32Array;
        let maxAbs = 0, maxRef = 0;
        for (let i = 0; i < b.length; i++) {
          maxAbs = Math.max(maxAbs, Math.abs(a[i]! - b[i]!));
          maxRef = Math.max(maxRef, Math.abs(b[i]!));
        }
        expect(maxAbs / maxRef, `${kind} output ${name}`).to.be.at.most(1e-5);
      }
    });
  }

  it("compiles fp16 models and verifies them against the pruned-dense model", async () => {
    for (const kind of ["mlp", "llama"] as const) {
      const input = join(tmp.dir, `${kind}16.onnx`);
      writeModelFile(buildModel(kind, { dtype: "fp16" }), input);
      const { report } = await compileFile(input, { vnm: "16:2:8", minSize: 0 });
      expect(report.verification?.passed, kind).to.equal(true);
    }
  });
});
