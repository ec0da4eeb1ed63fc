import type { Graph } from "./graph.js";
import type { TensorData } from "./tensor.js";

/** A tensor-valued attribute: the data plus its name and opaque extras. */
export interface AttrTensor {
  name: string;
  data: TensorData;
  extras?: unknown;
}

/**
 * A node attribute. Kinds the compiler reads are typed; sparse tensors and type protos stay opaque.
 * `ref` is a reference to an attribute of the enclosing function (function bodies).
 */
export type AttributeValue =
  | { kind: "float"; value: number }
  | { kind: "int"; value: bigint }
  | { kind: "string"; value: Uint8Array }
  | { kind: "tensor"; value: AttrTensor }
  | { kind: "graph"; value: Graph }
  | { kind: "floats"; value: number[] }
  | { kind: "ints"; value: bigint[] }
  | { kind: "strings"; value: Uint8Array[] }
  | { kind: "tensors"; value: AttrTensor[] }
  | { kind: "graphs"; value: Graph[] }
  | { kind: "opaque"; value: unknown }
  | { kind: "ref"; refAttrName: string; type: number };

export interface Attribute {
  name: string;
  value: AttributeValue;
  /** doc string and unknown fields, opaque. */
  extras?: unknown;
}

export function intAttr(name: string, value: number | bigint): Attribute {
  return { name, value: { kind: "int", value: BigInt(value) } };
}
export function floatAttr(name: string, value: number): Attribute {
  return { name, value: { kind: "float", value } };
}
export function intsAttr(name: string, value: Array<number | bigint>): Attribute {
  return { name, value: { kind: "ints", value: value.map((v) => BigInt(v)) } };
}
export function stringAttr(name: string, value: string): Attribute {
  return { name, value: { kind: "string", value: new TextEncoder().encode(value) } };
}
export function tensorAttr(name: string, data: TensorData): Attribute {
  return { name, value: { kind: "tensor", value: { name: "", data } } };
}
export function refAttr(name: string, refAttrName: string, type: number): Attribute {
  return { name, value: { kind: "ref", refAttrName, type } };
}
