/**
 * Predicted GPU speedup of a V:N:M layer over a dense GEMM (docs/choosing-vnm.md).
 *
 * Where the speedup table (speedup-table.ts, measured by bench/gpu/kernel_bench.py) has the exact
 * layer shape, token count and V:N:M, its measured ratio is used; everywhere else an analytic model
 * of the two limits, with efficiency constants fitted to the same measurements (bench/speedup-table.ts):
 *
 *   dense   t = c_d + max(bytes_d / BW_d, 2·T·N·K / F_d)                        (cuBLAS)
 *   decode  t = c_s + bytes_s / BW_s + 2·T·R·4G · g(V) / F_s                    (vnmc, T ≤ 16)
 *   prefill t = c_p + (bytes_24 + T·(K + Kw)·e) / BW_p + 2·T·R·Kw / F_p          (vnmc, T > 16)
 *   g(V)    = (32 + 128·64/V) / 160
 *
 * bytes_d is the fp16 weight, bytes_s the packed values, meta and column indices (vnm-format.md);
 * activations are left out of the decode and dense terms (T·(K + N) elements, small next to the weight
 * where bytes matter). R·4G is the condensed weight the sparse tensor cores multiply at decode (F_s is a
 * dense-equivalent rate over it). g(V) is the on-chip traffic per mma.sp relative to V = 64: 32 B of
 * weights and 128 B of gathered activations at V = 64, and a gathered activation tile serves only the V
 * rows of one block, so that part scales with 64/V (bench/gpu/NOTES.md, v2 prefill profile).
 *
 * The prefill model is the H100's wgmma.sp path (NOTES.md v10, v15): the weight as 2:4 along an order of
 * Kw input positions, 4 channels of a group per chunk of 4, remainders zero-padded (two single ones
 * share a chunk): Kw = G · P(M), P(M) = 4·⌊M/4⌋ + (0, 2, 4, 4)[M mod 4], so Kw = K where M % 4 == 0
 * and 1.2 K at M = 5. Its work (2·T·R·Kw at the dense-equivalent rate F_p) does not shrink with M
 * beyond 2:4's, and does not depend on V; bytes_24 is that copy of the weight (values and 2-bit meta),
 * T·(K + Kw)·e the gather of X into the order, which the table's layouts pay (see speedup-table.ts).
 */
import { type VnmConfig, packedShape } from './config.js';
import { SPEEDUP_TABLE } from './speedup-table.js';

/** Launch overhead, sustained bandwidth and dense-equivalent tensor rate of one kernel path. */
export interface KernelPath {
  fixedUs: number;
  bandwidthTBps: number;
  tflops: number;
}

export interface SpeedupModelParams {
  /** Bytes per weight and activation element the deployed model uses (fp16/bf16: 2). */
  elementBytes: number;
  /** Token counts up to this use the decode path of the sparse kernel. */
  decodeMaxTokens: number;
  dense: KernelPath;
  decode: KernelPath;
  prefill: KernelPath;
}

/** One measured ratio: dense time / V:N:M time for a [outFeatures, inFeatures] weight and T tokens. */
export interface SpeedupMeasurement {
  outFeatures: number;
  inFeatures: number;
  tokens: number;
  v: number;
  m: number;
  speedup: number;
}

export interface SpeedupTable {
  /** Where the numbers come from (card, kernel version, file). */
  source: string;
  params: SpeedupModelParams;
  /** How well the model reproduces the measurements: RMS and largest |ln(predicted / measured)|. */
  fit: { timeRmsLog: number; speedupRmsLog: number; speedupMaxLog: number; points: number };
  measured: SpeedupMeasurement[];
}

export interface LayerShape {
  outFeatures: number;
  inFeatures: number;
}

export interface SpeedupPrediction {
  speedup: number;
  /** Predicted times of the layer (model), µs; sparseUs = denseUs / speedup also for measured ratios. */
  denseUs: number;
  sparseUs: number;
  source: 'measured' | 'model';
}

/** Column indices are int32 in the format: 16 bytes per (block, group). */
const INDEX_BYTES_PER_BLOCK_GROUP = 16;

/** Bytes of the packed weight: values (2 per group and row), 4-bit meta per group, column indices. */
export function packedBytes(shape: LayerShape, cfg: VnmConfig, elementBytes = 2): number {
  const { R, G, blocks, metaBytesPerRow } = packedShape(shape.outFeatures, shape.inFeatures, cfg);
  return R * 2 * G * elementBytes + R * metaBytesPerRow + blocks * G * INDEX_BYTES_PER_BLOCK_GROUP;
}

/** On-chip traffic per sparse MMA relative to V = 64 (see the file comment). */
export function gatherFactor(v: number): number {
  return (32 + (128 * 64) / v) / 160;
}

/** TB/s and TFLOP/s as bytes and FLOPs per µs. */
const PER_US = 1e6;

export function denseTimeUs(shape: LayerShape, tokens: number, p: SpeedupModelParams): number {
  const bytes = shape.outFeatures * shape.inFeatures * p.elementBytes;
  const flops = 2 * tokens * shape.outFeatures * shape.inFeatures;
  return p.dense.fixedUs + Math.max(bytes / (p.dense.bandwidthTBps * PER_US), flops / (p.dense.tflops * PER_US));
}

/** Input positions per group in the prefill's 2:4 order (file comment): whole chunks, padded remainders. */
export function prefillPositionsPerGroup(m: number): number {
  return 4 * Math.floor(m / 4) + [0, 2, 4, 4][m % 4]!;
}

export function sparseTimeUs(shape: LayerShape, tokens: number, cfg: VnmConfig, p: SpeedupModelParams): number {
  const { R, G } = packedShape(shape.outFeatures, shape.inFeatures, cfg);
  if (tokens > p.decodeMaxTokens) {
    const kw = G * prefillPositionsPerGroup(cfg.m);
    const bytes = R * (kw / 2) * p.elementBytes + R * (kw / 8) + tokens * (shape.inFeatures + kw) * p.elementBytes;
    const flops = 2 * tokens * R * kw;
    return p.prefill.fixedUs + bytes / (p.prefill.bandwidthTBps * PER_US) + flops / (p.prefill.tflops * PER_US);
  }
  const bytes = packedBytes(shape, cfg, p.elementBytes);
  const flops = 2 * tokens * R * 4 * G * gatherFactor(cfg.v);
  return p.decode.fixedUs + bytes / (p.decode.bandwidthTBps * PER_US) + flops / (p.decode.tflops * PER_US);
}

/** The model's speedup (ignores the measured table). */
export function modelSpeedup(shape: LayerShape, tokens: number, cfg: VnmConfig, p: SpeedupModelParams = SPEEDUP_TABLE.params): number {
  return denseTimeUs(shape, tokens, p) / sparseTimeUs(shape, tokens, cfg, p);
}

/**
 * The memory-bound limit (large weight, few tokens, launch cost negligible): dense weight bytes over
 * packed bytes, times the ratio of the two kernels' sustained bandwidths.
 */
export function memoryBoundLimit(shape: LayerShape, cfg: VnmConfig, p: SpeedupModelParams = SPEEDUP_TABLE.params): number {
  const dense = shape.outFeatures * shape.inFeatures * p.elementBytes;
  return (dense / packedBytes(shape, cfg, p.elementBytes)) * (p.decode.bandwidthTBps / p.dense.bandwidthTBps);
}

/** The compute-bound limit (many tokens): dense FLOPs at F_d over the prefill's 2:4-order FLOPs at F_p. */
export function computeBoundLimit(shape: LayerShape, cfg: VnmConfig, p: SpeedupModelParams = SPEEDUP_TABLE.params): number {
  const { R, G } = packedShape(shape.outFeatures, shape.inFeatures, cfg);
  return ((shape.outFeatures * shape.inFeatures) / (R * G * prefillPositionsPerGroup(cfg.m))) * (p.prefill.tflops / p.dense.tflops);
}

/** The measured ratio for exactly this shape, token count and V:N:M, if the table has one. */
export function measuredSpeedup(shape: LayerShape, tokens: number, cfg: VnmConfig, table: SpeedupTable = SPEEDUP_TABLE): number | undefined {
  return table.measured.find(
    (x) => x.outFeatures === shape.outFeatures && x.inFeatures === shape.inFeatures && x.tokens === tokens && x.v === cfg.v && x.m === cfg.m,
  )?.speedup;
}

/** Predicted speedup and times of one layer: the measured ratio where there is one, else the model. */
export function predictSpeedup(shape: LayerShape, tokens: number, cfg: VnmConfig, table: SpeedupTable = SPEEDUP_TABLE): SpeedupPrediction {
  if (!Number.isInteger(tokens) || tokens < 1) throw new RangeError(`tokens must be a positive integer (got ${tokens})`);
  const denseUs = denseTimeUs(shape, tokens, table.params);
  const measured = measuredSpeedup(shape, tokens, cfg, table);
  if (measured !== undefined) return { speedup: measured, denseUs, sparseUs: denseUs / measured, source: 'measured' };
  const sparseUs = sparseTimeUs(shape, tokens, cfg, table.params);
  return { speedup: denseUs / sparseUs, denseUs, sparseUs, source: 'model' };
}
