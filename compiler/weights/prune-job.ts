import type { TensorData } from "../ir/tensor.js";
import { ExternalFileTensor, InMemoryTensor } from "../ir/tensor.js";
import type { VnmConfig } from "../vnm/config.js";
import { detectExistingVnm } from "../vnm/detect.js";
import { gatherValues } from "../vnm/pack.js";
import { applyInputPermutation, applyOutputPermutation, foldInputPermutationIntoProducer, gatherPermutedValues, permuteSelection } from "../vnm/permute.js";
import { selectionSizes, selectVnm, type VnmSelection } from "../vnm/select.js";
import { absScores, elementSize, toFloat32 } from "./float-view.js";
import type { Scratch } from "./scratch.js";
import { computeScores, layerOutputError, outputErrorPlan, type ScoreKind, type WeightScoring } from "./scores.js";
import { sparseGptPack, type SparseGptMaskScore, type SparseGptRefitResult } from "./sparsegpt.js";
import { storedWeight, type WeightRecipe } from "./weight-recipe.js";

/** Where a weight's bytes come from, in a form that can be sent to a worker thread. */
export type WeightSource =
  | { kind: "file"; path: string; offset: number; length: number }
  | { kind: "bytes"; bytes: Uint8Array };

/** Everything needed to prune and pack one weight, structured-cloneable. */
export interface PruneJob {
  source: WeightSource;
  baseType: number;
  baseDims: number[];
  recipe: Omit<WeightRecipe, "base">;
  config: VnmConfig;
  /** How to score (default magnitude), and calibration rows for the layer output error. */
  scoring?: WeightScoring;
  /** Return `src` (the pruned-dense reference needs it); otherwise it stays in reused scratch memory. */
  keepSrc?: boolean;
  /** Channel permutations found by the search (compiler/weights/permute-job.ts) to apply. */
  permutation?: JobPermutation;
}

/**
 * The permutations a weight is packed with. The mask is selected on P_o·S·P_i; `columns` say where
 * the kept activations are in the input the node actually reads, `row_index` which output channel
 * each packed row writes.
 */
export interface JobPermutation {
  /** [in]: permuted column c is original input channel input[c]. */
  input: Int32Array;
  /** [out]: packed row r is original output channel output[r]. */
  output: Int32Array;
  /**
   * The input permutation is folded into the producer of this layer's input, which then writes its
   * channels in permuted order: `columns` stay in permuted, windowed order.
   */
  inputFolded: boolean;
  /** A consumer folded its input permutation σ into this layer: output channel o is written at σ⁻¹[o]. */
  outputFold?: Int32Array;
  /** Kept score of the identity and of the permutation (from the search), for the report. */
  keptBefore?: number;
  keptAfter?: number;
}

export interface PruneOutput {
  values: Uint8Array;
  columns: Int32Array;
  meta: Uint8Array;
  /**
   * [R, 2G]: row o (an original output channel, o < out) lists the original input channels of its
   * kept weights, -1 for zeros; only when the job asked (`keepSrc`).
   */
  src?: Int32Array;
  /** [R]: the `row_index` to write when it is not the identity (permuted rows). */
  rowIndex?: Int32Array;
  /** The permutation was searched but the identity packed: its calibration output error was lower. */
  permutationDropped?: boolean;
  /** sparsegpt with a permutation: `values` re-indexed by original output row, as `src` (with `src` only). */
  valuesByRow?: Uint8Array;
  /** The score the mask was chosen by. */
  score: ScoreKind;
  /** Σ score kept and Σ score, for that score. */
  keptScore: number;
  totalScore: number;
  /** Σ |W| kept and Σ |W|. */
  keptMagnitude: number;
  totalMagnitude: number;
  /** The weight already had the V:N:M pattern: every nonzero was kept, nothing was pruned. */
  alreadySparse: boolean;
  /**
   * Pruned by --method sparsegpt: the mask was chosen by `maskScore` and the kept weights were
   * UPDATED (`values` are not copies of the raw weight; `src` says where each one goes).
   */
  sparsegpt?: { maskScore: SparseGptMaskScore; deadChannels: number; lambda: number; refit?: SparseGptRefitResult };
  nonzerosBefore: number;
  nonzerosAfter: number;
  /** ‖X·Wᵀ − X·(W⊙mask)ᵀ‖ / ‖X·Wᵀ‖ on `rows` calibration rows and `channels` output channels, when rows were given. */
  outputError?: { relError: number; rows: number; channels: number };
  ms: number;
}

export function jobFor(recipe: WeightRecipe, config: VnmConfig, scoring?: WeightScoring, keepSrc = false, permutation?: JobPermutation): PruneJob {
  const { base, ...rest } = recipe;
  const source: WeightSource =
    base instanceof ExternalFileTensor
      ? { kind: "file", path: base.path, offset: base.offset, length: base.byteLength }
      : { kind: "bytes", bytes: ownBuffer(base.read()) };
  const job: PruneJob = { source, baseType: base.dataType, baseDims: [...base.dims], recipe: rest, config };
  if (scoring) job.scoring = scoring;
  if (keepSrc) job.keepSrc = true;
  if (permutation) job.permutation = permutation;
  return job;
}

/**
 * The bytes in an ArrayBuffer of their own: posting a view to a worker copies its whole buffer, and
 * an embedded weight is a view of the entire model file.
 */
function ownBuffer(view: Uint8Array): Uint8Array {
  return view.byteOffset === 0 && view.byteLength === view.buffer.byteLength ? view : new Uint8Array(view);
}

function sourceTensor(job: Pick<PruneJob, "source" | "baseType" | "baseDims">): TensorData {
  const s = job.source;
  return s.kind === "file"
    ? new ExternalFileTensor(job.baseType, job.baseDims, s.path, s.offset, s.length)
    : new InMemoryTensor(job.baseType, job.baseDims, s.bytes);
}

export interface ScoredWeight {
  recipe: WeightRecipe;
  /** |W| [out, in]. */
  absW: Float32Array;
  /** Nonzeros of W. */
  nnz: number;
  /** The raw weight [out, in] in its own type. */
  rawOutIn: Uint8Array;
  /** The importance score [out, in] of the job's kind (`absW` itself for magnitude). */
  score: Float32Array;
  /** W already has the job's V:N:M pattern. */
  alreadySparse: boolean;
}

/** Reads a job's weight and scores it (shared by pruning and the permutation search). */
export function scoreWeight(job: Pick<PruneJob, "source" | "baseType" | "baseDims" | "recipe" | "config" | "scoring">, scratch?: Scratch): ScoredWeight {
  const recipe: WeightRecipe = { ...job.recipe, base: sourceTensor(job) };
  const { outFeatures: out, inFeatures: inF, transposed } = recipe;
  const kind = job.scoring?.kind ?? "magnitude";
  const raw = storedWeight(recipe, scratch);
  const n = out * inF;
  const { score: absW, nonzeros: nnz, rawOutIn } = absScores(
    raw, recipe.dataType, out, inF, transposed, scratch?.bytes("score", n * 4), scratch?.bytes("transposed", raw.byteLength),
  );
  const into = scratch ? new Float32Array(scratch.bytes("score2", n * 4).buffer, 0, n) : undefined;
  const score = kind === "magnitude" ? absW : computeScores(absW, out, inF, kind, job.scoring?.norms, into);
  return { recipe, absW, nnz, rawOutIn, score, alreadySparse: detectExistingVnm(absW, out, inF, job.config) };
}

/**
 * V:N:M pruning and packing of one weight: the work a worker thread does. The mask maximises the
 * kept score (magnitude, Wanda or RIA); kept values are copied bit-exactly from the raw weight. A
 * weight that already has the pattern is packed as it is. With `scratch`, the large intermediate
 * buffers are reused from the previous weight.
 */
export function runPruneJob(job: PruneJob, scratch?: Scratch): PruneOutput {
  const t0 = performance.now();
  const { recipe, absW, nnz, rawOutIn, score, alreadySparse } = scoreWeight(job, scratch);
  const { outFeatures: out, inFeatures: inF } = recipe;
  const kind = job.scoring?.kind ?? "magnitude";
  const n = out * inF;
  const floatScratch = (name: string) => (scratch ? new Float32Array(scratch.bytes(name, n * 4).buffer, 0, n) : undefined);
  // An already V:N:M weight is selected by an indicator of its nonzeros: the optimum then keeps
  // exactly all of them (integer sums, no rounding), whatever its values or activation norms.
  const selectBy = alreadySparse ? indicator(absW, floatScratch("indicator")) : score;
  const perm = job.permutation;
  // --method sparsegpt: mask and updated kept values from the OBS pass (an already-sparse weight is packed as it is).
  // With a permutation it runs on P_o·W·P_i with the Hessian P_iᵀ·H·P_i, so its selection and
  // values come out in packed (permuted) order, as the plain selection's do.
  const sg = job.scoring?.sparsegpt;
  const size = elementSize(recipe.dataType);
  // `src` is the largest selection output (4 bytes per kept slot); unless the caller keeps it, it
  // lives in scratch memory reused from weight to weight (fresh pages are expensive here).
  const srcBytes = selectionSizes(out, inF, job.config).src * 4;
  const scratchSrc = (name: string) => (scratch && !job.keepSrc ? new Int32Array(scratch.bytes(name, srcBytes).buffer, 0, srcBytes / 4) : undefined);
  const packWith = (p: JobPermutation | undefined, srcName: string): Packing => {
    // --method sparsegpt: mask and updated kept values from the OBS pass (an already-sparse weight is packed as it is).
    // With a permutation it runs on P_o·W·P_i with the Hessian P_iᵀ·H·P_i, so its selection and
    // values come out in packed (permuted) order, as the plain selection's do.
    const obs = sg && !alreadySparse
      ? p
        ? sparseGptPack(permuteMatrixBytes(rawOutIn, out, inF, size, p), recipe.dataType, out, inF, job.config, { ...sg, hessian: permuteSymmetric(sg.hessian, inF, p.input), ...(sg.cross ? { cross: permuteSymmetric(sg.cross, inF, p.input) } : {}) })
        : sparseGptPack(rawOutIn, recipe.dataType, out, inF, job.config, sg)
      : undefined;
    const srcBuffer = p ? (scratch ? new Int32Array(scratch.bytes(`${srcName}-permuted`, srcBytes).buffer, 0, srcBytes / 4) : undefined) : scratchSrc(srcName);
    const sel = obs ? obs.selection : selectVnm(p ? permuted(selectBy, out, inF, p) : selectBy, out, inF, job.config, "exhaustive", srcBuffer ? { buffers: { src: srcBuffer } } : {});
    if (!p) return { obs, sel, values: obs ? obs.values : gatherValues(sel, rawOutIn, size), columns: sel.columns, src: sel.src, written: obs?.written };
    const ps = permuteSelection(sel, p.input, p.output);
    const twoG = 2 * sel.groups;
    const packing: Packing = {
      obs, sel,
      values: obs ? obs.values : gatherPermutedValues(ps, rawOutIn, size),
      columns: p.inputFolded ? sel.columns : ps.columns,
      rowIndex: p.outputFold ? foldInputPermutationIntoProducer(ps.rowIndex, p.outputFold) : ps.rowIndex,
      src: byOriginalRow(ps.src, ps.rowIndex, twoG, -1, scratchSrc(srcName)),
    };
    // The updated values by original output row, for the output error and the pruned-dense reference.
    if (obs) {
      packing.written = byOriginalRow(obs.written, ps.rowIndex, twoG, 0);
      packing.valuesByRow = byOriginalRow(obs.values, ps.rowIndex, twoG * size, 0);
    }
    return packing;
  };
  let packing = packWith(job.permutation, "src");
  const rows = job.scoring?.rows;
  const plan = rows && job.scoring!.rowCount ? outputErrorPlan(job.scoring!.rowCount, out, inF) : undefined;
  const W = plan ? toFloat32(rawOutIn, recipe.dataType) : undefined;
  const errorOf = (k: Packing) => layerOutputError(W!, out, inF, k.src, 2 * k.sel.groups, rows!, plan!.rows, plan!.stride, k.written);
  let relError = plan ? errorOf(packing) : undefined;
  // The search maximises the kept score, a proxy: where the identity order gives the lower output
  // error on the calibration rows (seen with sparsegpt, which picks its own masks), keep the identity.
  // Only for permutations that stay in columns/row_index: a folded one has already reordered a producer.
  let permutationDropped = false;
  if (job.permutation && plan && !job.permutation.inputFolded && !job.permutation.outputFold) {
    const plain = packWith(undefined, "src-plain");
    const e = errorOf(plain);
    if (e < relError!) [packing, relError, permutationDropped] = [plain, e, true];
  }
  const { obs, sel, values, columns, src, rowIndex, written, valuesByRow } = packing;
  const twoG = 2 * sel.groups;
  const kept = new Float64Array(3);
  keptSums(src, absW, score, out, inF, twoG, kept);
  const [keptMagnitude, keptScore, nnzAfter] = [kept[0]!, kept[1]!, kept[2]!];
  if (alreadySparse && nnzAfter !== nnz) {
    throw new Error(`internal: '${recipe.baseName}' already has the ${job.config.v}:${job.config.n}:${job.config.m} pattern, but packing kept ${nnzAfter} of its ${nnz} nonzeros`);
  }
  const result: PruneOutput = {
    values, columns, meta: sel.meta, score: kind,
    keptScore, totalScore: selectBy === score && !obs ? sel.totalScore : sum(score),
    keptMagnitude, totalMagnitude: selectBy === absW && !obs ? sel.totalScore : sum(absW),
    alreadySparse, nonzerosBefore: nnz, nonzerosAfter: nnzAfter, ms: 0,
  };
  if (job.keepSrc || !scratch) result.src = src;
  if (rowIndex) result.rowIndex = rowIndex;
  if (valuesByRow && (job.keepSrc || !scratch)) result.valuesByRow = valuesByRow;
  if (obs) result.sparsegpt = { maskScore: job.scoring!.sparsegpt!.maskScore, deadChannels: obs.deadChannels, lambda: obs.lambda, ...(obs.refit ? { refit: obs.refit } : {}) };
  if (plan) result.outputError = { relError: relError!, rows: plan.rows, channels: plan.channels };
  if (permutationDropped) result.permutationDropped = true;
  result.ms = performance.now() - t0;
  return result;
}

// Hot loops live in small functions of their own so V8 optimises them on the first large weight
// (inside runPruneJob they ran 10x slower, as on-stack replacement kept bailing out).

/** A weight's packed form under one choice of permutation (none: identity). */
interface Packing {
  obs?: ReturnType<typeof sparseGptPack>;
  sel: VnmSelection;
  values: Uint8Array;
  columns: Int32Array;
  /** [R, 2G] by original output row. */
  src: Int32Array;
  rowIndex?: Int32Array;
  /** sparsegpt: the updated values as float32 and as raw bytes, by original output row. */
  written?: Float32Array;
  valuesByRow?: Uint8Array;
}

/** P_o·S·P_i: the matrix the permuted selection is made on. */
function permuted(score: Float32Array, out: number, inF: number, perm: JobPermutation): Float32Array {
  return applyOutputPermutation(applyInputPermutation(score, out, inF, perm.input), out, inF, perm.output);
}

/**
 * Rows of a packed-order array [R, rowLength] (a permuted selection's `src`, or values) re-indexed by
 * original output channel, the layout keptSums, the output error and the pruned-dense reference read;
 * rows no channel maps to (padding) hold `fill`.
 */
function byOriginalRow<T extends Int32Array | Float32Array | Uint8Array>(a: T, rowIndex: Int32Array, rowLength: number, fill: number, into?: T): T {
  const result = (into && into.length >= a.length ? into.subarray(0, a.length) : new (a.constructor as new (n: number) => T)(a.length)) as T;
  result.fill(fill);
  for (let r = 0; r < rowIndex.length; r++) {
    const o = rowIndex[r]!;
    if (o >= 0) result.set(a.subarray(r * rowLength, r * rowLength + rowLength) as never, o * rowLength);
  }
  return result;
}

/** P_o·W·P_i of a raw [out, in] matrix of `size`-byte elements: result[r, c] = W[output[r], input[c]]. */
function permuteMatrixBytes(raw: Uint8Array, out: number, inF: number, size: number, perm: JobPermutation): Uint8Array {
  const result = new Uint8Array(out * inF * size);
  for (let r = 0; r < out; r++) {
    const from = perm.output[r]! * inF * size, to = r * inF * size;
    for (let c = 0; c < inF; c++) {
      const k = from + perm.input[c]! * size;
      for (let b = 0; b < size; b++) result[to + c * size + b] = raw[k + b]!;
    }
  }
  return result;
}

/** Pᵀ·H·P of a symmetric [n, n] matrix: result[a, b] = H[perm[a], perm[b]]. */
function permuteSymmetric(h: Float64Array, n: number, perm: Int32Array): Float64Array {
  const result = new Float64Array(n * n);
  for (let a = 0; a < n; a++) {
    const row = perm[a]! * n;
    for (let b = 0; b < n; b++) result[a * n + b] = h[row + perm[b]!]!;
  }
  return result;
}

/** Σ|W| kept, Σ score kept and the number of kept nonzeros, into acc[0..2]. */
function keptSums(src: Int32Array, absW: Float32Array, score: Float32Array, rows: number, cols: number, twoG: number, acc: Float64Array): void {
  let mag = 0, sc = 0, nz = 0;
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let j = r * twoG, end = j + twoG; j < end; j++) {
      const col = src[j]!;
      if (col < 0) continue;
      const a = absW[base + col]!;
      mag += a;
      sc += score[base + col]!;
      if (a !== 0) nz++;
    }
  }
  acc[0] = mag;
  acc[1] = sc;
  acc[2] = nz;
}

function sum(a: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]!;
  return s;
}

/** 1 where |W| is nonzero (NaN included), 0 elsewhere. */
function indicator(absW: Float32Array, into?: Float32Array): Float32Array {
  const out = into ?? new Float32Array(absW.length);
  for (let i = 0; i < absW.length; i++) out[i] = absW[i] !== 0 ? 1 : 0;
  return out;
}
