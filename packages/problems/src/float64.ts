/**
 * Small dense float64 linear algebra (row-major) for the closed-form references of the problems:
 * products and a Cholesky solve. Sizes here are a few hundred at most.
 */

/** C = A·B for A [m, k] and B [k, n]. */
export function matMul64(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  m: number,
  k: number,
  n: number,
): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let l = 0; l < k; l++) {
      const ail = a[i * k + l];
      if (ail === 0) continue;
      const bo = l * n;
      const co = i * n;
      for (let j = 0; j < n; j++) c[co + j] += ail * b[bo + j];
    }
  }
  return c;
}

/** C = Aᵀ·B for A [k, m] and B [k, n]. */
export function matTMul64(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  k: number,
  m: number,
  n: number,
): Float64Array {
  const c = new Float64Array(m * n);
  for (let l = 0; l < k; l++) {
    for (let i = 0; i < m; i++) {
      const ali = a[l * m + i];
      if (ali === 0) continue;
      const bo = l * n;
      const co = i * n;
      for (let j = 0; j < n; j++) c[co + j] += ali * b[bo + j];
    }
  }
  return c;
}

/** Solves S·x = b for a symmetric positive definite S [n, n] (Cholesky, S = LLᵀ). */
export function choleskySolve64(s: ArrayLike<number>, b: ArrayLike<number>, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let sum = s[i * n + j];
      for (let k = 0; k < j; k++) sum -= l[i * n + k] * l[j * n + k];
      if (i === j) {
        if (!(sum > 0))
          throw new Error(`choleskySolve64: matrix is not positive definite (pivot ${i} is ${sum})`);
        l[i * n + i] = Math.sqrt(sum);
      } else {
        l[i * n + j] = sum / l[j * n + j];
      }
    }
  }
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let sum = b[i];
    for (let k = 0; k < i; k++) sum -= l[i * n + k] * y[k];
    y[i] = sum / l[i * n + i];
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let sum = y[i];
    for (let k = i + 1; k < n; k++) sum -= l[k * n + i] * x[k];
    x[i] = sum / l[i * n + i];
  }
  return x;
}
