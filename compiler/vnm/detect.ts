/**
 * Recognises a weight that already has the V:N:M pattern (e.g. fine-tuned to it), so that it can be
 * packed exactly instead of pruned again. Packing such a weight with any positive score on its
 * nonzeros (|W| for instance) keeps every nonzero: the optimum then covers them all.
 */
import { packedShape, validateVnm, type VnmConfig } from './config.js';

/**
 * True when W [outFeatures, inFeatures] (row-major) satisfies the pattern exactly: every row has at
 * most 2 nonzeros in each group of M columns, and each (block of V rows, group) has at most 4
 * distinct columns holding nonzeros. NaN counts as nonzero.
 */
export function detectExistingVnm(W: Float32Array, outFeatures: number, inFeatures: number, cfg: VnmConfig): boolean {
  if (W.length !== outFeatures * inFeatures) {
    throw new RangeError(`detectExistingVnm: W has ${W.length} elements, expected ${outFeatures} x ${inFeatures}`);
  }
  const { v, m } = validateVnm(cfg);
  const { G, blocks } = packedShape(outFeatures, inFeatures, cfg);
  const K = inFeatures;
  for (let b = 0; b < blocks; b++) {
    const rowEnd = Math.min(outFeatures, (b + 1) * v);
    for (let g = 0; g < G; g++) {
      const c0 = g * m;
      const c1 = Math.min(K, c0 + m);
      let usedColumns = 0; // bit per column of the group (m <= 32)
      for (let r = b * v; r < rowEnd; r++) {
        let rowNonzeros = 0;
        for (let k = c0; k < c1; k++) {
          if (W[r * K + k] !== 0) {
            rowNonzeros++;
            usedColumns |= 1 << (k - c0);
          }
        }
        if (rowNonzeros > 2) return false;
      }
      if (popcount(usedColumns) > 4) return false;
    }
  }
  return true;
}

function popcount(x: number): number {
  let n = 0;
  for (let y = x >>> 0; y !== 0; y &= y - 1) n++;
  return n;
}
