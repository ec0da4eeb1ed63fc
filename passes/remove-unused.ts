import type { CompileState } from "../compiler/compile-state.js";
import type { Graph } from "../compiler/ir/graph.js";
import type { Model } from "../compiler/ir/model.js";
import type { Pass, PassContext } from "../compiler/pass/pass.js";

/** Ops that only reshape or convert a constant: dead once their weight consumer was rewritten. */
const WEIGHT_PLUMBING = new Set(["Constant", "Transpose", "Cast"]);

/**
 * Drops what the rewrite left unused: initializers nothing reads any more and the Constant/Transpose/
 * Cast nodes that only fed a rewritten weight. Initializers that were already unused in the input are
 * kept: removing them is not vnmc's business.
 */
export class RemoveUnused implements Pass<CompileState> {
  readonly name = "remove-unused";

  run(model: Model, ctx: PassContext<CompileState>): { modified: boolean } {
    let modified = false;
    for (const g of [...model.graph.allGraphs()]) modified = this.sweep(g, ctx.state.initiallyUnused) || modified;
    return { modified };
  }

  private sweep(g: Graph, keep: Set<unknown>): boolean {
    let modified = false;
    for (let changed = true; changed; ) {
      changed = false;
      for (let i = g.nodes.length - 1; i >= 0; i--) {
        const n = g.nodes[i]!;
        const plumbing = WEIGHT_PLUMBING.has(n.opType) && (n.domain === "" || n.domain === "ai.onnx");
        if (plumbing && !keep.has(n) && n.outputs.every((o) => o.uses.length === 0 && !o.isGraphOutput)) {
          g.removeNode(n);
          changed = modified = true;
        }
      }
      for (const v of [...g.initializers]) {
        if (v.uses.length === 0 && !v.isGraphOutput && !keep.has(v)) {
          g.removeInitializer(v);
          changed = modified = true;
        }
      }
    }
    return modified;
  }
}

/** Initializers and plumbing nodes that are dead in the input model, recorded before any pass runs. */
export function deadOnInput(model: Model): Set<unknown> {
  const out = new Set<unknown>();
  for (const g of model.graph.allGraphs()) {
    for (const v of g.initializers) if (v.uses.length === 0 && !v.isGraphOutput) out.add(v);
    for (const n of g.nodes) if (n.outputs.every((o) => o.uses.length === 0 && !o.isGraphOutput)) out.add(n);
  }
  return out;
}
