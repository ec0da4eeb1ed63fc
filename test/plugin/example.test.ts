import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import ts from "typescript";
import { queryOptions } from "../../compiler/bundler/plugin.js";
import { CLI } from "../support/cli.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

function node(args: string[], cwd: string): { code: number; out: string } {
  const r = spawnSync(process.execPath, args, { cwd, encoding: "utf8", env: { ...process.env, VNMC_DEBUG: "" } });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** examples/app, built as CI builds it: vnmc build + tsc, then a real Vite build and a real esbuild build. */
describe("examples/app: vnmc build, typed modules, Vite and esbuild plugin", function () {
  this.timeout(180_000);
  // A copy inside the package, with node_modules/vnmc linking to it, as `npm install` in the example makes.
  const app = fileURLToPath(new URL(`./tmp-${process.pid}/app`, import.meta.url));
  before(() => {
    cpSync(join(ROOT, "examples/app"), app, { recursive: true, filter: (src) => !/\/(node_modules|dist|\.vnmc-cache)$/.test(src) && !src.endsWith(".onnx") });
    mkdirSync(join(app, "node_modules"));
    symlinkSync(ROOT, join(app, "node_modules/vnmc"));
    const r = node(["scripts/make-model.mjs"], app);
    expect(r.code, r.out).to.equal(0);
  });
  after(() => rmSync(join(app, ".."), { recursive: true, force: true }));

  it("vnmc build compiles within budget and writes the typed module; the sources type-check under --strict", () => {
    const r = node([CLI, "build"], app);
    expect(r.code, r.out).to.equal(0);
    expect(r.out).to.match(/mlp: compiled/);
    expect(existsSync(join(app, "dist/models/mlp.vnm.onnx"))).to.equal(true);
    const config = ts.getParsedCommandLineOfConfigFile(join(app, "tsconfig.json"), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} })!;
    const program = ts.createProgram(config.fileNames, config.options);
    const errors = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, " "));
    expect(errors, errors.join("\n")).to.deep.equal([]);
    expect(node([CLI, "build"], app).out).to.match(/mlp: up to date/);
  });

  it("Vite build: emits the compiled model as an asset and the bundle runs it", async () => {
    const { build } = await import("vite");
    await build({ root: app, configFile: join(app, "vite.config.ts"), logLevel: "silent" });
    const assets = readdirSync(join(app, "dist/vite/vnm"));
    expect(assets).to.have.length(1);
    expect(assets[0]).to.match(/^mlp-[0-9a-f]{8}\.vnm\.onnx$/);
    expect(readFileSync(join(app, "dist/vite/vnm", assets[0]!)).includes("VNMSparseGemm")).to.equal(true);
    const mod = await import(pathToFileURL(join(app, "dist/vite/main.js")).href);
    expect(fileURLToPath(mod.modelUrl)).to.equal(join(app, "dist/vite/vnm", assets[0]!));
    expect(await mod.main()).to.deep.equal({ vnm: "16:2:8", dims: [2, 32] });
  });

  it("esbuild build: the same, from the cache (one compile for both bundlers)", async () => {
    const cache = join(app, "node_modules/.cache/vnmc/models");
    const [entry] = readdirSync(cache);
    const before = statSync(join(cache, entry!)).mtimeMs;
    const r = node(["esbuild.mjs"], app);
    expect(r.code, r.out).to.equal(0);
    expect(readdirSync(cache)).to.deep.equal([entry]);
    expect(statSync(join(cache, entry!)).mtimeMs).to.equal(before);
    const assets = readdirSync(join(app, "dist/esbuild/vnm"));
    expect(assets).to.deep.equal(readdirSync(join(app, "dist/vite/vnm")));
    const mod = await import(pathToFileURL(join(app, "dist/esbuild/main.js")).href);
    expect(await mod.main()).to.deep.equal({ vnm: "16:2:8", dims: [2, 32] });
  });

  it("the Vite dev server serves the cached model", async () => {
    const { createServer } = await import("vite");
    const server = await createServer({ root: app, configFile: join(app, "vite.config.ts"), logLevel: "silent", server: { middlewareMode: true, ws: false } });
    try {
      const m = await server.transformRequest("/models/mlp.onnx?vnm");
      expect(m?.code ?? "").to.contain("/@fs");
      expect(m?.code ?? "").to.contain("node_modules/.cache/vnmc/models/");
    } finally {
      await server.close();
    }
  });

  it("a budget missed or a bad query option fails the bundle with vnmc's message", async () => {
    const { build } = await import("vite");
    const vnmc = (await import("../../compiler/bundler/plugin.js")).default;
    const run = (opts: object, entry: string) => build({
      root: app, configFile: false, logLevel: "silent", base: "./",
      plugins: [vnmc.vite(opts)],
      build: { write: false, lib: { entry, formats: ["es"], fileName: "x" }, rollupOptions: { external: [/^node:/, "onnxruntime-node"] } },
    }).then(() => "built", (e: Error) => e.message);
    expect(await run({ defaults: { minSize: 0 }, budget: { minCosine: 0.9999 } }, "src/main.ts")).to.match(/mlp\.onnx missed its quality budget: output 'output' has cosine .* under minCosine 0\.9999/);
    const { writeFileSync } = await import("node:fs");
    writeFileSync(join(app, "src/bad.ts"), `// @ts-nocheck\nimport u from "../models/mlp.onnx?minsize=0&vnm";\nexport default u;\n`);
    expect(await run({}, "src/bad.ts")).to.match(/unknown key 'models\[0\]\.minsize' \(did you mean 'minSize'\?\)/);
  });

  it("parses query options", () => {
    expect(queryOptions("vnm")).to.deep.equal({});
    expect(queryOptions("vnm=16:2:8&minSize=0&exclude=a&exclude=b&permute&verify=false")).to.deep.equal({ vnm: "16:2:8", minSize: 0, exclude: ["a", "b"], permute: true, verify: false });
  });
});
