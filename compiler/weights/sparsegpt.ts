/**
 * SparseGPT-style second-order pruning under the V:N:M constraint (Frantar & Alistarh 2023, adapted):
 * given a weight W [out, in] and the Hessian of its layer's reconstruction error H = XᵀX [in, in]
 * (summed over the calibration tokens), choose the V:N:M mask and update the weights that are kept so
 * that X·Ŵᵀ stays close to X·Wᵀ. Pure numeric code: no I/O.
 *
 * The algorithm (OBS, column by column, lazily batched):
 *  - Damping: Hd = H + λI with λ = damping · mean(diag H) (1 % by default). A dead channel (H[k,k] = 0:
 *    never active on the calibration data) gets H[k,k] = 1 first, which decouples it: pruning its
 *    weights moves no other weight, and nothing moves into it.
 *  - U = the upper Cholesky factor of Hd⁻¹ (Hd⁻¹ = UᵀU). Processing column c, the optimal update of
 *    the not-yet-processed columns j > c for a change δ of W[r, c] is W[r, j] −= (δ / U[c,c]) · U[c, j].
 *  - Columns are processed group by group (groups of M, as the format's): at the start of each group
 *    its mask is fixed from the current, already-updated weights by the V:N:M selection (selectVnm:
 *    the block's 4 columns, then 2:4 per row) on a saliency score; then each column of the group is
 *    pruned (W[r, c] = 0 where the mask drops it, unchanged where it keeps it) and its error is
 *    propagated to the later columns of the lazy block at once, and to the columns after the block in
 *    one batched update when the block ends. Pruned weights stay exactly 0; only columns not yet
 *    processed are ever updated.
 *  - Mask saliency: 'obs' (default) is SparseGPT's w² / U[c,c]² (the OBS error of dropping w given the
 *    columns processed so far), 'wanda' is |w| · √H[c,c], 'magnitude' |w|; all on the current weights.
 *    Dead channels score 0 (they are dropped first: the data never reads them).
 *  - Refit (default on, where affordable: refitAffordable): once the mask is fixed, each row's kept
 *    weights are replaced by the exact minimum of the same damped objective for that mask (the greedy
 *    OBS steps only approximate it); by default (compile) after a local search over each row's 2 of its
 *    block's 4 columns until a pass makes no swap, where affordable (refitPlan; compiler/weights/refit.ts).
 *
 * Everything runs in float64 in a fixed order, so the result is deterministic. Cost: about
 * K³ for the factorisation plus out · K² multiply-adds for the updates (K = in_features).
 */
import { DataType } from "../ir/dtype.js";
import type { VnmConfig } from "../vnm/config.js";
import { validateVnm } from "../vnm/config.js";
import { type SelectionRule, selectVnm, type VnmSelection } from "../vnm/select.js";
import { choleskyLower } from "../numeric/cholesky.js";
import { fromFloat32, toFloat32 } from "./float-view.js";
import { dampedHessian, refitKept } from "./refit.js";

export type SparseGptMaskScore = "obs" | "wanda" | "magnitude";
export const SPARSEGPT_MASK_SCORES: readonly SparseGptMaskScore[] = ["obs", "wanda", "magnitude"];
/** Damping as a fraction of the mean diagonal of H (SparseGPT's default). */
export const DEFAULT_DAMPING = 0.01;
/** Columns per lazy-batch block (rounded up to a multiple of M). */
export const DEFAULT_BLOCK_SIZE = 128;

export interface SparseGptOptions {
  /** λ as a fraction of mean(diag H) (default DEFAULT_DAMPING). */
  damping?: number;
  /** Lazy-batch block width in columns, rounded up to a multiple of M (default DEFAULT_BLOCK_SIZE). */
  blockSize?: number;
  /** The saliency each group's mask is chosen by (default 'obs'). */
  maskScore?: SparseGptMaskScore;
  /** The selection rule (default 'exhaustive', as the other methods). */
  rule?: SelectionRule;
  /**
   * Error-correcting target: C = X̂ᵀX [inF, inF] (row-major; X̂ the layer's input as pruning earlier
   * layers left it, H = X̂ᵀX̂, X the dense model's input). The pruning then minimises ‖X·Wᵀ − X̂·Ŵᵀ‖
   * instead of ‖X̂·Wᵀ − X̂·Ŵᵀ‖: since ‖X·Wᵀ − X̂·Ŵᵀ‖² = ‖X̂·(W' − Ŵ)ᵀ‖² + const with
   * W' = W·Cᵀ·Hd⁻¹ (the least-squares fit of the dense output on X̂), OBS starts from W' instead of W.
   */
  cross?: Float64Array;
  /**
   * After the OBS pass has fixed the mask, replace each row's kept weights by the exact optimum of the
   * same objective for that mask: w_S = argmin (t − ŵ)ᵀ·Hd·(t − ŵ) over ŵ supported on S (t the target
   * row: W, or W' with `cross`), i.e. Hd_SS·w_S = (Hd·t)_S, one small Cholesky solve per row. The greedy
   * OBS updates only approximate it (each column is fitted once, to the columns before it).
   */
  refit?: boolean;
  /**
   * With `refit`: passes of the exact local search over each row's 2 of its block's 4 columns per
   * group (compiler/weights/refit.ts) before the final refit, at most (a row stops after a pass without
   * a swap); 0 (default here; compile's default is DEFAULT_SPARSEGPT_REFIT_SWEEPS) keeps OBS's mask.
   * Unless `refitForced`, the refit and its search run only where refitPlan says they are affordable.
   */
  refitSweeps?: number;
  /** Run the refit with `refitSweeps` whatever it costs (an explicit --refit-sweeps). */
  refitForced?: boolean;
}

export interface SparseGptResult {
  /** The mask, as selectVnm returns it (scores: each group's saliency when the group was reached, scaled per group). */
  selection: VnmSelection;
  /** [R, 2G]: the updated kept weights in the order of the packed `values` (weight at column src[r, j]; 0 where src is −1). */
  kept: Float32Array;
  /** Input channels never active in the calibration data (H[k,k] = 0). */
  deadChannels: number;
  /** The damping λ that was added to H's diagonal (raised tenfold at a time if the factorisation failed). */
  lambda: number;
  /** With `refit`: what its local search did. */
  refit?: SparseGptRefitResult;
}

/**
 * The refit's local search on one weight: `sweeps` the most passes allowed (0: no search, where
 * refitPlan found it too expensive or none was asked for), `passes` the most any row ran (a row stops
 * after a pass without a swap), `swaps` the swaps made.
 */
export interface SparseGptRefitResult {
  swaps: number;
  sweeps: number;
  passes: number;
}

/**
 * Prunes W [out, inF] (row-major) to `cfg` with the Hessian H [inF, inF] (row-major, symmetric,
 * positive semi-definite, e.g. Σ_t x_t x_tᵀ) and returns the mask and the updated kept weights.
 */
export function sparseGptPrune(
  W: Float32Array | Float64Array, out: number, inF: number, H: Float64Array, cfg: VnmConfig, opts: SparseGptOptions = {},
): SparseGptResult {
  validateVnm(cfg);
  if (W.length !== out * inF) throw new RangeError(`sparseGptPrune: W has ${W.length} elements, expected ${out} x ${inF}`);
  if (H.length !== inF * inF) throw new RangeError(`sparseGptPrune: H has ${H.length} elements, expected ${inF} x ${inF}`);
  const damping = opts.damping ?? DEFAULT_DAMPING;
  if (!(damping > 0) || !Number.isFinite(damping)) throw new RangeError(`sparseGptPrune: damping must be positive (got ${damping})`);
  const maskScore = opts.maskScore ?? "obs";
  if (!SPARSEGPT_MASK_SCORES.includes(maskScore)) throw new RangeError(`sparseGptPrune: unknown mask score '${String(maskScore)}'`);
  const rule = opts.rule ?? "exhaustive";
  const m = cfg.m;
  const K = inF;
  const B = Math.max(m, Math.ceil((opts.blockSize ?? DEFAULT_BLOCK_SIZE) / m) * m);

  const Wk = Float64Array.from(W);
  if (!allFinite(Wk)) throw new RangeError("sparseGptPrune: the weight holds NaN or infinite values");
  const diag = new Float64Array(K);
  for (let k = 0; k < K; k++) diag[k] = H[k * K + k]!;
  let dead = 0;
  for (let k = 0; k < K; k++) {
    const d = diag[k]!;
    if (!(d >= 0) || d === Infinity) throw new RangeError(`sparseGptPrune: H[${k},${k}] is ${d}; the Hessian must be finite with a non-negative diagonal`);
    if (d === 0) dead++;
  }
  const { U, lambda } = inverseCholeskyUpper(H, diag, K, damping);
  if (opts.cross) {
    if (opts.cross.length !== K * K) throw new RangeError(`sparseGptPrune: the cross Gram matrix has ${opts.cross.length} elements, expected ${K} x ${K}`);
    correctTarget(Wk, opts.cross, U, out, K);
    if (!allFinite(Wk)) throw new RangeError("sparseGptPrune: the error-correcting target holds NaN or infinite values");
  }

  const plan = opts.refit ? refitPlan(out, K, m, opts.refitSweeps ?? 0, opts.refitForced ?? false) : undefined;
  const target = plan?.refit ? Float64Array.from(Wk) : undefined;
  const sqrtDiag = diag.map(Math.sqrt);
  const S = new Float32Array(out * K); // each group's saliency when it was reached, scaled per group
  const keep = new Uint8Array(out * K); // the mask as applied during the updates
  const Err = new Float64Array(out * B);
  const groupScore = new Float64Array(out * m);
  const sub = new Float32Array(out * m);
  for (let b0 = 0; b0 < K; b0 += B) {
    const b1 = Math.min(K, b0 + B);
    Err.fill(0);
    for (let c0 = b0; c0 < b1; c0 += m) {
      const mReal = Math.min(m, K - c0);
      saliency(Wk, U, sqrtDiag, out, K, c0, mReal, maskScore, groupScore);
      scaleInto(groupScore, out * mReal, sub, S, out, K, c0, mReal);
      const sel = selectVnm(sub.subarray(0, out * mReal), out, mReal, cfg, rule);
      markKept(sel.src, out, K, c0, keep);
      for (let r = 0; r < out; r++) obsGroupRow(Wk, U, keep, Err, r, K, B, b0, b1, c0, mReal);
    }
    if (b1 < K) for (let r = 0; r < out; r++) lazyUpdateRow(Wk, U, Err, r, K, B, b0, b1);
  }
  let selection = selectVnm(S, out, K, cfg, rule);
  let refit: SparseGptRefitResult | undefined;
  if (target) {
    const sweeps = plan!.sweeps;
    const search = sweeps > 0 ? { columns: selection.columns, v: cfg.v, m, sweeps, inverseDiag: inverseDiagonal(U, K) } : undefined;
    const { swaps, maxPasses } = refitKept(Wk, target, dampedHessian(H, diag, K, lambda), keep, out, K, search ? { search } : {});
    refit = { swaps, sweeps, passes: maxPasses };
    // The search moved kept weights within their blocks' columns: select again on scores that put every kept weight first.
    if (swaps > 0) {
      for (let i = 0; i < out * K; i++) if (keep[i] !== 0) S[i] = S[i]! + 2;
      selection = selectVnm(S, out, K, cfg, rule);
    }
  }
  const kept = keptValues(selection, Wk, keep, K);
  return { selection, kept, deadChannels: dead, lambda, ...(refit ? { refit } : {}) };
}

/**
 * W ← W·Cᵀ·Hd⁻¹ with Hd⁻¹ = UᵀU (U upper): per row w, w ← U ᵀ·U·C·w, i.e. three K x K passes, in a fixed order.
 */
function correctTarget(W: Float64Array, C: Float64Array, U: Float64Array, out: number, K: number): void {
  const t = new Float64Array(K);
  const p = new Float64Array(K);
  for (let r = 0; r < out; r++) {
    const w = W.subarray(r * K, r * K + K);
    // t = C·w
    for (let i = 0; i < K; i++) {
      let s = 0;
      const ci = i * K;
      for (let j = 0; j < K; j++) s += C[ci + j]! * w[j]!;
      t[i] = s;
    }
    // p = U·t (U[i, j] = 0 for j < i)
    for (let i = 0; i < K; i++) {
      let s = 0;
      const ui = i * K;
      for (let j = i; j < K; j++) s += U[ui + j]! * t[j]!;
      p[i] = s;
    }
    // w = Uᵀ·p: w[j] = Σ_{i <= j} U[i, j]·p[i]
    w.fill(0);
    for (let i = 0; i < K; i++) {
      const pi = p[i]!;
      if (pi === 0) continue;
      const ui = i * K;
      for (let j = i; j < K; j++) w[j] = w[j]! + U[ui + j]! * pi;
    }
  }
}

/**
 * U, upper triangular with Hd⁻¹ = UᵀU, for Hd = H (dead diagonal entries set to 1) + λI.
 * With J the reversal, J·Hd·J = L·Lᵀ (Cholesky) gives Hd = T·Tᵀ with T = J·L·J upper, so
 * Hd⁻¹ = (T⁻¹)ᵀ·T⁻¹ and U = T⁻¹ = J·L⁻¹·J: one factorisation and one triangular inverse.
 * If rounding makes the factorisation fail, λ grows tenfold (up to five times).
 */
export function inverseCholeskyUpper(H: Float64Array, diag: Float64Array, K: number, damping: number): { U: Float64Array; lambda: number } {
  let mean = 0;
  for (let k = 0; k < K; k++) mean += diag[k]! === 0 ? 1 : diag[k]!;
  mean /= Math.max(1, K);
  let lambda = damping * mean;
  const A = new Float64Array(K * K);
  for (let attempt = 0; attempt < 6; attempt++, lambda *= 10) {
    reversedDamped(H, diag, A, K, lambda);
    if (choleskyLower(A, K)) {
      const Li = new Float64Array(K * K);
      invertLower(A, Li, K);
      // U[i][j] = Li[K-1-i][K-1-j]: reversing the element order of the whole matrix does exactly that.
      return { U: Li.reverse(), lambda };
    }
  }
  throw new Error("sparseGptPrune: the damped Hessian is not positive definite even with 100000x the damping; the calibration statistics are degenerate");
}

function reversedDamped(H: Float64Array, diag: Float64Array, A: Float64Array, K: number, lambda: number): void {
  for (let i = 0; i < K; i++) {
    const ri = K - 1 - i;
    for (let j = 0; j < K; j++) A[i * K + j] = H[ri * K + (K - 1 - j)]!;
    A[i * K + i] = (diag[ri]! === 0 ? 1 : diag[ri]!) + lambda;
  }
}


/** Li = L⁻¹ for L lower triangular (the lower triangle of A), row by row: Li[i,:] = (e_i − Σ_{p<i} L[i,p]·Li[p,:]) / L[i,i]. */
function invertLower(A: Float64Array, Li: Float64Array, K: number): void {
  Li.fill(0);
  for (let i = 0; i < K; i++) {
    const ri = i * K;
    // Rows p of Li are zero past p: four rows at a time over their common prefix, then the rest.
    let p = 0;
    for (; p + 4 <= i; p += 4) {
      const a0 = A[ri + p]!, a1 = A[ri + p + 1]!, a2 = A[ri + p + 2]!, a3 = A[ri + p + 3]!;
      const r0 = p * K, r1 = r0 + K, r2 = r1 + K, r3 = r2 + K;
      for (let j = 0; j <= p; j++) Li[ri + j] = Li[ri + j]! - (a0 * Li[r0 + j]! + a1 * Li[r1 + j]! + a2 * Li[r2 + j]! + a3 * Li[r3 + j]!);
      Li[ri + p + 1] = Li[ri + p + 1]! - (a1 * Li[r1 + p + 1]! + a2 * Li[r2 + p + 1]! + a3 * Li[r3 + p + 1]!);
      Li[ri + p + 2] = Li[ri + p + 2]! - (a2 * Li[r2 + p + 2]! + a3 * Li[r3 + p + 2]!);
      Li[ri + p + 3] = Li[ri + p + 3]! - a3 * Li[r3 + p + 3]!;
    }
    for (; p < i; p++) {
      const a = A[ri + p]!;
      const rp = p * K;
      for (let j = 0; j <= p; j++) Li[ri + j] = Li[ri + j]! - a * Li[rp + j]!;
    }
    const inv = 1 / A[ri + i]!;
    for (let j = 0; j < i; j++) Li[ri + j] = Li[ri + j]! * inv;
    Li[ri + i] = inv;
  }
}

/**
 * The refit's per-row factorisations cost about out·n³/6 multiply-adds (n = 2·⌈K/M⌉ kept weights per
 * row), which grows faster than SparseGPT's own K³ + out·K². The local search (refit.ts) replaces
 * them by one inverse per row (n³/2, WebAssembly) kept up to date through all its passes; the passes
 * cost O(n) per screened candidate and O(n²) per evaluated candidate or swap. Measured to convergence
 * on the char-LM's layers (2026-11-26, 2-core VM, V = 16 and 64, M = 5 and 8, n = 48-308, 7-15
 * passes), the whole search takes 1-2.7 ns per op of searchOps = out·(n³/2 + SEARCH_PASS_OPS·n²),
 * about as long as one of the OBS pass's K³ + out·K² ops (1-3.7 ns). Unless forced (an explicit
 * --refit-sweeps), the refit runs only where it costs at most REFIT_MAX_RELATIVE_COST times the OBS
 * pass, and the search only where searchOps is at most REFIT_SEARCH_MAX_RELATIVE_COST times the OBS
 * pass and at most REFIT_SEARCH_MAX_OPS (some 20-40 s of one core): large layers neither take hours
 * nor hold the compile up (the report's `refit` says what ran where). All counted in operations, so
 * the plan (and the output) is the same on every machine, with or without WebAssembly (whose JS
 * fallback is 2-3x slower).
 */
export const REFIT_MAX_RELATIVE_COST = 4;
export const REFIT_SEARCH_MAX_RELATIVE_COST = 12;
export const REFIT_SEARCH_MAX_OPS = 2 ** 34;
export const SEARCH_PASS_OPS = 32;
/** The local search's estimated cost on an [out, K] weight at M, to convergence (see refitPlan). */
export function searchOps(out: number, K: number, m: number): number {
  const n = Math.ceil(K / m) * 2;
  return out * (n * n * n / 2 + SEARCH_PASS_OPS * n * n);
}
export function refitPlan(out: number, K: number, m: number, sweeps: number, forced = false): { refit: boolean; sweeps: number } {
  if (forced) return { refit: true, sweeps };
  const n = Math.ceil(K / m) * 2;
  const refitOps = (out * n * n * n) / 6;
  const obsOps = K * K * K + out * K * K;
  if (refitOps > REFIT_MAX_RELATIVE_COST * obsOps) return { refit: false, sweeps: 0 };
  const search = searchOps(out, K, m);
  const searchAffordable = search <= REFIT_SEARCH_MAX_RELATIVE_COST * obsOps && search <= REFIT_SEARCH_MAX_OPS;
  return { refit: true, sweeps: searchAffordable ? sweeps : 0 };
}
/** Whether the refit runs on an [out, K] weight at M (with `sweeps` requested explicitly when forced). */
export function refitAffordable(out: number, K: number, m: number, sweeps: number, forced = sweeps > 0): boolean {
  return refitPlan(out, K, m, sweeps, forced).refit;
}

/** diag(Hd⁻¹) = diag(UᵀU): Σ_i U[i, j]². */
function inverseDiagonal(U: Float64Array, K: number): Float64Array {
  const d = new Float64Array(K);
  for (let i = 0; i < K; i++) for (let j = i; j < K; j++) d[j] = d[j]! + U[i * K + j]! * U[i * K + j]!;
  return d;
}

function allFinite(a: Float64Array): boolean {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) return false;
  return true;
}

// Hot loops in small functions of their own (V8 optimises them on the first large weight).

/** The saliency of columns c0 .. c0+mReal−1 of every row, into s [out, mReal]. */
function saliency(
  Wk: Float64Array, U: Float64Array, sqrtDiag: Float64Array, out: number, K: number, c0: number, mReal: number, kind: SparseGptMaskScore, s: Float64Array,
): void {
  for (let j = 0; j < mReal; j++) {
    const c = c0 + j;
    const live = sqrtDiag[c]! > 0;
    const u = U[c * K + c]!;
    const f = !live ? 0 : kind === "obs" ? 1 / (u * u) : kind === "wanda" ? sqrtDiag[c]! : 1;
    const squared = kind === "obs";
    for (let r = 0; r < out; r++) {
      const w = Wk[r * K + c]!;
      s[r * mReal + j] = squared ? w * w * f : Math.abs(w) * f;
    }
  }
}

/** s / max(s) as float32 into sub [out, mReal] and into the group's columns of S [out, K]. */
function scaleInto(s: Float64Array, n: number, sub: Float32Array, S: Float32Array, out: number, K: number, c0: number, mReal: number): void {
  let max = 0;
  for (let i = 0; i < n; i++) if (s[i]! > max) max = s[i]!;
  const inv = max > 0 ? 1 / max : 0;
  for (let r = 0; r < out; r++) {
    for (let j = 0; j < mReal; j++) {
      const x = Math.fround(s[r * mReal + j]! * inv);
      sub[r * mReal + j] = x;
      S[r * K + c0 + j] = x;
    }
  }
}

/** keep[r, c0 + local] = 1 for the kept slots of a one-group selection (src local columns, −1 for none). */
function markKept(src: Int32Array, out: number, K: number, c0: number, keep: Uint8Array): void {
  for (let r = 0; r < out; r++) {
    const a = src[r * 2]!, b = src[r * 2 + 1]!;
    if (a >= 0) keep[r * K + c0 + a] = 1;
    if (b >= 0) keep[r * K + c0 + b] = 1;
  }
}

/**
 * OBS steps of row r over the group's columns: a dropped weight becomes exactly 0 and its error
 * e = w / U[c,c] moves the later columns of the lazy block (j < b1) by −e·U[c, j]; a kept weight has no
 * error. Errors are stored for the batched update of the columns after the block.
 */
function obsGroupRow(
  Wk: Float64Array, U: Float64Array, keep: Uint8Array, Err: Float64Array, r: number, K: number, B: number, b0: number, b1: number, c0: number, mReal: number,
): void {
  const row = r * K;
  const er = r * B - b0;
  for (let c = c0; c < c0 + mReal; c++) {
    if (keep[row + c] !== 0) continue;
    const w = Wk[row + c]!;
    Wk[row + c] = 0;
    if (w === 0) continue;
    const e = w / U[c * K + c]!;
    Err[er + c] = e;
    const uc = c * K;
    for (let j = c + 1; j < b1; j++) Wk[row + j] = Wk[row + j]! - e * U[uc + j]!;
  }
}

/** W[r, b1..K) −= Σ_{c in [b0, b1)} Err[r, c] · U[c, b1..K), two error terms at a time. */
function lazyUpdateRow(Wk: Float64Array, U: Float64Array, Err: Float64Array, r: number, K: number, B: number, b0: number, b1: number): void {
  const row = r * K;
  const er = r * B - b0;
  let pending = -1;
  for (let c = b0; c < b1; c++) {
    if (Err[er + c] === 0) continue;
    if (pending < 0) {
      pending = c;
      continue;
    }
    const e0 = Err[er + pending]!, e1 = Err[er + c]!;
    const u0 = pending * K, u1 = c * K;
    for (let j = b1; j < K; j++) Wk[row + j] = Wk[row + j]! - (e0 * U[u0 + j]! + e1 * U[u1 + j]!);
    pending = -1;
  }
  if (pending >= 0) {
    const e0 = Err[er + pending]!;
    const u0 = pending * K;
    for (let j = b1; j < K; j++) Wk[row + j] = Wk[row + j]! - e0 * U[u0 + j]!;
  }
}

/**
 * The kept weights in values order, checking that the full selection is the mask the updates used
 * (each (block, group) is selected independently, from the same scores, so it must be).
 */
function keptValues(sel: VnmSelection, Wk: Float64Array, keep: Uint8Array, K: number): Float32Array {
  const { outFeatures: out, groups: G, src } = sel;
  const twoG = 2 * G;
  const kept = new Float32Array(sel.rows * twoG);
  let keptCount = 0, maskCount = 0;
  for (let r = 0; r < out; r++) {
    for (let j = r * twoG, end = j + twoG; j < end; j++) {
      const col = src[j]!;
      if (col < 0) continue;
      if (keep[r * K + col] === 0) throw new Error(`internal: sparseGptPrune's final selection keeps W[${r}, ${col}], which the updates pruned`);
      kept[j] = Wk[r * K + col]!;
      keptCount++;
    }
  }
  for (let i = 0; i < out * K; i++) maskCount += keep[i]!;
  if (keptCount !== maskCount) throw new Error(`internal: sparseGptPrune's final selection keeps ${keptCount} weights, the updates kept ${maskCount}`);
  return kept;
}

/**
 * Σ_r (W[r] − Ŵ[r]) · H · (W[r] − Ŵ[r])ᵀ = ‖X·Wᵀ − X·Ŵᵀ‖²_F for H = XᵀX: the reconstruction error of
 * Ŵ on all calibration tokens. Ŵ is given densely [out, K]. For tests and measurements.
 */
export function hessianError(W: ArrayLike<number>, What: ArrayLike<number>, out: number, K: number, H: Float64Array): number {
  const d = new Float64Array(K);
  let total = 0;
  for (let r = 0; r < out; r++) {
    for (let k = 0; k < K; k++) d[k] = W[r * K + k]! - What[r * K + k]!;
    for (let i = 0; i < K; i++) {
      if (d[i] === 0) continue;
      let s = 0;
      for (let j = 0; j < K; j++) s += H[i * K + j]! * d[j]!;
      total += d[i]! * s;
    }
  }
  return total;
}

/** The dense [out, K] weight of a selection and its kept values (what the packed tensors stand for). */
export function denseFromKept(sel: VnmSelection, kept: Float32Array): Float32Array {
  const { outFeatures: out, inFeatures: K, groups: G, src } = sel;
  const twoG = 2 * G;
  const dense = new Float32Array(out * K);
  for (let r = 0; r < out; r++) {
    for (let j = r * twoG, end = j + twoG; j < end; j++) {
      const col = src[j]!;
      if (col >= 0) dense[r * K + col] = kept[j]!;
    }
  }
  return dense;
}

// ---- The prune job's use of it (compiler/weights/prune-job.ts) ----

/** How kept weights are found: 'select' keeps the raw values of the mask; 'sparsegpt' updates them. */
export type PruneMethod = "select" | "sparsegpt";
export const PRUNE_METHODS: readonly PruneMethod[] = ["select", "sparsegpt"];
/** The saliency sparsegpt chooses masks by (docs/calibration.md says why). */
export const DEFAULT_SPARSEGPT_MASK_SCORE: SparseGptMaskScore = "obs";
/** Whether sparsegpt refits the kept weights exactly once the mask is fixed (docs/calibration.md says why). */
export const DEFAULT_SPARSEGPT_REFIT = true;
/**
 * Local-search passes of the refit at most, where refitPlan finds the search affordable: in effect until
 * a pass makes no swap (the char-LM's and ViT's rows need 5-16 at 64:2:5, 64:2:8 and 16:2:5; docs/calibration.md says why).
 */
export const DEFAULT_SPARSEGPT_REFIT_SWEEPS = 32;

/** The --method sparsegpt settings as the compile state carries them into each weight's scoring. */
export interface SparseGptSettings {
  maskScore: SparseGptMaskScore;
  damping: number;
  /** Exact least-squares refit of the kept weights once the mask is fixed (--[no-]refit; SparseGptOptions.refit). */
  refit?: boolean;
  /** Local-search passes before the refit, at most (--refit-sweeps; SparseGptOptions.refitSweeps). */
  refitSweeps?: number;
  /** The sweeps were asked for explicitly: refit and search run on every layer (SparseGptOptions.refitForced). */
  refitForced?: boolean;
}

export interface SparseGptPacked {
  selection: VnmSelection;
  /** [R, 2G] packed values in the weight's type (the updated kept weights, rounded to it). */
  values: Uint8Array;
  /** The same values as float32, exactly as written (for the layer output error). */
  written: Float32Array;
  deadChannels: number;
  lambda: number;
  refit?: SparseGptRefitResult;
}

/** SparseGPT on a raw weight [out, in] of a prunable type: the mask and the packed, updated values. */
export function sparseGptPack(
  rawOutIn: Uint8Array, dataType: number, out: number, inF: number, cfg: VnmConfig,
  sg: { hessian: Float64Array; maskScore: SparseGptMaskScore; damping: number; cross?: Float64Array; refit?: boolean; refitSweeps?: number; refitForced?: boolean },
): SparseGptPacked {
  const W = toFloat32(rawOutIn, dataType);
  const res = sparseGptPrune(W, out, inF, sg.hessian, cfg, { maskScore: sg.maskScore, damping: sg.damping, ...(sg.cross ? { cross: sg.cross } : {}), ...(sg.refit ? { refit: true, refitSweeps: sg.refitSweeps ?? 0, refitForced: sg.refitForced ?? false } : {}) });
  const values = fromFloat32(res.kept, dataType);
  const written = dataType === DataType.FLOAT ? res.kept : toFloat32(values, dataType);
  return { selection: res.selection, values, written, deadChannels: res.deadChannels, lambda: res.lambda, ...(res.refit ? { refit: res.refit } : {}) };
}
