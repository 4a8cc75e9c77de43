import * as tf from '@tensorflow/tfjs-core';
import {
  exp,
  logSigmoid,
  logSumExp,
  sigmoid,
  sigmoidCrossEntropy,
  softmax,
  softmaxCrossEntropy,
  stopGradient,
} from './ops';
import { Random } from './random';

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

/** Hessian-vector product of a scalar function by double backprop. */
function hvp(f: (x: tf.Tensor) => tf.Scalar, x: tf.Tensor, v: tf.Tensor): Float32Array {
  return tf.tidy(() => {
    const g = (z: tf.Tensor) => tf.grad(f)(z);
    return tf
      .grad((z: tf.Tensor) => tf.sum(tf.mul(g(z), v)) as tf.Scalar)(x)
      .dataSync() as Float32Array;
  });
}

/** The same product by central differences of the first derivative, in float64 arithmetic on the step. */
function hvpFd(f: (x: tf.Tensor) => tf.Scalar, x: tf.Tensor, v: tf.Tensor, h = 1e-2): Float64Array {
  const g = tf.grad(f);
  const p = tf.tidy(() => g(tf.add(x, tf.mul(v, h)))).dataSync();
  const m = tf.tidy(() => g(tf.sub(x, tf.mul(v, h)))).dataSync();
  return Float64Array.from(p, (a, i) => (a - m[i]) / (2 * h));
}

describe('second-order-safe ops', () => {
  const rng = new Random(2);
  const z = rng.normalTensor([5, 4], 0, 2) as tf.Tensor2D;
  const labels = tf.oneHot(tf.tensor1d([0, 3, 1, 2, 3], 'int32'), 4).cast('float32') as tf.Tensor2D;
  const v = rng.normalTensor([5, 4]);

  it('match the built-in values', () => {
    expect(relErr(logSumExp(z, 1).dataSync(), tf.logSumExp(z, 1).dataSync())).toBeLessThan(1e-6);
    expect(relErr(softmax(z).dataSync(), tf.softmax(z).dataSync())).toBeLessThan(1e-6);
    expect(relErr(sigmoid(z).dataSync(), tf.sigmoid(z).dataSync())).toBeLessThan(1e-6);
    expect(
      relErr(logSigmoid(tf.mul(z, 20)).dataSync(), tf.logSigmoid(tf.mul(z, 20)).dataSync()),
    ).toBeLessThan(1e-6);
    const ce = softmaxCrossEntropy(z, labels).dataSync()[0];
    const ref = tf.losses.softmaxCrossEntropy(labels, z).dataSync()[0];
    expect(ce).toBeCloseTo(ref, 5);
  });

  it('stopGradient blocks the derivative but keeps the value', () => {
    const g = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(stopGradient(a), a)) as tf.Scalar)(z);
    expect(relErr(g.dataSync(), z.dataSync())).toBeLessThan(1e-6);
  });

  it('give second derivatives that agree with finite differences', () => {
    const fns: [string, (x: tf.Tensor) => tf.Scalar][] = [
      ['softmax cross-entropy', (x) => softmaxCrossEntropy(x as tf.Tensor2D, labels) as tf.Scalar],
      ['log-sum-exp', (x) => tf.sum(logSumExp(x, 1)) as tf.Scalar],
      ['sigmoid', (x) => tf.sum(tf.square(sigmoid(x))) as tf.Scalar],
      ['sigmoid cross-entropy', (x) => sigmoidCrossEntropy(x, tf.sigmoid(labels))],
      ['exp', (x) => tf.sum(tf.mul(exp(tf.mul(x, 0.5)), x)) as tf.Scalar],
    ];
    for (const [name, f] of fns) {
      const exact = hvp(f, z, v);
      const fd = hvpFd(f, z, v);
      const e = relErr(exact, fd);
      if (!(e < 1e-3)) throw new Error(`${name}: relative error ${e}`);
    }
  });
});
