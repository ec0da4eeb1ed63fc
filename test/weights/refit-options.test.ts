import { expect } from "chai";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { compileFile, type CompileOptions, type CompileResult } from "../../compiler/compile.js";
import { Codes, VnmcError } from "../../compiler/diagnostics.js";
import { resolveConfig } from "../../compiler/project/config.js";
import { readModelFile } from "../../compiler/serde/read.js";
import { writeModelFile } from "../../compiler/serde/write.js";
import { DEFAULT_SPARSEGPT_REFIT_SWEEPS } from "../../compiler/weights/sparsegpt.js";
import { buildModel } from "../../models/index.js";
import { normals } from "../support/calib-models.js";
import { runCli } from "../support/cli.js";
import { rebuiltLayers } from "../support/compiled-weights.js";
import { npyBytes } from "../support/npy-files.js";
import { tempDir } from "../support/tmp.js";

/** --[no-]refit and --refit-sweeps: sparsegpt's exact refit of the kept weights and its local search. */
describe("sparsegpt refit options (--refit, --no-refit, --refit-sweeps)", function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let mlp: string, calib: string;
  before(() => {
    tmp = tempDir();
    mlp = join(tmp.dir, "mlp.onnx");
    writeModelFile(buildModel("mlp", { inFeatures: 64, hidden: 128, outFeatures: 32 }), mlp);
    calib = join(tmp.dir, "x.npy");
    writeFileSync(calib, npyBytes("<f4", [96, 64], normals(96 * 64, 11)));
  });
  after(() => tmp.cleanup());

  let n = 0;
  const out = () => join(tmp.dir, `o${n++}.onnx`);
  let base: CompileOptions;
  before(() => (base = { vnm: "16:2:5", minSize: 0, calib, permute: false }));
  const recordedMethod = (r: CompileResult) =>
    JSON.parse(readModelFile(r.outputPath).model.metadata.find(([k]) => k === "vnmc.options")![1]).method as { name: string; refit: unknown };

  it("--no-refit keeps the OBS weights: same mask, different kept weights; the report and the metadata say so (default method too)", async () => {
    for (const method of [undefined, "sparsegpt" as const]) {
      // The default (refit after the local search, run until a pass makes no swap, on these small layers), the refit alone, and none.
      const dflt = await compileFile(mlp, { ...base, method, output: out() });
      const refit = await compileFile(mlp, { ...base, method, refitSweeps: 0, output: out() });
      const plain = await compileFile(mlp, { ...base, method, refit: false, output: out() });
      for (const r of [dflt, refit, plain]) {
        expect(r.report.method).to.equal("sparsegpt");
        expect(r.report.verification!.passed).to.equal(true);
      }
      const sparse = (r: CompileResult) => r.report.layers.filter((l) => l.status === "sparse");
      expect(sparse(refit).length).to.equal(2);
      for (const l of sparse(refit)) expect(l.sparsegpt!.refit, l.node).to.deep.equal({ swaps: 0, sweeps: 0, passes: 0 });
      for (const l of sparse(dflt)) {
        const r = l.sparsegpt!.refit as unknown as { sweeps: number; passes: number };
        expect(r, l.node).to.include({ sweeps: DEFAULT_SPARSEGPT_REFIT_SWEEPS });
        // Run to convergence: the last pass of the longest row made no swap, well before the cap.
        expect(r.passes, l.node).to.be.within(2, DEFAULT_SPARSEGPT_REFIT_SWEEPS - 1);
      }
      expect(sparse(dflt).some((l) => l.sparsegpt!.refit!.swaps > 0), "the search moved some weights").to.equal(true);
      for (const l of sparse(plain)) expect(l.sparsegpt!.refit, l.node).to.equal(undefined);
      expect(recordedMethod(dflt)).to.deep.include({ name: "sparsegpt", refit: { sweeps: DEFAULT_SPARSEGPT_REFIT_SWEEPS } });
      expect(recordedMethod(refit)).to.deep.include({ name: "sparsegpt", refit: { sweeps: 0 } });
      expect(recordedMethod(plain)).to.deep.include({ name: "sparsegpt", refit: false });
      const a = rebuiltLayers(readModelFile(refit.outputPath).model);
      const b = rebuiltLayers(readModelFile(plain.outputPath).model);
      expect(a.map((l) => l.node.name)).to.deep.equal(b.map((l) => l.node.name));
      for (let i = 0; i < a.length; i++) {
        const [wa, wb] = [a[i]!.W, b[i]!.W];
        let differ = 0;
        for (let j = 0; j < wa.length; j++) {
          // The refit keeps the mask; later layers' masks follow their (differently) pruned inputs (sequential calibration).
          if (i === 0) expect(wa[j] === 0, `${a[i]!.node.name}[${j}]: the refit keeps the mask`).to.equal(wb[j] === 0);
          if (wa[j] !== wb[j]) differ++;
        }
        expect(differ, `${a[i]!.node.name}: kept weights refitted`).to.be.above(0);
      }
      // The refit minimises each layer's error on the calibration data: never worse than OBS alone.
      // The search only accepts swaps that lower it further.
      if (method === "sparsegpt") {
        const seqOff = { ...base, method, sequential: false, verify: false };
        const [r2, r1, r0] = [
          await compileFile(mlp, { ...seqOff, output: out() }), await compileFile(mlp, { ...seqOff, refitSweeps: 0, output: out() }), await compileFile(mlp, { ...seqOff, refit: false, output: out() }),
        ];
        for (const l of sparse(r1)) expect(l.outputError!, l.node).to.be.at.most(r0.report.layers.find((x) => x.node === l.node)!.outputError! * (1 + 1e-9));
        for (const l of sparse(r2)) expect(l.outputError!, l.node).to.be.at.most(r1.report.layers.find((x) => x.node === l.node)!.outputError! * (1 + 1e-6));
      }
    }
  });

  it("--refit-sweeps N: recorded, and deterministic (byte-identical twice and without worker threads); explicit --refit is the default", async () => {
    const opts: CompileOptions = { ...base, method: "sparsegpt", refitSweeps: 2, verify: false };
    const a = await compileFile(mlp, { ...opts, output: out() });
    const b = await compileFile(mlp, { ...opts, output: out() });
    const c = await compileFile(mlp, { ...opts, threads: 0, output: out() });
    const bytes = [a, b, c].map((r) => readFileSync(r.outputPath));
    expect(bytes[0]!.equals(bytes[1]!), "same options").to.equal(true);
    expect(bytes[0]!.equals(bytes[2]!), "threads 0 vs pool").to.equal(true);
    expect(recordedMethod(a).refit).to.deep.equal({ sweeps: 2, everyLayer: true });
    for (const l of a.report.layers.filter((x) => x.status === "sparse")) expect(l.sparsegpt!.refit!.swaps, l.node).to.be.a("number");
    const dflt = await compileFile(mlp, { ...base, method: "sparsegpt", verify: false, output: out() });
    const explicit = await compileFile(mlp, { ...base, method: "sparsegpt", refit: true, verify: false, output: out() });
    expect(readFileSync(dflt.outputPath).equals(readFileSync(explicit.outputPath)), "refit: true is the default").to.equal(true);
    const dflt2 = await compileFile(mlp, { ...base, method: "sparsegpt", verify: false, threads: 0, output: out() });
    expect(readFileSync(dflt.outputPath).equals(readFileSync(dflt2.outputPath)), "the default search is deterministic").to.equal(true);
    const noSearch = await compileFile(mlp, { ...base, method: "sparsegpt", refitSweeps: 0, verify: false, output: out() });
    expect(readFileSync(dflt.outputPath).equals(readFileSync(noSearch.outputPath)), "--refit-sweeps 0 turns the default search off").to.equal(false);
    const noRefit = await compileFile(mlp, { ...base, method: "sparsegpt", refit: false, verify: false, output: out() });
    const noRefit2 = await compileFile(mlp, { ...base, method: "sparsegpt", refit: false, refitSweeps: 0, verify: false, output: out() });
    expect(readFileSync(noRefit.outputPath).equals(readFileSync(noRefit2.outputPath)), "--no-refit is deterministic").to.equal(true);
    expect(readFileSync(noRefit.outputPath).equals(readFileSync(dflt.outputPath))).to.equal(false);
  });

  it("the default method (sparsegpt where it fits) honours the experiments' damping and mask score, as --method sparsegpt does", async () => {
    for (const method of [undefined, "sparsegpt" as const]) {
      const r = await compileFile(mlp, { ...base, method, sparsegptDamping: 0.05, sparsegptMaskScore: "wanda", verify: false, output: out() });
      expect(recordedMethod(r), String(method)).to.deep.include({ name: "sparsegpt", damping: 0.05, maskScore: "wanda" });
      for (const l of r.report.layers.filter((x) => x.status === "sparse")) expect(l.sparsegpt!.maskScore).to.equal("wanda");
    }
  });

  it("usage errors: bad values name the option; sweeps without the refit; another method", async () => {
    const fails = async (opts: CompileOptions, code: string, message: RegExp) => {
      const e = await compileFile(mlp, { ...base, output: out(), ...opts }).then(() => undefined, (x: unknown) => x);
      expect(e, JSON.stringify(opts)).to.be.instanceOf(VnmcError);
      expect((e as VnmcError).code, (e as Error).message).to.equal(code);
      expect((e as VnmcError).kind).to.equal("usage");
      expect((e as Error).message).to.match(message);
    };
    for (const method of [undefined, "sparsegpt" as const]) {
      await fails({ method, refitSweeps: -1 }, Codes.USAGE, /^--refit-sweeps needs a non-negative integer \(got -1\)\.$/);
      await fails({ method, refitSweeps: 1.5 }, Codes.USAGE, /--refit-sweeps needs a non-negative integer \(got 1\.5\)/);
      await fails({ method, refitSweeps: Number.NaN }, Codes.USAGE, /--refit-sweeps needs a non-negative integer \(got NaN\)/);
      await fails({ method, refitSweeps: Infinity }, Codes.USAGE, /--refit-sweeps needs a non-negative integer/);
      await fails({ method, refitSweeps: "2" as unknown as number }, Codes.USAGE, /--refit-sweeps needs a non-negative integer \(got '2'\)/);
      await fails({ method, refit: "no" as unknown as boolean }, Codes.USAGE, /--refit must be true or false \(got "no"\)/);
      await fails({ method, refit: false, refitSweeps: 2 }, Codes.USAGE, /--refit-sweeps 2 needs the refit.*drop --no-refit or --refit-sweeps/);
    }
    const notSparseGpt = /--refit \/ --no-refit \/ --refit-sweeps apply to --method sparsegpt only/;
    await fails({ method: "select", refit: false }, Codes.SEQUENTIAL_NEEDS_SPARSEGPT, notSparseGpt);
    await fails({ method: "select", refitSweeps: 1 }, Codes.SEQUENTIAL_NEEDS_SPARSEGPT, notSparseGpt);
    await fails({ score: "wanda", refit: true }, Codes.SEQUENTIAL_NEEDS_SPARSEGPT, notSparseGpt);
    await fails({ calib: undefined, refitSweeps: 1 }, Codes.SEQUENTIAL_NEEDS_SPARSEGPT, notSparseGpt);
  });

  describe("the CLI", () => {
    const metadataMethod = (path: string) => JSON.parse(readModelFile(path).model.metadata.find(([k]) => k === "vnmc.options")![1]).method;
    const cli = (...args: string[]) => runCli(["compile", mlp, "--vnm", "16:2:5", "--min-size", "0", "--calib", calib, "--no-verify", "-q", ...args]);

    it("--no-refit, --refit and --refit-sweeps N reach the compile", () => {
      const cases: Array<[string[], unknown]> = [[["--no-refit"], false], [["--refit", "--refit-sweeps=0"], { sweeps: 0 }], [["--refit-sweeps", "1"], { sweeps: 1, everyLayer: true }], [[], { sweeps: DEFAULT_SPARSEGPT_REFIT_SWEEPS }]];
      for (const [args, refit] of cases) {
        const o = out();
        const r = cli("--method", "sparsegpt", "-o", o, ...args);
        expect(r.code, `${args.join(" ")}: ${r.stderr}`).to.equal(0);
        expect(metadataMethod(o).refit, args.join(" ")).to.deep.equal(refit);
      }
    });

    it("bad values and conflicts: exit 2 with one line naming the option", () => {
      const cases: Array<[string[], RegExp]> = [
        [["--refit-sweeps", "abc"], /--refit-sweeps needs a non-negative integer \(got 'abc'\)/],
        [["--refit-sweeps=-1"], /--refit-sweeps needs a non-negative integer \(got '-1'\)/],
        [["--refit-sweeps", "1.5"], /--refit-sweeps needs a non-negative integer \(got '1\.5'\)/],
        [["--refit", "--no-refit"], /--refit and --no-refit contradict each other/],
        [["--no-refit", "--refit-sweeps", "2"], /--refit-sweeps 2 needs the refit.*\[VNMC-U001\]/],
        [["--method", "select", "--no-refit"], /apply to --method sparsegpt only.*\[VNMC-U016\]/],
        [["--score", "wanda", "--refit-sweeps", "1"], /apply to --method sparsegpt only.*\[VNMC-U016\]/],
      ];
      for (const [args, msg] of cases) {
        const r = cli("-o", join(tmp.dir, "never.onnx"), ...args);
        expect(r.code, args.join(" ")).to.equal(2);
        expect(r.stderr, args.join(" ")).to.match(msg);
        expect(r.stderr.trim().split("\n"), args.join(" ")).to.have.length(1);
      }
    });

    it("--help lists them", () => {
      const help = runCli(["compile", "--help"]).stdout;
      expect(help).to.match(/--no-refit +with --method sparsegpt/);
      expect(help).to.match(/--refit-sweeps <n> +with --method sparsegpt/);
    });
  });

  it("vnmc build configs accept refit and refitSweeps (checked like the other keys)", () => {
    const file = join(tmp.dir, "vnmc.config.json");
    const cfg = resolveConfig({ defaults: { refit: false }, models: [{ input: "mlp.onnx", method: "sparsegpt", calib: "x.npy", refitSweeps: 0 }, { input: "mlp.onnx", name: "b", output: "b.onnx", refit: true, refitSweeps: 3 }] }, file, tmp.dir);
    expect(cfg.models[0]!.options).to.deep.include({ refit: false, refitSweeps: 0 });
    expect(cfg.models[1]!.options).to.deep.include({ refit: true, refitSweeps: 3 });
    const bad = (m: Record<string, unknown>, pattern: RegExp) => {
      try {
        resolveConfig({ models: [{ input: "mlp.onnx", ...m }] }, file, tmp.dir);
        expect.fail(`accepted ${JSON.stringify(m)}`);
      } catch (e) {
        expect(e).to.be.instanceOf(VnmcError);
        expect((e as VnmcError).code).to.equal(Codes.BAD_CONFIG);
        expect((e as Error).message).to.match(pattern);
      }
    };
    bad({ refit: "false" }, /'models\[0\]\.refit' must be true or false \(got "false"\)/);
    bad({ refit: 0 }, /'models\[0\]\.refit' must be true or false \(got 0\)/);
    bad({ refitSweeps: -1 }, /'models\[0\]\.refitSweeps' must be a non-negative integer \(got -1\)/);
    bad({ refitSweeps: 1.5 }, /'models\[0\]\.refitSweeps' must be a non-negative integer \(got 1\.5\)/);
    bad({ refitSweeps: "4" }, /'models\[0\]\.refitSweeps' must be a non-negative integer \(got "4"\)/);
    bad({ refitSweep: 4 }, /unknown key 'models\[0\]\.refitSweep' \(did you mean 'refitSweeps'\?\)/);
  });
});
