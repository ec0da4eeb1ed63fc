import { deploy, DEPLOY_TARGETS, type DeployTarget } from "../deploy/deploy.js";
import { parseCommandArgs } from "./options.js";
import { UsageError } from "./usage-error.js";

export const DEPLOY_HELP = `Usage: vnmc deploy <model.vnm.onnx> --target <${DEPLOY_TARGETS.join("|")}> -o <dir>

Writes a deploy bundle: the compiled model (and its .data), vnmc's runtime library when it is built
(else the README says how to build it), a minimal example that loads the library and runs the model,
and a README (docs/deploy-bundles.md).

Options:
  -t, --target <t>      ${DEPLOY_TARGETS.join(", ")}
  -o, --output <dir>    output folder (created)
  --no-library          leave the runtime library out
  --json                print the files written as JSON
  -q, --quiet           print nothing but errors
  -h, --help            show this help`;

/** `vnmc deploy`: a thin layer over deploy(). */
export async function deployCommand(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("deploy", DEPLOY_HELP, {
    args,
    allowPositionals: true,
    options: {
      target: { type: "string", short: "t" },
      output: { type: "string", short: "o" },
      "no-library": { type: "boolean" },
      json: { type: "boolean" },
      quiet: { type: "boolean", short: "q" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (!parsed) return 0;
  const { values: o, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError("vnmc deploy needs exactly one compiled model, e.g. vnmc deploy model.vnm.onnx --target python -o dist/.");
  if (!o.target) throw new UsageError(`vnmc deploy needs --target ${DEPLOY_TARGETS.join("|")}.`);
  if (!(DEPLOY_TARGETS as readonly string[]).includes(o.target)) throw new UsageError(`--target must be one of ${DEPLOY_TARGETS.join(", ")} (got '${o.target}').`);
  if (!o.output) throw new UsageError("vnmc deploy needs an output folder, e.g. -o dist/.");
  const r = deploy(positionals[0]!, { target: o.target as DeployTarget, outDir: o.output, includeLibrary: !o["no-library"] });
  if (o.json) process.stdout.write(JSON.stringify(r, null, 2) + "\n");
  else if (!o.quiet) {
    process.stdout.write(`wrote ${r.outDir}: ${r.files.join(", ")}\n`);
    if (!r.library) process.stdout.write("vnmc's runtime library is not built here, so the bundle runs the fallback function; its README says how to add the library.\n");
  }
  return 0;
}
