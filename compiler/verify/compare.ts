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

export function compareOutputs(name: string, got: Float64Array, ref: Float64Array, dims: readonly number[]): OutputComparison {
  let maxAbs = 0, maxRef = 0, diff2 = 0, ref2 = 0, got2 = 0, dot = 0;
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
  const c: OutputComparison = {
    name,
    maxAbsError: maxAbs,
    maxRelError: maxRef > 0 ? maxAbs / maxRef : maxAbs,
    relL2Error: ref2 > 0 ? Math.sqrt(diff2 / ref2) : Math.sqrt(diff2),
    cosine: ref2 > 0 && got2 > 0 ? dot / Math.sqrt(ref2 * got2) : ref2 === got2 ? 1 : 0,
  };
  const classes = dims[dims.length - 1] ?? 0;
  if (dims.length >= 2 && classes >= 2 && classes <= 100_000) {
    const rows = ref.length / classes;
    let same = 0;
    for (let r = 0; r < rows; r++) if (argmax(got, r * classes, classes) === argmax(ref, r * classes, classes)) same++;
    c.top1Agreement = same / rows;
  }
  return c;
}

function argmax(a: Float64Array, start: number, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (a[start + i]! > a[start + best]!) best = i;
  return best;
}
