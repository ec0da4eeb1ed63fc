import { expect } from "chai";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { compileFile } from "../../compiler/compile.js";
import { libraryPath } from "../../compiler/runtime/native-lib.js";
import { writeModelFile } from "../../compiler/serde/write.js";
import { buildModel } from "../../models/index.js";
import { runCli } from "../support/cli.js";
import { requireNative } from "../support/native.js";
import { tempDir } from "../support/tmp.js";

/** runCli with extra environment variables (runCli copies process.env). */
function runCliEnv(args: string[], env: Record<string, string>): ReturnType<typeof runCli> {
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env)) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  try {
    return runCli(args);
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

describe("CLI: vnmc run, vnmc bench, vnmc lib-path", function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof tempDir>;
  let dense: string, compiled: string;
  before(async () => {
    tmp = tempDir("vnmc-cli-run-");
    dense = join(tmp.dir, "mlp.onnx");
    writeModelFile(buildModel("mlp", {}), dense);
    compiled = (await compileFile(dense, { vnm: "16:2:8", minSize: 0, verify: false })).outputPath;
  });
  after(() => tmp.cleanup());

  describe("without the native runtime (VNMC_NATIVE_DIR points at an empty folder)", () => {
    const env = () => ({ VNMC_NATIVE_DIR: join(tmp.dir, "no-native") });
    it("vnmc lib-path exits 1 with one sentence saying how to build it", () => {
      const r = runCliEnv(["lib-path"], env());
      expect(r.code).to.equal(1);
      expect(r.stdout).to.equal("");
      expect(r.stderr).to.match(/libvnmc_ort\.so is not built; run npm run build:native/);
      expect(r.stderr.trim().split("\n")).to.have.length(1);
    });
    it("vnmc run falls back to onnxruntime-node with a note", () => {
      const r = runCliEnv(["run", compiled], env());
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stderr).to.match(/note: the vnmc native runtime is not available/);
      expect(r.stdout).to.match(/runtime\s+fallback function \(onnxruntime-node\)/);
      expect(r.stdout).to.match(/^output\s+float32\s+\[4, \d+\]/m);
    });
    it("vnmc bench times dense and fallback and says why the kernels were not timed", () => {
      const r = runCliEnv(["bench", compiled, "--baseline", dense, "--iters", "3", "--json"], env());
      expect(r.code, r.stderr).to.equal(0);
      const j = JSON.parse(r.stdout);
      expect(j.rows.map((x: { kind: string }) => x.kind)).to.deep.equal(["dense", "fallback"]);
      expect(j.notes.join(" ")).to.match(/not available/);
    });
  });

  describe("with the native runtime", () => {
    before(function () {
      requireNative(this);
    });
    it("vnmc lib-path prints the absolute path of the built library", () => {
      const r = runCli(["lib-path"]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout.trim()).to.equal(libraryPath());
      expect(existsSync(r.stdout.trim())).to.equal(true);
      const a = runCli(["lib-path", "--addon"]);
      expect(a.stdout.trim()).to.match(/vnmc_node\.node$/);
    });
    it("vnmc run uses the native kernels; --fallback gives the same outputs through onnxruntime-node", () => {
      const n = runCli(["run", compiled, "--json"]);
      const f = runCli(["run", compiled, "--json", "--fallback"]);
      expect(n.code, n.stderr).to.equal(0);
      expect(f.code, f.stderr).to.equal(0);
      const jn = JSON.parse(n.stdout), jf = JSON.parse(f.stdout);
      expect(jn.runtime).to.equal("native");
      expect(jf.runtime).to.equal("fallback");
      expect(jn.inputs).to.deep.equal(jf.inputs);
      expect(jn.outputs.map((o: { name: string }) => o.name)).to.deep.equal(jf.outputs.map((o: { name: string }) => o.name));
      for (let i = 0; i < jn.outputs.length; i++) {
        const a = jn.outputs[i], b = jf.outputs[i];
        expect(a.dims).to.deep.equal(b.dims);
        for (const k of ["mean", "std", "min", "max"]) expect(Math.abs(a[k] - b[k]), k).to.be.at.most(1e-4 * (1 + Math.abs(b[k])));
      }
      const text = runCli(["run", compiled, "--shape", "input=2x256"]);
      expect(text.code, text.stderr).to.equal(0);
      expect(text.stdout).to.match(/runtime\s+vnmc kernels \(native runtime\)/);
      expect(text.stdout).to.match(/^output\s+float32\s+\[2, 256\]/m);
    });
    it("vnmc bench reports p50/p90/p99 and speed-ups of all three, and native == fallback", () => {
      const r = runCli(["bench", compiled, "--baseline", dense, "--iters", "5", "--threads", "1"]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.match(/runtime\s+p50\s+p90\s+p99\s+mean\s+speed-up \(p50\)/);
      expect(r.stdout).to.match(/^dense original \(onnxruntime-node\)\s+[\d.]+ ms.*1\.00x/m);
      expect(r.stdout).to.match(/^vnmc kernels \(native\)\s+[\d.]+ ms/m);
      expect(r.stdout).to.match(/^fallback function \(onnxruntime-node\)\s+[\d.]+ ms/m);
      const m = /max relative difference ([\d.e+-]+)/.exec(r.stdout);
      expect(m, r.stdout).to.not.equal(null);
      expect(Number(m![1])).to.be.at.most(1e-5);
      const j = JSON.parse(runCli(["bench", compiled, "--baseline", dense, "--iters", "2", "--json"]).stdout);
      expect(j.rows.map((x: { kind: string }) => x.kind)).to.deep.equal(["dense", "native", "fallback"]);
      for (const row of j.rows) expect(row.p50).to.be.greaterThan(0);
    });
  });

  describe("errors", () => {
    it("usage errors exit 2, missing or bad models exit 1, each with one sentence", () => {
      const cases: Array<[string[], number, RegExp]> = [
        [["run"], 2, /needs exactly one model/],
        [["run", compiled, "--shape", "input"], 2, /not of the form name=1x128/],
        [["run", compiled, "--shape", "nope=1x2"], 2, /not an input of the model/],
        [["bench", compiled], 2, /needs --baseline/],
        [["bench", compiled, "--baseline", dense, "--iters", "0"], 2, /--iters needs an integer >= 1/],
        [["lib-path", "extra"], 2, /takes no argument/],
        [["run", join(tmp.dir, "missing.onnx")], 1, /Cannot find/],
        [["run", compiled, "--shape", "input=2x3"], 1, /could not run/],
      ];
      for (const [args, code, re] of cases) {
        const r = runCli(args);
        expect(r.code, `${args.join(" ")}: ${r.stderr}`).to.equal(code);
        expect(r.stderr, args.join(" ")).to.match(re);
        // One sentence (plus, without the native runtime, the note that vnmc run falls back).
        expect(r.stderr.trim().split("\n").filter((l) => !l.startsWith("note: ")), args.join(" ")).to.have.length(1);
      }
    });
    it("prints help for each command", () => {
      for (const c of ["run", "bench", "lib-path"]) {
        const r = runCli([c, "--help"]);
        expect(r.code).to.equal(0);
        expect(r.stdout).to.match(new RegExp(`^Usage: vnmc ${c}`));
      }
      expect(runCli(["--help"]).stdout).to.match(/lib-path/);
    });
  });
});
