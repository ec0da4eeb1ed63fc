/**
 * Random VNMSparseGemm layers written straight from shared/design/vnm-format.md (no compiler code):
 * packed tensors with windowed, permuted or arbitrary column indices, random valid meta codes,
 * optional row_index (permuted rows, padding rows with nonzero values) and bias; a one-node ONNX
 * model of the op; and a float64 dense reference through test/support/vnm-reference.ts.
 */
import { intAttr } from "../../compiler/ir/attribute.js";
import { DataType } from "../../compiler/ir/dtype.js";
import { Graph, NameScope } from "../../compiler/ir/graph.js";
import { Model } from "../../compiler/ir/model.js";
import { InMemoryTensor } from "../../compiler/ir/tensor.js";
import type { Dim } from "../../compiler/ir/value.js";
import { decodeBf16, decodeF16, encodeBf16, encodeF16 } from "../../compiler/numeric/half.js";
import { denseFromPacked } from "./vnm-reference.js";

export type ColumnKind = "windowed" | "permuted" | "arbitrary";
export type ElemType = "float32" | "float16" | "bfloat16";

export interface LayerSpec {
  K: number;
  N: number;
  V: number;
  M: number;
  /** Activation (and output, bias) type. */
  act: "float32" | "float16";
  /** Type of the stored values. */
  values: ElemType;
  columns: ColumnKind;
  rowIndex: boolean;
  bias: boolean;
}

export interface PackedLayer {
  spec: LayerSpec;
  R: number;
  G: number;
  /** Values as stored (raw bytes of `spec.values`) and as exact float32. */
  valueBytes: Uint8Array;
  values32: Float32Array;
  columns: Int32Array;
  meta: Uint8Array;
  rowIndex: Int32Array | null;
  /** Bias as stored (type `act`) and as exact float32. */
  biasBytes: Uint8Array | null;
  bias32: Float32Array | null;
  /** Dense W [N, K] from the reference decoder. */
  W: Float32Array;
  /** The same from |values|: Σ|a|·Wabs bounds the rounding error (duplicate indices add up). */
  Wabs: Float32Array;
}

/** Deterministic generator (mulberry32) with helpers. */
export class TestRng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  normal(): number {
    return Math.sqrt(-2 * Math.log(this.next() + 1e-12)) * Math.cos(2 * Math.PI * this.next());
  }
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [xs[i], xs[j]] = [xs[j]!, xs[i]!];
    }
    return xs;
  }
}

/** The six valid (p0 < p1) meta codes: p0 in bits 0-1, p1 in bits 2-3. */
export const META_CODES = [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]].map(([a, b]) => a! | (b! << 2));

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
}

/** Rounds float32 values to the storage type; returns the stored bytes and their exact float32 values. */
export function storeAs(values: Float32Array, type: ElemType): { bytes: Uint8Array; exact: Float32Array } {
  if (type === "float32") return { bytes: bytesOf(values), exact: values };
  const bits = type === "float16" ? encodeF16(values) : encodeBf16(values);
  return { bytes: bytesOf(bits), exact: type === "float16" ? decodeF16(bits) : decodeBf16(bits) };
}

function pickFour(rng: TestRng, pool: number[]): number[] {
  // Four indices from the pool, distinct when it has four; duplicates fill a short pool.
  const distinct = rng.shuffle([...pool]).slice(0, 4);
  while (distinct.length < 4) distinct.push(rng.pick(pool));
  return rng.shuffle(distinct);
}

export function randomLayer(spec: LayerSpec, rng: TestRng): PackedLayer {
  const { K, N, V, M } = spec;
  const R = Math.ceil(N / V) * V, G = Math.ceil(K / M), B = R / V, metaBytes = Math.ceil(G / 2);
  const { bytes: valueBytes, exact: values32 } = storeAs(Float32Array.from({ length: R * 2 * G }, () => rng.normal()), spec.values);

  const columns = new Int32Array(B * G * 4);
  const perm = rng.shuffle(Array.from({ length: K }, (_, i) => i));
  for (let b = 0; b < B; b++) {
    for (let g = 0; g < G; g++) {
      let four: number[];
      if (spec.columns === "arbitrary") four = [0, 1, 2, 3].map(() => rng.int(K));
      else {
        const window: number[] = [];
        for (let k = g * M; k < Math.min(K, g * M + M); k++) window.push(spec.columns === "windowed" ? k : perm[k]!);
        four = pickFour(rng, window);
        if (spec.columns === "windowed") four.sort((x, y) => x - y);
      }
      columns.set(four, (b * G + g) * 4);
    }
  }
  const meta = new Uint8Array(R * metaBytes);
  for (let r = 0; r < R; r++) {
    for (let g = 0; g < G; g++) {
      const code = rng.pick(META_CODES);
      meta[r * metaBytes + (g >> 1)]! |= g % 2 === 0 ? code : code << 4;
    }
  }
  let rowIndex: Int32Array | null = null;
  if (spec.rowIndex) {
    // Each output channel from exactly one packed row; the R - N spare rows are padding (-1).
    const slots = rng.shuffle(Array.from({ length: R }, (_, i) => i));
    const channels = rng.shuffle(Array.from({ length: N }, (_, i) => i));
    rowIndex = new Int32Array(R).fill(-1);
    channels.forEach((o, i) => (rowIndex![slots[i]!] = o));
  }
  let biasBytes: Uint8Array | null = null, bias32: Float32Array | null = null;
  if (spec.bias) {
    const s = storeAs(Float32Array.from({ length: N }, () => rng.normal()), spec.act);
    biasBytes = s.bytes;
    bias32 = s.exact;
  }
  const W = denseFromPacked({ values: values32, columns, meta, rowIndex, outFeatures: N, inFeatures: K, v: V, m: M });
  const Wabs = denseFromPacked({ values: values32.map(Math.abs), columns, meta, rowIndex, outFeatures: N, inFeatures: K, v: V, m: M });
  return { spec, R, G, valueBytes, values32, columns, meta, rowIndex, biasBytes, bias32, W, Wabs };
}

const DT: Record<ElemType, DataType> = { float32: DataType.FLOAT, float16: DataType.FLOAT16, bfloat16: DataType.BFLOAT16 };

export interface ModelOverrides {
  attrs?: Partial<Record<"in_features" | "out_features" | "v" | "m" | "n", number>>;
  omitAttr?: string;
  valuesDims?: number[];
  columnsDims?: number[];
  metaDims?: number[];
  biasDims?: number[];
  /** Dims of the graph input A (default [...batch, K] with symbolic batch dims). */
  inputShape?: Dim[];
}

/** A one-node model: Y = VNMSparseGemm(A, values, columns, meta[, bias][, row_index]). */
export function layerModel(layer: PackedLayer, batchRank: number, o: ModelOverrides = {}): Model {
  const { spec, R, G } = layer;
  const g = new Graph("vnm_layer", new NameScope());
  const act = DT[spec.act];
  const inShape: Dim[] = o.inputShape ?? [...Array.from({ length: batchRank }, (_, i) => `b${i}`), spec.K];
  const A = g.createValue("A", { elemType: act, shape: inShape });
  g.inputs.push(A);
  const init = (name: string, type: DataType, dims: number[], bytes: Uint8Array) => g.addInitializer(name, new InMemoryTensor(type, dims, bytes));
  const values = init("values", DT[spec.values], o.valuesDims ?? [R, 2 * G], layer.valueBytes);
  const columns = init("columns", DataType.INT32, o.columnsDims ?? [R / spec.V, G, 4], bytesOf(layer.columns));
  const meta = init("meta", DataType.UINT8, o.metaDims ?? [R, Math.ceil(G / 2)], layer.meta.slice());
  const bias = layer.biasBytes ? init("bias", act, o.biasDims ?? [spec.N], layer.biasBytes) : null;
  const rowIndex = layer.rowIndex ? init("row_index", DataType.INT32, [R], bytesOf(layer.rowIndex)) : null;
  const inputs = [A, values, columns, meta, bias, rowIndex];
  while (inputs.length > 4 && inputs[inputs.length - 1] === null) inputs.pop();
  const attrs = { in_features: spec.K, out_features: spec.N, v: spec.V, m: spec.M, n: 2, ...o.attrs };
  const Y = g.createValue("Y", { elemType: act, shape: [...inShape.slice(0, -1), spec.N] });
  g.addNode({
    opType: "VNMSparseGemm",
    domain: "com.vnmc",
    name: "vnm_fc",
    inputs,
    outputs: [Y],
    attributes: Object.entries(attrs).filter(([k]) => k !== o.omitAttr).map(([k, v]) => intAttr(k, v)),
  });
  g.outputs.push(Y);
  const m = new Model(g);
  m.irVersion = 10;
  m.opsetImports = [{ domain: "", version: 18 }, { domain: "com.vnmc", version: 1 }];
  return m;
}

/** Y = A·Wᵀ + bias in float64, and Σ|a·w| per output (for the rounding bound). */
export function reference(layer: PackedLayer, A: Float32Array, rows: number): { y: Float64Array; mag: Float64Array } {
  const { K, N } = layer.spec;
  const y = new Float64Array(rows * N), mag = new Float64Array(rows * N);
  for (let t = 0; t < rows; t++) {
    for (let o = 0; o < N; o++) {
      let s = layer.bias32 ? layer.bias32[o]! : 0, a = Math.abs(s);
      for (let k = 0; k < K; k++) {
        s += A[t * K + k]! * layer.W[o * K + k]!;
        a += Math.abs(A[t * K + k]!) * layer.Wabs[o * K + k]!;
      }
      y[t * N + o] = s;
      mag[t * N + o] = a;
    }
  }
  return { y, mag };
}
