/** Dense float64 Cholesky factorization and solve (row-major n×n), for exact references and small solves. */

/**
 * Cholesky factorization A = LLᵀ of a symmetric n×n row-major float64 matrix; returns null when A is not
 * positive definite, or when a pivot falls to rcond·max|A_jj| or below (numerically singular).
 */
export function choleskyFactor(a: Float64Array, n: number, rcond = 0): Float64Array | null {
  const l = new Float64Array(n * n);
  let maxDiag = 0;
  for (let j = 0; j < n; j++) maxDiag = Math.max(maxDiag, Math.abs(a[j * n + j]));
  const floor = rcond * maxDiag;
  for (let j = 0; j < n; j++) {
    let diag = a[j * n + j];
    for (let k = 0; k < j; k++) diag -= l[j * n + k] * l[j * n + k];
    if (!(diag > floor) || !Number.isFinite(diag)) return null;
    const ljj = Math.sqrt(diag);
    l[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
      l[i * n + j] = s / ljj;
    }
  }
  return l;
}

/** Solves LLᵀx = b by forward and back substitution. */
export function choleskySolve(l: Float64Array, n: number, b: ArrayLike<number>): Float64Array {
  const z = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[i];
    for (let k = 0; k < i; k++) s -= l[i * n + k] * z[k];
    z[i] = s / l[i * n + i];
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = z[i];
    for (let k = i + 1; k < n; k++) s -= l[k * n + i] * x[k];
    x[i] = s / l[i * n + i];
  }
  return x;
}
