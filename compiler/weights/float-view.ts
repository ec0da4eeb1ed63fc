import { DataType } from "../ir/dtype.js";
import { decodeBf16, decodeF16, encodeBf16, encodeF16 } from "../numeric/half.js";

/** The float weight types vnmc prunes. */
export const PRUNABLE_TYPES: readonly number[] = [DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16];

export function elementSize(dt: number): 2 | 4 {
  return dt === DataType.FLOAT ? 4 : 2;
}

/** Decode raw little-endian weights of a prunable type to float32 (aligned copy when needed). */
export function toFloat32(bytes: Uint8Array, dt: number): Float32Array {
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  if (dt === DataType.FLOAT) return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
  const u16 = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2);
  if (dt === DataType.FLOAT16) return decodeF16(u16);
  if (dt === DataType.BFLOAT16) return decodeBf16(u16);
  throw new Error(`internal: cannot decode data type ${dt} as float`);
}

/** Encode float32 values as raw bytes of a prunable type (round to nearest even). */
export function fromFloat32(values: Float32Array, dt: number): Uint8Array {
  if (dt === DataType.FLOAT) return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const u16 = dt === DataType.FLOAT16 ? encodeF16(values) : dt === DataType.BFLOAT16 ? encodeBf16(values) : undefined;
  if (!u16) throw new Error(`internal: cannot encode data type ${dt}`);
  return new Uint8Array(u16.buffer, u16.byteOffset, u16.byteLength);
}

/** Transpose a row-major [rows, cols] matrix of `size`-byte elements. */
export function transposeBytes(src: Uint8Array, rows: number, cols: number, size: 2 | 4, into?: Uint8Array): Uint8Array {
  const out = into ? into.subarray(0, src.byteLength) : new Uint8Array(src.byteLength);
  const aligned = src.byteOffset % size === 0 ? src : src.slice();
  if (size === 4) transpose32(new Int32Array(aligned.buffer, aligned.byteOffset, rows * cols), new Int32Array(out.buffer, out.byteOffset, rows * cols), rows, cols);
  else transpose16(new Uint16Array(aligned.buffer, aligned.byteOffset, rows * cols), new Uint16Array(out.buffer, out.byteOffset, rows * cols), rows, cols);
  return out;
}

// Two monomorphic copies: one function over both array types would deoptimise in V8.
// Tiled so both sides stay in cache on large weights.
const TILE = 32;
function transpose32(s: Int32Array, d: Int32Array, rows: number, cols: number): void {
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    const r1 = Math.min(rows, r0 + TILE);
    for (let c0 = 0; c0 < cols; c0 += TILE) {
      const c1 = Math.min(cols, c0 + TILE);
      for (let c = c0; c < c1; c++) {
        const dst = c * rows;
        for (let r = r0; r < r1; r++) d[dst + r] = s[r * cols + c]!;
      }
    }
  }
}
function transpose16(s: Uint16Array, d: Uint16Array, rows: number, cols: number): void {
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    const r1 = Math.min(rows, r0 + TILE);
    for (let c0 = 0; c0 < cols; c0 += TILE) {
      const c1 = Math.min(cols, c0 + TILE);
      for (let c = c0; c < c1; c++) {
        const dst = c * rows;
        for (let r = r0; r < r1; r++) d[dst + r] = s[r * cols + c]!;
      }
    }
  }
}

let absF16: Int32Array | undefined;
/** float32 bits of |x| for every fp16 bit pattern with the sign cleared. */
function absF16Table(): Int32Array {
  if (!absF16) {
    const f = decodeF16(Uint16Array.from({ length: 32768 }, (_, i) => i));
    absF16 = new Int32Array(f.buffer);
  }
  return absF16;
}

/**
 * |W| as float32 scores [out, in], straight from the raw bits (no intermediate float copy), reading the
 * weight as stored: [out, in], or [in, out] when `transposed` (the transposition happens on the fly).
 * Also counts the nonzeros.
 */
export function absScores(
  raw: Uint8Array, dt: number, out: number, inF: number, transposed: boolean, into?: Uint8Array, rawInto?: Uint8Array,
): { score: Float32Array; nonzeros: number; rawOutIn: Uint8Array } {
  const aligned = raw.byteOffset % 4 === 0 ? raw : raw.slice();
  const n = out * inF;
  const score = into ? new Float32Array(into.buffer, into.byteOffset, n) : new Float32Array(n);
  const o = new Int32Array(score.buffer, score.byteOffset, n);
  // As bits: |x| clears the sign; fp16 goes through a table, bf16 is the top half of a float32.
  let bits: Int32Array | Uint16Array;
  let table: Int32Array | undefined;
  let shift = 0;
  if (dt === DataType.FLOAT) bits = new Int32Array(aligned.buffer, aligned.byteOffset, n);
  else if (dt === DataType.FLOAT16) (bits = new Uint16Array(aligned.buffer, aligned.byteOffset, n)), (table = absF16Table());
  else if (dt === DataType.BFLOAT16) (bits = new Uint16Array(aligned.buffer, aligned.byteOffset, n)), (shift = 16);
  else throw new Error(`internal: no scores for data type ${dt}`);
  // Transposed reads also write W [out, in] (cheap while the tile is in cache) for the gather.
  const rawOutIn = transposed ? (rawInto ? rawInto.subarray(0, aligned.byteLength) : new Uint8Array(aligned.byteLength)) : aligned;
  if (bits instanceof Int32Array) {
    if (transposed) absT32(bits, o, new Int32Array(rawOutIn.buffer, rawOutIn.byteOffset, n), out, inF);
    else abs32(bits, o);
  } else {
    const t16 = new Uint16Array(rawOutIn.buffer, rawOutIn.byteOffset, n);
    if (table) transposed ? absT16Table(bits, o, t16, table, out, inF) : abs16Table(bits, o, table);
    else transposed ? absT16Shift(bits, o, t16, shift, out, inF) : abs16Shift(bits, o, shift);
  }
  return { score, nonzeros: countNonzero(o), rawOutIn };
}

function countNonzero(o: Int32Array): number {
  let n = 0;
  for (let i = 0; i < o.length; i++) if (o[i] !== 0) n++;
  return n;
}

// One monomorphic loop per element type and orientation. Transposed reads walk a tile of the stored
// [in, out] matrix so both sides stay in cache.
function abs32(s: Int32Array, o: Int32Array): void {
  for (let i = 0; i < o.length; i++) o[i] = s[i]! & 0x7fffffff;
}
function abs16Table(s: Uint16Array, o: Int32Array, t: Int32Array): void {
  for (let i = 0; i < o.length; i++) o[i] = t[s[i]! & 0x7fff]!;
}
function abs16Shift(s: Uint16Array, o: Int32Array, shift: number): void {
  for (let i = 0; i < o.length; i++) o[i] = (s[i]! & 0x7fff) << shift;
}
function absT32(s: Int32Array, o: Int32Array, t: Int32Array, out: number, inF: number): void {
  for (let k0 = 0; k0 < inF; k0 += TILE) {
    const k1 = Math.min(inF, k0 + TILE);
    for (let r0 = 0; r0 < out; r0 += TILE) {
      const r1 = Math.min(out, r0 + TILE);
      for (let r = r0; r < r1; r++) {
        for (let k = k0; k < k1; k++) {
          const x = s[k * out + r]!;
          t[r * inF + k] = x;
          o[r * inF + k] = x & 0x7fffffff;
        }
      }
    }
  }
}
function absT16Table(s: Uint16Array, o: Int32Array, w: Uint16Array, t: Int32Array, out: number, inF: number): void {
  for (let k0 = 0; k0 < inF; k0 += TILE) {
    const k1 = Math.min(inF, k0 + TILE);
    for (let r0 = 0; r0 < out; r0 += TILE) {
      const r1 = Math.min(out, r0 + TILE);
      for (let r = r0; r < r1; r++) {
        for (let k = k0; k < k1; k++) {
          const x = s[k * out + r]!;
          w[r * inF + k] = x;
          o[r * inF + k] = t[x & 0x7fff]!;
        }
      }
    }
  }
}
function absT16Shift(s: Uint16Array, o: Int32Array, w: Uint16Array, shift: number, out: number, inF: number): void {
  for (let k0 = 0; k0 < inF; k0 += TILE) {
    const k1 = Math.min(inF, k0 + TILE);
    for (let r0 = 0; r0 < out; r0 += TILE) {
      const r1 = Math.min(out, r0 + TILE);
      for (let r = r0; r < r1; r++) {
        for (let k = k0; k < k1; k++) {
          const x = s[k * out + r]!;
          w[r * inF + k] = x;
          o[r * inF + k] = (x & 0x7fff) << shift;
        }
      }
    }
  }
}
