import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Codes, compile, deploy, VnmcError } from "../../compiler/index.js";
import { libraryPath, LIB_NAME, ortRuntimePath } from "../../compiler/runtime/native-lib.js";
import { writeModelFile } from "../../compiler/serde/write.js";
import { buildModel } from "../../models/index.js";
import { runCli } from "../support/cli.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** onnxruntime's C++ headers, as runtime-ops/native.mjs finds them (the devDependency com.github.asus4.onnxruntime). */
function ortHeaders(): string | undefined {
  if (process.env.ORT_INCLUDE_DIR) return process.env.ORT_INCLUDE_DIR;
  const xc = join(ROOT, "node_modules/com.github.asus4.onnxruntime/Plugins/iOS~/onnxruntime.xcframework");
  if (!existsSync(xc)) return undefined;
  for (const d of readdirSync(xc)) {
    const h = join(xc, d, "onnxruntime.framework/Headers");
    if (existsSync(join(h, "onnxruntime_cxx_api.h"))) return h;
  }
  return undefined;
}

describe("vnmc deploy", function () {
  this.timeout(180_000);
  // Inside the package so that the node example resolves onnxruntime-node as an installed project would.
  const dir = fileURLToPath(new URL(`./deploy-tmp-${process.pid}`, import.meta.url));
  let model: string;
  before(async () => {
    mkdirSync(dir, { recursive: true });
    const src = join(dir, "mlp.onnx");
    writeModelFile(buildModel("mlp", { inFeatures: 64, hidden: 128, outFeatures: 32 }), src);
    model = (await compile(src, { minSize: 0, vnm: "16:2:8", verify: false, externalData: true })).outputPath!;
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("node: writes the model, its data, the library, a README, and the example runs", () => {
    const out = join(dir, "node");
    const r = runCli(["deploy", model, "--target", "node", "-o", out]);
    expect(r.code, r.stderr).to.equal(0);
    const lib = existsSync(libraryPath());
    expect(readdirSync(out).sort()).to.deep.equal(["README.md", "mlp.vnm.onnx", "mlp.vnm.onnx.data", ...(lib ? ["lib"] : []), "package.json", "run.mjs"].sort());
    const readme = readFileSync(join(out, "README.md"), "utf8");
    expect(readme).to.contain("- `input`: float32 [batch, 64]");
    expect(readme).to.contain(lib ? `lib/${LIB_NAME}` : "npm run build:native");
    // As an installed project with vnmc: the native runtime when built, else onnxruntime-node.
    mkdirSync(join(out, "node_modules"));
    symlinkSync(ROOT, join(out, "node_modules/vnmc"));
    const run = spawnSync(process.execPath, ["run.mjs"], { cwd: out, encoding: "utf8" });
    expect(run.status, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/^(vnmc kernels|fallback function \(onnxruntime-node\))\noutput: shape \[1, 32\]\n$/);
  });

  it("cpp: the example compiles against onnxruntime's headers and runs on the library", function () {
    const out = join(dir, "cpp");
    deploy(model, { target: "cpp", outDir: out });
    expect(readFileSync(join(out, "CMakeLists.txt"), "utf8")).to.contain("ONNXRUNTIME_DIR");
    const headers = ortHeaders();
    const ort = ortRuntimePath();
    if (!headers || !ort || spawnSync("g++", ["--version"]).status !== 0) this.skip();
    const exe = join(out, "run");
    const cc = spawnSync("g++", ["-std=c++17", "-O1", "-o", exe, join(out, "main.cpp"), `-I${headers}`, ort!, `-Wl,-rpath,${join(ort!, "..")}`], { encoding: "utf8" });
    expect(cc.status, cc.stderr).to.equal(0);
    const run = spawnSync(exe, [out], { encoding: "utf8" });
    expect(run.status, run.stderr).to.equal(0);
    expect(run.stdout).to.equal(`${existsSync(libraryPath()) ? "vnmc kernels" : "fallback function (no vnmc library)"}\noutput: shape [1, 32]\n`);
  });

  it("python: writes run.py and requirements.txt, and runs where onnxruntime is installed", function () {
    const out = join(dir, "python");
    deploy(model, { target: "python", outDir: out, includeLibrary: false });
    expect(readdirSync(out).sort()).to.deep.equal(["README.md", "mlp.vnm.onnx", "mlp.vnm.onnx.data", "requirements.txt", "run.py"]);
    expect(readFileSync(join(out, "README.md"), "utf8")).to.contain("was not built where this bundle was made");
    const py = process.env.PYTHON ?? "python3";
    if (spawnSync(py, ["-c", "import onnxruntime, numpy"]).status !== 0) this.skip();
    const run = spawnSync(py, [join(out, "run.py")], { encoding: "utf8" });
    expect(run.status, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/fallback function[^\n]*\noutput: shape \[1, 32\]/);
  });

  it("refuses a model vnmc did not compile, a bad target, and missing options, with what to do", () => {
    const e = (() => { try { deploy(join(dir, "mlp.onnx"), { target: "node", outDir: join(dir, "x") }); } catch (err) { return err as VnmcError; } })();
    expect(e?.code).to.equal(Codes.DEPLOY_FAILED);
    expect(e?.message).to.match(/is not a model compiled by vnmc; compile it first/);
    expect(runCli(["deploy", model, "--target", "java", "-o", dir]).stderr).to.match(/--target must be one of python, cpp, node \(got 'java'\)/);
    const noOut = runCli(["deploy", model, "--target", "node"]);
    expect(noOut.code).to.equal(2);
    expect(noOut.stderr).to.match(/needs an output folder/);
  });
});
