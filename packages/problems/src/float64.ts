/**
 * Small dense float64 linear algebra (row-major) for the closed-form references of the problems:
 * products and a Cholesky solve. Sizes here are a few hundred at most.
 */

import { choleskyFactor, choleskySolve } from '@bilevel/linalg';

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
  const l = choleskyFactor(Float64Array.from(s), n);
  if (!l) throw new Error('choleskySolve64: matrix is not positive definite');
  return choleskySolve(l, n, b);
}
