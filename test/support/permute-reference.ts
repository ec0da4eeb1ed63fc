/**
 * Brute-force references for V:N:M channel permutation, for tests on tiny matrices. Written from the
 * definitions alone (vnm-format.md: blocks of V rows, groups of M columns, 4 kept columns per
 * (block, group), 2 of those per row); shares no code with compiler/vnm (permute.ts, select.ts).
 */
import { combinations } from './vnm-reference.js';

/**
 * Every way to cut items [0, n) into consecutive slots of `size` (the last slot group partial when
 * size does not divide n), up to the order of the full groups and the order within a group (which
 * do not change the kept score). Each is returned as a permutation: position p holds item perm[p].
 */
export function groupPartitions(n: number, size: number): Int32Array[] {
  const full = Math.floor(n / size);
  const rest = n - full * size;
  const result: Int32Array[] = [];
  const items = Array.from({ length: n }, (_, i) => i);
  // The partial group (any `rest` items), then the others into full groups, each group taking the
  // smallest item left so that full groups are enumerated once.
  for (const partial of combinations(n, rest)) {
    const partialItems = partial.map((i) => items[i]!);
    const left = items.filter((x) => !partialItems.includes(x));
    const groups: number[][] = [];
    const walk = (remaining: number[]): void => {
      if (remaining.length === 0) {
        const perm = new Int32Array(n);
        let p = 0;
        for (const g of groups) for (const x of g) perm[p++] = x;
        for (const x of partialItems) perm[p++] = x;
        result.push(perm);
        return;
      }
      const [first, ...others] = remaining as [number, ...number[]];
      for (const pick of combinations(others.length, size - 1)) {
        const group = [first, ...pick.map((i) => others[i]!)];
        groups.push(group);
        walk(others.filter((x) => !group.includes(x)));
        groups.pop();
      }
    };
    walk(left);
  }
  return result;
}

/** The identity permutation as the only candidate. */
function identityOnly(n: number): Int32Array[] {
  return [Int32Array.from({ length: n }, (_, i) => i)];
}

export interface PermutationOptimum {
  best: number;
  inputPerm: Int32Array;
  outputPerm: Int32Array;
  /** How many (input, output) partitions were evaluated. */
  evaluated: number;
}

/**
 * The best kept score over all input partitions (when `inputs`) and all output partitions (when
 * `outputs`), by enumeration. For each input partition, every row's best-two value for every 4-column
 * subset of every group is tabulated (all columns when a group has fewer than 4), then every row
 * partition takes, per block and group, the best subset's summed value.
 */
export function bruteForcePermutation(
  score: Float32Array,
  outFeatures: number,
  inFeatures: number,
  v: number,
  m: number,
  which: { inputs: boolean; outputs: boolean },
): PermutationOptimum {
  const K = inFeatures;
  const G = Math.ceil(K / m);
  const colPartitions = which.inputs ? groupPartitions(K, m) : identityOnly(K);
  const rowPartitions = which.outputs ? groupPartitions(outFeatures, v) : identityOnly(outFeatures);
  const blocks = Math.ceil(outFeatures / v);
  let best = -1;
  let bestIn = colPartitions[0]!;
  let bestOut = rowPartitions[0]!;
  let evaluated = 0;
  for (const colPerm of colPartitions) {
    // table[g][s][o]: row o's best two among subset s of group g.
    const table: Float64Array[][] = [];
    for (let g = 0; g < G; g++) {
      const cols: number[] = [];
      for (let p = g * m; p < Math.min(K, g * m + m); p++) cols.push(colPerm[p]!);
      const subsets = cols.length >= 4 ? combinations(cols.length, 4).map((s) => s.map((i) => cols[i]!)) : [cols];
      table.push(
        subsets.map((subset) => {
          const values = new Float64Array(outFeatures);
          for (let o = 0; o < outFeatures; o++) {
            let top = 0;
            for (let a = 0; a < subset.length; a++) {
              for (let b = a + 1; b < subset.length; b++) {
                top = Math.max(top, score[o * K + subset[a]!]! + score[o * K + subset[b]!]!);
              }
            }
            if (subset.length === 1) top = score[o * K + subset[0]!]!;
            values[o] = top;
          }
          return values;
        }),
      );
    }
    for (const rowPerm of rowPartitions) {
      evaluated++;
      let total = 0;
      for (let b = 0; b < blocks; b++) {
        const r1 = Math.min(outFeatures, b * v + v);
        for (let g = 0; g < G; g++) {
          let groupBest = 0;
          for (const values of table[g]!) {
            let sum = 0;
            for (let r = b * v; r < r1; r++) sum += values[rowPerm[r]!]!;
            if (sum > groupBest) groupBest = sum;
          }
          total += groupBest;
        }
      }
      if (total > best) {
        best = total;
        bestIn = colPerm;
        bestOut = rowPerm;
      }
    }
  }
  return { best, inputPerm: bestIn, outputPerm: bestOut, evaluated };
}

/** result[o, c] = matrix[rowPerm[o], colPerm[c]]. */
export function permuteMatrix(matrix: Float32Array, outFeatures: number, inFeatures: number, rowPerm: Int32Array, colPerm: Int32Array): Float32Array {
  const result = new Float32Array(outFeatures * inFeatures);
  for (let o = 0; o < outFeatures; o++) {
    for (let c = 0; c < inFeatures; c++) result[o * inFeatures + c] = matrix[rowPerm[o]! * inFeatures + colPerm[c]!]!;
  }
  return result;
}

/** Y [T, out] = X [T, in] · Wᵀ, accumulated in float64. */
export function matmulTransposed(X: Float32Array, T: number, W: Float32Array, outFeatures: number, inFeatures: number): Float64Array {
  const Y = new Float64Array(T * outFeatures);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < outFeatures; o++) {
      let acc = 0;
      for (let k = 0; k < inFeatures; k++) acc += X[t * inFeatures + k]! * W[o * inFeatures + k]!;
      Y[t * outFeatures + o] = acc;
    }
  }
  return Y;
}
