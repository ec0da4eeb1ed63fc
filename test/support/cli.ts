import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

/** Path of the built CLI (tests run from dist/test). */
export const CLI = fileURLToPath(new URL("../../compiler/cli.js", import.meta.url));

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], opts: { cwd?: string } = {}): CliRun {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", cwd: opts.cwd, env: { ...process.env, VNMC_DEBUG: "" } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
