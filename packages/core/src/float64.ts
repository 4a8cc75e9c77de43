import type { Random } from './random';

/** A·v for a row-major float64 matrix A (rows × cols): a dense helper of closed-form problems and test references. */
export function matVec(a: Float64Array, rows: number, cols: number, v: ArrayLike<number>): Float64Array {
  const out = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    let s = 0;
    for (let j = 0; j < cols; j++) s += a[i * cols + j] * v[j];
    out[i] = s;
  }
  return out;
}

/** Aᵀv for a row-major float64 matrix A (rows × cols). */
export function matTVec(a: Float64Array, rows: number, cols: number, v: ArrayLike<number>): Float64Array {
  const out = new Float64Array(cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j] += a[i * cols + j] * v[i];
  return out;
}

/** A random orthogonal n×n matrix (Gram–Schmidt on Gaussian columns, twice for stability). */
export function randomOrthogonal(n: number, rng: Random): Float64Array {
  const q = new Float64Array(n * n);
  for (let i = 0; i < n * n; i++) q[i] = rng.normal();
  // Orthonormalize rows.
  for (let i = 0; i < n; i++) {
    for (let pass = 0; pass < 2; pass++) {
      for (let k = 0; k < i; k++) {
        let d = 0;
        for (let j = 0; j < n; j++) d += q[i * n + j] * q[k * n + j];
        for (let j = 0; j < n; j++) q[i * n + j] -= d * q[k * n + j];
      }
    }
    let norm = 0;
    for (let j = 0; j < n; j++) norm += q[i * n + j] ** 2;
    norm = Math.sqrt(norm);
    for (let j = 0; j < n; j++) q[i * n + j] /= norm;
  }
  return q;
}

/** Qᵀ diag(λ) Q. */
export function spectralMatrix(q: Float64Array, eig: ArrayLike<number>): Float64Array {
  const n = eig.length;
  const a = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const l = eig[k];
    for (let i = 0; i < n; i++) {
      const qi = q[k * n + i] * l;
      for (let j = 0; j < n; j++) a[i * n + j] += qi * q[k * n + j];
    }
  }
  return a;
}

