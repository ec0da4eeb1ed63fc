/**
 * The V:N:M choice step of a compile (`--sparsity` / `--speedup`, optionally `--per-layer`): runs after
 * calibration (the errors need its rows) and before the permutation search and the rewrite, and sets
 * every candidate's `config`. Like calibration it is an async step, not a Pass: it prunes trial masks
 * on the prune pool. It never prints; it reports diagnostics. See docs/choosing-vnm.md.
 */
import type { Candidate, CompileState } from '../compile-state.js';
import { Codes, type DiagnosticSink, VnmcError } from '../diagnostics.js';
import { InMemoryTensor } from '../ir/tensor.js';
import { jobFor, type PruneOutput, runPruneJob } from '../weights/prune-job.js';
import type { PrunePool } from '../weights/prune-pool.js';
import type { WeightScoring } from '../weights/scores.js';
import { elementSize } from '../weights/float-view.js';
import { materializeWeight, recipeKey } from '../weights/weight-recipe.js';
import {
  budgetOf, type ChooseRequest, DEFAULT_TOKENS, explainLayer, type LayerChoice, type LayerInput, type LayerOption, layerOptions, modelFigures,
  rankUniform, solvePerLayer, uniformShortlist, unreachable, type VnmTarget,
} from './choose-vnm.js';
import { type VnmConfig, formatVnm } from './config.js';
import type { SpeedupTable } from './speedup-model.js';
import { SPEEDUP_TABLE } from './speedup-table.js';

/** Trial masks are evaluated on at most this many output channels (whole 128-row chunks, spread out). */
export const SAMPLE_ROWS = 512;
const CHUNK = 128;

/** What the report says about the choice. */
export interface ChoiceSummary {
  target: VnmTarget;
  perLayer: boolean;
  tokens: number;
  /** 'output': relative output error on calibration rows; 'kept-score': 1 − kept-score fraction (no rows). */
  errorMeasure: 'output' | 'kept-score' | 'mixed';
  /** Where the speedups come from. */
  speedupSource: string;
  /** Predicted GEMM speedup and sparsity of the candidate layers with the choice. */
  predictedSpeedup: number;
  sparsity: number;
  /** Σ error² over weights. */
  objective: number;
  /** The uniform choice, when not per layer. */
  vnm?: string;
  /** Trial prunes run, and the output channels each looked at at most. */
  trials: number;
  sampleRows: number;
  exact: boolean;
  ms: number;
  /** Per candidate label. */
  layers: Record<string, LayerChoice>;
}

interface Weight {
  input: LayerInput;
  candidates: Candidate[];
  scoring?: WeightScoring;
}

/** The weights to choose for (candidates that share a weight share its choice), in candidate order. */
function weightsOf(state: CompileState): Weight[] {
  const byKey = new Map<string, Weight>();
  for (const c of state.candidates) {
    const key = recipeKey(c.recipe, '');
    let w = byKey.get(key);
    if (!w) {
      const scoring = state.scoring?.get(recipeKey(c.recipe, formatVnm(c.config)));
      w = { input: { key, label: c.label, outFeatures: c.recipe.outFeatures, inFeatures: c.recipe.inFeatures, uses: 0 }, candidates: [] };
      if (scoring) w.scoring = scoring;
      byKey.set(key, w);
    }
    w.input.uses++;
    w.candidates.push(c);
  }
  return [...byKey.values()];
}

/** The options that ask for a choice, as compileFile gets them. */
export interface ChooseOptions {
  vnm?: unknown;
  sparsity?: number;
  speedup?: number;
  perLayer?: boolean;
  tokens?: number;
}

/** A number option from the command line; a usage error unless it is one. */
export function parseTargetNumber(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(text)) throw new VnmcError(Codes.BAD_TARGET, `${name} needs a number (got '${text}').`, 'usage');
  return Number(text);
}

/** The choice asked for, or undefined for --vnm (or the default); usage errors for bad combinations and values. */
export function resolveChooseRequest(o: ChooseOptions): ChooseRequest | undefined {
  const conflict = (msg: string) => new VnmcError(Codes.TARGET_CONFLICT, msg, 'usage');
  const bad = (msg: string) => new VnmcError(Codes.BAD_TARGET, msg, 'usage');
  const hasTarget = o.sparsity !== undefined || o.speedup !== undefined;
  if (o.sparsity !== undefined && o.speedup !== undefined) throw conflict('Give either --sparsity or --speedup, not both.');
  if (hasTarget && o.vnm !== undefined) throw conflict('--vnm fixes V:N:M, so it cannot be combined with --sparsity or --speedup; drop one of them.');
  if (!hasTarget && o.perLayer) throw conflict('--per-layer needs a target to share among layers: add --speedup S or --sparsity s.');
  if (!hasTarget && o.tokens !== undefined) throw conflict('--tokens only sets the token count of the speedup model, used with --speedup or --sparsity; add one or drop --tokens.');
  if (!hasTarget) return undefined;
  const tokens = o.tokens ?? DEFAULT_TOKENS;
  if (!Number.isInteger(tokens) || tokens < 1) throw bad(`--tokens must be a positive integer (got ${tokens}).`);
  let target: VnmTarget;
  if (o.sparsity !== undefined) {
    if (!(o.sparsity > 0 && o.sparsity < 1)) throw bad(`--sparsity must be a fraction between 0 and 1, e.g. 0.75 (got ${o.sparsity}).`);
    target = { kind: 'sparsity', value: o.sparsity };
  } else {
    if (!(Number.isFinite(o.speedup) && o.speedup! >= 1)) throw bad(`--speedup must be a number of at least 1, e.g. 1.6 (got ${o.speedup}).`);
    target = { kind: 'speedup', value: o.speedup! };
  }
  return { target, perLayer: o.perLayer ?? false, tokens };
}

function describe(t: VnmTarget): string {
  return t.kind === 'speedup' ? `--speedup ${t.value}` : `--sparsity ${t.value}`;
}

/**
 * Checks the target against the candidate layers before anything is pruned: throws a usage error when
 * no choice reaches it.
 */
export function checkReachable(state: CompileState, req: ChooseRequest, table: SpeedupTable = SPEEDUP_TABLE): void {
  const weights = weightsOf(state);
  if (weights.length === 0) return;
  const options = weights.map((w) => layerOptions(w.input, req.tokens, table));
  const miss = unreachable(weights.map((w) => w.input), options, req.target);
  if (!miss) return;
  const advice = miss.best >= 1 ? `ask for at most ${Math.floor(miss.best * 100) / 100}, or use --vnm` : 'no V:N:M is faster than dense there: use --vnm or --sparsity';
  const msg = req.target.kind === 'speedup'
    ? `${describe(req.target)} cannot be reached: the fastest V:N:M settings are predicted at ${miss.best.toFixed(2)}x for --tokens ${req.tokens} on these layers; ${advice}.`
    : `${describe(req.target)} cannot be reached: V:N:M keeps at least 2 of every 16 weights (at most ${(miss.best * 100).toFixed(1)}% sparse); ask for at most ${Math.floor(miss.best * 1000) / 1000}.`;
  throw new VnmcError(Codes.UNREACHABLE_TARGET, msg, 'usage');
}

/** Output channels to evaluate trial masks on: all, or SAMPLE_ROWS in evenly spread 128-row chunks. */
export function sampleRows(out: number): number[] {
  if (out <= SAMPLE_ROWS) return Array.from({ length: out }, (_, i) => i);
  const chunks = Math.floor(out / CHUNK);
  const take = SAMPLE_ROWS / CHUNK;
  const rows: number[] = [];
  for (let i = 0; i < take; i++) {
    const start = Math.floor((i * chunks) / take) * CHUNK;
    for (let r = start; r < start + CHUNK; r++) rows.push(r);
  }
  return rows;
}

/** A job pruning the sampled rows of a weight with `config` (the rows become a weight of their own). */
function trialJob(w: Weight, rows: number[], sample: Uint8Array, config: VnmConfig) {
  const r = w.candidates[0]!.recipe;
  const base = new InMemoryTensor(r.dataType, [rows.length, r.inFeatures], sample);
  // Trials select masks by the score only: SparseGPT's updates would lower every candidate's error at
  // many times the cost (docs/choosing-vnm.md).
  let scoring = w.scoring;
  if (scoring?.sparsegpt) {
    const { sparsegpt: _updates, ...rest } = scoring;
    scoring = rest;
  }
  return jobFor({ base, baseName: r.baseName, transposed: false, dataType: r.dataType, scale: 1, outFeatures: rows.length, inFeatures: r.inFeatures }, config, scoring);
}

function sampleBytes(w: Weight, rows: number[]): Uint8Array {
  const r = w.candidates[0]!.recipe;
  const full = materializeWeight(r);
  if (rows.length === r.outFeatures) return full.slice();
  const rowBytes = r.inFeatures * elementSize(r.dataType);
  const out = new Uint8Array(rows.length * rowBytes);
  rows.forEach((row, i) => out.set(full.subarray(row * rowBytes, (row + 1) * rowBytes), i * rowBytes));
  return out;
}

/** The error a trial measures: relative output error when the job had calibration rows, else 1 − kept-score fraction. */
function trialError(out: PruneOutput): number {
  if (out.outputError) return out.outputError.relError;
  return out.totalScore > 0 ? Math.max(0, 1 - out.keptScore / out.totalScore) : 0;
}

/** Runs the trials of `todo` (weight index, option index) with bounded memory in flight. */
async function runTrials(weights: Weight[], options: LayerOption[][], todo: Array<[number, number]>, pool: PrunePool | undefined): Promise<number> {
  let sampleFor = -1;
  let rows: number[] = [];
  let sample: Uint8Array = new Uint8Array(0);
  const inFlight = new Set<Promise<void>>();
  const limit = pool ? pool.size * 2 : 1;
  let maxRows = 0;
  for (const [l, i] of todo) {
    if (l !== sampleFor) {
      // Trials of one weight are consecutive: its sample is built once.
      sampleFor = l;
      rows = sampleRows(weights[l]!.input.outFeatures);
      sample = sampleBytes(weights[l]!, rows);
      maxRows = Math.max(maxRows, rows.length);
    }
    const job = trialJob(weights[l]!, rows, sample, options[l]![i]!.config);
    if (!pool) {
      options[l]![i]!.error = trialError(runPruneJob(job));
      continue;
    }
    const p: Promise<void> = pool.run(job).then((out) => {
      options[l]![i]!.error = trialError(out);
      inFlight.delete(p);
    });
    inFlight.add(p);
    if (inFlight.size >= limit) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  return maxRows;
}

const same = (a: VnmConfig, b: VnmConfig) => a.v === b.v && a.m === b.m;

/**
 * Chooses V:N:M for every candidate, sets `config`, moves calibration scoring to the new recipe keys,
 * and returns what the report shows.
 */
export async function chooseVnm(
  state: CompileState, req: ChooseRequest, diagnostics: DiagnosticSink, table: SpeedupTable = SPEEDUP_TABLE,
): Promise<ChoiceSummary | undefined> {
  const t0 = performance.now();
  const weights = weightsOf(state);
  if (weights.length === 0) return undefined;
  checkReachable(state, req, table);
  const inputs = weights.map((w) => w.input);
  const options = weights.map((w) => layerOptions(w.input, req.tokens, table));
  const budget = budgetOf(inputs, options, req.target);
  const todo: Array<[number, number]> = [];
  let shortlist: VnmConfig[] = [];
  if (req.perLayer) {
    options.forEach((opts, l) => opts.forEach((_, i) => todo.push([l, i])));
  } else {
    shortlist = uniformShortlist(inputs, options, req.target);
    options.forEach((opts, l) => opts.forEach((o, i) => shortlist.some((c) => same(c, o.config)) && todo.push([l, i])));
  }
  const sampled = await runTrials(weights, options, todo, state.options.pool);

  let choice: number[];
  let exact = true;
  let vnm: string | undefined;
  let runnerUp: VnmConfig | undefined;
  if (req.perLayer) {
    const sol = solvePerLayer(options, req.target, budget);
    if (!sol) throw new Error('internal: the per-layer search found no choice within a budget checked reachable');
    choice = sol.choice;
    exact = sol.exact;
  } else {
    const ranked = rankUniform(options, shortlist);
    const best = ranked[0]!.config;
    runnerUp = ranked[1]?.config;
    vnm = formatVnm(best);
    choice = options.map((opts) => opts.findIndex((o) => same(o.config, best)));
  }
  const chosen = choice.map((i, l) => options[l]![i]!);
  const figures = modelFigures(inputs, chosen);

  // Apply: the chosen config per candidate; scoring follows to the key the rewrite looks up.
  const scoring = state.scoring ? new Map(state.scoring) : undefined;
  const layers: Record<string, LayerChoice> = {};
  weights.forEach((w, l) => {
    const config = chosen[l]!.config;
    const explained = explainLayer(l, options, choice, req.target, budget, req.perLayer, runnerUp);
    for (const c of w.candidates) {
      if (scoring) scoring.delete(recipeKey(c.recipe, formatVnm(c.config)));
      c.config = { ...config };
      layers[c.label] = explained;
    }
    if (scoring && w.scoring) scoring.set(recipeKey(w.candidates[0]!.recipe, formatVnm(config)), w.scoring);
  });
  if (scoring) state.scoring = scoring;
  state.options.chosen = new Map(state.candidates.map((c) => [c.label, c.config]));

  const withRows = weights.filter((w) => (w.scoring?.rowCount ?? 0) > 0).length;
  const errorMeasure = withRows === weights.length ? 'output' : withRows === 0 ? 'kept-score' : 'mixed';
  if (errorMeasure !== 'output') {
    diagnostics.report({
      code: Codes.CHOICE_WITHOUT_CALIB, severity: 'warning', pass: 'choose-vnm',
      message: `V and M were chosen by the kept-score fraction for ${weights.length - withRows} of ${weights.length} weights (no calibration rows for their output error); give --calib DIR for a choice by output error.`,
    });
  }
  if (!exact) {
    diagnostics.report({
      code: Codes.CHOICE_APPROXIMATE, severity: 'warning', pass: 'choose-vnm',
      message: `The per-layer search kept at most its best states per cost bucket, so the choice is near-optimal rather than proven optimal.`,
    });
  }
  return {
    target: req.target, perLayer: req.perLayer, tokens: req.tokens, errorMeasure, speedupSource: table.source,
    predictedSpeedup: figures.speedup, sparsity: figures.sparsity,
    objective: chosen.reduce((s, o) => s + o.error! ** 2, 0), ...(vnm ? { vnm } : {}),
    trials: todo.length, sampleRows: sampled, exact, ms: performance.now() - t0, layers,
  };
}
