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
 * in each group the best swap is made if its gain is positive. A pass visits the row's groups in
 * order; passes repeat until one makes no swap, or `sweeps` passes ran.
 *
 * Cost per row (|S| = 2K/M kept weights): A⁻¹ is formed once, by bordering (|S|³/2 multiply-adds),
 * and then kept up to date through all passes: a swap updates it in O(|S|²) (a rank-one removal and a
 * bordered inverse in one pass over its lower triangle, the only part stored) and x in O(|S|). After
 * every |S|/8 swaps the next pass first checks A⁻¹ on the current solution (O(|S|²)) and forms it
 * anew only if it has drifted (on the models here it never has: ~1e-14 after hundreds of swaps).
 * Since s >= 1/(Hd⁻¹)_jj, a candidate whose bound r²·(Hd⁻¹)_jj − x_p²/A⁻¹_pp (O(|S|) with
 * z_p = A⁻¹[p, :]·u) cannot beat the best gain so far is skipped without computing z; a group's two
 * candidates that are not share one pass over A⁻¹. The O(|S|²) loops run in WebAssembly SIMD
 * (refit-kernels.ts, bit-identical to its JS fallback). A searched row's final refit is one step of
 * iterative refinement from the search's x. Every row is independent; everything runs in float64 in
 * a fixed order.
 */

import { choleskyLower, choleskySolve, dot } from "../numeric/cholesky.js";
import { type RefitKernels, sharedRefitKernels } from "./refit-kernels.js";

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
   * enables the local search over each row's 2 of the block's 4 columns, `sweeps` passes at most
   * (a row stops after a pass without a swap).
   */
  search?: {
    columns: Int32Array; v: number; m: number; sweeps: number;
    /** diag(Hd⁻¹) [K]: bounds a swap's gain by ρ_j²·(Hd⁻¹)_jj (ρ = Hd·(t − ŵ)), so most candidates need no exact evaluation. */
    inverseDiag: Float64Array;
    /** The O(|S|²) loops in WebAssembly (default, where available) or JS: the same results (refit-kernels.ts). */
    kernels?: "wasm" | "js";
  };
}

/** What the search did. */
export interface RefitSearchStats {
  swaps: number;
  /** The most passes any row ran (the last one without a swap, unless `sweeps` capped it). */
  maxPasses: number;
}

/**
 * Per row r, the kept weights (keep[r, ·] = 1) of Wk [out, K] become the optimum ŵ_S = (Hd_SS)⁻¹·(Hd·t_r)_S;
 * pruned ones stay 0. With `search`, keep is first changed by improving swaps (see above). A row
 * whose system does not factor (rounding; Hd is positive definite) keeps its weights and mask.
 */
export function refitKept(
  Wk: Float64Array, target: Float64Array, Hd: Float64Array, keep: Uint8Array, out: number, K: number, opts: RefitOptions = {},
): RefitSearchStats {
  let nMax = 0;
  for (let r = 0; r < out; r++) {
    let n = 0;
    for (let k = 0; k < K; k++) if (keep[r * K + k] !== 0) n++;
    nMax = Math.max(nMax, n);
  }
  const stats: RefitSearchStats = { swaps: 0, maxPasses: 0 };
  const idx = new Int32Array(K);
  const b = new Float64Array(K);
  const bFull = new Float64Array(K);
  const state = opts.search ? new RowInverse(K, nMax, opts.search.kernels !== "js") : undefined;
  const A = new Float64Array(nMax * nMax);
  for (let r = 0; r < out; r++) {
    const row = r * K;
    matVec(Hd, target, row, K, bFull);
    if (state) {
      const tHt = dot(target, row, bFull, 0, K);
      const { swaps, passes } = searchRow(Hd, bFull, tHt, keep, row, r, K, opts.search!, state);
      stats.swaps += swaps;
      stats.maxPasses = Math.max(stats.maxPasses, passes);
      if (state.solved) {
        // The search kept A⁻¹ and x = A⁻¹·b of the final mask up to date: one step of iterative
        // refinement (x += A⁻¹·(b − A·x), 2·|S|² instead of a new factorisation) gives the refit.
        state.refine(Hd, bFull, K);
        for (let k = 0; k < K; k++) if (keep[row + k] === 0) Wk[row + k] = 0;
        for (let i = 0; i < state.n; i++) Wk[row + state.idx[i]!] = state.x[i]!;
        continue;
      }
    }
    let n = 0;
    for (let k = 0; k < K; k++) if (keep[row + k] !== 0) idx[n++] = k;
    if (n === 0) continue;
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
  return stats;
}

/** out[k] = Σ_j Hd[k, j]·t[row + j]. */
function matVec(Hd: Float64Array, t: Float64Array, row: number, K: number, out: Float64Array): void {
  for (let k = 0; k < K; k++) out[k] = dot(Hd, k * K, t, row, K);
}

/** Relative accuracy of A⁻¹ checked, after every |S|/8 swaps, at the start of a pass (see searchRow). */
export const INVERSE_CHECK_TOLERANCE = 1e-10;

/**
 * One row's kept slots S (slot i holds column idx[i]), A⁻¹ = (Hd_SS)⁻¹ and x = A⁻¹·b_S (b = Hd·t),
 * kept up to date as slots change. A⁻¹ and the vectors the kernels touch live in the kernels' heap
 * (element offsets in capitals, views in lower case); A⁻¹ is stored in its lower triangle only
 * (row-major, row stride n; the upper triangle is stale). The heap is shared by every RowInverse of
 * the thread (sharedRefitKernels): use one at a time. Exported for tests.
 */
export class RowInverse {
  readonly kernels: RefitKernels;
  readonly AINV = 0;
  readonly B: number; readonly X: number; readonly U: readonly number[]; readonly Z: readonly number[];
  readonly ROWS: readonly number[]; readonly A: number; readonly ZZ: number;
  readonly ainv: Float64Array;
  readonly b: Float64Array;
  readonly x: Float64Array;
  /** Candidate columns' Hd[S, j] and z = A⁻¹·Hd[S, j] (two at a time). */
  readonly u: readonly Float64Array[];
  readonly z: readonly Float64Array[];
  /** Rows of A⁻¹ gathered from the lower triangle (a group's two kept slots). */
  readonly rows: readonly Float64Array[];
  /** Scratch vectors of the kernels. */
  readonly a: Float64Array;
  readonly zz: Float64Array;
  /** Column of each slot, and slot of each column (−1: not kept). */
  readonly idx: Int32Array;
  readonly slotOf: Int32Array;
  /** [nMax, nMax]: Hd_SS gathered for a fresh inverse. */
  private readonly full: Float64Array;
  n = 0;
  /** Whether A⁻¹ and x are those of the current slots. */
  solved = false;

  constructor(K: number, nMax: number, preferWasm = true) {
    const vectors = 10;
    this.kernels = sharedRefitKernels(nMax * nMax + vectors * nMax, preferWasm);
    const heap = this.kernels.heap;
    let at = nMax * nMax;
    const take = () => ((at += nMax), at - nMax);
    this.B = take(); this.X = take(); this.A = take(); this.ZZ = take();
    this.U = [take(), take()];
    this.Z = [take(), take()];
    this.ROWS = [take(), take()];
    const view = (o: number) => heap.subarray(o, o + nMax);
    this.ainv = heap.subarray(0, nMax * nMax);
    this.b = view(this.B); this.x = view(this.X); this.a = view(this.A); this.zz = view(this.ZZ);
    this.u = this.U.map(view);
    this.z = this.Z.map(view);
    this.rows = this.ROWS.map(view);
    this.idx = new Int32Array(K);
    this.slotOf = new Int32Array(K);
    this.full = new Float64Array(nMax * nMax);
  }

  /** Slots from a row of `keep` (its kept columns, ascending); not yet solved. */
  load(keep: Uint8Array, row: number, K: number): void {
    let n = 0;
    this.slotOf.fill(-1);
    for (let k = 0; k < K; k++) if (keep[row + k] !== 0) (this.slotOf[k] = n), (this.idx[n++] = k);
    this.n = n;
    this.solved = false;
  }

  /**
   * A fresh A⁻¹ (bordering, borderedInverse) and x = A⁻¹·b_S for the current slots (b from bFull);
   * false if Hd_SS is not numerically positive definite.
   */
  fresh(Hd: Float64Array, bFull: Float64Array, K: number): boolean {
    const { idx, full, b, n } = this;
    for (let i = 0; i < n; i++) {
      const hi = idx[i]! * K;
      for (let j = 0; j < n; j++) full[i * n + j] = Hd[hi + idx[j]!]!;
      b[i] = bFull[idx[i]!]!;
    }
    this.solved = borderedInverse(this.kernels, full, n, this.AINV, this.U[0]!, this.Z[0]!);
    if (this.solved) this.kernels.symv(this.AINV, n, n, this.B, this.X);
    return this.solved;
  }

  /**
   * Whether A⁻¹ (after rank-two updates) still inverts Hd_SS on the current solution: with y = Hd_SS·x,
   * ‖A⁻¹·y − x‖∞ <= INVERSE_CHECK_TOLERANCE·‖x‖∞. O(|S|²).
   */
  accurate(Hd: Float64Array, K: number): boolean {
    const { idx, x, n } = this;
    const y = this.zz, back = this.a, u = this.u[0]!;
    for (let i = 0; i < n; i++) {
      const hi = idx[i]! * K;
      for (let k = 0; k < n; k++) u[k] = Hd[hi + idx[k]!]!;
      y[i] = dot(u, 0, x, 0, n);
    }
    this.kernels.symv(this.AINV, n, n, this.ZZ, this.A);
    let err = 0, size = 0;
    for (let i = 0; i < n; i++) (err = Math.max(err, Math.abs(back[i]! - x[i]!))), (size = Math.max(size, Math.abs(x[i]!)));
    return err <= INVERSE_CHECK_TOLERANCE * size;
  }

  /** out = row p of A⁻¹, from its lower triangle. */
  row(p: number, out: Float64Array): void {
    const { ainv, n } = this;
    const rp = p * n;
    for (let k = 0; k <= p; k++) out[k] = ainv[rp + k]!;
    for (let i = p + 1; i < n; i++) out[i] = ainv[i * n + p]!;
  }

  /** u[c] = Hd[S, j] (c = 0, 1). */
  gather(Hd: Float64Array, K: number, j: number, c: number): Float64Array {
    const { idx, n } = this;
    const u = this.u[c]!;
    const hj = j * K;
    for (let i = 0; i < n; i++) u[i] = Hd[hj + idx[i]!]!;
    return u;
  }

  /** z[c] = A⁻¹·u[c] for c in `which` (both in one pass over A⁻¹ when both). */
  solve(which: 0 | 1 | 2): void {
    const { kernels, n } = this;
    if (which === 2) kernels.symv2(this.AINV, n, n, this.U[0]!, this.U[1]!, this.Z[0]!, this.Z[1]!);
    else kernels.symv(this.AINV, n, n, this.U[which]!, this.Z[which]!);
  }

  /**
   * Slot p's column replaced by j, with rowP = A⁻¹[p, :] and z[c] = A⁻¹·Hd[S, j] (S before the swap):
   * removing slot p gives P = A⁻¹ − a·aᵀ/a_p (a = A⁻¹[:, p]; P's row and column p are 0) and
   * P·b = x − a·x_p/a_p; bordering with j, z' = P·u = z − a·z_p/a_p, s = Hd_jj − u·z', the inverse is
   * P + z'z'ᵀ/s with row/column p = −z'/s and 1/s, and x' = P·b + z'·(z'·b − b_j)/s,
   * x'_p = (b_j − z'·b)/s (b_j = bFull[j]). One pass over A⁻¹'s lower triangle (both rank-one terms
   * at once, kernels.rank2) and O(|S|) for x.
   */
  swap(Hd: Float64Array, K: number, bFull: Float64Array, p: number, j: number, rowP: Float64Array, c: number): void {
    const { x, b, a, zz, idx, n, ainv } = this;
    const z = this.z[c]!;
    const ap = rowP[p]!;
    for (let i = 0; i < n; i++) a[i] = rowP[i]!;
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
    const s = Hd[hj + j]! - uz;
    const bj = bFull[j]!;
    const xp = x[p]!;
    const cc = (zb - bj) / s;
    for (let i = 0; i < n; i++) x[i] = x[i]! - (a[i]! * xp) / ap + zz[i]! * cc;
    x[p] = (bj - zb) / s;
    this.kernels.rank2(this.AINV, n, n, this.A, -1 / ap, this.ZZ, 1 / s);
    const rp = p * n;
    for (let k = 0; k < p; k++) ainv[rp + k] = -zz[k]! / s;
    for (let i = p + 1; i < n; i++) ainv[i * n + p] = -zz[i]! / s;
    ainv[rp + p] = 1 / s;
    this.slotOf[idx[p]!] = -1;
    idx[p] = j;
    this.slotOf[j] = p;
    b[p] = bj;
  }

  /** x += A⁻¹·(b − Hd_SS·x): one step of iterative refinement. */
  refine(Hd: Float64Array, bFull: Float64Array, K: number): void {
    const { idx, x, n } = this;
    const res = this.zz, u = this.u[0]!;
    for (let i = 0; i < n; i++) {
      const hi = idx[i]! * K;
      for (let k = 0; k < n; k++) u[k] = Hd[hi + idx[k]!]!;
      res[i] = bFull[idx[i]!]! - dot(u, 0, x, 0, n);
    }
    this.kernels.symv(this.AINV, n, n, this.ZZ, this.A);
    for (let i = 0; i < n; i++) x[i] = x[i]! + this.a[i]!;
  }
}

/**
 * (A)⁻¹ of the symmetric A [n, n] (`full`, row-major, both triangles) into the lower triangle of the
 * heap matrix at `out` (row stride n), by bordering: with A_k⁻¹ the inverse of the leading k rows and
 * columns, u = A[0..k−1, k], z = A_k⁻¹·u and s = A_kk − u·z (the Schur complement, > 0),
 * A_{k+1}⁻¹ = [[A_k⁻¹ + z·zᵀ/s, −z/s], [−zᵀ/s, 1/s]]: n³/2 multiply-adds (kernels.symv and
 * kernels.rank1), as many as a Cholesky factorisation and a triangular inverse. Uses the heap vectors
 * at `u` and `z`; false if some s is not positive (A not numerically positive definite).
 */
export function borderedInverse(kernels: RefitKernels, full: Float64Array, n: number, out: number, u: number, z: number): boolean {
  const h = kernels.heap;
  for (let k = 0; k < n; k++) {
    const rk = k * n;
    for (let i = 0; i < k; i++) h[u + i] = full[rk + i]!;
    if (k > 0) kernels.symv(out, n, k, u, z);
    const s = full[rk + k]! - dot(h, u, h, z, k);
    if (!(s > 0) || !Number.isFinite(s)) return false;
    if (k > 0) kernels.rank1(out, n, k, z, 1 / s);
    const ok = out + rk;
    for (let i = 0; i < k; i++) h[ok + i] = -h[z + i]! / s;
    h[ok + k] = 1 / s;
  }
  return true;
}

/** The improving swaps of one row (see the module comment); keep[row + ·] is updated. */
function searchRow(
  Hd: Float64Array, bFull: Float64Array, tHt: number, keep: Uint8Array, row: number, r: number, K: number,
  search: NonNullable<RefitOptions["search"]>, w: RowInverse,
): { swaps: number; passes: number } {
  const { columns, v, m, inverseDiag } = search;
  const G = Math.ceil(K / m);
  const block = Math.floor(r / v);
  w.load(keep, row, K);
  const { idx, slotOf, b, x, rows, n } = w;
  let swaps = 0, passes = 0;
  // One inverse per row; swaps update A⁻¹ and x incrementally. After every |S|/8 swaps, the next pass
  // starts with a check of A⁻¹ (O(|S|²)) and a fresh inverse if it drifted.
  if (n === 0 || !w.fresh(Hd, bFull, K)) return { swaps, passes };
  let unchecked = 0;
  for (let sweep = 0; sweep < search.sweeps; sweep++) {
    if (unchecked * 8 >= n) {
      unchecked = 0;
      if (!w.accurate(Hd, K) && !w.fresh(Hd, bFull, K)) break;
    }
    passes++;
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
      let best = Math.max(1e-12 * scale, MIN_SWAP_GAIN * (tHt - scale)), bestP = -1, bestJ = -1, bestC = -1;
      // Screening, O(|S|) per candidate: which of j0, j1 may beat `best` (rows p0, p1 of A⁻¹ once per group).
      let rowsReady = false, worth0 = false, worth1 = false, ux0 = 0, ux1 = 0;
      for (let c = 0; c < 2; c++) {
        const j = c === 0 ? j0 : j1;
        if (j < 0) continue;
        const u = w.gather(Hd, K, j, c);
        const ux = dot(u, 0, x, 0, n);
        if (c === 0) ux0 = ux;
        else ux1 = ux;
        // gain <= ρ_j² / s_j <= ρ_j²·(Hd⁻¹)_jj: the Schur complement of j given S is at least the one given every other column.
        const rho = bFull[j]! - ux;
        if (rho * rho * inverseDiag[j]! <= best) continue;
        if (!rowsReady) {
          w.row(p0, rows[0]!);
          if (p1 >= 0) w.row(p1, rows[1]!);
          rowsReady = true;
        }
        // With the drop of p counted (z_p = A⁻¹[p, :]·u): gain(p, j) <= r²·(Hd⁻¹)_jj − x_p² / A⁻¹_pp.
        // Most candidates end here, without z = A⁻¹·u (O(|S|²)).
        let worth = false;
        for (let pp = 0; pp < 2; pp++) {
          const p = pp === 0 ? p0 : p1;
          if (p < 0) continue;
          const rp = rows[pp]!;
          const a = rp[p]!;
          const zp = dot(rp, 0, u, 0, n);
          const res = bFull[j]! - (ux - (zp * x[p]!) / a);
          if (res * res * inverseDiag[j]! * (1 + SCREEN_SLACK) - (x[p]! * x[p]!) / a > best) worth = true;
        }
        if (c === 0) worth0 = worth;
        else worth1 = worth;
      }
      if (!worth0 && !worth1) continue;
      // Exact evaluation: z = A⁻¹·u for the candidates left.
      w.solve(worth0 && worth1 ? 2 : worth0 ? 0 : 1);
      for (let c = 0; c < 2; c++) {
        if (!(c === 0 ? worth0 : worth1)) continue;
        const j = c === 0 ? j0 : j1;
        const u = w.u[c]!, z = w.z[c]!;
        const ux = c === 0 ? ux0 : ux1;
        const uz = dot(u, 0, z, 0, n);
        const hjj = Hd[j * K + j]!;
        for (let pp = 0; pp < 2; pp++) {
          const p = pp === 0 ? p0 : p1;
          if (p < 0) continue;
          const a = rows[pp]![p]!;
          const s = hjj - (uz - (z[p]! * z[p]!) / a);
          if (!(s > 0)) continue;
          const res = bFull[j]! - (ux - (z[p]! * x[p]!) / a);
          const gain = (res * res) / s - (x[p]! * x[p]!) / a;
          if (gain > best) (best = gain), (bestP = p), (bestJ = j), (bestC = c);
        }
      }
      if (bestP < 0) continue;
      keep[row + idx[bestP]!] = 0;
      keep[row + bestJ] = 1;
      w.swap(Hd, K, bFull, bestP, bestJ, rows[bestP === p0 ? 0 : 1]!, bestC);
      gains += best;
      swaps++;
      unchecked++;
    }
    if (!(gains > 1e-9 * scale)) break;
  }
  return { swaps, passes };
}
