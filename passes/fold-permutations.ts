import type { CompileState } from "../compiler/compile-state.js";
import { Codes } from "../compiler/diagnostics.js";
import { elementBits } from "../compiler/ir/dtype.js";
import { InMemoryTensor, type TensorData } from "../compiler/ir/tensor.js";
import type { Model } from "../compiler/ir/model.js";
import { type Pass, type PassContext, reporter } from "../compiler/pass/pass.js";
import { formatVnm } from "../compiler/vnm/config.js";
import { recipeKey } from "../compiler/weights/weight-recipe.js";
import { constantTensor } from "./constant-chain.js";

/**
 * With --permute, once the permutations are known: folds each planned consumer's input permutation π
 * into its producers (plan-permutation-folds). The producers' packed rows then write channel
 * π⁻¹[o] instead of o (their `row_index`), their Gemm bias and every per-channel constant on the way
 * are permuted the same way (new initializers; the originals may have other readers), and the
 * consumer's `columns` stay windowed. Outputs are unchanged (verification checks it).
 */
export class FoldPermutations implements Pass<CompileState> {
  readonly name = "fold-permutations";

  run(_model: Model, ctx: PassContext<CompileState>): { modified: boolean } {
    const report = reporter(this.name, ctx);
    const { state } = ctx;
    const perms = state.permutations;
    if (!perms || !state.foldPlans) return { modified: false };
    const keyOf = (c: { recipe: Parameters<typeof recipeKey>[0]; config: Parameters<typeof formatVnm>[0] }) => recipeKey(c.recipe, formatVnm(c.config));
    let modified = false;
    for (const plan of state.foldPlans) {
      const consumer = perms.get(keyOf(plan.consumer));
      if (!consumer || isIdentity(consumer.input)) continue;
      const pi = consumer.input;
      const bad = plan.constants.find(({ node, index }) => !permutable(constantTensor(node.inputs[index]!)!.data));
      if (bad) continue;
      for (const { node, index } of plan.constants) {
        const v = node.inputs[index]!;
        const data = constantTensor(v)!.data;
        node.setInput(index, node.graph.addInitializer(node.graph.names.fresh(`${v.name}_permuted`), permuteLastAxis(data, pi)));
      }
      for (const p of plan.producers) {
        const g = p.gemm;
        if (g?.c && g.beta !== 0 && g.cConstant && g.cConstant.dims.reduce((a, b) => a * b, 1) > 1) g.cConstant = permuteLastAxis(g.cConstant, pi);
        const own = perms.get(keyOf(p))!;
        own.outputFold = pi;
        own.carriesFoldOf = plan.consumer.label;
      }
      consumer.inputFolded = true;
      consumer.foldedInto = plan.producers.map((p) => p.label);
      modified = true;
      report("info", Codes.PERMUTE_FOLDED, `the input permutation of '${plan.consumer.label}' is folded into the row order of ${consumer.foldedInto.map((l) => `'${l}'`).join(", ")}: its columns stay windowed`, plan.consumer.label);
    }
    return { modified };
  }
}

function isIdentity(p: Int32Array): boolean {
  for (let i = 0; i < p.length; i++) if (p[i] !== i) return false;
  return true;
}

function permutable(t: TensorData): boolean {
  const bits = elementBits(t.dataType);
  return bits !== undefined && bits % 8 === 0;
}

/** result[..., c] = t[..., π[c]] (t is a scalar-broadcast or per-channel vector, channels last). */
function permuteLastAxis(t: TensorData, pi: Int32Array): TensorData {
  const size = elementBits(t.dataType)! / 8;
  const src = t.read();
  const out = new Uint8Array(src.byteLength);
  const channels = pi.length;
  for (let base = 0; base < src.byteLength; base += channels * size) {
    for (let c = 0; c < channels; c++) {
      const from = base + pi[c]! * size;
      out.set(src.subarray(from, from + size), base + c * size);
    }
  }
  return new InMemoryTensor(t.dataType, t.dims, out);
}
