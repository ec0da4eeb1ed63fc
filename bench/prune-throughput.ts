/**
 * Throughput of V:N:M selection (+ gather of fp16 values) on one core. Not a test.
 *
 * Build and run (tsconfig.json includes bench/, so the project build compiles it):
 *   npx tsc -p tsconfig.json
 *   node dist/bench/prune-throughput.js [rows] [cols] [only this V:N:M, or 'all'] [js: force the JS kernels]
 * Without rows and cols it measures 4096 x 4096 and 11008 x 4096 (the shapes of a 7B model's
 * attention and MLP weights). Environment: REPEATS (default 5) timed runs per measurement.
 */
import { cpus, loadavg } from 'node:os';
import { decodeF16, encodeF16 } from '../compiler/numeric/half.js';
import { parseVnm } from '../compiler/vnm/config.js';
import { gatherValues } from '../compiler/vnm/pack.js';
import { selectionSizes, selectVnm, type SelectionRule, type SelectOptions } from '../compiler/vnm/select.js';

/** Deterministic Gaussian weights rounded to fp16, as a trained fp16 weight would be. */
function fp16Weights(n: number, seed: number): Uint16Array {
  let state = seed >>> 0;
  const uniform = (): number => {
    state = (state + 0x6d2b79f5) >>> 0; // mulberry32
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  const f = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform())) * 0.02;
    const a = 2 * Math.PI * uniform();
    f[i] = r * Math.cos(a);
    if (i + 1 < n) f[i + 1] = r * Math.sin(a);
  }
  return encodeF16(f);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

function measureShape(rows: number, cols: number, only: string | undefined, kernels: 'auto' | 'js', repeats: number): void {
  const bits = fp16Weights(rows * cols, 1234);
  const raw = new Uint8Array(bits.buffer);
  const weights = decodeF16(bits);
  const score = new Float32Array(weights.length);
  for (let i = 0; i < score.length; i++) score[i] = Math.abs(weights[i]!);
  const n = rows * cols;
  console.log(`\nweight ${rows} x ${cols} fp16 (${((n * 2) / 1e6).toFixed(1)} MB), |W| as score, one core, kernels: ${kernels}`);

  const settings: Array<[string, SelectionRule]> = [
    ['64:2:8', 'exhaustive'],
    ['64:2:8', 'colsum'],
    ['64:2:5', 'exhaustive'],
    ['16:2:16', 'exhaustive'],
  ];
  const rate = (seconds: number): string => (n / seconds / 1e6).toFixed(1).padStart(6);
  const mbps = (seconds: number): string => ((2 * n) / seconds / 1e6).toFixed(0).padStart(4);
  for (const [text, rule] of settings) {
    if (only !== undefined && only !== text) continue;
    const cfg = parseVnm(text);
    const options: SelectOptions = { kernels };
    selectVnm(score.subarray(0, 256 * cols), 256, cols, cfg, rule, options); // warm up the JIT
    // Fresh outputs every run (as a caller that keeps no buffers), then gather.
    const fresh: Array<{ select: number; total: number }> = [];
    let kept = 0;
    for (let r = 0; r < repeats; r++) {
      const t0 = performance.now();
      const sel = selectVnm(score, rows, cols, cfg, rule, options);
      const t1 = performance.now();
      gatherValues(sel, raw, 2);
      const t2 = performance.now();
      fresh.push({ select: (t1 - t0) / 1000, total: (t2 - t0) / 1000 });
      kept = sel.keptScore / sel.totalScore;
    }
    // Outputs written into buffers reused from run to run (SelectOptions.buffers).
    const sizes = selectionSizes(rows, cols, cfg);
    const buffers = { src: new Int32Array(sizes.src), columns: new Int32Array(sizes.columns), meta: new Uint8Array(sizes.meta) };
    const reused: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const t0 = performance.now();
      selectVnm(score, rows, cols, cfg, rule, { ...options, buffers });
      reused.push((performance.now() - t0) / 1000);
    }
    const selects = fresh.map((x) => x.select);
    const totals = fresh.map((x) => x.total);
    console.log(
      `${text.padEnd(8)} ${rule.padEnd(10)} M elem/s, best / median of ${repeats}:` +
        ` select ${rate(Math.min(...selects))} / ${rate(median(selects))},` +
        ` select (reused buffers) ${rate(Math.min(...reused))} / ${rate(median(reused))},` +
        ` select+gather ${rate(Math.min(...totals))} / ${rate(median(totals))} = ${mbps(Math.min(...totals))} / ${mbps(median(totals))} MB/s fp16` +
        ` | first run: select ${rate(selects[0]!)}, select+gather ${rate(totals[0]!)} | kept score ${(100 * kept).toFixed(2)} %`,
    );
  }
}

function main(): void {
  const shapes: Array<[number, number]> =
    process.argv[2] !== undefined ? [[Number(process.argv[2]), Number(process.argv[3] ?? process.argv[2])]] : [[4096, 4096], [11008, 4096]];
  const only = process.argv[4] === undefined || process.argv[4] === 'all' ? undefined : process.argv[4];
  const kernels = process.argv[5] === 'js' ? 'js' : 'auto';
  const repeats = Number(process.env['REPEATS'] ?? 5);
  console.log(`cpu: ${cpus()[0]?.model ?? 'unknown'} x ${cpus().length}, node ${process.version}, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  for (const [rows, cols] of shapes) measureShape(rows, cols, only, kernels, repeats);
  // Fresh memory is expensive in some VMs and every run without buffers allocates its outputs.
  const pages = 4096;
  const fresh = new Uint8Array(pages * 4096);
  const t0 = performance.now();
  for (let i = 0; i < fresh.length; i += 4096) fresh[i] = 1;
  const pageUs = ((performance.now() - t0) * 1000) / pages;
  console.log(`\nfirst touch of fresh memory: ${pageUs.toFixed(2)} us per 4 KiB page (${((pageUs * 1000) / 4096).toFixed(2)} ns/byte)`);
  console.log(`load average at the end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
}

main();
