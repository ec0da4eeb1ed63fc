/**
 * The channel-permutation search for one weight, as a job a worker thread runs: it reads and scores
 * the weight as its prune job will, then searches input and output permutations that maximise the
 * kept score (compiler/vnm/permute.ts). Only the permutations travel back; the prune job applies them.
 */
import { identityPermutation, searchPermutation } from "../vnm/permute.js";
import { scoreWeight, type PruneJob } from "./prune-job.js";
import type { Scratch } from "./scratch.js";

/** Work units of the search per second of one core (permute.ts counts about 1e8 per second). */
export const PERMUTE_WORK_PER_SECOND = 1e8;

export interface PermuteJob extends Pick<PruneJob, "source" | "baseType" | "baseDims" | "recipe" | "config" | "scoring"> {
  /** Seeds the order of the search's moves. */
  seed: number;
  /** Deterministic budget in work units (the same result on every machine when it ends the search). */
  maxWork: number;
  /** Wall-clock cap in milliseconds, a safety net on slow machines (the result then depends on timing). */
  timeBudgetMs: number;
}

export interface PermuteOutput {
  input: Int32Array;
  output: Int32Array;
  keptBefore: number;
  keptAfter: number;
  stoppedBy: "converged" | "time" | "rounds" | "work" | "already sparse";
  ms: number;
}

export function runPermuteJob(job: PermuteJob, scratch?: Scratch): PermuteOutput {
  const t0 = performance.now();
  const { recipe, score, alreadySparse } = scoreWeight(job, scratch);
  const { outFeatures: out, inFeatures: inF } = recipe;
  if (alreadySparse) {
    // Its nonzeros are packed exactly as they are; permuting could only break the pattern.
    return { input: identityPermutation(inF), output: identityPermutation(out), keptBefore: 0, keptAfter: 0, stoppedBy: "already sparse", ms: performance.now() - t0 };
  }
  const r = searchPermutation(score, out, inF, job.config, { seed: job.seed, maxWork: job.maxWork, timeBudgetMs: job.timeBudgetMs });
  return { input: r.inputPerm, output: r.outputPerm, keptBefore: r.keptBefore, keptAfter: r.keptAfter, stoppedBy: r.stoppedBy, ms: performance.now() - t0 };
}
