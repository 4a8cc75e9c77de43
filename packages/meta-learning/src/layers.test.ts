import * as tf from '@tensorflow/tfjs-core';
import { Random } from '@bilevel/core';
import { dropBlock } from './drop-block';
import {
  batchNorm,
  conv2d,
  conv2dPadded,
  type ConvolutionGradientStrategy,
  globalAveragePool,
  leakyRelu,
  setConvolutionGradientStrategy,
} from './layers';

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

function maxAbs(a: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(a)).dataSync()[0]);
}

describe.each(['js', 'xnnpack', 'native'] as ConvolutionGradientStrategy[])('conv2d, gradients by the %s strategy', (strategy) => {
  beforeAll(() => setConvolutionGradientStrategy(strategy));
  afterAll(() => setConvolutionGradientStrategy('auto'));
  const rng = new Random(3);
  const x = rng.normalTensor([3, 7, 6, 4]) as tf.Tensor4D;
  const w = rng.normalTensor([3, 3, 4, 5]) as tf.Tensor4D;
  const w1 = rng.normalTensor([1, 1, 4, 5]) as tf.Tensor4D;
  const dy = rng.normalTensor([3, 7, 6, 5]);

  it('matches tf.conv2d in value', () => {
    tf.tidy(() => {
      expect(maxAbsDiff(conv2d(x, w), tf.conv2d(x, w, 1, 'same'))).toBeLessThan(1e-5);
      expect(maxAbsDiff(conv2d(x, w1), tf.conv2d(x, w1, 1, 'same'))).toBeLessThan(1e-5);
    });
  });

  it("has the gradients of tfjs' own conv2d kernels (input and filter, 3×3 and 1×1)", () => {
    tf.tidy(() => {
      for (const f of [w, w1]) {
        const ours = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(conv2d(a as tf.Tensor4D, b as tf.Tensor4D), dy)),
        )([x, f]);
        const ref = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same'), dy)),
        )([x, f]);
        expect(maxAbsDiff(ours[0], ref[0]) / maxAbs(ref[0])).toBeLessThan(1e-5);
        expect(maxAbsDiff(ours[1], ref[1]) / maxAbs(ref[1])).toBeLessThan(1e-5);
      }
    });
  });

  it('handles padding other than "same" (the ops its gradients use), by both filter-gradient methods', () => {
    tf.tidy(() => {
      // Padding 0 ('valid') and 2 with a 3×3 filter; a wide filter on a small input takes the im2col path,
      // a small filter on a large input the convolution path; a non-square filter (the gradient ops use them).
      for (const [pad, xs, ws] of [
        [0, x, w],
        [2, x, w],
        [1, x, rng.normalTensor([3, 5, 4, 2]) as tf.Tensor4D],
        [1, rng.normalTensor([2, 3, 4, 6]) as tf.Tensor4D, rng.normalTensor([3, 3, 6, 40]) as tf.Tensor4D],
      ] as const) {
        const p: [[number, number], [number, number], [number, number], [number, number]] = [
          [0, 0],
          [pad, pad],
          [pad, pad],
          [0, 0],
        ];
        const out = tf.conv2d(xs, ws, 1, p);
        const dyp = rng.normalTensor(out.shape);
        const ours = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(conv2dPadded(a as tf.Tensor4D, b as tf.Tensor4D, pad), dyp)),
        )([xs, ws]);
        const ref = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, p), dyp)),
        )([xs, ws]);
        expect(maxAbsDiff(conv2dPadded(xs, ws, pad), out)).toBeLessThan(1e-4);
        expect(maxAbsDiff(ours[0], ref[0]) / maxAbs(ref[0])).toBeLessThan(1e-5);
        expect(maxAbsDiff(ours[1], ref[1]) / maxAbs(ref[1])).toBeLessThan(1e-5);
      }
      expect(() => conv2dPadded(x, w, 3)).toThrow(/padding must be an integer in \[0, 2\]/);
    });
  });

  it('gives exact second derivatives: the Hessian-vector product in the filter matches central differences', () => {
    tf.tidy(() => {
      const v = rng.normalTensor(w.shape) as tf.Tensor4D;
      // L(W) = Σ tanh-free nonlinearity: ¼ Σ conv(x, W)⁴ has a W-dependent Hessian.
      const loss = (b: tf.Tensor) => tf.mul(tf.sum(tf.pow(conv2d(x, b as tf.Tensor4D), 4)), 0.25);
      const refLoss = (b: tf.Tensor) => tf.mul(tf.sum(tf.pow(tf.conv2d(x, b as tf.Tensor4D, 1, 'same'), 4)), 0.25);
      const hv = tf.grad((b: tf.Tensor) => tf.sum(tf.mul(tf.grad(loss)(b), v)))(w);
      const eps = 1e-2;
      const gPlus = tf.grad(refLoss)(tf.add(w, tf.mul(v, eps)));
      const gMinus = tf.grad(refLoss)(tf.sub(w, tf.mul(v, eps)));
      const fd = tf.div(tf.sub(gPlus, gMinus), 2 * eps);
      expect(maxAbsDiff(hv, fd) / maxAbs(fd)).toBeLessThan(2e-3);
      // Mixed second derivative ∂²L/∂x∂W · v, through the input gradient.
      const mixed = tf.grad((a: tf.Tensor) =>
        tf.sum(tf.mul(tf.grad((b: tf.Tensor) => tf.mul(tf.sum(tf.pow(conv2d(a as tf.Tensor4D, b as tf.Tensor4D), 4)), 0.25))(w), v)),
      )(x);
      const gxPlus = tf.grad((a: tf.Tensor) => refLoss2(a, tf.add(w, tf.mul(v, eps)) as tf.Tensor4D))(x);
      const gxMinus = tf.grad((a: tf.Tensor) => refLoss2(a, tf.sub(w, tf.mul(v, eps)) as tf.Tensor4D))(x);
      const fdMixed = tf.div(tf.sub(gxPlus, gxMinus), 2 * eps);
      expect(maxAbsDiff(mixed, fdMixed) / maxAbs(fdMixed)).toBeLessThan(2e-3);
    });
    function refLoss2(a: tf.Tensor, b: tf.Tensor4D): tf.Scalar {
      return tf.mul(tf.sum(tf.pow(tf.conv2d(a as tf.Tensor4D, b, 1, 'same'), 4)), 0.25) as tf.Scalar;
    }
  });

  it('computes only the gradients that are asked for (no input gradient for a data input, no filter gradient for a fixed filter)', async () => {
    const kernelsOf = async (f: () => unknown) =>
      (await tf.profile(() => tf.tidy(f as () => void))).kernels.map((k) => k.name);
    const loss = (xs: tf.Tensor, ws: tf.Tensor) => tf.sum(tf.mul(conv2d(xs as tf.Tensor4D, ws as tf.Tensor4D), dy));
    const both = await kernelsOf(() => tf.grads(loss)([x, w]));
    const filterOnly = await kernelsOf(() => tf.grad((ws: tf.Tensor) => loss(x, ws))(w));
    const inputOnly = await kernelsOf(() => tf.grad((xs: tf.Tensor) => loss(xs, w))(x));
    // Computed eagerly, either gradient alone would launch every kernel of both.
    expect(filterOnly.length).toBeLessThan(both.length);
    expect(inputOnly.length).toBeLessThan(both.length);
    // The input gradient is a transposed convolution (a flipped-filter convolution on wasm's strategy).
    const inputKernel = strategy === 'xnnpack' ? 'Reverse' : 'Conv2DBackpropInput';
    expect(both).toContain(inputKernel);
    expect(inputOnly).toContain(inputKernel);
    expect(filterOnly).not.toContain(inputKernel);
    const gw = tf.grad((ws: tf.Tensor) => loss(x, ws))(w);
    const gwBoth = tf.grads(loss)([x, w])[1];
    expect(maxAbsDiff(gw, gwBoth)).toBe(0);
    tf.dispose([gw, gwBoth]);
  });

  it('refuses even kernels and channel mismatches', () => {
    tf.tidy(() => {
      expect(() => conv2d(x, tf.zeros([2, 2, 4, 1]) as tf.Tensor4D)).toThrow(/square with an odd size/);
      expect(() => conv2d(x, tf.zeros([3, 3, 2, 1]) as tf.Tensor4D)).toThrow(/4 channels/);
    });
  });
});

describe('batchNorm', () => {
  const rng = new Random(5);

  it('training mode: each channel of each group has mean β and standard deviation γ', () => {
    tf.tidy(() => {
      const x = tf.add(tf.mul(rng.normalTensor([6, 3, 3, 2]), 3), 7) as tf.Tensor4D;
      const gamma = tf.tensor1d([2, 0.5]);
      const beta = tf.tensor1d([-1, 4]);
      const { y, mean, variance } = batchNorm(x, { gamma, beta, epsilon: 1e-5, training: true, groups: 2 });
      const data = y.arraySync();
      for (let g = 0; g < 2; g++) {
        for (let c = 0; c < 2; c++) {
          const vals: number[] = [];
          for (let n = g * 3; n < g * 3 + 3; n++) for (const row of data[n]) for (const px of row) vals.push(px[c]);
          const m = vals.reduce((s, v) => s + v, 0) / vals.length;
          const sd = Math.sqrt(vals.reduce((s, v) => s + (v - m) ** 2, 0) / vals.length);
          expect(m).toBeCloseTo([-1, 4][c], 4);
          expect(sd).toBeCloseTo([2, 0.5][c], 3);
        }
      }
      // Reported statistics: the per-group statistics averaged over the groups (float64 reference).
      const xs = x.arraySync();
      for (let c = 0; c < 2; c++) {
        let mSum = 0;
        let vSum = 0;
        for (let g = 0; g < 2; g++) {
          const vals: number[] = [];
          for (let n = g * 3; n < g * 3 + 3; n++) for (const row of xs[n]) for (const px of row) vals.push(px[c]);
          const m = vals.reduce((s, v) => s + v, 0) / vals.length;
          mSum += m;
          vSum += vals.reduce((s, v) => s + (v - m) ** 2, 0) / vals.length;
        }
        expect(mean?.dataSync()[c]).toBeCloseTo(mSum / 2, 3);
        expect(variance?.dataSync()[c]).toBeCloseTo(vSum / 2, 3);
      }
    });
  });

  it('training mode with groups equals normalizing each group on its own', () => {
    tf.tidy(() => {
      const x = rng.normalTensor([4, 2, 2, 3]) as tf.Tensor4D;
      const gamma = rng.normalTensor([3]) as tf.Tensor1D;
      const beta = rng.normalTensor([3]) as tf.Tensor1D;
      const together = batchNorm(x, { gamma, beta, epsilon: 1e-3, training: true, groups: 2 }).y;
      const [a, b] = tf.split(x, 2);
      const separate = tf.concat([
        batchNorm(a as tf.Tensor4D, { gamma, beta, epsilon: 1e-3, training: true }).y,
        batchNorm(b as tf.Tensor4D, { gamma, beta, epsilon: 1e-3, training: true }).y,
      ]);
      expect(maxAbsDiff(together, separate)).toBeLessThan(1e-5);
      expect(() => batchNorm(x, { gamma, beta, epsilon: 1e-3, training: true, groups: 3 })).toThrow(/3 equal groups/);
    });
  });

  it('evaluation mode applies the running statistics: y = γ(x − μ)/√(σ² + ε) + β', () => {
    tf.tidy(() => {
      const x = rng.normalTensor([2, 2, 2, 2]) as tf.Tensor4D;
      const gamma = tf.tensor1d([1.5, -0.5]);
      const beta = tf.tensor1d([0.25, 2]);
      const runningMean = tf.tensor1d([0.3, -1]);
      const runningVariance = tf.tensor1d([4, 0.25]);
      const y = batchNorm(x, { gamma, beta, epsilon: 1e-5, training: false, runningMean, runningVariance }).y;
      const xv = x.dataSync();
      const yv = y.dataSync();
      const g = [1.5, -0.5];
      const bt = [0.25, 2];
      const mu = [0.3, -1];
      const v = [4, 0.25];
      for (let i = 0; i < xv.length; i++) {
        const c = i % 2;
        expect(yv[i]).toBeCloseTo((g[c] * (xv[i] - mu[c])) / Math.sqrt(v[c] + 1e-5) + bt[c], 4);
      }
      expect(() => batchNorm(x, { gamma, beta, epsilon: 1e-5, training: false })).toThrow(/running/);
    });
  });
});

describe('activations and pooling', () => {
  it('leakyRelu equals max(x, αx)', () => {
    tf.tidy(() => {
      const x = tf.tensor1d([-3, -0.5, 0, 0.25, 4]);
      expect(Array.from(leakyRelu(x, 0.1).dataSync())).toEqual(
        Array.from(x.dataSync()).map((v) => Math.fround(Math.max(v, 0.1 * v))).map((v) => expect.closeTo(v, 6)),
      );
    });
  });

  it('globalAveragePool averages each channel over the spatial axes', () => {
    tf.tidy(() => {
      const x = new Random(1).normalTensor([2, 3, 4, 5]) as tf.Tensor4D;
      expect(maxAbsDiff(globalAveragePool(x), tf.mean(x, [1, 2]))).toBeLessThan(1e-6);
    });
  });
});

describe('dropBlock', () => {
  it('drops whole b×b blocks, rescales the rest, and repeats itself for the same seed', () => {
    tf.tidy(() => {
      const x = tf.ones([2, 12, 12, 3]) as tf.Tensor4D;
      const a = dropBlock(x, { blockSize: 3, dropRate: 0.2, seed: 11 });
      const b = dropBlock(x, { blockSize: 3, dropRate: 0.2, seed: 11 });
      const c = dropBlock(x, { blockSize: 3, dropRate: 0.2, seed: 12 });
      expect(maxAbsDiff(a, b)).toBe(0);
      expect(maxAbsDiff(a, c)).toBeGreaterThan(0);
      const v = a.dataSync();
      const kept = Array.from(v).filter((u) => u > 0);
      const dropped = v.length - kept.length;
      // Kept values are all equal to total / kept, so the mean stays 1.
      expect(kept.every((u) => Math.abs(u - v.length / kept.length) < 1e-4)).toBe(true);
      expect(dropped / v.length).toBeGreaterThan(0.05);
      expect(dropped / v.length).toBeLessThan(0.4);
      // Every dropped unit lies in some fully dropped 3×3 block of its channel.
      const arr = a.arraySync();
      for (let n = 0; n < 2; n++) {
        for (let ch = 0; ch < 3; ch++) {
          for (let i = 0; i < 12; i++) {
            for (let j = 0; j < 12; j++) {
              if (arr[n][i][j][ch] !== 0) continue;
              let inBlock = false;
              for (let bi = Math.max(0, i - 2); bi <= Math.min(i, 9) && !inBlock; bi++) {
                for (let bj = Math.max(0, j - 2); bj <= Math.min(j, 9) && !inBlock; bj++) {
                  let all = true;
                  for (let di = 0; di < 3; di++) for (let dj = 0; dj < 3; dj++) all &&= arr[n][bi + di][bj + dj][ch] === 0;
                  inBlock = all;
                }
              }
              expect(inBlock).toBe(true);
            }
          }
        }
      }
      expect(dropBlock(x, { blockSize: 3, dropRate: 0, seed: 1 })).toBe(x);
    });
  });
});
