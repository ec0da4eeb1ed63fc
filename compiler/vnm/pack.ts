/**
 * Packing: the `values` and `row_index` tensors of the V:N:M format from a selection.
 * Values are copied as raw elements, so every kept weight keeps its exact bit pattern in any dtype.
 */
import type { VnmSelection } from './select.js';

export type ElementBytes = 1 | 2 | 4 | 8;

/**
 * values [R, 2G] as raw little-endian elements: values[r, j] = W[r, src[r, j]], or zero where
 * src is -1 (padding rows and slots). `weight` holds W [outFeatures, inFeatures] row-major, or with
 * `layout: 'in-out'` its transpose [inFeatures, outFeatures] (MatMul's B as stored, saving a transpose).
 */
export function gatherValues(sel: VnmSelection, weight: Uint8Array, elementBytes: ElementBytes, layout: 'out-in' | 'in-out' = 'out-in'): Uint8Array {
  const { outFeatures, inFeatures: K, rows: R, groups: G } = sel;
  if (elementBytes !== 1 && elementBytes !== 2 && elementBytes !== 4 && elementBytes !== 8) {
    throw new RangeError(`gatherValues: element size must be 1, 2, 4 or 8 bytes (got ${String(elementBytes)})`);
  }
  if (weight.byteLength !== outFeatures * K * elementBytes) {
    throw new RangeError(
      `gatherValues: weight has ${weight.byteLength} bytes, expected ${outFeatures} x ${K} x ${elementBytes}`,
    );
  }
  const out = new Uint8Array(R * 2 * G * elementBytes);
  // Whole elements are copied through an integer view of their width (8-byte ones as two 32-bit
  // words), with one loop per view type so that each stays monomorphic for the JIT. A weight that
  // is not aligned for its view is copied once to an aligned buffer.
  const wordBytes = elementBytes === 8 ? 4 : elementBytes;
  const aligned = weight.byteOffset % wordBytes === 0 ? weight : weight.slice();
  const { buffer, byteOffset, byteLength } = aligned;
  // Element (r, col) of W sits at r * rowStride + col * colStride.
  const [rowStride, colStride] = layout === 'out-in' ? [K, 1] : [1, outFeatures];
  if (elementBytes === 1) {
    gatherBytes(sel, aligned, out, rowStride, colStride);
  } else if (elementBytes === 2) {
    gatherHalfWords(sel, new Uint16Array(buffer, byteOffset, byteLength / 2), new Uint16Array(out.buffer), rowStride, colStride);
  } else {
    gatherWords(sel, new Uint32Array(buffer, byteOffset, byteLength / 4), new Uint32Array(out.buffer), elementBytes / 4, rowStride, colStride);
  }
  return out;
}

function gatherBytes(sel: VnmSelection, from: Uint8Array, to: Uint8Array, rowStride: number, colStride: number): void {
  const { outFeatures, inFeatures: K, groups: G, src } = sel;
  const twoG = 2 * G;
  for (let r = 0; r < outFeatures; r++) {
    const rowFrom = r * rowStride;
    const rowTo = r * twoG;
    for (let j = 0; j < twoG; j++) {
      const col = src[rowTo + j]!;
      if (col >= 0) to[rowTo + j] = from[rowFrom + col * colStride]!;
    }
  }
}

function gatherHalfWords(sel: VnmSelection, from: Uint16Array, to: Uint16Array, rowStride: number, colStride: number): void {
  const { outFeatures, inFeatures: K, groups: G, src } = sel;
  const twoG = 2 * G;
  for (let r = 0; r < outFeatures; r++) {
    const rowFrom = r * rowStride;
    const rowTo = r * twoG;
    for (let j = 0; j < twoG; j++) {
      const col = src[rowTo + j]!;
      if (col >= 0) to[rowTo + j] = from[rowFrom + col * colStride]!;
    }
  }
}

/** `words` 32-bit words per element (1 or 2). */
function gatherWords(sel: VnmSelection, from: Uint32Array, to: Uint32Array, words: number, rowStride: number, colStride: number): void {
  const { outFeatures, inFeatures: K, groups: G, src } = sel;
  const twoG = 2 * G;
  for (let r = 0; r < outFeatures; r++) {
    const rowFrom = r * rowStride;
    const rowTo = r * twoG;
    for (let j = 0; j < twoG; j++) {
      const col = src[rowTo + j]!;
      if (col < 0) continue;
      const at = (rowTo + j) * words;
      const atFrom = (rowFrom + col * colStride) * words;
      to[at] = from[atFrom]!;
      if (words === 2) to[at + 1] = from[atFrom + 1]!;
    }
  }
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
  for (let i = 0; i < columns.length; i++) {
    const g = Math.floor(i / 4) % groups;
    const c = columns[i]!;
    if (c < g * m || c >= g * m + m) return false;
  }
  return true;
}
