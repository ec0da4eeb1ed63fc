import { expect } from "chai";
import type { CompileState } from "../../compiler/compile-state.js";
import { DiagnosticSink } from "../../compiler/diagnostics.js";
import { DataType } from "../../compiler/ir/dtype.js";
import type { Model } from "../../compiler/ir/model.js";
import { checkModelInvariants } from "../../compiler/pass/invariants.js";
import type { Pass } from "../../compiler/pass/pass.js";
import { parseVnm } from "../../compiler/vnm/config.js";
import { AddFallbackFunction } from "../../passes/add-fallback-function.js";
import { FindCandidates } from "../../passes/find-candidates.js";
import { RecordMetadata } from "../../passes/record-metadata.js";
import { deadOnInput, RemoveUnused } from "../../passes/remove-unused.js";
import { RewriteToVnm } from "../../passes/rewrite-to-vnm.js";
import { TinyModel, floatAttr, intAttr, intsAttr } from "../support/tiny-models.js";

function state(model: Model, overrides: Partial<CompileState["options"]> = {}): CompileState {
  return {
    options: { vnm: parseVnm("8:2:4"), include: [], exclude: [], minSize: 0, emit: "sparse", retainPacked: false, ...overrides },
    candidates: [], skipped: [], weights: new Map(), initiallyUnused: deadOnInput(model),
  };
}

function run(model: Model, st: CompileState, ...passes: Pass<CompileState>[]): DiagnosticSink {
  const diagnostics = new DiagnosticSink();
  for (const p of passes) {
    p.run(model, { diagnostics, state: st });
    expect(checkModelInvariants(model), `after ${p.name}`).to.deep.equal([]);
  }
  return diagnostics;
}

const ops = (m: Model) => m.graph.nodes.map((n) => n.qualifiedType);

describe("passes", () => {
  describe("find-candidates", () => {
    it("sees through Transpose and Cast of constants, in the right orientation", () => {
      const t = new TinyModel();
      const x = t.input("X", [2, 16]);
      const tr = t.op("Transpose", [t.init("Wt", [32, 16])], "tr", [intsAttr("perm", [1, 0])]);
      t.output(t.op("MatMul", [x, tr], "a"));
      t.output(t.op("MatMul", [x, t.init("B", [16, 8])], "b"));
      t.output(t.op("Gemm", [x, t.init("G", [24, 16])], "c", [intAttr("transB", 1), floatAttr("alpha", 2)]));
      const m = t.model();
      const st = state(m);
      run(m, st, new FindCandidates());
      const shape = Object.fromEntries(st.candidates.map((c) => [c.label, [c.recipe.outFeatures, c.recipe.inFeatures, c.recipe.transposed, c.recipe.scale]]));
      expect(shape).to.deep.equal({ a: [32, 16, false, 1], b: [8, 16, true, 1], c: [24, 16, false, 2] });
    });

    it("does not treat an initializer that is also a graph input as constant", () => {
      const t = new TinyModel();
      const x = t.input("X", [2, 16]);
      const w = t.init("B", [16, 8]);
      t.graph.inputs.push(w);
      t.output(t.op("MatMul", [x, w], "mm"));
      const m = t.model();
      const st = state(m);
      const d = run(m, st, new FindCandidates());
      expect(st.candidates).to.have.length(0);
      expect(d.items.map((i) => i.code)).to.deep.equal(["VNMC-S001"]);
    });

    it("applies --include before --exclude and reports every skip once", () => {
      const t = new TinyModel();
      const x = t.input("X", [2, 16]);
      for (const n of ["q_proj", "k_proj", "lm_head"]) t.output(t.op("MatMul", [x, t.init(`${n}.w`, [16, 8])], n));
      const m = t.model();
      const st = state(m, { include: ["*_proj"], exclude: ["k*"] });
      const d = run(m, st, new FindCandidates());
      expect(st.candidates.map((c) => c.label)).to.deep.equal(["q_proj"]);
      expect(d.items.map((i) => `${i.node}:${i.code}`)).to.deep.equal(["k_proj:VNMC-S004", "lm_head:VNMC-S004"]);
    });
  });

  describe("rewrite-to-vnm + remove-unused", () => {
    it("replaces the node in place, keeps the output name and drops the dense weight", () => {
      const t = new TinyModel();
      const x = t.input("X", [2, 16]);
      const y = t.op("MatMul", [x, t.init("B", [16, 8])], "mm");
      t.output(t.op("Relu", [y], "relu"));
      const m = t.model();
      const st = state(m);
      run(m, st, new FindCandidates(), new RewriteToVnm(), new RemoveUnused());
      expect(ops(m)).to.deep.equal(["com.vnmc::VNMSparseGemm", "Relu"]);
      expect(m.graph.nodes[0]!.outputs[0]).to.equal(y);
      expect(m.graph.initializers.map((v) => v.name)).to.deep.equal(["B_vnm_values", "B_vnm_columns", "B_vnm_meta", "B_vnm_row_index"]);
      expect(m.graph.nodes[0]!.intAttr("in_features", 0)).to.equal(16);
      expect(m.graph.nodes[0]!.intAttr("out_features", 0)).to.equal(8);
    });

    it("keeps initializers and nodes that were already unused in the input", () => {
      const t = new TinyModel();
      const x = t.input("X", [2, 16]);
      t.init("unused", [3]);
      t.op("Transpose", [t.init("dead_src", [2, 2])], "dead_transpose", [intsAttr("perm", [1, 0])]);
      t.output(t.op("MatMul", [x, t.init("B", [16, 8])], "mm"));
      const m = t.model();
      run(m, state(m), new FindCandidates(), new RewriteToVnm(), new RemoveUnused());
      const names = m.graph.initializers.map((v) => v.name);
      expect(names).to.include.members(["unused", "dead_src"]);
      expect(names).to.not.include("B");
      expect(ops(m)).to.include("Transpose");
    });

    it("removes the Transpose/Cast/Constant chain that fed a rewritten weight", () => {
      const t = new TinyModel(1, DataType.FLOAT16);
      const x = t.input("X", [2, 16]);
      const c = t.constantNode("W", [8, 16]);
      const cast = t.op("Cast", [c], "cast", [intAttr("to", DataType.FLOAT16)]);
      const tr = t.op("Transpose", [cast], "tr", [intsAttr("perm", [1, 0])]);
      t.output(t.op("MatMul", [x, tr], "mm"));
      const m = t.model();
      run(m, state(m), new FindCandidates(), new RewriteToVnm(), new RemoveUnused());
      expect(ops(m)).to.deep.equal(["com.vnmc::VNMSparseGemm"]);
      expect(m.graph.initializers[0]!.initializer!.dataType).to.equal(DataType.FLOAT16);
    });

    it("Gemm: bias from a constant vector C, an Add for a 2-D C, a Transpose for transA", () => {
      const t = new TinyModel();
      const x = t.input("X", [2, 16]);
      const xt = t.input("XT", [16, 2]);
      const c1 = t.init("C1", [8]);
      const c1Values = new Float32Array(c1.initializer!.read().slice().buffer);
      t.output(t.op("Gemm", [x, t.init("W1", [8, 16]), c1], "g1", [intAttr("transB", 1), floatAttr("beta", 3)]));
      t.output(t.op("Gemm", [xt, t.init("W2", [16, 8]), t.init("C2", [2, 8])], "g2", [intAttr("transA", 1)]));
      const m = t.model();
      run(m, state(m), new FindCandidates(), new RewriteToVnm(), new RemoveUnused());
      expect(ops(m)).to.deep.equal(["com.vnmc::VNMSparseGemm", "Transpose", "com.vnmc::VNMSparseGemm", "Add"]);
      const g1 = m.graph.nodes[0]!;
      const bias = new Float32Array(g1.inputs[4]!.initializer!.read().slice().buffer);
      expect(Array.from(bias)).to.deep.equal(Array.from(c1Values.map((v) => v * 3)));
    });

    it("pruned-dense mode keeps the original op and reads W ⊙ mask", () => {
      const t = new TinyModel();
      t.output(t.op("MatMul", [t.input("X", [2, 16]), t.init("B", [16, 8])], "mm"));
      const m = t.model();
      run(m, state(m, { emit: "pruned-dense" }), new FindCandidates(), new RewriteToVnm(), new RemoveUnused());
      expect(ops(m)).to.deep.equal(["MatMul"]);
      const w = new Float32Array(m.graph.nodes[0]!.inputs[1]!.initializer!.read().slice().buffer);
      expect(w.filter((v) => v !== 0).length).to.equal(16 * 8 / 2); // 8:2:4 keeps half
    });
  });

  describe("add-fallback-function", () => {
    for (const opset of [13, 15, 17, 21]) {
      it(`adds the com.vnmc opset and one function written for opset ${opset}`, () => {
        const t = new TinyModel();
        const x = t.input("X", [2, 16]);
        t.output(t.op("MatMul", [x, t.init("A", [16, 8])], "a"));
        t.output(t.op("MatMul", [x, t.init("B", [16, 8])], "b"));
        const m = t.model(opset);
        run(m, state(m), new FindCandidates(), new RewriteToVnm(), new AddFallbackFunction());
        expect(m.opsetVersion("com.vnmc")).to.equal(1);
        expect(m.functions).to.have.length(1);
        const f = m.functions[0]!;
        expect([f.domain, f.name, f.opsetImports]).to.deep.equal(["com.vnmc", "VNMSparseGemm", [{ domain: "", version: opset }]]);
        expect(f.body.inputs.map((v) => v.name)).to.deep.equal(["A", "values", "columns", "meta", "bias", "row_index"]);
        const scatter = f.body.nodes.find((n) => n.opType === "ScatterElements" && n.outputs[0]!.name.startsWith("W_f32") || n.opType === "ScatterElements" && n.outputs[0]!.name.startsWith("scattered"))!;
        expect(scatter.attr("reduction") !== undefined).to.equal(opset >= 16);
      });
    }

    it("does nothing to a model without VNMSparseGemm", () => {
      const t = new TinyModel();
      t.output(t.op("Relu", [t.input("X", [2])], "r"));
      const m = t.model();
      expect(new AddFallbackFunction().run(m, { diagnostics: new DiagnosticSink(), state: state(m) }).modified).to.equal(false);
      expect(m.functions).to.have.length(0);
    });
  });

  it("record-metadata writes version, options and layer count", () => {
    const t = new TinyModel();
    t.output(t.op("Relu", [t.input("X", [2])], "r"));
    const m = t.model();
    m.metadata.push(["user", "kept"]);
    run(m, state(m), new RecordMetadata("1.2.3", { vnm: "8:2:4" }));
    expect(m.metadata).to.deep.equal([["user", "kept"], ["vnmc.version", "1.2.3"], ["vnmc.options", '{"vnm":"8:2:4"}'], ["vnmc.layers", "0"]]);
  });
});
