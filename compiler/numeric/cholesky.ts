/**
 * Dense float64 linear algebra shared by the second-order pruning code (sparsegpt.ts, refit.ts): a dot
 * product with four partial sums, and a Cholesky factorisation and solve on row-major matrices.
 */

/** Σ_{p<len} a[ia+p]·b[ib+p], four partial sums (the loop is latency-bound with one). */
export function dot(a: Float64Array, ia: number, b: Float64Array, ib: number, len: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let p = 0;
  for (; p + 4 <= len; p += 4) {
    s0 += a[ia + p]! * b[ib + p]!;
    s1 += a[ia + p + 1]! * b[ib + p + 1]!;
    s2 += a[ia + p + 2]! * b[ib + p + 2]!;
    s3 += a[ia + p + 3]! * b[ib + p + 3]!;
  }
  for (; p < len; p++) s0 += a[ia + p]! * b[ib + p]!;
  return (s0 + s1) + (s2 + s3);
}

/** Lower Cholesky factor of A [n, n] (row-major, symmetric) into its lower triangle; false if not positive definite. */
export function choleskyLower(A: Float64Array, n: number): boolean {
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    const s = A[rj + j]! - dot(A, rj, A, rj, j);
    if (!(s > 0) || !Number.isFinite(s)) return false;
    const d = Math.sqrt(s);
    A[rj + j] = d;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      A[ri + j] = (A[ri + j]! - dot(A, ri, A, rj, j)) / d;
    }
  }
  return true;
}

/** Solves L·Lᵀ·x = b in place (L the lower triangle of A [n, n] row-major). */
export function choleskySolve(A: Float64Array, b: Float64Array, n: number): void {
  for (let i = 0; i < n; i++) b[i] = (b[i]! - dot(A, i * n, b, 0, i)) / A[i * n + i]!;
  for (let i = n - 1; i >= 0; i--) {
    let s = b[i]!;
    for (let p = i + 1; p < n; p++) s -= A[p * n + i]! * b[p]!;
    b[i] = s / A[i * n + i]!;
  }
}
