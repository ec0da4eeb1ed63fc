import { expect } from "chai";
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildModel } from "../../models/index.js";
import { writeModelFile } from "../../compiler/serde/write.js";
import { runCli } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";
import { TinyModel } from "../support/tiny-models.js";

describe("vnmc CLI", function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let mlp: string;
  before(() => {
    tmp = tempDir();
    mlp = join(tmp.dir, "mlp.onnx");
    writeModelFile(buildModel("mlp", { inFeatures: 64, hidden: 128, outFeatures: 32 }), mlp);
  });
  after(() => tmp.cleanup());

  /** The folder holds exactly these files (no temporary or partial output left behind). */
  function expectFiles(dir: string, names: string[]): void {
    expect(readdirSync(dir).sort()).to.deep.equal([...names].sort());
  }

  it("compiles with the default output name, prints the table and verifies", () => {
    const before = readFileSync(mlp);
    const r = runCli(["compile", mlp, "--vnm", "16:2:8", "--min-size", "0"]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/layers\.0\s+128x64\s+16:2:8\s+75\.0%/);
    expect(r.stdout).to.match(/exact to float rounding/);
    expect(existsSync(join(tmp.dir, "mlp.vnm.onnx"))).to.equal(true);
    expect(readFileSync(mlp).equals(before), "input unchanged").to.equal(true);
  });

  it("writes --report JSON, --json to stdout, and honours --exclude and --quiet", () => {
    const out = join(tmp.dir, "o.onnx");
    const rep = join(tmp.dir, "r.json");
    const r = runCli(["compile", mlp, "-o", out, "--vnm", "8:2:4", "--exclude", "*.1", "--min-size", "0", "--report", rep, "-q"]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.equal("");
    const report = JSON.parse(readFileSync(rep, "utf8"));
    expect(report.layers.map((l: { node: string; status: string }) => `${l.node}:${l.status}`)).to.deep.equal(["layers.0:sparse", "layers.1:dense"]);
    const j = runCli(["compile", mlp, "-o", out, "--json", "--no-verify", "--min-size", "0"]);
    expect(JSON.parse(j.stdout).totals.rewritten).to.equal(2);
  });

  it("gives the same bytes for the same input and options", () => {
    const a = join(tmp.dir, "a.onnx"), b = join(tmp.dir, "b.onnx");
    expect(runCli(["compile", mlp, "-o", a, "--no-verify", "--min-size", "0"]).code).to.equal(0);
    expect(runCli(["compile", mlp, "-o", b, "--no-verify", "--min-size", "0"]).code).to.equal(0);
    expect(readFileSync(a).equals(readFileSync(b))).to.equal(true);
  });

  it("writes external data on request", () => {
    const out = join(tmp.dir, "ext", "m.onnx");
    runCli(["compile", mlp, "-o", join(tmp.dir, "ext.onnx"), "--external-data", "--min-size", "0"]);
    expect(existsSync(join(tmp.dir, "ext.onnx.data"))).to.equal(true);
    expect(out).to.be.a("string");
  });

  it("--help, --version and usage errors", () => {
    expect(runCli(["--help"]).stdout).to.match(/compile +compile an ONNX model/);
    expect(runCli(["compile", "--help"]).stdout).to.match(/vnmc compile <model.onnx>/);
    expect(runCli(["--version"]).stdout.trim()).to.match(/^\d+\.\d+\.\d+$/);
    expect(runCli([]).code).to.equal(2);
    expect(runCli(["frobnicate"]).code).to.equal(2);
    expect(runCli(["compile"]).code).to.equal(2);
    expect(runCli(["compile", mlp, "--bogus"]).code).to.equal(2);
  });

  const badVnm: Array<[string, RegExp]> = [["12:2:8", /V must be one of/], ["64:3:8", /N must be 2/], ["64:2:3", /M must be/], ["64:2:33", /M must be/], ["64-2-8", /./]];
  for (const [vnm, msg] of badVnm) {
    it(`refuses --vnm ${vnm} with exit 2`, () => {
      const r = runCli(["compile", mlp, "--vnm", vnm]);
      expect(r.code).to.equal(2);
      expect(r.stderr).to.match(msg);
      expect(r.stderr.trim().split("\n")).to.have.length(1);
    });
  }

  describe("bad input: one sentence, exit 1, no output left behind", () => {
    let dir: ReturnType<typeof tempDir>;
    beforeEach(() => (dir = tempDir()));
    afterEach(() => dir.cleanup());

    function expectFailure(args: string[], msg: RegExp, files: string[]): void {
      const r = runCli(["compile", ...args]);
      expect(r.code, r.stderr).to.equal(1);
      expect(r.stderr).to.match(msg);
      expect(r.stderr).to.not.match(/\n\s+at /); // no stack trace
      expectFiles(dir.dir, files);
    }

    it("a file that is not ONNX", () => {
      writeFileSync(join(dir.dir, "x.onnx"), "hello");
      expectFailure([join(dir.dir, "x.onnx")], /not a valid ONNX model/, ["x.onnx"]);
    });
    it("a truncated model", () => {
      const bytes = readFileSync(mlp);
      writeFileSync(join(dir.dir, "t.onnx"), bytes.subarray(0, bytes.length >> 1));
      expectFailure([join(dir.dir, "t.onnx")], /ONNX|corrupt|truncated/, ["t.onnx"]);
    });
    it("a missing file", () => expectFailure([join(dir.dir, "nope.onnx")], /Cannot find/, []));
    it("missing external data", () => {
      const m = join(dir.dir, "m.onnx");
      writeModelFile(buildModel("mlp", { inFeatures: 64, hidden: 128, outFeatures: 32 }), m, { externalData: true });
      const data = readdirSync(dir.dir).find((f) => f.endsWith(".data"))!;
      copyFileSync(join(dir.dir, data), join(dir.dir, "elsewhere.bin"));
      writeFileSync(join(dir.dir, data), "");
      expectFailure([m], /has only 0|truncated/, ["m.onnx", data, "elsewhere.bin"]);
    });
    it("a model with no candidates warns and still writes", () => {
      const t = new TinyModel();
      const x = t.input("X", [2, 8]);
      t.output(t.op("Relu", [x], "relu"));
      const m = join(dir.dir, "relu.onnx");
      writeModelFile(t.model(), m);
      const r = runCli(["compile", m]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stderr).to.match(/warning \[VNMC-W001\]/);
      expectFiles(dir.dir, ["relu.onnx", "relu.vnm.onnx"]);
    });
    it("an unsupported weight type is skipped with a reason", () => {
      const t = new TinyModel(1, 11 /* double */);
      t.output(t.op("MatMul", [t.input("X", [2, 64]), t.init("B", [64, 64])], "mm"));
      const m = join(dir.dir, "d.onnx");
      writeModelFile(t.model(), m);
      const r = runCli(["compile", m, "--no-verify"]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.match(/weight type double is not supported.*VNMC-S006/);
    });
    it("the output path equal to the input", () => {
      const m = join(dir.dir, "m.onnx");
      copyFileSync(mlp, m);
      const r = runCli(["compile", m, "-o", m]);
      expect(r.code).to.equal(2);
      expect(readFileSync(m).equals(readFileSync(mlp))).to.equal(true);
    });
  });
});
