import { expect } from "chai";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { compileFile, type CompileOptions } from "../../compiler/compile.js";
import { readModelFile } from "../../compiler/serde/read.js";
import { writeModelFile } from "../../compiler/serde/write.js";
import { buildModel } from "../../models/index.js";
import { normals } from "../support/calib-models.js";
import { npyBytes } from "../support/npy-files.js";
import { tempDir } from "../support/tmp.js";

describe("determinism: the same input and options give byte-identical output", function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let input: string, calib: string;
  before(() => {
    tmp = tempDir();
    input = join(tmp.dir, "llama.onnx");
    writeModelFile(buildModel("llama", { hidden: 128, intermediate: 256, vocab: 64, heads: 2 }), input);
    calib = join(tmp.dir, "calib");
    mkdirSync(calib);
    for (let s = 0; s < 3; s++) writeFileSync(join(calib, `s${s}.npy`), npyBytes("<f4", [1, 6, 128], normals(6 * 128, 60 + s)));
  });
  after(() => tmp.cleanup());

  let n = 0;
  async function compileBytes(opts: CompileOptions): Promise<Buffer> {
    const { outputPath } = await compileFile(input, { vnm: "32:2:8", minSize: 0, verify: false, output: join(tmp.dir, `o${n++}.onnx`), ...opts });
    return readFileSync(outputPath);
  }

  const settings: Array<[string, CompileOptions]> = [
    ["wanda with a calibration folder", { calib: "", score: "wanda" }],
    ["ria with random:3 samples", { calib: "random:3", score: "ria", shapes: { hidden_states: [1, 5, 128] } }],
    ["magnitude with a calibration folder", { calib: "", score: "magnitude" }],
  ];
  for (const [what, opts] of settings) {
    it(`${what}, with and without worker threads`, async () => {
      const o = { ...opts, calib: opts.calib === "" ? calib : opts.calib };
      const a = await compileBytes(o);
      const b = await compileBytes(o);
      const c = await compileBytes({ ...o, threads: 0 });
      expect(a.equals(b), "same options").to.equal(true);
      expect(a.equals(c), "threads 0 vs pool").to.equal(true);
    });
  }

  it("records the score and a digest of the calibration data, which differ when they do", async () => {
    const recorded = async (opts: CompileOptions) => {
      const { outputPath } = await compileFile(input, { vnm: "32:2:8", minSize: 0, verify: false, output: join(tmp.dir, `r${n++}.onnx`), ...opts });
      return JSON.parse(readModelFile(outputPath).model.metadata.find(([k]) => k === "vnmc.options")![1]);
    };
    const a = await recorded({ calib, score: "wanda" });
    expect(a.score).to.equal("wanda");
    expect(a.calibration).to.include({ source: "files", samples: 3 });
    expect(a.calibration.sha256).to.match(/^[0-9a-f]{64}$/);
    const b = await recorded({ calib: "random:3", shapes: { hidden_states: [1, 5, 128] } });
    expect(b.score).to.equal("wanda");
    expect(b.calibration.source).to.equal("random");
    expect(b.calibration.sha256).to.not.equal(a.calibration.sha256);
    expect((await recorded({})).score).to.equal("magnitude");
  });

  it("wanda and magnitude choose different masks on the same calibration data", async () => {
    const w = await compileBytes({ calib, score: "wanda" });
    const m = await compileBytes({ calib, score: "magnitude" });
    expect(w.equals(m)).to.equal(false);
  });
});
