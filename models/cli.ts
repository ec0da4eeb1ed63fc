#!/usr/bin/env node
/**
 * vnmc-models: write a seeded test model.
 *   node dist/models/cli.js <mlp|bert|vit|llama> -o out.onnx [--dtype fp16] [--seed N] [--external-data]
 *        [--hidden N] [--layers N] [--heads N] … (any numeric or boolean option of the builder, kebab-case)
 */
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { VnmcError } from "../compiler/diagnostics.js";
import { writeModelFile } from "../compiler/serde/write.js";
import { buildModel, isModelKind, MODEL_KINDS, registry } from "./index.js";

class UsageError extends Error {}

const USAGE = `usage: vnmc-models <${MODEL_KINDS.join("|")}> -o OUT.onnx [--dtype fp32|fp16] [--seed N] [--external-data] [--<option> N]...`;

const camel = (s: string) => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

export interface CliArgs {
  kind: string;
  output: string;
  externalData: boolean;
  options: Record<string, number | boolean | string>;
}

export function parseArgs(argv: string[]): CliArgs {
  const [kind, ...rest] = argv;
  if (kind === undefined) throw new UsageError(USAGE);
  if (!isModelKind(kind)) throw new UsageError(`Unknown model kind '${kind}'; choose one of ${MODEL_KINDS.join(", ")}.`);
  const defaults = registry[kind].defaults as unknown as Record<string, unknown>;
  const args: CliArgs = { kind, output: "", externalData: false, options: {} };
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i]!;
    const value = () => {
      const v = rest[++i];
      if (v === undefined) throw new UsageError(`Option '${flag}' needs a value.`);
      return v;
    };
    if (flag === "-o" || flag === "--output") args.output = value();
    else if (flag === "--external-data") args.externalData = true;
    else if (flag === "--dtype") {
      const d = value();
      if (d !== "fp32" && d !== "fp16") throw new UsageError(`--dtype must be fp32 or fp16, not '${d}'.`);
      args.options.dtype = d;
    } else if (flag.startsWith("--") && flag !== "--dtype") {
      const key = camel(flag.slice(2));
      const def = defaults[key];
      if (typeof def === "boolean") args.options[key] = true;
      else if (typeof def === "number") {
        const raw = value();
        const n = Number(raw);
        const integral = key !== "ropeTheta";
        if (raw.trim() === "" || !Number.isFinite(n) || (integral && !Number.isInteger(n)) || (key !== "seed" && n < 0)) {
          throw new UsageError(`Option '${flag}' needs a ${integral ? "non-negative integer" : "number"}, not '${raw}'.`);
        }
        args.options[key] = n;
      } else {
        const known = Object.keys(defaults).filter((k) => typeof defaults[k] !== "string").map((k) => `--${kebab(k)}`);
        throw new UsageError(`Unknown option '${flag}' for ${kind}; it takes ${known.join(", ")}.`);
      }
    } else throw new UsageError(`Unexpected argument '${flag}'; see --help.`);
  }
  if (args.output === "") throw new UsageError("Give the output file with -o OUT.onnx.");
  return args;
}

export function main(argv: string[]): number {
  if (argv[0] === "-h" || argv[0] === "--help") {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  let args: CliArgs;
  try {
    args = parseArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`vnmc-models: ${e.message}\n`);
    return 2;
  }
  let model;
  try {
    model = buildModel(args.kind as "mlp", args.options);
  } catch (e) {
    process.stderr.write(`vnmc-models: These ${args.kind} options do not make a model: ${(e as Error).message}.\n`);
    return 2;
  }
  try {
    mkdirSync(dirname(resolve(args.output)), { recursive: true });
    const r = writeModelFile(model, args.output, { externalData: args.externalData });
    const params = model.graph.initializers.reduce((n, v) => n + v.initializer!.dims.reduce((a, b) => a * b, 1), 0);
    const data = r.dataPath ? ` + ${r.dataBytes} bytes in ${r.dataPath}` : "";
    process.stdout.write(`wrote ${r.path} (${args.kind}, ${model.graph.nodes.length} nodes, ${params} parameters, ${r.bytes} bytes${data})\n`);
    return 0;
  } catch (e) {
    const msg = e instanceof VnmcError ? e.message : `Could not write '${args.output}': ${(e as Error).message}.`;
    process.stderr.write(`vnmc-models: ${msg}\n`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}
