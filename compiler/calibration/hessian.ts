/**
 * Streaming H = XᵀX = Σ_t x_t x_tᵀ [K, K] of one activation X [tokens, K] (a layer's input), the
 * Hessian of the layer's reconstruction error that SparseGPT needs. Fed one sample at a time; memory is
 * K² doubles however many tokens pass through. Only the upper triangle is accumulated (float64,
 * products of the activations' values taken exactly as float64); `matrix()` mirrors it.
 */
export class HessianAccumulator {
  /** [K, K] row-major; the upper triangle (j >= i) holds the sums until `matrix()`. */
  private readonly sum: Float64Array;
  tokens = 0;

  constructor(readonly K: number) {
    this.sum = new Float64Array(K * K);
  }

  /** Bytes a K-channel accumulator holds. */
  static bytes(K: number): number {
    return K * K * 8;
  }

  /** Adds X given row-major as [rows, K], or with `channelsFirst` as [K, rows] (Gemm with transA). */
  add(x: Float32Array | Float64Array, channelsFirst = false): void {
    const K = this.K;
    if (x.length % K !== 0) throw new Error(`internal: activation of ${x.length} elements is not a multiple of K = ${K}`);
    const n = x.length / K;
    if (channelsFirst) {
      if (x instanceof Float32Array) gramChannelsFirst32(x, this.sum, n, K);
      else gramChannelsFirst64(x, this.sum, n, K);
    } else if (x instanceof Float32Array) {
      gramRows32(x, this.sum, n, K);
    } else {
      gramRows64(x, this.sum, n, K);
    }
    this.tokens += n;
  }

  /** Adds a Gram matrix XᵀX [K, K] computed elsewhere (onnxruntime) over `tokens` rows; its upper triangle is used. */
  addGram(g: Float32Array | Float64Array, tokens: number): void {
    const K = this.K;
    if (g.length !== K * K) throw new Error(`internal: a Gram matrix of ${g.length} elements for K = ${K}`);
    for (let i = 0; i < K; i++) for (let j = i; j < K; j++) this.sum[i * K + j] = this.sum[i * K + j]! + g[i * K + j]!;
    this.tokens += tokens;
  }

  /** Adds another accumulator's sums (the tokens of both). */
  addFrom(other: HessianAccumulator): void {
    if (other.K !== this.K) throw new Error(`internal: adding a ${other.K}-channel Hessian to a ${this.K}-channel one`);
    for (let i = 0; i < this.sum.length; i++) this.sum[i] = this.sum[i]! + other.sum[i]!;
    this.tokens += other.tokens;
  }

  /** The full symmetric H [K, K] (a new array). */
  matrix(): Float64Array {
    const K = this.K;
    const H = Float64Array.from(this.sum);
    for (let i = 0; i < K; i++) for (let j = i + 1; j < K; j++) H[j * K + i] = H[i * K + j]!;
    return H;
  }
}

// One monomorphic copy per element type (a shared one would deoptimise when both appear). Rows go
// four tokens at a time, so each element of H is loaded and stored once per four products.
function gramRows32(x: Float32Array, H: Float64Array, n: number, K: number): void {
  let t = 0;
  for (; t + 4 <= n; t += 4) {
    const b0 = t * K, b1 = b0 + K, b2 = b1 + K, b3 = b2 + K;
    for (let i = 0; i < K; i++) {
      const a0 = x[b0 + i]!, a1 = x[b1 + i]!, a2 = x[b2 + i]!, a3 = x[b3 + i]!;
      if (a0 === 0 && a1 === 0 && a2 === 0 && a3 === 0) continue;
      const hi = i * K;
      for (let j = i; j < K; j++) H[hi + j] = H[hi + j]! + (a0 * x[b0 + j]! + a1 * x[b1 + j]! + a2 * x[b2 + j]! + a3 * x[b3 + j]!);
    }
  }
  for (; t < n; t++) {
    const b = t * K;
    for (let i = 0; i < K; i++) {
      const a = x[b + i]!;
      if (a === 0) continue;
      const hi = i * K;
      for (let j = i; j < K; j++) H[hi + j] = H[hi + j]! + a * x[b + j]!;
    }
  }
}

function gramRows64(x: Float64Array, H: Float64Array, n: number, K: number): void {
  for (let t = 0; t < n; t++) {
    const b = t * K;
    for (let i = 0; i < K; i++) {
      const a = x[b + i]!;
      if (a === 0) continue;
      const hi = i * K;
      for (let j = i; j < K; j++) H[hi + j] = H[hi + j]! + a * x[b + j]!;
    }
  }
}

/** X stored [K, n]: H[i, j] += row i · row j. */
function gramChannelsFirst32(x: Float32Array, H: Float64Array, n: number, K: number): void {
  for (let i = 0; i < K; i++) {
    const bi = i * n;
    for (let j = i; j < K; j++) {
      const bj = j * n;
      let s = 0;
      for (let t = 0; t < n; t++) s += x[bi + t]! * x[bj + t]!;
      H[i * K + j] = H[i * K + j]! + s;
    }
  }
}

function gramChannelsFirst64(x: Float64Array, H: Float64Array, n: number, K: number): void {
  for (let i = 0; i < K; i++) {
    const bi = i * n;
    for (let j = i; j < K; j++) {
      const bj = j * n;
      let s = 0;
      for (let t = 0; t < n; t++) s += x[bi + t]! * x[bj + t]!;
      H[i * K + j] = H[i * K + j]! + s;
    }
  }
}
