/**
 * An independent reference for the V:N:M format, written from shared/design/vnm-format.md alone,
 * for tests. It deliberately shares no code with compiler/vnm (select.ts, pack.ts): simple loops,
 * no speed tricks, strict checks.
 */

export interface PackedForReference {
  /** [R, 2G] kept weights as float32. */
  values: Float32Array;
  /** [R/V, G, 4] */
  columns: Int32Array;
  /** [R, ceil(G/2)] */
  meta: Uint8Array;
  /** [R] output channel of each packed row, -1 for padding; absent: row r produces channel r. */
  rowIndex?: Int32Array | null;
  outFeatures: number;
  inFeatures: number;
  v: number;
  m: number;
}

/**
 * The dense W [outFeatures, inFeatures] the packed tensors stand for, following the contract's
 * reference semantics literally: W[o, columns[b,g,p0]] += values[r,2g], W[o, columns[b,g,p1]] +=
 * values[r,2g+1] (so a duplicate index adds). Throws on anything malformed.
 */
export function denseFromPacked(p: PackedForReference): Float32Array {
  const { values, columns, meta, outFeatures, inFeatures, v, m } = p;
  const R = Math.ceil(outFeatures / v) * v;
  const G = Math.ceil(inFeatures / m);
  const metaBytes = Math.ceil(G / 2);
  expectLength('values', values.length, R * 2 * G);
  expectLength('columns', columns.length, (R / v) * G * 4);
  expectLength('meta', meta.length, R * metaBytes);
  if (p.rowIndex) expectLength('row_index', p.rowIndex.length, R);

  const W = new Float32Array(outFeatures * inFeatures);
  const produced = new Uint8Array(outFeatures);
  for (let r = 0; r < R; r++) {
    const o = p.rowIndex ? p.rowIndex[r]! : r < outFeatures ? r : -1;
    if (o < -1 || o >= outFeatures) throw new Error(`row_index[${r}] = ${o} is out of range`);
    if (o >= 0) {
      if (produced[o]) throw new Error(`output channel ${o} is produced twice`);
      produced[o] = 1;
    }
    const b = Math.floor(r / v);
    for (let g = 0; g < G; g++) {
      const byte = meta[r * metaBytes + Math.floor(g / 2)]!;
      const nibble = g % 2 === 0 ? byte & 0x0f : byte >> 4;
      const p0 = nibble & 3;
      const p1 = (nibble >> 2) & 3;
      if (!(p0 < p1)) throw new Error(`meta of row ${r}, group ${g} is ${nibble}: needs p0 < p1`);
      for (const [slot, j] of [
        [p0, 2 * g],
        [p1, 2 * g + 1],
      ] as const) {
        const col = columns[(b * G + g) * 4 + slot]!;
        if (col < 0 || col >= inFeatures) throw new Error(`columns[${b}, ${g}, ${slot}] = ${col} is out of range`);
        if (o >= 0) W[o * inFeatures + col] = W[o * inFeatures + col]! + values[r * 2 * G + j]!;
      }
    }
    if (G % 2 === 1 && meta[r * metaBytes + metaBytes - 1]! >> 4 !== 0) {
      throw new Error(`row ${r}: the unused high nibble of the last meta byte is not 0`);
    }
  }
  for (let o = 0; o < outFeatures; o++) if (!produced[o]) throw new Error(`output channel ${o} is not produced`);
  return W;
}

function expectLength(name: string, actual: number, expected: number): void {
  if (actual !== expected) throw new Error(`${name} has ${actual} elements, expected ${expected}`);
}

/**
 * Violations of the V:N:M pattern in a dense W (empty when it complies): a row with more than 2
 * nonzeros in a group, or a (block, group) with more than 4 distinct nonzero columns.
 */
export function checkVnmPattern(W: Float32Array, outFeatures: number, inFeatures: number, v: number, m: number): string[] {
  const problems: string[] = [];
  const blocks = Math.ceil(outFeatures / v);
  const G = Math.ceil(inFeatures / m);
  for (let b = 0; b < blocks; b++) {
    for (let g = 0; g < G; g++) {
      const used = new Set<number>();
      for (let o = b * v; o < Math.min(outFeatures, (b + 1) * v); o++) {
        let count = 0;
        for (let k = g * m; k < Math.min(inFeatures, (g + 1) * m); k++) {
          if (W[o * inFeatures + k] !== 0) {
            count++;
            used.add(k);
          }
        }
        if (count > 2) problems.push(`row ${o}, group ${g}: ${count} nonzeros (at most 2)`);
      }
      if (used.size > 4) {
        problems.push(`block ${b}, group ${g}: ${used.size} distinct nonzero columns (at most 4): ${[...used].join(',')}`);
      }
    }
  }
  return problems;
}

/** All k-element subsets of [0, n), in lexicographic order. */
export function combinations(n: number, k: number): number[][] {
  const out: number[][] = [];
  const pick: number[] = [];
  const walk = (from: number): void => {
    if (pick.length === k) {
      out.push([...pick]);
      return;
    }
    for (let i = from; i < n; i++) {
      pick.push(i);
      walk(i + 1);
      pick.pop();
    }
  };
  walk(0);
  return out;
}

export interface BruteForceGroup {
  block: number;
  group: number;
  /** Best kept score of this (block, group). */
  best: number;
  /** The lexicographically first optimal 4 columns (absolute), or null when the group has < 4 columns. */
  subset: number[] | null;
}

/**
 * The optimum of the V:N:M selection by enumerating every 4-column subset of every (block, group)
 * and, for every row, every pair within it. Only for tiny matrices.
 */
export function bruteForceGroups(score: Float32Array, outFeatures: number, inFeatures: number, v: number, m: number): BruteForceGroup[] {
  const result: BruteForceGroup[] = [];
  const blocks = Math.ceil(outFeatures / v);
  const G = Math.ceil(inFeatures / m);
  const pairs = combinations(4, 2);
  for (let b = 0; b < blocks; b++) {
    const rows: number[] = [];
    for (let o = b * v; o < Math.min(outFeatures, (b + 1) * v); o++) rows.push(o);
    for (let g = 0; g < G; g++) {
      const cols: number[] = [];
      for (let k = g * m; k < Math.min(inFeatures, (g + 1) * m); k++) cols.push(k);
      if (cols.length < 4) {
        // Every real column is available: each row keeps its best min(2, columns) of them.
        let best = 0;
        for (const o of rows) {
          const sorted = cols.map((k) => score[o * inFeatures + k]!).sort((x, y) => y - x);
          best += sorted.slice(0, 2).reduce((x, y) => x + y, 0);
        }
        result.push({ block: b, group: g, best, subset: null });
        continue;
      }
      let best = -1;
      let subset: number[] | null = null;
      for (const pick of combinations(cols.length, 4)) {
        const chosen = pick.map((i) => cols[i]!);
        let total = 0;
        for (const o of rows) {
          let rowBest = -1;
          for (const [i, j] of pairs) {
            rowBest = Math.max(rowBest, score[o * inFeatures + chosen[i!]!]! + score[o * inFeatures + chosen[j!]!]!);
          }
          total += rowBest;
        }
        if (total > best) {
          best = total;
          subset = chosen;
        }
      }
      result.push({ block: b, group: g, best, subset });
    }
  }
  return result;
}

/** The optimal total kept score (sum over all blocks and groups). */
export function bruteForceBest(score: Float32Array, outFeatures: number, inFeatures: number, v: number, m: number): number {
  return bruteForceGroups(score, outFeatures, inFeatures, v, m).reduce((sum, g) => sum + g.best, 0);
}

/** Deterministic uniform [0, 1) generator for reproducible test data (the project's one mulberry32). */
export { mulberry32 as seededRandom } from '../../compiler/seeded.js';
