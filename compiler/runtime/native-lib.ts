/**
 * Where the native pieces of vnmc live, and whether they are usable here:
 * - libvnmc_ort.so: the onnxruntime custom-op library (runtime-ops/, built by `npm run build:native`);
 * - vnmc_node.node: the N-API addon that runs sessions with it (runtime-ops/node/);
 * - libonnxruntime.so.1: the runtime that onnxruntime-node ships, which the addon shares with it.
 *
 * VNMC_NATIVE_DIR overrides the folder holding libvnmc_ort.so and vnmc_node.node
 * (default: <vnmc>/runtime-ops/build).
 */
import { existsSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);

/** The vnmc package root (this file is dist/compiler/runtime/native-lib.js). */
export const PACKAGE_ROOT = resolve(fileURLToPath(new URL("../../../", import.meta.url)));

export const LIB_NAME = process.platform === "darwin" ? "libvnmc_ort.dylib" : process.platform === "win32" ? "vnmc_ort.dll" : "libvnmc_ort.so";
export const ADDON_NAME = "vnmc_node.node";

/** The folder holding the built native files. */
export function nativeDir(): string {
  const env = process.env.VNMC_NATIVE_DIR;
  return env ? resolve(env) : join(PACKAGE_ROOT, "runtime-ops", "build");
}

/** Absolute path of libvnmc_ort.so (whether or not it exists). */
export function libraryPath(): string {
  return join(nativeDir(), LIB_NAME);
}

/** Absolute path of the N-API addon (whether or not it exists). */
export function addonPath(): string {
  return join(nativeDir(), ADDON_NAME);
}

/**
 * The libonnxruntime that onnxruntime-node loads: its binding (bin/napi-v6/<platform>/<arch>/
 * onnxruntime_binding.node) finds it next to itself ($ORIGIN), so the addon must load that very file.
 */
export function ortRuntimePath(): string | null {
  let pkgDir: string;
  try {
    pkgDir = dirname(require.resolve("onnxruntime-node/package.json"));
  } catch {
    try {
      // Packages whose "exports" hide package.json: climb from the entry point.
      let d = dirname(require.resolve("onnxruntime-node"));
      while (!existsSync(join(d, "package.json")) && dirname(d) !== d) d = dirname(d);
      pkgDir = d;
    } catch {
      return null;
    }
  }
  const names = process.platform === "win32" ? ["onnxruntime.dll"] : process.platform === "darwin" ? null : ["libonnxruntime.so.1"];
  const binDir = join(pkgDir, "bin");
  const napiDirs = existsSync(binDir) ? ["napi-v6", ...readdirSync(binDir).filter((d) => d.startsWith("napi-v") && d !== "napi-v6")] : [];
  for (const napi of napiDirs) {
    const dir = join(binDir, napi, process.platform, process.arch);
    if (!existsSync(dir)) continue;
    const files = readdirSync(dir);
    const hit = names ? names.find((n) => files.includes(n)) : files.find((f) => /^libonnxruntime\.\d+(\.\d+)*\.dylib$/.test(f));
    if (hit) return join(dir, hit);
  }
  return null;
}

export interface NativeStatus {
  available: boolean;
  /** One sentence saying what is missing, when not available. */
  reason?: string;
  library: string;
  addon: string;
  runtime: string | null;
}

/** Whether the native runtime (library + addon + onnxruntime-node's runtime) is present. */
export function nativeStatus(): NativeStatus {
  const library = libraryPath();
  const addon = addonPath();
  const runtime = ortRuntimePath();
  const base = { library, addon, runtime };
  if (process.platform !== "linux") {
    return { ...base, available: false, reason: `the vnmc native runtime is built for Linux only (this is ${process.platform})` };
  }
  if (!existsSync(library)) return { ...base, available: false, reason: `${library} is not built (run npm run build:native in the vnmc package; it needs cmake and a C++ compiler)` };
  if (!existsSync(addon)) return { ...base, available: false, reason: `${addon} is not built (run npm run build:native; it needs Node's headers, node_api.h)` };
  if (!runtime) return { ...base, available: false, reason: "onnxruntime-node's libonnxruntime was not found (is onnxruntime-node installed?)" };
  return { ...base, available: true };
}
