import { expect } from "chai";
import { join } from "node:path";
import { compileFile } from "../../compiler/compile.js";
import { writeModelFile } from "../../compiler/serde/write.js";
import { buildModel } from "../../models/index.js";
import { evalCharLm, trainedDir } from "../../models/trained/eval.js";
import { oneInputModel } from "../support/calib-models.js";
import { tempDir } from "../support/tmp.js";

describe("calibration on whole models", function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir()));
  after(() => tmp.cleanup());

  it("reads a model with external data (the instrumented copy resolves it next to the model)", async () => {
    const embedded = join(tmp.dir, "emb.onnx"), external = join(tmp.dir, "ext.onnx");
    writeModelFile(oneInputModel(), embedded);
    writeModelFile(oneInputModel(), external, { externalData: true });
    const a = await compileFile(embedded, { vnm: "8:2:8", minSize: 0, calib: "random:3", output: join(tmp.dir, "a.onnx") });
    const b = await compileFile(external, { vnm: "8:2:8", minSize: 0, calib: "random:3", output: join(tmp.dir, "b.onnx") });
    expect(b.report.calibration?.samples).to.equal(3);
    expect(b.report.layers.map((l) => [l.keptScore, l.outputError])).to.deep.equal(a.report.layers.map((l) => [l.keptScore, l.outputError]));
  });

  it("on the trained char-LM, its calibration samples make Wanda and RIA beat magnitude at 64:2:5", async () => {
    const dir = trainedDir();
    const ppl: Record<string, number> = {};
    for (const score of ["magnitude", "wanda", "ria"] as const) {
      const output = join(tmp.dir, `charlm.${score}.onnx`);
      const { report } = await compileFile(join(dir, "charlm.onnx"), { vnm: "64:2:5", calib: join(dir, "calib", "charlm"), score, output, verify: false });
      expect(report.calibration).to.include({ samples: 4, dataFree: false, observedLayers: report.totals.rewritten });
      ppl[score] = (await evalCharLm(output)).perplexity;
    }
    // Measured: 15.0 (magnitude), 10.3 (Wanda), 10.2 (RIA); dense 3.56.
    expect(ppl.wanda!).to.be.below(ppl.magnitude! * 0.8);
    expect(ppl.ria!).to.be.below(ppl.magnitude! * 0.8);
  });

  const setups: Array<["llama" | "vit" | "bert", "fp16" | "fp32", Record<string, number[]>]> = [
    ["llama", "fp16", { hidden_states: [1, 8, 256] }],
    ["vit", "fp32", { pixel_values: [2, 3, 16, 16] }],
    ["bert", "fp32", { hidden_states: [2, 8, 256] }],
  ];
  for (const [kind, dtype, shapes] of setups) {
    it(`${kind} (${dtype}) with random:2 and the default score`, async () => {
      const input = join(tmp.dir, `${kind}-${dtype}.onnx`);
      writeModelFile(buildModel(kind, { dtype }), input);
      const { report } = await compileFile(input, { vnm: "32:2:8", minSize: 0, calib: "random:2", shapes });
      expect(report.score).to.equal("wanda");
      expect(report.verification?.passed).to.equal(true);
      expect(report.calibration).to.include({ samples: 2, dataFree: true });
      expect(report.diagnostics.map((d) => d.code)).to.include("VNMC-W004");
      const sparse = report.layers.filter((l) => l.status !== "dense");
      expect(sparse.length).to.be.greaterThan(3);
      for (const l of sparse) {
        expect(l.score, l.node).to.equal("wanda");
        expect(l.outputError, l.node).to.be.within(0, 2);
        expect(l.outputErrorRows, l.node).to.be.at.least(4); // vit's head sees one token per image
      }
      const q = report.verification!.calibration!;
      expect(q.samples).to.equal(2);
      for (const out of q.outputs) expect(out.cosine, out.name).to.be.within(0, 1.0000001);
    });
  }
});
