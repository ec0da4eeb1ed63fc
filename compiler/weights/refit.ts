/**
 * Exact refits of a pruned weight's kept values for the quadratic objective SparseGPT minimises, and a
 * local search over each row's 2-of-4 choice under that exact objective. Pure numeric code: no I/O.
 *
 * Per output row, with t the row's target weights (W, or the error-correcting W' of sparsegpt.ts) and
 * Hd = XᵀX + damping (symmetric positive definite), a mask S costs
 *   f(S) = min over ŵ supported on S of (t − ŵ)ᵀ·Hd·(t − ŵ) = tᵀHd·t − b_Sᵀ·(Hd_SS)⁻¹·b_S,  b = Hd·t,
 * attained at ŵ_S = (Hd_SS)⁻¹·b_S. The greedy OBS pass only approximates this optimum for its mask.
 *
 * The local search swaps one kept weight q of a (row, group) for one of the block's other kept
 * columns j of that group (so the V:N:M pattern, and the block's 4 columns, stay as they are), when
 * that lowers f exactly. With A⁻¹ = (Hd_SS)⁻¹ and x = A⁻¹·b_S (slot p holding q), u = Hd[S, j],
 * z = A⁻¹·u:
 *   dropping q changes b_Sᵀ·A⁻¹·b_S by −x_p² / A⁻¹_pp, and then adding j by r² / s with
 *   s = Hd_jj − (u·z − z_p² / A⁻¹_pp) and r = b_j − (u·x − z_p·x_p / A⁻¹_pp);
 * a swap is kept when the sum is positive, and A⁻¹ is updated in O(|S|²) (a rank-one removal, then a
 * bordered inverse). Every row is independent; everything runs in float64 in a fixed order.
 */

import { choleskyLower, choleskySolve, dot } from "../numeric/cholesky.js";

/** A swap is evaluated exactly only if it may lower the row's error by more than this fraction of it. */
export const MIN_SWAP_GAIN = 0;

/** Hd [K, K]: H with dead diagonal entries (0) set to 1, plus λ on the diagonal (as sparsegpt.ts factors it). */
export function dampedHessian(H: Float64Array, diag: Float64Array, K: number, lambda: number): Float64Array {
  const Hd = Float64Array.from(H);
  for (let k = 0; k < K; k++) Hd[k * K + k] = (diag[k]! === 0 ? 1 : diag[k]!) + lambda;
  return Hd;
}

export interface RefitOptions {
  /**
   * [R/V, G, 4] block columns (a VnmSelection's `columns`) with the block height V and group width M:
   * enables the local search over each row's 2 of the block's 4 columns, `sweeps` passes at most.
   */
  search?: {
    columns: Int32Array; v: number; m: number; sweeps: number;
    /** diag(Hd⁻¹) [K]: bounds a swap's gain by ρ_j²·(Hd⁻¹)_jj (ρ = Hd·(t − ŵ)), so most candidates need no exact evaluation. */
    inverseDiag: Float64Array;
  };
}

/**
 * Per row r, the kept weights (keep[r, ·] = 1) of Wk [out, K] become the optimum ŵ_S = (Hd_SS)⁻¹·(Hd·t_r)_S;
 * pruned ones stay 0. With `search`, keep is first changed by improving swaps (see above). A row
 * whose system does not factor (rounding; Hd is positive definite) keeps its weights and mask.
 * Returns the number of swaps made.
 */
export function refitKept(
  Wk: Float64Array, target: Float64Array, Hd: Float64Array, keep: Uint8Array, out: number, K: number, opts: RefitOptions = {},
): number {
  const idx = new Int32Array(K);
  const A = new Float64Array(K * K);
  const b = new Float64Array(K);
  const bFull = new Float64Array(K);
  const work = opts.search ? new SearchWork(K) : undefined;
  let swaps = 0;
  for (let r = 0; r < out; r++) {
    const row = r * K;
    if (opts.search) {
      matVec(Hd, target, row, K, bFull);
      const tHt = dot(target, row, bFull, 0, K);
      swaps += searchRow(Hd, bFull, tHt, keep, row, r, K, opts.search, work!);
    }
    let n = 0;
    for (let k = 0; k < K; k++) if (keep[row + k] !== 0) idx[n++] = k;
    if (n === 0) continue;
    if (!opts.search) matVec(Hd, target, row, K, bFull);
    for (let i = 0; i < n; i++) {
      const hi = idx[i]! * K;
      for (let j = 0; j < n; j++) A[i * n + j] = Hd[hi + idx[j]!]!;
      b[i] = bFull[idx[i]!]!;
    }
    if (!choleskyLower(A, n)) continue;
    choleskySolve(A, b, n);
    for (let k = 0; k < K; k++) if (keep[row + k] === 0) Wk[row + k] = 0;
    for (let i = 0; i < n; i++) Wk[row + idx[i]!] = b[i]!;
  }
  return swaps;
}

/** out[k] = Σ_j Hd[k, j]·t[row + j]. */
function matVec(Hd: Float64Array, t: Float64Array, row: number, K: number, out: Float64Array): void {
  for (let k = 0; k < K; k++) out[k] = dot(Hd, k * K, t, row, K);
}

class SearchWork {
  readonly idx: Int32Array;
  readonly slotOf: Int32Array;
  readonly Ainv: Float64Array;
  readonly L: Float64Array;
  readonly M: Float64Array;
  readonly b: Float64Array;
  readonly x: Float64Array;
  readonly u: Float64Array;
  readonly z: Float64Array[];
  constructor(K: number) {
    this.idx = new Int32Array(K);
    this.slotOf = new Int32Array(K);
    this.Ainv = new Float64Array(K * K);
    this.L = new Float64Array(K * K);
    this.M = new Float64Array(K * K);
    this.b = new Float64Array(K);
    this.x = new Float64Array(K);
    this.u = new Float64Array(K);
    this.z = [new Float64Array(K), new Float64Array(K)];
  }
}

/** The improving swaps of one row (see the module comment); keep[row + ·] is updated. */
function searchRow(
  Hd: Float64Array, bFull: Float64Array, tHt: number, keep: Uint8Array, row: number, r: number, K: number,
  search: NonNullable<RefitOptions["search"]>, w: SearchWork,
): number {
  const { columns, v, m, inverseDiag } = search;
  const G = Math.ceil(K / m);
  const block = Math.floor(r / v);
  const { idx, slotOf, Ainv, L, b, x, u } = w;
  let n = 0;
  slotOf.fill(-1);
  for (let k = 0; k < K; k++) if (keep[row + k] !== 0) (slotOf[k] = n), (idx[n++] = k);
  if (n === 0) return 0;
  let swaps = 0;
  for (let sweep = 0; sweep < search.sweeps; sweep++) {
    // A fresh inverse each sweep (the rank-one updates drift).
    for (let i = 0; i < n; i++) {
      const hi = idx[i]! * K;
      for (let j = 0; j < n; j++) L[i * n + j] = Hd[hi + idx[j]!]!;
      b[i] = bFull[idx[i]!]!;
    }
    if (!choleskyLower(L, n)) return swaps;
    inverseFromCholesky(L, Ainv, n, w.M);
    symMatVec(Ainv, b, x, n);
    let gains = 0;
    let scale = 0;
    for (let i = 0; i < n; i++) scale += b[i]! * x[i]!;
    for (let g = 0; g < G; g++) {
      const c4 = (block * G + g) * 4;
      // The row's kept slots in this group and the block's other columns (distinct, not kept).
      let p0 = -1, p1 = -1, j0 = -1, j1 = -1;
      const lo = g * m, hi = Math.min(K, lo + m);
      for (let q = 0; q < 4; q++) {
        const c = columns[c4 + q]!;
        if (c < lo || c >= hi || (q > 0 && columns[c4 + q - 1] === c)) continue;
        if (slotOf[c]! >= 0) {
          if (p0 < 0) p0 = slotOf[c]!;
          else p1 = slotOf[c]!;
        } else if (j0 < 0) j0 = c;
        else if (j1 !== c) j1 = c;
      }
      if (p0 < 0 || j0 < 0) continue;
      // Swaps that gain less than MIN_SWAP_GAIN of the row's current error are not worth an evaluation.
      let best = Math.max(1e-12 * scale, MIN_SWAP_GAIN * (tHt - scale)), bestP = -1, bestJ = -1, bestZ = -1;
      for (let jj = 0; jj < 2; jj++) {
        const j = jj === 0 ? j0 : j1;
        if (j < 0) continue;
        const hj = j * K;
        for (let i = 0; i < n; i++) u[i] = Hd[hj + idx[i]!]!;
        const ux = dot(u, 0, x, 0, n);
        // gain <= ρ_j² / s_j <= ρ_j²·(Hd⁻¹)_jj: the Schur complement of j given S is at least the one given every other column.
        const rho = bFull[j]! - ux;
        if (rho * rho * inverseDiag[j]! <= best) continue;
        const z = w.z[jj]!;
        symMatVec(Ainv, u, z, n);
        const uz = dot(u, 0, z, 0, n);
        for (const p of [p0, p1]) {
          if (p < 0) continue;
          const a = Ainv[p * n + p]!;
          const s = Hd[hj + j]! - (uz - (z[p]! * z[p]!) / a);
          if (!(s > 0)) continue;
          const res = bFull[j]! - (ux - (z[p]! * x[p]!) / a);
          const gain = (res * res) / s - (x[p]! * x[p]!) / a;
          if (gain > best) (best = gain), (bestP = p), (bestJ = j), (bestZ = jj);
        }
      }
      if (bestP < 0) continue;
      swapSlot(Ainv, w.z[bestZ]!, Hd[bestJ * K + bestJ]!, u, idx, Hd, K, bestP, bestJ, n);
      keep[row + idx[bestP]!] = 0; // (idx[bestP] is still q until below)
      slotOf[idx[bestP]!] = -1;
      idx[bestP] = bestJ;
      slotOf[bestJ] = bestP;
      keep[row + bestJ] = 1;
      b[bestP] = bFull[bestJ]!;
      symMatVec(Ainv, b, x, n);
      gains += best;
      swaps++;
    }
    if (!(gains > 1e-9 * scale)) break;
  }
  return swaps;
}

/**
 * A⁻¹ for S with slot p's column replaced by j, from A⁻¹ and z = A⁻¹·Hd[S, j] (S before the swap):
 * remove slot p (P = A⁻¹ − a·aᵀ/a_p, a = A⁻¹[:, p]; P's row and column p are 0), then border with j:
 * z' = P·u = z − a·z_p/a_p, s = Hd_jj − u·z', P + z'z'ᵀ/s and row/column p = −z'/s, 1/s.
 */
function swapSlot(Ainv: Float64Array, z: Float64Array, hjj: number, u: Float64Array, idx: Int32Array, Hd: Float64Array, K: number, p: number, j: number, n: number): void {
  const ap = Ainv[p * n + p]!;
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = Ainv[i * n + p]!;
  const zp = z[p]!;
  for (let i = 0; i < n; i++) {
    const ai = a[i]! / ap;
    const ri = i * n;
    for (let k = 0; k < n; k++) Ainv[ri + k] = Ainv[ri + k]! - ai * a[k]!;
  }
  const zz = new Float64Array(n);
  for (let i = 0; i < n; i++) zz[i] = z[i]! - (a[i]! * zp) / ap;
  zz[p] = 0;
  const hj = j * K;
  let uz = 0;
  for (let i = 0; i < n; i++) if (i !== p) uz += Hd[hj + idx[i]!]! * zz[i]!;
  const s = hjj - uz;
  for (let i = 0; i < n; i++) {
    const zi = zz[i]! / s;
    const ri = i * n;
    for (let k = 0; k < n; k++) Ainv[ri + k] = Ainv[ri + k]! + zi * zz[k]!;
  }
  for (let i = 0; i < n; i++) (Ainv[i * n + p] = -zz[i]! / s), (Ainv[p * n + i] = -zz[i]! / s);
  Ainv[p * n + p] = 1 / s;
  void u;
}

/** y = A·v for A [n, n] row-major. */
function symMatVec(A: Float64Array, v: Float64Array, y: Float64Array, n: number): void {
  for (let i = 0; i < n; i++) y[i] = dot(A, i * n, v, 0, n);
}

/**
 * (L·Lᵀ)⁻¹ [n, n] from the lower Cholesky factor L (lower triangle of A): M = L⁻¹ row by row
 * (M[i, :] = (e_i − Σ_{p<i} L[i, p]·M[p, :]) / L[i, i]), then MᵀM as a sum of rank-one terms of M's rows.
 */
function inverseFromCholesky(L: Float64Array, out: Float64Array, n: number, M: Float64Array): void {
  M.fill(0, 0, n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let p = 0; p < i; p++) {
      const l = L[ri + p]!;
      if (l === 0) continue;
      const rp = p * n;
      for (let j = 0; j <= p; j++) M[ri + j] = M[ri + j]! - l * M[rp + j]!;
    }
    const inv = 1 / L[ri + i]!;
    for (let j = 0; j < i; j++) M[ri + j] = M[ri + j]! * inv;
    M[ri + i] = inv;
  }
  out.fill(0, 0, n * n);
  for (let p = 0; p < n; p++) {
    const rp = p * n;
    for (let i = 0; i <= p; i++) {
      const m = M[rp + i]!;
      if (m === 0) continue;
      const ri = i * n;
      for (let j = 0; j <= i; j++) out[ri + j] = out[ri + j]! + m * M[rp + j]!;
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) out[j * n + i] = out[i * n + j]!;
}
