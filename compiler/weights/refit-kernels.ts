/**
 * The O(n²) loops of the refit's local search (refit.ts) on a symmetric matrix stored in its lower
 * triangle (row-major, row stride `stride`; the upper triangle is never read): y = A·v for one or two
 * vectors, and rank-one / rank-two updates of the lower triangle. Two implementations with
 * bit-identical results:
 *  - WebAssembly SIMD (f64x2), assembled here at load time (a few hundred bytes): 2-3x the speed of
 *    the JS loops, which V8 compiles to scalar code with bounds checks;
 *  - plain JS, used where WebAssembly SIMD is unavailable, and by tests as a cross-check.
 * Both do the same float64 operations in the same order: in y = A·v, row i's dot product Σ_{k<i}
 * A[i, k]·v_k is summed in four partial sums (k mod 4, the lanes of two f64x2 accumulators; a last
 * pair goes to the first two, a last odd term is added to their total), then A[i, i]·v_i; A[i, k]·v_i
 * is added to y_k (k < i) in the same pass. Element-wise updates (y_k, the rank-one and rank-two terms)
 * are one multiply-add chain per element in both. Every vector and matrix lives in one Float64Array
 * `heap` (the module's memory for WebAssembly), addressed by element offsets.
 */
import { sleb, uleb, wasmApi, type WasmApi, type WasmModule } from "../numeric/wasm-api.js";

export interface RefitKernels {
  readonly kind: "wasm" | "js";
  /** All operands, addressed by element offset. */
  readonly heap: Float64Array;
  /** y = A·v (A [n, n] symmetric, lower triangle at `a` with row stride `stride`). */
  symv(a: number, stride: number, n: number, v: number, y: number): void;
  /** y = A·v and q = A·w in one pass over A, each exactly as symv gives it. */
  symv2(a: number, stride: number, n: number, v: number, w: number, y: number, q: number): void;
  /** Lower triangle of A += α·x·xᵀ: A[i, k] += (x_i·α)·x_k for k <= i. */
  rank1(a: number, stride: number, n: number, x: number, alpha: number): void;
  /** Lower triangle of A += α·x·xᵀ + β·c·cᵀ: A[i, k] += (x_i·α)·x_k + (c_i·β)·c_k for k <= i. */
  rank2(a: number, stride: number, n: number, x: number, alpha: number, c: number, beta: number): void;
}

/** Kernels over a heap of `elements` float64 (WebAssembly where available unless `preferWasm` is false). */
export function createRefitKernels(elements: number, preferWasm = true): RefitKernels {
  if (preferWasm) {
    const module = wasmModule();
    if (module && wasmApi) {
      try {
        return new WasmRefitKernels(wasmApi, module, elements);
      } catch {
        // e.g. a runtime that refuses to allocate the memory: the JS loops give the same results.
      }
    }
  }
  return new JsRefitKernels(elements);
}

/**
 * Kernels with a heap of at least `elements` float64, reused from call to call on this thread (one per
 * kind, replaced by a larger one when needed): a new WebAssembly memory per weight would cost fresh
 * pages and address space each time. Only for users that are done with the heap before the next call
 * (refitKept is synchronous); the heap's contents are undefined.
 */
export function sharedRefitKernels(elements: number, preferWasm = true): RefitKernels {
  const key = preferWasm ? 1 : 0;
  let k = shared[key];
  if (!k || k.heap.length < elements) {
    // Some headroom, so that a sequence of slightly larger weights does not allocate every time.
    k = createRefitKernels(Math.ceil(elements * 1.25), preferWasm);
    shared[key] = k;
  }
  return k;
}
const shared: Array<RefitKernels | undefined> = [undefined, undefined];

// ---------------------------------------------------------------------------------------------
// Plain JS

class JsRefitKernels implements RefitKernels {
  readonly kind = "js" as const;
  readonly heap: Float64Array;
  constructor(elements: number) {
    this.heap = new Float64Array(elements);
  }

  symv(a: number, stride: number, n: number, v: number, y: number): void {
    const h = this.heap;
    for (let i = 0; i < n; i++) {
      const ri = a + i * stride;
      const vi = h[v + i]!;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      let k = 0;
      for (; k + 4 <= i; k += 4) {
        const a0 = h[ri + k]!, a1 = h[ri + k + 1]!, a2 = h[ri + k + 2]!, a3 = h[ri + k + 3]!;
        s0 += a0 * h[v + k]!;
        s1 += a1 * h[v + k + 1]!;
        s2 += a2 * h[v + k + 2]!;
        s3 += a3 * h[v + k + 3]!;
        h[y + k] = h[y + k]! + a0 * vi;
        h[y + k + 1] = h[y + k + 1]! + a1 * vi;
        h[y + k + 2] = h[y + k + 2]! + a2 * vi;
        h[y + k + 3] = h[y + k + 3]! + a3 * vi;
      }
      if (k + 2 <= i) {
        const a0 = h[ri + k]!, a1 = h[ri + k + 1]!;
        s0 += a0 * h[v + k]!;
        s1 += a1 * h[v + k + 1]!;
        h[y + k] = h[y + k]! + a0 * vi;
        h[y + k + 1] = h[y + k + 1]! + a1 * vi;
        k += 2;
      }
      let s = (s0 + s1) + (s2 + s3);
      if (k < i) {
        const a0 = h[ri + k]!;
        s += a0 * h[v + k]!;
        h[y + k] = h[y + k]! + a0 * vi;
      }
      h[y + i] = s + h[ri + i]! * vi;
    }
  }

  symv2(a: number, stride: number, n: number, v: number, w: number, y: number, q: number): void {
    const h = this.heap;
    for (let i = 0; i < n; i++) {
      const ri = a + i * stride;
      const vi = h[v + i]!, wi = h[w + i]!;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0, t0 = 0, t1 = 0, t2 = 0, t3 = 0;
      let k = 0;
      for (; k + 4 <= i; k += 4) {
        const a0 = h[ri + k]!, a1 = h[ri + k + 1]!, a2 = h[ri + k + 2]!, a3 = h[ri + k + 3]!;
        s0 += a0 * h[v + k]!;
        s1 += a1 * h[v + k + 1]!;
        s2 += a2 * h[v + k + 2]!;
        s3 += a3 * h[v + k + 3]!;
        t0 += a0 * h[w + k]!;
        t1 += a1 * h[w + k + 1]!;
        t2 += a2 * h[w + k + 2]!;
        t3 += a3 * h[w + k + 3]!;
        h[y + k] = h[y + k]! + a0 * vi;
        h[y + k + 1] = h[y + k + 1]! + a1 * vi;
        h[y + k + 2] = h[y + k + 2]! + a2 * vi;
        h[y + k + 3] = h[y + k + 3]! + a3 * vi;
        h[q + k] = h[q + k]! + a0 * wi;
        h[q + k + 1] = h[q + k + 1]! + a1 * wi;
        h[q + k + 2] = h[q + k + 2]! + a2 * wi;
        h[q + k + 3] = h[q + k + 3]! + a3 * wi;
      }
      if (k + 2 <= i) {
        const a0 = h[ri + k]!, a1 = h[ri + k + 1]!;
        s0 += a0 * h[v + k]!;
        s1 += a1 * h[v + k + 1]!;
        t0 += a0 * h[w + k]!;
        t1 += a1 * h[w + k + 1]!;
        h[y + k] = h[y + k]! + a0 * vi;
        h[y + k + 1] = h[y + k + 1]! + a1 * vi;
        h[q + k] = h[q + k]! + a0 * wi;
        h[q + k + 1] = h[q + k + 1]! + a1 * wi;
        k += 2;
      }
      let s = (s0 + s1) + (s2 + s3);
      let t = (t0 + t1) + (t2 + t3);
      if (k < i) {
        const a0 = h[ri + k]!;
        s += a0 * h[v + k]!;
        t += a0 * h[w + k]!;
        h[y + k] = h[y + k]! + a0 * vi;
        h[q + k] = h[q + k]! + a0 * wi;
      }
      h[y + i] = s + h[ri + i]! * vi;
      h[q + i] = t + h[ri + i]! * wi;
    }
  }

  rank1(a: number, stride: number, n: number, x: number, alpha: number): void {
    const h = this.heap;
    for (let i = 0; i < n; i++) {
      const ri = a + i * stride;
      const xi = h[x + i]! * alpha;
      for (let k = 0; k <= i; k++) h[ri + k] = h[ri + k]! + xi * h[x + k]!;
    }
  }

  rank2(a: number, stride: number, n: number, x: number, alpha: number, c: number, beta: number): void {
    const h = this.heap;
    for (let i = 0; i < n; i++) {
      const ri = a + i * stride;
      const xi = h[x + i]! * alpha, ci = h[c + i]! * beta;
      for (let k = 0; k <= i; k++) h[ri + k] = h[ri + k]! + (xi * h[x + k]! + ci * h[c + k]!);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// WebAssembly

/** Byte offsets and byte strides, as the kernels take them. */
interface WasmExports {
  symv(a: number, stride: number, n: number, v: number, y: number): void;
  symv2(a: number, stride: number, n: number, v: number, w: number, y: number, q: number): void;
  rank1(a: number, stride: number, n: number, x: number, alpha: number): void;
  rank2(a: number, stride: number, n: number, x: number, alpha: number, c: number, beta: number): void;
}

class WasmRefitKernels implements RefitKernels {
  readonly kind = "wasm" as const;
  readonly heap: Float64Array;
  private readonly e: WasmExports;
  constructor(api: WasmApi, module: WasmModule, elements: number) {
    const memory = new api.Memory({ initial: Math.max(1, Math.ceil((elements * 8) / 65536)) });
    this.e = new api.Instance(module, { env: { memory } }).exports as WasmExports;
    this.heap = new Float64Array(memory.buffer, 0, elements);
  }
  symv(a: number, stride: number, n: number, v: number, y: number): void {
    this.e.symv(a * 8, stride * 8, n, v * 8, y * 8);
  }
  symv2(a: number, stride: number, n: number, v: number, w: number, y: number, q: number): void {
    this.e.symv2(a * 8, stride * 8, n, v * 8, w * 8, y * 8, q * 8);
  }
  rank1(a: number, stride: number, n: number, x: number, alpha: number): void {
    this.e.rank1(a * 8, stride * 8, n, x * 8, alpha);
  }
  rank2(a: number, stride: number, n: number, x: number, alpha: number, c: number, beta: number): void {
    this.e.rank2(a * 8, stride * 8, n, x * 8, alpha, c * 8, beta);
  }
}

let compiled: WasmModule | null | undefined;
function wasmModule(): WasmModule | null {
  if (compiled === undefined) {
    try {
      const bytes = assemble();
      compiled = wasmApi !== undefined && wasmApi.validate(bytes) ? new wasmApi.Module(bytes) : null;
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

// A tiny WebAssembly assembler: just the encodings these kernels use.

type Code = number[];

const cat = (...parts: Code[]): Code => parts.flat();
const vec = (items: Code[]): Code => cat(uleb(items.length), ...items);
const section = (id: number, body: Code): Code => cat([id], uleb(body.length), body);
const str = (text: string): Code => vec([...text].map((ch) => [ch.charCodeAt(0)]));

const I32 = 0x7f, F64 = 0x7c, V128 = 0x7b;
const simd = (opcode: number): Code => [0xfd, ...uleb(opcode)];
const get = (i: number): Code => [0x20, ...uleb(i)];
const set = (i: number): Code => [0x21, ...uleb(i)];
const i32 = (n: number): Code => [0x41, ...sleb(n)];
const add = [0x6a], mul = [0x6c], leU = [0x4d], ltU = [0x49];
const fAdd = [0xa0], fMul = [0xa2];
const fLoad = (offset = 0): Code => [0x2b, 3, ...uleb(offset)];
const fStore = (offset = 0): Code => [0x39, 3, ...uleb(offset)];
const vLoad = (offset = 0): Code => [...simd(0x00), 3, ...uleb(offset)];
const vStore = (offset = 0): Code => [...simd(0x0b), 3, ...uleb(offset)];
const vZero = cat(simd(0x0c), new Array<number>(16).fill(0));
const vSplat = simd(0x14);
const lane = (l: number): Code => [...simd(0x21), l];
const vAdd = simd(0xf0), vMul = simd(0xf2);
const block = (...body: Code[]): Code => cat([0x02, 0x40], ...body, [0x0b]);
const loop = (...body: Code[]): Code => cat([0x03, 0x40], ...body, [0x0b]);
/** `if (cond) { body }`: cond must leave an i32. */
const ifThen = (cond: Code, ...body: Code[]): Code => cat(cond, [0x04, 0x40], ...body, [0x0b]);
const brIf = (depth: number): Code => [0x0d, ...uleb(depth)];
const br = (depth: number): Code => [0x0c, ...uleb(depth)];
/** `while (cond) { body }`: cond must leave an i32 (non-zero: go on). */
const whileLoop = (cond: Code, ...body: Code[]): Code => block(loop(cond, [0x45], brIf(1), ...body, br(0)));
/** p += bytes */
const bump = (p: number, bytes: number): Code => cat(get(p), i32(bytes), add, set(p));
/** acc = acc + x (f64x2), x computed by `x` */
const vAcc = (acc: number, x: Code): Code => cat(get(acc), x, vAdd, set(acc));
/** hsum(acc) = lane 0 + lane 1 */
const hsum = (acc: number): Code => cat(get(acc), lane(0), get(acc), lane(1), fAdd);

/**
 * symv(a, stride, n, v, y) / symv2(a, stride, n, v, w, y, q), in bytes; one row of the lower triangle at a time.
 * `vecs` 1 or 2: the vectors v (w) multiplied and y (q) written.
 */
function symvBody(vecs: 1 | 2): { params: number[]; locals: Code[]; code: Code } {
  // params: a 0, stride 1, n 2, v 3, (w 4,) y, (q)
  const P_A = 0, P_STRIDE = 1, P_N = 2;
  const pV = [3, 4].slice(0, vecs), pY = vecs === 1 ? [4] : [5, 6];
  let next = vecs === 1 ? 5 : 7;
  const L_ROW = next++, L_DIAG = next++, L_I = next++, L_PR = next++, L_K = next++, L_NB = next++;
  const iLocals = next - (vecs === 1 ? 5 : 7);
  const vStart = next;
  const L_VI = pV.map(() => next++), L_ACC0 = pV.map(() => next++), L_ACC1 = pV.map(() => next++), L_A0 = next++, L_A1 = next++;
  const vLocals = next - vStart;
  const fStart = next;
  const L_S = pV.map(() => next++), L_SA = next++;
  const fLocals = next - fStart;
  const perVec = (f: (t: number) => Code): Code => cat(...pV.map((_, t) => f(t)));
  // Addresses: row pointer pr = row + k, vector elements at base + k (k in bytes).
  const at = (base: number): Code => cat(get(base), get(L_K), add);
  const code = cat(
    get(P_N), i32(8), mul, set(L_NB),
    get(P_A), set(L_ROW),
    i32(0), set(L_I),
    whileLoop(cat(get(L_I), get(L_NB), ltU),
      // diag = row + i (bytes); vi = splat(v[i])
      get(L_ROW), get(L_I), add, set(L_DIAG),
      perVec((t) => cat(get(pV[t]!), get(L_I), add, fLoad(), vSplat, set(L_VI[t]!), vZero, set(L_ACC0[t]!), vZero, set(L_ACC1[t]!))),
      i32(0), set(L_K), get(L_ROW), set(L_PR),
      // four terms at a time: while pr + 32 <= diag
      whileLoop(cat(get(L_PR), i32(32), add, get(L_DIAG), leU),
        get(L_PR), vLoad(0), set(L_A0),
        get(L_PR), vLoad(16), set(L_A1),
        perVec((t) => cat(
          vAcc(L_ACC0[t]!, cat(get(L_A0), at(pV[t]!), vLoad(0), vMul)),
          vAcc(L_ACC1[t]!, cat(get(L_A1), at(pV[t]!), vLoad(16), vMul)),
          at(pY[t]!), at(pY[t]!), vLoad(0), get(L_A0), get(L_VI[t]!), vMul, vAdd, vStore(0),
          at(pY[t]!), at(pY[t]!), vLoad(16), get(L_A1), get(L_VI[t]!), vMul, vAdd, vStore(16),
        )),
        bump(L_PR, 32), bump(L_K, 32),
      ),
      // a last pair into the first accumulator
      ifThen(cat(get(L_PR), i32(16), add, get(L_DIAG), leU),
        get(L_PR), vLoad(0), set(L_A0),
        perVec((t) => cat(
          vAcc(L_ACC0[t]!, cat(get(L_A0), at(pV[t]!), vLoad(0), vMul)),
          at(pY[t]!), at(pY[t]!), vLoad(0), get(L_A0), get(L_VI[t]!), vMul, vAdd, vStore(0),
        )),
        bump(L_PR, 16), bump(L_K, 16),
      ),
      // s = (lane sums of acc0) + (lane sums of acc1)
      perVec((t) => cat(hsum(L_ACC0[t]!), hsum(L_ACC1[t]!), fAdd, set(L_S[t]!))),
      // a last odd term
      ifThen(cat(get(L_PR), get(L_DIAG), ltU),
        get(L_PR), fLoad(), set(L_SA),
        perVec((t) => cat(
          get(L_S[t]!), get(L_SA), at(pV[t]!), fLoad(), fMul, fAdd, set(L_S[t]!),
          at(pY[t]!), at(pY[t]!), fLoad(), get(L_SA), get(L_VI[t]!), lane(0), fMul, fAdd, fStore(),
        )),
      ),
      // y[i] = s + A[i, i]·v_i
      perVec((t) => cat(get(pY[t]!), get(L_I), add, get(L_S[t]!), get(L_DIAG), fLoad(), get(L_VI[t]!), lane(0), fMul, fAdd, fStore())),
      bump(L_I, 8),
      get(L_ROW), get(P_STRIDE), add, set(L_ROW),
    ),
  );
  const params = [I32, I32, I32, ...pV.map(() => I32), ...pY.map(() => I32)];
  return { params, locals: [cat(uleb(iLocals), [I32]), cat(uleb(vLocals), [V128]), cat(uleb(fLocals), [F64])], code };
}

/** rank1(a, stride, n, x, alpha) / rank2(a, stride, n, x, alpha, c, beta), in bytes. */
function rankBody(terms: 1 | 2): { params: number[]; locals: Code[]; code: Code } {
  // params: a 0, stride 1, n 2, x 3, alpha 4 (f64), (c 5, beta 6 (f64))
  const P_A = 0, P_STRIDE = 1, P_N = 2;
  const pX = terms === 1 ? [3] : [3, 5], pAlpha = terms === 1 ? [4] : [4, 6];
  let next = terms === 1 ? 5 : 7;
  const L_ROW = next++, L_END = next++, L_I = next++, L_PR = next++, L_K = next++, L_NB = next++;
  const iLocals = 6;
  const L_XI = pX.map(() => next++);
  const vLocals = pX.length;
  const each = (f: (t: number) => Code): Code => cat(...pX.map((_, t) => f(t)));
  const at = (base: number): Code => cat(get(base), get(L_K), add);
  // term(t) of a pair: splat(x_i·α)·x[k:k+2]; the pair's update A + (term 0 + term 1)
  const pair = (offset: number): Code => {
    const terms2 = pX.map((_, t) => cat(get(L_XI[t]!), at(pX[t]!), vLoad(offset), vMul));
    return cat(get(L_PR), get(L_PR), vLoad(offset), terms2[0]!, ...(terms2.length === 2 ? [terms2[1]!, vAdd] : []), vAdd, vStore(offset));
  };
  const single = (): Code => {
    const termsS = pX.map((_, t) => cat(get(L_XI[t]!), lane(0), at(pX[t]!), fLoad(), fMul));
    return cat(get(L_PR), get(L_PR), fLoad(), termsS[0]!, ...(termsS.length === 2 ? [termsS[1]!, fAdd] : []), fAdd, fStore());
  };
  const code = cat(
    get(P_N), i32(8), mul, set(L_NB),
    get(P_A), set(L_ROW),
    i32(0), set(L_I),
    whileLoop(cat(get(L_I), get(L_NB), ltU),
      each((t) => cat(get(pX[t]!), get(L_I), add, fLoad(), get(pAlpha[t]!), fMul, vSplat, set(L_XI[t]!))),
      // columns k = 0..i: end = row + i + 8 bytes
      get(L_ROW), get(L_I), add, i32(8), add, set(L_END),
      i32(0), set(L_K), get(L_ROW), set(L_PR),
      whileLoop(cat(get(L_PR), i32(32), add, get(L_END), leU), pair(0), pair(16), bump(L_PR, 32), bump(L_K, 32)),
      ifThen(cat(get(L_PR), i32(16), add, get(L_END), leU), pair(0), bump(L_PR, 16), bump(L_K, 16)),
      ifThen(cat(get(L_PR), get(L_END), ltU), single()),
      bump(L_I, 8),
      get(L_ROW), get(P_STRIDE), add, set(L_ROW),
    ),
  );
  const params = terms === 1 ? [I32, I32, I32, I32, F64] : [I32, I32, I32, I32, F64, I32, F64];
  return { params, locals: [cat(uleb(iLocals), [I32]), cat(uleb(vLocals), [V128])], code };
}

function assemble(): Uint8Array {
  const funcs = [
    { name: "symv", ...symvBody(1) },
    { name: "symv2", ...symvBody(2) },
    { name: "rank1", ...rankBody(1) },
    { name: "rank2", ...rankBody(2) },
  ];
  const types = section(1, vec(funcs.map((f) => cat([0x60], vec(f.params.map((p) => [p])), [0]))));
  const imports = section(2, vec([cat(str("env"), str("memory"), [0x02, 0x00], uleb(1))]));
  const functions = section(3, vec(funcs.map((_, i) => uleb(i))));
  const exports = section(7, vec(funcs.map((f, i) => cat(str(f.name), [0x00], uleb(i)))));
  const code = section(10, vec(funcs.map((f) => {
    const body = cat(vec(f.locals), f.code, [0x0b]);
    return cat(uleb(body.length), body);
  })));
  return Uint8Array.from(cat([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], types, imports, functions, exports, code));
}
