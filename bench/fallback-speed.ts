/**
 * Benchmark: does a compiled model run at dense speed through the fallback function on a stock
 * onnxruntime (the packed weights are constants, so the rebuild should fold away at session creation)?
 * Same run, same inputs: the original model vs the compiled one, session creation time and median latency.
 *
 *   node dist/bench/fallback-speed.js [--iters 50]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import { compileFile } from "../compiler/compile.js";
import { writeModelFile } from "../compiler/serde/write.js";
import { inputSpecs, randomFeeds, type TensorCtor } from "../compiler/verify/random-inputs.js";
import { readModelFile } from "../compiler/serde/read.js";
import { buildModel, type ModelKind } from "../models/index.js";

const { values: o } = parseArgs({ options: { iters: { type: "string", default: "50" } } });
const iters = Number(o.iters);

const cases: Array<{ kind: ModelKind; opts: Record<string, unknown>; shapes: Record<string, number[]>; vnm: string }> = [
  { kind: "mlp", opts: { inFeatures: 1024, hidden: 4096, outFeatures: 1024, layers: 4 }, shapes: { input: [16, 1024] }, vnm: "64:2:8" },
  { kind: "llama", opts: { hidden: 512, intermediate: 1408, layers: 2, vocab: 2048 }, shapes: { hidden_states: [1, 64, 512] }, vnm: "64:2:8" },
  { kind: "bert", opts: { hidden: 512, ffn: 2048 }, shapes: { hidden_states: [4, 64, 512] }, vnm: "32:2:5" },
];

async function measure(path: string, feeds: Record<string, ort.Tensor>) {
  const t0 = performance.now();
  const s = await ort.InferenceSession.create(path, { logSeverityLevel: 3, intraOpNumThreads: 1 });
  const createMs = performance.now() - t0;
  for (let i = 0; i < 5; i++) await s.run(feeds);
  const times: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t = performance.now();
    await s.run(feeds);
    times.push(performance.now() - t);
  }
  await s.release();
  times.sort((a, b) => a - b);
  return { createMs, medianMs: times[times.length >> 1]! };
}

const dir = mkdtempSync(join(tmpdir(), "vnmc-fallback-"));
const rows = [];
try {
  for (const c of cases) {
    const input = join(dir, `${c.kind}.onnx`);
    writeModelFile(buildModel(c.kind, c.opts), input);
    const { outputPath } = await compileFile(input, { vnm: c.vnm, verify: false });
    const feeds = randomFeeds(inputSpecs(readModelFile(input).model, c.shapes), ort.Tensor as unknown as TensorCtor);
    // Interleave to spread machine noise over both.
    const a1 = await measure(input, feeds), b1 = await measure(outputPath, feeds);
    const a2 = await measure(input, feeds), b2 = await measure(outputPath, feeds);
    const dense = Math.min(a1.medianMs, a2.medianMs), fallback = Math.min(b1.medianMs, b2.medianMs);
    rows.push({
      model: c.kind, shapes: c.shapes, vnm: c.vnm,
      denseMs: +dense.toFixed(3), fallbackMs: +fallback.toFixed(3), fallbackOverDense: +(fallback / dense).toFixed(3),
      createDenseMs: Math.round(Math.min(a1.createMs, a2.createMs)), createFallbackMs: Math.round(Math.min(b1.createMs, b2.createMs)),
    });
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(JSON.stringify({ date: new Date().toISOString().slice(0, 10), cpu: cpus()[0]?.model, cores: cpus().length, onnxruntime: ort.env.versions.node, iters, rows }, null, 2));
