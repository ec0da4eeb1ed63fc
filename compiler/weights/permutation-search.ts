/**
 * --permute: searches every rewritten weight's channel permutations before it is pruned, on the
 * worker pool when there is one. Only permutations come back (a few KB per weight), so memory stays
 * bounded; the prune jobs later apply them.
 */
import { hash32 } from "../seeded.js";
import type { CompileState, WeightPermutation } from "../compile-state.js";
import { Codes, type DiagnosticSink } from "../diagnostics.js";
import { formatVnm } from "../vnm/config.js";
import { PERMUTE_WORK_PER_SECOND, type PermuteJob, type PermuteOutput, runPermuteJob } from "./permute-job.js";
import { jobFor } from "./prune-job.js";
import type { ScoreKind, WeightScoring } from "./scores.js";
import { Scratch } from "./scratch.js";
import { recipeKey } from "./weight-recipe.js";

/**
 * Default --permute-time: seconds of one core's search work for the whole model, by its size: 1 s per
 * 100 K weights (the char-LM's 1.8 M: 18 s, where the gains of docs/quality.md were measured), at least
 * 1 s and at most 60 s.
 */
export function defaultPermuteSeconds(weights: number): number {
  return Math.min(60, Math.max(1, Math.round(weights / 1e5)));
}
/** The help text's description of the default. */
export const DEFAULT_PERMUTE_TIME_TEXT = "1 s per 100 K weights, 1 to 60 s";
/**
 * The wall clock stops a weight's search only past this multiple of its share of the budget: normally
 * the work count ends it, which is the same on every machine (deterministic output).
 */
const WALL_CLOCK_SLACK = 4;
/** ...and never below this, so fixed costs (reading, scoring, the first selections) never trip it. */
const WALL_CLOCK_FLOOR_MS = 3000;

export interface PermutationSearchSummary {
  weights: number;
  ms: number;
  timeCapped: number;
}

/**
 * What the search scores by: the layer's own score; under sparsegpt (whose masks follow the OBS
 * saliency w²/[H⁻¹]_kk) Wanda's |w|·‖X_k‖, its diagonal approximation. Only the norms travel to the
 * worker, not the calibration rows or the Hessian.
 */
function searchScoring(s: WeightScoring | undefined): WeightScoring | undefined {
  if (!s) return undefined;
  const kind: ScoreKind = s.sparsegpt ? "wanda" : s.kind;
  return s.norms ? { kind, norms: s.norms } : { kind: "magnitude" };
}

/**
 * Fills `state.permutations` for every candidate's weight. The budget `seconds` is split across the
 * weights in proportion to their size.
 */
export async function searchPermutations(
  state: CompileState, seconds: number, diagnostics: DiagnosticSink, onDone?: (done: number, total: number) => void,
): Promise<PermutationSearchSummary> {
  const t0 = performance.now();
  const jobs = new Map<string, PermuteJob>();
  for (const c of state.candidates) {
    const key = recipeKey(c.recipe, formatVnm(c.config));
    if (jobs.has(key)) continue;
    const { source, baseType, baseDims, recipe, config } = jobFor(c.recipe, c.config);
    const scoring = searchScoring(state.scoring?.get(key));
    jobs.set(key, { source, baseType, baseDims, recipe, config, ...(scoring ? { scoring } : {}), seed: hash32(key), maxWork: 0, timeBudgetMs: 0 });
  }
  const total = [...jobs.values()].reduce((s, j) => s + j.recipe.outFeatures * j.recipe.inFeatures, 0);
  for (const job of jobs.values()) {
    const share = total > 0 ? (job.recipe.outFeatures * job.recipe.inFeatures) / total : 0;
    job.maxWork = Math.floor(seconds * share * PERMUTE_WORK_PER_SECOND);
    job.timeBudgetMs = Math.max(WALL_CLOCK_FLOOR_MS, seconds * share * 1000 * WALL_CLOCK_SLACK);
  }
  const pool = state.options.pool;
  const scratch = pool ? undefined : new Scratch();
  let done = 0;
  const entries = [...jobs.entries()];
  const results = await Promise.all(
    entries.map(async ([, job]): Promise<PermuteOutput> => {
      const out = pool ? await pool.search(job) : runPermuteJob(job, scratch);
      onDone?.(++done, entries.length);
      return out;
    }),
  );
  const permutations = new Map<string, WeightPermutation>();
  let timeCapped = 0;
  entries.forEach(([key], i) => {
    const r = results[i]!;
    if (r.stoppedBy === "time") timeCapped++;
    permutations.set(key, {
      input: r.input, output: r.output, inputFolded: false, keptBefore: r.keptBefore, keptAfter: r.keptAfter, stoppedBy: r.stoppedBy, ms: r.ms,
    });
  });
  if (timeCapped > 0) {
    diagnostics.report({
      code: Codes.PERMUTE_TIME_CAPPED, severity: "warning",
      message: `The permutation search of ${timeCapped} weight(s) was stopped by the clock, not by its work budget, so the output may differ between runs; this machine is slower than the budget assumes (give a larger --permute-time for a reproducible result).`,
    });
  }
  state.permutations = permutations;
  return { weights: entries.length, ms: performance.now() - t0, timeCapped };
}
