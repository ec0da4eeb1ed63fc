import type { Graph } from "../ir/graph.js";
import type { Model } from "../ir/model.js";

/** Structural checks: use lists match node inputs, producers match outputs, inputs are defined earlier. */
export function checkModelInvariants(model: Model): string[] {
  const problems: string[] = [];
  checkGraph(model.graph, new Set(), problems);
  for (const f of model.functions) checkGraph(f.body, new Set(), problems);
  return problems;
}

function checkGraph(g: Graph, outerDefined: Set<unknown>, problems: string[]): void {
  const defined = new Set(outerDefined);
  for (const v of g.inputs) defined.add(v);
  for (const v of g.initializers) defined.add(v);
  for (const node of g.nodes) {
    node.inputs.forEach((v, i) => {
      if (!v) return;
      if (!v.uses.some((u) => u.node === node && u.index === i)) problems.push(`use of '${v.name}' by '${node.name}' missing`);
      if (!defined.has(v) && !v.graph.local(v.name)?.initializer && !isSparseConstant(v)) {
        problems.push(`node '${node.name || node.opType}' reads '${v.name}' before it is defined`);
      }
    });
    for (const sg of node.subgraphs()) checkGraph(sg, defined, problems);
    node.outputs.forEach((v, i) => {
      if (v.producer !== node || v.producerIndex !== i) problems.push(`producer of '${v.name}' is wrong`);
      defined.add(v);
    });
  }
  for (const v of g.outputs) if (!defined.has(v) && !isSparseConstant(v)) problems.push(`graph output '${v.name}' is not defined`);
}

function isSparseConstant(v: { producer: unknown; initializer: unknown; isGraphInput: boolean }): boolean {
  return v.producer === null && v.initializer === undefined && !v.isGraphInput;
}
