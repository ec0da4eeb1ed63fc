import { DataType } from "../compiler/ir/dtype.js";
import type { TensorData } from "../compiler/ir/tensor.js";
import type { Graph } from "../compiler/ir/graph.js";
import type { Value } from "../compiler/ir/value.js";

/** A constant seen through the Transpose/Cast nodes exporters put in front of weights. */
export interface ConstantView {
  base: TensorData;
  baseName: string;
  /** The graph that defines the constant. */
  scope: Graph;
  /** Dims of the value as the consuming node sees it. */
  dims: number[];
  /** Element type as the consuming node sees it. */
  dataType: number;
  /** True when an odd number of 2-D transposes lie between the constant and the consumer. */
  transposed: boolean;
}

/** The tensor of an initializer or a `Constant` node's `value` attribute; undefined otherwise. */
export function constantTensor(v: Value): { data: TensorData; name: string; scope: Graph } | undefined {
  // An initializer that is also a graph input can be overridden at run time: not a constant.
  if (v.initializer && !v.isGraphInput) return { data: v.initializer, name: v.name, scope: v.graph };
  const p = v.producer;
  if (p && p.opType === "Constant" && (p.domain === "" || p.domain === "ai.onnx")) {
    const a = p.attr("value");
    if (a?.kind === "tensor") return { data: a.value.data, name: v.name, scope: p.graph };
  }
  return undefined;
}

const CASTABLE: readonly number[] = [DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16];

/** Follow Transpose(perm=[1,0]) and float Cast nodes back to a constant. */
export function viewConstant(v: Value): ConstantView | undefined {
  const direct = constantTensor(v);
  if (direct) {
    return { base: direct.data, baseName: direct.name, scope: direct.scope, dims: [...direct.data.dims], dataType: direct.data.dataType, transposed: false };
  }
  const p = v.producer;
  if (!p || (p.domain !== "" && p.domain !== "ai.onnx") || !p.inputs[0]) return undefined;
  if (p.opType === "Transpose") {
    const inner = viewConstant(p.inputs[0]);
    if (!inner || inner.dims.length !== 2) return undefined;
    const perm = p.intsAttr("perm") ?? [1, 0];
    if (perm.length !== 2 || perm[0] !== 1 || perm[1] !== 0) return undefined;
    return { ...inner, dims: [inner.dims[1]!, inner.dims[0]!], transposed: !inner.transposed };
  }
  if (p.opType === "Cast") {
    const inner = viewConstant(p.inputs[0]);
    const to = p.intAttr("to", 0);
    if (!inner || !CASTABLE.includes(to) || !CASTABLE.includes(inner.dataType)) return undefined;
    return { ...inner, dataType: to };
  }
  return undefined;
}
