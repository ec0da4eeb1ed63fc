/**
 * Generates compiler/vnm/speedup-table.ts from bench/gpu/results.json (kernel_bench.py output): the
 * measured speedups by shape, and the speedup model's constants fitted to the same measurements
 * (docs/choosing-vnm.md). Not a test.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/speedup-table.js [results.json] [out.ts]
 *
 * The fit minimises the squared log error of predicted times (cuBLAS times for the dense path, vnmc's
 * times for the two sparse paths), each path's three constants by Nelder-Mead over their logarithms,
 * from fixed starting points: the output is deterministic.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseVnm } from '../compiler/vnm/config.js';
import {
  denseTimeUs, type KernelPath, modelSpeedup, sparseTimeUs, type SpeedupMeasurement, type SpeedupModelParams, type SpeedupTable,
} from '../compiler/vnm/speedup-model.js';

interface Record {
  card: string; N_out: number; K: number; T: number; config: string; indices: string;
  ours_ms: number; cublas_ms: number; speedup_vs_cublas: number; tag?: string;
}

const [inPath = 'bench/gpu/results.json', outPath = 'compiler/vnm/speedup-table.ts'] = process.argv.slice(2);
const records = JSON.parse(readFileSync(inPath, 'utf8')) as Record[];
const cards = [...new Set(records.map((r) => r.card))];
const tags = [...new Set(records.map((r) => r.tag ?? '?'))];

/** Nelder-Mead minimisation of f over x (fixed iteration count: deterministic). */
function nelderMead(f: (x: number[]) => number, x0: number[], iterations = 4000): number[] {
  const n = x0.length;
  let simplex = [x0, ...x0.map((_, i) => x0.map((v, j) => (i === j ? v + 0.5 : v)))].map((x) => ({ x, y: f(x) }));
  for (let it = 0; it < iterations; it++) {
    simplex.sort((a, b) => a.y - b.y);
    const best = simplex[0]!, worst = simplex[n]!, second = simplex[n - 1]!;
    const centroid = x0.map((_, j) => simplex.slice(0, n).reduce((s, p) => s + p.x[j]!, 0) / n);
    const at = (t: number) => centroid.map((c, j) => c + t * (worst.x[j]! - c));
    const r = at(-1), fr = f(r);
    if (fr < best.y) {
      const e = at(-2), fe = f(e);
      simplex[n] = fe < fr ? { x: e, y: fe } : { x: r, y: fr };
    } else if (fr < second.y) {
      simplex[n] = { x: r, y: fr };
    } else {
      const c = at(0.5), fc = f(c);
      if (fc < worst.y) simplex[n] = { x: c, y: fc };
      else simplex = simplex.map((p, i) => (i === 0 ? p : { x: p.x.map((v, j) => best.x[j]! + 0.5 * (v - best.x[j]!)), y: 0 })).map((p, i) => (i === 0 ? p : { x: p.x, y: f(p.x) }));
    }
  }
  simplex.sort((a, b) => a.y - b.y);
  return simplex[0]!.x;
}

const path = (x: number[]): KernelPath => ({ fixedUs: Math.exp(x[0]!), bandwidthTBps: Math.exp(x[1]!), tflops: Math.exp(x[2]!) });
const sig = (v: number, digits = 4) => Number(v.toPrecision(digits));
const round = (p: KernelPath): KernelPath => ({ fixedUs: sig(p.fixedUs), bandwidthTBps: sig(p.bandwidthTBps), tflops: sig(p.tflops) });

const start: SpeedupModelParams = {
  elementBytes: 2, decodeMaxTokens: 16,
  dense: { fixedUs: 5, bandwidthTBps: 3, tflops: 600 },
  decode: { fixedUs: 5, bandwidthTBps: 3, tflops: 100 },
  prefill: { fixedUs: 5, bandwidthTBps: 3, tflops: 900 },
};
const logs = (p: KernelPath) => [Math.log(p.fixedUs), Math.log(p.bandwidthTBps), Math.log(p.tflops)];
const shapeOf = (r: Record) => ({ outFeatures: r.N_out, inFeatures: r.K });
const sq = (x: number) => x * x;

// Dense: one point per (shape, T); cuBLAS times repeat across configs.
const denseRows = [...new Map(records.map((r) => [`${r.N_out}x${r.K}@${r.T}`, r])).values()];
const dense = round(path(nelderMead((x) => denseRows.reduce((s, r) => s + sq(Math.log(denseTimeUs(shapeOf(r), r.T, { ...start, dense: path(x) }) / (r.cublas_ms * 1e3))), 0), logs(start.dense))));
const fitSparse = (which: 'decode' | 'prefill', rows: Record[]) =>
  round(path(nelderMead((x) => rows.reduce((s, r) => s + sq(Math.log(sparseTimeUs(shapeOf(r), r.T, parseVnm(r.config), { ...start, [which]: path(x) }) / (r.ours_ms * 1e3))), 0), logs(start[which]))));
// The table: per (shape, T, config) the smaller ratio of the two index layouts `vnmc compile` writes:
// windowed, and one input permutation for all blocks (--permute where the permutation cannot be folded
// into the producer), so a target the table says is met holds with or without --permute. Records of
// per-block permutations (kernel_bench.py's "permuted": arbitrary valid indices, which the compiler never
// writes) measure the kernels' general path and stay out. The model is fitted to the kept records.
const COMPILED_LAYOUTS = new Set(['windowed', 'globalperm']);
const byCase = new Map<string, SpeedupMeasurement>();
const keptRecord = new Map<string, Record>();
for (const r of records) {
  if (!COMPILED_LAYOUTS.has(r.indices)) continue;
  const cfg = parseVnm(r.config);
  const key = `${r.N_out}x${r.K}@${r.T}/${r.config}`;
  const m: SpeedupMeasurement = { outFeatures: r.N_out, inFeatures: r.K, tokens: r.T, v: cfg.v, m: cfg.m, speedup: sig(r.speedup_vs_cublas, 3) };
  const prev = byCase.get(key);
  if (!prev || m.speedup < prev.speedup) {
    byCase.set(key, m);
    keptRecord.set(key, r);
  }
}
const kept = [...keptRecord.values()];
const decode = fitSparse('decode', kept.filter((r) => r.T <= start.decodeMaxTokens));
const prefill = fitSparse('prefill', kept.filter((r) => r.T > start.decodeMaxTokens));
const params: SpeedupModelParams = { ...start, dense, decode, prefill };

const measured = [...byCase.values()].sort((a, b) => a.outFeatures - b.outFeatures || a.inFeatures - b.inFeatures || a.tokens - b.tokens || a.v - b.v || a.m - b.m);

const timeErrors = [
  ...denseRows.map((r) => Math.log(denseTimeUs(shapeOf(r), r.T, params) / (r.cublas_ms * 1e3))),
  ...kept.map((r) => Math.log(sparseTimeUs(shapeOf(r), r.T, parseVnm(r.config), params) / (r.ours_ms * 1e3))),
];
const speedupErrors = measured.map((x) => Math.log(modelSpeedup(x, x.tokens, { v: x.v, n: 2, m: x.m }, params) / x.speedup));
const rms = (a: number[]) => Math.sqrt(a.reduce((s, x) => s + x * x, 0) / a.length);
const table: SpeedupTable = {
  source: `${inPath}: ${cards.join(', ')}, vnmc CUDA kernel ${tags.join(', ')} vs cuBLAS fp16`,
  params,
  fit: { timeRmsLog: sig(rms(timeErrors), 3), speedupRmsLog: sig(rms(speedupErrors), 3), speedupMaxLog: sig(Math.max(...speedupErrors.map(Math.abs)), 3), points: measured.length },
  measured,
};
const text = `// Generated by bench/speedup-table.ts from ${inPath}; do not edit by hand (docs/choosing-vnm.md).
import type { SpeedupTable } from './speedup-model.js';

export const SPEEDUP_TABLE: SpeedupTable = ${JSON.stringify(table, null, 2).replace(/\n {6,}/g, ' ').replace(/\n {4}\}/g, ' }')};
`;
writeFileSync(outPath, text);
process.stdout.write(`wrote ${outPath}: ${measured.length} measured ratios; fit ln-error rms time ${table.fit.timeRmsLog}, speedup ${table.fit.speedupRmsLog} (max ${table.fit.speedupMaxLog})\n`);
for (const x of measured) {
  process.stdout.write(`  ${x.outFeatures}x${x.inFeatures} T=${x.tokens} ${x.v}:2:${x.m}: measured ${x.speedup}, model ${modelSpeedup(x, x.tokens, { v: x.v, n: 2, m: x.m }, params).toFixed(2)}\n`);
}
