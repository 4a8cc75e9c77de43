import { matTVec, matVec, randomOrthogonal, spectralMatrix } from './float64';
import { Random } from './random';

/** The plain triple loop Qᵀ diag(λ) Q, summed over k in increasing order (the reference of the blocked one). */
function naiveSpectral(q: Float64Array, eig: ArrayLike<number>): Float64Array {
  const n = eig.length;
  const a = new Float64Array(n * n);
  for (let k = 0; k < n; k++)
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) a[i * n + j] += q[k * n + i] * eig[k] * q[k * n + j];
  return a;
}

describe('float64 helpers', () => {
  it('randomOrthogonal gives QQᵀ = I to 1e-13, for sizes around the blocks and passes', () => {
    for (const n of [1, 2, 5, 16, 17, 40]) {
      const q = randomOrthogonal(n, new Random(n));
      for (let i = 0; i < n; i++)
        for (let j = 0; j < n; j++) {
          let d = 0;
          for (let k = 0; k < n; k++) d += q[i * n + k] * q[j * n + k];
          expect(Math.abs(d - (i === j ? 1 : 0))).toBeLessThan(1e-13);
        }
    }
  });

  it('spectralMatrix equals the plain triple loop bit for bit (block edges included)', () => {
    for (const n of [1, 15, 16, 17, 33]) {
      const q = randomOrthogonal(n, new Random(7));
      const eig = Float64Array.from({ length: n }, (_, i) => 1 + i / n);
      expect(Array.from(spectralMatrix(q, eig))).toEqual(Array.from(naiveSpectral(q, eig)));
    }
  });

  it('matVec and matTVec of a rectangular matrix', () => {
    const a = Float64Array.from([1, 2, 3, 4, 5, 6]); // 2 × 3
    expect(Array.from(matVec(a, 2, 3, [1, 0, -1]))).toEqual([-2, -2]);
    expect(Array.from(matTVec(a, 2, 3, [1, -1]))).toEqual([-3, -3, -3]);
  });
});
