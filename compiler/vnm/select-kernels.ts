/**
 * The hot loops of V:N:M selection, over one block of V rows at a time. Two implementations with
 * identical results:
 *  - WebAssembly SIMD (f64x2), assembled here at load time, one module per (V, M) (a few tens of
 *    KB, assembled in ~10-50 ms): V8 compiles JS max/compare on doubles into branches that
 *    mispredict on random scores, while f64x2.pmax is one instruction for two rows. Besides the
 *    per-group kernels (evaluate, prepare, search<nt>, load, assign), each module has block
 *    functions (blockExhaustive, blockColsum, behind SearchKernels.runGroups) that take every
 *    group of M real columns of a block from the float32 scores to src/meta/columns without
 *    returning to JS: loading, validation and sums; the bounds' sorting network in registers; the
 *    bound terms, their suffix sums and the starting subset; a branch and bound that tests both
 *    thresholds of a node with one f64x2 compare; evaluation unrolled over the V rows; the row
 *    assignment two rows at a time. Its scratch memory holds the block's scores and outputs;
 *    they are copied in and out once per block.
 *  - plain JS, used only where WebAssembly SIMD is unavailable, and by tests as a cross-check.
 * Every number that decides or is part of the result (subset values, row and group sums, kept
 * scores, column sums) is computed with the same float64 operations in the same order by both
 * (e.g. `evaluate` sums even and odd rows in two separate accumulators, the two SIMD lanes, and
 * adds them at the end), so the selection does not depend on which one ran. Bound arithmetic may
 * differ: bounds only decide what is skipped, within the rounding allowance `tol` (select.ts).
 */
import { sleb, uleb, wasmApi, type WasmApi, type WasmMemory, type WasmModule } from "../numeric/wasm-api.js";

/** Threshold slots of the Lagrangian bounds (see select.ts) and the column stride of `d`. */
export const MAX_THRESHOLDS = 5;
export const D_STRIDE = 32;

export interface SearchKernels {
  readonly kind: 'wasm' | 'js';
  /**
   * Scores s[j * v + i] (local column j, row i), columns 0..m+1: column m is all -1 (how padding
   * slots rank), column m + 1 all 0 (what they are worth).
   */
  readonly s: Float64Array;
  /** After prepareBounds: c0[t] = 2 * sum of row thresholds t. */
  readonly c0: Float64Array;
  /**
   * After prepareBounds: rowSpread[0] = sum over rows of (max - min) of the row's scores; 0 exactly
   * when every row is constant, so that every subset ties.
   */
  readonly rowSpread: Float64Array;
  /** After prepareBounds: d[t * D_STRIDE + j] = sum over rows of max(s[j] - threshold_t, 0). */
  readonly d: Float64Array;
  /**
   * suffixTop[t * SUFFIX_STRIDE + j * 3 + (n - 1)]: sum of the n largest d[t][j'] over j' >= j
   * (n = 1, 2, 3), filled by the caller after prepareBounds, for branchAndBound.
   */
  readonly suffixTop: Float64Array;
  /**
   * Sum over rows 0..nRowsEven-1 of the sum of each row's top two among columns a, b, c, d.
   * nRowsEven is even and >= 2; rows past the real ones must be zero.
   */
  evaluate(a: number, b: number, c: number, d: number, nRowsEven: number): number;
  /**
   * Sorts each row of columns 0..mReal-1 with `network` (descending comparator pairs), takes the
   * sorted columns `ranks[t] - 1` as per-row thresholds and fills c0 and d.
   */
  prepareBounds(mReal: number, nRowsEven: number, network: Int32Array, ranks: Int32Array): void;
  /**
   * Depth-first search over subsets a < b < c < e of mReal columns with thresholds 0..nt-1:
   * skips every prefix whose bound (c0 + d terms chosen + suffixTop of the rest, min over
   * thresholds) is below best - tol, evaluates the other leaves except startKey, and returns the key
   * of the best (value, then lowest key) starting from (best, startKey).
   */
  branchAndBound(mReal: number, nRowsEven: number, nt: number, tol: number, best: number, startKey: number): number;
  /**
   * Starts a block: rows row0 .. row0 + nRows - 1 of `score` ([*, K] row-major), whose src and meta
   * rows (G groups) go to `src` and `meta` (complete once endBlock returns). May replace the arrays
   * above (s, c0, ...): read them again after this call.
   */
  beginBlock(score: Float32Array, K: number, G: number, row0: number, nRows: number, src: Int32Array, meta: Uint8Array): void;
  /**
   * Loads columns c0 .. c0 + mReal - 1 of the block into s, plus a zero row when nRows is odd.
   * Returns the sum of the scores (each row's sum in column order, added up in row order), or -1
   * when a score is negative or NaN (the caller finds and reports it).
   */
  loadGroup(c0: number, mReal: number): number;
  /**
   * Per row, the 2 of the block's 4 slots it keeps: the largest two scores, real columns before
   * padding slots, then the lower position. chosen[p]: local column of slot p, -1 for a padding
   * slot; slotColumn[p]: its input column. Writes the rows' src and meta of group g (the meta
   * byte of an even g is overwritten whole), returns the kept score (added up in row order).
   */
  assignGroup(g: number, chosen: Int32Array, slotColumn: Int32Array): number;
  /** Ends the block begun last: its src and meta rows are in the caller's arrays. */
  endBlock(): void;
  /**
   * Optional fast path (WebAssembly only): groups 0 .. gCount - 1 of the block begun last, all
   * with M real columns, loaded, chosen by `rule`, assigned, their input columns written to
   * columns[at ..] and their sums added to sums = [totalScore, keptScore], in one call; the
   * same results as loadGroup, the search and assignGroup group by group. Returns the number of
   * groups done: less than gCount when group (return value) has a negative or NaN score or an
   * infinite sum (nothing of that group is recorded; the caller reports it).
   */
  runGroups?(rule: 'exhaustive' | 'colsum', gCount: number, columns: Int32Array, at: number, sums: Float64Array): number;
}

/**
 * Meta nibble (p0 | p1 << 2) of the two positions a row keeps, indexed by the six comparisons
 * x_p >= x_q (p < q) of its four slot scores, bits in the order 01, 02, 03, 12, 13, 23. A position
 * beaten by fewer than two others is kept: the two largest, ties going to the lower position.
 */
export const CODE_OF_BEATS = new Uint8Array(64);
{
  const pairs = [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]] as const;
  for (let bits = 0; bits < 64; bits++) {
    const beaten = [0, 0, 0, 0];
    pairs.forEach(([p, q], k) => {
      if ((bits >> k) & 1) beaten[q]!++;
      else beaten[p]!++;
    });
    const kept = [0, 1, 2, 3].filter((p) => beaten[p]! < 2);
    // Patterns that no real scores produce (cycles) keep any valid code.
    CODE_OF_BEATS[bits] = kept.length === 2 ? kept[0]! | (kept[1]! << 2) : 0 | (1 << 2);
  }
}

/** Comparators (i < j) of a descending sorting network on n inputs (Batcher odd-even merge). */
export function sortingNetwork(n: number): Int32Array {
  let size = 1;
  while (size < n) size *= 2;
  const pairs: number[] = [];
  for (let p = 1; p < size; p *= 2) {
    for (let k = p; k >= 1; k = Math.floor(k / 2)) {
      for (let j = k % p; j + k < size; j += 2 * k) {
        for (let i = 0; i < k && i + j + k < size; i++) {
          if (Math.floor((i + j) / (2 * p)) === Math.floor((i + j + k) / (2 * p))) {
            // Inputs past n stand for -inf at the end: their comparators never move anything.
            if (i + j + k < n) pairs.push(i + j, i + j + k);
          }
        }
      }
    }
  }
  return Int32Array.from(pairs);
}

/**
 * Ranks (1-based, descending) of the per-row order statistics used as Lagrangian thresholds.
 * A random 4-subset's 2nd and 3rd best fall near global ranks 0.4M..0.6M, the winning subsets'
 * a little higher; ranks M/4+1 .. M/2+1 measured best (fewest subsets left to evaluate), and the
 * lowest of them, M/4+1, almost never gives the minimum: leaving it out prunes the same subsets
 * on |gaussian| and heavy-tailed scores (M = 7 .. 16; slightly more at M = 32), 1 % fewer with
 * per-row gains and outlier columns, for 2 thresholds instead of 3 at M = 8 (bench/prune-throughput.md).
 */
export function thresholdRanks(mReal: number): Int32Array {
  const lo = Math.max(2, Math.round(mReal / 4) + 2);
  const hi = Math.min(mReal, Math.round(mReal / 2) + 1);
  const count = Math.min(5, hi - lo + 1);
  const ranks: number[] = [];
  for (let i = 0; i < count; i++) {
    const k = count === 1 ? lo : Math.round(lo + ((hi - lo) * i) / (count - 1));
    if (!ranks.includes(k)) ranks.push(k);
  }
  return Int32Array.from(ranks);
}

/** Up to this many real columns, every subset is evaluated: bounds would cost more than they save. */
export const EVALUATE_ALL_UP_TO_M = 6;

/** Per-threshold stride of suffixTop: (32 + 1) columns x 3. */
export const SUFFIX_STRIDE = 99;

/** Lexicographic key of a sorted subset of local columns (each < 32). */
export function subsetKey(a: number, b: number, c: number, d: number): number {
  return (a << 15) | (b << 10) | (c << 5) | d;
}

/** Kernels for blocks of v rows and groups of m columns: WebAssembly when available, else JS. */
export function createSearchKernels(v: number, m: number, preferWasm = true): SearchKernels {
  if (preferWasm) {
    const layout = kernelLayout(v, m);
    const module = wasmModule(layout);
    if (module !== null) {
      try {
        return new WasmKernels(wasmApi!, module, layout);
      } catch {
        // e.g. a runtime that refuses to allocate wasm memory: the JS loops give the same result
      }
    }
  }
  return new JsKernels(v, m);
}

const EMPTY_F32 = new Float32Array(0);
const EMPTY_I32 = new Int32Array(0);
const EMPTY_U8 = new Uint8Array(0);

// ---------------------------------------------------------------------------------------------
// JS implementation

class JsKernels implements SearchKernels {
  readonly kind = 'js' as const;
  readonly s: Float64Array;
  readonly c0 = new Float64Array(MAX_THRESHOLDS);
  readonly rowSpread = new Float64Array(1);
  readonly d = new Float64Array(MAX_THRESHOLDS * D_STRIDE);
  readonly suffixTop = new Float64Array(MAX_THRESHOLDS * SUFFIX_STRIDE);
  /** Partial bounds per DFS level (1..3) and threshold, at (level - 1) * MAX_THRESHOLDS + t. */
  private readonly partial = new Float64Array(3 * MAX_THRESHOLDS);
  private readonly sorted: Float64Array;
  private readonly v: number;
  private readonly m: number;
  private score: Float32Array = EMPTY_F32;
  private src: Int32Array = EMPTY_I32;
  private meta: Uint8Array = EMPTY_U8;
  private K = 0;
  private G = 0;
  private row0 = 0;
  private nRows = 0;

  constructor(v: number, m: number) {
    this.v = v;
    this.m = m;
    this.s = new Float64Array((m + 2) * v);
    this.s.fill(-1, m * v, (m + 1) * v);
    this.sorted = new Float64Array(m * v);
  }

  beginBlock(score: Float32Array, K: number, G: number, row0: number, nRows: number, src: Int32Array, meta: Uint8Array): void {
    this.score = score;
    this.K = K;
    this.G = G;
    this.row0 = row0;
    this.nRows = nRows;
    this.src = src;
    this.meta = meta;
  }

  loadGroup(c0: number, mReal: number): number {
    const { s, v, score, K, row0, nRows } = this;
    let total = 0;
    let valid = true;
    for (let i = 0; i < nRows; i++) {
      const off = (row0 + i) * K + c0;
      let rowSum = 0;
      for (let j = 0; j < mReal; j++) {
        const x = score[off + j]!;
        valid = valid && x >= 0;
        s[j * v + i] = x;
        rowSum += x;
      }
      total += rowSum;
    }
    if ((nRows & 1) !== 0) for (let j = 0; j < mReal; j++) s[j * v + nRows] = 0;
    return valid ? total : -1;
  }

  assignGroup(g: number, chosen: Int32Array, slotColumn: Int32Array): number {
    const { s, v, m, src, meta, G, row0, nRows } = this;
    // Padding slots rank by the all -1 column (below every real score, so real columns win) and
    // are worth the all 0 column.
    const slot = (p: number): number => (chosen[p]! >= 0 ? chosen[p]! : m);
    const srcOf = (p: number): number => (chosen[p]! >= 0 ? slotColumn[p]! : -1);
    const o0 = slot(0) * v;
    const o1 = slot(1) * v;
    const o2 = slot(2) * v;
    const o3 = slot(3) * v;
    const slotSrc = [srcOf(0), srcOf(1), srcOf(2), srcOf(3)];
    const slotWorth = [0, 1, 2, 3].map((p) => (chosen[p]! >= 0 ? chosen[p]! : m + 1) * v);
    const shift = (g & 1) << 2;
    const keepMask = (g & 1) !== 0 ? 0xff : 0;
    const metaBytesPerRow = (G + 1) >> 1;
    let kept = 0;
    for (let i = 0; i < nRows; i++) {
      const x0 = s[o0 + i]!;
      const x1 = s[o1 + i]!;
      const x2 = s[o2 + i]!;
      const x3 = s[o3 + i]!;
      const beats = +(x0 >= x1) | (+(x0 >= x2) << 1) | (+(x0 >= x3) << 2) | (+(x1 >= x2) << 3) | (+(x1 >= x3) << 4) | (+(x2 >= x3) << 5);
      const code = CODE_OF_BEATS[beats]!;
      const p0 = code & 3;
      const p1 = code >> 2;
      const r = row0 + i;
      const so = r * 2 * G + 2 * g;
      src[so] = slotSrc[p0]!;
      src[so + 1] = slotSrc[p1]!;
      const mo = r * metaBytesPerRow + (g >> 1);
      meta[mo] = (meta[mo]! & keepMask) | (code << shift);
      kept += s[slotWorth[p0]! + i]! + s[slotWorth[p1]! + i]!;
    }
    return kept;
  }

  endBlock(): void {
    // Cached kernels outlive the call: drop the references to its (possibly large) arrays.
    this.score = EMPTY_F32;
    this.src = EMPTY_I32;
    this.meta = EMPTY_U8;
  }

  evaluate(a: number, b: number, c: number, d: number, nRowsEven: number): number {
    const s = this.s;
    const v = this.v;
    const oa = a * v;
    const ob = b * v;
    const oc = c * v;
    const od = d * v;
    let even = 0;
    let odd = 0;
    for (let i = 0; i < nRowsEven; i += 2) {
      even += topTwoSum(s[oa + i]!, s[ob + i]!, s[oc + i]!, s[od + i]!);
      odd += topTwoSum(s[oa + i + 1]!, s[ob + i + 1]!, s[oc + i + 1]!, s[od + i + 1]!);
    }
    return even + odd;
  }

  prepareBounds(mReal: number, nRowsEven: number, network: Int32Array, ranks: Int32Array): void {
    const v = this.v;
    const s = this.s;
    const sorted = this.sorted;
    sorted.set(s.subarray(0, mReal * v));
    for (let q = 0; q < network.length; q += 2) {
      const oi = network[q]! * v;
      const oj = network[q + 1]! * v;
      for (let i = 0; i < nRowsEven; i++) {
        const x = sorted[oi + i]!;
        const y = sorted[oj + i]!;
        sorted[oi + i] = max(x, y);
        sorted[oj + i] = min(x, y);
      }
    }
    const last = (mReal - 1) * v;
    let spread = 0;
    for (let i = 0; i < nRowsEven; i++) spread += sorted[i]! - sorted[last + i]!;
    this.rowSpread[0] = spread;
    for (let t = 0; t < ranks.length; t++) {
      const ot = (ranks[t]! - 1) * v;
      let thresholdSum = 0;
      for (let i = 0; i < nRowsEven; i++) thresholdSum += sorted[ot + i]!;
      this.c0[t] = 2 * thresholdSum;
      for (let j = 0; j < mReal; j++) {
        const o = j * v;
        let acc = 0;
        for (let i = 0; i < nRowsEven; i++) acc += max(s[o + i]! - sorted[ot + i]!, 0);
        this.d[t * D_STRIDE + j] = acc;
      }
    }
  }

  branchAndBound(mReal: number, nRowsEven: number, nt: number, tol: number, best: number, startKey: number): number {
    const { c0, d, suffixTop, partial } = this;
    const L2 = MAX_THRESHOLDS;
    const L3 = 2 * MAX_THRESHOLDS;
    let bestKey = startKey;
    for (let a = 0; a < mReal - 3; a++) {
      let bound = Infinity;
      for (let t = 0; t < nt; t++) {
        const p = c0[t]! + d[t * D_STRIDE + a]!;
        partial[t] = p;
        bound = Math.min(bound, p + suffixTop[t * SUFFIX_STRIDE + (a + 1) * 3 + 2]!);
      }
      if (bound < best - tol) continue;
      for (let b = a + 1; b < mReal - 2; b++) {
        bound = Infinity;
        for (let t = 0; t < nt; t++) {
          const p = partial[t]! + d[t * D_STRIDE + b]!;
          partial[L2 + t] = p;
          bound = Math.min(bound, p + suffixTop[t * SUFFIX_STRIDE + (b + 1) * 3 + 1]!);
        }
        if (bound < best - tol) continue;
        for (let c = b + 1; c < mReal - 1; c++) {
          bound = Infinity;
          for (let t = 0; t < nt; t++) {
            const p = partial[L2 + t]! + d[t * D_STRIDE + c]!;
            partial[L3 + t] = p;
            bound = Math.min(bound, p + suffixTop[t * SUFFIX_STRIDE + (c + 1) * 3]!);
          }
          if (bound < best - tol) continue;
          for (let e = c + 1; e < mReal; e++) {
            bound = Infinity;
            for (let t = 0; t < nt; t++) bound = Math.min(bound, partial[L3 + t]! + d[t * D_STRIDE + e]!);
            if (bound < best - tol) continue;
            const key = subsetKey(a, b, c, e);
            if (key === startKey) continue;
            const value = this.evaluate(a, b, c, e, nRowsEven);
            if (value > best || (value === best && key < bestKey)) {
              best = value;
              bestKey = key;
            }
          }
        }
      }
    }
    return bestKey;
  }
}

/** Exact max without a data-dependent branch. */
function max(x: number, y: number): number {
  const k = +(x > y);
  return k * x + (1 - k) * y;
}

/** Exact min without a data-dependent branch. */
function min(x: number, y: number): number {
  const k = +(x < y);
  return k * x + (1 - k) * y;
}

/** Sum of the two largest of four: max(x + y, z + w, max(x, y) + max(z, w)), as the kernel computes it. */
function topTwoSum(x: number, y: number, z: number, w: number): number {
  return max(max(x + y, z + w), max(x, y) + max(z, w));
}

// ---------------------------------------------------------------------------------------------
// WebAssembly implementation

interface WasmExports {
  evaluate(oa: number, ob: number, oc: number, od: number, nBytes: number): number;
  prepare(
    sOff: number,
    sortedOff: number,
    columnBytes: number,
    mReal: number,
    nBytes: number,
    netOff: number,
    netPairs: number,
    ranksOff: number,
    nt: number,
    dOff: number,
    c0Off: number,
  ): void;
  load(inAt: number, rowStride: number, nBytes: number, mReal: number, colBytes: number): number;
  assign(
    nBytes: number,
    s0: number, s1: number, s2: number, s3: number,
    o0: number, o1: number, o2: number, o3: number,
    w0: number, w1: number, w2: number, w3: number,
    srcAt: number, srcStride: number, metaAt: number, metaStride: number, keepMask: number, shift: number,
    tab: number, codeTab: number,
  ): number;
  blockExhaustive: BlockFunction;
  blockColsum: BlockFunction;
  [search: `search${number}`]: (
    mReal: number,
    nBytes: number,
    columnBytes: number,
    dOff: number,
    suffixOff: number,
    c0Off: number,
    tol: number,
    best: number,
    startKey: number,
  ) => number;
}

type BlockFunction = (
  gCount: number,
  nBytes: number,
  rowStride: number,
  srcStride: number,
  metaStride: number,
  srcOff: number,
  metaOff: number,
  colOut: number,
) => number;

/** Byte offsets of everything in a kernel instance's memory, for blocks of v rows, groups of m. */
interface KernelLayout {
  v: number;
  m: number;
  colBytes: number;
  sortedOff: number;
  dOff: number;
  c0Off: number;
  suffixOff: number;
  netOff: number;
  ranksOff: number;
  /** assign's slot tables (4 src values, 4 worth offsets) and the 64-byte CODE_OF_BEATS. */
  tabOff: number;
  codeOff: number;
  /** The block functions' per row pair thresholds [MAX_THRESHOLDS][v], d [m][nv x 2] and suffix sums [m + 1][3][nv x 2]. */
  thrOff: number;
  dTOff: number;
  sufTOff: number;
  /** c0 per threshold [nv x 2], a missing last lane (odd nt) +Infinity so that it never prunes. */
  c0TOff: number;
  /** assignPairs' src pairs by meta code, 16 x i64. */
  pairTabOff: number;

  /** [totalScore, keptScore] of runGroups. */
  sumsOff: number;
  /** The block's scores [v, K] float32, then its src, meta and columns (sized per call). */
  inOff: number;
  /** Threshold ranks, sorting network, threshold count and vectors of two thresholds, for m. */
  ranks: Int32Array;
  network: Int32Array;
  nt: number;
  nv: number;
}

export function kernelLayout(v: number, m: number): KernelLayout {
  const colBytes = v * 8;
  const ranks = thresholdRanks(m);
  const nt = ranks.length;
  const nv = (nt + 1) >> 1;
  // s (m + 2 columns), sorted (m columns), d, c0, suffix sums, network pairs, ranks, ...
  const sortedOff = (m + 2) * colBytes;
  const dOff = sortedOff + m * colBytes;
  const c0Off = dOff + MAX_THRESHOLDS * D_STRIDE * 8;
  const suffixOff = c0Off + (MAX_THRESHOLDS + 1) * 8; // c0, then rowSpread
  const netOff = suffixOff + MAX_THRESHOLDS * SUFFIX_STRIDE * 8;
  const ranksOff = netOff + 2 * 4 * maxNetworkPairs(m);
  const tabOff = align16(ranksOff + 4 * MAX_THRESHOLDS);
  const codeOff = tabOff + 32;
  const thrOff = align16(codeOff + 64);
  const dTOff = thrOff + MAX_THRESHOLDS * colBytes;
  const sufTOff = dTOff + m * nv * 16;
  const c0TOff = sufTOff + (m + 1) * 3 * nv * 16;
  const pairTabOff = c0TOff + nv * 16;
  const sumsOff = pairTabOff + 16 * 8;
  const inOff = align16(sumsOff + 16);
  return {
    v, m, colBytes, sortedOff, dOff, c0Off, suffixOff, netOff, ranksOff, tabOff, codeOff, thrOff, dTOff, sufTOff, c0TOff, pairTabOff, sumsOff, inOff,
    ranks, network: sortingNetwork(m), nt, nv,
  };
}

class WasmKernels implements SearchKernels {
  readonly kind = 'wasm' as const;
  s!: Float64Array;
  c0!: Float64Array;
  rowSpread!: Float64Array;
  d!: Float64Array;
  suffixTop!: Float64Array;
  private readonly exports: WasmExports;
  private readonly memory: WasmMemory;
  /** search1 .. search5, by threshold count. */
  private readonly searches: Array<WasmExports[`search${number}`]>;
  private readonly v: number;
  private readonly m: number;
  private readonly suffixOff: number;
  private i32!: Int32Array;
  private f32!: Float32Array;
  private u8!: Uint8Array;
  private readonly columnBytes: number;
  private readonly sortedOff: number;
  private readonly netOff: number;
  private readonly ranksOff: number;
  private readonly dOff: number;
  private readonly c0Off: number;
  /** Slot tables of assign (4 src values, 4 worth offsets) and the 64-byte CODE_OF_BEATS. */
  private readonly tabOff: number;
  private readonly codeOff: number;
  /** The block's scores [v, K] float32, then its src [v, 2G] and meta [v, ceil(G / 2)]. */
  private readonly inOff: number;
  private srcOff = 0;
  private metaOff = 0;
  private loadedNetwork: Int32Array | null = null;
  private loadedRanks: Int32Array | null = null;
  // The block begun last.
  private src: Int32Array = EMPTY_I32;
  private meta: Uint8Array = EMPTY_U8;
  private K = 0;
  private G = 0;
  private row0 = 0;
  private nRows = 0;

  private readonly layout: KernelLayout;
  private f64!: Float64Array;
  private colOutOff = 0;

  constructor(api: WasmApi, module: WasmModule, layout: KernelLayout) {
    const { v, m } = layout;
    this.layout = layout;
    this.v = v;
    this.m = m;
    this.columnBytes = layout.colBytes;
    this.sortedOff = layout.sortedOff;
    this.dOff = layout.dOff;
    this.c0Off = layout.c0Off;
    this.suffixOff = layout.suffixOff;
    this.netOff = layout.netOff;
    this.ranksOff = layout.ranksOff;
    this.tabOff = layout.tabOff;
    this.codeOff = layout.codeOff;
    this.inOff = layout.inOff;
    this.memory = new api.Memory({ initial: Math.ceil(this.inOff / 65536) });
    const instance = new api.Instance(module, { env: { memory: this.memory } });
    this.exports = instance.exports as unknown as WasmExports;
    this.searches = [];
    for (let nt = 1; nt <= MAX_THRESHOLDS; nt++) this.searches[nt] = this.exports[`search${nt}`];
    this.views();
    this.s.fill(-1, m * v, (m + 1) * v);
    this.u8.set(CODE_OF_BEATS, this.codeOff);
  }

  /** (Re)creates the views of the memory (growing it detaches the old ones). */
  private views(): void {
    const buffer = this.memory.buffer;
    const { v, m } = this;
    this.s = new Float64Array(buffer, 0, (m + 2) * v);
    this.c0 = new Float64Array(buffer, this.c0Off, MAX_THRESHOLDS);
    this.rowSpread = new Float64Array(buffer, this.c0Off + MAX_THRESHOLDS * 8, 1);
    this.d = new Float64Array(buffer, this.dOff, MAX_THRESHOLDS * D_STRIDE);
    this.suffixTop = new Float64Array(buffer, this.suffixOff, MAX_THRESHOLDS * SUFFIX_STRIDE);
    this.i32 = new Int32Array(buffer);
    this.f64 = new Float64Array(buffer);
    this.f32 = new Float32Array(buffer);
    this.u8 = new Uint8Array(buffer);
  }

  beginBlock(score: Float32Array, K: number, G: number, row0: number, nRows: number, src: Int32Array, meta: Uint8Array): void {
    const v = this.v;
    // The score rows (plus a zero row when nRows is odd), then src and meta.
    this.srcOff = align16(this.inOff + v * K * 4);
    this.metaOff = this.srcOff + v * 2 * G * 4;
    this.colOutOff = align16(this.metaOff + v * ((G + 1) >> 1));
    const bytes = this.colOutOff + G * 16;
    const have = this.memory.buffer.byteLength;
    if (bytes > have) {
      this.memory.grow(Math.ceil((bytes - have) / 65536));
      this.views();
    }
    this.K = K;
    this.G = G;
    this.row0 = row0;
    this.nRows = nRows;
    this.src = src;
    this.meta = meta;
    const at = this.inOff >> 2;
    this.f32.set(score.subarray(row0 * K, (row0 + nRows) * K), at);
    if ((nRows & 1) !== 0) this.f32.fill(0, at + nRows * K, at + (nRows + 1) * K);
  }

  loadGroup(c0: number, mReal: number): number {
    const nRowsEven = this.nRows + (this.nRows & 1);
    return this.exports.load(this.inOff + c0 * 4, this.K * 4, nRowsEven * 8, mReal, this.columnBytes);
  }

  assignGroup(g: number, chosen: Int32Array, slotColumn: Int32Array): number {
    const cb = this.columnBytes;
    const m = this.m;
    const c0 = chosen[0]!;
    const c1 = chosen[1]!;
    const c2 = chosen[2]!;
    const c3 = chosen[3]!;
    const srcStride = this.G * 8;
    const metaStride = (this.G + 1) >> 1;
    return this.exports.assign(
      this.nRows * 8,
      c0 >= 0 ? slotColumn[0]! : -1, c1 >= 0 ? slotColumn[1]! : -1, c2 >= 0 ? slotColumn[2]! : -1, c3 >= 0 ? slotColumn[3]! : -1,
      (c0 >= 0 ? c0 : m) * cb, (c1 >= 0 ? c1 : m) * cb, (c2 >= 0 ? c2 : m) * cb, (c3 >= 0 ? c3 : m) * cb,
      (c0 >= 0 ? c0 : m + 1) * cb, (c1 >= 0 ? c1 : m + 1) * cb, (c2 >= 0 ? c2 : m + 1) * cb, (c3 >= 0 ? c3 : m + 1) * cb,
      this.srcOff + g * 8, srcStride, this.metaOff + (g >> 1), metaStride, (g & 1) !== 0 ? 0xff : 0, (g & 1) << 2,
      this.tabOff, this.codeOff,
    );
  }

  endBlock(): void {
    const n = this.nRows;
    const twoG = 2 * this.G;
    const metaBytesPerRow = (this.G + 1) >> 1;
    this.src.set(this.i32.subarray(this.srcOff >> 2, (this.srcOff >> 2) + n * twoG), this.row0 * twoG);
    this.meta.set(this.u8.subarray(this.metaOff, this.metaOff + n * metaBytesPerRow), this.row0 * metaBytesPerRow);
    this.src = EMPTY_I32;
    this.meta = EMPTY_U8;
  }

  runGroups(rule: 'exhaustive' | 'colsum', gCount: number, columns: Int32Array, at: number, sums: Float64Array): number {
    const f64 = this.f64;
    const sumsAt = this.layout.sumsOff >> 3;
    f64[sumsAt] = sums[0]!;
    f64[sumsAt + 1] = sums[1]!;
    const run = rule === 'exhaustive' ? this.exports.blockExhaustive : this.exports.blockColsum;
    const nRows = this.nRows;
    const G = this.G;
    const done = run(gCount, (nRows + (nRows & 1)) * 8, this.K * 4, G * 8, (G + 1) >> 1, this.srcOff, this.metaOff, this.colOutOff);
    sums[0] = f64[sumsAt]!;
    sums[1] = f64[sumsAt + 1]!;
    columns.set(this.i32.subarray(this.colOutOff >> 2, (this.colOutOff >> 2) + done * 4), at);
    return done;
  }

  evaluate(a: number, b: number, c: number, d: number, nRowsEven: number): number {
    const cb = this.columnBytes;
    return this.exports.evaluate(a * cb, b * cb, c * cb, d * cb, nRowsEven * 8);
  }

  prepareBounds(mReal: number, nRowsEven: number, network: Int32Array, ranks: Int32Array): void {
    if (this.loadedNetwork !== network) {
      this.i32.set(network, this.netOff >> 2);
      this.loadedNetwork = network;
    }
    if (this.loadedRanks !== ranks) {
      this.i32.set(ranks, this.ranksOff >> 2);
      this.loadedRanks = ranks;
    }
    this.exports.prepare(
      0,
      this.sortedOff,
      this.columnBytes,
      mReal,
      nRowsEven * 8,
      this.netOff,
      network.length >> 1,
      this.ranksOff,
      ranks.length,
      this.dOff,
      this.c0Off,
    );
  }

  branchAndBound(mReal: number, nRowsEven: number, nt: number, tol: number, best: number, startKey: number): number {
    const search = this.searches[nt]!;
    return search(mReal, nRowsEven * 8, this.columnBytes, this.dOff, this.suffixOff, this.c0Off, tol, best, startKey);
  }
}

function align16(n: number): number {
  return (n + 15) & ~15;
}

/** Comparators in the largest sorting network select.ts builds for up to m columns. */
function maxNetworkPairs(m: number): number {
  return m * m; // generous: Batcher's network on 32 inputs has 191 comparators
}

/** Compiled modules by "v:m"; null when this runtime lacks WebAssembly SIMD. */
const compiledModules = new Map<string, WasmModule | null>();

function wasmModule(layout: KernelLayout): WasmModule | null {
  const key = `${layout.v}:${layout.m}`;
  let module = compiledModules.get(key);
  if (module === undefined) {
    try {
      const bytes = assembleKernels(layout);
      module = wasmApi !== undefined && wasmApi.validate(bytes) ? new wasmApi.Module(bytes) : null;
    } catch {
      module = null;
    }
    compiledModules.set(key, module);
  }
  return module;
}

// A tiny WebAssembly assembler: just the encodings the kernels use.

/** Appends `items` to `out` (no spread: the arrays get large). */
function append(out: number[], items: readonly number[]): void {
  for (let i = 0; i < items.length; i++) out.push(items[i]!);
}

function concat(parts: ReadonlyArray<readonly number[]>): number[] {
  const out: number[] = [];
  for (const part of parts) append(out, part);
  return out;
}

function vector(items: number[][]): number[] {
  const out = uleb(items.length);
  for (const item of items) append(out, item);
  return out;
}

function section(id: number, body: number[]): number[] {
  return concat([[id], uleb(body.length), body]);
}

function name(text: string): number[] {
  return vector([...text].map((ch) => [ch.charCodeAt(0)]));
}

const I32 = 0x7f;
const F64 = 0x7c;
const V128 = 0x7b;

const simd = (opcode: number): number[] => [0xfd, ...uleb(opcode)];
/** local.get/set/tee encodings, shared (the generated code refers to locals a lot). */
const localOps = [0x20, 0x21, 0x22].map(() => [] as number[][]);
function localOp(kind: number, i: number): number[] {
  const cache = localOps[kind]!;
  return (cache[i] ??= [0x20 + kind, ...uleb(i)]);
}

const op = {
  get: (i: number) => localOp(0, i),
  set: (i: number) => localOp(1, i),
  tee: (i: number) => localOp(2, i),
  i32: (n: number) => [0x41, ...sleb(n)],
  f64: (x: number) => {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setFloat64(0, x, true);
    return [0x44, ...bytes];
  },
  i32Load: [0x28, 2, 0],
  i32LoadAt: (offset: number) => [0x28, 2, ...uleb(offset)],
  i32Store: (offset = 0) => [0x36, 2, ...uleb(offset)],
  i32Load8U: [0x2d, 0, 0],
  i32Store8: [0x3a, 0, 0],
  i32ShrU: [0x76],
  select: [0x1b],
  f64Load: (offset: number) => [0x2b, 3, ...uleb(offset)],
  f64Store: (offset = 0) => [0x39, 3, ...uleb(offset)],
  i32Add: [0x6a],
  i32Sub: [0x6b],
  i32Mul: [0x6c],
  i32LtU: [0x49],
  i32LtS: [0x48],
  i32GeU: [0x4f],
  i32GeS: [0x4e],
  i32Ne: [0x47],
  i32And: [0x71],
  i32Or: [0x72],
  i32Shl: [0x74],
  f64Eq: [0x61],
  f64Gt: [0x64],
  f64Ge: [0x66],
  f64Sub: [0xa1],
  f64Min: [0xa4],
  if: [0x04, 0x40],
  call: (index: number) => [0x10, ...uleb(index)],
  f64Add: [0xa0],
  f64Mul: [0xa2],
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  end: [0x0b],
  br: (depth: number) => [0x0c, ...uleb(depth)],
  brIf: (depth: number) => [0x0d, ...uleb(depth)],
  memoryCopy: [0xfc, ...uleb(10), 0, 0],
  v128Load: [...simd(0x00), 4, 0],
  v128Store: [...simd(0x0b), 4, 0],
  lane: (l: number) => [...simd(0x21), l],
  add: simd(0xf0),
  sub: simd(0xf1),
  pmin: simd(0xf6),
  pmax: simd(0xf7),
  /** v128.load32_zero, v128.load32_lane: a float32 into lane 0 (the rest zero), into lane `l`. */
  load32Zero: [...simd(0x5c), 2, 0],
  load32Lane: (l: number) => [...simd(0x56), 2, 0, l],
  promoteLow: simd(0x5f),
  eq: simd(0x47),
  ge: simd(0x4c),
  and: simd(0x4e),
  or: simd(0x50),
  allTrue64: simd(0xc3),
  v128LoadAt: (offset: number) => [...simd(0x00), 4, ...uleb(offset)],
  v128StoreAt: (offset: number) => [...simd(0x0b), 4, ...uleb(offset)],
  load32ZeroAt: (offset: number) => [...simd(0x5c), 2, ...uleb(offset)],
  load32LaneAt: (offset: number, l: number) => [...simd(0x56), 2, ...uleb(offset), l],
  i32Ctz: [0x68],
  i32Eqz: [0x45],
  f64Ne: [0x62],
  f64Lt: [0x63],
  f64ConvertI32U: [0xb8],
  return: [0x0f],
  else: [0x05],
  i32Eq: [0x46],
  f64x2Splat: simd(0x14),
  i64Const: (n: number) => [0x42, ...sleb(n)],
  i64Load: [0x29, 3, 0],
  i64Store: [0x37, 3, 0],
  i64ExtendI32U: [0xad],
  i64Shl: [0x86],
  i64Or: [0x84],
  i32WrapI64: [0xa7],
  i64x2Splat: simd(0x12),
  i64x2Lane: (l: number) => [...simd(0x1d), l],
};

/** Instruction bytes, nested as convenient; flattened when assembled. */
type Code = number | Code[];

interface FunctionDef {
  params: number[];
  results: number[];
  locals: Array<[count: number, type: number]>;
  body: Code[];
}

function flatten(code: Code, out: number[] = []): number[] {
  if (typeof code === 'number') out.push(code);
  else for (const c of code) flatten(c, out);
  return out;
}

/** evaluate(oa, ob, oc, od, nBytes) -> f64: see SearchKernels.evaluate. */
function evaluateFunction(): FunctionDef {
  const [oa, ob, oc, od, nBytes, r, acc, x, y, z, w] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10] as const;
  const load = (base: number, into: number) => [op.get(base), op.get(r), op.i32Add, op.v128Load, op.set(into)];
  return {
    params: [I32, I32, I32, I32, I32],
    results: [F64],
    locals: [
      [1, I32],
      [5, V128],
    ],
    body: [
      op.loop,
      load(oa, x),
      load(ob, y),
      load(oc, z),
      load(od, w),
      op.get(acc),
      // pmax(pmax(x + y, z + w), pmax(x, y) + pmax(z, w))
      op.get(x), op.get(y), op.add,
      op.get(z), op.get(w), op.add,
      op.pmax,
      op.get(x), op.get(y), op.pmax,
      op.get(z), op.get(w), op.pmax,
      op.add,
      op.pmax,
      op.add,
      op.set(acc),
      op.get(r), op.i32(16), op.i32Add, op.tee(r), op.get(nBytes), op.i32LtU, op.brIf(0),
      op.end,
      op.get(acc), op.lane(0), op.get(acc), op.lane(1), op.f64Add,
    ],
  };
}

/** evaluateFull(oa, ob, oc, od) -> f64: evaluate over all v rows, unrolled (same arithmetic, same order). */
function evaluateFullFunction(v: number): FunctionDef {
  const [oa, ob, oc, od] = [0, 1, 2, 3] as const;
  const [acc, x, y, z, w] = [4, 5, 6, 7, 8] as const;
  const body: Code[] = [];
  for (let at = 0; at < v * 8; at += 16) {
    body.push(
      op.get(oa), op.v128LoadAt(at), op.set(x),
      op.get(ob), op.v128LoadAt(at), op.set(y),
      op.get(oc), op.v128LoadAt(at), op.set(z),
      op.get(od), op.v128LoadAt(at), op.set(w),
      op.get(acc),
      op.get(x), op.get(y), op.add,
      op.get(z), op.get(w), op.add,
      op.pmax,
      op.get(x), op.get(y), op.pmax,
      op.get(z), op.get(w), op.pmax,
      op.add,
      op.pmax,
      op.add,
      op.set(acc),
    );
  }
  body.push(op.get(acc), op.lane(0), op.get(acc), op.lane(1), op.f64Add);
  return { params: [I32, I32, I32, I32], results: [F64], locals: [[5, V128]], body };
}

/** prepare(...): see SearchKernels.prepareBounds; offsets in bytes. */
function prepareFunction(): FunctionDef {
  const [sOff, sortedOff, colBytes, mReal, nBytes, netOff, netPairs, ranksOff, nt, dOff, c0Off] =
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10] as const;
  const [j, r, oi, oj, q, t, ot, oc] = [11, 12, 13, 14, 15, 16, 17, 18] as const;
  const [x, y, acc, zero] = [19, 20, 21, 22] as const;
  const at = (base: number) => [op.get(base), op.get(r), op.i32Add];
  /** acc = 0; r = 0; do { body; r += 16 } while (r < nBytes) */
  const rowLoop = (body: Code[]): Code[] => [
    op.get(zero), op.set(acc), op.i32(0), op.set(r),
    op.loop, ...body, op.get(r), op.i32(16), op.i32Add, op.tee(r), op.get(nBytes), op.i32LtU, op.brIf(0), op.end,
  ];
  const laneSum = [op.get(acc), op.lane(0), op.get(acc), op.lane(1), op.f64Add];
  return {
    params: [I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32],
    results: [],
    locals: [
      [8, I32],
      [4, V128],
    ],
    body: [
      // sorted = s (columns 0..mReal-1)
      op.get(sortedOff), op.get(sOff), op.get(mReal), op.get(colBytes), op.i32Mul, op.memoryCopy,
      // for q < netPairs: compare-exchange columns net[2q] > net[2q+1] in every row
      op.i32(0), op.set(q),
      op.block, op.loop,
      op.get(q), op.get(netPairs), op.i32GeU, op.brIf(1),
      op.get(sortedOff), op.get(netOff), op.get(q), op.i32(8), op.i32Mul, op.i32Add, op.i32Load,
      op.get(colBytes), op.i32Mul, op.i32Add, op.set(oi),
      op.get(sortedOff), op.get(netOff), op.get(q), op.i32(8), op.i32Mul, op.i32Add, op.i32(4), op.i32Add, op.i32Load,
      op.get(colBytes), op.i32Mul, op.i32Add, op.set(oj),
      ...rowLoop([
        at(oi), op.v128Load, op.set(x),
        at(oj), op.v128Load, op.set(y),
        at(oi), op.get(x), op.get(y), op.pmax, op.v128Store,
        at(oj), op.get(x), op.get(y), op.pmin, op.v128Store,
      ]),
      op.get(q), op.i32(1), op.i32Add, op.set(q), op.br(0),
      op.end, op.end,
      // rowSpread = sum of (sorted column 0 - sorted column mReal - 1)
      op.get(sortedOff), op.get(mReal), op.i32(1), op.i32Sub, op.get(colBytes), op.i32Mul, op.i32Add, op.set(oc),
      ...rowLoop([op.get(acc), at(sortedOff), op.v128Load, at(oc), op.v128Load, op.sub, op.add, op.set(acc)]),
      op.get(c0Off), ...laneSum, op.f64Store(MAX_THRESHOLDS * 8),
      // for t < nt: thresholds = sorted column ranks[t] - 1
      op.i32(0), op.set(t),
      op.block, op.loop,
      op.get(t), op.get(nt), op.i32GeU, op.brIf(1),
      op.get(sortedOff), op.get(ranksOff), op.get(t), op.i32(4), op.i32Mul, op.i32Add, op.i32Load, op.i32(1), op.i32Sub,
      op.get(colBytes), op.i32Mul, op.i32Add, op.set(ot),
      ...rowLoop([op.get(acc), at(ot), op.v128Load, op.add, op.set(acc)]),
      op.get(c0Off), op.get(t), op.i32(8), op.i32Mul, op.i32Add, ...laneSum, op.f64(2), op.f64Mul, op.f64Store(),
      // for j < mReal: d[t][j] = sum of max(s[j] - threshold, 0)
      op.i32(0), op.set(j),
      op.block, op.loop,
      op.get(j), op.get(mReal), op.i32GeU, op.brIf(1),
      op.get(sOff), op.get(j), op.get(colBytes), op.i32Mul, op.i32Add, op.set(oc),
      ...rowLoop([
        op.get(acc),
        at(oc), op.v128Load, at(ot), op.v128Load, op.sub, op.get(zero), op.pmax,
        op.add, op.set(acc),
      ]),
      op.get(dOff), op.get(t), op.i32(D_STRIDE), op.i32Mul, op.get(j), op.i32Add, op.i32(8), op.i32Mul, op.i32Add,
      ...laneSum, op.f64Store(),
      op.get(j), op.i32(1), op.i32Add, op.set(j), op.br(0),
      op.end, op.end,
      op.get(t), op.i32(1), op.i32Add, op.set(t), op.br(0),
      op.end, op.end,
    ],
  };
}

/**
 * load(inAt, rowStride, nBytes, mReal, colBytes) -> f64: SearchKernels.loadGroup. Rows go in pairs
 * (the lanes); each lane adds its row's scores in column order, the row sums join in row order.
 */
function loadFunction(): FunctionDef {
  const [inAt, rowStride, nBytes, mReal, colBytes] = [0, 1, 2, 3, 4] as const;
  const [r, j, p, q, rowP] = [5, 6, 7, 8, 9] as const;
  const total = 10;
  const [x, rowSum, mask, zero] = [11, 12, 13, 14] as const;
  return {
    params: [I32, I32, I32, I32, I32],
    results: [F64],
    locals: [
      [5, I32],
      [1, F64],
      [4, V128],
    ],
    body: [
      op.get(zero), op.get(zero), op.eq, op.set(mask),
      op.get(inAt), op.set(rowP),
      op.loop,
      op.get(zero), op.set(rowSum), op.i32(0), op.set(j), op.get(rowP), op.set(p), op.get(r), op.set(q),
      op.loop,
      op.get(q),
      op.get(p), op.get(rowStride), op.i32Add, op.get(p), op.load32Zero, op.load32Lane(1), op.promoteLow, op.tee(x),
      op.v128Store,
      op.get(rowSum), op.get(x), op.add, op.set(rowSum),
      op.get(mask), op.get(x), op.get(zero), op.ge, op.and, op.set(mask),
      op.get(p), op.i32(4), op.i32Add, op.set(p),
      op.get(q), op.get(colBytes), op.i32Add, op.set(q),
      op.get(j), op.i32(1), op.i32Add, op.tee(j), op.get(mReal), op.i32LtU, op.brIf(0),
      op.end,
      op.get(total), op.get(rowSum), op.lane(0), op.f64Add, op.get(rowSum), op.lane(1), op.f64Add, op.set(total),
      op.get(rowP), op.get(rowStride), op.get(rowStride), op.i32Add, op.i32Add, op.set(rowP),
      op.get(r), op.i32(16), op.i32Add, op.tee(r), op.get(nBytes), op.i32LtU, op.brIf(0),
      op.end,
      op.get(total), op.f64(-1), op.get(mask), op.allTrue64, op.select,
    ],
  };
}

/** assign(nBytes, s0..s3, o0..o3, w0..w3, srcAt, srcStride, metaAt, metaStride, keepMask, shift, tab, codeTab) -> f64. */
function assignFunction(): FunctionDef {
  const nBytes = 0;
  const sv = [1, 2, 3, 4] as const;
  const o = [5, 6, 7, 8] as const;
  const w = [9, 10, 11, 12] as const;
  const [srcAt, srcStride, metaAt, metaStride, keepMask, shift, tab, codeTab] = [13, 14, 15, 16, 17, 18, 19, 20] as const;
  const [ib, code, p0, p1] = [21, 22, 23, 24] as const;
  const kept = 25;
  const x = [26, 27, 28, 29] as const;
  const ge = (a: number, b: number, bit: number): Code[] =>
    bit === 0 ? [op.get(x[a]), op.get(x[b]), op.f64Ge] : [op.get(x[a]), op.get(x[b]), op.f64Ge, op.i32(bit), op.i32Shl, op.i32Or];
  const body: Code[] = [];
  for (let k = 0; k < 4; k++) {
    body.push(op.get(tab), op.get(sv[k]), op.i32Store(4 * k));
    body.push(op.get(tab), op.get(w[k]), op.i32Store(16 + 4 * k));
  }
  body.push(
    op.loop,
    ...[0, 1, 2, 3].map((k) => [op.get(o[k]), op.get(ib), op.i32Add, op.f64Load(0), op.set(x[k])]),
    op.get(codeTab),
    ge(0, 1, 0), ge(0, 2, 1), ge(0, 3, 2), ge(1, 2, 3), ge(1, 3, 4), ge(2, 3, 5),
    op.i32Add, op.i32Load8U, op.tee(code),
    op.i32(3), op.i32And, op.i32(2), op.i32Shl, op.set(p0),
    op.get(code), op.i32(12), op.i32And, op.set(p1),
    op.get(srcAt), op.get(tab), op.get(p0), op.i32Add, op.i32LoadAt(0), op.i32Store(0),
    op.get(srcAt), op.get(tab), op.get(p1), op.i32Add, op.i32LoadAt(0), op.i32Store(4),
    op.get(metaAt), op.get(metaAt), op.i32Load8U, op.get(keepMask), op.i32And, op.get(code), op.get(shift), op.i32Shl, op.i32Or, op.i32Store8,
    op.get(kept),
    op.get(tab), op.get(p0), op.i32Add, op.i32LoadAt(16), op.get(ib), op.i32Add, op.f64Load(0),
    op.get(tab), op.get(p1), op.i32Add, op.i32LoadAt(16), op.get(ib), op.i32Add, op.f64Load(0),
    op.f64Add, op.f64Add, op.set(kept),
    op.get(srcAt), op.get(srcStride), op.i32Add, op.set(srcAt),
    op.get(metaAt), op.get(metaStride), op.i32Add, op.set(metaAt),
    op.get(ib), op.i32(8), op.i32Add, op.tee(ib), op.get(nBytes), op.i32LtU, op.brIf(0),
    op.end,
    op.get(kept),
  );
  return {
    params: [I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32],
    results: [F64],
    locals: [
      [4, I32],
      [5, F64],
    ],
    body,
  };
}

/** for (i = from; i < limit; i++) body, with from and limit as code that pushes an i32. */
function forLoop(i: number, from: Code, limit: Code, body: Code[]): Code[] {
  return [
    from, op.set(i),
    op.block, op.loop,
    op.get(i), limit, op.i32GeS, op.brIf(1),
    ...body,
    op.get(i), op.i32(1), op.i32Add, op.set(i), op.br(0),
    op.end, op.end,
  ];
}

/** Byte strides of d and suffixTop as a search function reads them. */
interface BoundsLayout {
  dColumn: number;
  dThreshold: number;
  suffixColumn: number;
  suffixThreshold: number;
  suffixCount: number;
}

/** The layout of SearchKernels.d and suffixTop. */
const GENERIC_BOUNDS: BoundsLayout = {
  dColumn: 8,
  dThreshold: D_STRIDE * 8,
  suffixColumn: 24,
  suffixThreshold: SUFFIX_STRIDE * 8,
  suffixCount: 8,
};

/**
 * search<nt>(mReal, nBytes, colBytes, dOff, suffixOff, c0Off, tol, best, startKey) -> bestKey:
 * SearchKernels.branchAndBound with the nt thresholds unrolled (partial bounds live in locals).
 */
function searchFunction(nt: number, layout: BoundsLayout = GENERIC_BOUNDS, evaluateFull = -1): FunctionDef {
  const [mReal, nBytes, colBytes, dOff, suffixOff, c0Off, tol, best, startKey] = [0, 1, 2, 3, 4, 5, 6, 7, 8] as const;
  const [a, b, c, e, key, bestKey] = [9, 10, 11, 12, 13, 14] as const;
  const [bound, value, thr] = [15, 16, 17] as const;
  const p1 = 18; // p1 + t, p2 = p1 + nt + t, p3 = p1 + 2 nt + t
  const p2 = p1 + nt;
  const p3 = p1 + 2 * nt;
  const dAt = (j: number, t: number) => [op.get(dOff), op.get(j), op.i32(layout.dColumn), op.i32Mul, op.i32Add, op.f64Load(t * layout.dThreshold)];
  const sufAt = (j: number, t: number, n: number) => [
    op.get(suffixOff), op.get(j), op.i32(1), op.i32Add, op.i32(layout.suffixColumn), op.i32Mul, op.i32Add,
    op.f64Load(t * layout.suffixThreshold + (n - 1) * layout.suffixCount),
  ];
  /** bound = min over t of (partial_t + extra_t), storing partial_t = prev_t + d[t][j] when store >= 0. */
  const level = (j: number, prev: number | null, store: number | null, extra: ((t: number) => Code) | null): Code[] => {
    const code: Code[] = [op.f64(Infinity), op.set(bound)];
    for (let t = 0; t < nt; t++) {
      code.push(prev === null ? [op.get(c0Off), op.f64Load(t * 8)] : op.get(prev + t), dAt(j, t), op.f64Add);
      if (store !== null) code.push(op.tee(store + t));
      if (extra !== null) code.push(extra(t), op.f64Add);
      code.push(op.get(bound), op.f64Min, op.set(bound));
    }
    return code;
  };
  const passes = [op.get(bound), op.get(thr), op.f64Ge];
  const leaf: Code[] = [
    op.get(a), op.i32(15), op.i32Shl, op.get(b), op.i32(10), op.i32Shl, op.i32Or,
    op.get(c), op.i32(5), op.i32Shl, op.i32Or, op.get(e), op.i32Or, op.tee(key),
    op.get(startKey), op.i32Ne, op.if,
    op.get(a), op.get(colBytes), op.i32Mul, op.get(b), op.get(colBytes), op.i32Mul,
    op.get(c), op.get(colBytes), op.i32Mul, op.get(e), op.get(colBytes), op.i32Mul,
    evaluateFull >= 0 ? op.call(evaluateFull) : [op.get(nBytes), op.call(0)], op.tee(value),
    op.get(best), op.f64Gt,
    op.get(value), op.get(best), op.f64Eq, op.get(key), op.get(bestKey), op.i32LtS, op.i32And,
    op.i32Or, op.if,
    op.get(value), op.set(best), op.get(key), op.set(bestKey),
    op.get(best), op.get(tol), op.f64Sub, op.set(thr),
    op.end,
    op.end,
  ];
  const minus = (n: number) => [op.get(mReal), op.i32(n), op.i32Sub];
  const plusOne = (i: number) => [op.get(i), op.i32(1), op.i32Add];
  return {
    params: [I32, I32, I32, I32, I32, I32, F64, F64, I32],
    results: [I32],
    locals: [
      [6, I32],
      [3 + 3 * nt, F64],
    ],
    body: [
      op.get(startKey), op.set(bestKey),
      op.get(best), op.get(tol), op.f64Sub, op.set(thr),
      forLoop(a, op.i32(0), minus(3), [
        level(a, null, p1, (t) => sufAt(a, t, 3)), passes, op.if,
        forLoop(b, plusOne(a), minus(2), [
          level(b, p1, p2, (t) => sufAt(b, t, 2)), passes, op.if,
          forLoop(c, plusOne(b), minus(1), [
            level(c, p2, p3, (t) => sufAt(c, t, 1)), passes, op.if,
            forLoop(e, plusOne(c), op.get(mReal), [
              level(e, p3, null, null), passes, op.if, leaf, op.end,
            ]),
            op.end,
          ]),
          op.end,
        ]),
        op.end,
      ]),
      op.get(bestKey),
    ],
  };
}

/**
 * searchVec(nBytes, tol, best, startKey) -> bestKey: the block functions' branch and bound, as
 * SearchKernels.branchAndBound, over this layout's d, suffix sums and c0 with the thresholds in
 * the lanes of nv vectors. A prefix is pruned when its bound min_t(...) < best - tol, that is
 * unless every lane's bound is >= best - tol: one f64x2.ge and all_true per vector and node.
 */
function searchVecFunction(L: KernelLayout, evaluate: number, mode: 'generic' | 'full'): FunctionDef {
  const { m, nv } = L;
  const cb = L.colBytes;
  const [nBytes, tol, best, startKey] = [0, 1, 2, 3] as const;
  const f = new LocalSet(4);
  const [a, b, c, e, key, bestKey, ok] = [f.add(I32), f.add(I32), f.add(I32), f.add(I32), f.add(I32), f.add(I32), f.add(I32)];
  const value = f.add(F64);
  const thr = f.add(V128);
  const p1 = Array.from({ length: nv }, () => f.add(V128));
  const p2 = Array.from({ length: nv }, () => f.add(V128));
  const p3 = Array.from({ length: nv }, () => f.add(V128));
  const colStride = nv * 16;
  const dAt = (j: number, k: number): Code[] => [op.get(j), op.i32(colStride), op.i32Mul, op.v128LoadAt(L.dTOff + k * 16)];
  /** Suffix sum of the n largest terms over the columns after j. */
  const sufAt = (j: number, k: number, n: number): Code[] => [
    op.get(j), op.i32(3 * colStride), op.i32Mul, op.v128LoadAt(L.sufTOff + 3 * colStride + (n - 1) * colStride + k * 16),
  ];
  /** ok = every lane of (prev + d[j]) (+ suffix) >= thr, storing the partial sums in `into`. */
  const level = (j: number, prev: number[] | null, into: number[] | null, n: number): Code[] => {
    const code: Code[] = [];
    for (let k = 0; k < nv; k++) {
      code.push(prev === null ? [op.i32(0), op.v128LoadAt(L.c0TOff + k * 16)] : op.get(prev[k]!), dAt(j, k), op.add);
      if (into !== null) code.push(op.tee(into[k]!));
      if (n > 0) code.push(sufAt(j, k, n), op.add);
      code.push(op.get(thr), op.ge, op.allTrue64);
      if (k > 0) code.push(op.i32And);
    }
    code.push(op.set(ok));
    return code;
  };
  const loop = (i: number, from: Code, to: number, body: Code[]): Code[] => [
    from, op.set(i),
    op.block, op.loop,
    op.get(i), op.i32(to), op.i32GeS, op.brIf(1),
    ...body,
    op.get(i), op.i32(1), op.i32Add, op.set(i), op.br(0),
    op.end, op.end,
  ];
  const colOffset = (j: number): Code[] => [op.get(j), op.i32(cb), op.i32Mul];
  const leaf: Code[] = [
    op.get(a), op.i32(15), op.i32Shl, op.get(b), op.i32(10), op.i32Shl, op.i32Or,
    op.get(c), op.i32(5), op.i32Shl, op.i32Or, op.get(e), op.i32Or, op.tee(key),
    op.get(startKey), op.i32Ne, op.if,
    colOffset(a), colOffset(b), colOffset(c), colOffset(e), mode === 'generic' ? op.get(nBytes) : [],
    op.call(evaluate), op.tee(value),
    op.get(best), op.f64Gt,
    op.get(value), op.get(best), op.f64Eq, op.get(key), op.get(bestKey), op.i32LtS, op.i32And,
    op.i32Or, op.if,
    op.get(value), op.set(best), op.get(key), op.set(bestKey),
    op.get(best), op.get(tol), op.f64Sub, op.f64x2Splat, op.set(thr),
    op.end,
    op.end,
  ];
  const plusOne = (i: number): Code[] => [op.get(i), op.i32(1), op.i32Add];
  return {
    params: [I32, F64, F64, I32],
    results: [I32],
    locals: f.runs,
    body: [
      op.get(startKey), op.set(bestKey),
      op.get(best), op.get(tol), op.f64Sub, op.f64x2Splat, op.set(thr),
      loop(a, op.i32(0), m - 3, [
        level(a, null, p1, 3), op.get(ok), op.if,
        loop(b, plusOne(a), m - 2, [
          level(b, p1, p2, 2), op.get(ok), op.if,
          loop(c, plusOne(b), m - 1, [
            level(c, p2, p3, 1), op.get(ok), op.if,
            loop(e, plusOne(c), m, [level(e, p3, null, 0), op.get(ok), op.if, leaf, op.end]),
            op.end,
          ]),
          op.end,
        ]),
        op.end,
      ]),
      op.get(bestKey),
    ],
  };
}

/**
 * assignPairs(nBytes, a, b, c, d, srcBase, srcAt, srcStride, metaAt, metaStride, keepMask, shift)
 * -> f64: assign for a group whose 4 slots are the real local columns a < b < c < d, two rows at a
 * time (nBytes = 8 x even row count; the zero row past an odd count is written to the scratch
 * outputs but not copied out, and adds +0). The comparisons run on f64x2 and give both rows' table
 * indices at once; the src pair of each meta code comes from a table (one 8-byte store per row);
 * each row's kept score is the sum of its two largest slot scores, computed as evaluate does,
 * which is bit for bit the x_p0 + x_p1 of assign (both are that exact sum rounded once).
 */
function assignPairsFunction(L: KernelLayout): FunctionDef {
  const cb = L.colBytes;
  const [nBytes, a, b, c, d, srcBase, srcAt, srcStride, metaAt, metaStride, keepMask, shift] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11] as const;
  const f = new LocalSet(12);
  const [r, code] = [f.add(I32), f.add(I32)];
  const kept = f.add(F64);
  const cols = [a, b, c, d];
  const x = [f.add(V128), f.add(V128), f.add(V128), f.add(V128)];
  const bits = f.add(V128);
  const top = f.add(V128);
  const weight = [1, 2, 4, 8, 16, 32].map(() => f.add(V128));
  const pairs = [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]] as const;
  const body: Code[] = [];
  weight.forEach((w, k) => body.push(op.i64Const(1 << k), op.i64x2Splat, op.set(w)));
  // Table: meta code p0 | p1 << 2 -> (srcBase + column p0) | (srcBase + column p1) << 32.
  for (const [p0, p1] of pairs) {
    body.push(
      op.i32(L.pairTabOff + (p0 | (p1 << 2)) * 8),
      op.get(srcBase), op.get(cols[p0]!), op.i32Add, op.i64ExtendI32U,
      op.get(srcBase), op.get(cols[p1]!), op.i32Add, op.i64ExtendI32U, op.i64Const(32), op.i64Shl, op.i64Or,
      op.i64Store,
    );
  }
  for (const col of cols) body.push(op.get(col), op.i32(cb), op.i32Mul, op.set(col));
  const row = (lane: number): Code[] => [
    op.i32(L.codeOff), op.get(bits), op.i64x2Lane(lane), op.i32WrapI64, op.i32Add, op.i32Load8U, op.set(code),
    op.get(srcAt), op.get(code), op.i32(3), op.i32Shl, op.i32(L.pairTabOff), op.i32Add, op.i64Load, op.i64Store,
    op.get(metaAt), op.get(metaAt), op.i32Load8U, op.get(keepMask), op.i32And, op.get(code), op.get(shift), op.i32Shl, op.i32Or, op.i32Store8,
    op.get(srcAt), op.get(srcStride), op.i32Add, op.set(srcAt),
    op.get(metaAt), op.get(metaStride), op.i32Add, op.set(metaAt),
  ];
  body.push(
    op.loop,
    ...cols.map((col, p) => [op.get(col), op.get(r), op.i32Add, op.v128Load, op.set(x[p]!)]),
    ...pairs.map(([p, q], k) => [op.get(x[p]!), op.get(x[q]!), op.ge, op.get(weight[k]!), op.and, k > 0 ? op.or : []]),
    op.set(bits),
    op.get(x[0]!), op.get(x[1]!), op.add, op.get(x[2]!), op.get(x[3]!), op.add, op.pmax,
    op.get(x[0]!), op.get(x[1]!), op.pmax, op.get(x[2]!), op.get(x[3]!), op.pmax, op.add,
    op.pmax, op.set(top),
    op.get(kept), op.get(top), op.lane(0), op.f64Add, op.get(top), op.lane(1), op.f64Add, op.set(kept),
    row(0),
    row(1),
    op.get(r), op.i32(16), op.i32Add, op.tee(r), op.get(nBytes), op.i32LtU, op.brIf(0),
    op.end,
    op.get(kept),
  );
  return { params: new Array<number>(12).fill(I32), results: [F64], locals: f.runs, body };
}

/** Locals allocated as a function's code is generated. */
class LocalSet {
  readonly runs: Array<[count: number, type: number]> = [];
  private next: number;
  constructor(paramCount: number) {
    this.next = paramCount;
  }
  add(type: number): number {
    const last = this.runs[this.runs.length - 1];
    if (last !== undefined && last[1] === type) last[0]++;
    else this.runs.push([1, type]);
    return this.next++;
  }
}

/** Indices of the functions a block function calls. */
interface Callees {
  evaluate: number;
  assign: number;
  search: number;
  /** evaluateFull and the search calling it, for blocks of v real rows (nBytes = 8v). */
  evaluateFull: number;
  searchFull: number;
  assignPairs: number;
}

/**
 * block<rule>(gCount, nBytes, rowStride, srcStride, metaStride, srcOff, metaOff, colOut)
 * -> groups done: SearchKernels.runGroups for groups 0 .. gCount - 1 of M real columns, each
 * loaded, chosen and assigned without leaving WebAssembly, unrolled over the M columns. Scores are
 * read from layout.inOff; [totalScore, keptScore] are read from and written back to layout.sumsOff.
 *
 * Exhaustive, M >= 7: while loading, each row pair goes through the sorting network in registers
 * (comparators whose outputs are never used are left out) and its thresholds are stored; then the
 * bound terms d, their suffix sums and a starting subset are computed here, and the search runs.
 * Exhaustive, M = 5, 6: every subset is evaluated while loading (one accumulator per subset, the
 * same arithmetic as `evaluate`). Colsum: column sums row by row while loading.
 */
function blockFunction(L: KernelLayout, rule: 'exhaustive' | 'colsum', callees: Callees): FunctionDef {
  const { m, nt, nv } = L;
  const cb = L.colBytes;
  const [gCount, nBytes, rowStride, srcStride, metaStride, srcOff, metaOff, colOut] = [0, 1, 2, 3, 4, 5, 6, 7] as const;
  const f = new LocalSet(8);
  const g = f.add(I32);
  const r = f.add(I32);
  const rowP = f.add(I32);
  const lane1 = f.add(I32);
  const groupP = f.add(I32);
  const key = f.add(I32);
  const tmp = f.add(I32);
  const total = f.add(F64);
  const totalScore = f.add(F64);
  const keptScore = f.add(F64);
  const zero = f.add(V128);
  const mask = f.add(V128);
  const rowSum = f.add(V128);
  const x = Array.from({ length: m }, () => f.add(V128));
  const laneSum = (v: number): Code[] => [op.get(v), op.lane(0), op.get(v), op.lane(1), op.f64Add];
  const field = (j: number, name: 'a' | 'b' | 'c' | 'd'): Code[] => {
    const shift = { a: 15, b: 10, c: 5, d: 0 }[name];
    return [op.get(j), op.i32(shift), op.i32ShrU, op.i32(31), op.i32And];
  };
  const key0 = subsetKey(0, 1, 2, 3);

  // Per-rule state, per row pair code and choice.
  const init: Code[] = [];
  const perPair: Code[] = [];
  const choose: Code[] = [];
  if (rule === 'colsum') {
    const sums = Array.from({ length: m }, () => f.add(F64));
    for (const s of sums) init.push(op.f64(0), op.set(s));
    for (let j = 0; j < m; j++) {
      perPair.push(op.get(sums[j]!), op.get(x[j]!), op.lane(0), op.f64Add, op.get(x[j]!), op.lane(1), op.f64Add, op.set(sums[j]!));
    }
    choose.push(topFour(f, sums, key));
  } else if (m <= 4) {
    choose.push(op.i32(key0), op.set(key));
  } else if (m <= EVALUATE_ALL_UP_TO_M) {
    // One accumulator per subset, in lexicographic order; pair sums and maxima shared.
    const subsets: number[][] = [];
    for (let a = 0; a < m; a++) for (let b = a + 1; b < m; b++) for (let c = b + 1; c < m; c++) for (let d = c + 1; d < m; d++) subsets.push([a, b, c, d]);
    const acc = subsets.map(() => f.add(V128));
    const pairSum = new Map<number, number>();
    const pairMax = new Map<number, number>();
    for (const a of acc) init.push(op.get(zero), op.set(a));
    const pair = (a: number, b: number): [number, number] => {
      const id = a * 32 + b;
      if (!pairSum.has(id)) {
        const s = f.add(V128);
        const mx = f.add(V128);
        pairSum.set(id, s);
        pairMax.set(id, mx);
        perPair.push(op.get(x[a]!), op.get(x[b]!), op.add, op.set(s), op.get(x[a]!), op.get(x[b]!), op.pmax, op.set(mx));
      }
      return [pairSum.get(id)!, pairMax.get(id)!];
    };
    subsets.forEach(([a, b, c, d], k) => {
      const [sab, mab] = pair(a!, b!);
      const [scd, mcd] = pair(c!, d!);
      // acc += pmax(pmax(x + y, z + w), pmax(x, y) + pmax(z, w)), as evaluate computes it
      perPair.push(op.get(acc[k]!), op.get(sab), op.get(scd), op.pmax, op.get(mab), op.get(mcd), op.add, op.pmax, op.add, op.set(acc[k]!));
    });
    const best = f.add(F64);
    const value = f.add(F64);
    choose.push(op.i32(key0), op.set(key));
    // All-zero scores: every subset ties and the lowest wins.
    choose.push(op.get(total), op.f64(0), op.f64Ne, op.if, op.f64(-1), op.set(best));
    subsets.forEach(([a, b, c, d], k) => {
      choose.push(
        laneSum(acc[k]!), op.tee(value), op.get(best), op.f64Gt, op.if,
        op.get(value), op.set(best), op.i32(subsetKey(a!, b!, c!, d!)), op.set(key),
        op.end,
      );
    });
    choose.push(op.end);
  } else {
    // Sorting network in registers, keeping only what the thresholds and the spread need.
    const net = L.network;
    const needed = new Array<boolean>(m).fill(false);
    for (const rank of L.ranks) needed[rank - 1] = true;
    needed[0] = true;
    needed[m - 1] = true;
    const keep: Array<[a: number, b: number, hi: boolean, lo: boolean]> = [];
    for (let q = net.length - 2; q >= 0; q -= 2) {
      const a = net[q]!;
      const b = net[q + 1]!;
      const hi = needed[a]!;
      const lo = needed[b]!;
      if (hi || lo) {
        keep.push([a, b, hi, lo]);
        needed[a] = true;
        needed[b] = true;
      }
    }
    keep.reverse();
    const wire = [...x];
    for (const [a, b, hi, lo] of keep) {
      const wa = wire[a]!;
      const wb = wire[b]!;
      if (hi) {
        wire[a] = f.add(V128);
        perPair.push(op.get(wa), op.get(wb), op.pmax, op.set(wire[a]!));
      }
      if (lo) {
        wire[b] = f.add(V128);
        perPair.push(op.get(wa), op.get(wb), op.pmin, op.set(wire[b]!));
      }
    }
    const c0acc = L.ranks.map(() => f.add(V128));
    const spread = f.add(V128);
    for (const a of [...c0acc, spread]) init.push(op.get(zero), op.set(a));
    L.ranks.forEach((rank, t) => {
      const w = wire[rank - 1]!;
      perPair.push(op.get(r), op.get(w), op.v128StoreAt(L.thrOff + t * cb));
      perPair.push(op.get(c0acc[t]!), op.get(w), op.add, op.set(c0acc[t]!));
    });
    perPair.push(op.get(spread), op.get(wire[0]!), op.get(wire[m - 1]!), op.sub, op.add, op.set(spread));

    // c0 = 2 * sum of thresholds; no search when every subset ties.
    for (let t = 0; t < nt; t++) choose.push(op.i32(0), laneSum(c0acc[t]!), op.f64(2), op.f64Mul, op.f64Store(L.c0TOff + t * 8));
    if ((nt & 1) !== 0) choose.push(op.i32(0), op.f64(Infinity), op.f64Store(L.c0TOff + nt * 8));
    choose.push(op.i32(key0), op.set(key));
    choose.push(op.get(total), op.f64(0), op.f64Ne, laneSum(spread), op.f64(0), op.f64Ne, op.i32And, op.if);
    // d[t][j] = sum over rows of max(s_j - threshold_t, 0), a few columns at a time.
    const perBlock = Math.max(1, Math.floor(12 / nt));
    const th = L.ranks.map(() => f.add(V128));
    const acc = Array.from({ length: perBlock * nt }, () => f.add(V128));
    const xs = f.add(V128);
    for (let j0 = 0; j0 < m; j0 += perBlock) {
      const cols = Math.min(perBlock, m - j0);
      for (let k = 0; k < cols * nt; k++) choose.push(op.get(zero), op.set(acc[k]!));
      choose.push(op.i32(0), op.set(r), op.loop);
      for (let t = 0; t < nt; t++) choose.push(op.get(r), op.v128LoadAt(L.thrOff + t * cb), op.set(th[t]!));
      for (let jj = 0; jj < cols; jj++) {
        choose.push(op.get(r), op.v128LoadAt((j0 + jj) * cb), op.set(xs));
        for (let t = 0; t < nt; t++) {
          const a = acc[jj * nt + t]!;
          choose.push(op.get(a), op.get(xs), op.get(th[t]!), op.sub, op.get(zero), op.pmax, op.add, op.set(a));
        }
      }
      choose.push(op.get(r), op.i32(16), op.i32Add, op.tee(r), op.get(nBytes), op.i32LtU, op.brIf(0), op.end);
      for (let jj = 0; jj < cols; jj++) {
        for (let t = 0; t < nt; t++) choose.push(op.i32(0), laneSum(acc[jj * nt + t]!), op.f64Store(L.dTOff + (j0 + jj) * nv * 16 + t * 8));
      }
    }
    // Suffix sums of the 1, 2, 3 largest terms (thresholds in lanes), and each threshold's bound
    // on the whole group: c0 + its 4 largest terms.
    const [t1, t2, t3, t4, lo1, lo2, lo3, dv] = [f.add(V128), f.add(V128), f.add(V128), f.add(V128), f.add(V128), f.add(V128), f.add(V128), f.add(V128)];
    const bounds = Array.from({ length: nv }, () => f.add(V128));
    for (let kv = 0; kv < nv; kv++) {
      for (const a of [t1, t2, t3, t4]) choose.push(op.get(zero), op.set(a));
      for (let j = m - 1; j >= 0; j--) {
        choose.push(
          op.i32(0), op.v128LoadAt(L.dTOff + j * nv * 16 + kv * 16), op.set(dv),
          op.get(t1), op.get(dv), op.pmin, op.set(lo1), op.get(t1), op.get(dv), op.pmax, op.set(t1),
          op.get(t2), op.get(lo1), op.pmin, op.set(lo2), op.get(t2), op.get(lo1), op.pmax, op.set(t2),
          op.get(t3), op.get(lo2), op.pmin, op.set(lo3), op.get(t3), op.get(lo2), op.pmax, op.set(t3),
          op.get(t4), op.get(lo3), op.pmax, op.set(t4),
          op.i32(0), op.get(t1), op.v128StoreAt(L.sufTOff + j * 3 * nv * 16 + kv * 16),
          op.i32(0), op.get(t1), op.get(t2), op.add, op.v128StoreAt(L.sufTOff + (j * 3 + 1) * nv * 16 + kv * 16),
          op.i32(0), op.get(t1), op.get(t2), op.add, op.get(t3), op.add, op.v128StoreAt(L.sufTOff + (j * 3 + 2) * nv * 16 + kv * 16),
        );
      }
      choose.push(op.i32(0), op.v128LoadAt(L.c0TOff + kv * 16), op.get(t1), op.add, op.get(t2), op.add, op.get(t3), op.add, op.get(t4), op.add, op.set(bounds[kv]!));
    }
    // Start: the top 4 columns of the threshold with the smallest bound.
    const tBest = f.add(I32);
    const bBest = f.add(F64);
    const bt = f.add(F64);
    choose.push(op.get(bounds[0]!), op.lane(0), op.set(bBest), op.i32(0), op.set(tBest));
    for (let t = 1; t < nt; t++) {
      choose.push(
        op.get(bounds[t >> 1]!), op.lane(t & 1), op.tee(bt), op.get(bBest), op.f64Lt, op.if,
        op.get(bt), op.set(bBest), op.i32(t), op.set(tBest),
        op.end,
      );
    }
    const dd = Array.from({ length: m }, () => f.add(F64));
    choose.push(op.get(tBest), op.i32(3), op.i32Shl, op.set(tmp));
    for (let j = 0; j < m; j++) choose.push(op.get(tmp), op.f64Load(L.dTOff + j * nv * 16), op.set(dd[j]!));
    const start = f.add(I32);
    choose.push(topFour(f, dd, start));
    // best = value of the start; tol as select.ts derives it.
    const best = f.add(F64);
    const tol = f.add(F64);
    const colOff = (from: number, name: 'a' | 'b' | 'c' | 'd'): Code[] => [field(from, name), op.i32(cb), op.i32Mul];
    const startOffsets = [colOff(start, 'a'), colOff(start, 'b'), colOff(start, 'c'), colOff(start, 'd')];
    const searchArgs = [op.get(nBytes), op.get(tol), op.get(best), op.get(start)];
    choose.push(
      op.get(total), op.f64(1e-12), op.f64Mul, op.get(nBytes), op.i32(3), op.i32ShrU, op.i32(10), op.i32Add, op.f64ConvertI32U, op.f64Mul, op.set(tol),
      op.get(nBytes), op.i32(L.v * 8), op.i32Eq, op.if,
      startOffsets, op.call(callees.evaluateFull), op.set(best), ...searchArgs, op.call(callees.searchFull), op.set(key),
      op.else,
      startOffsets, op.get(nBytes), op.call(callees.evaluate), op.set(best), ...searchArgs, op.call(callees.search), op.set(key),
      op.end,
    );
    choose.push(op.end);
  }

  const names = ['a', 'b', 'c', 'd'] as const;
  // One row pair: load (into s), row sums, smallest score (a NaN shows in the sum), rule's part.
  const pair: Code[] = [
    op.get(rowP), op.get(rowStride), op.i32Add, op.set(lane1),
    op.get(zero), op.set(rowSum),
  ];
  for (let j = 0; j < m; j++) {
    pair.push(
      op.get(lane1), op.get(rowP), op.load32ZeroAt(4 * j), op.load32LaneAt(4 * j, 1), op.promoteLow, op.set(x[j]!),
      op.get(r), op.get(x[j]!), op.v128StoreAt(j * cb),
      op.get(rowSum), op.get(x[j]!), op.add, op.set(rowSum),
      op.get(mask), op.get(x[j]!), op.pmin, op.set(mask),
    );
  }
  pair.push(
    op.get(total), op.get(rowSum), op.lane(0), op.f64Add, op.get(rowSum), op.lane(1), op.f64Add, op.set(total),
    ...perPair,
    op.get(lane1), op.get(rowStride), op.i32Add, op.set(rowP),
  );
  const rows: Code[] = [op.loop, ...pair, op.get(r), op.i32(16), op.i32Add, op.tee(r), op.get(nBytes), op.i32LtU, op.brIf(0), op.end];
  const body: Code[] = [];
  body.push(
    op.i32(0), op.f64Load(L.sumsOff), op.set(totalScore),
    op.i32(0), op.f64Load(L.sumsOff + 8), op.set(keptScore),
    op.i32(L.inOff), op.set(groupP),
    op.block, op.loop,
    op.get(g), op.get(gCount), op.i32GeU, op.brIf(1),
    ...init,
    op.get(zero), op.set(mask),
    op.f64(0), op.set(total),
    op.i32(0), op.set(r), op.get(groupP), op.set(rowP),
    ...rows,
    // A negative or NaN score, or an infinite sum: stop at this group (the caller reports it).
    op.get(mask), op.get(zero), op.ge, op.allTrue64, op.i32Eqz,
    op.get(total), op.get(total), op.f64Ne, op.i32Or,
    op.get(total), op.f64(Infinity), op.f64Eq, op.i32Or, op.if,
    op.i32(0), op.get(totalScore), op.f64Store(L.sumsOff),
    op.i32(0), op.get(keptScore), op.f64Store(L.sumsOff + 8),
    op.get(g), op.return,
    op.end,
    op.get(totalScore), op.get(total), op.f64Add, op.set(totalScore),
    ...choose,
    // Assign the rows and record the columns.
    op.get(g), op.i32(m), op.i32Mul, op.set(tmp),
    op.get(keptScore),
    op.get(nBytes),
    ...names.map((n) => field(key, n)),
    op.get(tmp),
    op.get(srcOff), op.get(g), op.i32(8), op.i32Mul, op.i32Add, op.get(srcStride),
    op.get(metaOff), op.get(g), op.i32(1), op.i32ShrU, op.i32Add, op.get(metaStride),
    op.i32(0), op.get(g), op.i32(1), op.i32And, op.i32Sub, op.i32(0xff), op.i32And,
    op.get(g), op.i32(1), op.i32And, op.i32(2), op.i32Shl,
    op.call(callees.assignPairs), op.f64Add, op.set(keptScore),
    ...names.map((n, p) => [op.get(colOut), op.get(g), op.i32(16), op.i32Mul, op.i32Add, op.get(tmp), field(key, n), op.i32Add, op.i32Store(4 * p)]),
    op.get(groupP), op.i32(4 * m), op.i32Add, op.set(groupP),
    op.get(g), op.i32(1), op.i32Add, op.set(g),
    op.br(0),
    op.end, op.end,
    op.i32(0), op.get(totalScore), op.f64Store(L.sumsOff),
    op.i32(0), op.get(keptScore), op.f64Store(L.sumsOff + 8),
    op.get(gCount),
  );
  return {
    params: [I32, I32, I32, I32, I32, I32, I32, I32],
    results: [I32],
    locals: f.runs,
    body,
  };
}

/**
 * Code that sets `into` to the key of the 4 largest of `values` (f64 locals), ties going to the
 * lower index: 4 passes, each taking the first largest value not taken yet.
 */
function topFour(f: LocalSet, values: number[], into: number): Code[] {
  const taken = f.add(I32);
  const bestJ = f.add(I32);
  const bestV = f.add(F64);
  const isBetter = f.add(I32);
  const code: Code[] = [op.i32(0), op.set(taken)];
  for (let p = 0; p < 4; p++) {
    code.push(op.i32(0), op.set(bestJ), op.f64(-Infinity), op.set(bestV));
    values.forEach((v, j) => {
      code.push(
        op.get(v), op.get(bestV), op.f64Gt, op.get(taken), op.i32(1 << j), op.i32And, op.i32Eqz, op.i32And, op.set(isBetter),
        op.get(v), op.get(bestV), op.get(isBetter), op.select, op.set(bestV),
        op.i32(j), op.get(bestJ), op.get(isBetter), op.select, op.set(bestJ),
      );
    });
    code.push(op.get(taken), op.i32(1), op.get(bestJ), op.i32Shl, op.i32Or, op.set(taken));
  }
  code.push(op.i32(0), op.set(into));
  for (let p = 0; p < 4; p++) {
    code.push(
      op.get(into), op.i32(5), op.i32Shl, op.get(taken), op.i32Ctz, op.i32Or, op.set(into),
      op.get(taken), op.get(taken), op.i32(1), op.i32Sub, op.i32And, op.set(taken),
    );
  }
  return code;
}

/**
 * The module for blocks of v rows and groups of m columns: imports env.memory, exports evaluate,
 * prepare, search1..search5, load, assign (generic) and blockExhaustive, blockColsum (this v, m).
 */
export function assembleKernels(L: KernelLayout): Uint8Array {
  const functions: Array<[string, FunctionDef]> = [
    ['evaluate', evaluateFunction()],
    ['prepare', prepareFunction()],
  ];
  for (let nt = 1; nt <= MAX_THRESHOLDS; nt++) functions.push([`search${nt}`, searchFunction(nt)]);
  functions.push(['load', loadFunction()], ['assign', assignFunction()]);
  const index = (n: string): number => functions.findIndex(([fn]) => fn === n);
  functions.push(['evaluateFull', evaluateFullFunction(L.v)]);
  functions.push(['assignPairs', assignPairsFunction(L)]);
  functions.push(['searchBlock', searchVecFunction(L, index('evaluate'), 'generic')]);
  functions.push(['searchBlockFull', searchVecFunction(L, index('evaluateFull'), 'full')]);
  const callees = {
    evaluate: index('evaluate'),
    assign: index('assign'),
    search: index('searchBlock'),
    evaluateFull: index('evaluateFull'),
    searchFull: index('searchBlockFull'),
    assignPairs: index('assignPairs'),
  };
  functions.push(['blockExhaustive', blockFunction(L, 'exhaustive', callees)]);
  functions.push(['blockColsum', blockFunction(L, 'colsum', callees)]);
  const types = functions.map(([, f]) => {
    const type = [0x60];
    append(type, vector(f.params.map((p) => [p])));
    append(type, vector(f.results.map((p) => [p])));
    return type;
  });
  const imports = [concat([name('env'), name('memory'), [0x02, 0x00], uleb(1)])];
  const codes = uleb(functions.length);
  for (const [, f] of functions) {
    const body = vector(f.locals.map(([count, type]) => concat([uleb(count), [type]])));
    flatten(f.body, body);
    append(body, op.end);
    append(codes, uleb(body.length));
    append(codes, body);
  }
  const bytes = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  append(bytes, section(1, vector(types)));
  append(bytes, section(2, vector(imports)));
  append(bytes, section(3, vector(functions.map((_, i) => uleb(i)))));
  append(bytes, section(7, vector(functions.map(([n], i) => concat([name(n), [0x00], uleb(i)])))));
  bytes.push(10);
  append(bytes, uleb(codes.length));
  append(bytes, codes);
  return Uint8Array.from(bytes);
}
