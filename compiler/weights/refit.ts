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
 * bordered inverse, in one pass) and x in O(|S|). Since s >= 1/(Hd⁻¹)_jj, a candidate whose bound
 * r²·(Hd⁻¹)_jj − x_p²/A⁻¹_pp (O(|S|) with z_p = A⁻¹[p, :]·u) cannot beat the best gain so far is
 * skipped without computing z. A searched row's final refit is one step of iterative refinement from
 * the search's x. Every row is independent; everything runs in float64 in a fixed order.
 */

import { choleskyLower, choleskySolve, dot } from "../numeric/cholesky.js";

/** A swap is evaluated exactly only if it may lower the row's error by more than this fraction of it. */
export const MIN_SWAP_GAIN = 0;
/** Relative slack on the screening bound of a swap's gain, so that rounding never screens out a swap the exact evaluation would make. */
const SCREEN_SLACK = 1e-9;

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
      if (work!.solved) {
        // The search kept A⁻¹ and x = A⁻¹·b of the final mask up to date: one step of iterative
        // refinement (x += A⁻¹·(b − A·x), 2·|S|² instead of a new factorisation) gives the refit.
        refineSolution(Hd, bFull, K, work!);
        for (let k = 0; k < K; k++) if (keep[row + k] === 0) Wk[row + k] = 0;
        for (let i = 0; i < work!.n; i++) Wk[row + work!.idx[i]!] = work!.x[i]!;
        continue;
      }
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

/** x += A⁻¹·(b − A·x) for the search's final mask (A = Hd_SS, b = (Hd·t)_S). */
function refineSolution(Hd: Float64Array, bFull: Float64Array, K: number, w: SearchWork): void {
  const { idx, x, Ainv, u, zz: res, n } = w;
  for (let i = 0; i < n; i++) {
    const hi = idx[i]! * K;
    for (let k = 0; k < n; k++) u[k] = Hd[hi + idx[k]!]!;
    res[i] = bFull[idx[i]!]! - dot(u, 0, x, 0, n);
  }
  for (let i = 0; i < n; i++) x[i] = x[i]! + dot(Ainv, i * n, res, 0, n);
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
  readonly a: Float64Array;
  readonly zz: Float64Array;
  /** Kept slots of the row last searched, and whether Ainv and x are those of its final mask. */
  n = 0;
  solved = false;
  constructor(K: number) {
    this.a = new Float64Array(K);
    this.zz = new Float64Array(K);
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
  w.solved = false;
  for (let k = 0; k < K; k++) if (keep[row + k] !== 0) (slotOf[k] = n), (idx[n++] = k);
  w.n = n;
  if (n === 0) return 0;
  let swaps = 0;
  for (let sweep = 0; sweep < search.sweeps; sweep++) {
    // A fresh inverse each sweep (the rank-one updates drift).
    for (let i = 0; i < n; i++) {
      const hi = idx[i]! * K;
      for (let j = 0; j < n; j++) L[i * n + j] = Hd[hi + idx[j]!]!;
      b[i] = bFull[idx[i]!]!;
    }
    if (!choleskyLower(L, n)) return (w.solved = false), swaps;
    inverseFromCholesky(L, Ainv, n, w.M);
    w.solved = true;
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
        const bound = rho * rho * inverseDiag[j]!;
        if (bound <= best) continue;
        // With the drop of p counted (z_p = A⁻¹[p, :]·u is O(|S|), the same value symMatVec gives below):
        // gain(p, j) <= r²·(Hd⁻¹)_jj − x_p² / A⁻¹_pp. Most candidates end here, without z = A⁻¹·u (O(|S|²)).
        let worth = false;
        for (const p of [p0, p1]) {
          if (p < 0) continue;
          const a = Ainv[p * n + p]!;
          const zp = dot(Ainv, p * n, u, 0, n);
          const res = bFull[j]! - (ux - (zp * x[p]!) / a);
          if (res * res * inverseDiag[j]! * (1 + SCREEN_SLACK) - (x[p]! * x[p]!) / a > best) worth = true;
        }
        if (!worth) continue;
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
      swapSlot(Ainv, w.z[bestZ]!, x, b, bFull[bestJ]!, Hd[bestJ * K + bestJ]!, idx, Hd, K, bestP, bestJ, n, w.a, w.zz);
      keep[row + idx[bestP]!] = 0; // (idx[bestP] is still q until below)
      slotOf[idx[bestP]!] = -1;
      idx[bestP] = bestJ;
      slotOf[bestJ] = bestP;
      keep[row + bestJ] = 1;
      b[bestP] = bFull[bestJ]!;
      gains += best;
      swaps++;
    }
    if (!(gains > 1e-9 * scale)) break;
  }
  return swaps;
}

/**
 * A⁻¹ and x = A⁻¹·b for S with slot p's column replaced by j, from A⁻¹, x and z = A⁻¹·Hd[S, j] (S
 * before the swap): removing slot p gives P = A⁻¹ − a·aᵀ/a_p (a = A⁻¹[:, p]; P's row and column p are
 * 0) and P·b = x − a·x_p/a_p; bordering with j, z' = P·u = z − a·z_p/a_p, s = Hd_jj − u·z', the
 * inverse is P + z'z'ᵀ/s with row/column p = −z'/s and 1/s, and x' = P·b + z'·(z'·b − b_j)/s,
 * x'_p = (b_j − z'·b)/s. One pass over A⁻¹ (both rank-one terms at once) and O(|S|) for x.
 */
function swapSlot(
  Ainv: Float64Array, z: Float64Array, x: Float64Array, b: Float64Array, bj: number, hjj: number, idx: Int32Array, Hd: Float64Array, K: number,
  p: number, j: number, n: number, a: Float64Array, zz: Float64Array,
): void {
  const ap = Ainv[p * n + p]!;
  for (let i = 0; i < n; i++) a[i] = Ainv[i * n + p]!;
  const zp = z[p]!;
  for (let i = 0; i < n; i++) zz[i] = z[i]! - (a[i]! * zp) / ap;
  zz[p] = 0;
  a[p] = 0;
  const hj = j * K;
  let uz = 0, zb = 0;
  for (let i = 0; i < n; i++) {
    if (i === p) continue;
    uz += Hd[hj + idx[i]!]! * zz[i]!;
    zb += zz[i]! * b[i]!;
  }
  const s = hjj - uz;
  const xp = x[p]!;
  const c = (zb - bj) / s;
  for (let i = 0; i < n; i++) x[i] = x[i]! - (a[i]! * xp) / ap + zz[i]! * c;
  x[p] = (bj - zb) / s;
  rankTwoUpdate(Ainv, a, -1 / ap, zz, 1 / s, n);
  for (let i = 0; i < n; i++) (Ainv[i * n + p] = -zz[i]! / s), (Ainv[p * n + i] = -zz[i]! / s);
  Ainv[p * n + p] = 1 / s;
}

/** A += α·a·aᵀ + β·c·cᵀ, one pass (row p, where a and c are 0, is left to the caller). */
function rankTwoUpdate(A: Float64Array, a: Float64Array, alpha: number, c: Float64Array, beta: number, n: number): void {
  for (let i = 0; i < n; i++) {
    const ai = a[i]! * alpha, ci = c[i]! * beta;
    const ri = i * n;
    for (let k = 0; k < n; k++) A[ri + k] = A[ri + k]! + (ai * a[k]! + ci * c[k]!);
  }
}

/** y = A·v for A [n, n] row-major. */
function symMatVec(A: Float64Array, v: Float64Array, y: Float64Array, n: number): void {
  for (let i = 0; i < n; i++) y[i] = dot(A, i * n, v, 0, n);
}

/**
 * (L·Lᵀ)⁻¹ [n, n] from the lower Cholesky factor L (lower triangle of A): M = L⁻¹ row by row
 * (M[i, :] = (e_i − Σ_{p<i} L[i, p]·M[p, :]) / L[i, i]), then MᵀM = Σ_p M[p, :]ᵀ·M[p, :] as rank-one
 * terms of M's rows; both four rows at a time (each element loaded and stored once per four terms).
 */
function inverseFromCholesky(L: Float64Array, out: Float64Array, n: number, M: Float64Array): void {
  M.fill(0, 0, n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    // Rows p of M are zero past column p: four rows at a time over their common prefix, then the rest.
    let p = 0;
    for (; p + 4 <= i; p += 4) {
      const l0 = L[ri + p]!, l1 = L[ri + p + 1]!, l2 = L[ri + p + 2]!, l3 = L[ri + p + 3]!;
      const r0 = p * n, r1 = r0 + n, r2 = r1 + n, r3 = r2 + n;
      for (let j = 0; j <= p; j++) M[ri + j] = M[ri + j]! - (l0 * M[r0 + j]! + l1 * M[r1 + j]! + l2 * M[r2 + j]! + l3 * M[r3 + j]!);
      M[ri + p + 1] = M[ri + p + 1]! - (l1 * M[r1 + p + 1]! + l2 * M[r2 + p + 1]! + l3 * M[r3 + p + 1]!);
      M[ri + p + 2] = M[ri + p + 2]! - (l2 * M[r2 + p + 2]! + l3 * M[r3 + p + 2]!);
      M[ri + p + 3] = M[ri + p + 3]! - l3 * M[r3 + p + 3]!;
    }
    for (; p < i; p++) {
      const l = L[ri + p]!;
      const rp = p * n;
      for (let j = 0; j <= p; j++) M[ri + j] = M[ri + j]! - l * M[rp + j]!;
    }
    const inv = 1 / L[ri + i]!;
    for (let j = 0; j < i; j++) M[ri + j] = M[ri + j]! * inv;
    M[ri + i] = inv;
  }
  // out[i, j] (j <= i) = Σ_{p >= i} M[p, i]·M[p, j]: for each i, rows p = i.. four at a time.
  out.fill(0, 0, n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    let p = i;
    for (; p + 4 <= n; p += 4) {
      const r0 = p * n, r1 = r0 + n, r2 = r1 + n, r3 = r2 + n;
      const m0 = M[r0 + i]!, m1 = M[r1 + i]!, m2 = M[r2 + i]!, m3 = M[r3 + i]!;
      for (let j = 0; j <= i; j++) out[ri + j] = out[ri + j]! + (m0 * M[r0 + j]! + m1 * M[r1 + j]! + m2 * M[r2 + j]! + m3 * M[r3 + j]!);
    }
    for (; p < n; p++) {
      const rp = p * n;
      const m = M[rp + i]!;
      for (let j = 0; j <= i; j++) out[ri + j] = out[ri + j]! + m * M[rp + j]!;
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) out[j * n + i] = out[i * n + j]!;
}
