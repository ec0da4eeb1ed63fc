import { expect } from 'chai';
import { mulberry32 } from '../../compiler/seeded.js';
import {
  budgetOf, candidateConfigs, explainLayer, type LayerInput, type LayerOption, layerOptions, maskDiversity, rankUniform, roundedError,
  solvePerLayer, uniformShortlist, unreachable, type VnmTarget, withinBudget,
} from '../../compiler/vnm/choose-vnm.js';
import { sampleRows } from '../../compiler/vnm/choose-step.js';
import type { VnmConfig } from '../../compiler/vnm/config.js';

/** Seeded uniform [0, 1). */
const rng = mulberry32;

/** A synthetic option: cost as sparse time (and kept weights), any error. */
function opt(config: VnmConfig, sparseUs: number, denseUs: number, error: number, kept = 0): LayerOption {
  return { config, speedup: denseUs / sparseUs, speedupSource: 'model', denseUs, sparseUs, kept, diversity: maskDiversity(config.v, config.m), error };
}

const q = (e: number) => roundedError(e) ** 2;

/** Every combination: the smallest Σ error² within the budget. */
function bruteForce(options: LayerOption[][], target: VnmTarget, budget: number): number | undefined {
  let best: number | undefined;
  const walk = (l: number, cost: number, obj: number) => {
    if (l === options.length) {
      if (withinBudget(cost, budget) && (best === undefined || obj < best - 1e-15)) best = obj;
      return;
    }
    for (const o of options[l]!) walk(l + 1, cost + (target.kind === 'speedup' ? o.sparseUs : o.kept), obj + q(o.error!));
  };
  walk(0, 0, 0);
  return best;
}

describe('vnm/choose-vnm', () => {
  it("computes the paper's mask diversity (background.md examples)", () => {
    const cases: Array<[number, number, number]> = [[32, 5, 0.368], [64, 5, 0.363], [128, 5, 0.361], [64, 6, 0.306], [64, 8, 0.232]];
    for (const [v, m, d] of cases) expect(maskDiversity(v, m), `${v}:2:${m}`).to.be.closeTo(d, 0.0005);
    // Larger M costs much more diversity than larger V.
    expect(maskDiversity(128, 5)).to.be.greaterThan(maskDiversity(16, 6));
  });

  it('offers V in {16, 32, 64, 128} and M in 4..16', () => {
    const all = candidateConfigs();
    expect(all).to.have.length(52);
    expect(new Set(all.map((c) => c.v))).to.deep.equal(new Set([16, 32, 64, 128]));
    expect(Math.min(...all.map((c) => c.m))).to.equal(4);
    expect(Math.max(...all.map((c) => c.m))).to.equal(16);
  });

  it('shortlists, per V, the smallest M that meets a sparsity target (0.75 → M = 8)', () => {
    const layers: LayerInput[] = [{ key: 'a', label: 'a', outFeatures: 256, inFeatures: 512, uses: 1 }, { key: 'b', label: 'b', outFeatures: 512, inFeatures: 256, uses: 1 }];
    const options = layers.map((l) => layerOptions(l, 1));
    expect(uniformShortlist(layers, options, { kind: 'sparsity', value: 0.75 })).to.deep.equal([16, 32, 64, 128].map((v) => ({ v, n: 2, m: 8 })));
    expect(uniformShortlist(layers, options, { kind: 'sparsity', value: 0.6 }).map((c) => c.m)).to.deep.equal([5, 5, 5, 5]);
    expect(uniformShortlist(layers, options, { kind: 'sparsity', value: 0.3 }).map((c) => c.m)).to.deep.equal([4, 4, 4, 4]);
    expect(unreachable(layers, options, { kind: 'sparsity', value: 0.875 })).to.equal(undefined);
    expect(unreachable(layers, options, { kind: 'sparsity', value: 0.9 })!.best).to.equal(0.875);
  });

  it('shortlists by predicted model speedup, and reports the best reachable one', () => {
    const layers: LayerInput[] = [{ key: 'a', label: 'a', outFeatures: 11008, inFeatures: 4096, uses: 1 }, { key: 'b', label: 'b', outFeatures: 4096, inFeatures: 11008, uses: 1 }];
    const options = layers.map((l) => layerOptions(l, 1));
    const target: VnmTarget = { kind: 'speedup', value: 1.6 };
    const short = uniformShortlist(layers, options, target);
    expect(short.length).to.be.greaterThan(0);
    const budget = budgetOf(layers, options, target);
    for (const c of short) {
      const cost = (m: number) => options.reduce((s, o) => s + o.find((x) => x.config.v === c.v && x.config.m === m)!.sparseUs, 0);
      expect(withinBudget(cost(c.m), budget), `${c.v}:2:${c.m}`).to.equal(true);
      if (c.m > 4) expect(withinBudget(cost(c.m - 1), budget), `${c.v}:2:${c.m - 1}`).to.equal(false);
    }
    const miss = unreachable(layers, options, { kind: 'speedup', value: 10 });
    expect(miss!.best).to.be.within(1.6, 10);
  });

  it('ranks uniform configs by error, then by mask diversity for equal errors (3 digits)', () => {
    const cfgs = [{ v: 64, n: 2, m: 8 }, { v: 32, n: 2, m: 8 }, { v: 128, n: 2, m: 8 }];
    const errs = [[0.1001, 0.2], [0.10011, 0.2], [0.09, 0.2]];
    const options = [0, 1].map((l) => cfgs.map((c, i) => opt(c, 1, 1, errs[i]![l]!)));
    const ranked = rankUniform(options, cfgs);
    expect(ranked.map((r) => r.config.v)).to.deep.equal([128, 32, 64]); // 64 and 32 tie at 0.100: 32 has more masks
  });

  for (const kind of ['speedup', 'sparsity'] as const) {
    it(`per layer (${kind}): the Pareto search finds the brute-force optimum on random small cases`, () => {
      const cfgs = candidateConfigs();
      let solved = 0;
      for (let seed = 1; seed <= 60; seed++) {
        const r = rng(seed);
        const L = 1 + Math.floor(r() * 4);
        const K = 2 + Math.floor(r() * 5);
        const options = Array.from({ length: L }, () =>
          Array.from({ length: K }, (_, i) => opt(cfgs[(i * 7 + Math.floor(r() * 7)) % cfgs.length]!, 1 + r() * 9, 10, r() * 0.5, Math.floor(r() * 100))),
        );
        const total = options.reduce((s, opts) => s + Math.max(...opts.map((o) => (kind === 'speedup' ? o.sparseUs : o.kept))), 0);
        const budget = total * (0.4 + r() * 0.7);
        const target: VnmTarget = kind === 'speedup' ? { kind, value: 1.5 } : { kind, value: 0.5 };
        const expected = bruteForce(options, target, budget);
        const sol = solvePerLayer(options, target, budget);
        if (expected === undefined) {
          expect(sol, `seed ${seed}`).to.equal(undefined);
          continue;
        }
        solved++;
        expect(sol, `seed ${seed}`).to.not.equal(undefined);
        expect(sol!.exact).to.equal(true);
        expect(sol!.objective, `seed ${seed}`).to.be.closeTo(expected, 1e-12);
        const cost = sol!.choice.reduce((s, i, l) => s + (kind === 'speedup' ? options[l]![i]!.sparseUs : options[l]![i]!.kept), 0);
        expect(withinBudget(cost, budget), `seed ${seed}`).to.equal(true);
        expect(cost).to.be.closeTo(sol!.cost, 1e-9);
      }
      expect(solved).to.be.greaterThan(30);
    });
  }

  it('per layer: spends the budget where it costs least error (a sensitive layer keeps its low-M option)', () => {
    const [a, b] = [{ v: 64, n: 2, m: 5 }, { v: 64, n: 2, m: 8 }];
    // Layer 0 is sensitive (error 0.1 → 0.5 at M = 8); layer 1 barely (0.1 → 0.12). Both save the same time.
    const options = [[opt(a, 8, 10, 0.1), opt(b, 5, 10, 0.5)], [opt(a, 8, 10, 0.1), opt(b, 5, 10, 0.12)]];
    const target: VnmTarget = { kind: 'speedup', value: 1.5 };
    const budget = budgetOf([], options, target); // 20 / 1.5: one layer must go to M = 8
    const sol = solvePerLayer(options, target, budget)!;
    expect(sol.choice).to.deep.equal([0, 1]);
    const why0 = explainLayer(0, options, sol.choice, target, budget, true);
    expect(why0.reason).to.equal('lowest error of all options');
    expect(why0.runnerUp).to.deep.equal({ vnm: '64:2:8', predictedSpeedup: 2, error: 0.5 }); // cheaper, within budget, worse
    const why1 = explainLayer(1, options, sol.choice, target, budget, true);
    expect(why1.vnm).to.equal('64:2:8');
    expect(why1.reason).to.match(/^64:2:5 \(error 10\.0%\) would miss speedup >= 1\.5/);
  });

  it('per layer: equal errors go to the option with more mask diversity when the budget allows', () => {
    const options = [[opt({ v: 128, n: 2, m: 8 }, 5, 10, 0.2), opt({ v: 32, n: 2, m: 8 }, 6, 10, 0.2), opt({ v: 16, n: 2, m: 8 }, 9, 10, 0.2)]];
    const target: VnmTarget = { kind: 'speedup', value: 1.5 };
    expect(solvePerLayer(options, target, 10 / 1.5)!.choice).to.deep.equal([1]); // 16:2:8 would break the budget
    expect(solvePerLayer(options, target, 10)!.choice).to.deep.equal([2]);
  });

  it('per layer: a thinned front still meets the budget and says it is approximate', () => {
    const r = rng(7);
    const cfgs = candidateConfigs();
    const options = Array.from({ length: 12 }, () => cfgs.slice(0, 8).map((c) => opt(c, 1 + r() * 9, 10, r() * 0.5)));
    const target: VnmTarget = { kind: 'speedup', value: 1.6 };
    const budget = budgetOf([], options, target);
    const exact = solvePerLayer(options, target, budget)!;
    const thin = solvePerLayer(options, target, budget, 16)!;
    expect(exact.exact).to.equal(true);
    expect(thin.exact).to.equal(false);
    expect(withinBudget(thin.cost, budget)).to.equal(true);
    expect(thin.objective).to.be.at.least(exact.objective - 1e-12);
    expect(thin.objective).to.be.below(exact.objective * 1.5);
  });

  it('samples whole 128-row chunks, spread over the weight, when it has more than 512 rows', () => {
    expect(sampleRows(300)).to.have.length(300);
    const rows = sampleRows(4096);
    expect(rows).to.have.length(512);
    expect(rows[0]).to.equal(0);
    expect(rows[128]).to.equal(1024);
    expect(rows[511]).to.equal(3199);
    expect(sampleRows(1000).every((x) => x < 1000)).to.equal(true);
  });
});
