import { mulberry32 } from "../seeded.js";
import type { HessianAccumulator } from "./hessian.js";

/**
 * Streaming statistics of one activation X [tokens, K] (the input of a layer), fed one sample at a
 * time: Σ_t X[t,k]² per input channel k (float64), and a uniform sample of whole rows (reservoir
 * sampling with a seeded generator, so the sample is reproducible) for measuring layer output errors.
 * Memory is K doubles plus `capacity` rows, however many tokens pass through.
 *
 * Other methods slot in as further accumulators of the same stream: `hessian` (XᵀX, for SparseGPT)
 * when set.
 */
export class ActivationStats {
  readonly sumSquares: Float64Array;
  /** Tokens (rows of X) seen. */
  tokens = 0;
  /** [capacity, K]: the first min(tokens, capacity) rows are a uniform sample of the rows seen. */
  readonly rows: Float32Array;
  /** XᵀX of the same stream, when the pruning method needs it (set before the first `add`). */
  hessian?: HessianAccumulator;
  private readonly next: () => number;

  constructor(readonly K: number, readonly capacity: number, seed: number) {
    this.sumSquares = new Float64Array(K);
    this.rows = new Float32Array(capacity * K);
    this.next = mulberry32(seed);
  }

  /** Rows held in `rows`. */
  get rowCount(): number {
    return Math.min(this.tokens, this.capacity);
  }

  /** ‖X[:,k]‖₂ per channel, as float32. */
  norms(): Float32Array {
    return Float32Array.from(this.sumSquares, Math.sqrt);
  }

  /** True when every sum is finite (NaN or ±Inf in the activations make it false). */
  finite(): boolean {
    for (let k = 0; k < this.K; k++) if (!Number.isFinite(this.sumSquares[k]!)) return false;
    return true;
  }

  /**
   * Adds X given row-major as [rows, K], or with `channelsFirst` as [K, rows] (Gemm with transA).
   */
  add(x: Float32Array | Float64Array, channelsFirst = false): void {
    const K = this.K;
    if (x.length % K !== 0) throw new Error(`internal: activation of ${x.length} elements is not a multiple of K = ${K}`);
    const n = x.length / K;
    if (channelsFirst) {
      sumSquaresChannelsFirst(x, this.sumSquares, n, K);
    } else {
      sumSquaresRows(x, this.sumSquares, n, K);
    }
    this.hessian?.add(x, channelsFirst);
    for (let t = 0; t < n; t++) {
      const seen = this.tokens++;
      let slot = seen;
      if (seen >= this.capacity) {
        slot = Math.floor(this.next() * (seen + 1));
        if (slot >= this.capacity) continue;
      }
      const to = slot * K;
      if (channelsFirst) for (let k = 0; k < K; k++) this.rows[to + k] = x[k * n + t]!;
      else this.rows.set(x.subarray(t * K, t * K + K), to);
    }
  }
}

function sumSquaresRows(x: Float32Array | Float64Array, s: Float64Array, n: number, K: number): void {
  for (let t = 0; t < n; t++) {
    const b = t * K;
    for (let k = 0; k < K; k++) {
      const v = x[b + k]!;
      s[k] = s[k]! + v * v;
    }
  }
}

function sumSquaresChannelsFirst(x: Float32Array | Float64Array, s: Float64Array, n: number, K: number): void {
  for (let k = 0; k < K; k++) {
    const b = k * n;
    let acc = 0;
    for (let t = 0; t < n; t++) {
      const v = x[b + t]!;
      acc += v * v;
    }
    s[k] = s[k]! + acc;
  }
}
