/**
 * The evaluation behind docs/quality.md: accuracy after pruning, for every setting issue 3 asks about,
 * on the trained models (perplexity, top-1 accuracy on their held-out eval data, calibrated on their
 * training-split samples) and on builder models (relative output error against the dense model on
 * held-out random inputs, calibrated on random inputs: data-free). Not a test.
 *
 *   npx tsc -p . && node dist/bench/quality.js [--models charlm,digits,bert,llama] [--vnm 64:2:5,64:2:8]
 *     [--permute-time 20] [--dir /tmp/vnmc-quality] [--json results.json] [--only <label regex>] [--extra <JSON options>]
 *     [--variant 'name=<JSON options>' ...] [--calib model=DIR,...] [--items]
 *
 * Compile times are compileFile's own (calibration, permutation search, pruning, writing; verification
 * off), on this machine, with the default worker threads.
 *
 * Better-resolved metrics than the headline ones (one ViT test image is 0.28 %): for the trained models
 * every row also gets the mean negative log-likelihood (nats per character / per image) and, for the
 * ViT, the top-1 agreement with the dense model; a second table per model gives, for every row, the
 * paired difference of its NLL to the defaults row of the same V:N:M with its standard error (over
 * eval windows / images), so that "better" can be told from noise.
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
import { readNpy, trainedDir } from "../models/trained/eval.js";

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
    /**
     * Repeatable 'name=JSON': a row "<V:N:M> defaults + name" per V:N:M, the defaults with these
     * CompileOptions merged in (ablations against the defaults, e.g. 'no-refit={"refit":false}').
     */
    variant: { type: "string", multiple: true },
    /**
     * 'model=DIR,...': calibrate a trained model on DIR instead of its committed samples (e.g. the
     * digits ViT on other draws of training images: models/train/make_calib_subsets.py).
     */
    calib: { type: "string" },
    /** Put every row's per-item NLLs (and the ViT's per-image right/wrong) into the --json output. */
    items: { type: "boolean", default: false },
  },
});

/** What one evaluation measured: the headline metric and, for the trained models, per-item NLLs. */
interface Measured {
  metric: number;
  /** Mean negative log-likelihood (nats) over the eval items. */
  nll?: number;
  /** Per eval item (char-LM: window, mean over its characters; ViT: image) NLL, for paired comparisons. */
  itemNll?: Float64Array;
  /** ViT: the predicted classes (for the agreement with the dense model) and whether each is right. */
  predictions?: Int32Array;
  correct?: Uint8Array;
}

interface Subject {
  name: string;
  /** What the metric is, and whether higher is better. */
  metricName: string;
  higherIsBetter: boolean;
  input: string;
  calib: string;
  shapes?: Record<string, number[]>;
  metric: (path: string) => Promise<Measured>;
}

const sessionOptions = { logSeverityLevel: 3 as const };

/** log Σ exp(l) − l[target] of one logits row. */
function crossEntropy(logits: Float32Array, row: number, n: number, target: number): number {
  let max = -Infinity;
  for (let v = 0; v < n; v++) max = Math.max(max, logits[row + v]!);
  let sum = 0;
  for (let v = 0; v < n; v++) sum += Math.exp(logits[row + v]! - max);
  return Math.log(sum) + max - logits[row + target]!;
}

/** The char-LM on its eval windows (as models/trained/eval.ts evalCharLm), with each window's mean NLL. */
async function charLm(path: string): Promise<Measured> {
  const ev = readNpy(join(trainedDir(), "charlm.eval.npy"));
  const [n, width] = ev.shape as [number, number];
  const ctx = width - 1;
  const tokens = ev.data instanceof BigInt64Array ? ev.data : BigInt64Array.from(ev.data as Uint8Array, (v) => BigInt(v));
  const session = await ort.InferenceSession.create(path, sessionOptions);
  const itemNll = new Float64Array(n);
  try {
    const batch = 16;
    for (let s = 0; s < n; s += batch) {
      const b = Math.min(batch, n - s);
      const input = new BigInt64Array(b * ctx);
      for (let i = 0; i < b; i++) input.set(tokens.subarray((s + i) * width, (s + i) * width + ctx), i * ctx);
      const out = (await session.run({ [session.inputNames[0]!]: new ort.Tensor("int64", input, [b, ctx]) }))[session.outputNames[0]!]!;
      const vocab = out.dims[2]!;
      const logits = out.data as Float32Array;
      for (let i = 0; i < b; i++) {
        let sum = 0;
        for (let t = 0; t < ctx; t++) sum += crossEntropy(logits, (i * ctx + t) * vocab, vocab, Number(tokens[(s + i) * width + t + 1]!));
        itemNll[s + i] = sum / ctx;
      }
    }
  } finally {
    await session.release();
  }
  const nll = mean(itemNll);
  return { metric: Math.exp(nll), nll, itemNll };
}

/** The digits ViT on its test images (as evalDigitsVit), with each image's NLL and predicted class. */
async function digitsVit(path: string): Promise<Measured> {
  const images = readNpy(join(trainedDir(), "digits.eval.images.npy"));
  const labels = readNpy(join(trainedDir(), "digits.eval.labels.npy")).data as BigInt64Array;
  const n = images.shape[0]!;
  const session = await ort.InferenceSession.create(path, sessionOptions);
  try {
    const input = new ort.Tensor("float32", images.data as Float32Array, images.shape);
    const out = (await session.run({ [session.inputNames[0]!]: input }))[session.outputNames[0]!]!;
    const classes = out.dims[out.dims.length - 1]!;
    const logits = out.data as Float32Array;
    const itemNll = new Float64Array(n);
    const predictions = new Int32Array(n);
    const right = new Uint8Array(n);
    let correct = 0;
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let c = 1; c < classes; c++) if (logits[i * classes + c]! > logits[i * classes + best]!) best = c;
      predictions[i] = best;
      if (BigInt(best) === labels[i]) (correct++, (right[i] = 1));
      itemNll[i] = crossEntropy(logits, i * classes, classes, Number(labels[i]!));
    }
    return { metric: (100 * correct) / n, nll: mean(itemNll), itemNll, predictions, correct: right };
  } finally {
    await session.release();
  }
}

function mean(a: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]!;
  return s / a.length;
}

/** Mean of a − b and its standard error (paired, over items). */
function pairedDifference(a: Float64Array, b: Float64Array): { diff: number; se: number } {
  const n = a.length;
  const d = new Float64Array(n);
  for (let i = 0; i < n; i++) d[i] = a[i]! - b[i]!;
  const m = mean(d);
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (d[i]! - m) ** 2;
  return { diff: m, se: Math.sqrt(ss / (n - 1) / n) };
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
      metric: async (p) => ({ metric: p === input ? 0 : await heldOutError(input, p, shapes) }),
    };
  };
  const all: Subject[] = [
    { name: "charlm", metricName: "perplexity", higherIsBetter: false, input: join(t, "charlm.onnx"), calib: join(t, "calib/charlm"), metric: charLm },
    { name: "digits", metricName: "top-1 accuracy %", higherIsBetter: true, input: join(t, "digits_vit.onnx"), calib: join(t, "calib/digits_vit"), metric: digitsVit },
    ...(o.models!.includes("bert") ? [builder("bert", { hidden_states: [2, 64, 256] })] : []),
    ...(o.models!.includes("llama") ? [builder("llama", { hidden_states: [2, 64, 256] })] : []),
  ];
  for (const c of o.calib ? o.calib.split(",") : []) {
    const eq = c.indexOf("=");
    const s = all.find((x) => eq > 0 && x.name === c.slice(0, eq));
    if (!s) throw new Error(`--calib needs model=DIR with model charlm or digits (got '${c}')`);
    s.calib = c.slice(eq + 1);
  }
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
    for (const v of o.variant ?? []) {
      const eq = v.indexOf("=");
      if (eq < 1) throw new Error(`--variant needs name=JSON (got '${v}')`);
      out.push({ label: `${vnm} defaults + ${v.slice(0, eq)}`, options: { vnm, ...(JSON.parse(v.slice(eq + 1)) as CompileOptions) } });
    }
    out.push({ label: `${vnm} defaults, no calibration`, options: { vnm, calib: undefined } });
  }
  return out;
}

interface Row {
  model: string;
  setting: string;
  metric: number;
  compileS: number;
  /** Trained models: mean NLL (nats per character / image). */
  nll?: number;
  /** ViT: top-1 agreement with the dense model, %. */
  agreement?: number;
  /** Paired NLL difference to the defaults row of the same V:N:M and its standard error. */
  nllVsDefaults?: { diff: number; se: number };
  /** ViT: test images this row gets right and the defaults wrong, and the other way round (McNemar's discordant pairs). */
  top1VsDefaults?: { gained: number; lost: number };
  /** With --items: per eval item NLL and (ViT) 1 where the prediction is right. */
  itemNll?: number[];
  itemCorrect?: number[];
}

async function main(): Promise<void> {
  mkdirSync(o.dir!, { recursive: true });
  const vnms = o.vnm!.split(",");
  const permuteTime = Number(o["permute-time"]);
  const rows: Row[] = [];
  console.log(`# ${new Date().toISOString().slice(0, 10)}, ${cpus().length} x ${cpus()[0]?.model}, Node ${process.version}, permute-time ${permuteTime}`);
  for (const s of subjects(o.dir!)) {
    console.log(`\n## ${s.name}: ${s.metricName} (${s.higherIsBetter ? "higher" : "lower"} is better)\n`);
    const vit = s.name === "digits";
    console.log(`| setting | ${s.metricName} |${s.name === "charlm" || vit ? " NLL |" : ""}${vit ? " agreement with dense % |" : ""} compile s |`);
    console.log(`|---|---|${s.name === "charlm" || vit ? "---|" : ""}${vit ? "---|" : ""}---|`);
    const cells = (m: Measured, agreement?: number) => `${m.nll !== undefined ? ` ${m.nll.toFixed(4)} |` : ""}${agreement !== undefined ? ` ${agreement.toFixed(1)} |` : ""}`;
    const items = (m: Measured) => (o.items && m.itemNll ? { itemNll: Array.from(m.itemNll), ...(m.correct ? { itemCorrect: Array.from(m.correct) } : {}) } : {});
    const dense = await s.metric(s.input);
    rows.push({ model: s.name, setting: "dense", metric: dense.metric, compileS: 0, ...(dense.nll !== undefined ? { nll: dense.nll } : {}), ...items(dense) });
    console.log(`| dense | ${dense.metric.toFixed(3)} |${cells(dense, vit ? 100 : undefined)} - |`);
    const measured: { label: string; vnm: string; m: Measured; row: Row }[] = [];
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
      const m = await s.metric(output);
      const compileS = report.totals.compileMs / 1000;
      const agreement = m.predictions && dense.predictions ? (100 * m.predictions.filter((c, i) => c === dense.predictions![i]).length) / m.predictions.length : undefined;
      const row: Row = { model: s.name, setting: st.label, metric: m.metric, compileS, ...(m.nll !== undefined ? { nll: m.nll } : {}), ...(agreement !== undefined ? { agreement } : {}), ...items(m) };
      rows.push(row);
      measured.push({ label: st.label, vnm: typeof st.options.vnm === "string" ? st.options.vnm : "", m, row });
      console.log(`| ${st.label} | ${m.metric.toFixed(3)} |${cells(m, agreement)} ${compileS.toFixed(1)} |`);
    }
    // Paired NLL differences to the defaults of the same V:N:M (negative: better than the defaults).
    const withNll = measured.filter((x) => x.m.itemNll);
    const defaultsOf = (vnm: string) => withNll.find((x) => x.vnm === vnm && x.label.endsWith("defaults (--calib only)"));
    if (withNll.some((x) => defaultsOf(x.vnm) && defaultsOf(x.vnm) !== x)) {
      const vit = withNll[0]!.m.correct !== undefined;
      console.log(`\n| setting | NLL − defaults' NLL (± standard error, paired over ${withNll[0]!.m.itemNll!.length} eval items) |${vit ? " images right where the defaults are wrong / wrong where they are right |" : ""}`);
      console.log(`|---|---|${vit ? "---|" : ""}`);
      for (const x of withNll) {
        const d = defaultsOf(x.vnm);
        if (!d || d === x) continue;
        x.row.nllVsDefaults = pairedDifference(x.m.itemNll!, d.m.itemNll!);
        let top1 = "";
        if (x.m.correct && d.m.correct) {
          let gained = 0, lost = 0;
          for (let i = 0; i < x.m.correct.length; i++) (gained += x.m.correct[i]! & (1 - d.m.correct[i]!)), (lost += d.m.correct[i]! & (1 - x.m.correct[i]!));
          x.row.top1VsDefaults = { gained, lost };
          top1 = ` +${gained} / −${lost} |`;
        }
        console.log(`| ${x.label} | ${x.row.nllVsDefaults.diff >= 0 ? "+" : ""}${x.row.nllVsDefaults.diff.toFixed(4)} ± ${x.row.nllVsDefaults.se.toFixed(4)} |${top1}`);
      }
    }
  }
  if (o.json) {
    const tmp = `${o.json}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify({ date: new Date().toISOString(), cpu: cpus()[0]?.model, cores: cpus().length, permuteTime, rows }, null, 2) + "\n");
    renameSync(tmp, o.json);
  }
}

await main();
