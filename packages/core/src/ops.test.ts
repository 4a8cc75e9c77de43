import * as tf from '@tensorflow/tfjs-core';
import {
  exp,
  halfSquaredNorm,
  logSigmoid,
  logSumExp,
  sigmoid,
  sigmoidCrossEntropy,
  softmax,
  softmaxCrossEntropy,
  stopGradient,
  unaryCustomOp,
} from './ops';
import { Random } from './random';
import { tensorCountGrowth } from './testing';

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

// ---------------------------------------------------------------------------------------------------------
// The fused softmax cross-entropy against the previous composite formulation and float64 references.

type Reduction = 'mean' | 'sum' | 'none';

/** max along the last axis (kept), with a zero derivative of every order (the previous max shift). */
const maxNoGradient = unaryCustomOp(
  (a) => tf.max(a, -1, true),
  (_dy, a) => tf.zerosLike(a),
);

/** The composite formulation the fused op replaced: a max shift with zero derivative, exp, sum, log. */
function compositeCrossEntropy(
  logits: tf.Tensor,
  labels: tf.Tensor,
  options: { weights?: tf.Tensor; reduction?: Reduction; scale?: number } = {},
): tf.Tensor {
  return tf.tidy(() => {
    const m = maxNoGradient(logits);
    const lse = tf.squeeze(tf.add(tf.log(tf.sum(exp(tf.sub(logits, m)), -1, true)), m), [logits.rank - 1]);
    const ce = tf.sub(lse, tf.sum(tf.mul(logits, labels), -1));
    const weighted = options.weights ? tf.mul(ce, options.weights) : ce;
    const reduction = options.reduction ?? 'mean';
    const out = reduction === 'none' ? weighted : reduction === 'sum' ? tf.sum(weighted) : tf.mean(weighted);
    return options.scale === undefined ? out : tf.mul(out, options.scale);
  });
}

/**
 * The same loss in float64, in plain JS, contracted to a scalar: Σ_i r_i·w_i·ce_i for `none` (r a fixed
 * vector), else the reduction, times the scale. z is [n, k] row-major, t [n, k], w [n].
 */
function referenceLoss(
  z: ArrayLike<number>,
  t: ArrayLike<number>,
  w: ArrayLike<number> | null,
  n: number,
  k: number,
  reduction: Reduction,
  scale: number,
  r: ArrayLike<number>,
): number {
  let total = 0;
  for (let i = 0; i < n; i++) {
    let m = -Infinity;
    for (let c = 0; c < k; c++) m = Math.max(m, z[i * k + c]);
    let s = 0;
    let tz = 0;
    for (let c = 0; c < k; c++) {
      s += Math.exp(z[i * k + c] - m);
      tz += t[i * k + c] * z[i * k + c];
    }
    const ce = (Math.log(s) + m - tz) * (w ? w[i] : 1);
    total += reduction === 'none' ? r[i] * ce : ce;
  }
  return (reduction === 'mean' ? total / n : total) * scale;
}

const f64 = (t: tf.Tensor) => Float64Array.from(t.dataSync());

/** Central difference of F along unit coordinates of one argument: the gradient in float64. */
function fdGradient(F: (a: Float64Array) => number, a: Float64Array, h = 1e-5): Float64Array {
  return a.map((_, i) => {
    const p = Float64Array.from(a);
    const m = Float64Array.from(a);
    p[i] += h;
    m[i] -= h;
    return (F(p) - F(m)) / (2 * h);
  });
}

/**
 * ∂/∂b_j ⟨∇_a F(a, b), v⟩ by the mixed central difference (F(a+hv, b+he_j) − F(a−hv, b+he_j) − F(a+hv, b−he_j)
 * + F(a−hv, b−he_j)) / 4h²; with b = a it is the Hessian-vector product.
 */
function fdMixed(
  F: (a: Float64Array, b: Float64Array) => number,
  a: Float64Array,
  b: Float64Array,
  v: Float64Array,
  h = 1e-4,
): Float64Array {
  const shift = (x: Float64Array, d: ArrayLike<number>, s: number) => x.map((xi, i) => xi + s * d[i]);
  return b.map((_, j) => {
    const ej = b.map((__, l) => (l === j ? 1 : 0));
    const at = (sa: number, sb: number) => F(shift(a, v, sa * h), shift(b, ej, sb * h));
    return (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1)) / (4 * h * h);
  });
}

describe('softmaxCrossEntropy (fused op)', () => {
  const n = 5;
  const k = 4;
  const rng = new Random(11);
  const z = rng.normalTensor([n, k], 0, 2) as tf.Tensor2D;
  const oneHot = tf.oneHot(tf.tensor1d([0, 3, 1, 2, 3], 'int32'), k).toFloat() as tf.Tensor2D;
  // Soft labels: positive rows summing to 1, and rows that do not (the loss is lse − ⟨t, z⟩ for any t).
  const soft = tf.tidy(() => {
    const a = tf.abs(rng.normalTensor([n, k]));
    return tf.div(a, tf.sum(a, 1, true));
  }) as tf.Tensor2D;
  const unnormalized = tf.abs(rng.normalTensor([n, k])) as tf.Tensor2D;
  const w = rng.uniformTensor([n], 0.1, 1) as tf.Tensor1D;
  const v = rng.normalTensor([n, k]);
  const r = rng.normalTensor([n]);
  // Large logits: ±80, with true classes on both signs (e^160 overflows float32 without the max shift).
  const large = tf.tidy(() => tf.mul(tf.sign(rng.normalTensor([n, k])), 80)) as tf.Tensor2D;

  const cases: { name: string; logits: tf.Tensor2D; labels: tf.Tensor2D }[] = [
    { name: 'one-hot', logits: z, labels: oneHot },
    { name: 'soft labels', logits: z, labels: soft },
    { name: 'unnormalized soft labels', logits: z, labels: unnormalized },
    { name: 'logits ±80', logits: large, labels: oneHot },
  ];
  const settings: { reduction: Reduction; weighted: boolean; scale?: number }[] = [];
  for (const reduction of ['mean', 'sum', 'none'] as const)
    for (const weighted of [false, true]) settings.push({ reduction, weighted });
  settings.push(
    { reduction: 'sum', weighted: false, scale: 0.25 },
    { reduction: 'mean', weighted: true, scale: 3 },
  );

  /** The loss as a scalar function of (logits, weights): `none` is contracted with r. */
  const scalarLoss =
    (
      op: typeof softmaxCrossEntropy | typeof compositeCrossEntropy,
      labels: tf.Tensor,
      s: { reduction: Reduction; weighted: boolean; scale?: number },
    ) =>
    (logits: tf.Tensor, weights: tf.Tensor): tf.Scalar => {
      const out = op(logits, labels, {
        weights: s.weighted ? weights : undefined,
        reduction: s.reduction,
        scale: s.scale,
      });
      return (s.reduction === 'none' ? tf.sum(tf.mul(out, r)) : out) as tf.Scalar;
    };

  for (const c of cases) {
    for (const s of settings) {
      const label = `${c.name}, ${s.reduction}${s.weighted ? ', weighted' : ''}${s.scale ? `, scale ${s.scale}` : ''}`;
      it(`${label}: value, ∇_z, ∇_w, Hessian-vector and mixed products match the composite and float64 differences`, () => {
        tf.tidy(() => {
          const fused = scalarLoss(softmaxCrossEntropy, c.labels, s);
          const composite = scalarLoss(compositeCrossEntropy, c.labels, s);
          const T = f64(c.labels);
          const R = f64(r);
          const ref = (za: Float64Array, wa: Float64Array) =>
            referenceLoss(za, T, s.weighted ? wa : null, n, k, s.reduction, s.scale ?? 1, R);
          const Z = f64(c.logits);
          const W = f64(w);

          // Values.
          const value = fused(c.logits, w).dataSync()[0];
          const expected = ref(Z, W);
          expect(Number.isFinite(value)).toBe(true);
          expect(Math.abs(value - expected)).toBeLessThan(1e-5 * Math.max(1, Math.abs(expected)));
          expect(Math.abs(value - composite(c.logits, w).dataSync()[0])).toBeLessThan(
            1e-5 * Math.max(1, Math.abs(expected)),
          );
          if (s.reduction === 'none') {
            const rows = softmaxCrossEntropy(c.logits, c.labels, {
              weights: s.weighted ? w : undefined,
              reduction: 'none',
            });
            expect(rows.shape).toEqual([n]);
          }

          // First derivatives.
          const both = (f: (a: tf.Tensor, b: tf.Tensor) => tf.Scalar) =>
            s.weighted ? tf.grads(f)([c.logits, w]) : [tf.grad((a: tf.Tensor) => f(a, w))(c.logits)];
          const [gz, gw] = both(fused);
          const [cz, cw] = both(composite);
          expect(relErr(gz.dataSync(), cz.dataSync())).toBeLessThan(1e-5);
          expect(
            relErr(
              gz.dataSync(),
              fdGradient((a) => ref(a, W), Z),
            ),
          ).toBeLessThan(1e-5);
          if (s.weighted) {
            expect(relErr(gw.dataSync(), cw.dataSync())).toBeLessThan(1e-5);
            expect(
              relErr(
                gw.dataSync(),
                fdGradient((a) => ref(Z, a), W),
              ),
            ).toBeLessThan(1e-5);
          }

          // Second derivatives: ∇²_zz·v and ∂_w ⟨∇_z, v⟩ by nested gradients.
          const dirZ = (zz: tf.Tensor, ww: tf.Tensor) =>
            tf.sum(tf.mul(tf.grad((a: tf.Tensor) => fused(a, ww))(zz), v)) as tf.Scalar;
          const dirZc = (zz: tf.Tensor, ww: tf.Tensor) =>
            tf.sum(tf.mul(tf.grad((a: tf.Tensor) => composite(a, ww))(zz), v)) as tf.Scalar;
          const V = f64(v);
          const [hz, hw] = both(dirZ);
          const [hzc, hwc] = both(dirZc);
          const hvpFd64 = fdMixed(
            (a, b) => ref(a === b ? a : a.map((ai, i) => ai + b[i] - Z[i]), W),
            Z,
            Z,
            V,
          );
          expect(relErr(hz.dataSync(), hzc.dataSync())).toBeLessThan(1e-4);
          expect(relErr(hz.dataSync(), hvpFd64)).toBeLessThan(1e-3);
          if (s.weighted) {
            expect(relErr(hw.dataSync(), hwc.dataSync())).toBeLessThan(1e-4);
            expect(
              relErr(
                hw.dataSync(),
                fdMixed((a, b) => ref(a, b), Z, W, V),
              ),
            ).toBeLessThan(1e-3);
          }
        });
      });
    }
  }

  it('broadcasts [n, k] labels against [B, n, k] logits, row by row', () => {
    tf.tidy(() => {
      const logits3 = rng.normalTensor([3, n, k], 0, 2);
      const weights3 = rng.uniformTensor([3, n], 0.1, 1);
      const out = softmaxCrossEntropy(logits3, soft, { weights: weights3, reduction: 'none' });
      expect(out.shape).toEqual([3, n]);
      const ref = compositeCrossEntropy(logits3, soft, { weights: weights3, reduction: 'none' });
      expect(relErr(out.dataSync(), ref.dataSync())).toBeLessThan(1e-6);
      const u = rng.normalTensor([3, n, k]);
      const g = (op: typeof softmaxCrossEntropy) => (a: tf.Tensor) =>
        tf.sum(
          tf.mul(
            tf.grad((b: tf.Tensor) => op(b, soft, { weights: weights3, reduction: 'sum' }) as tf.Scalar)(a),
            u,
          ),
        ) as tf.Scalar;
      expect(
        relErr(
          tf.grad(g(softmaxCrossEntropy))(logits3).dataSync(),
          tf.grad(g(compositeCrossEntropy))(logits3).dataSync(),
        ),
      ).toBeLessThan(1e-4);
    });
  });

  it('differentiates with respect to the labels: ∂/∂t = −z·w·c', () => {
    tf.tidy(() => {
      const gt = tf.grad((t: tf.Tensor) => softmaxCrossEntropy(z, t, { weights: w }) as tf.Scalar)(soft);
      const expected = tf.div(tf.neg(tf.mul(z, tf.reshape(w, [n, 1]))), n);
      expect(relErr(gt.dataSync(), expected.dataSync())).toBeLessThan(1e-6);
      const batched = rng.normalTensor([2, n, k]);
      const gb = tf.grad(
        (t: tf.Tensor) => softmaxCrossEntropy(batched, t, { reduction: 'sum' }) as tf.Scalar,
      )(soft);
      expect(relErr(gb.dataSync(), tf.neg(tf.sum(batched, 0)).dataSync())).toBeLessThan(1e-6);
    });
  });

  it('gives exact third derivatives (its derivative is written with a softmax op that is exact again)', () => {
    tf.tidy(() => {
      const u = rng.normalTensor([n, k]);
      const f = (a: tf.Tensor) => softmaxCrossEntropy(a, soft, { weights: w }) as tf.Scalar;
      // ∇_z ⟨∇²f(z)·v, u⟩ against the central difference of the Hessian-vector product along each coordinate.
      const hv = (a: tf.Tensor) =>
        tf.grad((b: tf.Tensor) => tf.sum(tf.mul(tf.grad(f)(b), v)) as tf.Scalar)(a);
      const third = tf
        .grad((a: tf.Tensor) => tf.sum(tf.mul(hv(a), u)) as tf.Scalar)(z)
        .dataSync();
      const T = f64(soft);
      const W = f64(w);
      const V = f64(v);
      const U = f64(u);
      const Z = f64(z);
      const ref = (a: Float64Array) => referenceLoss(a, T, W, n, k, 'mean', 1, []);
      // ⟨∇²f(a)·v, u⟩ by a mixed difference along v and u, then its central difference in each coordinate.
      const hvu = (a: Float64Array) => {
        const h = 1e-3;
        const at = (sv: number, su: number) => ref(a.map((ai, i) => ai + h * (sv * V[i] + su * U[i])));
        return (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1)) / (4 * h * h);
      };
      expect(relErr(third, fdGradient(hvu, Z, 1e-3))).toBeLessThan(1e-2);
    });
  });

  it('keeps the tensor count flat over repeated values, gradients and second-order products', () => {
    const growth = tensorCountGrowth(() => {
      tf.tidy(() => {
        softmaxCrossEntropy(z, oneHot);
        softmaxCrossEntropy(z, oneHot, { weights: w, reduction: 'none' });
        tf.grads((a: tf.Tensor, b: tf.Tensor) => softmaxCrossEntropy(a, oneHot, { weights: b }) as tf.Scalar)(
          [z, w],
        );
        tf.grad(
          (a: tf.Tensor) =>
            tf.sum(
              tf.mul(
                tf.grad((b: tf.Tensor) => softmaxCrossEntropy(b, oneHot, { weights: w }) as tf.Scalar)(a),
                v,
              ),
            ) as tf.Scalar,
        )(z);
      });
    }, 5);
    expect(growth).toEqual([0, 0, 0, 0, 0]);
    // Outside any tidy, only the result is left behind (the extra outputs kept for the gradient are released).
    const before = tf.memory().numTensors;
    const loss = tf.grad((a: tf.Tensor) => softmaxCrossEntropy(a, oneHot) as tf.Scalar)(z);
    loss.dispose();
    const value = softmaxCrossEntropy(z, oneHot);
    value.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('takes few kernels: value, gradient and Hessian-vector product', async () => {
    const count = async (f: () => void) => (await tf.profile(() => tf.tidy(f))).kernels.length;
    const loss = (a: tf.Tensor) => softmaxCrossEntropy(a, oneHot) as tf.Scalar;
    const kernels = {
      value: await count(() => loss(z)),
      gradient: await count(() => tf.grad(loss)(z)),
      hvp: await count(() => tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.grad(loss)(a), v)) as tf.Scalar)(z)),
    };
    const old = (a: tf.Tensor) => compositeCrossEntropy(a, oneHot) as tf.Scalar;
    const composite = {
      value: await count(() => old(z)),
      gradient: await count(() => tf.grad(old)(z)),
      hvp: await count(() => tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.grad(old)(a), v)) as tf.Scalar)(z)),
    };
    // Measured with tfjs 4.22 on cpu: 11 / 18 / 43 kernels, against 13 / 56 / 137 for the composite.
    expect(kernels.value).toBeLessThanOrEqual(composite.value);
    expect(kernels.gradient).toBeLessThan(composite.gradient / 2);
    expect(kernels.hvp).toBeLessThan(composite.hvp / 2);
  });

  it('refuses weights that do not match the rows', () => {
    expect(() => softmaxCrossEntropy(z, oneHot, { weights: tf.ones([n + 1]) })).toThrow(
      /weights of shape \[6\]/,
    );
  });
});

describe('softmax, logSumExp and halfSquaredNorm (custom ops)', () => {
  const rng = new Random(5);
  const x = rng.normalTensor([3, 4], 0, 2);
  const v = rng.normalTensor([3, 4]);

  it('softmax: exact Hessian-vector products, and third derivatives that agree with their differences', () => {
    tf.tidy(() => {
      const u = rng.normalTensor([3, 4]);
      const f = (a: tf.Tensor) => tf.sum(tf.mul(softmax(a), u)) as tf.Scalar;
      const hv = (a: tf.Tensor) =>
        tf.grad((b: tf.Tensor) => tf.sum(tf.mul(tf.grad(f)(b), v)) as tf.Scalar)(a);
      expect(relErr(hv(x).dataSync(), hvpFd(f, x, v))).toBeLessThan(1e-3);
      // ∇ ⟨∇²f·v, v⟩ against central differences of ⟨∇²f·v, v⟩ along each coordinate.
      const third = tf
        .grad((a: tf.Tensor) => tf.sum(tf.mul(hv(a), v)) as tf.Scalar)(x)
        .dataSync();
      const at = (a: tf.Tensor) => tf.sum(tf.mul(hv(a), v)).dataSync()[0];
      const h = 1e-2;
      const fd = Float64Array.from({ length: 12 }, (_, i) => {
        const e = tf.mul(tf.oneHot(i, 12).toFloat().reshape([3, 4]), h);
        return (at(tf.add(x, e)) - at(tf.sub(x, e))) / (2 * h);
      });
      expect(relErr(third, fd)).toBeLessThan(1e-2);
    });
  });

  it('logSumExp along axis 0, with and without kept dims, and its Hessian-vector product', () => {
    tf.tidy(() => {
      expect(relErr(logSumExp(x, 0).dataSync(), tf.logSumExp(x, 0).dataSync())).toBeLessThan(1e-6);
      expect(logSumExp(x, 0, true).shape).toEqual([1, 4]);
      const f = (a: tf.Tensor) => tf.sum(tf.mul(logSumExp(a, 0), tf.range(1, 5))) as tf.Scalar;
      expect(relErr(hvp(f, x, v), hvpFd(f, x, v))).toBeLessThan(1e-3);
      const g = tf.grad(f)(x);
      expect(
        relErr(g.dataSync(), tf.mul(tf.softmax(tf.transpose(x)).transpose(), tf.range(1, 5)).dataSync()),
      ).toBeLessThan(1e-5);
    });
  });

  it('halfSquaredNorm: (s/2)‖x‖², gradient s·x, Hessian s·I', () => {
    tf.tidy(() => {
      expect(halfSquaredNorm(x, 3).dataSync()[0]).toBeCloseTo(1.5 * tf.sum(tf.square(x)).dataSync()[0], 4);
      const f = (a: tf.Tensor) => halfSquaredNorm(a, 3);
      expect(relErr(tf.grad(f)(x).dataSync(), tf.mul(x, 3).dataSync())).toBeLessThan(1e-6);
      expect(relErr(hvp(f, x, v), tf.mul(v, 3).dataSync())).toBeLessThan(1e-6);
      // Per member of a stack: sums over the trailing axes, derivative 3·x scaled by each member's dy.
      const stack = rng.normalTensor([2, 3, 4]);
      const perMember = halfSquaredNorm(stack, 3, [1, 2]);
      expect(
        relErr(perMember.dataSync(), tf.mul(tf.sum(tf.square(stack), [1, 2]), 1.5).dataSync()),
      ).toBeLessThan(1e-6);
      const weights = tf.tensor1d([0.5, -2]);
      const g = tf.grad(
        (a: tf.Tensor) => tf.sum(tf.mul(halfSquaredNorm(a, 3, [1, 2]), weights)) as tf.Scalar,
      )(stack);
      expect(
        relErr(g.dataSync(), tf.mul(stack, tf.reshape(tf.mul(weights, 3), [2, 1, 1])).dataSync()),
      ).toBeLessThan(1e-6);
    });
  });
});
