import type { DataType } from "./dtype.js";
import type { Graph } from "./graph.js";
import type { Node } from "./node.js";
import type { TensorData } from "./tensor.js";

/** One dimension of a tensor shape: a number, a symbolic name, or unknown. */
export type Dim = number | string | null;

/** What the IR knows of a value's type; `proto` keeps the full original type for the serializer. */
export interface ValueType {
  /** Element type when the value is a tensor; undefined for sequences, maps, optionals. */
  elemType?: DataType;
  /** Shape when known (rank and dims); undefined when the rank is unknown. */
  shape?: Dim[];
  /** The original serialized type, opaque to passes. */
  readonly opaque?: unknown;
}

export interface Use {
  node: Node;
  index: number;
}

/** Extra per-value fields (doc string, metadata) kept opaque for a lossless round trip. */
export interface ValueInfoExtras {
  readonly opaque?: unknown;
}

/**
 * A named value of a graph: a graph input, a node output, or an initializer. The IR maintains its
 * producer and its uses (including uses from subgraphs that read it from an outer scope).
 */
export class Value {
  producer: Node | null = null;
  producerIndex = -1;
  readonly uses: Use[] = [];
  type: ValueType | undefined;
  /** Present when the value is an initializer of its graph. */
  initializer: TensorData | undefined;
  /** Initializer fields other than name/type/dims/data (doc string, metadata), opaque. */
  initializerExtras: unknown;
  /** value_info extras (doc string, metadata_props) when the graph listed this value in value_info/input/output. */
  infoExtras: unknown;

  /** A node output slot that was empty ("") in the file: written back empty. */
  unnamedOutput = false;

  constructor(public name: string, readonly graph: Graph) {}

  get isInitializer(): boolean {
    return this.initializer !== undefined;
  }

  get isGraphInput(): boolean {
    return this.graph.inputs.includes(this);
  }

  get isGraphOutput(): boolean {
    return this.graph.outputs.includes(this);
  }

  addUse(node: Node, index: number): void {
    this.uses.push({ node, index });
  }

  removeUse(node: Node, index: number): void {
    const i = this.uses.findIndex((u) => u.node === node && u.index === index);
    if (i < 0) throw new Error(`internal: value '${this.name}' has no use by node '${node.name}' slot ${index}`);
    this.uses.splice(i, 1);
  }

  /** Rewire every use of this value to `other`, in this graph and its subgraphs; graph outputs too. */
  replaceAllUsesWith(other: Value): void {
    for (const { node, index } of [...this.uses]) node.setInput(index, other);
    const i = this.graph.outputs.indexOf(this);
    if (i >= 0) this.graph.outputs[i] = other;
  }
}
