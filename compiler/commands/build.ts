import { build, BuildError, type BuildEvent, type BuildResult } from "../project/build.js";
import { parsePositiveInt, parseCommandArgs } from "./options.js";
import { UsageError } from "./usage-error.js";

export const BUILD_HELP = `Usage: vnmc build [options]

Compiles every model listed in vnmc.config.json (or .js / .mjs / .ts) that changed since the last build,
in parallel on worker threads, and checks each against its quality budget (docs/build.md). Unchanged
models are skipped; a model that misses its budget fails the build and its output is not written.

Options:
  -c, --config <file>     config file (default: vnmc.config.{json,js,mjs,ts} in the current folder)
  --only <name>           build only this model (repeatable)
  --force                 compile every model, whatever the cache says
  -j, --concurrency <n>   models compiled at once (default: the config's, else half the cores, at least 2)
  --json                  print the build result as JSON
  -q, --quiet             print nothing but errors
  -h, --help              show this help

Exit status: 0 built, 1 a model failed or missed its budget, 2 a bad config or option.`;

function line(e: BuildEvent): string | undefined {
  switch (e.type) {
    case "skip": return `  ${e.name}: up to date`;
    case "start": return `  ${e.name}: compiling (${e.reason})`;
    case "done": return `  ${e.name}: compiled in ${(e.ms / 1000).toFixed(1)} s -> ${e.output}`;
    case "fail": return `  ${e.name}: FAILED [${e.code}] ${e.message}`;
    default: return undefined;
  }
}

function summary(r: BuildResult): string {
  const n = (s: string) => r.models.filter((m) => m.status === s).length;
  return `vnmc build: ${n("compiled")} compiled, ${n("skipped")} up to date, ${n("failed")} failed (${(r.ms / 1000).toFixed(2)} s)`;
}

/** `vnmc build`: a thin layer over build(). */
export async function buildCommand(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("build", BUILD_HELP, {
    args,
    allowPositionals: false,
    options: {
      config: { type: "string", short: "c" },
      only: { type: "string", multiple: true },
      force: { type: "boolean" },
      concurrency: { type: "string", short: "j" },
      json: { type: "boolean" },
      quiet: { type: "boolean", short: "q" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (!parsed) return 0;
  const o = parsed.values;
  const print = !o.quiet && !o.json;
  const controller = new AbortController();
  const onSigint = () => controller.abort(new UsageError("Build interrupted; run vnmc build again to finish it (finished models are kept)."));
  process.once("SIGINT", onSigint);
  let result: BuildResult;
  try {
    result = await build({
      config: o.config,
      only: o.only,
      force: o.force,
      concurrency: o.concurrency === undefined ? undefined : parsePositiveInt("--concurrency", o.concurrency, 1),
      signal: controller.signal,
      onEvent: (e) => {
        const l = line(e);
        if (l && (print || (e.type === "fail" && !o.json))) (e.type === "fail" ? process.stderr : process.stdout).write(l + "\n");
      },
    });
  } catch (e) {
    if (!(e instanceof BuildError)) throw e;
    if (o.json) process.stdout.write(JSON.stringify(e.result, null, 2) + "\n");
    else process.stderr.write(`${summary(e.result)}\n`);
    return 1;
  } finally {
    process.off("SIGINT", onSigint);
  }
  if (o.json) process.stdout.write(JSON.stringify(result, null, 2) + "\n");
  else if (print) process.stdout.write(summary(result) + "\n");
  return 0;
}
