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
