import type { Candidate, CompileState, WeightPermutation } from "../compiler/compile-state.js";
import { intAttr, intsAttr, floatAttr } from "../compiler/ir/attribute.js";
import type { Graph } from "../compiler/ir/graph.js";
import type { Model } from "../compiler/ir/model.js";
import { InMemoryTensor, LazyTensor, type TensorData, elementCount } from "../compiler/ir/tensor.js";
import type { Value } from "../compiler/ir/value.js";
import type { Pass, PassContext } from "../compiler/pass/pass.js";
import { formatVnm } from "../compiler/vnm/config.js";
import { elementSize, fromFloat32, toFloat32, transposeBytes } from "../compiler/weights/float-view.js";
import type { JobPermutation } from "../compiler/weights/prune-job.js";
import { SparseWeight } from "../compiler/weights/sparse-weight.js";
import { recipeKey } from "../compiler/weights/weight-recipe.js";

export const VNM_DOMAIN = "com.vnmc";
export const VNM_OP = "VNMSparseGemm";

interface PackedValues {
  values: Value;
  columns: Value;
  meta: Value;
  rowIndex: Value;
}

/**
 * Rewrites each candidate into `com.vnmc::VNMSparseGemm` with packed weights (or, for the verification
 * reference, into the original op with W ⊙ mask). A weight read by several nodes the same way is pruned
 * and packed once and shared.
 */
export class RewriteToVnm implements Pass<CompileState> {
  readonly name = "rewrite-to-vnm";
  private readonly packed = new Map<SparseWeight, PackedValues>();

  run(_model: Model, ctx: PassContext<CompileState>): { modified: boolean } {
    const { state } = ctx;
    for (const c of state.candidates) {
      const key = recipeKey(c.recipe, formatVnm(c.config));
      let sparse = state.weights.get(key);
      if (!sparse) {
        sparse = new SparseWeight(c.recipe, c.config, state.options.retainPacked, state.options.pool, state.scoring?.get(key), jobPermutation(state.permutations?.get(key)));
        state.weights.set(key, sparse);
      }
      c.sparse = sparse;
      if (state.options.emit === "sparse") this.rewriteSparse(c, sparse);
      else this.rewritePrunedDense(c, sparse);
    }
    return { modified: state.candidates.length > 0 };
  }

  private packedValues(scope: Graph, sparse: SparseWeight): PackedValues {
    let p = this.packed.get(sparse);
    if (!p) {
      const t = sparse.tensors();
      const base = sparse.recipe.baseName;
      const add = (suffix: string, data: TensorData) => scope.addInitializer(scope.names.fresh(`${base}_vnm_${suffix}`), data);
      // Consecutive, so the writer reads all four while the packed result is cached.
      p = { values: add("values", t.values), columns: add("columns", t.columns), meta: add("meta", t.meta), rowIndex: add("row_index", t.row_index) };
      this.packed.set(sparse, p);
    }
    return p;
  }

  private rewriteSparse(c: Candidate, sparse: SparseWeight): void {
    const { node, graph, recipe, config } = c;
    const p = this.packedValues(c.weightScope, sparse);
    let a = node.inputs[0]!;
    const aType = a.type?.elemType ?? recipe.dataType;
    if (c.gemm?.transA) {
      const t = graph.freshValue(`${a.name}_T`, { elemType: aType, shape: a.type?.shape ? [...a.type.shape].reverse() : undefined });
      graph.addNode({ opType: "Transpose", inputs: [a], outputs: [t], attributes: [intsAttr("perm", [1, 0])], before: node, name: `${c.label}_transA` });
      a = t;
    }
    let bias: Value | null = null;
    let addend: Value | null = null;
    const g = c.gemm;
    if (g?.c && g.beta !== 0) {
      const vector = g.cConstant ? biasVector(g.cConstant, recipe.outFeatures, g.beta) : undefined;
      if (vector) {
        bias = graph.addInitializer(graph.names.fresh(`${c.label}_vnm_bias`), new InMemoryTensor(g.cConstant!.dataType, [recipe.outFeatures], vector));
      } else if (g.beta === 1) {
        addend = g.c;
      } else if (g.cConstant) {
        const f = toFloat32(g.cConstant.read(), g.cConstant.dataType).map((x) => x * g.beta);
        addend = graph.addInitializer(graph.names.fresh(`${c.label}_beta_C`), new InMemoryTensor(g.cConstant.dataType, g.cConstant.dims, fromFloat32(f, g.cConstant.dataType)));
      } else {
        const betaValue = graph.addInitializer(graph.names.fresh(`${c.label}_beta`), new InMemoryTensor(aType, [], fromFloat32(new Float32Array([g.beta]), aType)));
        addend = graph.freshValue(`${c.label}_beta_C`, g.c.type);
        graph.addNode({ opType: "Mul", inputs: [g.c, betaValue], outputs: [addend], before: node, name: `${c.label}_beta` });
      }
    }
    const spec = {
      opType: VNM_OP,
      domain: VNM_DOMAIN,
      inputs: [a, p.values, p.columns, p.meta, bias, p.rowIndex],
      attributes: [
        intAttr("in_features", recipe.inFeatures), intAttr("out_features", recipe.outFeatures),
        intAttr("v", config.v), intAttr("m", config.m), intAttr("n", config.n),
      ],
    };
    if (!addend) {
      graph.replaceNode(node, spec);
      return;
    }
    const y = node.outputs[0]!;
    const partial = graph.freshValue(`${y.name}_vnm`, y.type ? { elemType: y.type.elemType, shape: y.type.shape } : undefined);
    graph.addNode({ ...spec, outputs: [partial], before: node, name: node.name === "" ? "" : `${node.name}_vnm` });
    graph.replaceNode(node, { opType: "Add", inputs: [partial, addend] });
  }

  /** The verification reference: the original op reading W ⊙ mask in the layout it expects. */
  private rewritePrunedDense(c: Candidate, sparse: SparseWeight): void {
    const { node, graph, recipe } = c;
    const size = elementSize(recipe.dataType);
    const { outFeatures: out, inFeatures: inF } = recipe;
    if (node.opType === "MatMul") {
      const data = new LazyTensor(recipe.dataType, [inF, out], () => transposeBytes(sparse.prunedDense(), out, inF, size));
      node.setInput(1, graph.addInitializer(graph.names.fresh(`${recipe.baseName}_pruned`), data));
      return;
    }
    const data = new LazyTensor(recipe.dataType, [out, inF], () => sparse.prunedDense());
    node.setInput(1, graph.addInitializer(graph.names.fresh(`${recipe.baseName}_pruned`), data));
    node.attributes = node.attributes.filter((a) => a.name !== "transB" && a.name !== "alpha");
    node.attributes.push(intAttr("transB", 1), floatAttr("alpha", 1));
  }
}

/** The fields a prune job needs (the report's fields stay on the main thread). */
function jobPermutation(p: WeightPermutation | undefined): JobPermutation | undefined {
  if (!p) return undefined;
  const job: JobPermutation = { input: p.input, output: p.output, inputFolded: p.inputFolded };
  if (p.outputFold) job.outputFold = p.outputFold;
  return job;
}

/** beta·C as a bias vector [out] when C is a scalar, [out] or [1, out]; undefined otherwise. */
function biasVector(c: TensorData, out: number, beta: number): Uint8Array | undefined {
  const n = elementCount(c.dims);
  const isRow = c.dims.length <= 1 || (c.dims.length === 2 && c.dims[0] === 1);
  if (!isRow || (n !== 1 && n !== out)) return undefined;
  const f = toFloat32(c.read(), c.dataType);
  const v = new Float32Array(out);
  for (let i = 0; i < out; i++) v[i] = (n === 1 ? f[0]! : f[i]!) * beta;
  return fromFloat32(v, c.dataType).slice();
}
