import {
  fmtMs, fmtNum, generatedInputs, nativeAvailability, openSession, outputStats, parsePositiveInt, parseShapeOptions,
  readModel, RUNTIME_LABEL, runOnce, table, type RuntimeKind,
} from "./run-common.js";
import { parseCommandArgs } from "./options.js";
import { UsageError } from "./usage-error.js";
import { dataTypeName } from "../ir/dtype.js";

export const RUN_HELP = `Usage: vnmc run <model.onnx> [options]

Runs the model once on generated inputs and prints each output's name, type, shape and statistics
(sum, mean, std, min, max and a hash of its bytes). A compiled model runs on vnmc's kernels when the
native runtime is built (npm run build:native), else through its fallback function in onnxruntime-node.

Options:
  --fallback              run in onnxruntime-node (the fallback function) even when the native runtime is built
  --shape <name=AxBxC>    input shape when the model has dynamic dims (repeatable; default 4 per dynamic dim)
  --seed <n>              seed of the generated inputs (default 1234)
  --threads <n>           intra-op threads (default: onnxruntime's default)
  --json                  print JSON
  -h, --help              show this help`;

/** `vnmc run`: one run on generated inputs, with the native kernels when available. */
export async function runCommand(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("run", RUN_HELP, {
    args,
    allowPositionals: true,
    options: {
      fallback: { type: "boolean" },
      shape: { type: "string", multiple: true },
      seed: { type: "string" },
      threads: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (!parsed) return 0;
  const { values: o, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError("vnmc run needs exactly one model, e.g. vnmc run model.vnm.onnx.");
  const path = positionals[0]!;
  const shapes = parseShapeOptions(o.shape ?? []);
  const seed = parsePositiveInt("--seed", o.seed, 1234, 0);
  const threads = parsePositiveInt("--threads", o.threads, 0, 0);
  const model = readModel(path);
  const { specs, feeds } = await generatedInputs(model, shapes, seed);

  let kind: RuntimeKind = "native";
  let note: string | undefined;
  if (o.fallback) kind = "fallback";
  else {
    const avail = nativeAvailability();
    if (!avail.ok) {
      kind = "fallback";
      note = `the vnmc native runtime is not available (${avail.reason}), so the model runs through its fallback function in onnxruntime-node`;
    }
  }
  if (note && !o.json) process.stderr.write(`note: ${note}.\n`);

  const session = await openSession(kind, path, threads);
  let outputs;
  const t0 = performance.now();
  try {
    outputs = await runOnce(session, feeds, path);
  } finally {
    await session.release();
  }
  const runMs = performance.now() - t0;
  const stats = Object.entries(outputs).map(([name, t]) => outputStats(name, t));

  if (o.json) {
    const result = {
      model: path,
      runtime: kind,
      ...(note ? { note } : {}),
      inputs: specs.map((s) => ({ name: s.name, type: dataTypeName(s.dataType), dims: s.dims })),
      outputs: stats,
      timing: { createMs: session.createMs, runMs },
    };
    process.stdout.write(JSON.stringify(result, null, 2) + "\n");
    return 0;
  }
  const lines = [
    `model    ${path}`,
    `runtime  ${RUNTIME_LABEL[kind]}`,
    `inputs   ${specs.map((s) => `${s.name} ${dataTypeName(s.dataType)} [${s.dims.join(", ")}]`).join("; ")}`,
    `time     ${fmtMs(runMs)} (first run; session creation ${fmtMs(session.createMs)})`,
    "",
    table([
      ["output", "type", "shape", "sum", "mean", "std", "min", "max", "hash"],
      ...stats.map((s) => [s.name, s.type, `[${s.dims.join(", ")}]`, fmtNum(s.sum), fmtNum(s.mean), fmtNum(s.std), fmtNum(s.min), fmtNum(s.max), s.hash]),
    ], 3),
  ];
  process.stdout.write(lines.join("\n") + "\n");
  return 0;
}
