/**
 * The V:N:M configuration and the packed shapes it implies (see shared/design/vnm-format.md).
 */

/** V rows per block, N kept per row per group (always 2), M columns per group. */
export interface VnmConfig {
  v: number;
  n: number;
  m: number;
}

/** The block heights the kernels are written for. */
export const ALLOWED_V: readonly number[] = [8, 16, 32, 64, 128, 256];
export const MIN_M = 4;
export const MAX_M = 32;

/** A V:N:M setting outside what the format and kernels support. */
export class VnmConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VnmConfigError';
  }
}

/** Throws VnmConfigError unless cfg is a supported V:N:M setting. */
export function validateVnm(cfg: VnmConfig): VnmConfig {
  const { v, n, m } = cfg;
  if (!ALLOWED_V.includes(v)) {
    throw new VnmConfigError(`V must be one of ${ALLOWED_V.join(', ')} (got ${v}).`);
  }
  if (n !== 2) {
    throw new VnmConfigError(`N must be 2, the 2:4 step sparse tensor cores execute (got ${n}).`);
  }
  if (!Number.isInteger(m) || m < MIN_M || m > MAX_M) {
    throw new VnmConfigError(`M must be an integer from ${MIN_M} to ${MAX_M} (got ${m}).`);
  }
  return cfg;
}

/** Parses "V:N:M", e.g. "64:2:8". */
export function parseVnm(text: string): VnmConfig {
  const parts = text.trim().split(':');
  if (parts.length !== 3 || parts.some((p) => !/^\d+$/.test(p.trim()))) {
    throw new VnmConfigError(
      `A V:N:M setting must be three integers separated by colons, such as 64:2:8 (got "${text}").`,
    );
  }
  const [v, n, m] = parts.map((p) => Number.parseInt(p.trim(), 10)) as [number, number, number];
  return validateVnm({ v, n, m });
}

/** "64:2:8" */
export function formatVnm(cfg: VnmConfig): string {
  return `${cfg.v}:${cfg.n}:${cfg.m}`;
}

/** Sizes of the packed tensors for a weight [outFeatures, inFeatures]. */
export interface PackedShape {
  /** Packed rows: outFeatures rounded up to whole blocks of V. */
  R: number;
  /** Column groups: ceil(inFeatures / M). */
  G: number;
  /** R / V. */
  blocks: number;
  /** ceil(G / 2): one nibble per group. */
  metaBytesPerRow: number;
}

export function packedShape(outFeatures: number, inFeatures: number, cfg: VnmConfig): PackedShape {
  if (!Number.isInteger(outFeatures) || outFeatures < 0 || !Number.isInteger(inFeatures) || inFeatures < 0) {
    throw new RangeError(`packedShape: feature counts must be non-negative integers (got ${outFeatures}, ${inFeatures})`);
  }
  const blocks = Math.ceil(outFeatures / cfg.v);
  const G = Math.ceil(inFeatures / cfg.m);
  return { R: blocks * cfg.v, G, blocks, metaBytesPerRow: Math.ceil(G / 2) };
}

/** Fraction of weights kept: 2 of every M. */
export function density(cfg: VnmConfig): number {
  return 2 / cfg.m;
}
