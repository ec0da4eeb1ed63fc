/**
 * The hot loops of the exhaustive V:N:M search, over one (block, group) of scores held
 * column-major in `s`. Two implementations with bit-identical `evaluate` results:
 *  - WebAssembly SIMD (f64x2), assembled here at load time from a few dozen opcodes: V8 compiles JS
 *    max/compare on doubles into branches that mispredict on random scores, while f64x2.pmax is one
 *    instruction for two rows, so this is 4-6x faster than the best branch-free JS;
 *  - plain JS, used only where WebAssembly SIMD is unavailable, and by tests as a cross-check.
 * `evaluate` sums even and odd rows in two separate accumulators (the two SIMD lanes) and adds them
 * at the end; both implementations do exactly that, so subset values, and hence the selected mask,
 * do not depend on which one ran.
 */

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
}

/** Per-threshold stride of suffixTop: (32 + 1) columns x 3. */
export const SUFFIX_STRIDE = 99;

/** Lexicographic key of a sorted subset of local columns (each < 32). */
export function subsetKey(a: number, b: number, c: number, d: number): number {
  return (a << 15) | (b << 10) | (c << 5) | d;
}

/** Kernels for blocks of v rows and groups of m columns: WebAssembly when available, else JS. */
export function createSearchKernels(v: number, m: number, preferWasm = true): SearchKernels {
  if (preferWasm) {
    const module = wasmModule();
    if (module !== null) {
      try {
        return new WasmKernels(wasmApi!, module, v, m);
      } catch {
        // e.g. a runtime that refuses to allocate wasm memory: the JS loops give the same result
      }
    }
  }
  return new JsKernels(v, m);
}

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

  constructor(v: number, m: number) {
    this.v = v;
    this.s = new Float64Array((m + 2) * v);
    this.s.fill(-1, m * v, (m + 1) * v);
    this.sorted = new Float64Array(m * v);
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

/** The part of the WebAssembly JS API used here (lib ES2022 does not declare it). */
interface WasmModule {
  readonly __wasmModule?: never;
}
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => { exports: unknown };
  Memory: new (descriptor: { initial: number }) => WasmMemory;
}
const wasmApi = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

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

class WasmKernels implements SearchKernels {
  readonly kind = 'wasm' as const;
  readonly s: Float64Array;
  readonly c0: Float64Array;
  readonly rowSpread: Float64Array;
  readonly d: Float64Array;
  readonly suffixTop: Float64Array;
  private readonly exports: WasmExports;
  /** search1 .. search5, by threshold count. */
  private readonly searches: Array<WasmExports[`search${number}`]>;
  private readonly suffixOff: number;
  private readonly i32: Int32Array;
  private readonly columnBytes: number;
  private readonly sortedOff: number;
  private readonly netOff: number;
  private readonly ranksOff: number;
  private readonly dOff: number;
  private readonly c0Off: number;
  private loadedNetwork: Int32Array | null = null;
  private loadedRanks: Int32Array | null = null;

  constructor(api: WasmApi, module: WasmModule, v: number, m: number) {
    this.columnBytes = v * 8;
    // Layout: s (m + 2 columns), sorted (m columns), d, c0, suffix sums, network pairs, ranks.
    this.sortedOff = (m + 2) * this.columnBytes;
    this.dOff = this.sortedOff + m * this.columnBytes;
    this.c0Off = this.dOff + MAX_THRESHOLDS * D_STRIDE * 8;
    this.suffixOff = this.c0Off + (MAX_THRESHOLDS + 1) * 8; // c0, then rowSpread
    this.netOff = this.suffixOff + MAX_THRESHOLDS * SUFFIX_STRIDE * 8;
    this.ranksOff = this.netOff + 2 * 4 * maxNetworkPairs(m);
    const bytes = this.ranksOff + 4 * MAX_THRESHOLDS;
    const memory = new api.Memory({ initial: Math.ceil(bytes / 65536) });
    const instance = new api.Instance(module, { env: { memory } });
    this.exports = instance.exports as unknown as WasmExports;
    this.searches = [];
    for (let nt = 1; nt <= MAX_THRESHOLDS; nt++) this.searches[nt] = this.exports[`search${nt}`];
    const buffer = memory.buffer;
    this.s = new Float64Array(buffer, 0, (m + 2) * v);
    this.s.fill(-1, m * v, (m + 1) * v);
    this.c0 = new Float64Array(buffer, this.c0Off, MAX_THRESHOLDS);
    this.rowSpread = new Float64Array(buffer, this.c0Off + MAX_THRESHOLDS * 8, 1);
    this.d = new Float64Array(buffer, this.dOff, MAX_THRESHOLDS * D_STRIDE);
    this.suffixTop = new Float64Array(buffer, this.suffixOff, MAX_THRESHOLDS * SUFFIX_STRIDE);
    this.i32 = new Int32Array(buffer);
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

/** Comparators in the largest sorting network select.ts builds for up to m columns. */
function maxNetworkPairs(m: number): number {
  return m * m; // generous: Batcher's network on 32 inputs has 191 comparators
}

let compiledModule: WasmModule | null | undefined;

/** The kernels' module, compiled once; null when this runtime lacks WebAssembly SIMD. */
function wasmModule(): WasmModule | null {
  if (compiledModule === undefined) {
    try {
      const bytes = assembleKernels();
      compiledModule = wasmApi !== undefined && wasmApi.validate(bytes) ? new wasmApi.Module(bytes) : null;
    } catch {
      compiledModule = null;
    }
  }
  return compiledModule;
}

// A tiny WebAssembly assembler: just the encodings the kernels use.

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

function vector(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

function name(text: string): number[] {
  return vector([...text].map((ch) => [ch.charCodeAt(0)]));
}

const I32 = 0x7f;
const F64 = 0x7c;
const V128 = 0x7b;

const simd = (opcode: number): number[] => [0xfd, ...uleb(opcode)];
const op = {
  get: (i: number) => [0x20, ...uleb(i)],
  set: (i: number) => [0x21, ...uleb(i)],
  tee: (i: number) => [0x22, ...uleb(i)],
  i32: (n: number) => [0x41, ...sleb(n)],
  f64: (x: number) => {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setFloat64(0, x, true);
    return [0x44, ...bytes];
  },
  i32Load: [0x28, 2, 0],
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

/**
 * search<nt>(mReal, nBytes, colBytes, dOff, suffixOff, c0Off, tol, best, startKey) -> bestKey:
 * SearchKernels.branchAndBound with the nt thresholds unrolled (partial bounds live in locals).
 */
function searchFunction(nt: number): FunctionDef {
  const [mReal, nBytes, colBytes, dOff, suffixOff, c0Off, tol, best, startKey] = [0, 1, 2, 3, 4, 5, 6, 7, 8] as const;
  const [a, b, c, e, key, bestKey] = [9, 10, 11, 12, 13, 14] as const;
  const [bound, value, thr] = [15, 16, 17] as const;
  const p1 = 18; // p1 + t, p2 = p1 + nt + t, p3 = p1 + 2 nt + t
  const p2 = p1 + nt;
  const p3 = p1 + 2 * nt;
  const dAt = (j: number, t: number) => [op.get(dOff), op.get(j), op.i32(8), op.i32Mul, op.i32Add, op.f64Load(t * D_STRIDE * 8)];
  const sufAt = (j: number, t: number, n: number) => [
    op.get(suffixOff), op.get(j), op.i32(1), op.i32Add, op.i32(24), op.i32Mul, op.i32Add,
    op.f64Load((t * SUFFIX_STRIDE + n - 1) * 8),
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
    op.get(nBytes), op.call(0), op.tee(value),
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

/** The module: imports env.memory, exports evaluate, prepare and search1..search5. */
function assembleKernels(): Uint8Array {
  const functions: Array<[string, FunctionDef]> = [
    ['evaluate', evaluateFunction()],
    ['prepare', prepareFunction()],
  ];
  for (let nt = 1; nt <= MAX_THRESHOLDS; nt++) functions.push([`search${nt}`, searchFunction(nt)]);
  const types = functions.map(([, f]) => [
    0x60,
    ...vector(f.params.map((p) => [p])),
    ...vector(f.results.map((p) => [p])),
  ]);
  const imports = [[...name('env'), ...name('memory'), 0x02, 0x00, ...uleb(1)]];
  const codes = functions.map(([, f]) => {
    const body = [...vector(f.locals.map(([count, type]) => [...uleb(count), type])), ...flatten(f.body), ...op.end];
    return [...uleb(body.length), ...body];
  });
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vector(types)),
    ...section(2, vector(imports)),
    ...section(3, vector(functions.map((_, i) => uleb(i)))),
    ...section(7, vector(functions.map(([n], i) => [...name(n), 0x00, ...uleb(i)]))),
    ...section(10, vector(codes)),
  ]);
}
