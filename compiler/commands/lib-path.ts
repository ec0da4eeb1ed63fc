import { existsSync } from "node:fs";
import { Codes, VnmcError } from "../diagnostics.js";
import { addonPath, libraryPath } from "../runtime/native-lib.js";
import { UsageError } from "./usage-error.js";

export const LIB_PATH_HELP = `Usage: vnmc lib-path [--addon]

Prints the absolute path of libvnmc_ort.so, the onnxruntime custom-op library with vnmc's kernels,
for SessionOptions.register_custom_ops_library (Python) or RegisterCustomOpsLibrary_V2 (C/C++).
Exits with status 1 when it is not built (npm run build:native builds it).

Options:
  --addon     print the path of the Node addon (vnmc_node.node) instead
  -h, --help  show this help`;

/** `vnmc lib-path`: where libvnmc_ort.so is, for scripts. */
export async function libPathCommand(args: string[]): Promise<number> {
  const addon = args.includes("--addon");
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(LIB_PATH_HELP + "\n");
    return 0;
  }
  const unknown = args.filter((a) => a !== "--addon");
  if (unknown.length) throw new UsageError(`vnmc lib-path takes no argument '${unknown[0]}' (see vnmc lib-path --help).`);
  const path = addon ? addonPath() : libraryPath();
  if (!existsSync(path)) {
    throw new VnmcError(Codes.NATIVE_UNAVAILABLE, `${path} is not built; run npm run build:native in the vnmc package (it needs cmake and a C++ compiler).`);
  }
  process.stdout.write(path + "\n");
  return 0;
}
