/**
 * Kept-score gain of V:N:M channel permutation (searchPermutation) over the identity, on the seeded
 * weights the model builders use (models/random.ts linearWeight: N(0, 1/fanIn), a log-normal gain
 * per output channel, 2 % outlier input channels at 4-10x). Score = |W|. Not a test.
 *
 * Build and run (bench/ is in tsconfig's include):
 *   npx tsc -p tsconfig.json
 *   node dist/bench/permute-gain.js [OUTxIN,...] [V:N:M,...] [budgets in s, e.g. 0.5,2,10] [search seed] [inputs|outputs|both]
 * A budget written wN (e.g. w2e8) is a work budget (PermuteOptions.maxWork, machine-independent)
 * instead of seconds.
 * Defaults: 768x768,3072x768,768x3072  64:2:8,64:2:5  0,0.5,2,10  1  both. The weights are always
 * those of seed 1 (Rng.forName(1, 'bench.OUTxIN')), whatever the search seed.
 */
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { formatVnm, parseVnm } from '../compiler/vnm/config.js';
import { searchPermutation } from '../compiler/vnm/permute.js';
import { linearWeight, Rng } from '../models/random.js';

function main(): void {
  const shapes = (process.argv[2] ?? '768x768,3072x768,768x3072').split(',').map((s) => s.split('x').map(Number) as [number, number]);
  const settings = (process.argv[3] ?? '64:2:8,64:2:5').split(',').map(parseVnm);
  const budgets = (process.argv[4] ?? '0,0.5,2,10').split(',');
  const seed = Number(process.argv[5] ?? 1);
  const which = process.argv[6] ?? 'both';
  console.log(`cpu: ${cpus()[0]?.model ?? 'unknown'} x ${cpus().length}, node ${process.version}, seed ${seed}, permute ${which}`);
  console.log('| weight [out x in] | V:N:M | budget | kept before | kept after | gain | start | rounds | stopped by | input swaps | rows moved | work | wall |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const [out, inF] of shapes) {
    const w = linearWeight(Rng.forName(1, `bench.${out}x${inF}`), inF, out, { layout: 'out_in' });
    const score = Float32Array.from(w, (x) => Math.abs(x));
    let total = 0;
    for (const x of score) total += x;
    for (const cfg of settings) {
      const { perRowNm, unstructured } = upperBounds(score, out, inF, cfg.m);
      console.log(
        `| ${out} x ${inF} | ${formatVnm(cfg)} | bounds | 2:${cfg.m} per row, identity: ${((100 * perRowNm) / total).toFixed(3)} % | ` +
          `top 2/${cfg.m} of each row, any permutation: ${((100 * unstructured) / total).toFixed(3)} % | | | | | | | | |`,
      );
      for (const budget of budgets) {
        const t0 = performance.now();
        const work = budget.startsWith('w') ? Number(budget.slice(1)) : undefined;
        const r = searchPermutation(score, out, inF, cfg, {
          seed,
          timeBudgetMs: work === undefined ? Number(budget) * 1000 : 1e9,
          maxWork: work,
          permuteInputs: which !== 'outputs',
          permuteOutputs: which !== 'inputs',
        });
        const wall = (performance.now() - t0) / 1000;
        const gain = (r.keptAfter / r.keptBefore - 1) * 100;
        console.log(
          `| ${out} x ${inF} | ${formatVnm(cfg)} | ${work === undefined ? `${budget} s` : `work ${budget.slice(1)}`} | ${((100 * r.keptBefore) / total).toFixed(3)} % | ${((100 * r.keptAfter) / total).toFixed(3)} % | +${gain.toFixed(3)} % | ${r.start} | ${r.rounds} | ${r.stoppedBy} | ${r.inputSwaps} | ${r.rowSwaps} | ${r.work.toExponential(1)} | ${wall.toFixed(2)} s |`,
        );
      }
    }
  }
}

/**
 * Context for the gains: each row keeping its best 2 of every M consecutive columns (2:M without the
 * shared block columns; bounds the identity's V:N:M kept score), and each row keeping its best 2/M of
 * all its scores (bounds the kept score of every permutation).
 */
function upperBounds(score: Float32Array, out: number, inF: number, m: number): { perRowNm: number; unstructured: number } {
  let perRowNm = 0;
  let unstructured = 0;
  const keep = Math.floor((2 * inF) / m);
  for (let o = 0; o < out; o++) {
    const row = Array.from(score.subarray(o * inF, o * inF + inF));
    for (let c0 = 0; c0 < inF; c0 += m) {
      const group = row.slice(c0, c0 + m).sort((a, b) => b - a);
      perRowNm += (group[0] ?? 0) + (group[1] ?? 0);
    }
    row.sort((a, b) => b - a);
    for (let i = 0; i < keep; i++) unstructured += row[i]!;
  }
  return { perRowNm, unstructured };
}

main();
