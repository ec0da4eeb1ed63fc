import type { Model } from "../ir/model.js";
import type { Node } from "../ir/node.js";
import type { Value } from "../ir/value.js";
import { decodeBf16, decodeF16 } from "../numeric/half.js";

export interface OutputComparison {
  name: string;
  maxAbsError: number;
  /** max |a − b| / max |b|: the largest error relative to the reference's scale. */
  maxRelError: number;
  /** ‖a − b‖₂ / ‖b‖₂ */
  relL2Error: number;
  cosine: number;
  /** For outputs whose last axis looks like class scores: fraction of rows with the same argmax. */
  top1Agreement?: number;
}

/** Float view of an onnxruntime tensor's data (float16 decoded). */
export function asFloat(type: string, data: unknown): Float64Array | undefined {
  switch (type) {
    case "float32":
    case "float64":
      return Float64Array.from(data as ArrayLike<number>);
    case "float16": {
      const d = data as Uint16Array;
      return Float64Array.from(decodeF16(new Uint16Array(d.buffer, d.byteOffset, d.length)));
    }
    case "bfloat16": {
      const d = data as Uint16Array;
      return Float64Array.from(decodeBf16(new Uint16Array(d.buffer, d.byteOffset, d.length)));
    }
    default:
      return undefined;
  }
}

/** Largest last axis still treated as class scores for top-1 agreement. */
const MAX_CLASSES = 100_000;

/**
 * Compares one output across several runs (e.g. calibration samples) without keeping them: sums
 * and maxima are accumulated run by run.
 */
export class OutputAccumulator {
  private maxAbs = 0;
  private maxRef = 0;
  private diff2 = 0;
  private ref2 = 0;
  private got2 = 0;
  private dot = 0;
  private rows = 0;
  private same = 0;
  private classLike: boolean;

  /** `classLike`: the output holds class scores on its last axis (top-1 agreement is measured). */
  constructor(readonly name: string, classLike = true) {
    this.classLike = classLike;
  }

  add(got: ArrayLike<number>, ref: ArrayLike<number>, dims: readonly number[]): void {
    let { maxAbs, maxRef, diff2, ref2, got2, dot } = this;
    for (let i = 0; i < ref.length; i++) {
      const a = got[i]!, b = ref[i]!;
      const d = Math.abs(a - b);
      if (d > maxAbs || Number.isNaN(d)) maxAbs = Number.isNaN(d) ? Infinity : d;
      maxRef = Math.max(maxRef, Math.abs(b));
      diff2 += (a - b) ** 2;
      ref2 += b * b;
      got2 += a * a;
      dot += a * b;
    }
    this.maxAbs = maxAbs;
    this.maxRef = maxRef;
    this.diff2 = diff2;
    this.ref2 = ref2;
    this.got2 = got2;
    this.dot = dot;
    const classes = dims[dims.length - 1] ?? 0;
    if (!this.classLike) return;
    if (dims.length >= 2 && classes >= 2 && classes <= MAX_CLASSES) {
      const rows = ref.length / classes;
      for (let r = 0; r < rows; r++) if (argmax(got, r * classes, classes) === argmax(ref, r * classes, classes)) this.same++;
      this.rows += rows;
    } else {
      this.classLike = false;
    }
  }

  result(): OutputComparison {
    const { maxAbs, maxRef, diff2, ref2, got2, dot } = this;
    const c: OutputComparison = {
      name: this.name,
      maxAbsError: maxAbs,
      maxRelError: maxRef > 0 ? maxAbs / maxRef : maxAbs,
      relL2Error: ref2 > 0 ? Math.sqrt(diff2 / ref2) : Math.sqrt(diff2),
      cosine: ref2 > 0 && got2 > 0 ? dot / Math.sqrt(ref2 * got2) : ref2 === got2 ? 1 : 0,
    };
    if (this.classLike && this.rows > 0) c.top1Agreement = this.same / this.rows;
    return c;
  }
}

export function compareOutputs(name: string, got: Float64Array, ref: Float64Array, dims: readonly number[], classLike = true): OutputComparison {
  const acc = new OutputAccumulator(name, classLike);
  acc.add(got, ref, dims);
  return acc.result();
}

function argmax(a: ArrayLike<number>, start: number, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (a[start + i]! > a[start + best]!) best = i;
  return best;
}

/** Ops a class-score output may pass through after the layer that computes it. */
const PASS_THROUGH = new Set(["Add", "Reshape", "Identity", "Flatten", "Squeeze", "Unsqueeze", "Cast", "Mul", "Div"]);
/** Ops that compute class scores (a linear head, or a normalisation of scores). */
const HEADS = new Set(["MatMul", "Gemm", "Softmax", "LogSoftmax", "Sigmoid", "com.vnmc::VNMSparseGemm"]);

/**
 * Names of the graph outputs that look like class scores: named so (logits, probs, scores, ...), or
 * computed by a linear head or a softmax, possibly followed by a bias, reshape or scaling. Hidden
 * states (after a norm or an activation) are not: their argmax means nothing.
 */
export function classifierOutputs(model: Model): Set<string> {
  const out = new Set<string>();
  for (const v of model.graph.outputs) {
    if (/logit|prob|class|score|pred/i.test(v.name)) {
      out.add(v.name);
      continue;
    }
    let cur: Value | null = v;
    for (let steps = 0; cur && steps < 8; steps++) {
      const p: Node | null = cur.producer;
      if (!p) break;
      if (HEADS.has(p.qualifiedType)) {
        out.add(v.name);
        break;
      }
      if (!PASS_THROUGH.has(p.qualifiedType)) break;
      // Follow the non-constant input (the bias or scale of an Add/Mul is a constant).
      cur = p.inputs.find((x) => x && !x.initializer && x.producer?.opType !== "Constant") ?? null;
    }
  }
  return out;
}
