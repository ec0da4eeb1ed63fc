import { expect } from "chai";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { compileFile } from "../../compiler/compile.js";
import { Codes } from "../../compiler/diagnostics.js";
import { writeModelFile } from "../../compiler/serde/write.js";
import { normals, oneInputModel } from "../support/calib-models.js";
import { npyBytes } from "../support/npy-files.js";
import { tempDir } from "../support/tmp.js";
import { TinyModel } from "../support/tiny-models.js";

/** The defaults docs/quality.md measured best: what each kind of --calib gets without --method/--score/--permute. */
describe("compile defaults by calibration data", function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let model: string;
  before(() => {
    tmp = tempDir();
    model = join(tmp.dir, "mlp.onnx");
    writeModelFile(oneInputModel(), model);
    writeFileSync(join(tmp.dir, "x.npy"), npyBytes("<f4", [64, 16], normals(64 * 16, 5)));
  });
  after(() => tmp.cleanup());
  const base = { vnm: "16:2:5", minSize: 0 };

  it("real samples: sparsegpt (sequential) with the permutation search", async () => {
    const { report } = await compileFile(model, { ...base, calib: join(tmp.dir, "x.npy"), output: join(tmp.dir, "a.onnx") });
    expect(report.method).to.equal("sparsegpt");
    expect(report.calibration?.sequential).to.not.equal(undefined);
    expect(report.layers.filter((l) => l.status !== "dense").every((l) => l.permutation !== undefined)).to.equal(true);
    expect(report.verification?.passed).to.equal(true);
  });

  it("random:N (data-free): Wanda selection with the permutation search, and a note saying why not sparsegpt", async () => {
    const { report } = await compileFile(model, { ...base, calib: "random:2", output: join(tmp.dir, "b.onnx") });
    expect(report.method).to.equal("select");
    expect(report.score).to.equal("wanda");
    expect(report.layers.filter((l) => l.status !== "dense").every((l) => l.permutation !== undefined)).to.equal(true);
    expect(report.diagnostics.find((d) => d.code === Codes.METHOD_DEFAULT_SELECT)?.message).to.match(/Data-free/);
  });

  it("no calibration: magnitude selection, no permutation", async () => {
    const { report } = await compileFile(model, { ...base, output: join(tmp.dir, "c.onnx") });
    expect(report.method).to.equal("select");
    expect(report.score).to.equal("magnitude");
    expect(report.layers.some((l) => l.permutation !== undefined)).to.equal(false);
  });

  it("an explicit --score or --no-permute wins over the defaults", async () => {
    const calib = join(tmp.dir, "x.npy");
    const { report } = await compileFile(model, { ...base, calib, score: "ria", permute: false, output: join(tmp.dir, "d.onnx") });
    expect(report.method).to.equal("select");
    expect(report.score).to.equal("ria");
    expect(report.layers.some((l) => l.permutation !== undefined)).to.equal(false);
  });

  it("falls back to Wanda with a warning when sparsegpt's XᵀX would exceed its memory limit", async () => {
    // One layer reading 12288 channels: its XᵀX (and the sequential cross matrix) are 2.25 GiB.
    const t = new TinyModel(9);
    const x = t.input("x", ["batch", 12288]);
    t.output(t.op("MatMul", [x, t.init("W", [12288, 8])], "wide"), ["batch", 8]);
    const wide = join(tmp.dir, "wide.onnx");
    writeModelFile(t.model(), wide);
    writeFileSync(join(tmp.dir, "wide.npy"), npyBytes("<f4", [4, 12288], normals(4 * 12288, 6)));
    const { report } = await compileFile(wide, { ...base, calib: join(tmp.dir, "wide.npy"), permute: false, verify: false, output: join(tmp.dir, "e.onnx") });
    expect(report.method).to.equal("select");
    const d = report.diagnostics.find((x) => x.code === Codes.METHOD_DEFAULT_SELECT)!;
    expect(d.severity).to.equal("warning");
    expect(d.message).to.match(/GiB of XᵀX .* pass --method sparsegpt/);
  });
});
