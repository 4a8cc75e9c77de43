import * as tf from '@tensorflow/tfjs-core';
import { Random, type TensorTree, treeDispose, treeFromTensors, treeNames } from '@bilevel/core';
import { BLAS_BACKEND_NAME, blasInfo, registerBlasBackend } from '@bilevel/tfjs-blas';
import { ResNet12Backbone } from './resnet12';
import {
  batchNorm,
  conv2d,
  type ConvolutionGradientStrategy,
  leakyRelu,
  setConvolutionGradientStrategy,
  setFusedBatchNorm,
} from './layers';

/**
 * The batch-norm and LeakyReLU formulations chosen per backend (matrix products on `cpu`, broadcasting ops
 * and one-op gradients on `cpu-blas` / `wasm`) against each other, against the textbook formulas and
 * against central differences, for values, first derivatives and second- and third-order products, on the
 * `cpu` backend and, when its native addon is built, on `cpu-blas`.
 */

const blas = registerBlasBackend();
if (!blas) console.warn(`skipped the cpu-blas runs of the layer tests: ${blasInfo().reason}`);
const BACKENDS = blas ? ['cpu', BLAS_BACKEND_NAME] : ['cpu'];
/** The strategies with the broadcasting batch norm and the native LeakyReLU (`js` keeps the matrix products). */
const FAST: ConvolutionGradientStrategy[] = ['native', 'xnnpack'];

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

function relDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => maxAbsDiff(a, b) / Math.max(tf.max(tf.abs(b)).dataSync()[0], 1e-12));
}

/** Runs f with the layers forced to a strategy. */
function using<T>(strategy: ConvolutionGradientStrategy, f: () => T): T {
  setConvolutionGradientStrategy(strategy);
  try {
    return f();
  } finally {
    setConvolutionGradientStrategy('auto');
  }
}

type Loss = (...ts: tf.Tensor[]) => tf.Scalar;

/** ∇ᵢ⟨∇₀ L, v⟩ for every argument i: the Hessian-vector products in the first argument. */
function hessianVector(loss: Loss, args: tf.Tensor[], v: tf.Tensor): tf.Tensor[] {
  return tf.grads((...ts: tf.Tensor[]) => tf.sum(tf.mul(tf.grads(loss)(ts)[0], v)) as tf.Scalar)(args);
}

/** (∇ L(x + εv, …) − ∇ L(x − εv, …))/2ε: central differences of every gradient along v in the first argument. */
function centralDifference(loss: Loss, args: tf.Tensor[], v: tf.Tensor, eps: number): tf.Tensor[] {
  const plus = tf.grads(loss)([tf.add(args[0], tf.mul(v, eps)), ...args.slice(1)]);
  const minus = tf.grads(loss)([tf.sub(args[0], tf.mul(v, eps)), ...args.slice(1)]);
  return plus.map((p, i) => tf.div(tf.sub(p, minus[i]), 2 * eps));
}

describe.each(BACKENDS)('layers on the %s backend', (backend) => {
  beforeAll(async () => {
    await tf.setBackend(backend);
  });
  afterAll(async () => {
    setConvolutionGradientStrategy('auto');
    await tf.setBackend('cpu');
  });

  describe.each(['js', ...FAST] as ConvolutionGradientStrategy[])('leakyRelu (%s strategy)', (strategy) => {
    const alpha = 0.1;
    const textbook = (x: tf.Tensor): tf.Tensor => tf.add(tf.mul(x, alpha), tf.mul(tf.relu(x), 1 - alpha));
    const ours = (x: tf.Tensor): tf.Tensor => using(strategy, () => leakyRelu(x, alpha));

    it('is max(x, αx) with float32 products, and its derivative is 1 for x > 0, α for x ≤ 0 (α at 0, as before)', () => {
      tf.tidy(() => {
        const values = [-3, -0.7, -1e-30, 0, 1e-30, 0.3, 5, Infinity, -Infinity];
        const x = tf.tensor1d(values);
        const a32 = Math.fround(alpha);
        const expected = values.map((v) => (v > 0 ? Math.fround(v) : Math.fround(Math.fround(v) * a32)));
        expect(Array.from(ours(x).dataSync())).toEqual(expected);
        const finite = tf.tensor1d(values.slice(0, 7));
        const w = tf.tensor1d([0.5, -2, 1.5, 3, -1, 0.25, 2]);
        const g = tf.grad((u: tf.Tensor) => tf.sum(tf.mul(ours(u), w)))(finite);
        const gRef = tf.grad((u: tf.Tensor) => tf.sum(tf.mul(textbook(u), w)))(finite);
        expect(relDiff(g, gRef)).toBeLessThan(1e-6);
        // At x = 0 (index 3): α·w, the textbook formula's derivative with relu'(0) = 0.
        expect(g.dataSync()[3]).toBeCloseTo(alpha * 3, 6);
        expect(Array.from(g.dataSync())).toEqual(
          values
            .slice(0, 7)
            .map((v, i) => Math.fround(Math.fround([0.5, -2, 1.5, 3, -1, 0.25, 2][i]) * (v > 0 ? 1 : a32))),
        );
      });
    });

    it('has exact second and third derivatives (against the textbook formula and central differences)', () => {
      tf.tidy(() => {
        const rng = new Random(21);
        // Away from the kink, so that central differences with step 1e-2 stay on one side of it.
        const raw = rng.normalTensor([40]);
        const x = tf.add(raw, tf.mul(tf.sign(raw), 0.2));
        const A = rng.normalTensor([7, 40]);
        const v = rng.uniformTensor([40], -1, 1);
        const lossWith =
          (f: (u: tf.Tensor) => tf.Tensor): Loss =>
          (u) =>
            tf.div(tf.sum(tf.pow(tf.matMul(A, tf.reshape(f(u), [40, 1])), 3)), 3) as tf.Scalar;
        const [hv] = hessianVector(lossWith(ours), [x], v);
        const [hvRef] = hessianVector(lossWith(textbook), [x], v);
        expect(relDiff(hv, hvRef)).toBeLessThan(1e-5);
        expect(relDiff(hv, centralDifference(lossWith(textbook), [x], v, 1e-2)[0])).toBeLessThan(2e-3);
        // Third order: ∇⟨∇⟨∇L, v⟩, v⟩.
        const third = (f: (u: tf.Tensor) => tf.Tensor) =>
          tf.grad((u: tf.Tensor) => tf.sum(tf.mul(hessianVector(lossWith(f), [u], v)[0], v)))(x);
        expect(relDiff(third(ours), third(textbook))).toBeLessThan(1e-5);
      });
    });

    it('gives exact mixed second derivatives through a convolution (input and filter)', () => {
      tf.tidy(() => {
        const rng = new Random(22);
        const x = rng.normalTensor([2, 5, 5, 3]);
        const w = rng.normalTensor([3, 3, 3, 4]);
        const v = rng.normalTensor(w.shape);
        const lossWith =
          (f: (u: tf.Tensor) => tf.Tensor): Loss =>
          (filter, input) =>
            tf.mul(
              tf.sum(tf.pow(f(conv2d(input as tf.Tensor4D, filter as tf.Tensor4D)), 3)),
              1 / 3,
            ) as tf.Scalar;
        const run = (f: (u: tf.Tensor) => tf.Tensor, s: ConvolutionGradientStrategy) =>
          using(s, () => hessianVector(lossWith(f), [w, x], v));
        const [hw, hx] = run((u) => leakyRelu(u, alpha), strategy);
        const [hwRef, hxRef] = run(textbook, 'js');
        expect(relDiff(hw, hwRef)).toBeLessThan(1e-4);
        expect(relDiff(hx, hxRef)).toBeLessThan(1e-4);
      });
    });
  });

  describe.each(FAST)(
    'batchNorm, broadcasting formulation (%s strategy) against the matrix-product one',
    (strategy) => {
      const rng = new Random(31);
      const shape = [4, 3, 2, 5];
      const c = shape[3];
      const make = () => ({
        // Channel means far from zero (a few standard deviations), as after a convolution without bias.
        x: tf.add(tf.mul(rng.normalTensor(shape), 2), rng.normalTensor([c], 0, 5)),
        gamma: rng.normalTensor([c], 1, 0.5),
        beta: rng.normalTensor([c]),
        r: rng.normalTensor(shape),
        q: rng.uniformTensor(shape, 0.5, 1.5),
      });
      /** L(x, γ, β) = Σ r·y + ½ Σ q·y², y = BN(x) in training mode with 2 groups. */
      const trainingLoss =
        (r: tf.Tensor, q: tf.Tensor): Loss =>
        (x, gamma, beta) => {
          const y = batchNorm(x as tf.Tensor4D, {
            gamma: gamma as tf.Tensor1D,
            beta: beta as tf.Tensor1D,
            epsilon: 1e-3,
            training: true,
            groups: 2,
          }).y;
          return tf.add(tf.sum(tf.mul(r, y)), tf.mul(tf.sum(tf.mul(q, tf.square(y))), 0.5)) as tf.Scalar;
        };

      it('training mode: the same outputs, statistics and first derivatives in x, γ, β', () => {
        tf.tidy(() => {
          const { x, gamma, beta, r, q } = make();
          const args = {
            gamma: gamma as tf.Tensor1D,
            beta: beta as tf.Tensor1D,
            epsilon: 1e-3,
            training: true,
            groups: 2,
          };
          const fast = using(strategy, () => batchNorm(x as tf.Tensor4D, args));
          const ref = using('js', () => batchNorm(x as tf.Tensor4D, args));
          expect(maxAbsDiff(fast.y, ref.y)).toBeLessThan(2e-5);
          expect(relDiff(fast.mean as tf.Tensor, ref.mean as tf.Tensor)).toBeLessThan(1e-5);
          expect(relDiff(fast.variance as tf.Tensor, ref.variance as tf.Tensor)).toBeLessThan(1e-5);
          expect(fast.count).toBe(ref.count);
          const loss = trainingLoss(r, q);
          const g = using(strategy, () => tf.grads(loss)([x, gamma, beta]));
          const gRef = using('js', () => tf.grads(loss)([x, gamma, beta]));
          g.forEach((gi, i) => expect(relDiff(gi, gRef[i])).toBeLessThan(1e-4));
          // Σ over each group of ∂L/∂x is zero (the output does not depend on a shift of a group's inputs).
          const sums = tf.sum(tf.reshape(g[0], [2, -1, c]), 1);
          expect(tf.max(tf.abs(sums)).dataSync()[0]).toBeLessThan(1e-4 * tf.max(tf.abs(g[0])).dataSync()[0]);
        });
      });

      it('training mode: the same Hessian-vector products in x (and mixed in γ, β), matching central differences', () => {
        tf.tidy(() => {
          const { x, gamma, beta, r, q } = make();
          const v = rng.normalTensor(shape);
          const loss = trainingLoss(r, q);
          const hv = using(strategy, () => hessianVector(loss, [x, gamma, beta], v));
          const hvRef = using('js', () => hessianVector(loss, [x, gamma, beta], v));
          const fd = using('js', () => centralDifference(loss, [x, gamma, beta], v, 1e-2));
          hv.forEach((h, i) => {
            expect(relDiff(h, hvRef[i])).toBeLessThan(1e-4);
            expect(relDiff(h, fd[i])).toBeLessThan(2e-3);
          });
          // Third order: ∇ₓ⟨∇ₓ⟨∇ₓL, v⟩, v⟩.
          const third = () =>
            tf.grad((u: tf.Tensor) => tf.sum(tf.mul(hessianVector(loss, [u, gamma, beta], v)[0], v)))(x);
          expect(relDiff(using(strategy, third), using('js', third))).toBeLessThan(1e-3);
        });
      });

      it('evaluation mode: the same outputs, first derivatives (x, γ, β, running statistics) and second in γ', () => {
        tf.tidy(() => {
          const { x, gamma, beta, r, q } = make();
          const runningMean = rng.normalTensor([c], 0, 3);
          const runningVariance = rng.uniformTensor([c], 0.5, 4);
          const loss: Loss = (g, xs, b, mu, s2) => {
            const y = batchNorm(xs as tf.Tensor4D, {
              gamma: g as tf.Tensor1D,
              beta: b as tf.Tensor1D,
              epsilon: 1e-3,
              training: false,
              runningMean: mu as tf.Tensor1D,
              runningVariance: s2 as tf.Tensor1D,
            }).y;
            return tf.add(tf.sum(tf.mul(r, y)), tf.mul(tf.sum(tf.mul(q, tf.square(y))), 0.5)) as tf.Scalar;
          };
          const args = [gamma, x, beta, runningMean, runningVariance];
          const value = (s: ConvolutionGradientStrategy) => using(s, () => loss(...args).dataSync()[0]);
          expect(Math.abs(value(strategy) - value('js'))).toBeLessThan(1e-5 * Math.abs(value('js')));
          const g = using(strategy, () => tf.grads(loss)(args));
          const gRef = using('js', () => tf.grads(loss)(args));
          g.forEach((gi, i) => expect(relDiff(gi, gRef[i])).toBeLessThan(1e-4));
          const v = rng.normalTensor([c]);
          const hv = using(strategy, () => hessianVector(loss, args, v));
          const hvRef = using('js', () => hessianVector(loss, args, v));
          const fd = using('js', () => centralDifference(loss, args, v, 1e-2));
          hv.forEach((h, i) => {
            expect(relDiff(h, hvRef[i])).toBeLessThan(1e-4);
            expect(relDiff(h, fd[i])).toBeLessThan(2e-3);
          });
        });
      });
    },
  );

  (backend === BLAS_BACKEND_NAME ? describe : describe.skip)('batchNorm, fused kernels against the composite ops', () => {
    const rng = new Random(51);
    const shape = [6, 5, 3, 7];
    const c = shape[3];
    const make = () => ({
      x: tf.add(tf.mul(rng.normalTensor(shape), 2), rng.normalTensor([c], 0, 5)),
      gamma: rng.normalTensor([c], 1, 0.5),
      beta: rng.normalTensor([c]),
      r: rng.normalTensor(shape),
      q: rng.uniformTensor(shape, 0.5, 1.5),
    });
    /** Runs f on the native strategy with the fused kernels on or off. */
    const fused = <T>(on: boolean, f: () => T): T =>
      using('native', () => {
        setFusedBatchNorm(on);
        try {
          return f();
        } finally {
          setFusedBatchNorm(true);
        }
      });
    const lossOf =
      (r: tf.Tensor, q: tf.Tensor, training: boolean, extra: tf.Tensor[] = []): Loss =>
      (x, gamma, beta) => {
        const y = batchNorm(x as tf.Tensor4D, {
          gamma: gamma as tf.Tensor1D,
          beta: beta as tf.Tensor1D,
          epsilon: 1e-3,
          training,
          groups: training ? 3 : undefined,
          runningMean: extra[0] as tf.Tensor1D | undefined,
          runningVariance: extra[1] as tf.Tensor1D | undefined,
        }).y;
        return tf.add(tf.sum(tf.mul(r, y)), tf.mul(tf.sum(tf.mul(q, tf.square(y))), 0.5)) as tf.Scalar;
      };

    it('runs the fused kernels (and not the composite ops) forward and backward, batch norm and LeakyReLU', async () => {
      const { x, gamma, beta, r, q } = make();
      const loss = lossOf(r, q, true);
      const kernels = async (on: boolean) =>
        (await tf.profile(() => fused(on, () => tf.grads(loss)([x, gamma, beta])))).kernelNames;
      const on = await kernels(true);
      expect(on).toEqual(expect.arrayContaining(['BilevelChannelMoments', 'BilevelChannelSums', 'BilevelChannelAffine']));
      expect(on).not.toContain('SquaredDifference');
      const off = await kernels(false);
      expect(off).not.toContain('BilevelChannelAffine');
      expect(off).toContain('SquaredDifference');
      const leaky = async (on: boolean) =>
        (await tf.profile(() => fused(on, () => tf.grad((u: tf.Tensor) => tf.sum(leakyRelu(u, 0.1)))(x)))).kernelNames;
      const leakyOn = await leaky(true);
      expect(leakyOn).toEqual(expect.arrayContaining(['BilevelLeakyRelu', 'BilevelLeakyReluGrad']));
      expect(leakyOn).not.toContain('Step');
      expect(await leaky(false)).toContain('Step');
      tf.dispose([x, gamma, beta, r, q]);
    });

    it('training mode: same values, statistics, gradients, Hessian-vector products (x and γ directions), third order', () => {
      const before = tf.memory().numTensors;
      tf.tidy(() => {
        const { x, gamma, beta, r, q } = make();
        const args = { gamma: gamma as tf.Tensor1D, beta: beta as tf.Tensor1D, epsilon: 1e-3, training: true, groups: 3 };
        const a = fused(true, () => batchNorm(x as tf.Tensor4D, args));
        const b = fused(false, () => batchNorm(x as tf.Tensor4D, args));
        expect(maxAbsDiff(a.y, b.y)).toBeLessThan(1e-5);
        expect(relDiff(a.mean as tf.Tensor, b.mean as tf.Tensor)).toBeLessThan(1e-6);
        expect(relDiff(a.variance as tf.Tensor, b.variance as tf.Tensor)).toBeLessThan(1e-5);
        const bare = fused(true, () => batchNorm(x as tf.Tensor4D, { ...args, statistics: false }));
        expect(bare.mean).toBeUndefined();
        expect(maxAbsDiff(bare.y, a.y)).toBe(0);
        const loss = lossOf(r, q, true);
        const ts = [x, gamma, beta];
        const g = fused(true, () => tf.grads(loss)(ts));
        const gRef = fused(false, () => tf.grads(loss)(ts));
        g.forEach((gi, i) => expect(relDiff(gi, gRef[i])).toBeLessThan(1e-5));
        // Second order along x and, with γ first, along γ (mixed products into x and β).
        const vx = rng.normalTensor(shape);
        const vg = rng.normalTensor([c]);
        const gammaFirst: Loss = (gm, xs, bt) => loss(xs, gm, bt);
        for (const [l, list, v] of [
          [loss, ts, vx],
          [gammaFirst, [gamma, x, beta], vg],
        ] as [Loss, tf.Tensor[], tf.Tensor][]) {
          const hv = fused(true, () => hessianVector(l, list, v));
          const hvRef = fused(false, () => hessianVector(l, list, v));
          const fd = fused(false, () => centralDifference(l, list, v, 1e-2));
          hv.forEach((h, i) => {
            expect(relDiff(h, hvRef[i])).toBeLessThan(1e-4);
            expect(relDiff(h, fd[i])).toBeLessThan(3e-3);
          });
        }
        const third = () => tf.grad((u: tf.Tensor) => tf.sum(tf.mul(hessianVector(loss, [u, gamma, beta], vx)[0], vx)))(x);
        expect(relDiff(fused(true, third), fused(false, third))).toBeLessThan(1e-3);
      });
      expect(tf.memory().numTensors).toBe(before);
    });

    it('evaluation mode: same values and first and second derivatives (x, γ, β, running statistics)', () => {
      tf.tidy(() => {
        const { x, gamma, beta, r, q } = make();
        const mu = rng.normalTensor([c], 0, 3);
        const s2 = rng.uniformTensor([c], 0.5, 4);
        const loss: Loss = (g, xs, b, m, v) => lossOf(r, q, false, [m, v])(xs, g, b);
        const args = [gamma, x, beta, mu, s2];
        expect(Math.abs(fused(true, () => loss(...args).dataSync()[0]) - fused(false, () => loss(...args).dataSync()[0]))).toBeLessThan(
          1e-5 * Math.abs(fused(false, () => loss(...args).dataSync()[0])),
        );
        const g = fused(true, () => tf.grads(loss)(args));
        const gRef = fused(false, () => tf.grads(loss)(args));
        g.forEach((gi, i) => expect(relDiff(gi, gRef[i])).toBeLessThan(1e-5));
        const v = rng.normalTensor([c]);
        const hv = fused(true, () => hessianVector(loss, args, v));
        const hvRef = fused(false, () => hessianVector(loss, args, v));
        hv.forEach((h, i) => expect(relDiff(h, hvRef[i])).toBeLessThan(1e-4));
      });
    });
  });

  describe('ResNet-12 through the fast layers', () => {
    const backbone = new ResNet12Backbone({ imageSize: 16, channels: 2, widths: [3, 4, 4, 5] });
    const ways = 3;

    function gradients(f: (p: TensorTree) => tf.Scalar, params: TensorTree): TensorTree {
      const names = treeNames(params);
      return treeFromTensors(
        names,
        tf.grads((...ts: tf.Tensor[]) => f(treeFromTensors(names, ts)))(names.map((n) => params[n])),
      );
    }

    /**
     * The inner loss of the few-shot problem's shape, g(W, θ) = ½‖φ_θ(images)·W − T‖² + Σ r·φ_θ(images), and
     * its mixed product ∇_θ⟨∇_W g, V⟩ (max-pooling's gradient has no gradient in tfjs, so this is the order
     * of derivatives the backbones see).
     */
    function innerLoss(images: tf.Tensor4D, targets: tf.Tensor, r: tf.Tensor) {
      return (params: TensorTree, head: tf.Tensor): tf.Scalar => {
        const features = backbone.forward(params, images, { training: true, groups: 2 });
        const residual = tf.sub(tf.matMul(features, head), targets);
        return tf.add(tf.mul(tf.sum(tf.square(residual)), 0.5), tf.sum(tf.mul(features, r))) as tf.Scalar;
      };
    }

    function mixedProduct(
      g: (p: TensorTree, w: tf.Tensor) => tf.Scalar,
      params: TensorTree,
      head: tf.Tensor,
      v: tf.Tensor,
    ) {
      return gradients(
        (p) => tf.sum(tf.mul(tf.grad((w: tf.Tensor) => g(p, w))(head), v)) as tf.Scalar,
        params,
      );
    }

    it('gives the features, gradients and mixed second derivatives of the matrix-product layers', () => {
      const rng = new Random(41);
      const params = backbone.initialParameters(rng);
      tf.tidy(() => {
        const images = rng.uniformTensor([4, 16, 16, 2]) as tf.Tensor4D;
        const head = rng.normalTensor([backbone.featureDimension, ways]);
        const targets = rng.normalTensor([4, ways]);
        const r = rng.normalTensor([4, backbone.featureDimension]);
        const v = rng.normalTensor(head.shape);
        const g = innerLoss(images, targets, r);
        for (const strategy of FAST) {
          const features = using(strategy, () =>
            backbone.forward(params, images, { training: true, groups: 2 }),
          );
          const featuresRef = using('js', () =>
            backbone.forward(params, images, { training: true, groups: 2 }),
          );
          expect(relDiff(features, featuresRef)).toBeLessThan(1e-4);
          const grad = using(strategy, () => gradients((p) => g(p, head), params));
          const gradRef = using('js', () => gradients((p) => g(p, head), params));
          const mixed = using(strategy, () => mixedProduct(g, params, head, v));
          const mixedRef = using('js', () => mixedProduct(g, params, head, v));
          for (const name of treeNames(params)) {
            expect([name, relDiff(grad[name], gradRef[name])]).toEqual([name, expect.closeTo(0, 3)]);
            expect([name, relDiff(mixed[name], mixedRef[name])]).toEqual([name, expect.closeTo(0, 3)]);
          }
        }
        // Evaluation mode with running statistics.
        const buffers = backbone.initialBuffers();
        const evalFast = using('native', () =>
          backbone.forward(params, images, { training: false, buffers }),
        );
        const evalRef = using('js', () => backbone.forward(params, images, { training: false, buffers }));
        expect(relDiff(evalFast, evalRef)).toBeLessThan(1e-4);
      });
      treeDispose(params);
    });

    it('keeps the tensor count flat over repeated forward and backward passes (first and mixed second order)', () => {
      const rng = new Random(42);
      const params = backbone.initialParameters(rng);
      const images = rng.uniformTensor([4, 16, 16, 2]) as tf.Tensor4D;
      const head = rng.normalTensor([backbone.featureDimension, ways]);
      const targets = rng.normalTensor([4, ways]);
      const r = rng.normalTensor([4, backbone.featureDimension]);
      const g = innerLoss(images, targets, r);
      const names = treeNames(params);
      const counts: number[] = [];
      for (const strategy of [
        'native',
        'native',
        'native',
        'xnnpack',
        'js',
      ] as ConvolutionGradientStrategy[]) {
        using(strategy, () => {
          const { value, grads } = tf.valueAndGrads((...ts: tf.Tensor[]) =>
            g(treeFromTensors(names, ts), head),
          )(names.map((n) => params[n]));
          tf.dispose([value, ...grads]);
          treeDispose(mixedProduct(g, params, head, head));
        });
        counts.push(tf.memory().numTensors);
      }
      expect(counts).toEqual(counts.map(() => counts[0]));
      tf.dispose([images, head, targets, r]);
      treeDispose(params);
    });
  });
});
