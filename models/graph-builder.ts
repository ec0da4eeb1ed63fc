/**
 * A thin helper over vnmc's IR for writing test models tersely: ops with automatic names, weights
 * in fp32 or fp16, int64 shape/axes constants, and the layers transformer exports are made of, written
 * the way PyTorch's exporter writes them (nn.Linear as MatMul with an [in, out] weight plus Add).
 */
import { floatAttr, intAttr, intsAttr, type Attribute } from "../compiler/ir/attribute.js";
import { DataType } from "../compiler/ir/dtype.js";
import { Graph, NameScope } from "../compiler/ir/graph.js";
import { Model } from "../compiler/ir/model.js";
import { tensorFromTyped } from "../compiler/ir/tensor.js";
import type { Dim, Value } from "../compiler/ir/value.js";
import { encodeF16 } from "../compiler/numeric/half.js";
import { linearWeight, Rng } from "./random.js";

export type Dtype = "fp32" | "fp16";

export const OPSET = 18;
/** INT64_MAX, what exporters write for "slice to the end". */
export const INT64_MAX = 9223372036854775807n;

export interface BuilderOptions {
  dtype?: Dtype;
  seed?: number;
}

/** How to fill a float initializer. */
export type Init =
  /** A linear weight: N(0, 1/fanIn) with outlier input channels (see random.ts). */
  | { kind: "linear"; fanIn: number; fanOut: number; layout: "in_out" | "out_in" }
  | { kind: "normal"; mean?: number; std: number }
  | { kind: "const"; value: number }
  | { kind: "data"; data: Float32Array };

export interface OpOptions {
  /** Node name (default: "<scope>/<OpType>", made unique). */
  name?: string;
  attrs?: Attribute[];
  /** Name of the (first) output value, for graph outputs. */
  out?: string;
}

export function elemTypeOf(dtype: Dtype): number {
  return dtype === "fp16" ? DataType.FLOAT16 : DataType.FLOAT;
}

export class GraphBuilder {
  readonly graph: Graph;
  readonly dtype: Dtype;
  /** FLOAT or FLOAT16: the element type of activations and weights. */
  readonly elemType: number;
  readonly seed: number;
  private readonly scopes: string[] = [];
  private readonly constCache = new Map<string, Value>();

  constructor(name: string, opts: BuilderOptions = {}) {
    this.graph = new Graph(name, new NameScope());
    this.dtype = opts.dtype ?? "fp32";
    this.elemType = elemTypeOf(this.dtype);
    this.seed = opts.seed ?? 0;
  }

  // ---- graph structure ----

  input(name: string, shape: Dim[], elemType = this.elemType): Value {
    const v = this.graph.createValue(name, { elemType, shape });
    this.graph.inputs.push(v);
    return v;
  }

  output(v: Value, shape: Dim[], elemType = this.elemType): Value {
    v.type = { elemType, shape };
    this.graph.outputs.push(v);
    return v;
  }

  /** Run `fn` with node names prefixed by `prefix` ("layers.0.attn/Softmax"). */
  scope<T>(prefix: string, fn: () => T): T {
    this.scopes.push(prefix);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  private nodeName(opType: string, explicit?: string): string {
    let base = explicit;
    if (base === undefined) {
      const scope = this.scopes.at(-1);
      base = scope === undefined ? `/${opType}` : `${scope}/${opType}`;
    }
    let name = base;
    for (let i = 1; this.graph.names.has(name); i++) name = `${base}_${i}`;
    return name;
  }

  /** Add a node with `outputs` results; returns its output values. */
  opN(opType: string, inputs: (Value | null)[], outputs: number, opts: OpOptions = {}): Value[] {
    const name = this.nodeName(opType, opts.name);
    const outNames: string[] = [];
    for (let i = 0; i < outputs; i++) {
      outNames.push(i === 0 && opts.out !== undefined ? opts.out : this.graph.names.fresh(`${name}_output_${i}`));
    }
    const node = this.graph.addNode({ opType, inputs, outputs: outNames, attributes: opts.attrs ?? [], name });
    if (node.name !== name) throw new Error(`internal: node name '${name}' changed to '${node.name}'`);
    return node.outputs;
  }

  op(opType: string, inputs: (Value | null)[], opts: OpOptions = {}): Value {
    return this.opN(opType, inputs, 1, opts)[0]!;
  }

  model(): Model {
    const m = new Model(this.graph);
    m.irVersion = 10;
    m.opsetImports = [{ domain: "", version: OPSET }];
    m.producerName = "vnmc-models";
    m.producerVersion = "0.1.0";
    return m;
  }

  // ---- initializers ----

  /** The random stream of a named tensor: independent of every other tensor's. */
  rng(name: string): Rng {
    return Rng.forName(this.seed, name);
  }

  /** A float initializer in the model's dtype (fp32 or fp16). */
  weight(name: string, dims: number[], init: Init): Value {
    const count = dims.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    switch (init.kind) {
      case "linear":
        data = linearWeight(this.rng(name), init.fanIn, init.fanOut, { layout: init.layout });
        break;
      case "normal":
        data = this.rng(name).fillNormal(count, init.mean ?? 0, init.std);
        break;
      case "const":
        data = new Float32Array(count).fill(init.value);
        break;
      case "data":
        data = init.data;
        break;
    }
    if (data.length !== count) throw new Error(`internal: '${name}' has ${data.length} values for dims [${dims}]`);
    return this.floatTensor(name, dims, data, this.elemType);
  }

  /** A float initializer of an explicit element type (FLOAT or FLOAT16). */
  floatTensor(name: string, dims: number[], data: Float32Array, elemType: number): Value {
    const t = elemType === DataType.FLOAT16
      ? tensorFromTyped(DataType.FLOAT16, dims, encodeF16(data))
      : tensorFromTyped(DataType.FLOAT, dims, data);
    return this.graph.addInitializer(name, t);
  }

  /** A bool initializer. */
  boolTensor(name: string, dims: number[], data: Uint8Array): Value {
    return this.graph.addInitializer(name, tensorFromTyped(DataType.BOOL, dims, data));
  }

  /** An int64 constant (1-D unless `dims` says otherwise), shared between all uses. */
  i64(values: Array<number | bigint>, dims: number[] = [values.length]): Value {
    const key = `i64:${dims.join("x")}:${values.join(",")}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const label = values.map((v) => (v === INT64_MAX ? "max" : String(v).replace("-", "m"))).join("_");
    const name = this.graph.names.fresh(`const_i64_${label}`);
    const v = this.graph.addInitializer(name, tensorFromTyped(DataType.INT64, dims, BigInt64Array.from(values, (x) => BigInt(x))));
    this.constCache.set(key, v);
    return v;
  }

  /** A float scalar constant (rank 0) of the given element type (default: the model's), shared. */
  scalar(value: number, elemType = this.elemType): Value {
    const key = `f${elemType}:${value}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const tag = elemType === DataType.FLOAT16 ? "f16" : "f32";
    const label = String(value).replace("-", "m").replace(".", "p").replace("+", "");
    const name = this.graph.names.fresh(`const_${tag}_${label}`);
    const v = this.floatTensor(name, [], Float32Array.of(value), elemType);
    this.constCache.set(key, v);
    return v;
  }

  // ---- elementwise and shape ops ----

  add(a: Value, b: Value, name?: string): Value {
    return this.op("Add", [a, b], { name });
  }
  mul(a: Value, b: Value, name?: string): Value {
    return this.op("Mul", [a, b], { name });
  }
  matmul(a: Value, b: Value, name?: string): Value {
    return this.op("MatMul", [a, b], { name });
  }
  relu(x: Value): Value {
    return this.op("Relu", [x]);
  }
  softmax(x: Value, axis = -1): Value {
    return this.op("Softmax", [x], { attrs: [intAttr("axis", axis)] });
  }
  reshape(x: Value, shape: number[]): Value {
    return this.op("Reshape", [x, this.i64(shape)]);
  }
  transpose(x: Value, perm: number[]): Value {
    return this.op("Transpose", [x], { attrs: [intsAttr("perm", perm)] });
  }
  cast(x: Value, to: number): Value {
    return this.op("Cast", [x], { attrs: [intAttr("to", to)] });
  }
  /** Shape(x)[start:end] as a 1-D int64 tensor (opset 15 attributes). */
  shape(x: Value, start: number, end: number): Value {
    return this.op("Shape", [x], { attrs: [intAttr("start", start), intAttr("end", end)] });
  }
  /** Slice along `axes` with int64 starts/ends (constants or computed values). */
  slice(x: Value, starts: Value, ends: Value, axes: Value): Value {
    return this.op("Slice", [x, starts, ends, axes]);
  }
  concat(xs: Value[], axis: number): Value {
    return this.op("Concat", xs, { attrs: [intAttr("axis", axis)] });
  }

  /** Compute `fn` in fp32 when the model is fp16 (Cast in, Cast out), as exports do for norms/softmax. */
  inFloat32(x: Value, fn: (x32: Value) => Value): Value {
    if (this.elemType === DataType.FLOAT) return fn(x);
    return this.cast(fn(this.cast(x, DataType.FLOAT)), this.elemType);
  }

  // ---- layers ----

  /** nn.Linear as PyTorch exports it: MatMul by an [in, out] weight (node `name`), then Add bias. */
  linear(x: Value, inF: number, outF: number, name: string, opts: { bias?: boolean; out?: string } = {}): Value {
    const w = this.weight(`${name}.weight`, [inF, outF], { kind: "linear", fanIn: inF, fanOut: outF, layout: "in_out" });
    if (opts.bias === false) return this.op("MatMul", [x, w], { name, out: opts.out });
    const y = this.matmul(x, w, name);
    const b = this.weight(`${name}.bias`, [outF], { kind: "normal", std: 0.02 });
    return this.op("Add", [y, b], { name: `${name}/Add`, out: opts.out });
  }

  /** nn.Linear as Gemm(transB=1) with an [out, in] weight and bias C (2-D inputs only). */
  gemm(x: Value, inF: number, outF: number, name: string, opts: { bias?: boolean; out?: string } = {}): Value {
    const w = this.weight(`${name}.weight`, [outF, inF], { kind: "linear", fanIn: inF, fanOut: outF, layout: "out_in" });
    const inputs: Value[] = [x, w];
    if (opts.bias !== false) inputs.push(this.weight(`${name}.bias`, [outF], { kind: "normal", std: 0.02 }));
    return this.op("Gemm", inputs, { name, attrs: [intAttr("transB", 1)], out: opts.out });
  }

  /** LayerNormalization (opset 17) over the last axis, with weight ≈ 1 and bias ≈ 0. */
  layerNorm(x: Value, dim: number, name: string, opts: { eps?: number; out?: string } = {}): Value {
    const g = this.weight(`${name}.weight`, [dim], { kind: "normal", mean: 1, std: 0.05 });
    const b = this.weight(`${name}.bias`, [dim], { kind: "normal", std: 0.02 });
    const attrs = [intAttr("axis", -1), floatAttr("epsilon", opts.eps ?? 1e-5)];
    return this.op("LayerNormalization", [x, g, b], { name, attrs, out: opts.out });
  }

  /**
   * RMSNorm as Llama exports it: in fp32 (Cast in fp16 models), x / sqrt(mean(x²) + eps), then cast
   * back and multiplied by the weight. ReduceMean takes `axes` as an input at opset 18.
   */
  rmsNorm(x: Value, dim: number, name: string, opts: { eps?: number; out?: string } = {}): Value {
    const eps = opts.eps ?? 1e-6;
    const g = this.weight(`${name}.weight`, [dim], { kind: "normal", mean: 1, std: 0.05 });
    return this.scope(name, () => {
      const normed = this.inFloat32(x, (x32) => {
        const sq = this.op("Pow", [x32, this.scalar(2, DataType.FLOAT)]);
        const mean = this.op("ReduceMean", [sq, this.i64([-1])], { attrs: [intAttr("keepdims", 1)] });
        const rms = this.op("Sqrt", [this.add(mean, this.scalar(eps, DataType.FLOAT))]);
        return this.op("Div", [x32, rms]);
      });
      return this.op("Mul", [normed, g], { out: opts.out });
    });
  }

  /** GELU written with Erf, as exported before opset 20: 0.5·x·(1 + erf(x/√2)). */
  gelu(x: Value): Value {
    const e = this.op("Erf", [this.op("Div", [x, this.scalar(Math.SQRT2)])]);
    return this.mul(this.mul(x, this.add(e, this.scalar(1))), this.scalar(0.5));
  }

  /** SiLU: x·sigmoid(x). */
  silu(x: Value): Value {
    return this.mul(x, this.op("Sigmoid", [x]));
  }

  /** [B, S, heads·hd] → [B, heads, S, hd]. */
  splitHeads(x: Value, heads: number, headDim: number): Value {
    return this.transpose(this.reshape(x, [0, 0, heads, headDim]), [0, 2, 1, 3]);
  }

  /** [B, heads, S, hd] → [B, S, heads·hd]. */
  mergeHeads(x: Value, heads: number, headDim: number): Value {
    return this.reshape(this.transpose(x, [0, 2, 1, 3]), [0, 0, heads * headDim]);
  }

  /**
   * Scaled dot-product attention on [B, heads, S, hd] tensors: softmax(Q·Kᵀ/√hd [masked])·V. The two
   * MatMuls are activation × activation. `mask` (optional) rewrites the scores before the softmax.
   */
  attention(q: Value, k: Value, v: Value, headDim: number, opts: { mask?: (scores: Value) => Value; softmaxFp32?: boolean } = {}): Value {
    const scope = this.scopes.at(-1) ?? "";
    const kt = this.transpose(k, [0, 1, 3, 2]);
    let scores = this.mul(this.matmul(q, kt, `${scope}/qk_matmul`), this.scalar(1 / Math.sqrt(headDim)));
    if (opts.mask) scores = opts.mask(scores);
    const probs = opts.softmaxFp32 ? this.inFloat32(scores, (s) => this.softmax(s)) : this.softmax(scores);
    return this.matmul(probs, v, `${scope}/av_matmul`);
  }
}
