/**
 * A small seeded PRNG (mulberry32) and weight initializers with realistic scales, for test models.
 * Everything here is deterministic: the same seed gives the same numbers on every platform that runs
 * the same JavaScript engine math (Math.log/cos are only used through Box-Muller).
 */

/** 32-bit FNV-1a hash of a string. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** murmur3's 32-bit finalizer: spreads nearby seeds far apart. */
function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A stream seed derived from a base seed and a name, so each tensor has its own independent stream. */
export function deriveSeed(seed: number, name: string): number {
  return mix32((mix32(seed >>> 0) ^ hashString(name)) >>> 0);
}

export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = mix32((seed >>> 0) ^ 0x9e3779b9);
  }

  /** An independent generator for `name` (e.g. one per weight tensor). */
  static forName(seed: number, name: string): Rng {
    return new Rng(deriveSeed(seed, name));
  }

  /** Next 32-bit unsigned integer (mulberry32). */
  nextU32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [lo, hi). */
  uniform(lo = 0, hi = 1): number {
    return lo + (hi - lo) * (this.nextU32() / 4294967296);
  }

  /** Integer uniform in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Normal N(mean, std²) by Box-Muller (one draw per call, no cached spare, so streams are simple). */
  normal(mean = 0, std = 1): number {
    const u1 = 1 - this.uniform(); // (0, 1]: log never sees 0
    const u2 = this.uniform();
    return mean + std * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** `count` distinct integers of [0, n), in ascending order. */
  sample(n: number, count: number): number[] {
    const picked = new Set<number>();
    const k = Math.min(count, n);
    while (picked.size < k) picked.add(this.int(n));
    return [...picked].sort((a, b) => a - b);
  }

  fillNormal(count: number, mean = 0, std = 1): Float32Array {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = this.normal(mean, std);
    return out;
  }

  fillUniform(count: number, lo = 0, hi = 1): Float32Array {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = this.uniform(lo, hi);
    return out;
  }
}

export interface LinearInitOptions {
  /**
   * Memory layout of the matrix: "in_out" is [fanIn, fanOut] (MatMul's B, how PyTorch exports nn.Linear
   * with MatMul), "out_in" is [fanOut, fanIn] (Gemm with transB=1, nn.Linear's own layout).
   */
  layout?: "in_out" | "out_in";
  /** Fraction of input channels that are outliers (default 0.02, at least one channel). */
  outlierFraction?: number;
  /** Outlier channels are scaled by a factor drawn from [min, max] (default [4, 10]). */
  outlierScale?: [number, number];
  /** Spread of the per-output-channel log-normal gain (default 0.25). */
  channelSpread?: number;
}

/**
 * A linear layer's weight: N(0, 1/fanIn) entries (std 1/sqrt(fanIn), which keeps activations at unit
 * scale), a log-normal gain per output channel, and a few input channels with several times the
 * magnitude, as trained transformers have, so that magnitude pruning is not a uniform choice.
 */
export function linearWeight(rng: Rng, fanIn: number, fanOut: number, opts: LinearInitOptions = {}): Float32Array {
  const layout = opts.layout ?? "in_out";
  const frac = opts.outlierFraction ?? 0.02;
  const [lo, hi] = opts.outlierScale ?? [4, 10];
  const spread = opts.channelSpread ?? 0.25;
  const std = 1 / Math.sqrt(fanIn);

  const inGain = new Float32Array(fanIn).fill(1);
  const outliers = frac > 0 ? rng.sample(fanIn, Math.max(1, Math.round(frac * fanIn))) : [];
  for (const c of outliers) inGain[c] = rng.uniform(lo, hi);
  const outGain = new Float32Array(fanOut);
  for (let o = 0; o < fanOut; o++) outGain[o] = Math.exp(rng.normal(0, spread));

  const w = new Float32Array(fanIn * fanOut);
  for (let i = 0; i < fanIn; i++) {
    for (let o = 0; o < fanOut; o++) {
      const v = rng.normal(0, std) * inGain[i]! * outGain[o]!;
      w[layout === "in_out" ? i * fanOut + o : o * fanIn + i] = v;
    }
  }
  return w;
}
