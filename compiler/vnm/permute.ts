/**
 * V:N:M channel permutation: the numeric core. Pure code, no I/O, no ONNX.
 *
 * For a weight's score matrix S [out, in] (non-negative), find an input-channel permutation P_i and
 * an output-channel permutation P_o that maximise the kept score of P_o S P_i under the V:N:M pattern,
 * as `selectVnm(..., 'exhaustive')` computes it. Both permutations are free at run time: P_i only
 * changes the absolute `columns` indices, P_o becomes `row_index` (see permuteSelection), or either
 * folds into a neighbouring layer.
 *
 * The search (arXiv 2410.16135, Pool & Yu 2021, RIA):
 *  1. Start from the identity or, when it keeps more, from input channels dealt zig-zag by importance
 *     (column score sums) across the groups, so that heavy channels land in different groups.
 *  2. Two kinds of moves, alternating one matching (disjoint pairs) of each at a time, so that both
 *     progress under any budget (a matching of either kind costs about out x in):
 *     (a) input moves, over pairs of groups (each sweep visits every pair once, in a seeded
 *         round-robin order): every swap of a column of one group with a column of the other gets a
 *         lower bound on its gain, the kept score of the best mask reachable by editing only the old
 *         masks' column choice (the incoming column takes the outgoing one's slot, or any slot when
 *         the outgoing one was not kept, or the outgoing one's slot goes to another unkept column);
 *         each is the exact score of a feasible mask. The best swap with a positive bound is
 *         applied, the two touched group slabs ([out, M] columns, all blocks) are re-selected
 *         exactly with `selectVnm`, and the swap is kept only if the exact score rises; repeated
 *         while the pair improves.
 *     (b) output moves, over pairs of blocks: with the blocks' current masks fixed, a row's value in
 *         either block is exact (per group, its best 2 of the block's 4 columns), and pairing both
 *         blocks' rows sorted by their gain from moving is the best exchange under the fixed masks
 *         (a linear assignment). It is applied when its gain is positive, both blocks are
 *         re-selected exactly ([V, in] row slabs), and it is kept only if the score rises. This is
 *         k-means-like: rows move to the block whose column choice suits them.
 *     Once a whole sweep of both kinds accepts nothing, the bounds have nothing more to offer; the
 *     search then also tries the few best-ranked candidates of each pair exactly (their masks may
 *     change for the better) and has converged when a sweep of that accepts nothing either.
 *  Every accepted move raises the exact kept score, so the result is never worse than the start,
 *  and the start is never worse than the identity. It is a local search: on tiny matrices it comes
 *  within a few percent of the brute-force optimum (tests), not always to it.
 *
 * Determinism: the search is a pure function of its inputs and the seed, except where the time
 * budget cuts it short (the clock is read between moves, never used to steer). When it converges,
 * or is bounded by `rounds` or `maxWork` (work counted in operations, the same on every machine)
 * before the clock runs out, the result is reproducible; `stoppedBy` says which limit ended it.
 */
import { performance } from 'node:perf_hooks';
import { packedShape, validateVnm, type VnmConfig } from './config.js';
import { selectVnm, type VnmSelection } from './select.js';
import { mulberry32 } from '../seeded.js';

export interface PermuteOptions {
  /** Seeds the order in which group pairs and block pairs are visited. */
  seed: number;
  /**
   * Wall-clock budget in milliseconds for the whole call. The clock is read between moves; the
   * identity's and the initial dealing's selections (two full selections) always run, so a budget
   * of 0 returns the better of those two.
   */
  timeBudgetMs: number;
  /**
   * At most this many rounds, i.e. sweeps over all pairs of groups and over all pairs of blocks
   * (each kind counted separately; default unlimited, until converged or out of time).
   */
  rounds?: number;
  /**
   * A deterministic budget: stop once the search has spent this much work (elementary operations,
   * counted the same on every machine; about 1e8 per second on one core). Default unlimited.
   */
  maxWork?: number;
  /** Search input-channel permutations (default true). */
  permuteInputs?: boolean;
  /** Search output-channel permutations (default true). */
  permuteOutputs?: boolean;
}

export interface PermutationResult {
  /** [in]: new column c holds original column inputPerm[c]. */
  inputPerm: Int32Array;
  /** [out]: packed row r holds original row outputPerm[r]. */
  outputPerm: Int32Array;
  /** Kept score of the identity (selectVnm, exhaustive). */
  keptBefore: number;
  /** Kept score of the returned permutation (selectVnm, exhaustive, on the permuted matrix); >= keptBefore. */
  keptAfter: number;
  /** Rounds begun: the most sweeps either kind of move began (the last may have been cut short). */
  rounds: number;
  /** What ended the search: a sweep without any accepted move (converged), the time budget, `rounds` or `maxWork`. */
  stoppedBy: 'converged' | 'time' | 'rounds' | 'work';
  /** Where the search started: the identity or the zig-zag dealing of input channels. */
  start: 'identity' | 'zigzag';
  /** Accepted input-channel swaps. */
  inputSwaps: number;
  /** Rows moved by accepted output exchanges (each exchange swaps pairs of rows between two blocks). */
  rowSwaps: number;
  /** Work spent by the search (the unit of `maxWork`). */
  work: number;
}

/** Candidates tried exactly per pair once the bound-guided moves have converged. */
const PROBES = 4;
/** The least share of the work each kind of move gets while both can move. */
const MIN_SHARE = 0.2;
/** Work units per score element of an exact selection, relative to one bound or row-value term. */
const SELECTION_COST = 8;

/** Searches input and output permutations maximising the V:N:M kept score (see the file's header). */
export function searchPermutation(
  score: Float32Array,
  outFeatures: number,
  inFeatures: number,
  cfg: VnmConfig,
  opts: PermuteOptions,
): PermutationResult {
  const started = performance.now();
  validateVnm(cfg);
  checkDims('searchPermutation', score, outFeatures, inFeatures);
  if (!Number.isFinite(opts.seed)) throw new RangeError(`searchPermutation: seed must be a finite number (got ${opts.seed})`);
  if (!(opts.timeBudgetMs >= 0)) throw new RangeError(`searchPermutation: timeBudgetMs must be >= 0 (got ${opts.timeBudgetMs})`);
  const maxRounds = opts.rounds ?? Infinity;
  if (!(maxRounds >= 0)) throw new RangeError(`searchPermutation: rounds must be >= 0 (got ${opts.rounds})`);
  const maxWork = opts.maxWork ?? Infinity;
  if (!(maxWork >= 0)) throw new RangeError(`searchPermutation: maxWork must be >= 0 (got ${opts.maxWork})`);
  const permuteInputs = opts.permuteInputs ?? true;
  const permuteOutputs = opts.permuteOutputs ?? true;
  const out = outFeatures;
  const K = inFeatures;
  const { G, blocks } = packedShape(out, K, cfg);

  let fullSelectionMs = performance.now();
  const base = selectVnm(score, out, K, cfg, 'exhaustive');
  fullSelectionMs = performance.now() - fullSelectionMs;
  const keptBefore = base.keptScore;

  const result: PermutationResult = {
    inputPerm: identityPermutation(K),
    outputPerm: identityPermutation(out),
    keptBefore,
    keptAfter: keptBefore,
    rounds: 0,
    stoppedBy: 'converged',
    start: 'identity',
    inputSwaps: 0,
    rowSwaps: 0,
    work: 0,
  };
  const searchInputs = permuteInputs && G >= 2;
  const searchOutputs = permuteOutputs && blocks >= 2;
  if (!searchInputs && !searchOutputs) return result;

  // Start: identity, or the zig-zag dealing of input channels when it keeps more.
  let startInput = identityPermutation(K);
  let startSelection: VnmSelection = base;
  let startMatrix = score;
  if (searchInputs) {
    const dealt = zigzagDealing(score, out, K, cfg.m);
    const dealtMatrix = applyInputPermutation(score, out, K, dealt);
    const t0 = performance.now();
    const dealtSelection = selectVnm(dealtMatrix, out, K, cfg, 'exhaustive');
    fullSelectionMs = Math.min(fullSelectionMs, performance.now() - t0); // the first call may include warm-up
    if (dealtSelection.keptScore > keptBefore) {
      startInput = dealt;
      startSelection = dealtSelection;
      startMatrix = dealtMatrix;
      result.start = 'zigzag';
    }
  }
  const startKept = startSelection.keptScore;

  // The final full selection costs about what the others did: leave room for it in the budget.
  const deadline = started + opts.timeBudgetMs - fullSelectionMs;
  const state = new SearchState(score, out, K, cfg, startInput, identityPermutation(out), startMatrix, startSelection);
  const random = mulberry32(opts.seed);
  // Two streams of moves, run one matching (disjoint pairs) at a time. Each next matching goes to
  // the stream with the larger recent gain per unit of work, except that neither gets less than
  // MIN_SHARE of the work while both can still move, so both progress under any budget. Work is
  // counted in elementary operations (deterministic), not read from the clock.
  const streams: MoveStream[] = [];
  if (searchInputs) streams.push(new MoveStream(G, random, (a, b) => state.improveGroupPair(a, b, deadline)));
  if (searchOutputs) streams.push(new MoveStream(blocks, random, (a, b) => state.improveBlockPair(a, b, deadline)));
  let stoppedBy: PermutationResult['stoppedBy'] = 'converged';
  let accepted = 0;
  search: for (;;) {
    const eligible = streams.filter((s) => !s.quiet() && s.sweepsDone < maxRounds);
    if (eligible.length === 0) {
      if (streams.every((s) => s.quiet()) && state.probes === 0 && streams.some((s) => s.sweepsDone < maxRounds)) {
        // The bound-guided moves converged: go on with exact probes of the best candidates.
        state.probes = PROBES;
        for (const s of streams) s.sinceAccept = 0;
        continue;
      }
      stoppedBy = streams.every((s) => s.quiet()) ? 'converged' : 'rounds';
      break;
    }
    let stream = eligible[0]!;
    if (eligible.length > 1) {
      const totalWork = eligible.reduce((sum, s) => sum + s.work, 0);
      const starved = eligible.find((s) => s.work < MIN_SHARE * totalWork || s.recentWork === 0);
      stream = starved ?? eligible.reduce((best, s) => (s.rate() > best.rate() ? s : best));
    }
    if (performance.now() >= deadline) {
      stoppedBy = 'time';
      break;
    }
    if (state.work >= maxWork) {
      stoppedBy = 'work';
      break;
    }
    const work0 = state.work;
    const gain0 = state.gained;
    for (const [a, b] of stream.nextMatching()) {
      if (performance.now() >= deadline) {
        stoppedBy = 'time';
        break search;
      }
      if (state.work >= maxWork) {
        stoppedBy = 'work';
        break search;
      }
      stream.visit(a, b);
      const now = state.inputSwaps + state.rowExchanges;
      if (now !== accepted) {
        accepted = now;
        for (const s of streams) s.sinceAccept = 0;
      }
    }
    stream.record(state.work - work0, state.gained - gain0);
  }
  const rounds = Math.max(...streams.map((s) => s.sweepsBegun));
  result.rounds = rounds;
  result.stoppedBy = stoppedBy;
  result.inputSwaps = state.inputSwaps;
  result.rowSwaps = state.rowSwaps;
  result.work = state.work;

  let keptAfter = startKept;
  if (state.inputSwaps + state.rowExchanges > 0) {
    const permuted = applyOutputPermutation(applyInputPermutation(score, out, K, state.colAt), out, K, state.rowAt);
    keptAfter = selectVnm(permuted, out, K, cfg, 'exhaustive').keptScore;
  }
  // Never worse than the identity (the exact search only accepts rises; this guards rounding).
  if (keptAfter > keptBefore) {
    result.inputPerm = state.colAt.slice();
    result.outputPerm = state.rowAt.slice();
    result.keptAfter = keptAfter;
  } else {
    result.start = 'identity';
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Helpers: applying, inverting and folding permutations.

/** [0, 1, ..., n-1]. */
export function identityPermutation(n: number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  return p;
}

/** Throws unless perm is a permutation of [0, n). */
export function checkPermutation(perm: Int32Array, n: number, what = 'permutation'): void {
  if (perm.length !== n) throw new RangeError(`${what} has ${perm.length} entries, expected ${n}`);
  const seen = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const p = perm[i]!;
    if (!(p >= 0 && p < n) || seen[p]) throw new RangeError(`${what} is not a permutation of 0..${n - 1} (entry ${i} is ${p})`);
    seen[p] = 1;
  }
}

/** inverse[perm[i]] = i. */
export function invertPermutation(perm: Int32Array): Int32Array {
  checkPermutation(perm, perm.length);
  const inverse = new Int32Array(perm.length);
  for (let i = 0; i < perm.length; i++) inverse[perm[i]!] = i;
  return inverse;
}

/** [out, in] with column c holding original column perm[c]: result[o, c] = matrix[o, perm[c]]. */
export function applyInputPermutation(matrix: Float32Array, outFeatures: number, inFeatures: number, perm: Int32Array): Float32Array {
  checkDims('applyInputPermutation', matrix, outFeatures, inFeatures);
  checkPermutation(perm, inFeatures, 'input permutation');
  const result = new Float32Array(matrix.length);
  for (let o = 0; o < outFeatures; o++) {
    const row = o * inFeatures;
    for (let c = 0; c < inFeatures; c++) result[row + c] = matrix[row + perm[c]!]!;
  }
  return result;
}

/** [out, in] with row r holding original row perm[r]: result[r, k] = matrix[perm[r], k]. */
export function applyOutputPermutation(matrix: Float32Array, outFeatures: number, inFeatures: number, perm: Int32Array): Float32Array {
  checkDims('applyOutputPermutation', matrix, outFeatures, inFeatures);
  checkPermutation(perm, outFeatures, 'output permutation');
  const result = new Float32Array(matrix.length);
  for (let r = 0; r < outFeatures; r++) result.set(matrix.subarray(perm[r]! * inFeatures, perm[r]! * inFeatures + inFeatures), r * inFeatures);
  return result;
}

/**
 * A selection made on the permuted matrix P_o S P_i, expressed against the original weight, ready to
 * pack: `columns` and `row_index` as the format defines them, `meta` unchanged (slot order is kept,
 * so the 4 columns of a group are in permuted order, not necessarily ascending, which the format
 * allows), and `src` in original input channels: values[r, j] = W[rowIndex[r], src[r, j]] (zero where
 * src is -1 or rowIndex is -1).
 */
export interface PermutedSelection {
  outFeatures: number;
  inFeatures: number;
  v: number;
  m: number;
  rows: number;
  groups: number;
  /** [R/V, G, 4]: absolute original input channels (the format's `columns`). */
  columns: Int32Array;
  /** [R]: original output channel of packed row r, -1 for a padding row (the format's `row_index`). */
  rowIndex: Int32Array;
  /** [R, 2G]: original input channel of values[r, j], -1 for a zero. */
  src: Int32Array;
  /** [R, ceil(G/2)]: the selection's meta, unchanged. */
  meta: Uint8Array;
}

/** Folds the permutations into the packed form (see PermutedSelection). Moves no weight data. */
export function permuteSelection(sel: VnmSelection, inputPerm: Int32Array, outputPerm: Int32Array): PermutedSelection {
  const { outFeatures, inFeatures, rows: R } = sel;
  checkPermutation(inputPerm, inFeatures, 'input permutation');
  checkPermutation(outputPerm, outFeatures, 'output permutation');
  const columns = new Int32Array(sel.columns.length);
  for (let i = 0; i < columns.length; i++) columns[i] = inputPerm[sel.columns[i]!]!;
  const src = new Int32Array(sel.src.length);
  for (let i = 0; i < src.length; i++) {
    const s = sel.src[i]!;
    src[i] = s >= 0 ? inputPerm[s]! : -1;
  }
  const rowIndex = new Int32Array(R);
  for (let r = 0; r < R; r++) rowIndex[r] = r < outFeatures ? outputPerm[r]! : -1;
  return { outFeatures, inFeatures, v: sel.v, m: sel.m, rows: R, groups: sel.groups, columns, rowIndex, src, meta: sel.meta.slice() };
}

/**
 * Folds a consumer's input permutation into its producer instead of the consumer's `columns`
 * (e.g. fc1 -> activation -> fc2: fc2's input permutation becomes fc1's output order). Returns the
 * producer's new `row_index`: its packed row r then produces channel c of the permuted order, the
 * one holding original channel inputPerm[c], i.e. rowIndex'[r] = inverse(inputPerm)[rowIndex[r]]
 * (-1 stays -1). The consumer then keeps windowed columns: the selection made on its permuted
 * matrix, with `permuteSelection(sel, identity, outputPerm)` and values gathered from its weight
 * with the input permutation applied. The producer's bias must follow (bias'[c] = bias[inputPerm[c]]),
 * only channel-wise ops may sit between the two, and the producer's output must have no other user.
 */
export function foldInputPermutationIntoProducer(producerRowIndex: Int32Array, inputPerm: Int32Array): Int32Array {
  const inverse = invertPermutation(inputPerm);
  const result = new Int32Array(producerRowIndex.length);
  for (let r = 0; r < producerRowIndex.length; r++) {
    const o = producerRowIndex[r]!;
    if (o < -1 || o >= inverse.length) throw new RangeError(`foldInputPermutationIntoProducer: row_index[${r}] = ${o} is out of range`);
    result[r] = o < 0 ? -1 : inverse[o]!;
  }
  return result;
}

/**
 * The `values` tensor [R, 2G] of a permuted selection as raw little-endian elements copied from the
 * original (unpermuted) weight: values[r, j] = W[rowIndex[r], src[r, j]], zero for padding. `weight`
 * is W [out, in] row-major, or with layout 'in-out' its transpose (MatMul's B as stored).
 */
export function gatherPermutedValues(
  ps: PermutedSelection,
  weight: Uint8Array,
  elementBytes: 1 | 2 | 4 | 8,
  layout: 'out-in' | 'in-out' = 'out-in',
): Uint8Array {
  const { outFeatures, inFeatures: K, rows: R, groups: G, rowIndex, src } = ps;
  if (weight.byteLength !== outFeatures * K * elementBytes) {
    throw new RangeError(`gatherPermutedValues: weight has ${weight.byteLength} bytes, expected ${outFeatures} x ${K} x ${elementBytes}`);
  }
  const [rowStride, colStride] = layout === 'out-in' ? [K, 1] : [1, outFeatures];
  const values = new Uint8Array(R * 2 * G * elementBytes);
  const twoG = 2 * G;
  for (let r = 0; r < R; r++) {
    const o = rowIndex[r]!;
    if (o < 0) continue;
    for (let j = 0; j < twoG; j++) {
      const c = src[r * twoG + j]!;
      if (c < 0) continue;
      const from = (o * rowStride + c * colStride) * elementBytes;
      values.set(weight.subarray(from, from + elementBytes), (r * twoG + j) * elementBytes);
    }
  }
  return values;
}

/**
 * The initial dealing: input channels sorted by importance (score summed over rows, descending, ties
 * to the lower index) and dealt to groups zig-zag (0, 1, ..., G-1, G-1, ..., 0, 0, 1, ...), skipping
 * full groups (the last group may be partial). Returns an input permutation.
 */
export function zigzagDealing(score: Float32Array, outFeatures: number, inFeatures: number, m: number): Int32Array {
  checkDims('zigzagDealing', score, outFeatures, inFeatures);
  const K = inFeatures;
  const G = Math.ceil(K / m);
  const importance = new Float64Array(K);
  for (let o = 0; o < outFeatures; o++) {
    const row = o * K;
    for (let c = 0; c < K; c++) importance[c] += score[row + c]!;
  }
  const order = Array.from({ length: K }, (_, c) => c).sort((a, b) => importance[b]! - importance[a]! || a - b);
  const filled = new Int32Array(G);
  const perm = new Int32Array(K);
  let next = 0;
  for (let pass = 0; next < K; pass++) {
    for (let t = 0; t < G && next < K; t++) {
      const g = pass % 2 === 0 ? t : G - 1 - t;
      const width = Math.min(m, K - g * m);
      if (filled[g]! < width) perm[g * m + filled[g]!++] = order[next++]!;
    }
  }
  return perm;
}

// ---------------------------------------------------------------------------------------------
// The search state: the permuted scores as one [out, width] slab per group, and per (block, group)
// the exact kept score and chosen columns of the current selection.

class SearchState {
  readonly out: number;
  readonly K: number;
  readonly cfg: VnmConfig;
  readonly v: number;
  readonly m: number;
  readonly G: number;
  readonly blocks: number;
  readonly widths: Int32Array;
  /** Original column at each position (the input permutation). */
  readonly colAt: Int32Array;
  /** Original row at each position (the output permutation). */
  readonly rowAt: Int32Array;
  /** Per group: [out, width] permuted scores. */
  readonly slabs: Float32Array[];
  /** [blocks, G]: exact kept score of each (block, group). */
  readonly kept: Float64Array;
  /** [blocks, G, 4]: chosen local columns, -1 for a padding slot (groups narrower than 4). */
  readonly subset: Int32Array;
  /** Per group [out, 4]: for a row and slot k, the max / best-two sum of the other three slots' scores. */
  private readonly t1: Float32Array[];
  private readonly t2: Float32Array[];
  /** [blocks, G, 4]: best kept score after replacing slot k by an unchosen column of the group (-inf if none). */
  private readonly alt: Float64Array;
  private readonly tablesValid: Uint8Array;
  /** Gains below this are rounding noise. */
  private readonly tol: number;
  inputSwaps = 0;
  rowSwaps = 0;
  /** Accepted block-pair exchanges (each may move several rows). */
  rowExchanges = 0;
  /** Elementary operations spent so far (deterministic, for scheduling). */
  work = 0;
  /** Sum of the exact gains of accepted moves. */
  gained = 0;
  /**
   * Candidates evaluated exactly per pair when the lower bounds promise no gain (0: none). The
   * search turns this on once the bound-guided moves have converged.
   */
  probes = 0;

  // Scratch.
  private readonly lb: Float64Array;
  private readonly rScratch: Float64Array;
  private readonly bestAny: Float64Array;
  private readonly slotOf: Int32Array;

  constructor(
    score: Float32Array,
    out: number,
    K: number,
    cfg: VnmConfig,
    colAt: Int32Array,
    rowAt: Int32Array,
    permuted: Float32Array,
    sel: VnmSelection,
  ) {
    this.out = out;
    this.K = K;
    this.cfg = cfg;
    this.v = cfg.v;
    this.m = cfg.m;
    const { G, blocks } = packedShape(out, K, cfg);
    this.G = G;
    this.blocks = blocks;
    this.widths = new Int32Array(G);
    for (let g = 0; g < G; g++) this.widths[g] = Math.min(this.m, K - g * this.m);
    this.colAt = colAt.slice();
    this.rowAt = rowAt.slice();
    this.slabs = [];
    for (let g = 0; g < G; g++) {
      const w = this.widths[g]!;
      const slab = new Float32Array(out * w);
      const c0 = g * this.m;
      for (let o = 0; o < out; o++) {
        const rowIn = permuted.subarray(o * K + c0, o * K + c0 + w);
        slab.set(rowIn, o * w);
      }
      this.slabs.push(slab);
    }
    this.kept = new Float64Array(blocks * G);
    this.subset = new Int32Array(blocks * G * 4);
    // Per (block, group) from the full selection on the permuted matrix.
    const twoG = 2 * G;
    for (let b = 0; b < blocks; b++) {
      const r0 = b * this.v;
      const r1 = Math.min(out, r0 + this.v);
      for (let g = 0; g < G; g++) {
        const w = this.widths[g]!;
        const slab = this.slabs[g]!;
        const c0 = g * this.m;
        let sum = 0;
        for (let o = r0; o < r1; o++) {
          for (let j = 0; j < 2; j++) {
            const s = sel.src[o * twoG + 2 * g + j]!;
            if (s >= 0) sum += slab[o * w + s - c0]!;
          }
        }
        this.kept[b * G + g] = sum;
        this.setSubset(b, g, sel.columns, (b * G + g) * 4, c0);
      }
    }
    let total = 0;
    for (let i = 0; i < score.length; i++) total += score[i]!;
    this.tol = 1e-12 * total;
    this.t1 = [];
    this.t2 = [];
    for (let g = 0; g < G; g++) {
      // Float32: the bounds only rank candidates (every move is checked exactly), and these tables
      // together are as large as the score matrix.
      this.t1.push(new Float32Array(out * 4));
      this.t2.push(new Float32Array(out * 4));
    }
    this.alt = new Float64Array(blocks * G * 4);
    this.tablesValid = new Uint8Array(blocks * G);
    this.lb = new Float64Array(this.m * this.m);
    this.rScratch = new Float64Array(4 * this.m);
    this.bestAny = new Float64Array(this.m);
    this.slotOf = new Int32Array(this.m);
  }

  /** Records the chosen columns of (b, g) from a selection's `columns` (offset c0 to local). */
  private setSubset(b: number, g: number, columns: Int32Array, at: number, c0: number): void {
    const w = this.widths[g]!;
    const to = (b * this.G + g) * 4;
    if (w >= 4) {
      for (let k = 0; k < 4; k++) this.subset[to + k] = columns[at + k]! - c0;
    } else {
      // Every real column is kept; the other slots are padding (zero values).
      for (let k = 0; k < 4; k++) this.subset[to + k] = k < w ? k : -1;
    }
  }

  /** Exact selection of group g's slab: updates kept and subset of (all blocks, g); returns their sum. */
  private evaluateGroup(g: number): number {
    const w = this.widths[g]!;
    const slab = this.slabs[g]!;
    const sel = selectVnm(slab, this.out, w, this.cfg, 'exhaustive');
    this.work += SELECTION_COST * slab.length;
    let total = 0;
    for (let b = 0; b < this.blocks; b++) {
      const r0 = b * this.v;
      const r1 = Math.min(this.out, r0 + this.v);
      let sum = 0;
      for (let o = r0; o < r1; o++) {
        const s0 = sel.src[o * 2]!;
        const s1 = sel.src[o * 2 + 1]!;
        if (s0 >= 0) sum += slab[o * w + s0]!;
        if (s1 >= 0) sum += slab[o * w + s1]!;
      }
      this.kept[b * this.G + g] = sum;
      this.setSubset(b, g, sel.columns, b * 4, 0);
      this.tablesValid[b * this.G + g] = 0;
      total += sum;
    }
    return total;
  }

  /** Exact selection of block b's rows: updates kept and subset of (b, all groups); returns their sum. */
  private evaluateBlock(b: number): number {
    const { K, G, m } = this;
    const r0 = b * this.v;
    const n = Math.min(this.out, r0 + this.v) - r0;
    const rows = new Float32Array(n * K);
    for (let g = 0; g < G; g++) {
      const w = this.widths[g]!;
      const slab = this.slabs[g]!;
      for (let i = 0; i < n; i++) rows.set(slab.subarray((r0 + i) * w, (r0 + i) * w + w), i * K + g * m);
    }
    const sel = selectVnm(rows, n, K, this.cfg, 'exhaustive');
    this.work += SELECTION_COST * rows.length;
    const twoG = 2 * G;
    let total = 0;
    for (let g = 0; g < G; g++) {
      let sum = 0;
      for (let i = 0; i < n; i++) {
        const s0 = sel.src[i * twoG + 2 * g]!;
        const s1 = sel.src[i * twoG + 2 * g + 1]!;
        if (s0 >= 0) sum += rows[i * K + s0]!;
        if (s1 >= 0) sum += rows[i * K + s1]!;
      }
      this.kept[b * G + g] = sum;
      this.setSubset(b, g, sel.columns, g * 4, g * m);
      this.tablesValid[b * G + g] = 0;
      total += sum;
    }
    return total;
  }

  private groupKept(g: number): number {
    let sum = 0;
    for (let b = 0; b < this.blocks; b++) sum += this.kept[b * this.G + g]!;
    return sum;
  }

  private blockKept(b: number): number {
    let sum = 0;
    for (let g = 0; g < this.G; g++) sum += this.kept[b * this.G + g]!;
    return sum;
  }

  /** Builds the slot tables (t1, t2) and replacement values (alt) of group g where they are stale. */
  private ensureTables(g: number): void {
    for (let b = 0; b < this.blocks; b++) if (!this.tablesValid[b * this.G + g]) this.buildTables(b, g);
  }

  /** Builds the slot tables (t1, t2) and replacement values (alt) of (b, g) for the lower bounds. */
  private buildTables(b: number, g: number): void {
    const w = this.widths[g]!;
    const slab = this.slabs[g]!;
    const t1 = this.t1[g]!;
    const t2 = this.t2[g]!;
    const { G, v, out } = this;
    const at = (b * G + g) * 4;
    const s0 = this.subset[at]!;
    const s1 = this.subset[at + 1]!;
    const s2 = this.subset[at + 2]!;
    const s3 = this.subset[at + 3]!;
    const r0 = b * v;
    const r1 = Math.min(out, r0 + v);
    this.work += (r1 - r0) * 4 * w;
    for (let o = r0; o < r1; o++) {
      const row = o * w;
      const a0 = s0 >= 0 ? slab[row + s0]! : 0;
      const a1 = s1 >= 0 ? slab[row + s1]! : 0;
      const a2 = s2 >= 0 ? slab[row + s2]! : 0;
      const a3 = s3 >= 0 ? slab[row + s3]! : 0;
      otherThree(a1, a2, a3, t1, t2, o * 4);
      otherThree(a0, a2, a3, t1, t2, o * 4 + 1);
      otherThree(a0, a1, a3, t1, t2, o * 4 + 2);
      otherThree(a0, a1, a2, t1, t2, o * 4 + 3);
    }
    // alt: replacing slot k by the best unchosen column of the group.
    for (let k = 0; k < 4; k++) {
      let best = -Infinity;
      if (this.subset[at + k]! >= 0) {
        for (let r = 0; r < w; r++) {
          if (r === s0 || r === s1 || r === s2 || r === s3) continue;
          let sum = 0;
          for (let o = r0; o < r1; o++) {
            const y = t1[o * 4 + k]! + slab[o * w + r]!;
            const z = t2[o * 4 + k]!;
            sum += y > z ? y : z;
          }
          if (sum > best) best = sum;
        }
      }
      this.alt[at + k] = best;
    }
    this.tablesValid[b * G + g] = 1;
  }

  /**
   * Adds to lb the lower bound of group `gr`'s gain when its column at position i leaves and the
   * column at position j of group `gd` comes in, for all i, j; at lb[i * wd + j] (or lb[j * wr + i]
   * when transposed).
   */
  private receiveBound(gr: number, gd: number, lb: Float64Array, transposed: boolean): void {
    const wr = this.widths[gr]!;
    const wd = this.widths[gd]!;
    const sd = this.slabs[gd]!;
    const t1 = this.t1[gr]!;
    const t2 = this.t2[gr]!;
    const R = this.rScratch;
    const bestAny = this.bestAny;
    const slotOf = this.slotOf;
    const { G, v, out } = this;
    this.work += out * wd * 4;
    for (let b = 0; b < this.blocks; b++) {
      const at = (b * G + gr) * 4;
      const r0 = b * v;
      const r1 = Math.min(out, r0 + v);
      R.fill(0, 0, 4 * wd);
      for (let o = r0; o < r1; o++) {
        const a1 = t1[o * 4]!;
        const b1 = t1[o * 4 + 1]!;
        const c1 = t1[o * 4 + 2]!;
        const d1 = t1[o * 4 + 3]!;
        const a2 = t2[o * 4]!;
        const b2 = t2[o * 4 + 1]!;
        const c2 = t2[o * 4 + 2]!;
        const d2 = t2[o * 4 + 3]!;
        const row = o * wd;
        for (let j = 0; j < wd; j++) {
          const x = sd[row + j]!;
          let y = a1 + x;
          R[j] += y > a2 ? y : a2;
          y = b1 + x;
          R[wd + j] += y > b2 ? y : b2;
          y = c1 + x;
          R[2 * wd + j] += y > c2 ? y : c2;
          y = d1 + x;
          R[3 * wd + j] += y > d2 ? y : d2;
        }
      }
      const cur = this.kept[b * G + gr]!;
      slotOf.fill(-1, 0, wr);
      for (let j = 0; j < wd; j++) bestAny[j] = cur;
      for (let k = 0; k < 4; k++) {
        const s = this.subset[at + k]!;
        if (s < 0) continue;
        slotOf[s] = k;
        for (let j = 0; j < wd; j++) if (R[k * wd + j]! > bestAny[j]!) bestAny[j] = R[k * wd + j]!;
      }
      for (let i = 0; i < wr; i++) {
        const k = slotOf[i]!;
        if (k >= 0) {
          const alt = this.alt[at + k]!;
          for (let j = 0; j < wd; j++) {
            const r = R[k * wd + j]!;
            const gain = (r > alt ? r : alt) - cur;
            lb[transposed ? j * wr + i : i * wd + j] += gain;
          }
        } else {
          for (let j = 0; j < wd; j++) lb[transposed ? j * wr + i : i * wd + j] += bestAny[j]! - cur;
        }
      }
    }
  }

  /** Swaps the column at position i of group g1 with the one at position j of group g2. */
  private swapColumns(g1: number, i: number, g2: number, j: number): void {
    const w1 = this.widths[g1]!;
    const w2 = this.widths[g2]!;
    const s1 = this.slabs[g1]!;
    const s2 = this.slabs[g2]!;
    for (let o = 0; o < this.out; o++) {
      const x = s1[o * w1 + i]!;
      s1[o * w1 + i] = s2[o * w2 + j]!;
      s2[o * w2 + j] = x;
    }
    const p1 = g1 * this.m + i;
    const p2 = g2 * this.m + j;
    const c = this.colAt[p1]!;
    this.colAt[p1] = this.colAt[p2]!;
    this.colAt[p2] = c;
  }

  /** Improves the pair (g1, g2) by swaps while one with a positive bound raises the exact score. */
  improveGroupPair(g1: number, g2: number, deadline: number): void {
    const w1 = this.widths[g1]!;
    const w2 = this.widths[g2]!;
    const lb = this.lb;
    for (let iteration = 0; iteration < w1 * w2; iteration++) {
      if (iteration > 0 && performance.now() >= deadline) return;
      this.ensureTables(g1);
      this.ensureTables(g2);
      lb.fill(0, 0, w1 * w2);
      this.receiveBound(g1, g2, lb, false);
      this.receiveBound(g2, g1, lb, true);
      let bestAt = 0;
      for (let t = 1; t < w1 * w2; t++) if (lb[t]! > lb[bestAt]!) bestAt = t;
      if (lb[bestAt]! > this.tol) {
        // A sure gain (up to rounding).
        if (this.tryColumnSwap(g1, Math.floor(bestAt / w2), g2, bestAt % w2)) continue;
        return;
      }
      if (this.probes === 0) return;
      // No sure gain: try the most promising swaps exactly (their masks may change for the better).
      const order = Array.from({ length: w1 * w2 }, (_, t) => t).sort((x, y) => lb[y]! - lb[x]! || x - y);
      let accepted = false;
      for (let p = 0; p < this.probes && p < order.length && !accepted; p++) {
        accepted = this.tryColumnSwap(g1, Math.floor(order[p]! / w2), g2, order[p]! % w2);
      }
      if (!accepted) return;
    }
  }

  /** Swaps column i of g1 with column j of g2 and keeps it if the exact kept score rises. */
  private tryColumnSwap(g1: number, i: number, g2: number, j: number): boolean {
    const G = this.G;
    const before = this.groupKept(g1) + this.groupKept(g2);
    const savedKept = new Float64Array(this.blocks * 2);
    const savedSubset = new Int32Array(this.blocks * 8);
    for (let b = 0; b < this.blocks; b++) {
      savedKept[2 * b] = this.kept[b * G + g1]!;
      savedKept[2 * b + 1] = this.kept[b * G + g2]!;
      savedSubset.set(this.subset.subarray((b * G + g1) * 4, (b * G + g1) * 4 + 4), 8 * b);
      savedSubset.set(this.subset.subarray((b * G + g2) * 4, (b * G + g2) * 4 + 4), 8 * b + 4);
    }
    this.swapColumns(g1, i, g2, j);
    const after = this.evaluateGroup(g1) + this.evaluateGroup(g2);
    if (after - before > this.tol) {
      this.gained += after - before;
      this.inputSwaps++;
      return true;
    }
    this.swapColumns(g1, i, g2, j);
    for (let b = 0; b < this.blocks; b++) {
      this.kept[b * G + g1] = savedKept[2 * b]!;
      this.kept[b * G + g2] = savedKept[2 * b + 1]!;
      this.subset.set(savedSubset.subarray(8 * b, 8 * b + 4), (b * G + g1) * 4);
      this.subset.set(savedSubset.subarray(8 * b + 4, 8 * b + 8), (b * G + g2) * 4);
      this.tablesValid[b * G + g1] = 0;
      this.tablesValid[b * G + g2] = 0;
    }
    return false;
  }

  /** Swaps the rows at positions p and q (scores in every slab, and rowAt). */
  private swapRows(p: number, q: number): void {
    for (let g = 0; g < this.G; g++) {
      const w = this.widths[g]!;
      const slab = this.slabs[g]!;
      for (let j = 0; j < w; j++) {
        const x = slab[p * w + j]!;
        slab[p * w + j] = slab[q * w + j]!;
        slab[q * w + j] = x;
      }
    }
    const r = this.rowAt[p]!;
    this.rowAt[p] = this.rowAt[q]!;
    this.rowAt[q] = r;
  }

  /**
   * Row value under a block's chosen columns: sum over groups of the row's best 2 of the block's 4
   * columns. Adds it to into[i] for the rows r0 + i, i < n.
   */
  private rowValues(b: number, r0: number, n: number, into: Float64Array): void {
    const G = this.G;
    this.work += n * G * 2;
    into.fill(0, 0, n);
    for (let g = 0; g < G; g++) {
      const w = this.widths[g]!;
      const slab = this.slabs[g]!;
      const at = (b * G + g) * 4;
      const s0 = this.subset[at]!;
      const s1 = this.subset[at + 1]!;
      const s2 = this.subset[at + 2]!;
      const s3 = this.subset[at + 3]!;
      for (let i = 0; i < n; i++) {
        const row = (r0 + i) * w;
        into[i] += top2of4(
          s0 >= 0 ? slab[row + s0]! : 0,
          s1 >= 0 ? slab[row + s1]! : 0,
          s2 >= 0 ? slab[row + s2]! : 0,
          s3 >= 0 ? slab[row + s3]! : 0,
        );
      }
    }
  }

  /** Improves the pair (b1, b2) by row exchanges while the fixed-mask gain is positive and exact. */
  improveBlockPair(b1: number, b2: number, deadline: number): void {
    const v = this.v;
    const r1 = b1 * v;
    const r2 = b2 * v;
    const n1 = Math.min(this.out, r1 + v) - r1;
    const n2 = Math.min(this.out, r2 + v) - r2;
    const own1 = new Float64Array(n1);
    const other1 = new Float64Array(n1);
    const own2 = new Float64Array(n2);
    const other2 = new Float64Array(n2);
    for (let iteration = 0; iteration < 64; iteration++) {
      if (iteration > 0 && performance.now() >= deadline) return;
      this.rowValues(b1, r1, n1, own1);
      this.rowValues(b2, r1, n1, other1);
      this.rowValues(b2, r2, n2, own2);
      this.rowValues(b1, r2, n2, other2);
      // Gains of moving each row to the other block under the fixed masks, best first.
      const d1 = Array.from({ length: n1 }, (_, i) => i).sort((x, y) => other1[y]! - own1[y]! - (other1[x]! - own1[x]!) || x - y);
      const d2 = Array.from({ length: n2 }, (_, i) => i).sort((x, y) => other2[y]! - own2[y]! - (other2[x]! - own2[x]!) || x - y);
      const gainOf = (t1: number, t2: number): number => other1[d1[t1]!]! - own1[d1[t1]!]! + other2[d2[t2]!]! - own2[d2[t2]!]!;
      // Pairing the sorted lists is the best exchange under the fixed masks.
      let pairs = 0;
      let gain = 0;
      while (pairs < n1 && pairs < n2 && gainOf(pairs, pairs) > 0) gain += gainOf(pairs, pairs++);
      if (gain > this.tol) {
        const swaps: Array<[number, number]> = [];
        for (let t = 0; t < pairs; t++) swaps.push([r1 + d1[t]!, r2 + d2[t]!]);
        if (this.tryRowExchange(b1, b2, swaps)) continue;
        return;
      }
      if (this.probes === 0) return;
      // No sure gain: try the most promising single exchanges exactly.
      const top = Math.min(3, n1, n2);
      const candidates: Array<[number, number, number]> = [];
      for (let t1 = 0; t1 < top; t1++) for (let t2 = 0; t2 < top; t2++) candidates.push([gainOf(t1, t2), t1, t2]);
      candidates.sort((x, y) => y[0] - x[0] || x[1] - y[1] || x[2] - y[2]);
      let accepted = false;
      for (let p = 0; p < this.probes && p < candidates.length && !accepted; p++) {
        const [, t1, t2] = candidates[p]!;
        accepted = this.tryRowExchange(b1, b2, [[r1 + d1[t1]!, r2 + d2[t2]!]]);
      }
      if (!accepted) return;
    }
  }

  /** Exchanges the given rows (positions in b1, b2) and keeps it if the exact kept score rises. */
  private tryRowExchange(b1: number, b2: number, swaps: Array<[number, number]>): boolean {
    const G = this.G;
    const before = this.blockKept(b1) + this.blockKept(b2);
    const savedKept = new Float64Array(2 * G);
    savedKept.set(this.kept.subarray(b1 * G, b1 * G + G), 0);
    savedKept.set(this.kept.subarray(b2 * G, b2 * G + G), G);
    const savedSubset = new Int32Array(8 * G);
    savedSubset.set(this.subset.subarray(b1 * G * 4, (b1 + 1) * G * 4), 0);
    savedSubset.set(this.subset.subarray(b2 * G * 4, (b2 + 1) * G * 4), 4 * G);
    for (const [p, q] of swaps) this.swapRows(p, q);
    const after = this.evaluateBlock(b1) + this.evaluateBlock(b2);
    if (after - before > this.tol) {
      this.gained += after - before;
      this.rowSwaps += swaps.length;
      this.rowExchanges++;
      return true;
    }
    for (const [p, q] of swaps) this.swapRows(p, q);
    this.kept.set(savedKept.subarray(0, G), b1 * G);
    this.kept.set(savedKept.subarray(G), b2 * G);
    this.subset.set(savedSubset.subarray(0, 4 * G), b1 * G * 4);
    this.subset.set(savedSubset.subarray(4 * G), b2 * G * 4);
    this.tablesValid.fill(0, b1 * G, b1 * G + G);
    this.tablesValid.fill(0, b2 * G, b2 * G + G);
    return false;
  }
}

function otherThree(x: number, y: number, z: number, t1: Float32Array, t2: Float32Array, at: number): void {
  const hi = x > y ? x : y;
  const lo = x > y ? y : x;
  if (z > hi) {
    t1[at] = z;
    t2[at] = z + hi;
  } else {
    t1[at] = hi;
    t2[at] = hi + (z > lo ? z : lo);
  }
}

function top2of4(a: number, b: number, c: number, d: number): number {
  let hi = a > b ? a : b;
  let lo = a > b ? b : a;
  if (c > hi) {
    lo = hi;
    hi = c;
  } else if (c > lo) lo = c;
  if (d > hi) {
    lo = hi;
    hi = d;
  } else if (d > lo) lo = d;
  return hi + lo;
}

/**
 * The pairs of [0, n) as a cyclic stream of matchings: each sweep is a round-robin tournament
 * (circle method) on freshly shuffled labels, n - 1 matchings (n rounded up to even) that together
 * visit every pair once.
 */
class MoveStream {
  private readonly n: number;
  private readonly random: () => number;
  private readonly improve: (a: number, b: number) => void;
  private readonly size: number;
  private labels: Int32Array;
  private readonly circle: number[];
  private matchingInSweep = 0;
  /** Pairs of a sweep. */
  private readonly pairsPerSweep: number;
  sweepsBegun = 0;
  sweepsDone = 0;
  /** Pairs visited since the last accepted move of any stream. */
  sinceAccept = 0;
  /** Work spent in this stream, in all and recently (decayed), and the recent gain. */
  work = 0;
  recentWork = 0;
  private recentGain = 0;

  constructor(n: number, random: () => number, improve: (a: number, b: number) => void) {
    this.n = n;
    this.random = random;
    this.improve = improve;
    this.size = n + (n & 1);
    this.labels = identityPermutation(this.size);
    this.circle = Array.from({ length: this.size }, (_, i) => i);
    this.pairsPerSweep = (n * (n - 1)) / 2;
  }

  /** True once a whole sweep's worth of pairs has been visited without any accepted move. */
  quiet(): boolean {
    return this.sinceAccept >= this.pairsPerSweep;
  }

  /** The next matching, in a seeded order. */
  nextMatching(): Array<[number, number]> {
    const { size, n, circle } = this;
    if (this.matchingInSweep === 0) {
      this.labels = shuffled(size, this.random);
      for (let i = 0; i < size; i++) circle[i] = i;
      this.sweepsBegun++;
    }
    const pairs: Array<[number, number]> = [];
    for (let i = 0; i < size / 2; i++) {
      const a = this.labels[circle[i]!]!;
      const b = this.labels[circle[size - 1 - i]!]!;
      if (a < n && b < n) pairs.push(a < b ? [a, b] : [b, a]);
    }
    circle.splice(1, 0, circle.pop()!); // rotate all but the first
    if (++this.matchingInSweep === size - 1) {
      this.matchingInSweep = 0;
      this.sweepsDone++;
    }
    const order = shuffled(pairs.length, this.random);
    return Array.from(order, (k) => pairs[k]!);
  }

  visit(a: number, b: number): void {
    this.sinceAccept++;
    this.improve(a, b);
  }

  /** Records a matching's work and exact gain. */
  record(work: number, gain: number): void {
    this.work += work;
    this.recentWork = RECENT_DECAY * this.recentWork + work;
    this.recentGain = RECENT_DECAY * this.recentGain + gain;
  }

  /** Recent gain per unit of work. */
  rate(): number {
    return this.recentGain / Math.max(1, this.recentWork);
  }
}

/** Weight of the past in a stream's recent gain and work, per matching. */
const RECENT_DECAY = 0.7;

/** A seeded Fisher-Yates shuffle of [0, n). */
function shuffled(n: number, random: () => number): Int32Array {
  const p = identityPermutation(n);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}


function checkDims(what: string, matrix: Float32Array, outFeatures: number, inFeatures: number): void {
  if (!Number.isInteger(outFeatures) || outFeatures < 0 || !Number.isInteger(inFeatures) || inFeatures < 0) {
    throw new RangeError(`${what}: feature counts must be non-negative integers (got ${outFeatures}, ${inFeatures})`);
  }
  if (matrix.length !== outFeatures * inFeatures) {
    throw new RangeError(`${what}: matrix has ${matrix.length} elements, expected ${outFeatures} x ${inFeatures} = ${outFeatures * inFeatures}`);
  }
}
