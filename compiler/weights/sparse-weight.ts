import { DataType } from "../ir/dtype.js";
import { LazyTensor, type TensorData } from "../ir/tensor.js";
import { type VnmConfig, packedShape } from "../vnm/config.js";
import { identityRowIndex } from "../vnm/pack.js";
import { elementSize } from "./float-view.js";
import { type JobPermutation, jobFor, type PruneOutput, runPruneJob } from "./prune-job.js";
import type { ScoreKind, WeightScoring } from "./scores.js";
import type { PrunePool } from "./prune-pool.js";
import { Scratch } from "./scratch.js";
import { materializeWeight, type WeightRecipe } from "./weight-recipe.js";

export interface PruneStats {
  /** The score the mask was chosen by. */
  score: ScoreKind;
  /** Σ|W| kept / Σ|W| (the kept-magnitude fraction). */
  keptMagnitude: number;
  /** Σ score kept / Σ score, for the chosen score (equal to keptMagnitude for magnitude). */
  keptScore: number;
  /** The weight already had the V:N:M pattern and was packed exactly, nothing pruned. */
  alreadySparse: boolean;
  nonzerosBefore: number;
  nonzerosAfter: number;
  /** Relative output error of the layer on calibration rows, when there were any. */
  outputError?: { relError: number; rows: number; channels: number };
  /** Pruned by --method sparsegpt: the kept weights were UPDATED (mask saliency, dead channels, damping λ). */
  sparsegpt?: PruneOutput["sparsegpt"];
  /** --permute searched a permutation, but the identity gave the lower calibration output error and was packed. */
  permutationDropped?: boolean;
  ms: number;
}

const PARTS = ["values", "columns", "meta", "row_index"] as const;
/** Buffers reused by pruning on the main thread (no pool). */
const mainThreadScratch = new Scratch();
type Part = (typeof PARTS)[number];

/**
 * One weight, pruned to V:N:M and packed. The work happens lazily, on a worker thread when a pool is
 * given (`prepare`), else on the calling thread when the writer first reads a packed tensor. The
 * result is dropped once all four packed tensors were read, so only a few weights' worth of packed
 * data is alive at a time however large the model.
 */
export class SparseWeight {
  readonly R: number;
  readonly G: number;
  stats: PruneStats | undefined;
  private cache: PruneOutput | undefined;
  private inFlight: Promise<void> | undefined;
  private readonly pending = new Set<Part>();

  constructor(
    readonly recipe: WeightRecipe,
    readonly config: VnmConfig,
    /** Keep the packed result after it was written (verification reads it again). */
    private readonly retain: boolean,
    private readonly pool?: PrunePool,
    /** Score and calibration data; magnitude without. */
    readonly scoring?: WeightScoring,
    /** Channel permutations to pack with (--permute). */
    readonly permutation?: JobPermutation,
  ) {
    const s = packedShape(recipe.outFeatures, recipe.inFeatures, config);
    this.R = s.R;
    this.G = s.G;
  }

  private accept(out: PruneOutput): PruneOutput {
    const fraction = (kept: number, total: number) => (total > 0 ? Math.min(1, kept / total) : 1);
    this.stats = {
      score: out.score,
      keptMagnitude: fraction(out.keptMagnitude, out.totalMagnitude),
      keptScore: fraction(out.keptScore, out.totalScore),
      alreadySparse: out.alreadySparse,
      nonzerosBefore: out.nonzerosBefore,
      nonzerosAfter: out.nonzerosAfter,
      ms: out.ms,
    };
    if (out.outputError) this.stats.outputError = out.outputError;
    if (out.permutationDropped) this.stats.permutationDropped = true;
    if (out.sparsegpt) this.stats.sparsegpt = out.sparsegpt;
    this.cache = out;
    for (const p of PARTS) this.pending.add(p);
    return out;
  }

  /** Start pruning on the pool (idempotent). */
  prepare(): Promise<void> {
    if (this.cache || !this.pool) return Promise.resolve();
    this.inFlight ??= this.pool.run(jobFor(this.recipe, this.config, this.scoring, this.retain, this.permutation)).then(
      (out) => {
        this.inFlight = undefined;
        if (!this.cache) this.accept(out);
      },
      (e) => {
        this.inFlight = undefined;
        throw e;
      },
    );
    return this.inFlight;
  }

  private compute(): PruneOutput {
    return this.cache ?? this.accept(runPruneJob(jobFor(this.recipe, this.config, this.scoring, this.retain, this.permutation), mainThreadScratch));
  }

  private take(part: Part): PruneOutput {
    const c = this.compute();
    this.pending.delete(part);
    if (this.pending.size === 0 && !this.retain) this.cache = undefined;
    return c;
  }

  /** The dense W ⊙ mask [out, in] in the weight's type, for the pruned-dense reference model. */
  prunedDense(): Uint8Array {
    // Only a retaining weight keeps `src`; otherwise select again, keeping it this time.
    const done = this.compute().src ? this.compute() : runPruneJob(jobFor(this.recipe, this.config, this.scoring, true, this.permutation));
    const src = done.src!;
    const r = this.recipe;
    const size = elementSize(r.dataType);
    // sparsegpt updated the kept weights: the reference holds the packed values, not the raw ones.
    if (done.sparsegpt) return denseFromValues(done.valuesByRow ?? done.values, src, r.outFeatures, r.inFeatures, 2 * this.G, size);
    const raw = materializeWeight(r);
    const out = new Uint8Array(raw.byteLength);
    const twoG = 2 * this.G;
    for (let row = 0; row < r.outFeatures; row++) {
      for (let j = 0; j < twoG; j++) {
        const col = src[row * twoG + j]!;
        if (col < 0) continue;
        const at = (row * r.inFeatures + col) * size;
        out.set(raw.subarray(at, at + size), at);
      }
    }
    return out;
  }

  tensors(): Record<Part, TensorData> {
    const vdt = this.recipe.dataType;
    const prepare = this.pool ? () => this.prepare() : undefined;
    return {
      values: new LazyTensor(vdt, [this.R, 2 * this.G], () => this.take("values").values, prepare, this),
      columns: new LazyTensor(DataType.INT32, [this.R / this.config.v, this.G, 4], () => asBytes(this.take("columns").columns), prepare, this),
      meta: new LazyTensor(DataType.UINT8, [this.R, Math.ceil(this.G / 2)], () => this.take("meta").meta, prepare, this),
      row_index: new LazyTensor(DataType.INT32, [this.R], () => {
        const rowIndex = this.take("row_index").rowIndex;
        return asBytes(rowIndex ?? identityRowIndex(this.recipe.outFeatures, this.R));
      }, prepare, this),
    };
  }
}

/** W [out, in] in the weight's type with values [≥ out, twoG] at the columns `src` names (zero elsewhere). */
function denseFromValues(values: Uint8Array, src: Int32Array, out: number, inF: number, twoG: number, size: number): Uint8Array {
  const dense = new Uint8Array(out * inF * size);
  for (let row = 0; row < out; row++) {
    for (let j = row * twoG, end = j + twoG; j < end; j++) {
      const col = src[j]!;
      if (col >= 0) dense.set(values.subarray(j * size, j * size + size), (row * inF + col) * size);
    }
  }
  return dense;
}

function asBytes(a: Int32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
