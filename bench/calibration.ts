/**
 * What calibration costs and what each score buys, on the builder models. Not a test.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/calibration.js [--samples 16] [--vnm 16:2:8,32:2:5]
 *     [--kinds mlp,bert,vit,llama,llama-large] [--heldout 8] [--dir /tmp/vnmc-calib-bench] [--mode quality|cost|jobs|trained|sparsegpt]
 *
 * For each model: a compile without calibration (magnitude), then with `--calib random:N` for each
 * score; the compile's own timings (calibration, pruning, verification) and, on held-out random
 * inputs (other seeds than the calibration samples), the compiled model's output error against the
 * original. The builder models have seeded random weights and the inputs are random: this measures
 * mechanics and relative behaviour, not accuracy on data (see docs/quality.md for trained models).
 */
import { mkdirSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import { feedsOf } from "../compiler/calibration/collect.js";
import { compileFile, type CompileOptions } from "../compiler/compile.js";
import { readModelFile } from "../compiler/serde/read.js";
import { writeModelFile } from "../compiler/serde/write.js";
import { asFloat, OutputAccumulator } from "../compiler/verify/compare.js";
import { inputSpecs, randomInputs } from "../compiler/verify/random-inputs.js";
import { DataType } from "../compiler/ir/dtype.js";
import { parseVnm } from "../compiler/vnm/config.js";
import { type PruneJob, runPruneJob } from "../compiler/weights/prune-job.js";
import { Scratch } from "../compiler/weights/scratch.js";
import { OUTPUT_ERROR_ROWS, type ScoreKind } from "../compiler/weights/scores.js";
import { buildModel, type ModelKind } from "../models/index.js";
import { evalCharLm, evalDigitsVit, trainedDir } from "../models/trained/eval.js";

const { values: o } = parseArgs({
  options: {
    samples: { type: "string", default: "16" },
    heldout: { type: "string", default: "8" },
    vnm: { type: "string", default: "16:2:8,32:2:5" },
    kinds: { type: "string", default: "mlp,bert,vit,llama,llama-large" },
    dir: { type: "string", default: "/tmp/vnmc-calib-bench" },
    /** "quality": scores vs held-out error (default); "cost": what calibration adds to a compile. */
    mode: { type: "string", default: "quality" },
  },
});

interface Setup {
  kind: ModelKind;
  opts: Record<string, unknown>;
  shapes: Record<string, number[]>;
}

/** Input shapes of a realistic size (the default for dynamic dims is 4). */
const SETUPS: Record<string, Setup> = {
  mlp: { kind: "mlp", opts: {}, shapes: { input: [64, 256] } },
  bert: { kind: "bert", opts: {}, shapes: { hidden_states: [2, 64, 256] } },
  vit: { kind: "vit", opts: {}, shapes: { pixel_values: [8, 3, 16, 16] } },
  llama: { kind: "llama", opts: {}, shapes: { hidden_states: [2, 64, 256] } },
  "llama-large": { kind: "llama", opts: { hidden: 1024, intermediate: 2816, heads: 8, layers: 4, vocab: 4096, maxSeq: 256 }, shapes: { hidden_states: [1, 128, 1024] } },
};

async function heldOutError(original: string, compiled: string, shapes: Record<string, number[]>, n: number): Promise<{ relL2: number; cosine: number; top1?: number }> {
  const model = readModelFile(original).model;
  const specs = inputSpecs(model, shapes);
  const opts = { logSeverityLevel: 3 as const };
  const [a, b] = [await ort.InferenceSession.create(original, opts), await ort.InferenceSession.create(compiled, opts)];
  const acc = new Map<string, OutputAccumulator>();
  for (let i = 0; i < n; i++) {
    const feeds = feedsOf(randomInputs(specs, 90_000 + i).map((g) => ({ name: g.spec.name, dataType: g.spec.dataType, dims: g.spec.dims, data: new Uint8Array(g.data.buffer) })));
    const [ya, yb] = [await a.run(feeds), await b.run(feeds)];
    for (const name of Object.keys(ya)) {
      const x = acc.get(name) ?? new OutputAccumulator(name);
      acc.set(name, x);
      x.add(asFloat(yb[name]!.type, yb[name]!.data)!, asFloat(ya[name]!.type, ya[name]!.data)!, ya[name]!.dims);
    }
  }
  await a.release();
  await b.release();
  const r = [...acc.values()][0]!.result();
  return { relL2: r.relL2Error, cosine: r.cosine, top1: r.top1Agreement };
}

/**
 * Cost mode: compiles without verification, without calibration and with random:N for each N of
 * --samples (comma-separated), then one verified compile without and with the largest N (the
 * verification runs the original and compiled model on every sample). Wall and CPU seconds.
 */
async function cost(): Promise<void> {
  const counts = o.samples!.split(",").map(Number);
  const vnm = o.vnm!.split(",")[0]!;
  console.log(`# ${new Date().toISOString().slice(0, 10)}, ${cpus().length} x ${cpus()[0]?.model}, Node ${process.version}, ${vnm}, score wanda`);
  console.log("| model | tokens/sample | calibration | compile s (CPU s) | calibrate s (CPU s) | onnxruntime runs | prune s (sum of jobs) |");
  console.log("|---|---|---|---|---|---|---|");
  const run = async (input: string, s: Setup, calib: string | undefined, verify: boolean) => {
    const cpu0 = process.cpuUsage();
    const { report } = await compileFile(input, { vnm, minSize: 0, output: join(o.dir!, "cost.vnm.onnx"), calib, score: calib ? "wanda" : undefined, shapes: s.shapes, verify });
    const cpu = process.cpuUsage(cpu0);
    return { report, cpuS: (cpu.user + cpu.system) / 1e6 };
  };
  for (const name of o.kinds!.split(",")) {
    const s = SETUPS[name]!;
    const input = join(o.dir!, `${name}.onnx`);
    writeModelFile(buildModel(s.kind, s.opts), input);
    const tokens = Object.values(s.shapes)[0]!.slice(0, -1).reduce((a, b) => a * b, 1);
    for (const [calib, verify] of [[undefined, false], ...counts.map((n) => [`random:${n}`, false]), [undefined, true], [`random:${Math.max(...counts)}`, true]] as Array<[string | undefined, boolean]>) {
      const { report, cpuS } = await run(input, s, calib, verify);
      const c = report.calibration;
      const prune = [...new Map(report.layers.filter((l) => l.status !== "dense").map((l) => [l.weight, l.pruneMs ?? 0])).values()].reduce((a, b) => a + b, 0);
      console.log(`| ${name} | ${name === "vit" ? "(images)" : tokens} | ${calib ?? "none"}${verify ? ", verified" : ""} | ${(report.totals.compileMs / 1000).toFixed(2)} (${cpuS.toFixed(2)}) | ${c ? `${(c.ms / 1000).toFixed(2)} (${(c.cpuMs / 1000).toFixed(2)})` : "-"} | ${c ? c.runs : "-"} | ${(prune / 1000).toFixed(2)} |`);
    }
  }
}

/** Jobs mode: CPU time of one prune job per score, with and without the layer output error. */
function jobs(): void {
  console.log("| weight | score | output error rows | CPU ms (best of 3) |");
  console.log("|---|---|---|---|");
  for (const [out, inF] of [[1024, 2816], [4096, 4096]] as const) {
    const W = Float32Array.from({ length: out * inF }, (_, i) => Math.sin(i * 12.9898) * 0.02);
    const norms = Float32Array.from({ length: inF }, (_, k) => 1 + (k % 7));
    const rows = Float32Array.from({ length: OUTPUT_ERROR_ROWS * inF }, (_, i) => Math.cos(i * 0.37));
    const scratch = new Scratch();
    const job = (kind: ScoreKind, withRows: boolean): PruneJob => ({
      source: { kind: "bytes", bytes: new Uint8Array(W.buffer) }, baseType: DataType.FLOAT, baseDims: [inF, out], config: parseVnm(o.vnm!.split(",")[0]!),
      recipe: { baseName: "W", transposed: true, dataType: DataType.FLOAT, scale: 1, outFeatures: out, inFeatures: inF },
      scoring: { kind, norms, rows: withRows ? rows : undefined, rowCount: withRows ? OUTPUT_ERROR_ROWS : undefined },
    });
    runPruneJob(job("wanda", true), scratch); // warm-up
    for (const [kind, withRows] of [["magnitude", false], ["wanda", false], ["ria", false], ["magnitude", true], ["wanda", true]] as Array<[ScoreKind, boolean]>) {
      let best = Infinity;
      for (let i = 0; i < 3; i++) {
        const c = process.cpuUsage();
        runPruneJob(job(kind, withRows), scratch);
        const u = process.cpuUsage(c);
        best = Math.min(best, (u.user + u.system) / 1000);
      }
      console.log(`| ${out}x${inF} | ${kind} | ${withRows ? OUTPUT_ERROR_ROWS : "-"} | ${best.toFixed(0)} |`);
    }
  }
}

/**
 * Trained mode: the committed trained models (models/trained/), calibrated on their committed
 * training-split samples, evaluated on their held-out eval data, for each score and V:N:M.
 */
async function trained(): Promise<void> {
  const dir = trainedDir();
  const models = [
    { name: "charlm (perplexity)", file: "charlm.onnx", calib: "calib/charlm", vnms: ["64:2:4", "64:2:5", "64:2:6", "64:2:8", "32:2:5", "32:2:8", "16:2:6", "128:2:6"], metric: async (p: string) => (await evalCharLm(p)).perplexity.toFixed(3) },
    { name: "digits ViT (top-1 %)", file: "digits_vit.onnx", calib: "calib/digits_vit", vnms: ["64:2:4", "64:2:5", "32:2:5", "16:2:5", "16:2:6", "64:2:8"], metric: async (p: string) => ((await evalDigitsVit(p)).accuracy * 100).toFixed(1) },
  ];
  console.log("| model | V:N:M | dense | magnitude | wanda | ria |");
  console.log("|---|---|---|---|---|---|");
  for (const m of models) {
    const input = join(dir, m.file);
    const dense = await m.metric(input);
    for (const vnm of m.vnms) {
      const cells: string[] = [];
      for (const score of ["magnitude", "wanda", "ria"] as const) {
        const output = join(o.dir!, `trained.${score}.vnm.onnx`);
        await compileFile(input, { vnm, minSize: 4096, calib: join(dir, m.calib), score, output, verify: false });
        cells.push(await m.metric(output));
      }
      console.log(`| ${m.name} | ${vnm} | ${dense} | ${cells.join(" | ")} |`);
    }
  }
}

/**
 * Sparsegpt mode: the trained models as in trained mode, Wanda selection against --method sparsegpt
 * (its default OBS saliency, and the Wanda-like saliency |W|·‖X_k‖ on the updated weights), with the
 * mean layer output error and the compile's wall time (no verification, one worker per core).
 */
async function sparsegpt(): Promise<void> {
  const dir = trainedDir();
  const models = [
    { name: "charlm (perplexity)", file: "charlm.onnx", calib: "calib/charlm", vnms: ["64:2:4", "64:2:5", "64:2:6", "64:2:8", "32:2:5", "32:2:8", "16:2:6", "128:2:6"], metric: async (p: string) => (await evalCharLm(p)).perplexity.toFixed(3) },
    { name: "digits ViT (top-1 %)", file: "digits_vit.onnx", calib: "calib/digits_vit", vnms: ["64:2:4", "64:2:5", "32:2:5", "16:2:5", "16:2:6", "64:2:8"], metric: async (p: string) => ((await evalDigitsVit(p)).accuracy * 100).toFixed(1) },
  ];
  const variants: Array<[string, CompileOptions]> = [
    ["wanda", { score: "wanda" }],
    ["sparsegpt", { method: "sparsegpt" }],
    ["sparsegpt, wanda saliency", { method: "sparsegpt", sparsegptMaskScore: "wanda" }],
  ];
  console.log(`# ${new Date().toISOString().slice(0, 10)}, ${cpus().length} x ${cpus()[0]?.model}, Node ${process.version}`);
  console.log(`| model | V:N:M | dense | ${variants.map(([v]) => v).join(" | ")} |`);
  console.log(`|---|---|---|${variants.map(() => "---|").join("")}`);
  for (const m of models) {
    const input = join(dir, m.file);
    const dense = await m.metric(input);
    for (const vnm of m.vnms) {
      const cells: string[] = [];
      for (const [, opts] of variants) {
        const output = join(o.dir!, "trained.sparsegpt.vnm.onnx");
        const t0 = performance.now();
        const { report } = await compileFile(input, { vnm, minSize: 4096, calib: join(dir, m.calib), output, verify: false, ...opts });
        const s = (performance.now() - t0) / 1000;
        const errs = report.layers.flatMap((l) => (l.outputError === undefined ? [] : [l.outputError]));
        const meanErr = errs.reduce((a, b) => a + b, 0) / Math.max(1, errs.length);
        cells.push(`${await m.metric(output)} (${meanErr.toFixed(3)}, ${s.toFixed(1)} s)`);
      }
      console.log(`| ${m.name} | ${vnm} | ${dense} | ${cells.join(" | ")} |`);
    }
  }
}

async function main(): Promise<void> {
  mkdirSync(o.dir!, { recursive: true });
  if (o.mode === "cost") return cost();
  if (o.mode === "trained") return trained();
  if (o.mode === "sparsegpt") return sparsegpt();
  if (o.mode === "jobs") return jobs();
  const samples = Number(o.samples);
  const heldout = Number(o.heldout);
  console.log(`# ${new Date().toISOString().slice(0, 10)}, ${cpus().length} x ${cpus()[0]?.model}, Node ${process.version}, calibration random:${samples}, held-out ${heldout}`);
  console.log("| model | V:N:M | score | compile s (CPU s) | calibrate s (CPU s) | prune s (sum of jobs) | verify s | mean layer out err | held-out rel. L2 err | held-out cosine |");
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  for (const name of o.kinds!.split(",")) {
    const s = SETUPS[name];
    if (!s) throw new Error(`unknown model '${name}'`);
    const input = join(o.dir!, `${name}.onnx`);
    writeModelFile(buildModel(s.kind, s.opts), input);
    for (const vnm of o.vnm!.split(",")) {
      const runs: Array<[ScoreKind, string | undefined]> = [["magnitude", undefined], ["magnitude", `random:${samples}`], ["wanda", `random:${samples}`], ["ria", `random:${samples}`]];
      for (const [score, calib] of runs) {
        const output = join(o.dir!, `${name}.${score}.vnm.onnx`);
        const opts: CompileOptions = { vnm, minSize: 0, output, score, calib, shapes: s.shapes };
        const cpu0 = process.cpuUsage();
        const { report } = await compileFile(input, opts);
        const cpu = process.cpuUsage(cpu0);
        const compileCpuS = (cpu.user + cpu.system) / 1e6;
        const sparse = report.layers.filter((l) => l.status !== "dense");
        const errs = sparse.map((l) => l.outputError).filter((x): x is number => x !== undefined);
        const verifyMs = report.timings.find((t) => t.pass === "verify")?.ms;
        // Shared weights are pruned once: count each weight once.
        const pruneMs = [...new Map(sparse.map((l) => [l.weight, l.pruneMs ?? 0])).values()].reduce((a, b) => a + b, 0);
        const h = await heldOutError(input, output, s.shapes, heldout);
        console.log(`| ${name} | ${vnm} | ${score}${calib ? "" : " (no calib)"} | ${(report.totals.compileMs / 1000).toFixed(2)} (${compileCpuS.toFixed(2)}) | ${report.calibration ? `${(report.calibration.ms / 1000).toFixed(2)} (${(report.calibration.cpuMs / 1000).toFixed(2)})` : "-"} | ${pruneMs ? (pruneMs / 1000).toFixed(2) : "-"} | ${verifyMs ? (verifyMs / 1000).toFixed(2) : "-"} | ${errs.length ? (errs.reduce((a, b) => a + b, 0) / errs.length).toFixed(4) : "-"} | ${h.relL2.toFixed(4)} | ${h.cosine.toFixed(4)} |`);
      }
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
