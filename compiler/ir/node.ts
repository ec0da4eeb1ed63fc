import type { Attribute, AttributeValue } from "./attribute.js";
import type { Graph } from "./graph.js";
import type { Value } from "./value.js";

/** A node of a graph. Inputs and outputs are Values; the IR keeps their use lists in step. */
export class Node {
  readonly inputs: (Value | null)[] = [];
  readonly outputs: Value[] = [];
  attributes: Attribute[];
  /** doc string, metadata_props, device configurations and unknown fields, opaque to passes. */
  extras: unknown;

  constructor(
    readonly graph: Graph,
    public opType: string,
    public domain: string,
    public name: string,
    inputs: (Value | null)[],
    outputs: Value[],
    attributes: Attribute[] = [],
    public overload = "",
  ) {
    this.attributes = attributes;
    inputs.forEach((v, i) => {
      this.inputs.push(v);
      v?.addUse(this, i);
    });
    for (const [i, v] of outputs.entries()) {
      if (v.producer) throw new Error(`internal: value '${v.name}' already has a producer`);
      v.producer = this;
      v.producerIndex = i;
      this.outputs.push(v);
    }
  }

  /** "domain::op" for messages; the default ONNX domain prints as the bare op type. */
  get qualifiedType(): string {
    return this.domain === "" || this.domain === "ai.onnx" ? this.opType : `${this.domain}::${this.opType}`;
  }

  setInput(index: number, value: Value | null): void {
    this.inputs[index]?.removeUse(this, index);
    this.inputs[index] = value;
    value?.addUse(this, index);
  }

  /** Drop all input uses (before the node is removed from its graph). */
  detachInputs(): void {
    this.inputs.forEach((v, i) => v?.removeUse(this, i));
    this.inputs.length = 0;
  }

  attr(name: string): AttributeValue | undefined {
    return this.attributes.find((a) => a.name === name)?.value;
  }

  intAttr(name: string, fallback: number): number {
    const a = this.attr(name);
    if (a === undefined) return fallback;
    if (a.kind !== "int") throw new Error(`attribute '${name}' of node '${this.name}' is not an int`);
    return Number(a.value);
  }

  floatAttr(name: string, fallback: number): number {
    const a = this.attr(name);
    if (a === undefined) return fallback;
    if (a.kind !== "float") throw new Error(`attribute '${name}' of node '${this.name}' is not a float`);
    return a.value;
  }

  intsAttr(name: string): number[] | undefined {
    const a = this.attr(name);
    if (a === undefined) return undefined;
    if (a.kind !== "ints") throw new Error(`attribute '${name}' of node '${this.name}' is not a list of ints`);
    return a.value.map(Number);
  }

  /** Subgraphs held by this node's attributes (If/Loop/Scan bodies). */
  subgraphs(): Graph[] {
    const out: Graph[] = [];
    for (const a of this.attributes) {
      if (a.value.kind === "graph") out.push(a.value.value);
      else if (a.value.kind === "graphs") out.push(...a.value.value);
    }
    return out;
  }
}
