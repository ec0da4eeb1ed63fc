import { expect } from "chai";
import { createRefitKernels } from "../../compiler/weights/refit-kernels.js";
import { borderedInverse, dampedHessian, refitKept, RowInverse } from "../../compiler/weights/refit.js";
import { inverseCholeskyUpper } from "../../compiler/weights/sparsegpt.js";
import { seededRandom } from "../support/vnm-reference.js";

/** A [n, n] symmetric positive definite: XᵀX of n + 5 correlated random rows plus a small diagonal. */
function spd(seed: number, n: number): Float64Array {
  const r = seededRandom(seed);
  const t = n + 5;
  const X = Float64Array.from({ length: t * n }, () => r() - 0.5);
  for (let i = 0; i < t; i++) for (let k = 1; k < n; k++) X[i * n + k] = X[i * n + k]! + 0.7 * X[i * n + k - 1]!;
  const A = new Float64Array(n * n);
  for (let i = 0; i < t; i++) for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) A[a * n + b] = A[a * n + b]! + X[i * n + a]! * X[i * n + b]!;
  for (let a = 0; a < n; a++) A[a * n + a] = A[a * n + a]! + 0.01;
  return A;
}

/** A⁻¹ by Gauss-Jordan elimination with partial pivoting (the brute-force reference). */
function inverse(A: Float64Array, n: number): Float64Array {
  const M = Array.from({ length: n }, (_, i) => [...Array.from(A.subarray(i * n, i * n + n)), ...Array.from({ length: n }, (_, j) => (i === j ? 1 : 0))]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let i = c + 1; i < n; i++) if (Math.abs(M[i]![c]!) > Math.abs(M[p]![c]!)) p = i;
    [M[c], M[p]] = [M[p]!, M[c]!];
    const d = M[c]![c]!;
    for (let j = 0; j < 2 * n; j++) M[c]![j]! /= d;
    for (let i = 0; i < n; i++) {
      if (i === c) continue;
      const f = M[i]![c]!;
      for (let j = 0; j < 2 * n; j++) M[i]![j]! -= f * M[c]![j]!;
    }
  }
  return Float64Array.from(M.flatMap((row) => row.slice(n)));
}

/** max |a − b| / max |b| over the lower triangle of b [n, n] and a (lower triangle, row stride n, at offset `at`). */
function lowerError(a: Float64Array, at: number, b: Float64Array, n: number): number {
  let err = 0, size = 0;
  for (let i = 0; i < n; i++) for (let k = 0; k <= i; k++) (err = Math.max(err, Math.abs(a[at + i * n + k]! - b[i * n + k]!))), (size = Math.max(size, Math.abs(b[i * n + k]!)));
  return err / size;
}

describe("the refit's local search: kernels and incremental inverse (compiler/weights/refit.ts, refit-kernels.ts)", () => {
  it("kernels: WebAssembly and JS give bit-identical results, and y = A·v and the rank updates match a plain computation", () => {
    const wasm = createRefitKernels(1);
    expect(wasm.kind, "WebAssembly SIMD is available in Node").to.equal("wasm");
    for (const n of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 31, 64, 77]) {
      const stride = n + 3;
      const V = stride * n, W = V + n, Y = W + n, Q = Y + n, size = Q + n;
      const r = seededRandom(100 + n);
      const init = Float64Array.from({ length: size }, () => r() - 0.5);
      const [w, j] = [createRefitKernels(size), createRefitKernels(size, false)];
      expect(j.kind).to.equal("js");
      for (const k of [w, j]) {
        k.heap.set(init);
        k.symv(0, stride, n, V, Y);
      }
      // Reference: the symmetric matrix from the lower triangle at stride `stride`.
      const at = (i: number, k: number) => (k <= i ? init[i * stride + k]! : init[k * stride + i]!);
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += at(i, k) * init[V + k]!;
        expect(w.heap[Y + i]!, `symv n=${n} row ${i}`).to.be.closeTo(s, 1e-12 * (1 + Math.abs(s)) * n);
      }
      for (const k of [w, j]) {
        k.symv2(0, stride, n, V, W, Y, Q);
        k.rank2(0, stride, n, Y, 0.37, Q, -1.3);
        k.rank1(0, stride, n, W, 1 / 3);
        k.symv(0, stride, n, Q, V);
      }
      for (let i = 0; i < size; i++) expect(Object.is(w.heap[i], j.heap[i]), `n=${n} element ${i}`).to.equal(true);
      // The rank updates touch the lower triangle only, by the stated formula.
      const h = Float64Array.from(init);
      const k2 = createRefitKernels(size);
      k2.heap.set(h);
      k2.rank2(0, stride, n, V, 0.37, W, -1.3);
      for (let i = 0; i < n; i++) {
        for (let k = 0; k < stride; k++) {
          const want = k <= i ? h[i * stride + k]! + (h[V + i]! * 0.37 * h[V + k]! + h[W + i]! * -1.3 * h[W + k]!) : h[i * stride + k]!;
          expect(k2.heap[i * stride + k], `rank2 n=${n} [${i}, ${k}]`).to.equal(want);
        }
      }
    }
  });

  it("borderedInverse: the inverse of a symmetric positive definite matrix (lower triangle), as a brute-force solve gives it; false if not positive definite", () => {
    for (const n of [1, 2, 3, 8, 27, 64]) {
      const A = spd(200 + n, n);
      const want = inverse(A, n);
      for (const preferWasm of [true, false]) {
        const k = createRefitKernels(n * n + 2 * n, preferWasm);
        expect(borderedInverse(k, A, n, 0, n * n, n * n + n)).to.equal(true);
        expect(lowerError(k.heap, 0, want, n), `n=${n} ${k.kind}`).to.be.below(1e-9);
      }
    }
    const bad = spd(300, 6);
    bad[3 * 6 + 3] = -1;
    expect(borderedInverse(createRefitKernels(6 * 6 + 12), bad, 6, 0, 36, 42)).to.equal(false);
  });

  it("RowInverse: rank-two swap updates keep A⁻¹ = (Hd_SS)⁻¹ and x = A⁻¹·b_S equal to a brute-force solve after every swap", () => {
    const K = 40;
    const Hd = spd(400, K);
    const r = seededRandom(401);
    const bFull = Float64Array.from({ length: K }, () => r() - 0.5);
    for (const preferWasm of [true, false]) {
      const keep = Uint8Array.from({ length: K }, (_, k) => (k % 5 < 2 ? 1 : 0));
      const w = new RowInverse(K, 16, preferWasm);
      w.load(keep, 0, K);
      expect(w.n).to.equal(16);
      expect(w.fresh(Hd, bFull, K)).to.equal(true);
      const check = (what: string) => {
        const S = Array.from(w.idx.subarray(0, w.n));
        const A = Float64Array.from({ length: w.n * w.n }, (_, e) => Hd[S[Math.floor(e / w.n)]! * K + S[e % w.n]!]!);
        const inv = inverse(A, w.n);
        expect(lowerError(w.ainv, 0, inv, w.n), `${what}: A⁻¹`).to.be.below(1e-10);
        for (let i = 0; i < w.n; i++) {
          let x = 0;
          for (let k = 0; k < w.n; k++) x += inv[i * w.n + k]! * bFull[S[k]!]!;
          expect(w.x[i]!, `${what}: x[${i}]`).to.be.closeTo(x, 1e-9 * (1 + Math.abs(x)));
        }
        expect(w.accurate(Hd, K), what).to.equal(true);
      };
      check("fresh");
      // 60 swaps: slot p (cycling) takes a column of its group not kept (the search's moves).
      for (let t = 0; t < 60; t++) {
        const p = (t * 7) % w.n;
        const q = w.idx[p]!;
        const g = Math.floor(q / 5);
        const j = [0, 1, 2, 3, 4].map((o) => g * 5 + o).find((c) => w.slotOf[c]! < 0 && c !== q && (c + t) % 2 === 0) ?? [0, 1, 2, 3, 4].map((o) => g * 5 + o).find((c) => w.slotOf[c]! < 0)!;
        w.row(p, w.rows[0]!);
        w.gather(Hd, K, j, 1);
        w.solve(1);
        w.swap(Hd, K, bFull, p, j, w.rows[0]!, 1);
        expect(w.idx[p]).to.equal(j);
        expect(w.slotOf[j]).to.equal(p);
        expect(w.slotOf[q]).to.equal(-1);
        check(`${preferWasm ? "wasm" : "js"} swap ${t}`);
      }
      // A corrupted inverse fails the drift check (the search then forms it anew).
      w.ainv[3 * w.n + 1] = w.ainv[3 * w.n + 1]! * 1.001 + 1e-3;
      expect(w.accurate(Hd, K)).to.equal(false);
    }
  });

  it("refitKept with search: the WebAssembly and JS kernels give bit-identical weights and masks", () => {
    const out = 24, K = 60, v = 8, m = 6;
    const H = spd(500, K);
    const r = seededRandom(501);
    const target = Float64Array.from({ length: out * K }, () => r() - 0.5);
    const G = K / m;
    // Block columns: 4 per group (the first four of each group); each row keeps 2 of them.
    const columns = new Int32Array((out / v) * G * 4);
    for (let b = 0; b < out / v; b++) for (let g = 0; g < G; g++) for (let q = 0; q < 4; q++) columns[(b * G + g) * 4 + q] = g * m + q;
    const keep0 = new Uint8Array(out * K);
    for (let row = 0; row < out; row++) for (let g = 0; g < G; g++) for (const q of [(row + g) % 4, (row + g + 1) % 4]) keep0[row * K + g * m + q] = 1;
    const diag = Float64Array.from({ length: K }, (_, k) => H[k * K + k]!);
    const { U, lambda } = inverseCholeskyUpper(H, diag, K, 0.01);
    const Hd = dampedHessian(H, diag, K, lambda);
    const inverseDiag = new Float64Array(K);
    for (let i = 0; i < K; i++) for (let j = i; j < K; j++) inverseDiag[j] = inverseDiag[j]! + U[i * K + j]! ** 2;
    const results = (["wasm", "js"] as const).map((kernels) => {
      const keep = Uint8Array.from(keep0);
      const Wk = new Float64Array(out * K);
      const stats = refitKept(Wk, target, Hd, keep, out, K, { search: { columns, v, m, sweeps: 32, inverseDiag, kernels } });
      return { keep, Wk, stats };
    });
    expect(results[0]!.stats.swaps).to.be.above(0);
    expect(results[0]!.stats).to.deep.equal(results[1]!.stats);
    expect(Buffer.from(results[0]!.keep).equals(Buffer.from(results[1]!.keep))).to.equal(true);
    for (let i = 0; i < out * K; i++) expect(Object.is(results[0]!.Wk[i], results[1]!.Wk[i]), `weight ${i}`).to.equal(true);
  });
});
