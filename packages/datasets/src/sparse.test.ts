import * as tf from '@tensorflow/tfjs-core';
import { Random } from '@bilevel/core';
import { tensorCountGrowth } from '@bilevel/core/testing';
import { csrToDense, denseToCsr, gatherRows, sparseDenseMatMul, sparseTensorsFromCsr } from './index';
import { disposeSparse, segmentSum } from './sparse';

/** A random sparse matrix (about 30% nonzeros), with empty rows and columns. */
function randomSparse(rows: number, cols: number, rng: Random): Float32Array {
  const a = new Float32Array(rows * cols);
  for (let i = 0; i < a.length; i++) if (rng.uniform() < 0.3) a[i] = rng.normal();
  a.fill(0, 0, cols); // an empty first row
  return a;
}

describe('sparseDenseMatMul', () => {
  const rng = new Random(3);
  const rows = 7;
  const cols = 5;
  const k = 3;
  const dense = randomSparse(rows, cols, rng);
  const csr = denseToCsr(dense, rows, cols);
  const w0 = rng.normalArray(cols * k);

  it('matches the dense product computed in float64', () => {
    const s = sparseTensorsFromCsr(csr);
    const out = tf.tidy(() => sparseDenseMatMul(s, tf.tensor2d(w0, [cols, k])));
    const got = out.dataSync();
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < k; c++) {
        let ref = 0;
        for (let j = 0; j < cols; j++) ref += dense[r * cols + j] * w0[j * k + c];
        expect(got[r * k + c]).toBeCloseTo(ref, 5);
      }
    }
    expect(out.shape).toEqual([rows, k]);
    out.dispose();
    disposeSparse(s);
    expect(Array.from(csrToDense(csr))).toEqual(Array.from(dense));
  });

  it('has the gradient Sᵀ·G and exact second derivatives of a nonlinear loss', () => {
    const s = sparseTensorsFromCsr(csr);
    const a = tf.tensor2d(dense, [rows, cols]);
    const g = tf.tensor2d(rng.normalArray(rows * k), [rows, k]);
    const v = tf.tensor2d(rng.normalArray(cols * k), [cols, k]);
    const w = tf.tensor2d(w0, [cols, k]);
    // L(W) = Σ (S·W)² ⊙ G is nonlinear in W, so its Hessian-vector product exercises the gradient of the gradient.
    const lossSparse = (x: tf.Tensor) =>
      tf.sum(tf.mul(tf.square(sparseDenseMatMul(s, x as tf.Tensor2D)), g)) as tf.Scalar;
    const lossDense = (x: tf.Tensor) =>
      tf.sum(tf.mul(tf.square(tf.matMul(a, x as tf.Tensor2D)), g)) as tf.Scalar;
    const hvp = (loss: (x: tf.Tensor) => tf.Scalar) =>
      tf.tidy(() => tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.grad(loss)(x), v)) as tf.Scalar)(w));
    const gradS = tf.tidy(() => tf.grad(lossSparse)(w));
    const gradD = tf.tidy(() => tf.grad(lossDense)(w));
    const hS = hvp(lossSparse);
    const hD = hvp(lossDense);
    // Reference for the Hessian-vector product in float64: H·v = 2 Sᵀ (G ⊙ (S·v)).
    const sv = new Float64Array(rows * k);
    const vv = v.dataSync();
    const gg = g.dataSync();
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < k; c++)
        for (let j = 0; j < cols; j++) sv[r * k + c] += dense[r * cols + j] * vv[j * k + c];
    const ref = new Float64Array(cols * k);
    for (let r = 0; r < rows; r++)
      for (let j = 0; j < cols; j++)
        for (let c = 0; c < k; c++) ref[j * k + c] += 2 * dense[r * cols + j] * gg[r * k + c] * sv[r * k + c];
    const hs = hS.dataSync();
    for (let i = 0; i < ref.length; i++) expect(hs[i]).toBeCloseTo(ref[i], 4);
    expect(Array.from(gradS.dataSync()).map((x) => x.toFixed(4))).toEqual(
      Array.from(gradD.dataSync()).map((x) => x.toFixed(4)),
    );
    expect(Array.from(hD.dataSync()).map((x) => x.toFixed(4))).toEqual(
      Array.from(hs).map((x) => x.toFixed(4)),
    );
    tf.dispose([a, g, v, w, gradS, gradD, hS, hD]);
    disposeSparse(s);
  });

  it('refuses a dense factor of the wrong shape and leaks no tensors', () => {
    const s = sparseTensorsFromCsr(csr);
    const w = tf.tensor2d(w0, [cols, k]);
    const wrong = tf.zeros([cols + 1, k]) as tf.Tensor2D;
    expect(() => sparseDenseMatMul(s, wrong)).toThrow(/must have shape \[5, k\], got \[6, 3\]/);
    const growth = tensorCountGrowth(() => {
      tf.tidy(() => {
        tf.grad((x: tf.Tensor) => tf.sum(sparseDenseMatMul(s, x as tf.Tensor2D)) as tf.Scalar)(w);
      });
    }, 5);
    expect(growth).toEqual([0, 0, 0, 0, 0]);
    tf.dispose([w, wrong]);
    disposeSparse(s);
  });
});

describe('segmentSum and gatherRows', () => {
  it('sum duplicate ids, leave empty segments at zero and gather rows', () => {
    const data = tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8], [4, 2]);
    const ids = tf.tensor1d([2, 0, 2, 3], 'int32');
    const summed = segmentSum(data, ids, 5);
    expect(Array.from(summed.dataSync())).toEqual([3, 4, 0, 0, 1 + 5, 2 + 6, 7, 8, 0, 0]);
    const gathered = gatherRows(tf.tensor1d([10, 20, 30, 40]), ids);
    expect(Array.from(gathered.dataSync())).toEqual([30, 10, 30, 40]);
    tf.dispose([data, ids, summed, gathered]);
  });

  it('are each other’s gradient, to second order', () => {
    const ids = tf.tensor1d([1, 1, 0, 2, 1], 'int32');
    const x = tf.tensor1d([0.5, -1, 2]);
    const w = tf.tensor1d([1, 2, 3, 4, 5]);
    // L(x) = Σ_e w_e · x[ids_e]³: ∂L/∂x_s = 3x_s² Σ_{e: ids_e = s} w_e and ∂²L/∂x_s² = 6x_s Σ w_e.
    const loss = (v: tf.Tensor) =>
      tf.sum(tf.mul(w, tf.pow(gatherRows(v as tf.Tensor1D, ids), 3))) as tf.Scalar;
    const g = tf.tidy(() => tf.grad(loss)(x));
    const h = tf.tidy(() => tf.grad((v: tf.Tensor) => tf.sum(tf.grad(loss)(v)) as tf.Scalar)(x));
    const wsum = [3, 1 + 2 + 5, 4];
    const xs = [0.5, -1, 2];
    Array.from(g.dataSync()).forEach((v, s2) => expect(v).toBeCloseTo(3 * xs[s2] ** 2 * wsum[s2], 4));
    Array.from(h.dataSync()).forEach((v, s2) => expect(v).toBeCloseTo(6 * xs[s2] * wsum[s2], 4));
    tf.dispose([ids, x, w, g, h]);
  });
});
