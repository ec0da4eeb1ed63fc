/**
 * Choosing V and M from a target (docs/choosing-vnm.md): `--sparsity s` or `--speedup S` instead of
 * `--vnm`, for the whole model or, with `--per-layer`, layer by layer under one global budget.
 * Pure numeric code: the errors of the options come from the caller (choose-step.ts prunes them).
 *
 * - Candidates: V in CANDIDATE_V, M in CANDIDATE_M.
 * - Cost of an option: predicted GEMM time × uses (--speedup) or weights kept (--sparsity); the
 *   target is a budget on the sum over layers: Σ dense time / S, or (1 − s) · Σ weights.
 * - Objective: Σ over layers of error², where error is the layer's relative output error on the
 *   calibration rows (or 1 − kept-score fraction without them); errors of independent layers add in
 *   power, so the squares add. Errors are compared to 3 significant digits; equal ones are told apart
 *   by mask diversity (the paper's criterion), larger first.
 * - Uniform: the best single (V, M) meeting the budget. Per layer: the multiple-choice knapsack
 *   solved exactly by a Pareto-front dynamic program over layers (thinned, and then approximate, only
 *   past MAX_FRONT states).
 */
import { type VnmConfig, formatVnm } from './config.js';
import { type LayerShape, predictSpeedup, type SpeedupTable } from './speedup-model.js';
import { SPEEDUP_TABLE } from './speedup-table.js';

export const CANDIDATE_V: readonly number[] = [16, 32, 64, 128];
export const CANDIDATE_M: readonly number[] = [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
/** Default token count of the speedup model: one decode step (docs/choosing-vnm.md says why). */
export const DEFAULT_TOKENS = 1;
/** Largest Pareto front the per-layer search keeps; beyond it, it keeps the best state per cost bucket. */
export const MAX_FRONT = 4096;
/** Relative slack when comparing a cost with the budget (float sums in a different order). */
const BUDGET_SLACK = 1e-9;

export type VnmTarget = { kind: 'speedup'; value: number } | { kind: 'sparsity'; value: number };

export interface ChooseRequest {
  target: VnmTarget;
  perLayer: boolean;
  /** Tokens per GEMM call for the speedup model. */
  tokens: number;
}

/** One weight to choose for (candidates sharing a weight share its choice). */
export interface LayerInput {
  /** Identifies the weight. */
  key: string;
  /** The first node that reads it, for messages and the report. */
  label: string;
  outFeatures: number;
  inFeatures: number;
  /** Nodes that run this weight (each one a GEMM: time counts once per use). */
  uses: number;
}

/** One (V, M) for one layer, with everything the choice looks at. */
export interface LayerOption {
  config: VnmConfig;
  speedup: number;
  speedupSource: 'measured' | 'model';
  /** Predicted dense and sparse time of all uses, µs. */
  denseUs: number;
  sparseUs: number;
  /** Weights kept: out · in · 2/M. */
  kept: number;
  diversity: number;
  /** Relative output error (or 1 − kept-score fraction), once evaluated. */
  error?: number;
}

/** ln of the number of V:N:M masks of one V × M block, per weight: (ln C(M,4) + V·ln 6) / (V·M). */
export function maskDiversity(v: number, m: number): number {
  return (Math.log(binomial(m, 4)) + v * Math.log(6)) / (v * m);
}

function binomial(n: number, k: number): number {
  let r = 1;
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
  return r;
}

export function candidateConfigs(): VnmConfig[] {
  return CANDIDATE_V.flatMap((v) => CANDIDATE_M.map((m) => ({ v, n: 2, m })));
}

/** Every candidate (V, M) of a layer with its predicted speedup, times and kept weights. */
export function layerOptions(layer: LayerInput, tokens: number, table: SpeedupTable = SPEEDUP_TABLE): LayerOption[] {
  const shape: LayerShape = { outFeatures: layer.outFeatures, inFeatures: layer.inFeatures };
  return candidateConfigs().map((config) => {
    const p = predictSpeedup(shape, tokens, config, table);
    return {
      config, speedup: p.speedup, speedupSource: p.source, denseUs: p.denseUs * layer.uses, sparseUs: p.sparseUs * layer.uses,
      kept: (layer.outFeatures * layer.inFeatures * 2) / config.m, diversity: maskDiversity(config.v, config.m),
    };
  });
}

export function optionCost(o: LayerOption, target: VnmTarget): number {
  return target.kind === 'speedup' ? o.sparseUs : o.kept;
}

/** The budget Σ cost must stay within. */
export function budgetOf(layers: LayerInput[], options: LayerOption[][], target: VnmTarget): number {
  if (target.kind === 'speedup') return options.reduce((s, opts) => s + opts[0]!.denseUs, 0) / target.value;
  return (1 - target.value) * layers.reduce((s, l) => s + l.outFeatures * l.inFeatures, 0);
}

export function withinBudget(cost: number, budget: number): boolean {
  return cost <= budget * (1 + BUDGET_SLACK);
}

/** Whole-model figures of a choice: predicted GEMM speedup and sparsity of the chosen layers. */
export function modelFigures(layers: LayerInput[], chosen: LayerOption[]): { speedup: number; sparsity: number } {
  const dense = chosen.reduce((s, o) => s + o.denseUs, 0);
  const sparse = chosen.reduce((s, o) => s + o.sparseUs, 0);
  const weights = layers.reduce((s, l) => s + l.outFeatures * l.inFeatures, 0);
  const kept = chosen.reduce((s, o) => s + o.kept, 0);
  return { speedup: sparse > 0 ? dense / sparse : 1, sparsity: weights > 0 ? 1 - kept / weights : 0 };
}

/** Why a target cannot be met: the best the candidates reach, or undefined when it can. */
export function unreachable(layers: LayerInput[], options: LayerOption[][], target: VnmTarget): { best: number } | undefined {
  const cheapest = options.map((opts) => opts.reduce((a, b) => (optionCost(b, target) < optionCost(a, target) ? b : a)));
  const cost = cheapest.reduce((s, o) => s + optionCost(o, target), 0);
  if (withinBudget(cost, budgetOf(layers, options, target))) return undefined;
  const f = modelFigures(layers, cheapest);
  return { best: target.kind === 'speedup' ? f.speedup : f.sparsity };
}

/** An error to 3 significant digits: differences below that are noise of the estimate. */
export function roundedError(e: number): number {
  return e > 0 && Number.isFinite(e) ? Number(e.toPrecision(3)) : e;
}

const q = (o: LayerOption) => roundedError(o.error!) ** 2;
const cfgOrder = (a: VnmConfig, b: VnmConfig) => a.v - b.v || a.m - b.m;

/**
 * Uniform choice: the configs to evaluate. Those meeting the target; per V only the smallest such M,
 * since pruning more (larger M) only adds error, and both the model's speedup and the sparsity grow
 * with M (so larger M always meets the target too).
 */
export function uniformShortlist(layers: LayerInput[], options: LayerOption[][], target: VnmTarget): VnmConfig[] {
  const budget = budgetOf(layers, options, target);
  const out: VnmConfig[] = [];
  for (const v of CANDIDATE_V) {
    for (const m of CANDIDATE_M) {
      const cost = options.reduce((s, opts) => s + optionCost(opts.find((o) => o.config.v === v && o.config.m === m)!, target), 0);
      if (withinBudget(cost, budget)) {
        out.push({ v, n: 2, m });
        break;
      }
    }
  }
  return out;
}

export interface UniformRanking {
  config: VnmConfig;
  /** Σ error² over layers. */
  objective: number;
  diversity: number;
}

/** Ranks evaluated uniform configs: smallest Σ error² (3 digits per layer), then mask diversity. */
export function rankUniform(options: LayerOption[][], configs: VnmConfig[]): UniformRanking[] {
  const ranked = configs.map((config) => {
    const chosen = options.map((opts) => opts.find((o) => o.config.v === config.v && o.config.m === config.m)!);
    return { config, objective: chosen.reduce((s, o) => s + q(o), 0), diversity: maskDiversity(config.v, config.m) };
  });
  return ranked.sort((a, b) => compareObjective(a.objective, b.objective) || b.diversity - a.diversity || cfgOrder(a.config, b.config));
}

/** Objectives equal to 12 significant digits count as equal (sums of the same rounded terms). */
function compareObjective(a: number, b: number): number {
  const scale = Math.max(Math.abs(a), Math.abs(b));
  return Math.abs(a - b) <= scale * 1e-12 ? 0 : a - b;
}

interface FrontState {
  cost: number;
  obj: number;
  /** The chosen option index of this layer, and the state of the previous layers. */
  option: number;
  parent: FrontState | undefined;
}

export interface PerLayerSolution {
  /** Chosen option index per layer. */
  choice: number[];
  objective: number;
  cost: number;
  /** False when the front had to be thinned: then the result is near-optimal, not proven optimal. */
  exact: boolean;
}

/**
 * Per-layer choice: minimise Σ error² subject to Σ cost ≤ budget, one option per layer. A dynamic
 * program over layers keeps the Pareto front of (cost, objective) of partial choices; states that
 * cannot meet the budget even with the cheapest options of the remaining layers are dropped. Then
 * every layer moves, where it can, to an option of equal rounded error and larger mask diversity that
 * keeps the budget. Options must have errors. Returns undefined when no choice meets the budget.
 */
export function solvePerLayer(options: LayerOption[][], target: VnmTarget, budget: number, maxFront = MAX_FRONT): PerLayerSolution | undefined {
  const L = options.length;
  const costs = options.map((opts) => opts.map((o) => optionCost(o, target)));
  const minRest = new Array<number>(L + 1).fill(0);
  for (let l = L - 1; l >= 0; l--) minRest[l] = minRest[l + 1]! + Math.min(...costs[l]!);
  let front: FrontState[] = [{ cost: 0, obj: 0, option: -1, parent: undefined }];
  let exact = true;
  for (let l = 0; l < L; l++) {
    const next: FrontState[] = [];
    for (const s of front) {
      options[l]!.forEach((o, i) => {
        const cost = s.cost + costs[l]![i]!;
        if (withinBudget(cost + minRest[l + 1]!, budget)) next.push({ cost, obj: s.obj + q(o), option: i, parent: s });
      });
    }
    if (next.length === 0) return undefined;
    front = paretoFront(next);
    if (front.length > maxFront) {
      front = thin(front, maxFront);
      exact = false;
    }
  }
  const best = front.reduce((a, b) => (compareObjective(b.obj, a.obj) < 0 || (compareObjective(b.obj, a.obj) === 0 && b.cost < a.cost) ? b : a));
  const choice = new Array<number>(L);
  for (let s: FrontState | undefined = best, l = L - 1; s && l >= 0; s = s.parent, l--) choice[l] = s.option;
  let cost = best.cost;
  // Tie-break by mask diversity, layer by layer in order (deterministic).
  for (let l = 0; l < L; l++) {
    const cur = options[l]![choice[l]!]!;
    let pick = choice[l]!;
    options[l]!.forEach((o, i) => {
      const p = options[l]![pick]!;
      if (roundedError(o.error!) !== roundedError(cur.error!) || o.diversity <= p.diversity) return;
      if (withinBudget(cost - costs[l]![choice[l]!]! + costs[l]![i]!, budget)) pick = i;
    });
    cost += costs[l]![pick]! - costs[l]![choice[l]!]!;
    choice[l] = pick;
  }
  const objective = choice.reduce((s, i, l) => s + q(options[l]![i]!), 0);
  return { choice, objective, cost, exact };
}

/** States sorted by cost whose objective strictly decreases: no state is dominated. */
function paretoFront(states: FrontState[]): FrontState[] {
  states.sort((a, b) => a.cost - b.cost || a.obj - b.obj);
  const out: FrontState[] = [];
  for (const s of states) if (out.length === 0 || s.obj < out[out.length - 1]!.obj) out.push(s);
  return out;
}

/** Keeps the cheapest state and the best-objective state of each of `n` equal cost buckets. */
function thin(front: FrontState[], n: number): FrontState[] {
  const lo = front[0]!.cost, hi = front[front.length - 1]!.cost;
  const width = (hi - lo) / (n - 1) || 1;
  const out: FrontState[] = [];
  let bucket = -1;
  for (const s of front) {
    const b = Math.floor((s.cost - lo) / width);
    // Along the front the objective falls as cost grows: the last state of a bucket is its best.
    if (b === bucket) out[out.length - 1] = s;
    else out.push(s);
    bucket = b;
  }
  if (out[0] !== front[0]) out.unshift(front[0]!);
  return out;
}

/** The per-layer verdict the report shows. */
export interface LayerChoice {
  vnm: string;
  predictedSpeedup: number;
  speedupSource: 'measured' | 'model';
  error: number;
  /** The best other option: for a per-layer choice the lowest-error one that keeps the budget. */
  runnerUp?: { vnm: string; predictedSpeedup: number; error: number };
  reason: string;
}

export const errorText = (e: number) => `${(e * 100).toPrecision(3)}%`;

function describeTarget(t: VnmTarget): string {
  return t.kind === 'speedup' ? `speedup >= ${t.value}` : `sparsity >= ${(t.value * 100).toFixed(1)}%`;
}

/** The report's explanation of one layer's choice. */
export function explainLayer(
  l: number, options: LayerOption[][], choice: number[], target: VnmTarget, budget: number, perLayer: boolean, uniformRunnerUp?: VnmConfig,
): LayerChoice {
  const opts = options[l]!;
  const chosen = opts[choice[l]!]!;
  const base: LayerChoice = {
    vnm: formatVnm(chosen.config), predictedSpeedup: chosen.speedup, speedupSource: chosen.speedupSource, error: chosen.error!, reason: '',
  };
  const summary = (o: LayerOption) => ({ vnm: formatVnm(o.config), predictedSpeedup: o.speedup, error: o.error! });
  if (!perLayer) {
    const r = uniformRunnerUp && opts.find((o) => o.config.v === uniformRunnerUp.v && o.config.m === uniformRunnerUp.m);
    base.reason = `one V:N:M for all layers: the lowest total error meeting ${describeTarget(target)}`;
    if (r) base.runnerUp = summary(r);
    return base;
  }
  const total = choice.reduce((s, i, k) => s + optionCost(options[k]![i]!, target), 0);
  const evaluated = opts.map((o, i) => ({ o, i })).filter(({ o, i }) => i !== choice[l] && o.error !== undefined);
  const fits = evaluated.filter(({ o }) => withinBudget(total - optionCost(chosen, target) + optionCost(o, target), budget));
  const byError = (a: { o: LayerOption }, b: { o: LayerOption }) => roundedError(a.o.error!) - roundedError(b.o.error!) || b.o.diversity - a.o.diversity || cfgOrder(a.o.config, b.o.config);
  const better = evaluated.filter(({ o }) => roundedError(o.error!) < roundedError(chosen.error!)).sort(byError)[0];
  const runner = fits.sort(byError)[0];
  if (runner) base.runnerUp = summary(runner.o);
  if (!better) base.reason = 'lowest error of all options';
  else base.reason = `${formatVnm(better.o.config)} (error ${errorText(better.o.error!)}) would miss ${describeTarget(target)}; the budget is spent where it costs least error`;
  return base;
}
