/**
 * Packing: the `values` and `row_index` tensors of the V:N:M format from a selection.
 * Values are copied as raw elements, so every kept weight keeps its exact bit pattern in any dtype.
 */
import type { VnmSelection } from './select.js';

export type ElementBytes = 1 | 2 | 4 | 8;

/**
 * values [R, 2G] as raw little-endian elements: values[r, j] = W[r, src[r, j]], or zero where
 * src is -1 (padding rows and slots). `weight` holds W [outFeatures, inFeatures] row-major.
 */
export function gatherValues(sel: VnmSelection, weight: Uint8Array, elementBytes: ElementBytes): Uint8Array {
  const { outFeatures, inFeatures: K, rows: R, groups: G, src } = sel;
  if (elementBytes !== 1 && elementBytes !== 2 && elementBytes !== 4 && elementBytes !== 8) {
    throw new RangeError(`gatherValues: element size must be 1, 2, 4 or 8 bytes (got ${String(elementBytes)})`);
  }
  if (weight.byteLength !== outFeatures * K * elementBytes) {
    throw new RangeError(
      `gatherValues: weight has ${weight.byteLength} bytes, expected ${outFeatures} x ${K} x ${elementBytes}`,
    );
  }
  const twoG = 2 * G;
  const out = new Uint8Array(R * twoG * elementBytes);
  // Copy whole elements through an integer view of the element's width (8-byte elements as two
  // 32-bit words); a weight that is not aligned for that view is copied once to an aligned buffer.
  const wordBytes = elementBytes === 8 ? 4 : elementBytes;
  const words = elementBytes === 8 ? 2 : 1;
  const aligned = weight.byteOffset % wordBytes === 0 ? weight : weight.slice();
  const from = wordView(aligned, wordBytes);
  const to = wordView(out, wordBytes);
  for (let r = 0; r < outFeatures; r++) {
    const rowFrom = r * K;
    const rowTo = r * twoG;
    if (words === 1) {
      for (let j = 0; j < twoG; j++) {
        const col = src[rowTo + j]!;
        if (col >= 0) to[rowTo + j] = from[rowFrom + col]!;
      }
    } else {
      for (let j = 0; j < twoG; j++) {
        const col = src[rowTo + j]!;
        if (col >= 0) {
          to[2 * (rowTo + j)] = from[2 * (rowFrom + col)]!;
          to[2 * (rowTo + j) + 1] = from[2 * (rowFrom + col) + 1]!;
        }
      }
    }
  }
  return out;
}

function wordView(bytes: Uint8Array, wordBytes: 1 | 2 | 4): Uint8Array | Uint16Array | Uint32Array {
  const { buffer, byteOffset, byteLength } = bytes;
  if (wordBytes === 1) return bytes;
  if (wordBytes === 2) return new Uint16Array(buffer, byteOffset, byteLength / 2);
  return new Uint32Array(buffer, byteOffset, byteLength / 4);
}

/** row_index [R] without output permutation: r for real rows, -1 for padding rows. */
export function identityRowIndex(outFeatures: number, R: number): Int32Array {
  const rowIndex = new Int32Array(R);
  for (let r = 0; r < R; r++) rowIndex[r] = r < outFeatures ? r : -1;
  return rowIndex;
}

/**
 * True when every index of group g lies in [g*M, g*M + M) ("windowed": no input permutation),
 * which lets kernels take a faster path. `columns` is [blocks, groups, 4].
 */
export function isWindowed(columns: Int32Array, groups: number, m: number): boolean {
  if (groups === 0) return true;
  const perBlock = groups * 4;
  for (let i = 0; i < columns.length; i++) {
    const g = Math.floor((i % perBlock) / 4);
    const c = columns[i]!;
    if (c < g * m || c >= g * m + m) return false;
  }
  return true;
}
