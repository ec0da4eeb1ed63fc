import type { TensorData } from "../ir/tensor.js";
import { ExternalFileTensor, InMemoryTensor } from "../ir/tensor.js";
import type { VnmConfig } from "../vnm/config.js";
import { gatherValues } from "../vnm/pack.js";
import { selectVnm } from "../vnm/select.js";
import { absScores, elementSize } from "./float-view.js";
import type { Scratch } from "./scratch.js";
import { storedWeight, type WeightRecipe } from "./weight-recipe.js";

/** Where a weight's bytes come from, in a form that can be sent to a worker thread. */
export type WeightSource =
  | { kind: "file"; path: string; offset: number; length: number }
  | { kind: "bytes"; bytes: Uint8Array };

/** Everything needed to prune and pack one weight, structured-cloneable. */
export interface PruneJob {
  source: WeightSource;
  baseType: number;
  baseDims: number[];
  recipe: Omit<WeightRecipe, "base">;
  config: VnmConfig;
}

export interface PruneOutput {
  values: Uint8Array;
  columns: Int32Array;
  meta: Uint8Array;
  /** [R, 2G]: source column of each value, -1 for zeros (kept for the pruned-dense reference). */
  src: Int32Array;
  keptScore: number;
  totalScore: number;
  nonzerosBefore: number;
  nonzerosAfter: number;
  ms: number;
}

export function jobFor(recipe: WeightRecipe, config: VnmConfig): PruneJob {
  const { base, ...rest } = recipe;
  const source: WeightSource =
    base instanceof ExternalFileTensor
      ? { kind: "file", path: base.path, offset: base.offset, length: base.byteLength }
      : { kind: "bytes", bytes: base.read() };
  return { source, baseType: base.dataType, baseDims: [...base.dims], recipe: rest, config };
}

function sourceTensor(job: PruneJob): TensorData {
  const s = job.source;
  return s.kind === "file"
    ? new ExternalFileTensor(job.baseType, job.baseDims, s.path, s.offset, s.length)
    : new InMemoryTensor(job.baseType, job.baseDims, s.bytes);
}

/**
 * Magnitude V:N:M pruning and packing of one weight: the work a worker thread does. With `scratch`,
 * the large intermediate buffers are reused from the previous weight.
 */
export function runPruneJob(job: PruneJob, scratch?: Scratch): PruneOutput {
  const t0 = performance.now();
  const recipe: WeightRecipe = { ...job.recipe, base: sourceTensor(job) };
  const { outFeatures: out, inFeatures: inF, transposed } = recipe;
  const raw = storedWeight(recipe, scratch);
  const { score, nonzeros: nnz, rawOutIn } = absScores(
    raw, recipe.dataType, out, inF, transposed, scratch?.bytes("score", out * inF * 4), scratch?.bytes("transposed", raw.byteLength),
  );
  const sel = selectVnm(score, recipe.outFeatures, recipe.inFeatures, job.config, "exhaustive");
  const values = gatherValues(sel, rawOutIn, elementSize(recipe.dataType));
  const nnzAfter = countKeptNonzero(sel.src, score, recipe.outFeatures, recipe.inFeatures, 2 * sel.groups);
  return {
    values, columns: sel.columns, meta: sel.meta, src: sel.src,
    keptScore: sel.keptScore, totalScore: sel.totalScore, nonzerosBefore: nnz, nonzerosAfter: nnzAfter, ms: performance.now() - t0,
  };
}

// Hot loops live in small functions of their own so V8 optimises them on the first large weight
// (inside runPruneJob they ran 10x slower, as on-stack replacement kept bailing out).
function countKeptNonzero(src: Int32Array, score: Float32Array, rows: number, cols: number, twoG: number): number {
  let n = 0;
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let j = r * twoG, end = j + twoG; j < end; j++) {
      const col = src[j]!;
      if (col >= 0 && score[base + col] !== 0) n++;
    }
  }
  return n;
}
