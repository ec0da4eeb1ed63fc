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
export function transposeBytes(src: Uint8Array, rows: number, cols: number, size: 2 | 4): Uint8Array {
  const out = new Uint8Array(src.byteLength);
  if (size === 4) {
    const s = new Uint32Array(src.byteOffset % 4 ? src.slice().buffer : src.buffer, src.byteOffset % 4 ? 0 : src.byteOffset, rows * cols);
    const d = new Uint32Array(out.buffer);
    transposeInto(s, d, rows, cols);
  } else {
    const s = new Uint16Array(src.byteOffset % 2 ? src.slice().buffer : src.buffer, src.byteOffset % 2 ? 0 : src.byteOffset, rows * cols);
    const d = new Uint16Array(out.buffer);
    transposeInto(s, d, rows, cols);
  }
  return out;
}

function transposeInto(s: Uint32Array | Uint16Array, d: Uint32Array | Uint16Array, rows: number, cols: number): void {
  // Tiled so both sides stay in cache on large weights.
  const T = 64;
  for (let r0 = 0; r0 < rows; r0 += T) {
    const r1 = Math.min(rows, r0 + T);
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(cols, c0 + T);
      for (let r = r0; r < r1; r++) {
        const base = r * cols;
        for (let c = c0; c < c1; c++) d[c * rows + r] = s[base + c]!;
      }
    }
  }
}
