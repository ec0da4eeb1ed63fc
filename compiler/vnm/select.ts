/**
 * V:N:M mask selection: for every (block of V rows, group of M columns) choose the 4 columns the
 * block keeps and, per row, the 2 of those 4 the row keeps. Pure numeric code: no I/O.
 *
 * 'exhaustive' finds the joint optimum of VENOM's rule (the 4-column subset maximising the sum over
 * rows of each row's best 2 scores in it) by branch and bound over the C(M,4) subsets; 'colsum'
 * keeps the 4 columns with the largest score summed over the block's rows.
 *
 * Why the search is exact and fast (see bench/prune-throughput.md for numbers):
 *  - Every subset value is computed the same canonical way (each row's float64 sum of its top two,
 *    accumulated in a fixed order), so ties compare bit-for-bit and break towards the lexicographically
 *    lowest subset whatever order subsets are visited in.
 *  - Upper bounds are Lagrangian: for any per-row threshold t, top2(S) <= 2t + sum_{c in S} max(s_c - t, 0).
 *    With t fixed per row this is additive over columns, so partial subsets get cheap exact bounds;
 *    a few thresholds (row order statistics near the typical 2nd/3rd kept score) are combined with min.
 *    The thresholds may be approximate (any t gives a valid bound), only the bound arithmetic needs
 *    a rounding allowance, which `tol` covers with a wide margin.
 *  - The work runs as WebAssembly SIMD (select-kernels.ts): every group of M real columns of a block
 *    goes from float32 scores to src/meta/columns in one call (load, bounds, search, evaluation,
 *    row assignment); JS handles a last partial group, padding rows and error messages.
 *  - The kernels and their scratch memory are cached per (V, M) and reused across calls; callers can
 *    pass the output arrays too (SelectOptions.buffers), since first touch of fresh memory is
 *    expensive in some VMs.
 */
import { packedShape, validateVnm, type VnmConfig } from './config.js';
import {
  createSearchKernels,
  D_STRIDE,
  EVALUATE_ALL_UP_TO_M,
  type SearchKernels,
  sortingNetwork,
  SUFFIX_STRIDE,
  subsetKey,
  thresholdRanks,
} from './select-kernels.js';

export type SelectionRule = 'exhaustive' | 'colsum';

export interface VnmSelection {
  outFeatures: number;
  inFeatures: number;
  v: number;
  m: number;
  /** R: packed rows, outFeatures rounded up to whole blocks. */
  rows: number;
  /** G: column groups. */
  groups: number;
  /** [R/V, G, 4]: the block's kept input channels per group, ascending, each in [0, K). */
  columns: Int32Array;
  /** [R, 2G]: the input column whose weight lands in values[r, j], or -1 for a zero. */
  src: Int32Array;
  /** [R, ceil(G/2)]: per (row, group) nibble p0 | p1 << 2, low nibble for even g. */
  meta: Uint8Array;
  /** Sum of the scores of the kept weights. */
  keptScore: number;
  /** Sum of all scores. */
  totalScore: number;
}

export interface SelectOptions {
  /**
   * 'auto' (default) runs the search's hot loops as WebAssembly SIMD where available; 'js' forces
   * the plain JS loops. Both give identical selections (tests compare them).
   */
  kernels?: 'auto' | 'js';
  /**
   * Arrays to write the selection into instead of allocating fresh ones (first touch of fresh
   * memory is expensive in some VMs). Each one long enough is used: the result's array is then a
   * view of its first `length` elements (the rest is left alone), so it aliases the buffer and
   * is overwritten by the next call given the same buffer. Too short ones are ignored. Their
   * contents need not be cleared: every element of the view is written.
   */
  buffers?: SelectBuffers;
}

export interface SelectBuffers {
  /** At least R * 2G elements (see selectionSizes). */
  src?: Int32Array;
  /** At least (R / V) * G * 4 elements. */
  columns?: Int32Array;
  /** At least R * ceil(G / 2) bytes. */
  meta?: Uint8Array;
}

/** Element counts of a selection's arrays, e.g. to size SelectOptions.buffers. */
export function selectionSizes(
  outFeatures: number,
  inFeatures: number,
  cfg: VnmConfig,
): { src: number; columns: number; meta: number } {
  const { R, G, blocks, metaBytesPerRow } = packedShape(outFeatures, inFeatures, cfg);
  return { src: R * 2 * G, columns: blocks * G * 4, meta: R * metaBytesPerRow };
}

/** Nibble of a padding row (p0 = 0, p1 = 1), a valid code whose values are all zero. */
const PADDING_ROW_CODE = 0 | (1 << 2);

/** Kernels by V, M and kind, reused across calls (each holds its own scratch memory). */
const kernelCache = new Map<string, SearchKernels>();

function cachedKernels(v: number, m: number, preferWasm: boolean): SearchKernels {
  const key = `${v}:${m}:${preferWasm ? 'auto' : 'js'}`;
  let kernels = kernelCache.get(key);
  if (kernels === undefined) {
    kernels = createSearchKernels(v, m, preferWasm);
    kernelCache.set(key, kernels);
  }
  return kernels;
}

/** `buffer`'s first n elements when it has that many, else a fresh array. */
function outputInt32(buffer: Int32Array | undefined, n: number): Int32Array {
  return buffer !== undefined && buffer.length >= n ? buffer.subarray(0, n) : new Int32Array(n);
}

/**
 * Selects the V:N:M mask for `score` ([outFeatures, inFeatures], row-major, non-negative, finite).
 * A pure function of its inputs (options change only the speed).
 */
export function selectVnm(
  score: Float32Array,
  outFeatures: number,
  inFeatures: number,
  cfg: VnmConfig,
  rule: SelectionRule = 'exhaustive',
  options: SelectOptions = {},
): VnmSelection {
  validateVnm(cfg);
  if (score.length !== outFeatures * inFeatures) {
    throw new RangeError(
      `selectVnm: score has ${score.length} elements, expected ${outFeatures} x ${inFeatures} = ${outFeatures * inFeatures}`,
    );
  }
  if (rule !== 'exhaustive' && rule !== 'colsum') {
    throw new RangeError(`selectVnm: unknown rule "${String(rule)}" (expected 'exhaustive' or 'colsum')`);
  }

  const { v, m } = cfg;
  const { R, G, blocks, metaBytesPerRow } = packedShape(outFeatures, inFeatures, cfg);
  const K = inFeatures;
  const buffers = options.buffers;
  const columns = outputInt32(buffers?.columns, blocks * G * 4);
  const src = outputInt32(buffers?.src, R * 2 * G);
  const metaBytes = R * metaBytesPerRow;
  const meta = buffers?.meta !== undefined && buffers.meta.length >= metaBytes ? buffers.meta.subarray(0, metaBytes) : new Uint8Array(metaBytes);
  const kernels = cachedKernels(v, m, options.kernels !== 'js');
  const search = new BlockGroupSearch(v, m, kernels);
  const chosen = new Int32Array(4); // local column (0..M-1) per slot, -1 for a padding slot
  const slotColumn = new Int32Array(4); // absolute column per slot
  let keptScore = 0;
  let totalScore = 0;

  const fullGroups = Math.floor(K / m);
  const sums = new Float64Array(2);

  for (let b = 0; b < blocks; b++) {
    const row0 = b * v;
    const nRows = Math.min(v, outFeatures - row0);
    kernels.beginBlock(score, K, G, row0, nRows, src, meta);
    let g = 0;
    if (kernels.runGroups !== undefined && fullGroups > 0) {
      sums[0] = totalScore;
      sums[1] = keptScore;
      const done = kernels.runGroups(rule, fullGroups, columns, b * G * 4, sums);
      if (done < fullGroups) throwInvalid(score, K, row0, nRows, done * m, m);
      totalScore = sums[0];
      keptScore = sums[1];
      g = fullGroups;
    }
    for (; g < G; g++) {
      const c0 = g * m;
      const mReal = Math.min(m, K - c0);
      const total = search.load(c0, mReal);
      if (!(total >= 0)) throwInvalid(score, K, row0, nRows, c0, mReal);
      if (total === Infinity) throw invalidScore(-1, Infinity);
      totalScore += total;

      if (mReal >= 4) {
        if (rule === 'exhaustive') search.chooseExhaustive(nRows, mReal, chosen);
        else search.chooseByColumnSum(nRows, mReal, chosen);
        for (let p = 0; p < 4; p++) slotColumn[p] = c0 + chosen[p]!;
      } else {
        paddedGroupSlots(K, c0, mReal, chosen, slotColumn);
      }
      const at = (b * G + g) * 4;
      for (let p = 0; p < 4; p++) columns[at + p] = slotColumn[p]!;
      keptScore += kernels.assignGroup(g, chosen, slotColumn);
    }
    kernels.endBlock();
    if (nRows < v) writePaddingRows(src, meta, row0 + nRows, row0 + v, G, metaBytesPerRow);
  }
  return { outFeatures, inFeatures, v, m, rows: R, groups: G, columns, src, meta, keptScore, totalScore };
}

/** Padding rows [from, to): a valid code, zero values. */
function writePaddingRows(src: Int32Array, meta: Uint8Array, from: number, to: number, G: number, metaBytesPerRow: number): void {
  src.fill(-1, from * 2 * G, to * 2 * G);
  meta.fill(PADDING_ROW_CODE | (PADDING_ROW_CODE << 4), from * metaBytesPerRow, to * metaBytesPerRow);
  if ((G & 1) !== 0) {
    for (let r = from; r < to; r++) meta[r * metaBytesPerRow + metaBytesPerRow - 1] = PADDING_ROW_CODE;
  }
}

/** Throws for the first negative or NaN score of a block-group (row by row), as found by a kernel. */
function throwInvalid(score: Float32Array, K: number, row0: number, nRows: number, c0: number, mReal: number): never {
  for (let i = 0; i < nRows; i++) {
    const off = (row0 + i) * K + c0;
    for (let j = 0; j < mReal; j++) {
      const x = score[off + j]!;
      if (!(x >= 0)) throw invalidScore(off + j, x);
    }
  }
  // No negative or NaN score: the sum is infinite.
  let total = 0;
  for (let i = 0; i < nRows; i++) for (let j = 0; j < mReal; j++) total += score[(row0 + i) * K + c0 + j]!;
  if (total === Infinity) throw invalidScore(-1, Infinity);
  throw new Error('selectVnm: a kernel reported an invalid score that is not there');
}

function invalidScore(index: number, x: number): RangeError {
  const where = index >= 0 ? `element ${index} is ${x}` : 'an element is infinite';
  return new RangeError(`selectVnm: scores must be finite and non-negative (${where})`);
}

/**
 * Slots of a group with fewer than 4 real columns (only the last group): the real columns plus
 * padding columns just below the group (distinct while K >= 4, repeated only when K < 4), ascending.
 * A padding slot's local column is -1; among equal indices padding sorts first.
 */
function paddedGroupSlots(K: number, c0: number, mReal: number, chosen: Int32Array, slotColumn: Int32Array): void {
  const entries: Array<[column: number, local: number]> = [];
  for (let j = 0; j < mReal; j++) entries.push([c0 + j, j]);
  for (let c = K - 1; c >= 0 && entries.length < 4; c--) {
    if (c < c0 || c >= c0 + mReal) entries.push([c, -1]);
  }
  while (entries.length < 4) entries.push([0, -1]); // K < 4: duplicates are unavoidable
  entries.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  for (let p = 0; p < 4; p++) {
    slotColumn[p] = entries[p]![0];
    chosen[p] = entries[p]![1];
  }
}

/** Scratch and search for one (block, group) at a time; buffers are reused across groups. */
class BlockGroupSearch {
  private readonly v: number;
  private readonly kernels: SearchKernels;
  private readonly networks = new Map<number, Int32Array>();
  private readonly ranks = new Map<number, Int32Array>();
  private readonly colSum: Float64Array;
  /** The starting subset found by prepareBounds. */
  private startKey = 0;
  /** Sum of the scores loaded last. */
  private loadedTotal = 0;

  constructor(v: number, m: number, kernels: SearchKernels) {
    this.v = v;
    this.kernels = kernels;
    this.colSum = new Float64Array(m);
  }

  /** Loads a group of the current block into the kernels (see SearchKernels.loadGroup). */
  load(c0: number, mReal: number): number {
    const total = this.kernels.loadGroup(c0, mReal);
    this.loadedTotal = total;
    return total;
  }

  /** The 4 columns with the largest summed score over the block's rows (ties: lower column). */
  chooseByColumnSum(nRows: number, mReal: number, chosen: Int32Array): void {
    const s = this.kernels.s;
    const v = this.v;
    const colSum = this.colSum;
    for (let j = 0; j < mReal; j++) {
      let acc = 0;
      const o = j * v;
      for (let i = 0; i < nRows; i++) acc += s[o + i]!;
      colSum[j] = acc;
    }
    topFourColumns(colSum, mReal, chosen);
  }

  /** The exact VENOM optimum; ties go to the lexicographically lowest subset. */
  chooseExhaustive(nRows: number, mReal: number, chosen: Int32Array): void {
    let bestKey = subsetKey(0, 1, 2, 3);
    // mReal == 4 has one subset; all-zero scores tie everywhere and the lowest subset wins.
    if (mReal > 4 && this.loadedTotal !== 0) {
      const nRowsEven = nRows + (nRows & 1);
      if (mReal <= EVALUATE_ALL_UP_TO_M) bestKey = this.evaluateAll(nRowsEven, mReal);
      else bestKey = this.branchAndBound(nRowsEven, mReal);
    }
    chosen[0] = (bestKey >> 15) & 31;
    chosen[1] = (bestKey >> 10) & 31;
    chosen[2] = (bestKey >> 5) & 31;
    chosen[3] = bestKey & 31;
  }

  private evaluateAll(nRowsEven: number, mReal: number): number {
    const kernels = this.kernels;
    let best = -1;
    let bestKey = 0;
    for (let a = 0; a < mReal - 3; a++) {
      for (let b = a + 1; b < mReal - 2; b++) {
        for (let c = b + 1; c < mReal - 1; c++) {
          for (let d = c + 1; d < mReal; d++) {
            const value = kernels.evaluate(a, b, c, d, nRowsEven);
            // Lexicographic order of visits: only a strictly larger value replaces the best.
            if (value > best) {
              best = value;
              bestKey = subsetKey(a, b, c, d);
            }
          }
        }
      }
    }
    return bestKey;
  }

  /** Branch and bound over a < b < c < e (see the kernels), pruning with Lagrangian bounds. */
  private branchAndBound(nRowsEven: number, mReal: number): number {
    const nt = this.prepareBounds(nRowsEven, mReal);
    // Every row constant (quantised or degenerate scores): all subsets tie, the lowest wins. Without
    // this shortcut such ties defeat the bounds and every subset would be evaluated.
    if (this.kernels.rowSpread[0] === 0) return subsetKey(0, 1, 2, 3);
    // Rounding allowance for bound comparisons. Every value and partial bound is at most
    // 4 * (sum of row maxima) <= 4 * total and is a sum of at most 3V + 10 rounded terms, so its
    // error is below (3V + 10) * 2^-52 * 4 * total; 1e-12 * (V + 10) * total is far above that.
    const tol = this.loadedTotal * 1e-12 * (nRowsEven + 10);
    const start = this.startKey;
    const best = this.kernels.evaluate((start >> 15) & 31, (start >> 10) & 31, (start >> 5) & 31, start & 31, nRowsEven);
    return this.kernels.branchAndBound(mReal, nRowsEven, nt, tol, best, start);
  }

  /**
   * Thresholds and per-column Lagrangian terms (kernels), then per threshold the suffix sums of
   * the 1, 2, 3 largest terms (bounds for the columns still to choose) and a starting subset: the
   * top-4 columns of the threshold whose own best bound is smallest, usually optimal or close, so
   * most of the tree is pruned from the first node on. Returns the threshold count.
   */
  private prepareBounds(nRowsEven: number, mReal: number): number {
    let network = this.networks.get(mReal);
    if (network === undefined) {
      network = sortingNetwork(mReal);
      this.networks.set(mReal, network);
    }
    let ranks = this.ranks.get(mReal);
    if (ranks === undefined) {
      ranks = thresholdRanks(mReal);
      this.ranks.set(mReal, ranks);
    }
    const kernels = this.kernels;
    kernels.prepareBounds(mReal, nRowsEven, network, ranks);
    const d = kernels.d;
    const suffixTop = kernels.suffixTop;
    const nt = ranks.length;
    let tightest = Infinity;
    for (let t = 0; t < nt; t++) {
      // Top four terms (with their columns) of the suffix j.., walking j down.
      let top1 = 0;
      let top2 = 0;
      let top3 = 0;
      let top4 = 0;
      let j1 = 0;
      let j2 = 1;
      let j3 = 2;
      let j4 = 3;
      const base = t * SUFFIX_STRIDE;
      suffixTop[base + mReal * 3] = 0;
      suffixTop[base + mReal * 3 + 1] = 0;
      suffixTop[base + mReal * 3 + 2] = 0;
      for (let j = mReal - 1; j >= 0; j--) {
        const x = d[t * D_STRIDE + j]!;
        // >= so that among equal terms the lower column ranks first.
        if (x >= top4) {
          if (x >= top3) {
            top4 = top3;
            j4 = j3;
            if (x >= top2) {
              top3 = top2;
              j3 = j2;
              if (x >= top1) {
                top2 = top1;
                j2 = j1;
                top1 = x;
                j1 = j;
              } else {
                top2 = x;
                j2 = j;
              }
            } else {
              top3 = x;
              j3 = j;
            }
          } else {
            top4 = x;
            j4 = j;
          }
        }
        suffixTop[base + j * 3] = top1;
        suffixTop[base + j * 3 + 1] = top1 + top2;
        suffixTop[base + j * 3 + 2] = top1 + top2 + top3;
      }
      const bound = kernels.c0[t]! + top1 + top2 + top3 + top4;
      if (bound < tightest) {
        tightest = bound;
        this.startKey = sortedSubsetKey(j1, j2, j3, j4);
      }
    }
    return nt;
  }
}

/** Key of four distinct local columns given in any order. */
function sortedSubsetKey(j1: number, j2: number, j3: number, j4: number): number {
  let mask = (1 << j1) | (1 << j2) | (1 << j3) | (1 << j4);
  let key = 0;
  for (let p = 0; p < 4; p++) {
    const lowest = 31 - Math.clz32(mask & -mask);
    key = (key << 5) | lowest;
    mask &= mask - 1;
  }
  return key;
}

/** The 4 largest of values[0..n) (ties: lower index), written ascending into chosen. */
function topFourColumns(values: Float64Array, n: number, chosen: Int32Array): void {
  let taken = 0; // bit mask of picked columns
  for (let p = 0; p < 4; p++) {
    let bestJ = -1;
    let bestValue = -Infinity;
    for (let j = 0; j < n; j++) {
      if ((taken >>> j) & 1) continue;
      const x = values[j]!;
      if (x > bestValue) {
        bestValue = x;
        bestJ = j;
      }
    }
    taken |= 1 << bestJ;
  }
  let p = 0;
  for (let j = 0; j < n && p < 4; j++) if ((taken >>> j) & 1) chosen[p++] = j;
}
