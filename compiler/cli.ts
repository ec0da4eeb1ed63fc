#!/usr/bin/env node
import { writeFileSync, renameSync } from "node:fs";
import { parseArgs } from "node:util";
import { type CompileOptions, compileFile, DEFAULT_MIN_SIZE, DEFAULT_VNM } from "./compile.js";
import { Codes, VnmcError } from "./diagnostics.js";
import { progressBar } from "./progress.js";
import { renderReport } from "./report.js";
import { VERSION } from "./version.js";

const HELP = `vnmc ${VERSION} — compile ONNX models to V:N:M structured sparsity

Usage:
  vnmc compile <model.onnx> [options]
  vnmc --version | --help

Compile options:
  -o, --output <file>     output model (default: <model>.vnm.onnx next to the input)
  --vnm <V:N:M>           sparsity pattern, V in 8..256 (powers of 2), N = 2, M in 4..32 (default ${DEFAULT_VNM})
  --include <glob>        only rewrite MatMul/Gemm nodes whose name matches (repeatable)
  --exclude <glob>        never rewrite nodes whose name matches, e.g. "*lm_head*" (repeatable)
  --min-size <n>          leave weights with fewer than n elements dense (default ${DEFAULT_MIN_SIZE})
  --external-data         write weights to <output>.data (automatic above 2 GB)
  --shape <name=AxBxC>    input shape for verification when the model has dynamic dims (repeatable)
  --no-verify             skip running the models in onnxruntime to check the result
  --threads <n>           worker threads for pruning (default: all cores; 0 = main thread only)
  --report <file.json>    write the full report as JSON
  --json                  print the report as JSON instead of the table
  -q, --quiet             print nothing but errors
  -h, --help              show this help

Exit status: 0 success, 1 error, 2 usage error.`;

class UsageError extends VnmcError {
  constructor(message: string) {
    super(Codes.USAGE, message, "usage");
  }
}

function parseShapes(list: string[]): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const s of list) {
    const m = /^(.+)=(\d+(?:x\d+)*)$/.exec(s);
    if (!m) throw new UsageError(`--shape '${s}' is not of the form name=1x128.`);
    out[m[1]!] = m[2]!.split("x").map(Number);
  }
  return out;
}

function parseIntOption(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`${name} needs a non-negative integer (got '${v}').`);
  return Number(v);
}

async function compileCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
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
        "no-verify": { type: "boolean" },
        threads: { type: "string" },
        report: { type: "string" },
        json: { type: "boolean" },
        quiet: { type: "boolean", short: "q" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split("\n")[0]} (see vnmc compile --help).`);
  }
  const { values: o, positionals } = parsed;
  if (o.help) {
    process.stdout.write(HELP + "\n");
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("vnmc compile needs exactly one input model, e.g. vnmc compile model.onnx.");
  const bar = o.quiet || o.json ? undefined : progressBar(process.stderr);
  const opts: CompileOptions = {
    vnm: o.vnm,
    output: o.output,
    include: o.include,
    exclude: o.exclude,
    minSize: parseIntOption("--min-size", o["min-size"]),
    externalData: o["external-data"],
    verify: !o["no-verify"],
    threads: parseIntOption("--threads", o.threads),
    shapes: parseShapes(o.shape ?? []),
    onProgress: bar,
  };
  let result;
  try {
    result = await compileFile(positionals[0]!, opts);
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

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === "--help" || command === "-h" || command === "help") {
      process.stdout.write(HELP + "\n");
      return command === undefined ? 2 : 0;
    }
    if (command === "--version" || command === "-v") {
      process.stdout.write(`${VERSION}\n`);
      return 0;
    }
    if (command === "compile") return await compileCommand(rest);
    throw new UsageError(`Unknown command '${command}'; run vnmc --help for the list of commands.`);
  } catch (e) {
    if (e instanceof VnmcError) {
      process.stderr.write(`vnmc: ${e.message} [${e.code}]\n`);
      return e.kind === "usage" ? 2 : 1;
    }
    // Not a user error: one line, plus the stack only when asked for.
    process.stderr.write(`vnmc: internal error: ${(e as Error)?.message ?? e}. Set VNMC_DEBUG=1 for details and report it.\n`);
    if (process.env.VNMC_DEBUG) process.stderr.write(`${(e as Error)?.stack}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
