import type { Attribute } from "./attribute.js";
import { Node } from "./node.js";
import type { TensorData } from "./tensor.js";
import { Value, type ValueType } from "./value.js";

/** Creates names that are unique across a whole model (all graphs share one namespace in ONNX). */
export class NameScope {
  private readonly used = new Set<string>();
  reserve(name: string): void {
    if (name !== "") this.used.add(name);
  }
  has(name: string): boolean {
    return this.used.has(name);
  }
  fresh(base: string): string {
    let name = base;
    for (let i = 1; this.used.has(name); i++) name = `${base}_${i}`;
    this.used.add(name);
    return name;
  }
}

export interface AddNodeOptions {
  opType: string;
  domain?: string;
  name?: string;
  inputs: (Value | null)[];
  /** Output values, or names for new values. */
  outputs: Array<Value | string>;
  attributes?: Attribute[];
  /** Insert before this node (default: append at the end). */
  before?: Node;
}

/**
 * A graph: the main graph or a subgraph (If/Loop/Scan body, function body). Values are looked up
 * from the innermost scope outward, as ONNX resolves names.
 */
export class Graph {
  readonly nodes: Node[] = [];
  readonly inputs: Value[] = [];
  readonly outputs: Value[] = [];
  /** Initializers in file order (each Value has `.initializer`). */
  readonly initializers: Value[] = [];
  /** Values that carried a value_info entry, in order. */
  readonly valueInfos: Value[] = [];
  private readonly byName = new Map<string, Value>();
  /** Graph fields the compiler never rewrites (doc string, sparse initializers, annotations, metadata). */
  extras: unknown;

  constructor(
    public name: string,
    readonly names: NameScope,
    readonly parent: Graph | null = null,
    /** The node whose attribute holds this graph, for subgraphs. */
    public owner: Node | null = null,
  ) {}

  /** The value named `name` in this scope or an enclosing one. */
  lookup(name: string): Value | undefined {
    return this.byName.get(name) ?? this.parent?.lookup(name);
  }

  /** The value of this scope only. */
  local(name: string): Value | undefined {
    return this.byName.get(name);
  }

  /** Define a new value in this scope. The name must not be in use anywhere in the model. */
  createValue(name: string, type?: ValueType): Value {
    if (this.byName.has(name)) throw new Error(`internal: value '${name}' is already defined in graph '${this.name}'`);
    this.names.reserve(name);
    const v = new Value(name, this);
    v.type = type;
    this.byName.set(name, v);
    return v;
  }

  /** A new value with a fresh name derived from `base`. */
  freshValue(base: string, type?: ValueType): Value {
    return this.createValue(this.names.fresh(base), type);
  }

  addInitializer(name: string, data: TensorData, before?: Value): Value {
    const v = this.createValue(name, { elemType: data.dataType, shape: [...data.dims] });
    v.initializer = data;
    const at = before ? this.initializers.indexOf(before) : -1;
    if (at >= 0) this.initializers.splice(at, 0, v);
    else this.initializers.push(v);
    return v;
  }

  addNode(opts: AddNodeOptions): Node {
    const outputs = opts.outputs.map((o) => (typeof o === "string" ? this.createValue(o) : o));
    const name = opts.name === undefined ? "" : opts.name === "" ? "" : this.names.fresh(opts.name);
    const node = new Node(this, opts.opType, opts.domain ?? "", name, opts.inputs, outputs, opts.attributes ?? []);
    const at = opts.before ? this.nodes.indexOf(opts.before) : -1;
    if (at >= 0) this.nodes.splice(at, 0, node);
    else this.nodes.push(node);
    return node;
  }

  /**
   * Replace `old` by a new node that takes over its outputs (same names, same uses), at the same place.
   * The old node's extras (doc string, metadata) carry over.
   */
  replaceNode(old: Node, opts: Omit<AddNodeOptions, "outputs" | "before">): Node {
    const i = this.nodes.indexOf(old);
    if (i < 0) throw new Error(`internal: node '${old.name}' is not in graph '${this.name}'`);
    old.detachInputs();
    const outputs = [...old.outputs];
    for (const o of outputs) o.producer = null;
    this.nodes.splice(i, 1);
    const node = new Node(this, opts.opType, opts.domain ?? "", opts.name ?? old.name, opts.inputs, outputs, opts.attributes ?? []);
    node.extras = old.extras;
    this.nodes.splice(i, 0, node);
    return node;
  }

  /** Remove a node whose outputs nobody uses any more (refuses to orphan a used output). */
  removeNode(node: Node): void {
    for (const out of node.outputs) {
      if (out.uses.length > 0 || out.isGraphOutput) {
        throw new Error(`internal: cannot remove node '${node.name}': output '${out.name}' is still used`);
      }
    }
    const i = this.nodes.indexOf(node);
    if (i < 0) throw new Error(`internal: node '${node.name}' is not in graph '${this.name}'`);
    this.nodes.splice(i, 1);
    node.detachInputs();
    for (const out of node.outputs) {
      this.byName.delete(out.name);
      const vi = this.valueInfos.indexOf(out);
      if (vi >= 0) this.valueInfos.splice(vi, 1);
    }
  }

  /** Remove an initializer nothing uses. */
  removeInitializer(value: Value): void {
    if (value.uses.length > 0 || value.isGraphOutput) {
      throw new Error(`internal: initializer '${value.name}' is still used`);
    }
    const i = this.initializers.indexOf(value);
    if (i < 0) throw new Error(`internal: '${value.name}' is not an initializer of graph '${this.name}'`);
    this.initializers.splice(i, 1);
    const gi = this.inputs.indexOf(value);
    if (gi >= 0) this.inputs.splice(gi, 1);
    const vi = this.valueInfos.indexOf(value);
    if (vi >= 0) this.valueInfos.splice(vi, 1);
    this.byName.delete(value.name);
  }

  /** This graph and every nested subgraph, depth first. */
  *allGraphs(): Generator<Graph> {
    yield this;
    for (const n of this.nodes) for (const g of n.subgraphs()) yield* g.allGraphs();
  }
}
