#!/usr/bin/env node
import { benchCommand } from "./commands/bench.js";
import { buildCommand } from "./commands/build.js";
import { compileCommand } from "./commands/compile.js";
import { deployCommand } from "./commands/deploy.js";
import { libPathCommand } from "./commands/lib-path.js";
import { runCommand } from "./commands/run.js";
import { UsageError } from "./commands/usage-error.js";
import { VnmcError } from "./diagnostics.js";
import { VERSION } from "./version.js";

/** Subcommands: each lives in commands/<name>.ts and returns its exit status. */
const COMMANDS: Record<string, { summary: string; run: (args: string[]) => Promise<number> }> = {
  compile: { summary: "compile an ONNX model to V:N:M sparsity (vnmc compile --help)", run: compileCommand },
  run: { summary: "run a model once on generated inputs, on vnmc's kernels when built (vnmc run --help)", run: runCommand },
  bench: { summary: "time dense vs vnmc kernels vs fallback on the same inputs (vnmc bench --help)", run: benchCommand },
  build: { summary: "compile the models of vnmc.config.json that changed, check quality budgets (vnmc build --help)", run: buildCommand },
  deploy: { summary: "write a deploy bundle (model, runtime library, runnable example) for python, cpp or node", run: deployCommand },
  "lib-path": { summary: "print the path of libvnmc_ort.so, the onnxruntime custom-op library", run: libPathCommand },
};

const HELP = () => `vnmc ${VERSION} — compile ONNX models to V:N:M structured sparsity

Usage:
  vnmc <command> [options]     (vnmc <command> --help for its options)
  vnmc --version | --help

Commands:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`).join("\n")}

Example:
  vnmc compile model.onnx --vnm 64:2:8      writes model.vnm.onnx

Exit status: 0 success, 1 error, 2 usage error.`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === "--help" || command === "-h" || command === "help") {
      process.stdout.write(HELP() + "\n");
      return command === undefined ? 2 : 0;
    }
    if (command === "--version" || command === "-v") {
      process.stdout.write(`${VERSION}\n`);
      return 0;
    }
    const cmd = COMMANDS[command];
    if (cmd) return await cmd.run(rest);
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
