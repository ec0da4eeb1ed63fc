import { expect } from "chai";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { build, BuildError, checkBudget, type BuildResult, Codes, type ModelBuildResult, VnmcError } from "../../compiler/index.js";
import { writeModelFile } from "../../compiler/serde/write.js";
import { buildModel } from "../../models/index.js";
import { runCli } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";

const tiny = (seed: number) => buildModel("mlp", { inFeatures: 64, hidden: 128, outFeatures: 32, seed });

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a rejection");
}

const statuses = (r: BuildResult) => Object.fromEntries(r.models.map((m: ModelBuildResult) => [m.name, m.status]));

describe("vnmc build", function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let dir: string;
  const writeConfig = (config: unknown, name = "vnmc.config.json") => writeFileSync(join(dir, name), JSON.stringify(config, null, 2));
  const config = (bOptions: Record<string, unknown> = {}) => ({
    defaults: { minSize: 0, vnm: "16:2:8" },
    concurrency: 2,
    models: [
      { input: "models/a.onnx", output: "out/a.vnm.onnx" },
      { input: "models/b.onnx", output: "out/b.vnm.onnx", calib: "random:2", budget: { minCosine: 0.5 }, ...bOptions },
    ],
  });
  before(() => {
    tmp = tempDir("vnmc-build-test-");
    dir = tmp.dir;
    mkdirSync(join(dir, "models"));
    writeModelFile(tiny(1), join(dir, "models/a.onnx"));
    writeModelFile(tiny(2), join(dir, "models/b.onnx"));
  });
  after(() => tmp.cleanup());

  describe("incremental builds", () => {
    it("compiles every model on the first run, in parallel, and nothing on the second", async () => {
      writeConfig(config());
      const starts: string[] = [];
      const first = await build({ cwd: dir, onEvent: (e) => void (e.type === "start" && starts.push(e.name)) });
      expect(statuses(first)).to.deep.equal({ a: "compiled", b: "compiled" });
      expect(starts.sort()).to.deep.equal(["a", "b"]);
      expect(first.models[1]!.quality!.source).to.equal("calibration");
      expect(first.models[0]!.report!.output).to.equal(join(dir, "out/a.vnm.onnx"));
      const t = performance.now();
      const second = await build({ cwd: dir });
      const ms = performance.now() - t;
      expect(statuses(second)).to.deep.equal({ a: "skipped", b: "skipped" });
      expect(ms, "an up-to-date build takes milliseconds").to.be.lessThan(200);
      // Nothing left in the cache but the manifest (staging folders removed).
      expect(readdirSync(join(dir, ".vnmc-cache"))).to.deep.equal(["manifest.json"]);
      expect(readdirSync(join(dir, "out")).sort()).to.deep.equal(["a.vnm.onnx", "b.vnm.onnx"]);
    });

    it("recompiles exactly the model whose option changed", async () => {
      writeConfig(config({ vnm: "8:2:4" }));
      const r = await build({ cwd: dir });
      expect(statuses(r)).to.deep.equal({ a: "skipped", b: "compiled" });
      expect(r.models[1]!.reason).to.equal("input or options changed");
      expect(r.models[1]!.report!.vnm).to.equal("8:2:4");
      expect(statuses(await build({ cwd: dir }))).to.deep.equal({ a: "skipped", b: "skipped" });
      // threads does not change the output, so it is not part of the key.
      writeConfig(config({ vnm: "8:2:4", threads: 1 }));
      expect(statuses(await build({ cwd: dir }))).to.deep.equal({ a: "skipped", b: "skipped" });
    });

    it("recompiles exactly the model whose input changed, not one only touched", async () => {
      const a = join(dir, "models/a.onnx");
      const later = new Date(statSync(a).mtimeMs + 5000);
      utimesSync(a, later, later);
      expect(statuses(await build({ cwd: dir }))).to.deep.equal({ a: "skipped", b: "skipped" });
      writeModelFile(tiny(3), a);
      const r = await build({ cwd: dir });
      expect(statuses(r)).to.deep.equal({ a: "compiled", b: "skipped" });
    });

    it("recompiles a model whose output was removed or changed, and all with force", async () => {
      rmSync(join(dir, "out/a.vnm.onnx"));
      writeFileSync(join(dir, "out/b.vnm.onnx"), "tampered");
      const r = await build({ cwd: dir });
      expect(statuses(r)).to.deep.equal({ a: "compiled", b: "compiled" });
      expect(r.models[0]!.reason).to.equal("output changed or missing");
      expect(statuses(await build({ cwd: dir, force: true, only: ["a"] }))).to.deep.equal({ a: "compiled" });
    });

    it("survives a damaged manifest by compiling again", async () => {
      writeFileSync(join(dir, ".vnmc-cache/manifest.json"), "{ not json");
      expect(statuses(await build({ cwd: dir }))).to.deep.equal({ a: "compiled", b: "compiled" });
      expect(statuses(await build({ cwd: dir }))).to.deep.equal({ a: "skipped", b: "skipped" });
    });
  });

  describe("quality budgets", () => {
    it("fails the build when a budget is missed, naming the model, output and budget, and writes nothing", async () => {
      const before = readFileSync(join(dir, "out/b.vnm.onnx"));
      writeConfig(config({ vnm: "8:2:16", budget: { minCosine: 0.9999, maxOutputError: 0.001 } }));
      const e = await rejection(build({ cwd: dir }));
      expect(e).to.be.instanceOf(BuildError);
      const be = e as BuildError;
      expect(be.code).to.equal(Codes.BUDGET_MISSED);
      expect(be.message).to.match(/^Model 'b' failed: missed its quality budget: output 'output' has relative error .* on 2 calibration samples \(generated, data-free\), over maxOutputError 0\.001; output 'output' has cosine .* under minCosine 0\.9999\. The output was not written/);
      expect(statuses(be.result)).to.deep.equal({ a: "skipped", b: "failed" });
      expect(be.result.models[1]!.budgetMisses.map((m) => m.metric)).to.deep.equal(["maxOutputError", "minCosine"]);
      expect(readFileSync(join(dir, "out/b.vnm.onnx")).equals(before), "the last good output stays").to.equal(true);
      expect(readdirSync(join(dir, ".vnmc-cache"))).to.deep.equal(["manifest.json"]);
    });

    it("checks a tightened budget of an up-to-date model on the recorded numbers", async () => {
      writeConfig(config({ budget: { minCosine: 0.5 } }));
      expect(statuses(await build({ cwd: dir }))).to.deep.equal({ a: "skipped", b: "compiled" });
      writeConfig(config({ budget: { minCosine: 0.99999 } }));
      const e = (await rejection(build({ cwd: dir }))) as BuildError;
      expect(statuses(e.result)).to.deep.equal({ a: "skipped", b: "failed" });
      expect(e.message).to.match(/under minCosine 0\.99999.*left as it was/);
    });

    it("checks top-1 agreement on class-score outputs, and says when there are none", async () => {
      writeConfig(config({ budget: { minTop1Agreement: 0.99 } }));
      const e = (await rejection(build({ cwd: dir }))) as BuildError;
      expect(e.message).to.match(/output 'output' has top-1 agreement 0\.\d+ on 2 calibration samples .* under minTop1Agreement 0\.99/);
      const outputs = [{ name: "hidden", maxAbsError: 0.1, maxRelError: 0.1, relL2Error: 0.05, cosine: 0.999 }];
      const misses = checkBudget({ minTop1Agreement: 0.9, minCosine: 0.99, maxOutputError: 0.1 }, { source: "generated", outputs });
      expect(misses.map((m) => m.message)).to.deep.equal(["minTop1Agreement cannot be checked: no output looks like class scores; drop it or use minCosine"]);
      expect(checkBudget({ minCosine: 0.9 }, undefined)[0]!.message).to.match(/compiled without verification/);
    });

    it("exits 1 from the CLI with the message on stderr", () => {
      writeConfig(config({ budget: { minCosine: 0.99999 } }));
      const r = runCli(["build"], { cwd: dir });
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(/b: FAILED \[VNMC-B001\] missed its quality budget/);
      expect(r.stderr).to.match(/0 compiled, 1 up to date, 1 failed/);
      writeConfig(config({ budget: { minCosine: 0.5 } }));
      const ok = runCli(["build", "--json"], { cwd: dir });
      expect(ok.code, ok.stderr).to.equal(0);
      expect(JSON.parse(ok.stdout).models.map((m: ModelBuildResult) => m.status)).to.deep.equal(["skipped", "skipped"]);
    });
  });

  describe("configs", () => {
    const bad = async (cfg: unknown, pattern: RegExp, name = "vnmc.config.json") => {
      typeof cfg === "string" ? writeFileSync(join(dir, name), cfg) : writeConfig(cfg, name);
      const e = (await rejection(build({ cwd: dir, config: name }))) as VnmcError;
      expect(e).to.be.instanceOf(VnmcError);
      expect(e.code).to.equal(Codes.BAD_CONFIG);
      expect(e.message).to.match(pattern);
      rmSync(join(dir, name));
    };
    it("names the bad key, with a suggestion", async () => {
      await bad({ models: [{ input: "models/a.onnx", vnmm: "16:2:8" }] }, /^vnmc\.config\.json: unknown key 'models\[0\]\.vnmm' \(did you mean 'vnm'\?\)/);
      await bad({ models: [{ input: "models/a.onnx", MinSize: 0 }] }, /unknown key 'models\[0\]\.MinSize' \(did you mean 'minSize'\?\)/);
      await bad({ modles: [] }, /unknown key 'modles' \(did you mean 'models'\?\)/);
      await bad({ defaults: { budget: { minCos: 1 } }, models: [{ input: "models/a.onnx" }] }, /unknown key 'defaults\.budget\.minCos' \(did you mean 'minCosine'\?\)/);
    });
    it("names the bad value", async () => {
      await bad({ models: [{ input: "models/a.onnx", minSize: "0" }] }, /'models\[0\]\.minSize' must be a non-negative integer \(got "0"\)/);
      await bad({ models: [{ input: "models/a.onnx", vnm: 64 }] }, /'models\[0\]\.vnm' must be a V:N:M string/);
      await bad({ models: [{ input: "models/a.onnx", budget: { minCosine: 2 } }] }, /'models\[0\]\.budget\.minCosine' must be a number from -1 to 1/);
      await bad({ models: [] }, /'models' must be a non-empty array/);
      await bad({ models: [{ input: "models/a.onnx", verify: false, budget: { minCosine: 0.9 } }] }, /has a budget but verify: false/);
      await bad({ concurrency: 0, models: [{ input: "models/a.onnx" }] }, /'concurrency' must be an integer >= 1/);
    });
    it("names bad paths and clashes", async () => {
      await bad({ models: [{ input: "models/missing.onnx" }] }, /'models\[0\]\.input' is 'models\/missing\.onnx', which does not exist/);
      await bad({ models: [{ input: "models/a.onnx", output: "x.onnx" }, { input: "models/b.onnx", output: "x.onnx" }] }, /'models\[1\]\.output' is also the output of models\[0\]/);
      await bad({ models: [{ input: "models/a.onnx", output: "models/a.onnx" }] }, /is the input model/);
      await bad("{ \"models\": [", /not valid JSON/);
      const e = (await rejection(build({ cwd: join(dir, "models") }))) as VnmcError;
      expect(e.message).to.match(/^No vnmc\.config\.json, vnmc\.config\.js, vnmc\.config\.mjs, vnmc\.config\.ts in .*; create one/);
      const cli = runCli(["build", "--config", "nope.json"], { cwd: dir });
      expect(cli.code).to.equal(2);
      expect(cli.stderr).to.match(/The config file 'nope\.json' does not exist/);
    });
    it("loads .js and .ts configs (default export, typed)", async () => {
      writeFileSync(join(dir, "c.mjs"), `export default () => ({ defaults: { minSize: 0, verify: false }, cacheDir: ".cache-js", models: [{ input: "models/a.onnx", output: "out/js.onnx" }] });\n`);
      expect(statuses(await build({ cwd: dir, config: "c.mjs" }))).to.deep.equal({ a: "compiled" });
      writeFileSync(join(dir, "c.ts"), [
        "interface Cfg { models: { input: string; output?: string; minSize?: number; verify?: boolean }[]; cacheDir: string }",
        "const config: Cfg = { cacheDir: '.cache-ts', models: [{ input: 'models/a.onnx', output: 'out/ts.onnx', minSize: 0, verify: false }] };",
        "export default config;",
      ].join("\n"));
      expect(statuses(await build({ cwd: dir, config: "c.ts" }))).to.deep.equal({ a: "compiled" });
      expect(existsSync(join(dir, "out/ts.onnx"))).to.equal(true);
      expect(readdirSync(dir).filter((f) => f.endsWith(".mjs") && f !== "c.mjs"), "the transpiled .ts is removed").to.deep.equal([]);
      await bad("export default { models: [{ input: 'models/a.onnx', vnm: 8 }] };", /'models\[0\]\.vnm' must be a V:N:M string/, "bad.ts");
      await bad("export const x = 1;", /has no default export/, "none.mjs");
    });
  });

  it("stops on abort, removing staged outputs", async () => {
    writeConfig({ defaults: { minSize: 0 }, models: [{ input: "models/a.onnx", output: "out/abort.onnx" }] });
    const ac = new AbortController();
    const e = await rejection(build({ cwd: dir, force: true, signal: ac.signal, onEvent: (ev) => void (ev.type === "start" && ac.abort()) }));
    expect(e.name).to.equal("AbortError");
    expect(existsSync(join(dir, "out/abort.onnx"))).to.equal(false);
    expect(readdirSync(join(dir, ".vnmc-cache"))).to.not.include("staging");
  });
});
