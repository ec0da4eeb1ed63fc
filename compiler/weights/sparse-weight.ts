import { DataType } from "../ir/dtype.js";
import { LazyTensor, type TensorData } from "../ir/tensor.js";
import { type VnmConfig, packedShape } from "../vnm/config.js";
import { identityRowIndex } from "../vnm/pack.js";
import { elementSize } from "./float-view.js";
import { jobFor, type PruneOutput, runPruneJob } from "./prune-job.js";
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
    this.cache = out;
    for (const p of PARTS) this.pending.add(p);
    return out;
  }

  /** Start pruning on the pool (idempotent). */
  prepare(): Promise<void> {
    if (this.cache || !this.pool) return Promise.resolve();
    this.inFlight ??= this.pool.run(jobFor(this.recipe, this.config, this.scoring, this.retain)).then(
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
    return this.cache ?? this.accept(runPruneJob(jobFor(this.recipe, this.config, this.scoring, this.retain), mainThreadScratch));
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
    const src = this.compute().src ?? runPruneJob(jobFor(this.recipe, this.config, this.scoring, true)).src!;
    const r = this.recipe;
    const size = elementSize(r.dataType);
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
        this.take("row_index");
        return asBytes(identityRowIndex(this.recipe.outFeatures, this.R));
      }, prepare, this),
    };
  }
}

function asBytes(a: Int32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
