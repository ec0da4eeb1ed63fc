import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "./usage-error.js";

/** Option values shared by the subcommands. */

/** Repeated `--shape name=1x128` options as a map of input name to dims. */
export function parseShapeOptions(list: string[]): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const s of list) {
    const m = /^(.+)=(\d+(?:x\d+)*)$/.exec(s);
    if (!m) throw new UsageError(`--shape '${s}' is not of the form name=1x128.`);
    out[m[1]!] = m[2]!.split("x").map(Number);
  }
  return out;
}

export function parsePositiveInt(name: string, v: string | undefined, dflt: number, min = 1): number {
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v) || Number(v) < min) throw new UsageError(`${name} needs an integer >= ${min} (got '${v}').`);
  return Number(v);
}

/**
 * parseArgs for a subcommand: a bad option is a usage error pointing at the command's --help, and
 * -h/--help prints `help` and yields undefined (the command then exits 0).
 */
export function parseCommandArgs<T extends ParseArgsConfig>(command: string, help: string, config: T): ReturnType<typeof parseArgs<T>> | undefined {
  let parsed: ReturnType<typeof parseArgs<T>>;
  try {
    parsed = parseArgs(config);
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split("\n")[0]} (see vnmc ${command} --help).`);
  }
  if ((parsed.values as Record<string, unknown>).help) {
    process.stdout.write(help + "\n");
    return undefined;
  }
  return parsed;
}
