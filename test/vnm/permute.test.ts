import { expect } from 'chai';
import { performance } from 'node:perf_hooks';
import type { VnmConfig } from '../../compiler/vnm/config.js';
import {
  applyInputPermutation,
  applyOutputPermutation,
  foldInputPermutationIntoProducer,
  gatherPermutedValues,
  identityPermutation,
  invertPermutation,
  permuteSelection,
  searchPermutation,
  zigzagDealing,
  type PermutationResult,
} from '../../compiler/vnm/permute.js';
import { selectVnm } from '../../compiler/vnm/select.js';
import { bruteForcePermutation, groupPartitions, matmulTransposed, permuteMatrix } from '../support/permute-reference.js';
import { bruteForceBest, denseFromPacked, seededRandom } from '../support/vnm-reference.js';

const cfg = (v: number, m: number): VnmConfig => ({ v, n: 2, m });

/** Non-negative scores: 'float' uniform, 'heavy' |gaussian| x lognormal (a few large values). */
function scores(n: number, seed: number, kind: 'float' | 'heavy' = 'float'): Float32Array {
  const random = seededRandom(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    out[i] =
      kind === 'heavy'
        ? Math.abs(Math.sqrt(-2 * Math.log(random() + 1e-12)) * Math.cos(6.283 * random())) * Math.exp(2 * (random() - 0.5))
        : random();
  }
  return out;
}

/** Signed weights in (-2, 2). */
function weights(n: number, seed: number): Float32Array {
  const random = seededRandom(seed);
  return Float32Array.from({ length: n }, () => (random() - 0.5) * 4);
}

function isPermutation(p: Int32Array, n: number): boolean {
  if (p.length !== n) return false;
  const seen = new Set(p);
  return seen.size === n && [...seen].every((x) => x >= 0 && x < n);
}

/** The kept score of a result, recomputed from scratch: selectVnm on the permuted matrix. */
function keptOf(score: Float32Array, out: number, inF: number, c: VnmConfig, r: PermutationResult): number {
  return selectVnm(permuteMatrix(score, out, inF, r.outputPerm, r.inputPerm), out, inF, c, 'exhaustive').keptScore;
}

describe('vnm/permute', () => {
  it('applies and inverts permutations', () => {
    const out = 3;
    const inF = 4;
    const m = Float32Array.from({ length: 12 }, (_, i) => i);
    const pi = Int32Array.from([2, 0, 3, 1]);
    const po = Int32Array.from([1, 2, 0]);
    expect([...applyInputPermutation(m, out, inF, pi)]).to.deep.equal([2, 0, 3, 1, 6, 4, 7, 5, 10, 8, 11, 9]);
    expect([...applyOutputPermutation(m, out, inF, po)]).to.deep.equal([4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2, 3]);
    expect([...invertPermutation(pi)]).to.deep.equal([1, 3, 0, 2]);
    const back = applyInputPermutation(applyInputPermutation(m, out, inF, pi), out, inF, invertPermutation(pi));
    expect([...back]).to.deep.equal([...m]);
    expect(() => invertPermutation(Int32Array.from([0, 0, 1]))).to.throw(RangeError, /not a permutation/);
    expect(() => applyInputPermutation(m, out, inF, Int32Array.from([0, 1, 2]))).to.throw(RangeError);
    expect(() => applyOutputPermutation(m, out, inF, Int32Array.from([0, 1, 3]))).to.throw(RangeError);
  });

  it('deals input channels zig-zag by importance, so heavy channels land in different groups', () => {
    // 4 groups of 4; columns 0..3 are the heaviest (in that order), then the rest by index.
    const out = 2;
    const inF = 16;
    const s = new Float32Array(out * inF);
    for (let o = 0; o < out; o++) for (let c = 0; c < inF; c++) s[o * inF + c] = c < 4 ? 100 - c : 50 - c;
    const deal = zigzagDealing(s, out, inF, 4);
    expect(isPermutation(deal, inF)).to.equal(true);
    // Groups by position: the heaviest channel of each group is 0, 1, 2, 3.
    for (let g = 0; g < 4; g++) expect(deal[g * 4]).to.equal(g);
    // Zig-zag: the second pass runs backwards (group 3 gets the 5th heaviest, channel 4).
    expect(deal[3 * 4 + 1]).to.equal(4);
    expect(deal[0 * 4 + 1]).to.equal(7);
    // A partial last group is respected.
    const partial = zigzagDealing(scores(3 * 11, 5), 3, 11, 4);
    expect(isPermutation(partial, 11)).to.equal(true);
  });

  it('the brute-force reference enumerates each partition once and agrees with bruteForceBest', () => {
    expect(groupPartitions(8, 4).length).to.equal(35);
    expect(groupPartitions(16, 8).length).to.equal(6435);
    expect(groupPartitions(11, 4).length).to.equal(165 * 35);
    expect(groupPartitions(5, 8).length).to.equal(1);
    for (const p of groupPartitions(10, 4)) expect(isPermutation(p, 10)).to.equal(true);
    const s = scores(13 * 10, 77, 'heavy');
    const opt = bruteForcePermutation(s, 13, 10, 8, 5, { inputs: true, outputs: true });
    const permuted = permuteMatrix(s, 13, 10, opt.outputPerm, opt.inputPerm);
    expect(bruteForceBest(permuted, 13, 10, 8, 5)).to.be.closeTo(opt.best, 1e-9 * opt.best);
    const identity = bruteForcePermutation(s, 13, 10, 8, 5, { inputs: false, outputs: false });
    expect(identity.best).to.be.closeTo(bruteForceBest(s, 13, 10, 8, 5), 1e-9 * opt.best);
    expect(opt.best).to.be.at.least(identity.best);
  });

  describe('against the brute-force optimum (every partition of channels into groups and blocks)', () => {
    const cases: Array<[which: 'inputs' | 'outputs' | 'both', out: number, inF: number, v: number, m: number, seeds: number]> = [
      ['inputs', 8, 12, 8, 6, 3],
      ['inputs', 8, 10, 8, 5, 5],
      ['inputs', 8, 11, 8, 4, 2], // a partial last group
      ['outputs', 13, 10, 8, 5, 4], // a partial last block
      ['outputs', 16, 6, 8, 6, 2],
      ['both', 16, 8, 8, 5, 2],
    ];
    const ratios: number[] = [];
    for (const [which, out, inF, v, m, seeds] of cases) {
      it(`${which}: ${out} x ${inF} at ${v}:2:${m}`, () => {
        const inputs = which !== 'outputs';
        const outputs = which !== 'inputs';
        for (let seed = 0; seed < seeds; seed++) {
          const s = scores(out * inF, 1000 + seed, seed % 2 === 0 ? 'float' : 'heavy');
          const opt = bruteForcePermutation(s, out, inF, v, m, { inputs, outputs });
          const r = searchPermutation(s, out, inF, cfg(v, m), { seed, timeBudgetMs: 5000, permuteInputs: inputs, permuteOutputs: outputs });
          const label = `${which} ${out}x${inF} seed ${seed}`;
          expect(r.stoppedBy, label).to.equal('converged');
          expect(r.keptBefore, label).to.be.closeTo(bruteForceBest(s, out, inF, v, m), 1e-9 * opt.best);
          expect(r.keptAfter, label).to.be.at.least(r.keptBefore);
          expect(r.keptAfter, label).to.be.at.most(opt.best * (1 + 1e-9));
          expect(r.keptAfter, label).to.be.closeTo(keptOf(s, out, inF, cfg(v, m), r), 1e-9 * opt.best);
          if (!inputs) expect([...r.inputPerm], label).to.deep.equal([...Array(inF).keys()]);
          if (!outputs) expect([...r.outputPerm], label).to.deep.equal([...Array(out).keys()]);
          // A local search: close to the optimum, not always at it (see the summary test below).
          expect(r.keptAfter / opt.best, label).to.be.at.least(0.96);
          ratios.push(r.keptAfter / opt.best);
        }
      });
    }
    it('reaches the optimum on a good share of them', () => {
      const hits = ratios.filter((x) => x > 1 - 1e-9).length;
      expect(ratios.length).to.equal(18);
      expect(hits).to.be.at.least(6);
    });
  });

  it('recovers planted structure: rows of four kinds interleaved, heavy input channels in one group', () => {
    // Rows of four kinds, kind k preferring columns 2k and 2k+1 (one group of 8), interleaved: every
    // block of the identity holds all four kinds, but its 4 columns serve only two of them. The
    // optimum puts two kinds in each block.
    const out = 16;
    const inF = 8;
    const s = new Float32Array(out * inF);
    const random = seededRandom(9);
    for (let o = 0; o < out; o++) for (let c = 0; c < inF; c++) s[o * inF + c] = (Math.floor(c / 2) === o % 4 ? 10 : 1) + random();
    const opt = bruteForcePermutation(s, out, inF, 8, 8, { inputs: false, outputs: true });
    const r = searchPermutation(s, out, inF, cfg(8, 8), { seed: 1, timeBudgetMs: 5000, permuteInputs: false });
    expect(r.keptAfter).to.be.closeTo(opt.best, 1e-9 * opt.best);
    expect(r.keptAfter).to.be.greaterThan(r.keptBefore * 1.5);
    for (const block of [r.outputPerm.subarray(0, 8), r.outputPerm.subarray(8)]) {
      const kinds = [...block].map((o) => o % 4);
      expect(new Set(kinds).size).to.equal(2);
    }

    // Four heavy input channels in group 0 of two: every row can keep only 2 of them there.
    const s2 = new Float32Array(8 * 16);
    for (let o = 0; o < 8; o++) for (let c = 0; c < 16; c++) s2[o * 16 + c] = (c < 4 ? 10 : 1) + random();
    const opt2 = bruteForcePermutation(s2, 8, 16, 8, 8, { inputs: true, outputs: false });
    const r2 = searchPermutation(s2, 8, 16, cfg(8, 8), { seed: 1, timeBudgetMs: 0 });
    expect(r2.start).to.equal('zigzag');
    expect(r2.keptAfter).to.be.closeTo(opt2.best, 1e-9 * opt2.best);
    expect([...r2.inputPerm.subarray(0, 8)].filter((c) => c < 4).length).to.equal(2);
  });

  it('is never worse than the identity, and its permutations and kept score are exact (random shapes)', () => {
    const random = seededRandom(2024);
    for (let trial = 0; trial < 24; trial++) {
      const v = [8, 16][trial % 2]!;
      const m = 4 + Math.floor(random() * 6);
      const out = 1 + Math.floor(random() * 3 * v);
      const inF = 1 + Math.floor(random() * 5 * m);
      const s = scores(out * inF, 300 + trial, trial % 3 === 0 ? 'heavy' : 'float');
      const r = searchPermutation(s, out, inF, cfg(v, m), { seed: trial, timeBudgetMs: 200 });
      const label = `trial ${trial}: ${out}x${inF} ${v}:2:${m}`;
      expect(isPermutation(r.inputPerm, inF), label).to.equal(true);
      expect(isPermutation(r.outputPerm, out), label).to.equal(true);
      expect(r.keptBefore, label).to.equal(selectVnm(s, out, inF, cfg(v, m), 'exhaustive').keptScore);
      expect(r.keptAfter, label).to.be.at.least(r.keptBefore);
      expect(r.keptAfter, label).to.equal(keptOf(s, out, inF, cfg(v, m), r));
    }
  });

  it('is deterministic for a seed', () => {
    const s = scores(40 * 50, 8, 'heavy');
    const a = searchPermutation(s, 40, 50, cfg(8, 5), { seed: 3, timeBudgetMs: 10000 });
    const b = searchPermutation(s, 40, 50, cfg(8, 5), { seed: 3, timeBudgetMs: 10000 });
    expect(a.stoppedBy).to.equal('converged');
    expect(a.keptAfter).to.be.greaterThan(a.keptBefore);
    expect([...a.inputPerm]).to.deep.equal([...b.inputPerm]);
    expect([...a.outputPerm]).to.deep.equal([...b.outputPerm]);
    expect(a.keptAfter).to.equal(b.keptAfter);
    // Bounded by rounds instead of convergence, on a matrix too large to converge quickly.
    const big = scores(128 * 256, 9, 'heavy');
    const c = searchPermutation(big, 128, 256, cfg(16, 8), { seed: 5, timeBudgetMs: 60000, rounds: 1 });
    const d = searchPermutation(big, 128, 256, cfg(16, 8), { seed: 5, timeBudgetMs: 60000, rounds: 1 });
    expect(c.stoppedBy).to.equal('rounds');
    expect(c.rounds).to.equal(1);
    expect([...c.inputPerm]).to.deep.equal([...d.inputPerm]);
    expect([...c.outputPerm]).to.deep.equal([...d.outputPerm]);
    expect(c.keptAfter).to.equal(d.keptAfter);
    expect(c.keptAfter).to.be.greaterThan(c.keptBefore);
    // Bounded by work (machine-independent).
    const e = searchPermutation(big, 128, 256, cfg(16, 8), { seed: 6, timeBudgetMs: 60000, maxWork: 2e6 });
    const f = searchPermutation(big, 128, 256, cfg(16, 8), { seed: 6, timeBudgetMs: 60000, maxWork: 2e6 });
    expect(e.stoppedBy).to.equal('work');
    expect([...e.inputPerm]).to.deep.equal([...f.inputPerm]);
    expect([...e.outputPerm]).to.deep.equal([...f.outputPerm]);
    expect(e.keptAfter).to.equal(f.keptAfter);
    expect(e.keptAfter).to.be.greaterThan(e.keptBefore);
  });

  it('folds into absolute columns and row_index: the packed form computes the pruned permuted product', () => {
    const shapes: Array<[out: number, inF: number, v: number, m: number]> = [
      [37, 29, 8, 5], // partial last block (padding rows) and partial last group
      [32, 48, 16, 8],
      [9, 7, 8, 4],
      [20, 3, 8, 6], // fewer than 4 input channels
    ];
    let seed = 40;
    for (const [out, inF, v, m] of shapes) {
      const W = weights(out * inF, seed++);
      const score = Float32Array.from(W, (x) => Math.abs(x));
      const r = searchPermutation(score, out, inF, cfg(v, m), { seed, timeBudgetMs: 2000 });
      const label = `${out}x${inF} ${v}:2:${m}`;
      // Prune the permuted weight, then fold the permutations into the packed tensors.
      const Wp = permuteMatrix(W, out, inF, r.outputPerm, r.inputPerm);
      expect([...Wp], label).to.deep.equal([...applyOutputPermutation(applyInputPermutation(W, out, inF, r.inputPerm), out, inF, r.outputPerm)]);
      const sel = selectVnm(Float32Array.from(Wp, (x) => Math.abs(x)), out, inF, cfg(v, m), 'exhaustive');
      expect(sel.keptScore, label).to.equal(r.keptAfter);
      const ps = permuteSelection(sel, r.inputPerm, r.outputPerm);
      expect(ps.rowIndex.length, label).to.equal(sel.rows);
      for (let i = 0; i < sel.rows; i++) expect(ps.rowIndex[i], label).to.equal(i < out ? r.outputPerm[i] : -1);
      const values = new Float32Array(gatherPermutedValues(ps, new Uint8Array(W.buffer), 4).buffer);
      const dense = denseFromPacked({ values, columns: ps.columns, meta: ps.meta, rowIndex: ps.rowIndex, outFeatures: out, inFeatures: inF, v, m });
      // The dense weight the packed form stands for is the pruned permuted weight, un-permuted.
      const prunedP = new Float32Array(out * inF);
      for (let row = 0; row < out; row++) {
        for (let j = 0; j < 2 * sel.groups; j++) {
          const c = sel.src[row * 2 * sel.groups + j]!;
          if (c >= 0) prunedP[row * inF + c] = Wp[row * inF + c]!;
        }
      }
      let keptAbs = 0;
      for (let row = 0; row < out; row++) {
        for (let c = 0; c < inF; c++) {
          expect(dense[r.outputPerm[row]! * inF + r.inputPerm[c]!], label).to.equal(prunedP[row * inF + c]);
          keptAbs += Math.abs(prunedP[row * inF + c]!);
        }
      }
      expect(keptAbs, label).to.be.closeTo(r.keptAfter, 1e-6 * r.keptAfter);
      // Y = X·Wᵀ through the packed form equals (X P_i)·(pruned P_o W P_i)ᵀ with rows put back.
      const T = 3;
      const X = weights(T * inF, seed++);
      const Y = matmulTransposed(X, T, dense, out, inF);
      const Xp = permuteMatrix(X, T, inF, Int32Array.from({ length: T }, (_, t) => t), r.inputPerm);
      const Yp = matmulTransposed(Xp, T, prunedP, out, inF);
      for (let t = 0; t < T; t++) {
        for (let row = 0; row < out; row++) {
          expect(Y[t * out + r.outputPerm[row]!], label).to.be.closeTo(Yp[t * out + row]!, 1e-9);
        }
      }
    }
  });

  it('gathers values from either weight layout and any element size', () => {
    const out = 19;
    const inF = 13;
    const W = weights(out * inF, 5);
    const r = searchPermutation(Float32Array.from(W, (x) => Math.abs(x)), out, inF, cfg(8, 5), { seed: 2, timeBudgetMs: 500 });
    const Wp = permuteMatrix(W, out, inF, r.outputPerm, r.inputPerm);
    const ps = permuteSelection(selectVnm(Float32Array.from(Wp, (x) => Math.abs(x)), out, inF, cfg(8, 5)), r.inputPerm, r.outputPerm);
    const Wt = new Float32Array(inF * out);
    for (let o = 0; o < out; o++) for (let k = 0; k < inF; k++) Wt[k * out + o] = W[o * inF + k]!;
    const a = gatherPermutedValues(ps, new Uint8Array(W.buffer), 4);
    expect([...gatherPermutedValues(ps, new Uint8Array(Wt.buffer), 4, 'in-out')]).to.deep.equal([...a]);
    // As 2-byte elements (the low and high halves of each float32 are gathered independently).
    const halves = new Uint16Array(W.buffer);
    const lo = Uint16Array.from({ length: out * inF }, (_, i) => halves[2 * i]!);
    const fromLo = new Uint16Array(gatherPermutedValues(ps, new Uint8Array(lo.buffer), 2).buffer);
    const aHalves = new Uint16Array(a.buffer);
    for (let i = 0; i < fromLo.length; i++) expect(fromLo[i]).to.equal(aHalves[2 * i]);
    expect(() => gatherPermutedValues(ps, new Uint8Array(10), 4)).to.throw(RangeError);
  });

  it('folds an input permutation into the producer instead (fc1 -> relu -> fc2): same outputs, windowed columns', () => {
    const d = 16;
    const h = 24;
    const o = 16;
    const T = 4;
    const W1 = weights(h * d, 81);
    const W2 = weights(o * h, 82);
    const X = weights(T * d, 83);
    const c1 = cfg(8, 4);
    const c2 = cfg(8, 6);
    // Producer: pruned without permutation.
    const sel1 = selectVnm(Float32Array.from(W1, (x) => Math.abs(x)), h, d, c1);
    const ps1 = permuteSelection(sel1, identityPermutation(d), identityPermutation(h));
    const values1 = new Float32Array(gatherPermutedValues(ps1, new Uint8Array(W1.buffer), 4).buffer);
    // Consumer: permuted.
    const r = searchPermutation(Float32Array.from(W2, (x) => Math.abs(x)), o, h, c2, { seed: 4, timeBudgetMs: 1000 });
    expect(r.keptAfter).to.be.greaterThan(r.keptBefore);
    const W2in = applyInputPermutation(W2, o, h, r.inputPerm); // rows still original
    const sel2 = selectVnm(Float32Array.from(applyOutputPermutation(W2in, o, h, r.outputPerm), (x) => Math.abs(x)), o, h, c2);
    // (a) folded into the consumer's columns.
    const psA = permuteSelection(sel2, r.inputPerm, r.outputPerm);
    const valuesA = new Float32Array(gatherPermutedValues(psA, new Uint8Array(W2.buffer), 4).buffer);
    // (b) folded into the producer's rows; the consumer keeps windowed columns.
    const psB = permuteSelection(sel2, identityPermutation(h), r.outputPerm);
    const valuesB = new Float32Array(gatherPermutedValues(psB, new Uint8Array(W2in.buffer), 4).buffer);
    expect([...valuesB]).to.deep.equal([...valuesA]);
    for (let i = 0; i < psB.columns.length; i++) {
      const g = Math.floor(i / 4) % psB.groups;
      expect(psB.columns[i]).to.be.within(g * 6, g * 6 + 5);
    }
    const rowIndex1 = foldInputPermutationIntoProducer(ps1.rowIndex, r.inputPerm);
    const dense = (ps: { columns: Int32Array; meta: Uint8Array }, values: Float32Array, rowIndex: Int32Array, out: number, inF: number, c: VnmConfig) =>
      denseFromPacked({ values, columns: ps.columns, meta: ps.meta, rowIndex, outFeatures: out, inFeatures: inF, v: c.v, m: c.m });
    const relu = (y: Float64Array): Float32Array => Float32Array.from(y, (x) => Math.max(0, x));
    const yA = matmulTransposed(relu(matmulTransposed(X, T, dense(ps1, values1, ps1.rowIndex, h, d, c1), h, d)), T, dense(psA, valuesA, psA.rowIndex, o, h, c2), o, h);
    const yB = matmulTransposed(relu(matmulTransposed(X, T, dense(ps1, values1, rowIndex1, h, d, c1), h, d)), T, dense(psB, valuesB, psB.rowIndex, o, h, c2), o, h);
    for (let i = 0; i < yA.length; i++) expect(yB[i]).to.be.closeTo(yA[i]!, 1e-9);
    expect(() => foldInputPermutationIntoProducer(Int32Array.from([0, 5]), Int32Array.from([1, 0]))).to.throw(RangeError);
  });

  it('folding a permutation leaves the dense product unchanged (before pruning)', () => {
    const out = 24;
    const inF = 40;
    const T = 5;
    const W = weights(out * inF, 71);
    const X = weights(T * inF, 72);
    const r = searchPermutation(Float32Array.from(W, (x) => Math.abs(x)), out, inF, cfg(8, 8), { seed: 1, timeBudgetMs: 1000 });
    expect(r.keptAfter).to.be.greaterThan(r.keptBefore);
    const Wp = applyOutputPermutation(applyInputPermutation(W, out, inF, r.inputPerm), out, inF, r.outputPerm);
    const Xp = applyInputPermutation(X, T, inF, r.inputPerm);
    const Yp = matmulTransposed(Xp, T, Wp, out, inF);
    const Y = matmulTransposed(X, T, W, out, inF);
    const inverse = invertPermutation(r.outputPerm);
    for (let t = 0; t < T; t++) {
      for (let o = 0; o < out; o++) expect(Yp[t * out + inverse[o]!]).to.be.closeTo(Y[t * out + o]!, 1e-12);
    }
  });

  it('honours the time budget on a large matrix', () => {
    const out = 512;
    const inF = 768;
    const s = scores(out * inF, 11, 'heavy');
    selectVnm(s, out, inF, cfg(64, 8), 'exhaustive'); // warm up
    const t0 = performance.now();
    selectVnm(s, out, inF, cfg(64, 8), 'exhaustive');
    const selectionMs = performance.now() - t0;
    const t1 = performance.now();
    const r = searchPermutation(s, out, inF, cfg(64, 8), { seed: 1, timeBudgetMs: 50 });
    const elapsed = performance.now() - t1;
    expect(r.stoppedBy).to.equal('time');
    expect(r.keptAfter).to.be.at.least(r.keptBefore);
    // The identity's and the dealing's full selections always run; the budget bounds the search,
    // including the final selection. Allow for a loaded machine.
    expect(elapsed, `selection alone took ${selectionMs.toFixed(1)} ms`).to.be.below(200 + 2 * selectionMs);
    // Budget 0: only the identity and the zig-zag dealing are evaluated.
    const zero = searchPermutation(s, out, inF, cfg(64, 8), { seed: 1, timeBudgetMs: 0 });
    expect(zero.rounds).to.equal(0);
    expect(zero.inputSwaps + zero.rowSwaps).to.equal(0);
    expect(zero.keptAfter).to.be.at.least(zero.keptBefore);
  });

  it('leaves the identity when nothing may move, and rejects bad input', () => {
    const s = scores(16 * 16, 3);
    const none = searchPermutation(s, 16, 16, cfg(8, 8), { seed: 1, timeBudgetMs: 100, permuteInputs: false, permuteOutputs: false });
    expect(none.keptAfter).to.equal(none.keptBefore);
    expect([...none.inputPerm]).to.deep.equal([...Array(16).keys()]);
    // One block and one group: no move exists.
    const single = searchPermutation(scores(8 * 8, 4), 8, 8, cfg(8, 8), { seed: 1, timeBudgetMs: 100 });
    expect(single.stoppedBy).to.equal('converged');
    expect(single.keptAfter).to.equal(single.keptBefore);
    expect(() => searchPermutation(s, 16, 15, cfg(8, 8), { seed: 1, timeBudgetMs: 0 })).to.throw(RangeError);
    expect(() => searchPermutation(s, 16, 16, cfg(8, 8), { seed: 1, timeBudgetMs: -1 })).to.throw(RangeError);
    expect(() => searchPermutation(s, 16, 16, cfg(12, 8), { seed: 1, timeBudgetMs: 0 })).to.throw(/V must be/);
    const bad = Float32Array.from(s);
    bad[5] = -1;
    expect(() => searchPermutation(bad, 16, 16, cfg(8, 8), { seed: 1, timeBudgetMs: 0 })).to.throw(RangeError, /non-negative/);
  });
});
