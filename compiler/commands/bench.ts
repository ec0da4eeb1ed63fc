import { Codes, VnmcError } from "../diagnostics.js";
import { progressBar } from "../progress.js";
import { asFloat, compareOutputs } from "../verify/compare.js";
import {
  type AnySession, fmtMs, generatedInputs, nativeAvailability, openSession, parsePositiveInt, parseShapeOptions, readModel,
  runOnce, type RuntimeKind, table,
} from "./run-common.js";
import { parseCommandArgs } from "./options.js";
import { UsageError } from "./usage-error.js";

export const BENCH_HELP = `Usage: vnmc bench <model.vnm.onnx> --baseline <model.onnx> [options]

Times, in one run on the same generated inputs, the dense original in onnxruntime-node, the compiled
model on vnmc's kernels (native runtime; skipped with a note when it is not built) and the compiled
model through its fallback function in onnxruntime-node. Runs are interleaved (one of each per
iteration) so that load on the machine hits all three alike. Prints p50/p90/p99 latency and the
speed-up over the dense model, and checks that native and fallback outputs agree.

Options:
  --baseline <model.onnx>  the dense model the compiled one came from (required)
  --iters <n>              timed iterations per model (default 50)
  --warmup <n>             untimed runs per model first (default 3)
  --threads <n>            intra-op threads of every session (default: onnxruntime's default)
  --shape <name=AxBxC>     input shape when the model has dynamic dims (repeatable)
  --seed <n>               seed of the generated inputs (default 1234)
  --json                   print JSON
  -h, --help               show this help`;

export interface BenchRow {
  kind: RuntimeKind;
  model: string;
  createMs: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  /** dense p50 / this p50: > 1 is faster than the dense model. */
  speedup: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** `vnmc bench`: dense vs native vs fallback latency on the same inputs. */
export async function benchCommand(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("bench", BENCH_HELP, {
    args,
    allowPositionals: true,
    options: {
      baseline: { type: "string" },
      iters: { type: "string" },
      warmup: { type: "string" },
      threads: { type: "string" },
      shape: { type: "string", multiple: true },
      seed: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (!parsed) return 0;
  const { values: o, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError("vnmc bench needs exactly one compiled model, e.g. vnmc bench model.vnm.onnx --baseline model.onnx.");
  if (!o.baseline) throw new UsageError("vnmc bench needs --baseline <model.onnx>, the dense model to compare with.");
  const compiled = positionals[0]!;
  const baseline = o.baseline;
  const iters = parsePositiveInt("--iters", o.iters, 50);
  const warmup = parsePositiveInt("--warmup", o.warmup, 3, 0);
  const threads = parsePositiveInt("--threads", o.threads, 0, 0);
  const seed = parsePositiveInt("--seed", o.seed, 1234, 0);
  const shapes = parseShapeOptions(o.shape ?? []);

  const model = readModel(compiled);
  const base = readModel(baseline);
  const { specs, feeds } = await generatedInputs(model, shapes, seed);
  const baseInputs = new Set(base.graph.inputs.filter((v) => !v.initializer).map((v) => v.name));
  const missing = specs.map((s) => s.name).filter((n) => !baseInputs.has(n));
  if (missing.length || baseInputs.size !== specs.length) {
    throw new VnmcError(Codes.BAD_SHAPE_OPTION, `The baseline '${baseline}' has other inputs (${[...baseInputs].join(", ")}) than '${compiled}' (${specs.map((s) => s.name).join(", ")}); give the model it was compiled from.`);
  }

  const avail = nativeAvailability();
  const notes: string[] = [];
  if (!avail.ok) notes.push(`the vnmc kernels were not timed: the native runtime is not available (${avail.reason})`);
  if (!o.json) for (const n of notes) process.stderr.write(`note: ${n}.\n`);

  const plan: Array<[RuntimeKind, string]> = [["dense", baseline], ...(avail.ok ? [["native", compiled] as [RuntimeKind, string]] : []), ["fallback", compiled]];
  const sessions: AnySession[] = [];
  const bar = o.json ? undefined : progressBar(process.stderr);
  try {
    for (const [kind, path] of plan) {
      bar?.({ phase: "load", done: sessions.length, total: plan.length });
      sessions.push(await openSession(kind, path, threads));
    }
    const first: Record<string, Record<string, import("onnxruntime-node").Tensor>> = {};
    for (let w = 0; w < Math.max(1, warmup); w++) {
      for (const s of sessions) {
        const y = await runOnce(s, feeds, s.kind === "dense" ? baseline : compiled);
        first[s.kind] ??= y;
      }
      bar?.({ phase: "warmup", done: w + 1, total: Math.max(1, warmup) });
    }
    const times: number[][] = sessions.map(() => []);
    for (let i = 0; i < iters; i++) {
      // Rotate the order so that no runtime always follows the same one (caches, turbo).
      for (let j = 0; j < sessions.length; j++) {
        const k = (i + j) % sessions.length;
        const s = sessions[k]!;
        const t0 = performance.now();
        await s.run(feeds);
        times[k]!.push(performance.now() - t0);
      }
      bar?.({ phase: "bench", done: i + 1, total: iters });
    }
    bar?.clear();

    const rows: BenchRow[] = sessions.map((s, k) => {
      const sorted = [...times[k]!].sort((a, b) => a - b);
      return {
        kind: s.kind,
        model: s.kind === "dense" ? baseline : compiled,
        createMs: s.createMs,
        p50: percentile(sorted, 50),
        p90: percentile(sorted, 90),
        p99: percentile(sorted, 99),
        mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
        speedup: 0,
      };
    });
    const dense = rows.find((r) => r.kind === "dense")!;
    for (const r of rows) r.speedup = dense.p50 / r.p50;

    // Native and fallback compute the same function: their outputs must agree to float rounding.
    let agreement: { maxRelError: number; outputs: number } | undefined;
    if (first.native && first.fallback) {
      let worst = 0, n = 0;
      for (const [name, ref] of Object.entries(first.fallback)) {
        const got = first.native[name];
        const a = got && asFloat(got.type, got.data), b = asFloat(ref.type, ref.data);
        if (!a || !b || a.length !== b.length) continue;
        worst = Math.max(worst, compareOutputs(name, a, b, ref.dims).maxRelError);
        n++;
      }
      agreement = { maxRelError: worst, outputs: n };
    }

    if (o.json) {
      process.stdout.write(JSON.stringify({ compiled, baseline, iters, warmup, threads, inputs: specs, rows, agreement, notes }, null, 2) + "\n");
      return 0;
    }
    const label: Record<RuntimeKind, string> = { dense: "dense original (onnxruntime-node)", native: "vnmc kernels (native)", fallback: "fallback function (onnxruntime-node)" };
    const out = [
      `inputs: ${specs.map((s) => `${s.name} [${s.dims.join("x")}]`).join(", ")}; ${iters} iterations, ${threads || "default"} threads`,
      "",
      table([
        ["runtime", "p50", "p90", "p99", "mean", "speed-up (p50)", "session creation"],
        ...rows.map((r) => [label[r.kind], fmtMs(r.p50), fmtMs(r.p90), fmtMs(r.p99), fmtMs(r.mean), `${r.speedup.toFixed(2)}x`, fmtMs(r.createMs)]),
      ]),
    ];
    if (agreement) out.push("", `native vs fallback outputs: max relative difference ${agreement.maxRelError.toExponential(2)} over ${agreement.outputs} output(s)`);
    process.stdout.write(out.join("\n") + "\n");
    return 0;
  } finally {
    bar?.clear();
    for (const s of sessions) await s.release();
  }
}
