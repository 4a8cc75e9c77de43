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

/**
 * A random orthogonal n×n matrix (Gram–Schmidt on Gaussian columns, twice for stability). Each row's update by
 * one earlier row and its dot with the next are one pass over the row (same operations in the same order as
 * two separate passes, half the memory traffic).
 */
export function randomOrthogonal(n: number, rng: Random): Float64Array {
  const q = new Float64Array(n * n);
  for (let i = 0; i < n * n; i++) q[i] = rng.normal();
  // Orthonormalize rows.
  for (let i = 0; i < n; i++) {
    const qi = i * n;
    for (let pass = 0; pass < 2; pass++) {
      if (i === 0) break;
      // d = ⟨q_i, q_0⟩, then for each k: q_i −= d·q_k while d' = ⟨q_i (updated), q_{k+1}⟩ is summed.
      let d = 0;
      for (let j = 0; j < n; j++) d += q[qi + j] * q[j];
      for (let k = 0; k < i; k++) {
        const qk = k * n;
        if (k + 1 < i) {
          const qn = qk + n;
          let next = 0;
          for (let j = 0; j < n; j++) {
            const v = q[qi + j] - d * q[qk + j];
            q[qi + j] = v;
            next += v * q[qn + j];
          }
          d = next;
        } else {
          for (let j = 0; j < n; j++) q[qi + j] -= d * q[qk + j];
        }
      }
    }
    let norm = 0;
    for (let j = 0; j < n; j++) norm += q[qi + j] ** 2;
    norm = Math.sqrt(norm);
    for (let j = 0; j < n; j++) q[qi + j] /= norm;
  }
  return q;
}

/** Rows of Q per block of {@link spectralMatrix}: a block (n = 1,000: 128 kB) stays in cache. */
const SPECTRAL_BLOCK = 16;

/**
 * Qᵀ diag(λ) Q. Blocked over the rows of Q, so that each row of the result is updated by a block of rows while
 * it is in cache instead of the whole result streaming through memory once per row of Q; every entry is
 * summed over k in increasing order as in the plain triple loop (the same values, bit for bit).
 */
export function spectralMatrix(q: Float64Array, eig: ArrayLike<number>): Float64Array {
  const n = eig.length;
  const a = new Float64Array(n * n);
  for (let k0 = 0; k0 < n; k0 += SPECTRAL_BLOCK) {
    const k1 = Math.min(n, k0 + SPECTRAL_BLOCK);
    for (let i = 0; i < n; i++) {
      const ai = i * n;
      for (let k = k0; k < k1; k++) {
        const qk = k * n;
        const c = q[qk + i] * eig[k];
        for (let j = 0; j < n; j++) a[ai + j] += c * q[qk + j];
      }
    }
  }
  return a;
}
