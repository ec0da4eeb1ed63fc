import { expect } from "chai";
import { parseVnm } from "../../compiler/vnm/config.js";
import { denseFromKept, hessianError, inverseCholeskyUpper, REFIT_SEARCH_MAX_OPS, refitAffordable, refitPlan, SEARCH_PASS_OPS, searchOps, sparseGptPrune } from "../../compiler/weights/sparsegpt.js";
import { checkVnmPattern, seededRandom } from "../support/vnm-reference.js";

/** X [n, K] with correlated channels (a shared latent factor) and scales over two orders of magnitude. */
function activations(seed: number, n: number, K: number): Float64Array {
  const r = seededRandom(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  const scale = Array.from({ length: K }, () => Math.exp(r() * 4.6 - 2.3));
  const mix = Array.from({ length: K }, () => r() * 1.5);
  const X = new Float64Array(n * K);
  for (let t = 0; t < n; t++) {
    const z = gauss();
    for (let k = 0; k < K; k++) X[t * K + k] = scale[k]! * (gauss() + mix[k]! * z);
  }
  return X;
}

function gram(X: Float64Array, n: number, K: number): Float64Array {
  const H = new Float64Array(K * K);
  for (let t = 0; t < n; t++) for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) H[i * K + j] += X[t * K + i]! * X[t * K + j]!;
  return H;
}

function weights(seed: number, out: number, K: number): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: out * K }, () => (r() - 0.5) * 2);
}

/** Solves A x = b (A small, symmetric positive definite) by Gaussian elimination with partial pivoting. */
function solve(A: number[][], b: number[]): number[] {
  const n = b.length;
  const M = A.map((row, i) => [...row, b[i]!]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let i = c + 1; i < n; i++) if (Math.abs(M[i]![c]!) > Math.abs(M[p]![c]!)) p = i;
    [M[c], M[p]] = [M[p]!, M[c]!];
    for (let i = c + 1; i < n; i++) {
      const f = M[i]![c]! / M[c]![c]!;
      for (let j = c; j <= n; j++) M[i]![j]! -= f * M[c]![j]!;
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let i = n - 1; i >= 0; i--) {
    let s = M[i]![n]!;
    for (let j = i + 1; j < n; j++) s -= M[i]![j]! * x[j]!;
    x[i] = s / M[i]![i]!;
  }
  return x;
}

/**
 * The least-squares optimum for a fixed mask, independently: per row, the kept weights w_S minimising
 * ‖X_S w_S − X w‖², i.e. H_SS w_S = (H w)_S (with `lambda` added to H's diagonal if asked).
 */
function leastSquares(W: Float32Array, out: number, K: number, H: Float64Array, mask: (r: number, k: number) => boolean, lambda = 0): Float64Array {
  const R = new Float64Array(out * K);
  for (let r = 0; r < out; r++) {
    const S = Array.from({ length: K }, (_, k) => k).filter((k) => mask(r, k));
    const Hw = Array.from({ length: K }, (_, i) => {
      let s = 0;
      for (let j = 0; j < K; j++) s += (H[i * K + j]! + (i === j ? lambda : 0)) * W[r * K + j]!;
      return s;
    });
    const A = S.map((i) => S.map((j) => H[i * K + j]! + (i === j ? lambda : 0)));
    const x = solve(A, S.map((i) => Hw[i]!));
    S.forEach((k, i) => (R[r * K + k] = x[i]!));
  }
  return R;
}

const maskOf = (dense: Float32Array, K: number) => (r: number, k: number) => dense[r * K + k] !== 0;

describe("SparseGPT under V:N:M (compiler/weights/sparsegpt.ts)", () => {
  it("factors the damped inverse Hessian: UᵀU = (H + λI)⁻¹ with U upper triangular", () => {
    const K = 12;
    const H = gram(activations(1, 40, K), 40, K);
    const diag = Float64Array.from({ length: K }, (_, k) => H[k * K + k]!);
    const { U, lambda } = inverseCholeskyUpper(H, diag, K, 0.01);
    const mean = diag.reduce((a, b) => a + b, 0) / K;
    expect(lambda).to.be.closeTo(0.01 * mean, 1e-12 * mean);
    for (let i = 0; i < K; i++) for (let j = 0; j < i; j++) expect(U[i * K + j], `U[${i},${j}]`).to.equal(0);
    // (H + λI) · UᵀU = I
    for (let i = 0; i < K; i++) {
      for (let j = 0; j < K; j++) {
        let s = 0;
        for (let p = 0; p < K; p++) {
          let inv = 0;
          for (let q = 0; q < K; q++) inv += U[q * K + p]! * U[q * K + j]!;
          s += (H[i * K + p]! + (i === p ? lambda : 0)) * inv;
        }
        expect(s, `(HUᵀU)[${i},${j}]`).to.be.closeTo(i === j ? 1 : 0, 1e-9);
      }
    }
  });

  it("equals the (damped) least-squares optimum when every row's pruned weights come before its kept ones", () => {
    // One group of 4 (2:4): the last two columns are far larger, so every row keeps columns 2 and 3;
    // each OBS step re-fits every later column, so the last one leaves the exact optimum for the mask.
    const out = 8, K = 4, n = 30;
    const X = activations(2, n, K);
    const H = gram(X, n, K);
    const W = weights(3, out, K);
    for (let r = 0; r < out; r++) (W[r * K + 2] = 10 + r), (W[r * K + 3] = -12 - r);
    const res = sparseGptPrune(W, out, K, H, parseVnm("8:2:4"));
    const got = denseFromKept(res.selection, res.kept);
    const mean = (H[0]! + H[5]! + H[10]! + H[15]!) / 4;
    const want = leastSquares(W, out, K, H, (_, k) => k >= 2, 0.01 * mean);
    for (let r = 0; r < out; r++) {
      expect(got[r * K]).to.equal(0);
      expect(got[r * K + 1]).to.equal(0);
      for (const k of [2, 3]) expect(got[r * K + k], `W[${r},${k}]`).to.be.closeTo(want[r * K + k]!, 1e-5 * Math.abs(want[r * K + k]!));
    }
  });

  for (const [vnm, out, K, n] of [["8:2:5", 16, 20, 60], ["8:2:8", 8, 32, 100], ["16:2:6", 16, 27, 80]] as const) {
    it(`${vnm} on a ${out}x${K} weight: a valid pattern, less error than plain masking, close to the least-squares optimum for its mask`, () => {
      const cfg = parseVnm(vnm);
      for (const seed of [1, 2, 3]) {
        const X = activations(10 + seed, n, K);
        const H = gram(X, n, K);
        const W = weights(20 + seed, out, K);
        for (const blockSize of [cfg.m, 128]) {
          const res = sparseGptPrune(W, out, K, H, cfg, { blockSize });
          const got = denseFromKept(res.selection, res.kept);
          expect(checkVnmPattern(got, out, K, cfg.v, cfg.m)).to.deep.equal([]);
          const mask = maskOf(got, K);
          const masked = W.map((w, i) => (mask(Math.floor(i / K), i % K) ? w : 0));
          const optimum = leastSquares(W, out, K, H, mask);
          const [eGot, eMasked, eOpt] = [hessianError(W, got, out, K, H), hessianError(W, masked, out, K, H), hessianError(W, optimum, out, K, H)];
          expect(eGot, `seed ${seed}: sparsegpt ${eGot} vs masking ${eMasked}`).to.be.below(eMasked);
          expect(eGot, `seed ${seed}: sparsegpt ${eGot} vs optimum ${eOpt}`).to.be.at.most(1.5 * eOpt);
          expect(eOpt).to.be.at.most(eGot * (1 + 1e-9));
        }
      }
    });
  }

  it("keeps pruned weights at exactly 0 and gives the same result for any lazy block width (to rounding)", () => {
    const out = 16, K = 40, n = 90;
    const cfg = parseVnm("8:2:5");
    const H = gram(activations(5, n, K), n, K);
    const W = weights(6, out, K);
    const a = sparseGptPrune(W, out, K, H, cfg, { blockSize: 5 });
    const b = sparseGptPrune(W, out, K, H, cfg, { blockSize: 15 });
    const c = sparseGptPrune(W, out, K, H, cfg);
    expect(Array.from(a.selection.src)).to.deep.equal(Array.from(c.selection.src));
    expect(Array.from(b.selection.src)).to.deep.equal(Array.from(c.selection.src));
    for (let i = 0; i < a.kept.length; i++) {
      expect(a.kept[i]).to.be.closeTo(c.kept[i]!, 1e-5 * (1 + Math.abs(c.kept[i]!)));
      expect(b.kept[i]).to.be.closeTo(c.kept[i]!, 1e-5 * (1 + Math.abs(c.kept[i]!)));
      if (c.selection.src[i]! < 0) expect(c.kept[i]).to.equal(0);
    }
    // Deterministic: bit-identical on a second run.
    const d = sparseGptPrune(W, out, K, H, cfg);
    expect(Buffer.from(d.kept.buffer).equals(Buffer.from(c.kept.buffer))).to.equal(true);
  });

  it("handles dead channels (H[k,k] = 0): no NaN, they are dropped first, and nothing moves into or out of them", () => {
    const out = 8, K = 16, n = 50;
    const X = activations(7, n, K);
    for (let t = 0; t < n; t++) (X[t * K + 3] = 0), (X[t * K + 9] = 0);
    const H = gram(X, n, K);
    const W = weights(8, out, K);
    for (let r = 0; r < out; r++) W[r * K + 3] = 50; // large but never active
    const res = sparseGptPrune(W, out, K, H, parseVnm("8:2:8"));
    expect(res.deadChannels).to.equal(2);
    const got = denseFromKept(res.selection, res.kept);
    expect(Array.from(got).every(Number.isFinite)).to.equal(true);
    for (let r = 0; r < out; r++) expect(got[r * K + 3], "a dead channel loses to every live one").to.equal(0);
    // Nothing moves into a dead channel: a kept weight there keeps its value.
    for (let r = 0; r < out; r++) if (got[r * K + 9] !== 0) expect(got[r * K + 9]).to.equal(W[r * K + 9]);
    // Nothing moves out of one: with the dead channels' weights zeroed, the same mask and live values.
    const zeroed = W.map((w, i) => (i % K === 3 || i % K === 9 ? 0 : w));
    const again = sparseGptPrune(zeroed, out, K, H, parseVnm("8:2:8"));
    expect(Array.from(again.selection.src)).to.deep.equal(Array.from(res.selection.src));
    const got2 = denseFromKept(again.selection, again.kept);
    for (let i = 0; i < got.length; i++) if (i % K !== 3 && i % K !== 9) expect(got2[i], `W[${Math.floor(i / K)},${i % K}]`).to.equal(got[i]);
    const masked = W.map((w, i) => (got[i] !== 0 ? w : 0));
    expect(hessianError(W, got, out, K, H)).to.be.below(hessianError(W, masked, out, K, H));
  });

  it("an all-zero Hessian (no information) prunes without NaN and leaves the kept weights as they were", () => {
    const out = 8, K = 8;
    const W = weights(9, out, K);
    const res = sparseGptPrune(W, out, K, new Float64Array(K * K), parseVnm("8:2:4"));
    expect(res.deadChannels).to.equal(K);
    const got = denseFromKept(res.selection, res.kept);
    for (let i = 0; i < got.length; i++) if (got[i] !== 0) expect(got[i]).to.equal(W[i]);
  });

  it("the mask saliency matters: obs and wanda choose differently on correlated activations", () => {
    const out = 16, K = 32, n = 100;
    const H = gram(activations(11, n, K), n, K);
    const W = weights(12, out, K);
    const cfg = parseVnm("8:2:8");
    const obs = sparseGptPrune(W, out, K, H, cfg, { maskScore: "obs" });
    const wanda = sparseGptPrune(W, out, K, H, cfg, { maskScore: "wanda" });
    expect(Array.from(obs.selection.src)).to.not.deep.equal(Array.from(wanda.selection.src));
  });

  it("refit: the kept weights are the exact damped least-squares optimum for the mask OBS chose", () => {
    for (const [vnm, out, K, n] of [["8:2:5", 16, 20, 60], ["8:2:8", 8, 32, 100]] as const) {
      const cfg = parseVnm(vnm);
      const X = activations(40, n, K);
      const H = gram(X, n, K);
      const W = weights(41, out, K);
      const plain = sparseGptPrune(W, out, K, H, cfg);
      const res = sparseGptPrune(W, out, K, H, cfg, { refit: true });
      // The same mask; only the kept values change.
      expect(Array.from(res.selection.src)).to.deep.equal(Array.from(plain.selection.src));
      const got = denseFromKept(res.selection, res.kept);
      const want = leastSquares(W, out, K, H, maskOf(got, K), res.lambda);
      for (let i = 0; i < out * K; i++) expect(got[i], `${vnm} W[${Math.floor(i / K)},${i % K}]`).to.be.closeTo(want[i]!, 1e-4 * (1 + Math.abs(want[i]!)));
      const e = (d: Float32Array) => hessianError(W, d, out, K, H);
      expect(e(got)).to.be.at.most(e(denseFromKept(plain.selection, plain.kept)) * (1 + 1e-6));
    }
  });

  it("refit with an error-correcting target solves Hd_SS·w_S = (X̂ᵀX·w)_S", () => {
    const out = 8, K = 20, n = 60;
    const cfg = parseVnm("8:2:5");
    const X = activations(50, n, K);
    const Xh = X.map((x, i) => x * (1 + 0.3 * Math.sin(i))); // the "pruned prefix" input
    const H = gram(Xh, n, K);
    const C = new Float64Array(K * K); // X̂ᵀX
    for (let t = 0; t < n; t++) for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) C[i * K + j] += Xh[t * K + i]! * X[t * K + j]!;
    const W = weights(51, out, K);
    const res = sparseGptPrune(W, out, K, H, cfg, { cross: C, refit: true });
    const got = denseFromKept(res.selection, res.kept);
    for (let r = 0; r < out; r++) {
      const S = Array.from({ length: K }, (_, k) => k).filter((k) => got[r * K + k] !== 0);
      const A = S.map((i) => S.map((j) => H[i * K + j]! + (i === j ? res.lambda : 0)));
      const b = S.map((i) => {
        let s = 0;
        for (let j = 0; j < K; j++) s += C[i * K + j]! * W[r * K + j]!;
        return s;
      });
      const x = solve(A, b);
      S.forEach((k, i) => expect(got[r * K + k], `W[${r},${k}]`).to.be.closeTo(x[i]!, 1e-4 * (1 + Math.abs(x[i]!))));
    }
  });

  it("refit keeps dead channels decoupled and pruned weights at 0", () => {
    const out = 8, K = 20, n = 40;
    const cfg = parseVnm("8:2:5");
    const X = activations(60, n, K);
    for (let t = 0; t < n; t++) X[t * K + 3] = X[t * K + 11] = 0;
    const H = gram(X, n, K);
    const W = weights(61, out, K);
    const res = sparseGptPrune(W, out, K, H, cfg, { refit: true });
    const got = denseFromKept(res.selection, res.kept);
    expect(got.every(Number.isFinite)).to.equal(true);
    for (let r = 0; r < out; r++) for (const k of [3, 11]) if (got[r * K + k] !== 0) expect(got[r * K + k]).to.be.closeTo(W[r * K + k]!, 1e-6);
    expect(checkVnmPattern(got, out, K, cfg.v, cfg.m)).to.deep.equal([]);
  });

  it("refit with local search: same block columns, a valid pattern, no single 2:4 swap left that lowers the error, never worse than without", () => {
    for (const [vnm, out, K, n] of [["8:2:5", 16, 20, 40], ["8:2:6", 8, 18, 50], ["8:2:4", 16, 16, 40]] as const) {
      const cfg = parseVnm(vnm);
      const X = activations(70, n, K);
      const H = gram(X, n, K);
      const W = weights(71, out, K);
      const plain = sparseGptPrune(W, out, K, H, cfg, { refit: true });
      const res = sparseGptPrune(W, out, K, H, cfg, { refit: true, refitSweeps: 8 });
      const got = denseFromKept(res.selection, res.kept);
      expect(checkVnmPattern(got, out, K, cfg.v, cfg.m)).to.deep.equal([]);
      const lambda = res.lambda;
      // Independent objective: the damped least-squares error of the optimum for a mask.
      const err = (mask: (r: number, k: number) => boolean) => {
        const opt = leastSquares(W, out, K, H, mask, lambda);
        const Hd = H.map((h, i) => (i % (K + 1) === 0 ? h + lambda : h));
        return hessianError(W, opt, out, K, Hd);
      };
      const mask = maskOf(got, K);
      const e = err(mask);
      expect(e).to.be.at.most(err(maskOf(denseFromKept(plain.selection, plain.kept), K)) * (1 + 1e-9));
      // The kept values are the optimum for the final mask.
      const want = leastSquares(W, out, K, H, mask, lambda);
      for (let i = 0; i < out * K; i++) expect(got[i]).to.be.closeTo(want[i]!, 1e-4 * (1 + Math.abs(want[i]!)));
      // The block columns are the OBS pass's: every kept column of the search was one of them.
      const G = Math.ceil(K / cfg.m);
      for (let r = 0; r < out; r++) {
        const b = Math.floor(r / cfg.v);
        for (let k = 0; k < K; k++) {
          if (!mask(r, k)) continue;
          const g = Math.floor(k / cfg.m);
          expect(Array.from(plain.selection.columns.subarray((b * G + g) * 4, (b * G + g) * 4 + 4))).to.include(k);
        }
      }
      // Local optimality: no swap of one kept weight for another block column of its group helps (brute force).
      for (let r = 0; r < out; r++) {
        const b = Math.floor(r / cfg.v);
        for (let g = 0; g < G; g++) {
          const cols = [...new Set(res.selection.columns.subarray((b * G + g) * 4, (b * G + g) * 4 + 4))].filter((c) => Math.floor(c / cfg.m) === g);
          for (const q of cols.filter((c) => mask(r, c))) {
            for (const j of cols.filter((c) => !mask(r, c))) {
              const swapped = (rr: number, k: number) => (rr === r ? (k === q ? false : k === j ? true : mask(rr, k)) : mask(rr, k));
              expect(err(swapped), `${vnm} row ${r}: swap ${q} -> ${j}`).to.be.at.least(e * (1 - 1e-9));
            }
          }
        }
      }
    }
  });

  it("refit runs where it costs at most a few times the OBS pass (small layers), not on large ones unless a search is asked for", () => {
    expect(refitAffordable(192, 768, 5, 0)).to.equal(true);
    expect(refitAffordable(768, 192, 5, 0)).to.equal(true);
    expect(refitAffordable(4096, 4096, 5, 0)).to.equal(false);
    expect(refitAffordable(4096, 4096, 5, 1)).to.equal(true);
    // The default search (not forced) only where it stays affordable: every char-LM and ViT layer at
    // M = 5 and 8, and 768 x 768 at M = 8; not the wide layers of larger models (those keep the plain refit, or none).
    for (const [out, K] of [[576, 192], [192, 192], [768, 192], [192, 768], [98, 192], [192, 64], [64, 64], [128, 64], [64, 128]] as const) {
      for (const m of [5, 8]) expect(refitPlan(out, K, m, 32), `${out}x${K} M=${m}`).to.deep.equal({ refit: true, sweeps: 32 });
    }
    expect(refitPlan(768, 768, 5, 32)).to.deep.equal({ refit: false, sweeps: 0 });
    expect(refitPlan(768, 768, 8, 32)).to.deep.equal({ refit: true, sweeps: 32 });
    expect(refitPlan(1024, 2816, 8, 32)).to.deep.equal({ refit: true, sweeps: 0 });
    expect(refitPlan(2816, 1024, 8, 32)).to.deep.equal({ refit: true, sweeps: 0 });
    expect(refitPlan(4096, 4096, 5, 32)).to.deep.equal({ refit: false, sweeps: 0 });
    expect(refitPlan(4096, 4096, 5, 2, true)).to.deep.equal({ refit: true, sweeps: 2 });
    expect(refitPlan(192, 768, 5, 0)).to.deep.equal({ refit: true, sweeps: 0 });
    // The estimate: one inverse per row (n³/2) plus SEARCH_PASS_OPS·n² per row for the passes (n = 2·⌈K/M⌉).
    expect(searchOps(192, 768, 5)).to.equal(192 * (308 ** 3 / 2 + SEARCH_PASS_OPS * 308 ** 2));
    // The absolute cap: a layer whose search is cheap relative to its OBS pass but large in operations.
    expect(searchOps(2048, 2048, 16)).to.be.above(REFIT_SEARCH_MAX_OPS);
    expect(searchOps(2048, 2048, 16)).to.be.below(12 * (2048 ** 3 + 2048 * 2048 ** 2));
    expect(refitPlan(2048, 2048, 16, 32)).to.deep.equal({ refit: true, sweeps: 0 });
    // The result says whether the refit ran, with how many passes allowed and run at most, and its swaps.
    const out = 8, K = 20;
    const W = weights(81, out, K);
    const H = gram(activations(80, 40, K), 40, K);
    const res = sparseGptPrune(W, out, K, H, parseVnm("8:2:5"), { refit: true });
    expect(res.refit).to.deep.equal({ swaps: 0, sweeps: 0, passes: 0 });
    expect(sparseGptPrune(W, out, K, H, parseVnm("8:2:5"), { refit: true, refitSweeps: 1 }).refit).to.include({ sweeps: 1, passes: 1 });
    const conv = sparseGptPrune(W, out, K, H, parseVnm("8:2:5"), { refit: true, refitSweeps: 32, refitForced: true }).refit!;
    expect(conv.passes).to.be.within(2, 31);
    expect(sparseGptPrune(W, out, K, H, parseVnm("8:2:5")).refit).to.equal(undefined);
  });

  it("local search: the screened, incrementally updated search makes exactly the swaps of a plain one that solves every candidate mask anew", () => {
    for (const [vnm, out, K, n, sweeps] of [["8:2:5", 16, 20, 40, 1], ["8:2:6", 8, 24, 30, 2], ["8:2:8", 16, 32, 60, 1], ["8:2:5", 16, 40, 50, 32], ["16:2:8", 32, 64, 80, 32]] as const) {
      const cfg = parseVnm(vnm);
      const H = gram(activations(90, n, K), n, K);
      const W = weights(91, out, K);
      const start = sparseGptPrune(W, out, K, H, cfg, { refit: true });
      const res = sparseGptPrune(W, out, K, H, cfg, { refit: true, refitSweeps: sweeps, refitForced: true });
      const lambda = res.lambda;
      // Reference: per row, group by group, the best improving swap among the row's kept block
      // columns and the block's other ones, each candidate's error from its own least-squares solve.
      const startMask = maskOf(denseFromKept(start.selection, start.kept), K);
      const G = Math.ceil(K / cfg.m);
      let moved = 0;
      for (let r = 0; r < out; r++) {
        const S = new Set(Array.from({ length: K }, (_, k) => k).filter((k) => startMask(r, k)));
        const Wr = W.subarray(r * K, r * K + K);
        const rowErr = (set: Set<number>) => {
          const opt = leastSquares(Wr, 1, K, H, (_rr, k) => set.has(k), lambda);
          const Hd = H.map((h, i) => (i % (K + 1) === 0 ? h + lambda : h));
          return hessianError(Wr, opt, 1, K, Hd);
        };
        const b = Math.floor(r / cfg.v);
        for (let sweep = 0; sweep < sweeps; sweep++) {
          const before = moved;
          for (let g = 0; g < G; g++) {
            const cols = [...new Set(start.selection.columns.subarray((b * G + g) * 4, (b * G + g) * 4 + 4))].filter((c) => Math.floor(c / cfg.m) === g);
            const e0 = rowErr(S);
            let best = 1e-9 * e0, swap: [number, number] | undefined;
            for (const j of cols.filter((c) => !S.has(c))) {
              for (const q of cols.filter((c) => S.has(c))) {
                const T = new Set(S);
                T.delete(q);
                T.add(j);
                const gain = e0 - rowErr(T);
                if (gain > best) (best = gain), (swap = [q, j]);
              }
            }
            if (swap) (S.delete(swap[0]), S.add(swap[1]), moved++);
          }
          if (moved === before) break; // a pass without a swap: every later one would be the same
        }
        const got = maskOf(denseFromKept(res.selection, res.kept), K);
        for (let k = 0; k < K; k++) expect(got(r, k), `${vnm} row ${r} column ${k}`).to.equal(S.has(k));
      }
      expect(moved, `${vnm}: the search moved something`).to.be.above(0);
      expect(res.refit!.swaps).to.equal(moved);
      // Until convergence: the longest row's last pass made no swap, well within the cap.
      if (sweeps === 32) expect(res.refit!.passes, vnm).to.be.within(2, 31);
      else expect(res.refit!.passes, vnm).to.be.at.most(sweeps);
    }
  });

  it("rejects inconsistent sizes, non-finite weights and a bad damping with a clear message", () => {
    const cfg = parseVnm("8:2:4");
    expect(() => sparseGptPrune(new Float32Array(7), 8, 1, new Float64Array(1), cfg)).to.throw(/W has 7 elements/);
    expect(() => sparseGptPrune(new Float32Array(8), 2, 4, new Float64Array(4), cfg)).to.throw(/H has 4 elements/);
    expect(() => sparseGptPrune(Float32Array.from({ length: 16 }, (_, i) => (i === 3 ? NaN : 1)), 4, 4, new Float64Array(16), cfg)).to.throw(/NaN/);
    expect(() => sparseGptPrune(new Float32Array(16), 4, 4, new Float64Array(16), cfg, { damping: 0 })).to.throw(/damping/);
  });
});
