import type { Candidate, CompileState, FoldPlan } from "../compiler/compile-state.js";
import { Codes } from "../compiler/diagnostics.js";
import { elementCount } from "../compiler/ir/tensor.js";
import type { Model } from "../compiler/ir/model.js";
import type { Node } from "../compiler/ir/node.js";
import type { Value } from "../compiler/ir/value.js";
import { type Pass, type PassContext, reporter } from "../compiler/pass/pass.js";
import { recipeKey } from "../compiler/weights/weight-recipe.js";
import { formatVnm } from "../compiler/vnm/config.js";
import { constantTensor } from "./constant-chain.js";

/** Ops that act on each element alone: a permutation of channels commutes with them. */
const UNARY = new Set([
  "Relu", "Gelu", "Sigmoid", "Tanh", "Erf", "Exp", "Log", "Neg", "Abs", "Sqrt", "Reciprocal", "Softplus", "Softsign",
  "Elu", "Selu", "Celu", "LeakyRelu", "HardSigmoid", "HardSwish", "Mish", "ThresholdedRelu", "Identity", "Cast",
  "Sin", "Cos", "Floor", "Ceil", "Round", "Sign",
]);
/** Elementwise with broadcasting: commutes when every other operand is a scalar or a per-channel vector. */
const BINARY = new Set(["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "PRelu"]);

const isOnnx = (n: Node) => n.domain === "" || n.domain === "ai.onnx";

/**
 * With --permute: finds, for each rewritten layer, whether its input permutation can be folded into the
 * layers that produce its input instead of its `columns` (arXiv 2410.16135: fc1 -> activation -> fc2).
 * The input must come, through elementwise ops only (activations, scalar or per-channel constants,
 * products of branches as in SwiGLU), from rewritten layers whose outputs nobody else reads. Then those
 * producers write their channels in the permuted order (their `row_index`, free), every per-channel
 * constant on the way is permuted, and the consumer keeps windowed `columns`, the kernels' fast path.
 * The fold itself happens once the permutation is known (fold-permutations).
 */
export class PlanPermutationFolds implements Pass<CompileState> {
  readonly name = "plan-permutation-folds";

  run(_model: Model, ctx: PassContext<CompileState>): { modified: boolean } {
    const report = reporter(this.name, ctx);
    const { state } = ctx;
    const byNode = new Map<Node, Candidate>();
    const usersOfWeight = new Map<string, number>();
    for (const c of state.candidates) {
      byNode.set(c.node, c);
      const key = recipeKey(c.recipe, formatVnm(c.config));
      usersOfWeight.set(key, (usersOfWeight.get(key) ?? 0) + 1);
    }
    const exclusive = (c: Candidate) => usersOfWeight.get(recipeKey(c.recipe, formatVnm(c.config))) === 1;
    const plans: FoldPlan[] = [];
    const folded = new Set<Candidate>();
    for (const consumer of state.candidates) {
      if (!exclusive(consumer) || consumer.gemm?.transA) continue;
      const plan = traceRegion(consumer, byNode);
      if (!plan) continue;
      if (plan.producers.some((p) => !exclusive(p) || folded.has(p) || !producerFoldable(p))) continue;
      for (const p of plan.producers) folded.add(p);
      plans.push(plan);
      report("info", Codes.PERMUTE_FOLD_PLANNED, `'${consumer.label}' can fold its input permutation into ${plan.producers.map((p) => `'${p.label}'`).join(", ")}`, consumer.label);
    }
    state.foldPlans = plans;
    return { modified: false };
  }
}

/** A Gemm's C must be permutable with the output channels: absent, unused, a scalar or a row vector. */
function producerFoldable(p: Candidate): boolean {
  const g = p.gemm;
  if (!g || !g.c || g.beta === 0) return true;
  if (!g.cConstant) return false;
  const d = g.cConstant.dims;
  const n = elementCount(d);
  const isRow = d.length <= 1 || (d.length === 2 && d[0] === 1);
  return isRow && (n === 1 || n === p.recipe.outFeatures);
}

/**
 * The elementwise region between `consumer`'s input and the rewritten layers feeding it, or undefined
 * when anything else (a non-elementwise op, a graph input, a value read elsewhere) is in the way.
 */
function traceRegion(consumer: Candidate, byNode: Map<Node, Candidate>): FoldPlan | undefined {
  const channels = consumer.recipe.inFeatures;
  const graph = consumer.node.graph;
  const region = new Set<Node>();
  const producers: Candidate[] = [];
  const constants: FoldPlan["constants"] = [];
  const start = consumer.node.inputs[0];
  if (!start) return undefined;
  const stack: Value[] = [start];
  const seen = new Set<Value>();
  while (stack.length > 0) {
    const v = stack.pop()!;
    if (seen.has(v)) continue;
    seen.add(v);
    const p = v.producer;
    if (!p || p.graph !== graph || v.isGraphOutput || p.outputs.length !== 1) return undefined;
    const c = byNode.get(p);
    if (c) {
      if (c.recipe.outFeatures !== channels || c.graph !== graph) return undefined;
      producers.push(c);
      continue;
    }
    if (!isOnnx(p)) return undefined;
    if (UNARY.has(p.opType)) {
      if (!p.inputs[0] || p.inputs.length !== 1) return undefined;
      region.add(p);
      stack.push(p.inputs[0]);
      continue;
    }
    if (!BINARY.has(p.opType) && p.opType !== "Clip") return undefined;
    region.add(p);
    let dynamic = 0;
    for (const [i, x] of p.inputs.entries()) {
      if (!x) continue;
      const k = constantTensor(x);
      if (k) {
        const n = elementCount(k.data.dims);
        if (n === 1) continue;
        // Clip's bounds must be scalars; a per-channel vector broadcasts along the last axis only.
        const perChannel = p.opType !== "Clip" && k.data.dims.length >= 1 && k.data.dims[k.data.dims.length - 1] === channels && n === channels;
        if (!perChannel) return undefined;
        constants.push({ node: p, index: i });
        continue;
      }
      if (p.opType === "Clip" && i > 0) return undefined;
      dynamic++;
      stack.push(x);
    }
    if (dynamic === 0) return undefined;
  }
  if (producers.length === 0) return undefined;
  // Every value in the region must be read only inside it (or by the consumer): otherwise someone
  // else would see channels in the permuted order.
  const inside = (n: Node) => region.has(n) || n === consumer.node;
  for (const v of seen) {
    if (v.isGraphOutput || !v.uses.every((u) => inside(u.node))) return undefined;
  }
  return { consumer, producers, constants };
}
