import { DataType } from "../ir/dtype.js";
import { LazyTensor, type TensorData } from "../ir/tensor.js";
import { type VnmConfig, packedShape } from "../vnm/config.js";
import { gatherValues, identityRowIndex } from "../vnm/pack.js";
import { type VnmSelection, selectVnm } from "../vnm/select.js";
import { elementSize, toFloat32 } from "./float-view.js";
import { materializeWeight, type WeightRecipe } from "./weight-recipe.js";

export interface PruneStats {
  /** Σ|W| kept / Σ|W| (the kept-magnitude fraction). */
  keptFraction: number;
  nonzerosBefore: number;
  nonzerosAfter: number;
  ms: number;
}

interface Packed {
  selection: VnmSelection;
  values: Uint8Array;
}

const PARTS = ["values", "columns", "meta", "row_index"] as const;
type Part = (typeof PARTS)[number];

/**
 * One weight, pruned to V:N:M and packed. The work happens lazily when the writer first asks for one
 * of the packed tensors, and the result is dropped once all four were read, so only one weight's
 * worth of packed data is alive at a time however large the model.
 */
export class SparseWeight {
  readonly R: number;
  readonly G: number;
  stats: PruneStats | undefined;
  private cache: Packed | undefined;
  private readonly pending = new Set<Part>();

  constructor(
    readonly recipe: WeightRecipe,
    readonly config: VnmConfig,
    /** Keep the packed result after it was written (verification reads it again). */
    private readonly retain: boolean,
  ) {
    const s = packedShape(recipe.outFeatures, recipe.inFeatures, config);
    this.R = s.R;
    this.G = s.G;
  }

  private compute(): Packed {
    if (this.cache) return this.cache;
    const t0 = performance.now();
    const r = this.recipe;
    const raw = materializeWeight(r);
    const f = toFloat32(raw, r.dataType);
    const score = new Float32Array(f.length);
    let nnz = 0;
    for (let i = 0; i < f.length; i++) {
      const a = Math.abs(f[i]!);
      score[i] = a;
      if (a !== 0) nnz++;
    }
    const selection = selectVnm(score, r.outFeatures, r.inFeatures, this.config, "exhaustive");
    const values = gatherValues(selection, raw, elementSize(r.dataType));
    let nnzAfter = 0;
    for (const s of selection.src) if (s >= 0) nnzAfter++;
    this.stats = {
      keptFraction: selection.totalScore > 0 ? selection.keptScore / selection.totalScore : 1,
      nonzerosBefore: nnz,
      nonzerosAfter: Math.min(nnzAfter, nnz),
      ms: performance.now() - t0,
    };
    this.cache = { selection, values };
    for (const p of PARTS) this.pending.add(p);
    return this.cache;
  }

  private take(part: Part): Packed {
    const c = this.compute();
    this.pending.delete(part);
    if (this.pending.size === 0 && !this.retain) this.cache = undefined;
    return c;
  }

  /** The dense W ⊙ mask [out, in] in the weight's type, for the pruned-dense reference model. */
  prunedDense(): Uint8Array {
    const c = this.compute();
    const r = this.recipe;
    const size = elementSize(r.dataType);
    const raw = materializeWeight(r);
    const out = new Uint8Array(raw.byteLength);
    const { src } = c.selection;
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
    return {
      values: new LazyTensor(vdt, [this.R, 2 * this.G], () => this.take("values").values),
      columns: new LazyTensor(DataType.INT32, [this.R / this.config.v, this.G, 4], () => asBytes(this.take("columns").selection.columns)),
      meta: new LazyTensor(DataType.UINT8, [this.R, Math.ceil(this.G / 2)], () => this.take("meta").selection.meta),
      row_index: new LazyTensor(DataType.INT32, [this.R], () => {
        this.take("row_index");
        return asBytes(identityRowIndex(this.recipe.outFeatures, this.R));
      }),
    };
  }
}

function asBytes(a: Int32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
