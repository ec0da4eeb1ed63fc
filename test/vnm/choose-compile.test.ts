import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileFile, type CompileOptions } from '../../compiler/compile.js';
import { Codes, VnmcError } from '../../compiler/diagnostics.js';
import { renderReport } from '../../compiler/report.js';
import { readModelFile } from '../../compiler/serde/read.js';
import { writeModelFile } from '../../compiler/serde/write.js';
import { parseTargetNumber } from '../../compiler/vnm/choose-step.js';
import type { SpeedupTable } from '../../compiler/vnm/speedup-model.js';
import { SPEEDUP_TABLE } from '../../compiler/vnm/speedup-table.js';
import { buildModel } from '../../models/index.js';
import { rebuiltLayers } from '../support/compiled-weights.js';
import { tempDir } from '../support/tmp.js';
import { checkVnmPattern } from '../support/vnm-reference.js';

/**
 * The shipped table says the builder models' small layers are launch-bound on the GPU (no V:N:M is
 * faster there); without launch costs the speedups are those of large layers, which lets the tests
 * ask for real targets.
 */
const P = SPEEDUP_TABLE.params;
const NO_LAUNCH: SpeedupTable = {
  ...SPEEDUP_TABLE, measured: [],
  params: { ...P, dense: { ...P.dense, fixedUs: 0 }, decode: { ...P.decode, fixedUs: 0 }, prefill: { ...P.prefill, fixedUs: 0 } },
};

async function expectError(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    expect(e).to.be.instanceOf(VnmcError);
    expect((e as VnmcError).code).to.equal(code);
    expect((e as VnmcError).kind).to.equal('usage');
    expect((e as VnmcError).message).to.match(message);
    return;
  }
  expect.fail(`expected ${code}`);
}

describe('compile with --sparsity / --speedup / --per-layer (choosing V:N:M)', function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  let mlp: string, llama: string;
  before(() => {
    tmp = tempDir();
    mlp = join(tmp.dir, 'mlp.onnx');
    writeModelFile(buildModel('mlp', {}), mlp);
    llama = join(tmp.dir, 'llama.onnx');
    writeModelFile(buildModel('llama', {}), llama);
  });
  after(() => tmp.cleanup());

  const out = (name: string) => join(tmp.dir, name);

  it('--sparsity 0.75 without calibration: one M = 8 setting for all layers, by kept score (and says so), verified', async () => {
    const { outputPath, report } = await compileFile(mlp, { sparsity: 0.75, minSize: 0, output: out('s75.onnx') });
    expect(report.verification?.passed).to.equal(true);
    expect(report.choice).to.include({ perLayer: false, errorMeasure: 'kept-score', tokens: 1 });
    expect(report.choice!.vnm).to.match(/^(16|32|64|128):2:8$/);
    expect(report.vnm).to.equal(report.choice!.vnm);
    expect(report.choice!.sparsity).to.equal(0.75);
    expect(report.diagnostics.map((d) => d.code)).to.include(Codes.CHOICE_WITHOUT_CALIB);
    const rewritten = report.layers.filter((l) => l.status !== 'dense');
    expect(rewritten.length).to.equal(2);
    for (const l of rewritten) {
      expect(l.vnm).to.equal(report.choice!.vnm);
      expect(l.choice!.vnm).to.equal(l.vnm);
      expect(l.choice!.runnerUp, l.node).to.not.equal(undefined); // another V at M = 8
      expect(l.choice!.runnerUp!.vnm).to.match(/:2:8$/);
    }
    for (const l of rebuiltLayers(readModelFile(outputPath).model)) {
      expect(checkVnmPattern(l.W, l.outFeatures, l.inFeatures, l.v, l.m)).to.deep.equal([]);
      expect(`${l.v}:2:${l.m}`).to.equal(report.choice!.vnm);
    }
    const text = renderReport(report);
    expect(text).to.contain(`V:N:M chosen for sparsity >= 75.0% at --tokens 1, one setting for all layers: ${report.choice!.vnm}`);
    expect(text).to.contain('1 - kept-score fraction');
  });

  it('--speedup 2 with calibration: ranked by output error, the predicted speedup meets the target', async () => {
    const { report } = await compileFile(mlp, { speedup: 2, calib: 'random:4', minSize: 0, speedupTable: NO_LAUNCH, output: out('u2.onnx') });
    expect(report.verification?.passed).to.equal(true);
    expect(report.choice!.errorMeasure).to.equal('output');
    expect(report.choice!.predictedSpeedup).to.be.at.least(2);
    expect(report.diagnostics.map((d) => d.code)).to.not.include(Codes.CHOICE_WITHOUT_CALIB);
    for (const l of report.layers.filter((x) => x.status !== 'dense')) {
      expect(l.choice!.error).to.be.within(0, 1);
      expect(l.outputError, l.node).to.be.a('number');
    }
  });

  it('--per-layer --speedup on a Llama block: every layer gets a choice and a reason, the budget holds, the model verifies', async () => {
    const { outputPath, report } = await compileFile(llama, {
      // Unpermuted, so the rebuilt weights show the pattern in the original channel order.
      speedup: 2.2, perLayer: true, calib: 'random:4', permute: false, minSize: 0, speedupTable: NO_LAUNCH, output: out('pl.onnx'),
    });
    expect(report.verification?.passed).to.equal(true);
    expect(report.vnm).to.equal('per-layer');
    expect(report.choice).to.include({ perLayer: true, errorMeasure: 'output', exact: true });
    expect(report.choice!.predictedSpeedup).to.be.at.least(2.2 * (1 - 1e-9));
    const rewritten = report.layers.filter((l) => l.status !== 'dense');
    expect(rewritten.length).to.be.greaterThan(5);
    for (const l of rewritten) {
      expect(l.choice, l.node).to.not.equal(undefined);
      expect(l.choice!.vnm).to.equal(l.vnm);
      expect(l.choice!.reason).to.be.a('string').and.not.equal('');
    }
    // The model's nodes carry the per-layer settings.
    const layers = rebuiltLayers(readModelFile(outputPath).model);
    for (const l of layers) {
      expect(checkVnmPattern(l.W, l.outFeatures, l.inFeatures, l.v, l.m)).to.deep.equal([]);
      expect(`${l.v}:2:${l.m}`).to.equal(report.layers.find((r) => r.node === l.node.name)!.vnm);
    }
    const text = renderReport(report);
    expect(text).to.match(/V:N:M chosen for speedup >= 2\.2 at --tokens 1, per layer: predicted GEMM speedup \d\.\d\dx/);
    for (const l of rewritten) expect(text).to.contain(l.node);
  });

  it('--per-layer --sparsity: the weighted sparsity meets the target; the same input gives byte-identical output', async () => {
    const opts: CompileOptions = { sparsity: 0.7, perLayer: true, calib: 'random:2', minSize: 0, verify: false };
    const a = await compileFile(mlp, { ...opts, output: out('ps1.onnx') });
    const b = await compileFile(mlp, { ...opts, output: out('ps2.onnx'), threads: 0 });
    expect(a.report.choice!.sparsity).to.be.at.least(0.7 - 1e-12);
    expect(readFileSync(a.outputPath).equals(readFileSync(b.outputPath))).to.equal(true);
  });

  it('combines with --permute and --method sparsegpt (the chosen V:N:M is what they search and prune for)', async () => {
    for (const extra of [{ permute: true, permuteTime: 0.5 }, { method: 'sparsegpt' as const }]) {
      const { report } = await compileFile(mlp, { speedup: 2, perLayer: true, calib: 'random:2', minSize: 0, speedupTable: NO_LAUNCH, output: out('combo.onnx'), ...extra });
      expect(report.verification?.passed, JSON.stringify(extra)).to.equal(true);
      for (const l of report.layers.filter((x) => x.status !== 'dense')) expect(l.vnm).to.equal(l.choice!.vnm);
    }
  });

  it('rejects conflicting options, values out of range and unreachable targets with clear usage errors', async () => {
    const U = (o: CompileOptions) => compileFile(mlp, { minSize: 0, verify: false, output: out('x.onnx'), ...o });
    await expectError(U({ vnm: '64:2:8', sparsity: 0.75 }), Codes.TARGET_CONFLICT, /^--vnm fixes V:N:M, so it cannot be combined with --sparsity or --speedup/);
    await expectError(U({ sparsity: 0.75, speedup: 1.5 }), Codes.TARGET_CONFLICT, /either --sparsity or --speedup, not both/);
    await expectError(U({ perLayer: true }), Codes.TARGET_CONFLICT, /^--per-layer needs a target/);
    await expectError(U({ tokens: 16 }), Codes.TARGET_CONFLICT, /^--tokens only sets/);
    await expectError(U({ sparsity: 1.2 }), Codes.BAD_TARGET, /^--sparsity must be a fraction between 0 and 1, e\.g\. 0\.75 \(got 1\.2\)\.$/);
    await expectError(U({ sparsity: 0 }), Codes.BAD_TARGET, /--sparsity must be a fraction/);
    await expectError(U({ speedup: 0.5 }), Codes.BAD_TARGET, /^--speedup must be a number of at least 1/);
    await expectError(U({ speedup: Number.NaN }), Codes.BAD_TARGET, /--speedup must be/);
    await expectError(U({ speedup: 1.5, tokens: 0 }), Codes.BAD_TARGET, /^--tokens must be a positive integer \(got 0\)\.$/);
    await expectError(U({ sparsity: 0.9 }), Codes.UNREACHABLE_TARGET, /^--sparsity 0\.9 cannot be reached: .*at most 87\.5% sparse/);
    // The shipped table: these small layers are launch-bound, no V:N:M is faster than dense at one token.
    await expectError(U({ speedup: 1.6 }), Codes.UNREACHABLE_TARGET, /^--speedup 1\.6 cannot be reached: the fastest V:N:M settings are predicted at 0\.\d\dx for --tokens 1 on these layers; no V:N:M is faster than dense there: use --vnm or --sparsity\.$/);
    await expectError(U({ speedup: 50, speedupTable: NO_LAUNCH, perLayer: true }), Codes.UNREACHABLE_TARGET, /^--speedup 50 cannot be reached: .* predicted at \d\.\d\dx .*; ask for at most \d\.\d+, or use --vnm\.$/);
    expect(() => parseTargetNumber('--sparsity', 'abc')).to.throw(/^--sparsity needs a number \(got 'abc'\)\.$/);
    expect(parseTargetNumber('--speedup', '1.6')).to.equal(1.6);
  });
});
