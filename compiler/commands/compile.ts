import { renameSync, writeFileSync } from "node:fs";
import { compile } from "../api.js";
import { type CompileOptions, DEFAULT_CALIBRATED_SCORE, DEFAULT_MIN_SIZE, DEFAULT_VNM } from "../compile.js";
import { DEFAULT_PERMUTE_TIME_TEXT } from "../weights/permutation-search.js";
import { DEFAULT_SPARSEGPT_REFIT_SWEEPS, REFIT_MAX_RELATIVE_COST } from "../weights/sparsegpt.js";
import { parseTargetNumber } from "../vnm/choose-step.js";
import { DEFAULT_TOKENS } from "../vnm/choose-vnm.js";
import { progressBar } from "../progress.js";
import { renderReport } from "../report.js";
import { parseShapeOptions, parseCommandArgs } from "./options.js";
import { UsageError } from "./usage-error.js";

export const COMPILE_HELP = `Usage: vnmc compile <model.onnx> [options]

Options:
  -o, --output <file>     output model (default: <model>.vnm.onnx next to the input)
  --vnm <V:N:M>           sparsity pattern, V in 8..256 (powers of 2), N = 2, M in 4..32 (default ${DEFAULT_VNM})
  --sparsity <s>          instead of --vnm: choose V in 16..128 and M in 4..16 with at least this sparsity
                          (e.g. 0.75), the one with the least calibration error (docs/choosing-vnm.md)
  --speedup <S>           instead of --vnm: choose V and M whose predicted GPU GEMM speedup is at least S
                          (e.g. 1.6; measured ratios where known, a fitted model elsewhere)
  --per-layer             with --sparsity or --speedup: choose V and M per layer, the target holding for
                          the model's GEMMs together (sensitive layers keep more weights)
  --tokens <n>            tokens per GEMM call for the speedup prediction (default ${DEFAULT_TOKENS}: a decode step;
                          use batch x sequence length for encoders and prefill)
  --include <glob>        only rewrite MatMul/Gemm nodes whose name matches (repeatable)
  --exclude <glob>        never rewrite nodes whose name matches, e.g. "*lm_head*" (repeatable)
  --min-size <n>          leave weights with fewer than n elements dense (default ${DEFAULT_MIN_SIZE})
  --external-data         write weights to <output>.data (automatic above 2 GB)
  --calib <DIR|random:N>  calibration samples: a folder of sample folders (input_0.pb, ... as in ONNX
                          test data, or <input>.npy files), .npz/.npy files, or one such file;
                          random:N generates N samples (data-free; dynamic dims from --shape)
  --method <m>            how kept weights are found: select (keep the original weights of the mask
                          --score chooses) or sparsegpt (needs --calib; masks by OBS saliency, and the
                          KEPT WEIGHTS ARE UPDATED with the inverse Hessian XᵀX to absorb the error).
                          Default: sparsegpt with --calib of real samples (the most accurate, see
                          docs/quality.md) unless its XᵀX would exceed 2 GiB; select otherwise
  --score <s>             for --method select: magnitude, wanda or ria (default ${DEFAULT_CALIBRATED_SCORE} with --calib,
                          magnitude without; wanda and ria need --calib; giving one selects --method select)
  --no-sequential         with --method sparsegpt: gather every layer's XᵀX on the dense model in one pass
                          instead of layer by layer (default --sequential: each stage of layers is fitted
                          to the inputs of the model whose earlier layers are already pruned; one
                          calibration pass per stage)
  --no-refit              with --method sparsegpt: keep the OBS pass's weights instead of re-solving
                          each row's kept weights exactly by least squares once the mask is fixed
                          (default --refit, on the layers where it costs at most ${REFIT_MAX_RELATIVE_COST}x the OBS pass)
  --refit-sweeps <n>      with --method sparsegpt: at most n passes of an exact local search over each
                          row's 2-of-4 choices before the refit, stopping at a pass without a swap
                          (default ${DEFAULT_SPARSEGPT_REFIT_SWEEPS}, i.e. to convergence, on the layers where it is affordable,
                          none on wide ones; an explicit n runs on every layer whatever it costs; 0
                          turns it off)
  --permute, --no-permute search input/output channel permutations that keep more of the score (free
                          at run time: folded into columns and row_index, or into the producing layer);
                          default: on with --calib, off without
  --permute-time <s>      search budget in seconds of one core's work for the whole model, split by
                          weight size; counted in operations, so the output is reproducible
                          (default ${DEFAULT_PERMUTE_TIME_TEXT})
  --shape <name=AxBxC>    input shape for verification and random:N when the model has dynamic dims (repeatable)
  --no-verify             skip running the models in onnxruntime to check the result
  --threads <n>           worker threads for pruning (default: all cores; 0 = main thread only)
  --report <file.json>    write the full report as JSON
  --json                  print the report as JSON instead of the table
  -q, --quiet             print nothing but errors
  -h, --help              show this help`;

export function parseIntOption(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`${name} needs a non-negative integer (got '${v}').`);
  return Number(v);
}

export function parseSecondsOption(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(v)) throw new UsageError(`${name} needs a non-negative number of seconds (got '${v}').`);
  return Number(v);
}

/** `vnmc compile`: the CLI is a thin layer over the library API (`compile` of compiler/api.ts). */
export async function compileCommand(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("compile", COMPILE_HELP, {
    args,
    allowPositionals: true,
    options: {
      output: { type: "string", short: "o" },
      vnm: { type: "string" },
      include: { type: "string", multiple: true },
      exclude: { type: "string", multiple: true },
      "min-size": { type: "string" },
      "external-data": { type: "boolean" },
      shape: { type: "string", multiple: true },
      calib: { type: "string" },
      score: { type: "string" },
      method: { type: "string" },
      permute: { type: "boolean" },
      "no-permute": { type: "boolean" },
      sequential: { type: "boolean" },
      "no-sequential": { type: "boolean" },
      refit: { type: "boolean" },
      "no-refit": { type: "boolean" },
      "refit-sweeps": { type: "string" },
      "permute-time": { type: "string" },
      sparsity: { type: "string" },
      speedup: { type: "string" },
      "per-layer": { type: "boolean" },
      tokens: { type: "string" },
      "no-verify": { type: "boolean" },
      threads: { type: "string" },
      report: { type: "string" },
      json: { type: "boolean" },
      quiet: { type: "boolean", short: "q" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (!parsed) return 0;
  const { values: o, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError("vnmc compile needs exactly one input model, e.g. vnmc compile model.onnx.");
  const bar = o.quiet || o.json ? undefined : progressBar(process.stderr);
  if (o.permute && o["no-permute"]) throw new UsageError("--permute and --no-permute contradict each other; give one.");
  if (o.sequential && o["no-sequential"]) throw new UsageError("--sequential and --no-sequential contradict each other; give one.");
  if (o.refit && o["no-refit"]) throw new UsageError("--refit and --no-refit contradict each other; give one.");
  const opts: CompileOptions = {
    vnm: o.vnm,
    output: o.output,
    include: o.include,
    exclude: o.exclude,
    minSize: parseIntOption("--min-size", o["min-size"]),
    externalData: o["external-data"],
    verify: !o["no-verify"],
    threads: parseIntOption("--threads", o.threads),
    shapes: parseShapeOptions(o.shape ?? []),
    calib: o.calib,
    score: o.score as CompileOptions["score"],
    method: o.method as CompileOptions["method"],
    permute: o["no-permute"] ? false : o.permute,
    sequential: o["no-sequential"] ? false : o.sequential,
    refit: o["no-refit"] ? false : o.refit,
    refitSweeps: parseIntOption("--refit-sweeps", o["refit-sweeps"]),
    permuteTime: parseSecondsOption("--permute-time", o["permute-time"]),
    sparsity: parseTargetNumber("--sparsity", o.sparsity),
    speedup: parseTargetNumber("--speedup", o.speedup),
    perLayer: o["per-layer"],
    tokens: parseTargetNumber("--tokens", o.tokens),
    onProgress: bar,
  };
  let result;
  try {
    result = await compile(positionals[0]!, opts);
  } finally {
    bar?.clear();
  }
  const { report } = result;
  if (o.report) {
    const tmp = `${o.report}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify(report, null, 2) + "\n");
    renameSync(tmp, o.report);
  }
  if (o.json) process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  else if (!o.quiet) {
    process.stdout.write(renderReport(report) + "\n");
    for (const d of report.diagnostics.filter((x) => x.severity === "warning")) process.stderr.write(`warning [${d.code}]: ${d.message}\n`);
  }
  return 0;
}

