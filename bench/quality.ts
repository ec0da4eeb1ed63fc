/**
 * The evaluation behind docs/quality.md: accuracy after pruning, for every setting issue 3 asks about,
 * on the trained models (perplexity, top-1 accuracy on their held-out eval data, calibrated on their
 * training-split samples) and on builder models (relative output error against the dense model on
 * held-out random inputs, calibrated on random inputs: data-free). Not a test.
 *
 *   npx tsc -p . && node dist/bench/quality.js [--models charlm,digits,bert,llama] [--vnm 64:2:5,64:2:8]
 *     [--permute-time 20] [--dir /tmp/vnmc-quality] [--json results.json] [--only <label regex>] [--extra <JSON options>]
 *
 * Compile times are compileFile's own (calibration, permutation search, pruning, writing; verification
 * off), on this machine, with the default worker threads.
 */
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
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
import { buildModel, type ModelKind } from "../models/index.js";
import { evalCharLm, evalDigitsVit, trainedDir } from "../models/trained/eval.js";

const { values: o } = parseArgs({
  options: {
    models: { type: "string", default: "charlm,digits,bert,llama" },
    vnm: { type: "string", default: "64:2:5,64:2:8" },
    "permute-time": { type: "string", default: "20" },
    dir: { type: "string", default: "/tmp/vnmc-quality" },
    json: { type: "string" },
    /** Only the settings whose label matches this regular expression (dense always runs). */
    only: { type: "string" },
    /** JSON merged into every setting's CompileOptions (experiments, e.g. '{"sparsegptDamping":0.001}' or '{"refitSweeps":4}'). */
    extra: { type: "string" },
  },
});

interface Subject {
  name: string;
  /** What the metric is, and whether higher is better. */
  metricName: string;
  higherIsBetter: boolean;
  input: string;
  calib: string;
  shapes?: Record<string, number[]>;
  metric: (path: string) => Promise<number>;
}

/** Relative L2 error of the first output against the original on held-out random inputs (other seeds than random:N). */
async function heldOutError(original: string, compiled: string, shapes: Record<string, number[]>, samples = 8): Promise<number> {
  const specs = inputSpecs(readModelFile(original).model, shapes);
  const so = { logSeverityLevel: 3 as const };
  const [a, b] = [await ort.InferenceSession.create(original, so), await ort.InferenceSession.create(compiled, so)];
  const acc = new OutputAccumulator("y");
  for (let i = 0; i < samples; i++) {
    const feeds = feedsOf(randomInputs(specs, 90_000 + i).map((g) => ({ name: g.spec.name, dataType: g.spec.dataType, dims: g.spec.dims, data: new Uint8Array(g.data.buffer) })));
    const [ya, yb] = [await a.run(feeds), await b.run(feeds)];
    const name = a.outputNames[0]!;
    acc.add(asFloat(yb[name]!.type, yb[name]!.data)!, asFloat(ya[name]!.type, ya[name]!.data)!, ya[name]!.dims);
  }
  await a.release();
  await b.release();
  return acc.result().relL2Error;
}

function subjects(dir: string): Subject[] {
  const t = trainedDir();
  const builder = (kind: ModelKind, shapes: Record<string, number[]>): Subject => {
    const input = join(dir, `${kind}.onnx`);
    writeModelFile(buildModel(kind, {}), input);
    return {
      name: `${kind} (builder)`, metricName: "held-out rel. L2 error", higherIsBetter: false, input, calib: "random:8", shapes,
      metric: (p) => (p === input ? Promise.resolve(0) : heldOutError(input, p, shapes)),
    };
  };
  const all: Subject[] = [
    { name: "charlm", metricName: "perplexity", higherIsBetter: false, input: join(t, "charlm.onnx"), calib: join(t, "calib/charlm"), metric: async (p) => (await evalCharLm(p)).perplexity },
    { name: "digits", metricName: "top-1 accuracy %", higherIsBetter: true, input: join(t, "digits_vit.onnx"), calib: join(t, "calib/digits_vit"), metric: async (p) => (await evalDigitsVit(p)).accuracy * 100 },
    ...(o.models!.includes("bert") ? [builder("bert", { hidden_states: [2, 64, 256] })] : []),
    ...(o.models!.includes("llama") ? [builder("llama", { hidden_states: [2, 64, 256] })] : []),
  ];
  return all.filter((s) => o.models!.split(",").some((m) => s.name.startsWith(m)));
}

interface Setting {
  label: string;
  options: CompileOptions;
}

function settings(vnms: string[], permuteTime: number): Setting[] {
  const out: Setting[] = [{ label: "2:4 magnitude (50 %)", options: { vnm: "16:2:4", score: "magnitude" } }];
  for (const vnm of vnms) {
    for (const permute of [false, true]) {
      const p = permute ? " + permute" : "";
      for (const score of ["magnitude", "wanda", "ria"] as const) {
        out.push({ label: `${vnm} ${score}${p}`, options: { vnm, score, permute, permuteTime } });
      }
      out.push({ label: `${vnm} sparsegpt${p}`, options: { vnm, method: "sparsegpt", permute, permuteTime } as CompileOptions });
    }
    // Refinements of sparsegpt (docs/calibration.md): only with --only, not in the table's default run.
    if (o.only) {
      for (const permute of [false, true]) {
        const p = permute ? " + permute" : "";
        out.push({ label: `${vnm} sparsegpt refit${p}`, options: { vnm, method: "sparsegpt", permute, permuteTime, refit: true } });
        out.push({ label: `${vnm} sparsegpt no-refit${p}`, options: { vnm, method: "sparsegpt", permute, permuteTime, refit: false } });
      }
    }
    out.push({ label: `${vnm} defaults (--calib only)`, options: { vnm } });
    out.push({ label: `${vnm} defaults, no calibration`, options: { vnm, calib: undefined } });
  }
  return out;
}

interface Row {
  model: string;
  setting: string;
  metric: number;
  compileS: number;
}

async function main(): Promise<void> {
  mkdirSync(o.dir!, { recursive: true });
  const vnms = o.vnm!.split(",");
  const permuteTime = Number(o["permute-time"]);
  const rows: Row[] = [];
  console.log(`# ${new Date().toISOString().slice(0, 10)}, ${cpus().length} x ${cpus()[0]?.model}, Node ${process.version}, permute-time ${permuteTime}`);
  for (const s of subjects(o.dir!)) {
    console.log(`\n## ${s.name}: ${s.metricName} (${s.higherIsBetter ? "higher" : "lower"} is better)\n`);
    console.log("| setting | " + s.metricName + " | compile s |");
    console.log("|---|---|---|");
    const dense = await s.metric(s.input);
    rows.push({ model: s.name, setting: "dense", metric: dense, compileS: 0 });
    console.log(`| dense | ${dense.toFixed(3)} | - |`);
    for (const st of settings(vnms, permuteTime).filter((x) => !o.only || new RegExp(o.only).test(x.label))) {
      const output = join(o.dir!, `${s.name.split(" ")[0]}.vnm.onnx`);
      const calib = (st.options.score === "magnitude" && !st.options.method) || ("calib" in st.options) ? {} : { calib: s.calib };
      const extra: CompileOptions = o.extra ? (JSON.parse(o.extra) as CompileOptions) : {};
      const opts: CompileOptions = { minSize: 4096, verify: false, shapes: s.shapes, output, ...calib, ...st.options, ...extra };
      // sparsegpt-only experiments (e.g. '{"refitSweeps":4}') leave the selection settings as they are.
      if (opts.method === "select" || opts.score !== undefined || opts.calib === undefined) {
        for (const k of ["refit", "refitSweeps", "sequential"] as const) delete opts[k];
      }
      const { report } = await compileFile(s.input, opts);
      const metric = await s.metric(output);
      const compileS = report.totals.compileMs / 1000;
      rows.push({ model: s.name, setting: st.label, metric, compileS });
      console.log(`| ${st.label} | ${metric.toFixed(3)} | ${compileS.toFixed(1)} |`);
    }
  }
  if (o.json) {
    const tmp = `${o.json}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify({ date: new Date().toISOString(), cpu: cpus()[0]?.model, cores: cpus().length, permuteTime, rows }, null, 2) + "\n");
    renameSync(tmp, o.json);
  }
}

await main();
