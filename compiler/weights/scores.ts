/**
 * Importance scores for pruning W [out, in] (o output channel, k input channel), and the layer output
 * error of a mask. See shared/design/background.md ("The method"):
 *   magnitude  |W[o,k]|
 *   wanda      |W[o,k]| · ‖X[:,k]‖₂
 *   ria        (|W[o,k]| / Σ_j |W[j,k]| + |W[o,k]| / Σ_j |W[o,j]|) · ‖X[:,k]‖₂^0.5
 * Only the selection reads the scores; kept weights are copied from the raw weight, except with
 * --method sparsegpt (compiler/weights/sparsegpt.ts), which updates them.
 */
import type { SparseGptMaskScore } from "./sparsegpt.js";

export type ScoreKind = "magnitude" | "wanda" | "ria";
export const SCORE_KINDS: readonly ScoreKind[] = ["magnitude", "wanda", "ria"];
/** The exponent a of ‖X_k‖₂ in RIA (the paper's choice). */
export const RIA_EXPONENT = 0.5;

export function needsActivations(kind: ScoreKind): boolean {
  return kind !== "magnitude";
}

/**
 * What a prune job needs besides the weight to score it and to measure the result: structured-
 * cloneable, so it travels to a worker thread with the job.
 */
export interface WeightScoring {
  kind: ScoreKind;
  /** ‖X[:,k]‖₂ per input channel over all calibration tokens (wanda, ria). */
  norms?: Float32Array;
  /** Calibration rows X [rowCount, in], a uniform sample of tokens, for the layer output error. */
  rows?: Float32Array;
  rowCount?: number;
  /**
   * --method sparsegpt: prune with second-order updates of the kept weights. `hessian` is XᵀX [in, in]
   * over all calibration tokens (float64, symmetric); the mask is chosen by `maskScore`, not `kind`.
   * `cross` (error-correcting sequential calibration): X̂ᵀX [in, in], X̂ the input in the model whose
   * earlier layers are pruned (`hessian` is then X̂ᵀX̂) and X the dense model's; the target becomes X·Wᵀ.
   */
  sparsegpt?: { hessian: Float64Array; tokens: number; maskScore: SparseGptMaskScore; damping: number; cross?: Float64Array; refit?: boolean; refitSweeps?: number; refitForced?: boolean };
}

/**
 * Norms scaled so the largest is 1 (the selection is invariant to a common factor; this keeps every
 * score finite and at most |W|). All-zero norms become all ones (the activations say nothing).
 */
export function normalizedNorms(norms: Float32Array): Float64Array {
  let max = 0;
  for (let k = 0; k < norms.length; k++) {
    const n = norms[k]!;
    if (!(n >= 0) || n === Infinity) throw new RangeError(`activation norm ${k} is ${n}; norms must be finite and non-negative`);
    if (n > max) max = n;
  }
  const out = new Float64Array(norms.length);
  if (max === 0) return out.fill(1);
  for (let k = 0; k < norms.length; k++) out[k] = norms[k]! / max;
  return out;
}

/**
 * Scores [out, in] for `kind` from |W| [out, in] (as absScores returns it). For magnitude the result
 * is `absW` itself; otherwise it is written to `into` (or a new array), leaving `absW` unchanged.
 */
export function computeScores(absW: Float32Array, out: number, inF: number, kind: ScoreKind, norms?: Float32Array, into?: Float32Array): Float32Array {
  if (kind === "magnitude") return absW;
  if (!norms || norms.length !== inF) {
    throw new RangeError(`the ${kind} score needs ${inF} activation norms (got ${norms ? norms.length : "none"})`);
  }
  const n = out * inF;
  const score = into && into.length >= n ? into.subarray(0, n) : new Float32Array(n);
  const nn = normalizedNorms(norms);
  if (kind === "wanda") {
    wanda(absW, score, nn, out, inF);
  } else if (kind === "ria") {
    const colInv = new Float64Array(inF);
    const rowInv = new Float64Array(out);
    sums(absW, colInv, rowInv, out, inF);
    for (let k = 0; k < inF; k++) colInv[k] = colInv[k]! > 0 ? 1 / colInv[k]! : 0;
    for (let o = 0; o < out; o++) rowInv[o] = rowInv[o]! > 0 ? 1 / rowInv[o]! : 0;
    const act = nn.map((x) => Math.pow(x, RIA_EXPONENT));
    ria(absW, score, colInv, rowInv, act, out, inF);
  } else {
    throw new RangeError(`unknown score '${String(kind)}'`);
  }
  return score;
}

// Hot loops in functions of their own, so V8 optimises them on the first call.
function wanda(a: Float32Array, s: Float32Array, nn: Float64Array, out: number, inF: number): void {
  for (let o = 0; o < out; o++) {
    const base = o * inF;
    for (let k = 0; k < inF; k++) s[base + k] = a[base + k]! * nn[k]!;
  }
}

function sums(a: Float32Array, col: Float64Array, row: Float64Array, out: number, inF: number): void {
  for (let o = 0; o < out; o++) {
    const base = o * inF;
    let r = 0;
    for (let k = 0; k < inF; k++) {
      const x = a[base + k]!;
      r += x;
      col[k] = col[k]! + x;
    }
    row[o] = r;
  }
}

function ria(a: Float32Array, s: Float32Array, colInv: Float64Array, rowInv: Float64Array, act: Float64Array, out: number, inF: number): void {
  for (let o = 0; o < out; o++) {
    const base = o * inF;
    const ri = rowInv[o]!;
    for (let k = 0; k < inF; k++) s[base + k] = a[base + k]! * (colInv[k]! + ri) * act[k]!;
  }
}

/**
 * Work bound of the layer output error: at most OUTPUT_ERROR_ROWS calibration rows and
 * OUTPUT_ERROR_BUDGET multiply-adds per weight; past that it looks at every s-th output channel. On
 * a 1024 x 2816 weight that is 128 rows x 94 channels, about half the time of the selection; on
 * 4096 x 4096, 128 rows x 64 channels, a sixth. Layers up to 256K weights use every channel.
 */
export const OUTPUT_ERROR_BUDGET = 1 << 25;
export const OUTPUT_ERROR_ROWS = 128;

/** Which part of Y = X·Wᵀ the output error of an [out, in] weight looks at, given `available` rows. */
export function outputErrorPlan(available: number, out: number, inF: number): { rows: number; stride: number; channels: number } {
  const rows = Math.min(available, OUTPUT_ERROR_ROWS);
  const stride = Math.max(1, Math.ceil((rows * out * inF) / OUTPUT_ERROR_BUDGET));
  return { rows, stride, channels: Math.ceil(out / stride) };
}

/**
 * The relative output error ‖Y − Ŷ‖_F / ‖Y‖_F of a mask on rows X [r, in], with Y = X·Wᵀ (dense W
 * [out, in]) and Ŷ = X·(W ⊙ mask)ᵀ, over the output channels 0, stride, 2·stride, ... The mask is
 * given as the selection's `src` [≥ out, twoG]: the kept input column of each packed value of a row,
 * −1 for none. Ŷ uses W's values at the kept columns, or `kept` [≥ out, twoG] (the values as packed, in
 * src's order) when the kept weights were updated (sparsegpt). 0 when Y is 0 and so is the error.
 *
 * Y takes a dense pass, Ŷ only the kept weights (2 of every M), four rows of X at a time so each
 * weight is loaded once per four products; both accumulate in float64, so Y − Ŷ loses nothing.
 */
export function layerOutputError(
  W: Float32Array, out: number, inF: number, src: Int32Array, twoG: number, X: Float32Array, r: number, stride = 1, kept?: Float32Array,
): number {
  const acc = new Float64Array(2);
  const cols = new Int32Array(twoG);
  const vals = new Float32Array(twoG);
  for (let o = 0; o < out; o += stride) {
    const base = o * inF;
    let n = 0;
    for (let j = o * twoG, end = j + twoG; j < end; j++) {
      const col = src[j]!;
      if (col < 0) continue;
      cols[n] = col;
      vals[n++] = kept ? kept[j]! : W[base + col]!;
    }
    rowError(W, base, cols, vals, n, X, r, inF, acc);
  }
  const [err2, ref2] = [acc[0]!, acc[1]!];
  if (ref2 === 0) return err2 === 0 ? 0 : Infinity;
  return Math.sqrt(err2 / ref2);
}

function rowError(W: Float32Array, base: number, cols: Int32Array, vals: Float32Array, n: number, X: Float32Array, r: number, inF: number, acc: Float64Array): void {
  let err2 = 0, ref2 = 0;
  let t = 0;
  for (; t + 4 <= r; t += 4) {
    const b0 = t * inF, b1 = b0 + inF, b2 = b1 + inF, b3 = b2 + inF;
    let y0 = 0, y1 = 0, y2 = 0, y3 = 0;
    for (let k = 0; k < inF; k++) {
      const w = W[base + k]!;
      y0 += X[b0 + k]! * w;
      y1 += X[b1 + k]! * w;
      y2 += X[b2 + k]! * w;
      y3 += X[b3 + k]! * w;
    }
    let p0 = 0, p1 = 0, p2 = 0, p3 = 0;
    for (let i = 0; i < n; i++) {
      const k = cols[i]!, w = vals[i]!;
      p0 += X[b0 + k]! * w;
      p1 += X[b1 + k]! * w;
      p2 += X[b2 + k]! * w;
      p3 += X[b3 + k]! * w;
    }
    ref2 += y0 * y0 + y1 * y1 + y2 * y2 + y3 * y3;
    err2 += (y0 - p0) ** 2 + (y1 - p1) ** 2 + (y2 - p2) ** 2 + (y3 - p3) ** 2;
  }
  for (; t < r; t++) {
    const b = t * inF;
    let y = 0, p = 0;
    for (let k = 0; k < inF; k++) y += X[b + k]! * W[base + k]!;
    for (let i = 0; i < n; i++) p += X[b + cols[i]!]! * vals[i]!;
    ref2 += y * y;
    err2 += (y - p) ** 2;
  }
  acc[0] = acc[0]! + err2;
  acc[1] = acc[1]! + ref2;
}
