import { expect } from "chai";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { compile, Codes, type CompileReport, type ProgressEvent, VnmcError } from "../../compiler/index.js";
import { encodeModel, writeModelFile } from "../../compiler/serde/write.js";
import { buildModel } from "../../models/index.js";
import { tempDir } from "../support/tmp.js";

const tiny = () => buildModel("mlp", { inFeatures: 64, hidden: 128, outFeatures: 32 });

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected a rejection");
}

/** vnmc-api-* folders in the OS temp folder (the API's private folders for bytes). */
const apiTemps = () => readdirSync(tmpdir()).filter((f) => f.startsWith("vnmc-api-")).sort();

describe("library API: compile()", function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let mlp: string;
  let bytes: Uint8Array;
  before(() => {
    tmp = tempDir("vnmc-api-test-");
    mlp = join(tmp.dir, "mlp.onnx");
    writeModelFile(tiny(), mlp);
    bytes = encodeModel(tiny());
  });
  after(() => tmp.cleanup());

  it("compiles a path to <input>.vnm.onnx with a typed report and progress, and is deterministic", async () => {
    const phases: ProgressEvent["phase"][] = [];
    const r = await compile(mlp, { vnm: "16:2:8", minSize: 0, onProgress: (e) => void (phases.at(-1) !== e.phase && phases.push(e.phase)) });
    const report: CompileReport = r.report;
    expect(r.outputPath).to.equal(join(tmp.dir, "mlp.vnm.onnx"));
    expect(r.bytes).to.equal(undefined);
    expect(report.totals.rewritten).to.equal(2);
    expect(report.verification?.passed).to.equal(true);
    expect(phases).to.deep.equal(["load", "write", "verify", "done"]);
    const first = readFileSync(r.outputPath!);
    const again = await compile(mlp, { vnm: "16:2:8", minSize: 0, returnBytes: true, output: join(tmp.dir, "again.onnx") });
    expect(Buffer.from(again.bytes!).equals(first), "same bytes for the same input and options").to.equal(true);
    expect(readFileSync(join(tmp.dir, "again.onnx")).equals(first)).to.equal(true);
  });

  it("compiles bytes to bytes in a private temp folder and removes it", async () => {
    const before = apiTemps();
    const r = await compile(bytes, { vnm: "16:2:8", minSize: 0, verify: false });
    expect(r.outputPath).to.equal(undefined);
    expect(r.bytes!.byteLength).to.be.greaterThan(1000);
    expect(r.report.input).to.equal("<bytes>");
    expect(r.report.output).to.equal("<bytes>");
    expect(apiTemps()).to.deep.equal(before);
    // The same bytes as compiling the file.
    const viaFile = await compile(mlp, { vnm: "16:2:8", minSize: 0, verify: false, returnBytes: true });
    expect(Buffer.from(r.bytes!).equals(Buffer.from(viaFile.bytes!))).to.equal(true);
  });

  it("writes bytes input to an output path, and returns external data with bytes", async () => {
    const out = join(tmp.dir, "from-bytes.onnx");
    const r = await compile(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer, { minSize: 0, verify: false, output: out });
    expect(r.outputPath).to.equal(out);
    expect(existsSync(out)).to.equal(true);
    const ext = await compile(bytes, { minSize: 0, verify: false, externalData: true });
    expect(ext.externalData!.byteLength).to.be.greaterThan(1000);
    expect(ext.externalDataName).to.equal("model.vnm.onnx.data");
  });

  for (const phase of ["load", "write", "verify"] as const) {
    it(`aborts at '${phase}' with the signal's reason and leaves nothing behind`, async () => {
      const dir = join(tmp.dir, `abort-${phase}`);
      const ac = new AbortController();
      const before = apiTemps();
      const { mkdirSync } = await import("node:fs");
      mkdirSync(dir);
      const e = await rejection(compile(bytes, {
        minSize: 0, output: join(dir, "out.onnx"), signal: ac.signal,
        onProgress: (ev) => { if (ev.phase === phase) ac.abort(); },
      }));
      expect((e as Error).name).to.equal("AbortError");
      expect(readdirSync(dir)).to.deep.equal([]);
      expect(apiTemps()).to.deep.equal(before);
    });
  }

  it("rejects at once when the signal is already aborted", async () => {
    const e = await rejection(compile(mlp, { signal: AbortSignal.abort(new Error("stop")) }));
    expect((e as Error).message).to.equal("stop");
  });

  it("gives one-sentence errors with codes for bad input", async () => {
    const missing = (await rejection(compile(join(tmp.dir, "nope.onnx")))) as VnmcError;
    expect(missing).to.be.instanceOf(VnmcError);
    expect(missing.code).to.equal(Codes.FILE_NOT_FOUND);
    expect(missing.message).to.match(/^Cannot find .*; check the path to the \.onnx model\.$/);
    const garbage = (await rejection(compile(new Uint8Array([1, 2, 3, 4, 5])))) as VnmcError;
    expect(garbage).to.be.instanceOf(VnmcError);
    expect(garbage.code).to.equal(Codes.NOT_ONNX);
    const empty = (await rejection(compile(new Uint8Array(0)))) as VnmcError;
    expect(empty.message).to.match(/empty/);
    const wrong = (await rejection(compile(42 as unknown as string))) as VnmcError;
    expect(wrong.code).to.equal(Codes.USAGE);
    const badVnm = (await rejection(compile(mlp, { vnm: "3:2:8", output: join(tmp.dir, "x.onnx") }))) as VnmcError;
    expect(badVnm.code).to.equal(Codes.BAD_VNM);
    expect(existsSync(join(tmp.dir, "x.onnx"))).to.equal(false);
  });

  it("publishes typed declarations at package.json's exports", () => {
    const root = fileURLToPath(new URL("../../../", import.meta.url));
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
    const dts = join(root, pkg.exports["."].types);
    expect(pkg.types).to.equal(pkg.exports["."].types.replace(/^\.\//, ""));
    const text = readFileSync(dts, "utf8");
    for (const name of ["compile", "build", "defineConfig", "CompileReport", "CompileOptions", "VnmcError"]) expect(text).to.contain(name);
    expect(existsSync(join(root, pkg.exports["."].default))).to.equal(true);
  });
});
