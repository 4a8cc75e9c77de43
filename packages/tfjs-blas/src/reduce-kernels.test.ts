import * as tf from '@tensorflow/tfjs-core';
import { BLAS_BACKEND_NAME, blasInfo, isBlasAvailable, reductionLayout, registerBlasBackend } from './index';
import { firstMismatch, operand, randInt, runOn, seededRandom, specialValues } from './test-utils/compare';

describe('reductionLayout', () => {
  it('drops size-1 dims and merges neighbours with the same flag', () => {
    expect(reductionLayout([8, 5, 5, 16], [0, 1, 2])).toEqual({ shape: [200, 16], reduced: [1, 0] });
    expect(reductionLayout([4, 1, 6], [2])).toEqual({ shape: [4, 6], reduced: [0, 1] });
    expect(reductionLayout([2, 3, 4, 5], [1, 3])).toEqual({ shape: [2, 3, 4, 5], reduced: [0, 1, 0, 1] });
    expect(reductionLayout([1, 1], [0])).toEqual({ shape: [], reduced: [] });
  });
});

const native = isBlasAvailable();
if (!native)
  console.warn(`skipped the native reduction kernel tests: ${blasInfo().reason} (${blasInfo().hint})`);

(native ? describe : describe.skip)('cpu-blas reductions against the JS cpu backend', () => {
  beforeAll(() => {
    expect(registerBlasBackend()).toBe(true);
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  const reductions: [string, (x: tf.Tensor, axes: number[], keepDims: boolean) => tf.Tensor][] = [
    ['sum', (x, a, k) => tf.sum(x, a, k)],
    ['mean', (x, a, k) => tf.mean(x, a, k)],
    ['max', (x, a, k) => tf.max(x, a, k)],
    ['min', (x, a, k) => tf.min(x, a, k)],
  ];

  it.each(reductions)(
    '%s over random axes of random shapes (keepDims, negative axes) agrees',
    async (name, op) => {
      const rand = seededRandom(name.length * 31337);
      for (let trial = 0; trial < 25; trial++) {
        const rank = randInt(rand, 1, 5);
        const shape = Array.from({ length: rank }, () => randInt(rand, 1, 6));
        const axes = shape.map((_, d) => d).filter(() => rand() < 0.5);
        if (axes.length === 0) axes.push(randInt(rand, 0, rank - 1));
        const signed = axes.map((a) => (rand() < 0.3 ? a - rank : a));
        const keepDims = rand() < 0.5;
        const ops = [operand(rand, shape)];
        const [got] = await runOn(BLAS_BACKEND_NAME, ops, (x) => op(x, signed, keepDims));
        const [want] = await runOn('cpu', ops, (x) => op(x, signed, keepDims));
        expect({ shape, axes: signed, keepDims, outShape: got.shape }).toEqual({
          shape,
          axes: signed,
          keepDims,
          outShape: want.shape,
        });
        expect({ shape, axes: signed, at: firstMismatch(got.values, want.values, 1e-5) }).toEqual({
          shape,
          axes: signed,
          at: -1,
        });
      }
    },
  );

  it.each(reductions)('%s with NaN and infinities behaves like the JS kernel', async (name, op) => {
    const rand = seededRandom(name.length * 7);
    const ops = [{ values: specialValues(rand, 6 * 40), shape: [6, 40] }];
    for (const axes of [[0], [1], [0, 1]]) {
      const [got] = await runOn(BLAS_BACKEND_NAME, ops, (x) => op(x, axes, false));
      const [want] = await runOn('cpu', ops, (x) => op(x, axes, false));
      expect(firstMismatch(got.values, want.values, 1e-5)).toBe(-1);
    }
  });

  it.each(reductions)(
    '%s of large tensors (split over the worker threads, per-part sums added in order) agrees',
    async (name, op) => {
      const rand = seededRandom(name.length * 101);
      const cases: [number[], number[]][] = [
        [[2100, 64], [0]],
        [
          [40, 70, 50],
          [0, 1],
        ],
        [[3, 50000], [1]],
        [[50000, 3], [0]],
        [
          [30, 80, 60],
          [0, 2],
        ],
      ];
      for (const [shape, axes] of cases) {
        const size = shape.reduce((a, b) => a * b, 1);
        // Special values in the first case: NaN and infinities must survive the split.
        const ops = [shape[0] === 2100 ? { values: specialValues(rand, size), shape } : operand(rand, shape)];
        const [got] = await runOn(BLAS_BACKEND_NAME, ops, (x) => op(x, axes, false));
        const [want] = await runOn('cpu', ops, (x) => op(x, axes, false));
        expect({ shape, axes, at: firstMismatch(got.values, want.values, 1e-5) }).toEqual({
          shape,
          axes,
          at: -1,
        });
      }
    },
  );

  it('large reductions keep double-precision accuracy; int32 sums use the JS kernel', async () => {
    await tf.setBackend(BLAS_BACKEND_NAME);
    const n = 1 << 20;
    const s = tf.sum(tf.fill([n], 0.1));
    // Σ of 2^20 float32(0.1) in double, rounded to float32.
    expect(s.dataSync()[0]).toBe(Math.fround(n * Math.fround(0.1)));
    const i = tf.sum(tf.tensor1d([1, 2, 3], 'int32'));
    expect(i.dtype).toBe('int32');
    expect(i.dataSync()[0]).toBe(6);
    tf.dispose([s, i]);
  });
});
