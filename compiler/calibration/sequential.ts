/**
 * Sequential calibration for --method sparsegpt (as in the SparseGPT paper): the layers are pruned in
 * stages, in dependency order, and the statistics of stage k's inputs (XᵀX, norms, rows) come from
 * the model in which every weight of the earlier stages is already replaced by its pruned (and
 * updated) weights, so that each layer is fitted to the inputs it will actually see.
 *
 * Stages: a candidate's depth is 1 + the largest depth of the candidates upstream of its input (q, k
 * and v reading one tensor share a depth); a weight's stage is the largest depth of the candidates
 * that read it. Stage 1 reads only the dense model, so it keeps the statistics of the dense
 * calibration pass; every later stage costs one more calibration pass (all samples) over a
 * "pruned-prefix" model, built as the verification's pruned-dense reference is (RewriteToVnm emitting
 * "pruned-dense") but with only the earlier stages' weights replaced.
 *
 * The V:N:M choice (--sparsity/--speedup) and the permutation search (--permute) run before the
 * stages, on the dense statistics: a consumer's input permutation folds into its producers' rows, so
 * it must be known before the producers are pruned.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Candidate, CompileState } from "../compile-state.js";
import { DiagnosticSink } from "../diagnostics.js";
import type { Graph } from "../ir/graph.js";
import type { Model } from "../ir/model.js";
import type { Value } from "../ir/value.js";
import { PassManager } from "../pass/manager.js";
import type { Pass } from "../pass/pass.js";
import { readModelFile } from "../serde/read.js";
import { encodeModel, PROTOBUF_LIMIT, writeModelFile } from "../serde/write.js";
import { formatVnm } from "../vnm/config.js";
import type { JobPermutation } from "../weights/prune-job.js";
import type { ScoreKind } from "../weights/scores.js";
import { SparseWeight } from "../weights/sparse-weight.js";
import { recipeKey } from "../weights/weight-recipe.js";
import { FindCandidates } from "../../passes/find-candidates.js";
import { deadOnInput, RemoveUnused } from "../../passes/remove-unused.js";
import { RewriteToVnm } from "../../passes/rewrite-to-vnm.js";
import { type ActivationRequest, collectActivationStats, collectCrossGrams, type InMemoryModel, requestKey } from "./collect.js";
import { observableRequest, scoringFor } from "./calibrate.js";
import type { CalibrationSource } from "./samples.js";

/** Whether --method sparsegpt calibrates sequentially when neither --sequential nor --no-sequential is given. */
export const DEFAULT_SEQUENTIAL = true;

/**
 * What each stage's layers are fitted to: "pruned" (SparseGPT's sequential mode) minimises
 * ‖X̂·Wᵀ − X̂·Ŵᵀ‖ on the inputs X̂ the pruned prefix gives; "dense" (error-correcting) minimises
 * ‖X·Wᵀ − X̂·Ŵᵀ‖, the dense model's layer output, which also needs X̂ᵀX (both models run per stage).
 */
export type SequentialTarget = "pruned" | "dense";
export const DEFAULT_SEQUENTIAL_TARGET: SequentialTarget = "dense";

export interface SequentialSummary {
  /** Stages (distinct depths with weights); stage 1 uses the dense statistics. */
  stages: number;
  /** Calibration passes over the samples beyond the dense one (stages − 1 with observed layers). */
  passes: number;
  /** onnxruntime runs of those passes. */
  runs: number;
  /** Wall time of the stages: building the pruned-prefix models, calibrating, pruning. */
  ms: number;
}

/** The permutation a weight's prune job gets, as RewriteToVnm passes it (the report's fields stay behind). */
function jobPermutation(state: CompileState, key: string): JobPermutation | undefined {
  const p = state.permutations?.get(key);
  if (!p) return undefined;
  const job: JobPermutation = { input: p.input, output: p.output, inputFolded: p.inputFolded };
  if (p.outputFold) job.outputFold = p.outputFold;
  return job;
}

const keyOf = (c: Candidate) => recipeKey(c.recipe, formatVnm(c.config));

/**
 * Depth of every candidate of the main graph: 1 + the largest depth of the candidates upstream of
 * its inputs. A node holding subgraphs (If/Loop/Scan) counts as downstream of every node before it;
 * candidates inside subgraphs (never observed, pruned by magnitude) get depth 1.
 */
export function candidateDepths(model: Model, candidates: Candidate[]): Map<Candidate, number> {
  const byNode = new Map(candidates.map((c) => [c.node, c]));
  const depth = new Map<Candidate, number>();
  const valueDepth = new Map<Value, number>();
  const main: Graph = model.graph;
  let sofar = 0;
  for (const node of main.nodes) {
    let d = 0;
    for (const v of node.inputs) if (v) d = Math.max(d, valueDepth.get(v) ?? 0);
    if (node.subgraphs().length > 0) d = Math.max(d, sofar);
    const c = byNode.get(node);
    if (c) {
      d += 1;
      depth.set(c, d);
    }
    for (const v of node.outputs) valueDepth.set(v, d);
    sofar = Math.max(sofar, d);
  }
  for (const c of candidates) if (!depth.has(c)) depth.set(c, 1);
  return depth;
}

/** Weight keys grouped by stage, in pruning order; a weight's stage is the deepest candidate reading it. */
export function weightStages(model: Model, candidates: Candidate[]): string[][] {
  const depths = candidateDepths(model, candidates);
  const stageOf = new Map<string, number>();
  for (const c of candidates) stageOf.set(keyOf(c), Math.max(stageOf.get(keyOf(c)) ?? 0, depths.get(c)!));
  const byDepth = new Map<number, string[]>();
  for (const [key, d] of stageOf) {
    const list = byDepth.get(d) ?? [];
    list.push(key);
    byDepth.set(d, list);
  }
  return [...byDepth.entries()].sort((a, b) => a[0] - b[0]).map(([, keys]) => keys);
}

/**
 * The input model with the weights of `pruned` (recipe keys) replaced by their pruned-dense values
 * (W ⊙ mask, or sparsegpt's updated weights), everything else as in the file.
 */
export function prunedPrefixModel(input: string, state: CompileState, pruned: Set<string>): Model {
  const fresh = readModelFile(input).model;
  const refState: CompileState = {
    options: { ...state.options, emit: "pruned-dense" }, candidates: [], skipped: [], weights: state.weights, initiallyUnused: deadOnInput(fresh),
  };
  const only: Pass<CompileState> = {
    name: "sequential-prefix",
    run: (_m, ctx) => {
      ctx.state.candidates = ctx.state.candidates.filter((c) => pruned.has(keyOf(c)));
      return { modified: false };
    },
  };
  new PassManager<CompileState>([new FindCandidates(), only, new RewriteToVnm(), new RemoveUnused()]).run(fresh, { diagnostics: new DiagnosticSink(), state: refState });
  return fresh;
}

/**
 * Runs the stages: for each stage after the first, re-gathers its weights' statistics on the
 * pruned-prefix model and replaces their entries of `state.scoring`; then prunes the stage's weights
 * (on the pool when there is one) and records them in `state.weights`, where the rewrite finds them.
 * The last stage is left to the rewrite, as without sequential calibration.
 */
export async function calibrateSequentially(
  input: string, model: Model, state: CompileState, source: CalibrationSource, score: ScoreKind, rowsPerActivation: number,
  onStage?: (done: number, total: number) => void, target: SequentialTarget = DEFAULT_SEQUENTIAL_TARGET,
): Promise<SequentialSummary> {
  const t0 = performance.now();
  const stages = weightStages(model, state.candidates);
  const candidatesOf = new Map<string, Candidate[]>();
  for (const c of state.candidates) candidatesOf.set(keyOf(c), [...(candidatesOf.get(keyOf(c)) ?? []), c]);
  const pruned = new Set<string>();
  let passes = 0;
  let runs = 0;
  let workDir: string | undefined;
  let prefixTarget: string | InMemoryModel | undefined;
  try {
    for (let s = 0; s < stages.length; s++) {
      const keys = stages[s]!;
      const stageCandidates = keys.flatMap((k) => candidatesOf.get(k)!);
      if (s > 0) {
        const requestOf = new Map<Candidate, ActivationRequest | undefined>(stageCandidates.map((c) => [c, observableRequest(c, model)]));
        const distinct = new Map<string, ActivationRequest>();
        for (const r of requestOf.values()) if (r) distinct.set(requestKey(r), r);
        if (distinct.size > 0) {
          const prefix = prunedPrefixModel(input, state, pruned);
          let modelTarget: string | InMemoryModel;
          const bytes = [...prefix.graph.allGraphs()].reduce((n, g) => n + g.initializers.reduce((t, v) => t + v.initializer!.byteLength, 0), 0);
          if (bytes > PROTOBUF_LIMIT / 2) {
            workDir ??= mkdtempSync(join(tmpdir(), "vnmc-sequential-"));
            modelTarget = join(workDir, `stage-${s + 1}.onnx`);
            writeModelFile(prefix, modelTarget, { externalData: true });
          } else {
            modelTarget = { bytes: encodeModel(prefix), dir: dirname(input) };
          }
          prefixTarget = modelTarget;
          const collected = await collectActivationStats(modelTarget, [...distinct.values()], source, { rowsPerActivation, hessian: true });
          passes++;
          runs += collected.runs;
          const scoring = scoringFor(stageCandidates, requestOf, collected.stats, score, state.options.sparsegpt);
          if (target === "dense") {
            // Error-correcting: each weight also gets X̂ᵀX, summed over its inputs as XᵀX is (X̂ᵀX̂ = XᵀX where the input is a model input).
            const { cross, runs: crossRuns } = await collectCrossGrams(input, prefixTarget!, [...distinct.values()], source);
            runs += crossRuns;
            for (const k of keys) {
              const entry = scoring.get(k);
              if (!entry?.sparsegpt) continue;
              const seen = new Set<string>();
              let sum: Float64Array | undefined;
              for (const c of candidatesOf.get(k)!) {
                const r = requestOf.get(c);
                if (!r || seen.has(requestKey(r))) continue;
                seen.add(requestKey(r));
                const m = cross.get(requestKey(r)) ?? collected.stats.get(requestKey(r))!.hessian!.matrix();
                if (!sum) sum = Float64Array.from(m);
                else for (let i = 0; i < sum.length; i++) sum[i] = sum[i]! + m[i]!;
              }
              if (sum) entry.sparsegpt.cross = sum;
            }
          }
          state.scoring ??= new Map();
          for (const k of keys) {
            const entry = scoring.get(k);
            if (entry) state.scoring.set(k, entry);
          }
        }
      }
      if (s === stages.length - 1) break;
      // Prune the stage now: the next stage's model reads its pruned-dense weights. Kept after writing
      // (retain) so that the pruned-dense values are not computed twice.
      const weights = keys.map((k) => {
        let w = state.weights.get(k);
        if (!w) {
          const c = candidatesOf.get(k)![0]!;
          w = new SparseWeight(c.recipe, c.config, true, state.options.pool, state.scoring?.get(k), jobPermutation(state, k));
          state.weights.set(k, w);
        }
        return w;
      });
      await Promise.all(weights.map((w) => w.prepare()));
      for (const k of keys) pruned.add(k);
      onStage?.(s + 1, stages.length);
    }
  } finally {
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  }
  return { stages: stages.length, passes, runs, ms: performance.now() - t0 };
}
