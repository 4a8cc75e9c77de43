import * as tf from '@tensorflow/tfjs-core';
import { exp, softmaxCrossEntropy } from './ops';
import { createOracles, type SecondOrderStrategy } from './oracles';
import type { BilevelProblem } from './problem';
import { matTVec, matVec } from './float64';
import { QuadraticFixture } from './testing';
import { Random } from './random';
import type { TensorTree } from './tree';

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

const strategies: SecondOrderStrategy[] = ['autodiff', 'finite-difference'];

describe('oracles on a quadratic (closed form)', () => {
  const p = new QuadraticFixture({ innerDimension: 12, outerDimension: 7, conditionNumber: 20, seed: 3 });
  const rng = new Random(11);
  const x = { x: rng.normalTensor([7]) };
  const y = { y: rng.normalTensor([12]) };
  const v = { y: rng.normalTensor([12]) };
  afterAll(() => p.dispose());

  it('computes ∇_y g = Ay − Bx and the outer gradients', () => {
    const o = createOracles(p);
    const g = o.innerGradY(x, y).y.dataSync();
    const ay = matVec(p.a, 12, 12, y.y.dataSync());
    const bx = matVec(p.b, 12, 7, x.x.dataSync());
    expect(
      relErr(
        g,
        ay.map((a, i) => a - bx[i]),
      ),
    ).toBeLessThan(1e-5);
    const gx = o.innerGradX(x, y).x.dataSync();
    expect(
      relErr(
        gx,
        matTVec(p.b, 12, 7, y.y.dataSync()).map((u) => -u),
      ),
    ).toBeLessThan(1e-5);
    const og = o.outerGrads(x, y);
    expect(
      relErr(
        og.gradX.x.dataSync(),
        Array.from(x.x.dataSync(), (u, i) => u - p.z[i]),
      ),
    ).toBeLessThan(1e-6);
    expect(
      relErr(
        og.gradY.y.dataSync(),
        Array.from(y.y.dataSync(), (u, i) => u - p.t[i]),
      ),
    ).toBeLessThan(1e-6);
    expect(o.counts.innerGradY).toBe(1);
    expect(o.counts.innerGradX).toBe(1);
    expect(o.counts.outerGrad).toBe(1);
  });

  it.each(strategies)('%s: ∇²_yy g·v = Av and ∇²_xy g·v = −Bᵀv', (secondOrder) => {
    const o = createOracles(p, { secondOrder });
    const hv = o.hessianVectorProduct(x, y, v).y.dataSync();
    expect(relErr(hv, matVec(p.a, 12, 12, v.y.dataSync()))).toBeLessThan(1e-3);
    const mv = o.mixedVectorProduct(x, y, v).x.dataSync();
    expect(
      relErr(
        mv,
        matTVec(p.b, 12, 7, v.y.dataSync()).map((u) => -u),
      ),
    ).toBeLessThan(1e-3);
    expect(o.counts.hessianVector).toBe(1);
    expect(o.counts.mixedVector).toBe(1);
  });

  it('gives per-member gradients for a stacked batch', () => {
    const o = createOracles(p);
    const xs = { x: tf.stack([x.x, tf.mul(x.x, 2)]) };
    const ys = { y: tf.stack([y.y, tf.neg(y.y)]) };
    const g = o.innerGradYBatched(xs, ys).y;
    const g0 = o.innerGradY({ x: tf.mul(x.x, 2) }, { y: tf.neg(y.y) }).y;
    expect(relErr(tf.slice(g, [1, 0], [1, 12]).dataSync(), g0.dataSync())).toBeLessThan(1e-5);
  });
});

/**
 * Multinomial logistic regression with per-feature L2 weights exp(x_j):
 * g(x, W) = mean CE(softmax(AW), labels) + ½ Σ_j exp(x_j) ‖W_j‖².
 * Written with the second-order-safe ops of `./ops`.
 */
class LogisticProblem implements BilevelProblem {
  readonly name = 'logistic-test';
  constructor(
    readonly features: tf.Tensor2D,
    readonly onehot: tf.Tensor2D,
  ) {}
  initialX(): TensorTree {
    return { x: tf.fill([this.features.shape[1]], -1) };
  }
  initialY(): TensorTree {
    return { w: tf.zeros([this.features.shape[1], this.onehot.shape[1]]) };
  }
  innerLoss(x: TensorTree, y: TensorTree): tf.Scalar {
    const logits = tf.matMul(this.features, y.w);
    const ce = softmaxCrossEntropy(logits as tf.Tensor2D, this.onehot);
    const reg = tf.mul(0.5, tf.sum(tf.mul(tf.reshape(exp(x.x), [-1, 1]), tf.square(y.w))));
    return tf.add(ce, reg) as tf.Scalar;
  }
  outerLoss(_x: TensorTree, y: TensorTree): tf.Scalar {
    return tf.mean(tf.square(tf.matMul(this.features, y.w))) as tf.Scalar;
  }
}

describe('oracles on a logistic loss', () => {
  const rng = new Random(5);
  const n = 30;
  const d = 6;
  const k = 3;
  const features = rng.normalTensor([n, d]) as tf.Tensor2D;
  const labels = Array.from({ length: n }, () => rng.int(k));
  const onehot = tf.cast(tf.oneHot(tf.tensor1d(labels, 'int32'), k), 'float32') as tf.Tensor2D;
  const p = new LogisticProblem(features, onehot);
  const x = { x: rng.normalTensor([d], -1, 0.3) };
  const y = { w: rng.normalTensor([d, k], 0, 0.5) };
  const v = { w: rng.normalTensor([d, k]) };

  /** Reference: central differences of the autodiff gradient in float32 with a large, safe step. */
  function referenceHvp(): Float64Array {
    const o = createOracles(p);
    const h = 1e-2;
    const plus = o.innerGradY(x, { w: tf.add(y.w, tf.mul(v.w, h)) }).w.dataSync();
    const minus = o.innerGradY(x, { w: tf.sub(y.w, tf.mul(v.w, h)) }).w.dataSync();
    return Float64Array.from(plus, (a, i) => (a - minus[i]) / (2 * h));
  }

  it('autodiff and finite-difference Hessian-vector products agree with each other and a reference', () => {
    const ref = referenceHvp();
    const a = createOracles(p, { secondOrder: 'autodiff' }).hessianVectorProduct(x, y, v).w.dataSync();
    const f = createOracles(p, { secondOrder: 'finite-difference' })
      .hessianVectorProduct(x, y, v)
      .w.dataSync();
    expect(relErr(a, f)).toBeLessThan(1e-3);
    expect(relErr(a, ref)).toBeLessThan(1e-3);
  });

  it('mixed products agree with the closed form exp(x_j)·⟨W_j, V_j⟩', () => {
    const ex = Array.from(x.x.dataSync(), Math.exp);
    const wv = tf.sum(tf.mul(y.w, v.w), 1).dataSync();
    const truth = ex.map((e, j) => e * wv[j]);
    for (const s of strategies) {
      const m = createOracles(p, { secondOrder: s }).mixedVectorProduct(x, y, v).x.dataSync();
      expect(relErr(m, truth)).toBeLessThan(1e-3);
    }
  });

  it('gives zero gradient for outer variables the outer loss does not use', () => {
    const og = createOracles(p).outerGrads(x, y);
    expect(Array.from(og.gradX.x.dataSync()).every((u) => u === 0)).toBe(true);
  });

  it('keeps the tensor count flat over repeated second-order calls', () => {
    const o = createOracles(p, { secondOrder: 'autodiff' });
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) {
      tf.tidy(() => {
        o.hessianVectorProduct(x, y, v);
        o.mixedVectorProduct(x, y, v);
      });
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
