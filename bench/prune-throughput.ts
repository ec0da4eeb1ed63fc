/**
 * Throughput of V:N:M selection (+ gather of fp16 values) on one core. Not a test.
 *
 * Build and run (bench/ is outside tsconfig's include, so it is compiled on its own):
 *   npx tsc -p tsconfig.json && npx tsc bench/prune-throughput.ts --outDir dist --rootDir . \
 *     --module nodenext --moduleResolution nodenext --target es2022 --strict --skipLibCheck --types node
 *   node dist/bench/prune-throughput.js [rows] [cols] [only this V:N:M, or 'all'] [js: force the JS kernels]
 */
import { cpus } from 'node:os';
import { decodeF16, encodeF16 } from '../compiler/numeric/half.js';
import { parseVnm } from '../compiler/vnm/config.js';
import { gatherValues } from '../compiler/vnm/pack.js';
import { selectVnm, type SelectionRule } from '../compiler/vnm/select.js';

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

function main(): void {
  const rows = Number(process.argv[2] ?? 4096);
  const cols = Number(process.argv[3] ?? 4096);
  const only = process.argv[4] === 'all' ? undefined : process.argv[4];
  const options = { kernels: process.argv[5] === 'js' ? ('js' as const) : ('auto' as const) };
  const bits = fp16Weights(rows * cols, 1234);
  const raw = new Uint8Array(bits.buffer);
  const weights = decodeF16(bits);
  const score = new Float32Array(weights.length);
  for (let i = 0; i < score.length; i++) score[i] = Math.abs(weights[i]!);

  console.log(`cpu: ${cpus()[0]?.model ?? 'unknown'} x ${cpus().length}, node ${process.version}`);
  console.log(`kernels: ${options.kernels}`);
  console.log(`weight ${rows} x ${cols} fp16 (${((rows * cols * 2) / 1e6).toFixed(1)} MB), |W| as score, one core`);
  const settings: Array<[string, SelectionRule]> = [
    ['64:2:8', 'exhaustive'],
    ['64:2:8', 'colsum'],
    ['64:2:5', 'exhaustive'],
    ['16:2:16', 'exhaustive'],
  ];
  const repeats = 5;
  for (const [text, rule] of settings) {
    if (only !== undefined && only !== text) continue;
    const cfg = parseVnm(text);
    selectVnm(score.subarray(0, 256 * cols), 256, cols, cfg, rule, options); // warm up the JIT
    const n = rows * cols;
    const runs: Array<{ select: number; total: number }> = [];
    let kept = 0;
    for (let r = 0; r < repeats; r++) {
      const t0 = performance.now();
      const sel = selectVnm(score, rows, cols, cfg, rule, options);
      const t1 = performance.now();
      gatherValues(sel, raw, 2);
      const t2 = performance.now();
      runs.push({ select: (t1 - t0) / 1000, total: (t2 - t0) / 1000 });
      kept = sel.keptScore / sel.totalScore;
    }
    const best = runs.reduce((a, b) => (b.total < a.total ? b : a));
    const first = runs[0]!;
    const rate = (seconds: number) => (n / seconds / 1e6).toFixed(1).padStart(6);
    const mbps = (seconds: number) => ((2 * n) / seconds / 1e6).toFixed(0).padStart(4);
    console.log(
      `${text.padEnd(8)} ${rule.padEnd(10)} best of ${repeats}: select ${rate(best.select)} M elem/s, select+gather ${rate(best.total)} M elem/s = ${mbps(best.total)} MB/s fp16` +
        ` | first run: select ${rate(first.select)}, select+gather ${rate(first.total)} = ${mbps(first.total)} MB/s | kept score ${(100 * kept).toFixed(2)} %`,
    );
  }
  // Fresh memory is expensive in some VMs and every run allocates its outputs: measure it.
  const pages = 4096;
  const fresh = new Uint8Array(pages * 4096);
  const t0 = performance.now();
  for (let i = 0; i < fresh.length; i += 4096) fresh[i] = 1;
  const pageUs = ((performance.now() - t0) * 1000) / pages;
  console.log(`first touch of fresh memory: ${pageUs.toFixed(2)} us per 4 KiB page (${((pageUs * 1000) / 4096).toFixed(2)} ns/byte)`);
}

main();
