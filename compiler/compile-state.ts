import type { Graph } from "./ir/graph.js";
import type { Node } from "./ir/node.js";
import type { TensorData } from "./ir/tensor.js";
import type { Value } from "./ir/value.js";
import type { ChooseRequest } from "./vnm/choose-vnm.js";
import type { VnmConfig } from "./vnm/config.js";
import type { JobPermutation } from "./weights/prune-job.js";
import type { PrunePool } from "./weights/prune-pool.js";
import type { ScoreKind, WeightScoring } from "./weights/scores.js";
import type { SparseGptSettings } from "./weights/sparsegpt.js";
import type { SparseWeight } from "./weights/sparse-weight.js";
import type { WeightRecipe } from "./weights/weight-recipe.js";

/** Options the passes read, already validated. */
export interface PassOptions {
  vnm: VnmConfig;
  include: string[];
  exclude: string[];
  /** Weights with fewer elements than this are left dense. */
  minSize: number;
  /** 'sparse' writes VNMSparseGemm; 'pruned-dense' keeps the original ops with W ⊙ mask (verification). */
  emit: "sparse" | "pruned-dense";
  /** Keep packed weights in memory after writing (verification re-reads them). */
  retainPacked: boolean;
  /** Worker threads that prune weights in parallel while the writer streams; none prunes in-thread. */
  pool?: PrunePool;
  /** The importance score asked for (default magnitude; layers without activation statistics fall back to it). */
  score?: ScoreKind;
  /**
   * --method sparsegpt: observed layers are pruned by SparseGPT (mask by `maskScore`, kept weights
   * updated with the inverse Hessian, then refitted as `refit` / `refitSweeps` say; calibration
   * gathers XᵀX). Absent: plain selection by `score`.
   */
  sparsegpt?: SparseGptSettings;
  /** Search channel permutations (--permute); the search budget is in compile.ts. */
  permute?: boolean;
  /** --sparsity / --speedup: the V:N:M choice asked for; candidates get their config from it (choose-step.ts). */
  choose?: ChooseRequest;
  /** The V:N:M chosen per candidate label, once chosen (FindCandidates applies it on a fresh read). */
  chosen?: Map<string, VnmConfig>;
}

/** A MatMul/Gemm that will be rewritten. */
export interface Candidate {
  node: Node;
  graph: Graph;
  /** The node's name, or a generated label for unnamed nodes. */
  label: string;
  recipe: WeightRecipe;
  /** The graph that holds the weight's constant: packed weights go there, visible to every user. */
  weightScope: Graph;
  /** The value the node reads its weight from (B), to disconnect it. */
  weightInput: Value;
  /** Gemm only. */
  gemm?: { transA: boolean; beta: number; c: Value | null; cConstant?: TensorData };
  config: VnmConfig;
  sparse?: SparseWeight;
}

/** A MatMul/Gemm that was left alone, and why. */
export interface Skipped {
  label: string;
  opType: string;
  code: string;
  reason: string;
  weightShape?: number[];
}

/**
 * A layer whose input permutation folds into the rewritten layers producing its input, through
 * elementwise ops only (see passes/plan-permutation-folds.ts).
 */
export interface FoldPlan {
  consumer: Candidate;
  producers: Candidate[];
  /** Per-channel constant operands on the way, permuted along with the channels. */
  constants: Array<{ node: Node; index: number }>;
}

/** A weight's channel permutations (--permute), by recipe key as `weights`. */
export interface WeightPermutation extends JobPermutation {
  stoppedBy: string;
  ms: number;
  /** Labels of the producers the input permutation was folded into. */
  foldedInto?: string[];
  /** Label of the consumer whose input permutation this weight's row order carries. */
  carriesFoldOf?: string;
}

export interface CompileState {
  options: PassOptions;
  candidates: Candidate[];
  skipped: Skipped[];
  /** Pruned weights by recipe key, shared by nodes that read the same weight the same way. */
  weights: Map<string, SparseWeight>;
  /** Initializers and nodes already dead before compiling (kept: dropping them is not vnmc's business). */
  initiallyUnused: Set<unknown>;
  /**
   * Per weight (by recipe key, as `weights`): the score and calibration data its prune job gets.
   * Filled by calibration before the rewrite; a weight without an entry is pruned by magnitude.
   */
  scoring?: Map<string, WeightScoring>;
  /** --permute: where input permutations can fold into producers (plan-permutation-folds). */
  foldPlans?: FoldPlan[];
  /** --permute: the permutations found, by recipe key; a weight without one is packed unpermuted. */
  permutations?: Map<string, WeightPermutation>;
}

export function nodeLabel(node: Node, index: number): string {
  return node.name !== "" ? node.name : `${node.opType}#${index}`;
}
