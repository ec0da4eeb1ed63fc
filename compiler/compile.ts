import { existsSync, mkdtempSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { calibrate, type CalibrationSummary } from "./calibration/calibrate.js";
import { calibrateSequentially, DEFAULT_SEQUENTIAL, DEFAULT_SEQUENTIAL_TARGET, type SequentialTarget } from "./calibration/sequential.js";
import { type CalibrationSource, openCalibration } from "./calibration/samples.js";
import type { CompileState, PassOptions } from "./compile-state.js";
import { Codes, DiagnosticSink, VnmcError } from "./diagnostics.js";
import { elementCount } from "./ir/tensor.js";
import type { Model } from "./ir/model.js";
import { PassManager, type PassTiming } from "./pass/manager.js";
import type { Pass } from "./pass/pass.js";
import { buildReport, type CompileReport } from "./report.js";
import { readModelFile } from "./serde/read.js";
import { encodeModel, PROTOBUF_LIMIT, writeModelFile, writeModelFileAsync } from "./serde/write.js";
import { defaultPermuteSeconds, searchPermutations } from "./weights/permutation-search.js";
import { PrunePool } from "./weights/prune-pool.js";
import { DEFAULT_DAMPING, DEFAULT_SPARSEGPT_MASK_SCORE, DEFAULT_SPARSEGPT_REFIT, DEFAULT_SPARSEGPT_REFIT_SWEEPS, PRUNE_METHODS, type PruneMethod, SPARSEGPT_MASK_SCORES, type SparseGptMaskScore, type SparseGptSettings } from "./weights/sparsegpt.js";
import { needsActivations, SCORE_KINDS, type ScoreKind } from "./weights/scores.js";
import { VERSION } from "./version.js";
import { verifyModels, type VerificationResult } from "./verify/verify.js";
import { type ChoiceSummary, checkReachable, chooseVnm, resolveChooseRequest } from "./vnm/choose-step.js";
import { type VnmConfig, VnmConfigError, formatVnm, parseVnm } from "./vnm/config.js";
import type { SpeedupTable } from "./vnm/speedup-model.js";
import { AddFallbackFunction, MIN_FALLBACK_OPSET } from "../passes/add-fallback-function.js";
import { FindCandidates } from "../passes/find-candidates.js";
import { FoldPermutations } from "../passes/fold-permutations.js";
import { PlanPermutationFolds } from "../passes/plan-permutation-folds.js";
import { RecordMetadata } from "../passes/record-metadata.js";
import { deadOnInput, RemoveUnused } from "../passes/remove-unused.js";
import { RewriteToVnm } from "../passes/rewrite-to-vnm.js";

export const DEFAULT_VNM = "64:2:8";
export const DEFAULT_MIN_SIZE = 4096;
/** The score used when calibration data is given and no --score (docs/calibration.md says why). */
export const DEFAULT_CALIBRATED_SCORE: ScoreKind = "wanda";

export interface CompileOptions {
  /** V:N:M pattern, e.g. "64:2:8" (default). */
  vnm?: string | VnmConfig;
  /** Output path (default: `<input without .onnx>.vnm.onnx` next to the input). */
  output?: string;
  /** Only rewrite nodes whose name matches one of these globs. */
  include?: string[];
  /** Never rewrite nodes whose name matches one of these globs. */
  exclude?: string[];
  /** Leave weights with fewer elements dense (default 4096). */
  minSize?: number;
  /** Write weights to `<output>.data` (forced for models over 2 GB). */
  externalData?: boolean;
  /** Run the original, pruned-dense and compiled models in onnxruntime and compare (default true). */
  verify?: boolean;
  /** Concrete sizes for inputs with dynamic dims, for verification. */
  shapes?: Record<string, number[]>;
  /** Worker threads for pruning (default: the available cores); 0 prunes on the main thread. */
  threads?: number;
  /**
   * Calibration samples: a folder (ONNX test-data layout, .npy or .npz files), one such file, or
   * "random:N" for N generated samples (data-free). Dynamic dims of random samples come from `shapes`.
   */
  calib?: string;
  /** Importance score (default: DEFAULT_CALIBRATED_SCORE with calibration data, magnitude without). */
  score?: ScoreKind;
  /**
   * How kept weights are found: "select" (default) keeps the raw weights of the mask chosen by
   * `score`; "sparsegpt" (needs `calib`) chooses each group's mask by its OBS saliency and UPDATES the
   * kept weights with the inverse Hessian XᵀX to absorb the pruning error (compiler/weights/sparsegpt.ts).
   */
  method?: PruneMethod;
  /** sparsegpt only, for experiments: the mask saliency (default DEFAULT_SPARSEGPT_MASK_SCORE) and damping (default 0.01). */
  sparsegptMaskScore?: SparseGptMaskScore;
  sparsegptDamping?: number;
  /**
   * sparsegpt only: sequential calibration (default DEFAULT_SEQUENTIAL): prune in stages in dependency
   * order, each stage's XᵀX gathered on the model whose earlier stages are already pruned; one
   * calibration pass per stage (compiler/calibration/sequential.ts). false: every XᵀX from the dense model.
   */
  sequential?: boolean;
  /** sequential only, for experiments: fit each stage to the dense layer output ("dense", default) or to the pruned prefix's ("pruned"). */
  sequentialTarget?: SequentialTarget;
  /**
   * sparsegpt only: once the mask is fixed, re-solve each row's kept weights exactly by least squares
   * (default DEFAULT_SPARSEGPT_REFIT = true). Without `refitSweeps` it runs on the layers where it costs
   * at most REFIT_MAX_RELATIVE_COST times the OBS pass (compiler/weights/sparsegpt.ts refitAffordable).
   */
  refit?: boolean;
  /**
   * sparsegpt with refit: at most this many passes of an exact local search over each row's 2-of-4
   * choices before the refit (a row stops at the first pass that makes no swap). Default
   * DEFAULT_SPARSEGPT_REFIT_SWEEPS = 32, i.e. to convergence, on the layers where it is affordable
   * (compiler/weights/sparsegpt.ts refitPlan: at most 12x the OBS pass); an explicit N > 0 runs up to N
   * passes (and the refit) on every layer, whatever it costs; 0 turns the search off (docs/calibration.md).
   */
  refitSweeps?: number;
  /** Search input/output channel permutations that keep more of the score (free at run time). */
  permute?: boolean;
  /**
   * Budget of the permutation search in seconds of one core's work, for the whole model (default
   * defaultPermuteSeconds of the rewritten weights). Counted in operations, so the result is the same on every machine.
   */
  permuteTime?: number;
  /**
   * Instead of `vnm`: choose V and M for at least this sparsity (0..1), or this predicted GEMM
   * speedup (>= 1), ranking by calibration error (docs/choosing-vnm.md).
   */
  sparsity?: number;
  speedup?: number;
  /** With sparsity or speedup: choose per layer under one global budget. */
  perLayer?: boolean;
  /** Tokens per GEMM call for the speedup model (default 1, a decode step). */
  tokens?: number;
  /** The speedup table (default: the one shipped, compiler/vnm/speedup-table.ts): tests, own measurements. */
  speedupTable?: SpeedupTable;
  onProgress?: (event: ProgressEvent) => void;
}

export interface ProgressEvent {
  phase: "load" | "calibrate" | "choose" | "permute" | "compile" | "write" | "verify" | "done";
  done: number;
  total: number;
}

export interface CompileResult {
  outputPath: string;
  report: CompileReport;
}

export function defaultOutputPath(input: string): string {
  const abs = resolve(input);
  const name = basename(abs).replace(/\.onnx$/i, "");
  return join(dirname(abs), `${name}.vnm.onnx`);
}

function resolveVnm(v: CompileOptions["vnm"]): VnmConfig {
  try {
    return typeof v === "object" ? parseVnm(formatVnm(v)) : parseVnm(v ?? DEFAULT_VNM);
  } catch (e) {
    if (e instanceof VnmConfigError) throw new VnmcError(Codes.BAD_VNM, e.message, "usage");
    throw e;
  }
}

function fileSize(path: string | undefined): number {
  return path && existsSync(path) ? statSync(path).size : 0;
}

/** Bytes of the model including its external data files. */
function modelBytes(path: string, model: Model): number {
  const files = new Set<string>();
  for (const g of model.graph.allGraphs()) {
    for (const v of g.initializers) {
      const p = (v.initializer as { path?: string }).path;
      if (p) files.add(p);
    }
  }
  return fileSize(path) + [...files].reduce((s, f) => s + fileSize(f), 0);
}

/** Weights stored: every initializer element except the packed index tensors (columns, meta, row_index). */
function countParameters(model: Model): number {
  let n = 0;
  for (const g of model.graph.allGraphs()) {
    for (const v of g.initializers) {
      const indexOnly = v.uses.length > 0 && v.uses.every((u) => u.node.domain === "com.vnmc" && [2, 3, 5].includes(u.index));
      if (!indexOnly) n += elementCount(v.initializer!.dims);
    }
  }
  return n;
}

/** Passes after candidates are found (and calibration statistics gathered for them). */
function rewritePasses(permute: boolean): Pass<CompileState>[] {
  return [...(permute ? [new FoldPermutations()] : []), new RewriteToVnm(), new AddFallbackFunction(), new RemoveUnused()];
}

/** sparsegpt's refit as recorded: off, or on with its local-search sweeps (`everyLayer`: asked for explicitly, run whatever it costs). */
function refitRecord(sg: SparseGptSettings): { refit: false | { sweeps: number; everyLayer?: true } } {
  return { refit: sg.refit === true ? { sweeps: sg.refitSweeps ?? 0, ...(sg.refitForced ? { everyLayer: true as const } : {}) } : false };
}

/** The options as recorded in the output model: everything that changes the result, nothing else. */
function recordedOptions(
  o: PassOptions, calibration: CalibrationSummary | undefined, permuteTime: number | undefined, sequential: boolean, sequentialTarget: SequentialTarget,
): Record<string, unknown> {
  const recorded: Record<string, unknown> = { vnm: formatVnm(o.vnm), include: o.include, exclude: o.exclude, minSize: o.minSize, score: o.score, selection: "exhaustive" };
  recorded.method = o.sparsegpt
    ? { name: "sparsegpt", maskScore: o.sparsegpt.maskScore, damping: o.sparsegpt.damping, sequential: sequential ? sequentialTarget : false, ...refitRecord(o.sparsegpt) }
    : "select";
  if (o.permute) recorded.permute = { seconds: permuteTime };
  if (o.choose) {
    recorded.choose = { target: o.choose.target, perLayer: o.choose.perLayer, tokens: o.choose.tokens };
    if (o.choose.perLayer) recorded.vnm = "per-layer";
  }
  if (calibration) recorded.calibration = { source: calibration.source, samples: calibration.samples, sha256: calibration.digest };
  return recorded;
}

function resolveScore(score: string | undefined, calib: string | undefined): ScoreKind {
  if (score === undefined) return calib ? DEFAULT_CALIBRATED_SCORE : "magnitude";
  if (!(SCORE_KINDS as readonly string[]).includes(score)) {
    throw new VnmcError(Codes.BAD_SCORE, `--score must be one of ${SCORE_KINDS.join(", ")} (got '${score}').`, "usage");
  }
  const kind = score as ScoreKind;
  if (needsActivations(kind) && !calib) {
    throw new VnmcError(Codes.SCORE_NEEDS_CALIB, `--score ${kind} needs --calib (a folder of samples, or random:N for data-free statistics).`, "usage");
  }
  return kind;
}

/** Bytes of XᵀX that sparsegpt may hold when it is the default method (above: Wanda selection). */
export const SPARSEGPT_DEFAULT_MEMORY = 2 ** 31;

/** Weights the candidates rewrite (each shared weight once): the default permutation budget scales with it. */
function rewrittenWeights(state: CompileState): number {
  const seen = new Set<unknown>();
  let n = 0;
  for (const c of state.candidates) {
    if (seen.has(c.recipe.base)) continue;
    seen.add(c.recipe.base);
    n += c.recipe.outFeatures * c.recipe.inFeatures;
  }
  return n;
}

/**
 * Why the default method (no --method, no --score, with --calib) is Wanda selection and not sparsegpt,
 * or undefined when sparsegpt it is: sparsegpt fits its updates to the calibration inputs, which with
 * random:N are noise (measured worse than Wanda on the builder models, docs/quality.md), and it holds
 * one XᵀX per distinct layer input (two with sequential calibration) for the whole compile.
 */
function autoMethodFallback(state: CompileState, calib: CalibrationSource, sequential: boolean): { severity: "info" | "warning"; message: string } | undefined {
  if (calib.dataFree) {
    return { severity: "info", message: "Data-free calibration (random:N): pruning by Wanda selection; --method sparsegpt would fit its weight updates to random inputs." };
  }
  const inputs = new Map<unknown, number>();
  for (const c of state.candidates) inputs.set(c.node.inputs[0], c.recipe.inFeatures);
  const bytes = [...inputs.values()].reduce((s, k) => s + k * k * 8, 0) * (sequential ? 2 : 1);
  if (bytes > SPARSEGPT_DEFAULT_MEMORY) {
    return {
      severity: "warning",
      message: `Pruning by Wanda selection: the default method, sparsegpt, would hold ${(bytes / 2 ** 30).toFixed(1)} GiB of XᵀX matrices for this model (limit ${SPARSEGPT_DEFAULT_MEMORY / 2 ** 30} GiB); pass --method sparsegpt to use it anyway.`,
    };
  }
  return undefined;
}

/** The sparsegpt settings for --method sparsegpt, undefined for plain selection; usage errors otherwise. */
function resolveMethod(opts: CompileOptions): PassOptions["sparsegpt"] {
  const method = opts.method ?? "select";
  if (!(PRUNE_METHODS as readonly string[]).includes(method)) {
    throw new VnmcError(Codes.BAD_METHOD, `--method must be one of ${PRUNE_METHODS.join(", ")} (got '${method}').`, "usage");
  }
  if (method === "select") return undefined;
  if (opts.calib === undefined) {
    throw new VnmcError(Codes.METHOD_NEEDS_CALIB, "--method sparsegpt needs --calib (a folder of samples, or random:N for data-free statistics): it prunes with the inputs' XᵀX.", "usage");
  }
  if (opts.score !== undefined) {
    throw new VnmcError(Codes.METHOD_CONFLICT, "--score applies to --method select; drop it, as --method sparsegpt chooses masks by its own OBS saliency.", "usage");
  }
  return { ...resolveTuning(opts), ...resolveRefit(opts) };
}

/** The experiments' sparsegpt mask score and damping (also for the default method, which is sparsegpt where it fits). */
function resolveTuning(opts: CompileOptions): Pick<SparseGptSettings, "maskScore" | "damping"> {
  const maskScore = opts.sparsegptMaskScore ?? DEFAULT_SPARSEGPT_MASK_SCORE;
  if (!SPARSEGPT_MASK_SCORES.includes(maskScore)) {
    throw new VnmcError(Codes.USAGE, `The sparsegpt mask score must be one of ${SPARSEGPT_MASK_SCORES.join(", ")} (got '${maskScore}').`, "usage");
  }
  const damping = opts.sparsegptDamping ?? DEFAULT_DAMPING;
  if (!(damping > 0 && Number.isFinite(damping))) {
    throw new VnmcError(Codes.USAGE, `The sparsegpt damping must be a positive number (got ${damping}).`, "usage");
  }
  return { maskScore, damping };
}

/** --refit / --no-refit and --refit-sweeps, checked (whether they apply, i.e. sparsegpt, is checked by the caller). */
function resolveRefit(opts: CompileOptions): Pick<SparseGptSettings, "refit" | "refitSweeps" | "refitForced"> {
  if (opts.refit !== undefined && typeof opts.refit !== "boolean") {
    throw new VnmcError(Codes.USAGE, `--refit must be true or false (got ${JSON.stringify(opts.refit)}).`, "usage");
  }
  const sweeps = opts.refitSweeps;
  if (sweeps !== undefined && !(typeof sweeps === "number" && Number.isInteger(sweeps) && sweeps >= 0)) {
    throw new VnmcError(Codes.USAGE, `--refit-sweeps needs a non-negative integer (got ${typeof sweeps === "string" ? `'${sweeps}'` : String(sweeps)}).`, "usage");
  }
  if (opts.refit === false && sweeps !== undefined && sweeps > 0) {
    throw new VnmcError(Codes.USAGE, `--refit-sweeps ${sweeps} needs the refit (its local search runs before it); drop --no-refit or --refit-sweeps.`, "usage");
  }
  // Default sweeps run where refitPlan finds them affordable; explicit ones (N > 0) on every layer.
  const refit = opts.refit ?? DEFAULT_SPARSEGPT_REFIT;
  return { refit, refitSweeps: refit ? (sweeps ?? DEFAULT_SPARSEGPT_REFIT_SWEEPS) : 0, ...(sweeps !== undefined && sweeps > 0 ? { refitForced: true } : {}) };
}

/**
 * Compile an ONNX model file to V:N:M sparsity. The output is written atomically (nothing is left
 * behind on error) and the input is never modified.
 */
export async function compileFile(input: string, opts: CompileOptions = {}): Promise<CompileResult> {
  const t0 = performance.now();
  const progress = opts.onProgress ?? (() => {});
  const choose = resolveChooseRequest(opts);
  const vnm = resolveVnm(opts.vnm);
  const minSize = opts.minSize ?? DEFAULT_MIN_SIZE;
  if (!Number.isInteger(minSize) || minSize < 0) {
    throw new VnmcError(Codes.USAGE, `--min-size must be a non-negative integer (got ${minSize}).`, "usage");
  }
  const outputPath = resolve(opts.output ?? defaultOutputPath(input));
  if (outputPath === resolve(input)) {
    throw new VnmcError(Codes.OUTPUT_IS_INPUT, "The output path is the input model; choose another output with -o.", "usage");
  }
  const verify = opts.verify ?? true;
  if (opts.permuteTime !== undefined && !(Number.isFinite(opts.permuteTime) && opts.permuteTime >= 0)) {
    throw new VnmcError(Codes.BAD_PERMUTE_TIME, `--permute-time needs a non-negative number of seconds (got ${opts.permuteTime}).`, "usage");
  }
  let sparsegpt = resolveMethod(opts);
  // No --method and no --score with calibration data: sparsegpt where it fits (decided once the model is read).
  const methodAuto = opts.method === undefined && opts.score === undefined && opts.calib !== undefined;
  if (opts.sequential !== undefined && !sparsegpt && !methodAuto) {
    throw new VnmcError(Codes.SEQUENTIAL_NEEDS_SPARSEGPT, "--sequential / --no-sequential apply to --method sparsegpt only.", "usage");
  }
  if ((opts.refit !== undefined || opts.refitSweeps !== undefined) && !sparsegpt && !methodAuto) {
    throw new VnmcError(Codes.SEQUENTIAL_NEEDS_SPARSEGPT, "--refit / --no-refit / --refit-sweeps apply to --method sparsegpt only.", "usage");
  }
  // Checked here too for the default method, before the model is read.
  const refit = resolveRefit(opts);
  let sequential = sparsegpt !== undefined && (opts.sequential ?? DEFAULT_SEQUENTIAL);
  const sequentialTarget = opts.sequentialTarget ?? DEFAULT_SEQUENTIAL_TARGET;
  if (!["pruned", "dense"].includes(sequentialTarget)) {
    throw new VnmcError(Codes.USAGE, `The sequential target must be 'pruned' or 'dense' (got '${sequentialTarget}').`, "usage");
  }
  // sparsegpt chooses masks itself; layers it cannot observe fall back to magnitude selection.
  let score: ScoreKind = sparsegpt ? "magnitude" : resolveScore(opts.score, opts.calib);
  if (opts.calib !== undefined && opts.calib.trim() === "") {
    throw new VnmcError(Codes.BAD_CALIB_OPTION, "--calib needs a folder, an .npz/.npy/.pb file, or random:N.", "usage");
  }
  progress({ phase: "load", done: 0, total: 1 });
  const loaded = readModelFile(input);
  const model = loaded.model;
  const opset = model.opsetVersion("") ?? 1;
  if (opset < MIN_FALLBACK_OPSET) {
    throw new VnmcError(
      Codes.OPSET_TOO_OLD,
      `The model uses ai.onnx opset ${opset}, but vnmc's fallback function needs opset ${MIN_FALLBACK_OPSET} or newer; convert the model first (onnx.version_converter.convert_version(model, 17)).`,
    );
  }
  const calibSource: CalibrationSource | undefined = opts.calib !== undefined ? openCalibration(opts.calib, model, opts.shapes ?? {}) : undefined;
  const bytesBefore = modelBytes(loaded.path!, model);
  const paramsBefore = countParameters(model);

  // Every exit from here on (errors and aborts between phases included) stops the worker threads.
  const pool = opts.threads === 0 ? undefined : new PrunePool(opts.threads);
  try {
    const options: PassOptions = {
      vnm, include: opts.include ?? [], exclude: opts.exclude ?? [], minSize, emit: "sparse", retainPacked: verify,
      pool, score, permute: opts.permute ?? opts.calib !== undefined,
      ...(sparsegpt ? { sparsegpt } : {}), ...(choose ? { choose } : {}),
    };
    const diagnostics = new DiagnosticSink();
    const state: CompileState = { options, candidates: [], skipped: [], weights: new Map(), initiallyUnused: deadOnInput(model) };
    const ctx = { diagnostics, state };
    const find = new PassManager<CompileState>([new FindCandidates(), ...(options.permute ? [new PlanPermutationFolds()] : [])]);
    find.run(model, ctx);
    const permuteTime = opts.permuteTime ?? defaultPermuteSeconds(rewrittenWeights(state));
    if (methodAuto) {
      const fallback = autoMethodFallback(state, calibSource!, opts.sequential ?? DEFAULT_SEQUENTIAL);
      if (fallback === undefined) {
        const settings: SparseGptSettings = { ...resolveTuning(opts), ...refit };
        sparsegpt = settings;
        sequential = opts.sequential ?? DEFAULT_SEQUENTIAL;
        score = "magnitude";
        options.sparsegpt = sparsegpt;
        options.score = score;
      } else {
        diagnostics.report({ code: Codes.METHOD_DEFAULT_SELECT, severity: fallback.severity, message: fallback.message });
      }
    }
    // An unreachable target fails before anything is calibrated or pruned.
    if (choose) checkReachable(state, choose, opts.speedupTable);
    // Calibration runs the original model, so it comes before any rewrite.
    let calibration: CalibrationSummary | undefined;
    const calibTiming: PassTiming[] = [];
    if (calibSource) {
      if (calibSource.dataFree) {
        diagnostics.report({
          code: Codes.CALIB_DATA_FREE, severity: "warning",
          message: `The calibration statistics come from ${calibSource.description}: the result is data-free; give real samples with --calib DIR for a data-aware result.`,
        });
      }
      if (state.candidates.length > 0) {
        progress({ phase: "calibrate", done: 0, total: calibSource.count });
        calibration = await calibrate(loaded.path!, model, state, calibSource, score, diagnostics, (done, total) => progress({ phase: "calibrate", done, total }));
        calibTiming.push({ pass: "calibrate", ms: calibration.ms, modified: false });
      }
    }
    // V and M are chosen on the calibration rows, before anything is searched or packed for them.
    let choice: ChoiceSummary | undefined;
    if (choose && state.candidates.length > 0) {
      progress({ phase: "choose", done: 0, total: 1 });
      choice = await chooseVnm(state, choose, diagnostics, opts.speedupTable);
      if (choice?.vnm) options.vnm = parseVnm(choice.vnm);
      calibTiming.push({ pass: "choose-vnm", ms: choice?.ms ?? 0, modified: false });
    }
    // The permutation search scores weights as their prune jobs will (calibration first) for their final V:N:M.
    if (options.permute && state.candidates.length > 0) {
      progress({ phase: "permute", done: 0, total: 1 });
      const summary = await searchPermutations(state, permuteTime, diagnostics, (done, total) => progress({ phase: "permute", done, total }));
      calibTiming.push({ pass: "permute-search", ms: summary.ms, modified: false });
    }
    // sparsegpt, sequential: prune stage by stage, each on statistics of the model with the earlier stages pruned.
    const staged = sequential && calibration !== undefined && calibSource !== undefined && state.candidates.length > 0;
    // Folding sets the producers' row orders (outputFold), which their prune jobs need: it runs before the stages prune them.
    const fold = new PassManager<CompileState>(staged && options.permute ? [new FoldPermutations()] : []);
    fold.run(model, ctx);
    if (staged) {
      progress({ phase: "calibrate", done: 0, total: 1 });
      const seq = await calibrateSequentially(input, model, state, calibSource!, score, calibration!.rowsPerActivation, (done, total) => progress({ phase: "calibrate", done, total }), sequentialTarget);
      calibration!.sequential = { target: sequentialTarget, ...seq, ms: Math.round(seq.ms) };
      calibTiming.push({ pass: "calibrate-sequential", ms: seq.ms, modified: false });
    }
    const manager = new PassManager<CompileState>([
      ...rewritePasses((options.permute ?? false) && fold.timings.length === 0), new RecordMetadata(VERSION, recordedOptions(options, calibration, options.permute ? permuteTime : undefined, sequential, sequentialTarget)),
    ]);
    manager.run(model, ctx);
    if (state.candidates.length === 0) {
      diagnostics.report({
        code: Codes.NO_CANDIDATES, severity: "warning",
        message: "No MatMul/Gemm with a constant 2-D weight was rewritten; the output is the input model with vnmc's metadata.",
      });
    }

    // Write into a private folder next to the output, verify there, then move into place.
    const workDir = mkdtempSync(join(dirname(outputPath), `.vnmc-${process.pid}-`));
    let verification: VerificationResult | undefined;
    const verifyTiming: PassTiming[] = [];
    try {
      const staged = join(workDir, basename(outputPath));
      const totalTensors = [...model.graph.allGraphs()].reduce((n, g) => n + g.initializers.length, 0);
      let written = 0;
      const t1 = performance.now();
      progress({ phase: "write", done: 0, total: totalTensors });
      const result = await writeModelFileAsync(model, staged, {
        externalData: opts.externalData,
        onTensor: () => progress({ phase: "write", done: ++written, total: totalTensors }),
      });
      const writeMs = performance.now() - t1;
      if (result.externalForced) {
        diagnostics.report({
          code: Codes.EXTERNAL_DATA_FORCED, severity: "warning",
          message: "The compiled model is over 2 GB, so its weights were written to an external data file next to it.",
        });
      }
      if (verify) {
        progress({ phase: "verify", done: 0, total: 3 });
        const tv = performance.now();
        verification = await runVerification(input, state, staged, opts.shapes ?? {}, calibSource);
        verifyTiming.push({ pass: "verify", ms: performance.now() - tv, modified: false });
        if (!verification.passed) {
          const worst = verification.packing.reduce((a, b) => (a.maxRelError > b.maxRelError ? a : b));
          throw new VnmcError(
            Codes.VERIFY_FAILED,
            `The compiled model does not match the pruned weights (output '${worst.name}' off by ${worst.maxRelError.toExponential(2)}, allowed ${verification.tolerance}); this is a vnmc bug, please report it with the model.`,
          );
        }
        // Verification finished: the last point where a caller (the API's AbortSignal) can stop before the output is moved into place.
        progress({ phase: "verify", done: 3, total: 3 });
      }
      if (result.dataPath) renameSync(result.dataPath, `${outputPath}.data`);
      renameSync(staged, outputPath);
      if (!result.dataPath && existsSync(`${outputPath}.data`)) rmSync(`${outputPath}.data`);
      progress({ phase: "done", done: 1, total: 1 });
      const report = buildReport({
        input: resolve(input), output: outputPath, vnm: options.vnm, choice, state, diagnostics: diagnostics.items,
        paramsBefore, paramsAfter: countParameters(model),
        bytesBefore, bytesAfter: fileSize(outputPath) + fileSize(result.dataPath ? `${outputPath}.data` : undefined),
        timings: [...find.timings, ...calibTiming, ...fold.timings, ...manager.timings, { pass: "write", ms: writeMs, modified: false } satisfies PassTiming, ...verifyTiming],
        totalMs: performance.now() - t0, verification, calibration, score,
      });
      return { outputPath, report };
    } finally {
      rmSync(workDir, { recursive: true, force: true });
    }
  } finally {
    await pool?.close();
  }
}

/** Builds the pruned-dense reference from a fresh load of the input, reusing the pruning results. */
async function runVerification(
  input: string, state: CompileState, compiledPath: string, shapes: Record<string, number[]>, calibration?: CalibrationSource,
): Promise<VerificationResult> {
  const fresh = readModelFile(input).model;
  const refState: CompileState = {
    options: { ...state.options, emit: "pruned-dense" }, candidates: [], skipped: [], weights: state.weights, initiallyUnused: deadOnInput(fresh),
  };
  new PassManager<CompileState>([new FindCandidates(), new RewriteToVnm(), new RemoveUnused()]).run(fresh, { diagnostics: new DiagnosticSink(), state: refState });
  const big = [...fresh.graph.allGraphs()].reduce((s, g) => s + g.initializers.reduce((t, v) => t + v.initializer!.byteLength, 0), 0) > PROTOBUF_LIMIT / 2;
  let prunedDense: { label: string; path?: string; bytes?: Uint8Array };
  if (big) {
    const p = join(dirname(compiledPath), "pruned-dense.onnx");
    writeModelFile(fresh, p, { externalData: true });
    prunedDense = { label: "pruned-dense", path: p };
  } else {
    prunedDense = { label: "pruned-dense", bytes: encodeModel(fresh) };
  }
  return verifyModels(fresh, shapes, { label: "original", path: resolve(input) }, prunedDense, { label: "compiled", path: compiledPath }, calibration);
}
