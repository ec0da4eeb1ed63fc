import { expect } from "chai";
import { classifierOutputs, OutputAccumulator, compareOutputs } from "../../compiler/verify/compare.js";
import { buildModel } from "../../models/index.js";
import { TinyModel, intAttr } from "../support/tiny-models.js";

describe("output quality measures", () => {
  it("measures top-1 agreement only on outputs that look like class scores", () => {
    expect([...classifierOutputs(buildModel("llama", { hidden: 64, intermediate: 128, vocab: 32, heads: 2 }))]).to.deep.equal(["logits"]);
    expect([...classifierOutputs(buildModel("vit", { hidden: 48, heads: 2, mlp: 96 }))]).to.deep.equal(["logits"]);
    expect([...classifierOutputs(buildModel("bert", { hidden: 64, heads: 2, ffn: 128 }))]).to.deep.equal([]);
    const t = new TinyModel();
    const x = t.input("x", [2, 8]);
    const head = t.op("MatMul", [x, t.init("W", [8, 4])], "head");
    t.output(t.op("Relu", [head], "hidden"));
    t.output(t.op("Softmax", [t.op("Relu", [x], "r")], "sm", [intAttr("axis", -1)]));
    t.output(t.op("Add", [head, t.init("b", [4])], "biased"));
    t.output(t.op("Identity", [x], "probs"));
    expect([...classifierOutputs(t.model())].sort()).to.deep.equal(["biased_out", "probs_out", "sm_out"]);
  });

  it("accumulates over runs exactly as one comparison of everything", () => {
    const ref = Float64Array.from({ length: 24 }, (_, i) => Math.sin(i));
    const got = ref.map((v, i) => v + (i % 5 === 0 ? 0.3 : -0.01));
    const whole = compareOutputs("y", got, ref, [6, 4]);
    const acc = new OutputAccumulator("y");
    acc.add(got.subarray(0, 8), ref.subarray(0, 8), [2, 4]);
    acc.add(got.subarray(8), ref.subarray(8), [4, 4]);
    const parts = acc.result();
    expect(parts.maxAbsError).to.equal(whole.maxAbsError);
    expect(parts.top1Agreement).to.equal(whole.top1Agreement);
    expect(parts.cosine).to.be.closeTo(whole.cosine, 1e-12);
    expect(parts.relL2Error).to.be.closeTo(whole.relL2Error, 1e-12);
    expect(new OutputAccumulator("h", false).result().top1Agreement).to.equal(undefined);
  });
});
