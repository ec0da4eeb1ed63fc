#!/usr/bin/env node
// Builds and tests vnmc's native runtime (libvnmc_ort.so + the Node addon vnmc_node.node) from npm.
//
//   node runtime-ops/native.mjs build [--optional]          configure + build into runtime-ops/build
//   node runtime-ops/native.mjs test [--if-available] [--no-sanitize]
//                                                            build, ctest; then the ASan+UBSan build
//                                                            (runtime-ops/build/asan) and its ctest
//
// --optional / --if-available: when the toolchain (cmake, a C++ compiler, onnxruntime's headers) is
// missing, say so and exit 0, so that the TypeScript compiler installs and tests everywhere; the
// mocha tests that need the native library then skip. With --optional (npm's prepare step) a failed
// build is reported but does not fail the install either; `npm run build:native` shows the error.
// Environment: VNMC_SKIP_NATIVE=1 skips everything; VNMC_NATIVE_SANITIZE=0 is --no-sanitize;
// ORT_INCLUDE_DIR, NODE_INCLUDE_DIR, CXX, CMAKE_BUILD_PARALLEL_LEVEL as for CMake.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, realpathSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const [cmd, ...flags] = process.argv.slice(2);
const lenient = flags.includes("--optional") || flags.includes("--if-available");
const failSoft = flags.includes("--optional");
const sanitize = !flags.includes("--no-sanitize") && process.env.VNMC_NATIVE_SANITIZE !== "0";

const say = (msg) => process.stderr.write(`native: ${msg}\n`);

if (cmd !== "build" && cmd !== "test") {
  say("usage: node runtime-ops/native.mjs build [--optional] | test [--if-available] [--no-sanitize]");
  process.exit(2);
}
if (process.env.VNMC_SKIP_NATIVE === "1") {
  say("skipped (VNMC_SKIP_NATIVE=1); tests that need libvnmc_ort.so will be skipped.");
  process.exit(0);
}

function has(exe, args = ["--version"]) {
  const r = spawnSync(exe, args, { stdio: "ignore" });
  return r.status === 0;
}

function ortHeaders() {
  if (process.env.ORT_INCLUDE_DIR) return existsSync(join(process.env.ORT_INCLUDE_DIR, "onnxruntime_cxx_api.h")) ? process.env.ORT_INCLUDE_DIR : null;
  const xc = join(root, "node_modules", "com.github.asus4.onnxruntime", "Plugins", "iOS~", "onnxruntime.xcframework");
  if (!existsSync(xc)) return null;
  for (const d of readdirSync(xc).sort()) {
    const h = join(xc, d, "onnxruntime.framework", "Headers");
    if (existsSync(join(h, "onnxruntime_cxx_api.h"))) return h;
  }
  return null;
}

function nodeHeaders() {
  if (process.env.NODE_INCLUDE_DIR) return process.env.NODE_INCLUDE_DIR;
  const candidates = [join(dirname(dirname(realpathSync(process.execPath))), "include", "node")];
  const home = process.env.HOME;
  if (home) candidates.push(join(home, ".cache", "node-gyp", process.versions.node, "include", "node"));
  return candidates.find((d) => existsSync(join(d, "node_api.h"))) ?? null;
}

function missing() {
  if (process.platform !== "linux") return `the native runtime is built on Linux only (this is ${process.platform})`;
  if (!has("cmake")) return "cmake not found (install cmake >= 3.16)";
  const cxx = process.env.CXX || ["c++", "g++", "clang++"].find((c) => has(c));
  if (!cxx || !has(cxx)) return "no C++ compiler found (install g++ or clang++, or set CXX)";
  if (!ortHeaders()) return "onnxruntime's headers not found (the devDependency com.github.asus4.onnxruntime; run npm install, or set ORT_INCLUDE_DIR)";
  return null;
}

function run(exe, args, opts = {}) {
  const r = spawnSync(exe, args, { stdio: opts.quiet ? ["ignore", "pipe", "pipe"] : "inherit", encoding: "utf8", cwd: opts.cwd });
  if (r.status !== 0) {
    if (opts.quiet) process.stderr.write(`${r.stdout ?? ""}${r.stderr ?? ""}`);
    return false;
  }
  return true;
}

const jobs = process.env.CMAKE_BUILD_PARALLEL_LEVEL || String(Math.max(1, cpus().length));

function configureAndBuild(buildDir, extra) {
  const args = ["-S", here, "-B", buildDir, ...extra];
  if (!existsSync(join(buildDir, "CMakeCache.txt")) && has("ninja")) args.push("-G", "Ninja");
  if (process.env.ORT_INCLUDE_DIR) args.push(`-DORT_INCLUDE_DIR=${process.env.ORT_INCLUDE_DIR}`);
  const nodeInc = nodeHeaders();
  if (nodeInc) args.push(`-DNODE_INCLUDE_DIR=${nodeInc}`);
  if (process.env.CXX) args.push(`-DCMAKE_CXX_COMPILER=${process.env.CXX}`);
  return run("cmake", args, { quiet: true }) && run("cmake", ["--build", buildDir, "--parallel", jobs]);
}

function give(reasonOrFailure, failed) {
  if (failed && !failSoft) {
    say(`${reasonOrFailure}.`);
    process.exit(1);
  }
  say(`${reasonOrFailure}; the TypeScript compiler works without it, and tests that need libvnmc_ort.so will be skipped${failed ? " (run npm run build:native to see the error)" : ""}.`);
  process.exit(0);
}

const why = missing();
if (why) {
  if (lenient) give(`skipped: ${why}`, false);
  say(`cannot build: ${why}.`);
  process.exit(1);
}

const t0 = Date.now();
const release = join(here, "build");
if (!configureAndBuild(release, ["-DCMAKE_BUILD_TYPE=Release"])) give("the native build failed", true);
say(`built ${join(release, "libvnmc_ort.so")}${existsSync(join(release, "vnmc_node.node")) ? " and vnmc_node.node" : " (no Node addon: node_api.h not found; set NODE_INCLUDE_DIR)"} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);

if (cmd === "test") {
  if (!run("ctest", ["--output-on-failure"], { cwd: release })) {
    say("ctest failed (release build).");
    process.exit(1);
  }
  if (sanitize) {
    const asan = join(release, "asan");
    const t1 = Date.now();
    if (!configureAndBuild(asan, ["-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DVNMC_SANITIZE=ON", "-DVNMC_BUILD_BENCH=OFF"])) {
      say("the ASan+UBSan build failed.");
      process.exit(1);
    }
    if (!run("ctest", ["--output-on-failure"], { cwd: asan })) {
      say("ctest failed under ASan+UBSan.");
      process.exit(1);
    }
    say(`ASan+UBSan build and tests passed in ${((Date.now() - t1) / 1000).toFixed(0)} s`);
  }
}
