import { expect } from "chai";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { compileFile, type CompileOptions } from "../../compiler/compile.js";
import { Codes, VnmcError } from "../../compiler/diagnostics.js";
import type { LayerRow } from "../../compiler/report.js";
import { readModelFile } from "../../compiler/serde/read.js";
import { writeModelFile } from "../../compiler/serde/write.js";
import { isWindowed } from "../../compiler/vnm/pack.js";
import { buildModel, type ModelKind } from "../../models/index.js";
import { rebuiltLayers } from "../support/compiled-weights.js";
import { tempDir } from "../support/tmp.js";

/** The layers whose input permutation should fold into the layer(s) producing their input. */
const cases: Array<{ kind: ModelKind; opts?: Record<string, unknown>; vnm: string; folded: RegExp; producers: RegExp }> = [
  // MatMul + Add(bias vector) -> Relu -> MatMul: the bias constant is permuted with the channels.
  { kind: "mlp", vnm: "16:2:8", folded: /^layers\.1/, producers: /^layers\.0/ },
  // Gemm with a bias C: the C vector follows the rows.
  { kind: "mlp", opts: { useGemm: true }, vnm: "16:2:5", folded: /^layers\.1/, producers: /^layers\.0/ },
  // GELU written with Div/Erf/Add/Mul by scalars.
  { kind: "bert", vnm: "32:2:5", folded: /layer\.\d+\.output\.dense/, producers: /intermediate\.dense/ },
  // SwiGLU: silu(gate) * up feeds down_proj, so both gate and up carry its input order.
  { kind: "llama", vnm: "64:2:8", folded: /down_proj/, producers: /(gate|up)_proj/ },
];

const row = (layers: LayerRow[], re: RegExp) => layers.filter((l) => re.test(l.node) && l.status !== "dense");

describe("--permute end to end: permutations in columns/row_index or folded into producers, outputs verified", function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir()));
  after(() => tmp.cleanup());

  for (const c of cases) {
    const label = `${c.kind}${c.opts ? " " + JSON.stringify(c.opts) : ""} at ${c.vnm}`;
    it(`${label}: folds where it can, verification (compiled vs pruned-dense, unpermuted) passes, never keeps less`, async () => {
      const input = join(tmp.dir, `${c.kind}${c.opts ? "-gemm" : ""}.onnx`);
      writeModelFile(buildModel(c.kind, c.opts ?? {}), input);
      const base: CompileOptions = { vnm: c.vnm, minSize: 0, threads: 1 };
      const plain = await compileFile(input, { ...base, output: join(tmp.dir, "plain.onnx") });
      const { report, outputPath } = await compileFile(input, { ...base, permute: true, permuteTime: 0.5, output: join(tmp.dir, "perm.onnx") });
      // Verification ran the compiled model (permuted, folded) against the unpermuted W ⊙ mask.
      expect(report.verification?.passed).to.equal(true);
      for (const p of report.verification!.packing) expect(p.maxRelError, p.name).to.be.below(1e-4);
      const folded = row(report.layers, c.folded);
      expect(folded.length).to.be.greaterThan(0);
      for (const l of folded) {
        expect(l.permutation?.input, l.node).to.equal("folded");
        expect(l.permutation?.foldedInto?.every((p) => c.producers.test(p)), l.node).to.equal(true);
      }
      const carriers = report.layers.filter((l) => l.permutation?.rowsCarry);
      expect(carriers.length).to.equal(folded.reduce((n, l) => n + l.permutation!.foldedInto!.length, 0));
      for (const l of carriers) expect(c.producers.test(l.node), l.node).to.equal(true);
      // The consumer's packed columns stay windowed; the producers' row_index is a real permutation.
      const rebuilt = rebuiltLayers(readModelFile(outputPath).model);
      for (const l of folded) {
        const r = rebuilt.find((x) => x.node.name === l.node)!;
        const bytes = r.node.inputs[2]!.initializer!.read().slice();
        const columns = new Int32Array(bytes.buffer, 0, bytes.byteLength / 4);
        expect(isWindowed(columns, Math.ceil(r.inFeatures / r.m), r.m), l.node).to.equal(true);
      }
      // The search starts from the identity and only accepts rises: no layer keeps less score.
      for (const l of report.layers.filter((x) => x.keptScore != null)) {
        const p = plain.report.layers.find((x) => x.node === l.node)!;
        expect(l.keptScore!, l.node).to.be.at.least(p.keptScore! - 1e-9);
        expect(l.permutation!.keptScoreGain, l.node).to.be.at.least(0);
      }
    });
  }

  it("is deterministic: the same options give byte-identical models", async () => {
    const input = join(tmp.dir, "det.onnx");
    writeModelFile(buildModel("bert", {}), input);
    const opts: CompileOptions = { vnm: "32:2:8", minSize: 0, permute: true, permuteTime: 0.3, verify: false };
    const a = await compileFile(input, { ...opts, output: join(tmp.dir, "det-a.onnx") });
    const b = await compileFile(input, { ...opts, output: join(tmp.dir, "det-b.onnx"), threads: 0 });
    expect(Buffer.compare(readFileSync(a.outputPath), readFileSync(b.outputPath))).to.equal(0);
    expect(a.report.layers.some((l) => (l.permutation?.keptScoreGain ?? 0) > 0)).to.equal(true);
  });

  it("keeps the permutation in columns when the intermediate activation is read elsewhere (a graph output)", async () => {
    const model = buildModel("mlp", {});
    const relu = model.graph.nodes.find((n) => n.opType === "Relu")!;
    model.graph.outputs.push(relu.outputs[0]!);
    const input = join(tmp.dir, "mlp-tap.onnx");
    writeModelFile(model, input);
    const { report } = await compileFile(input, { vnm: "16:2:8", minSize: 0, permute: true, permuteTime: 0.3 });
    expect(report.verification?.passed).to.equal(true);
    const layer1 = row(report.layers, /^layers\.1/);
    expect(layer1.length).to.be.greaterThan(0);
    for (const l of layer1) expect(l.permutation?.input).to.equal("columns");
    expect(report.layers.some((l) => l.permutation?.rowsCarry)).to.equal(false);
  });

  it("rejects a bad --permute-time", async () => {
    const input = join(tmp.dir, "bad.onnx");
    writeModelFile(buildModel("mlp", {}), input);
    for (const t of [-1, Number.NaN, Infinity]) {
      const err = await compileFile(input, { permute: true, permuteTime: t }).then(() => undefined, (e: unknown) => e);
      expect(err).to.be.instanceOf(VnmcError);
      expect((err as VnmcError).code).to.equal(Codes.BAD_PERMUTE_TIME);
    }
  });
});
