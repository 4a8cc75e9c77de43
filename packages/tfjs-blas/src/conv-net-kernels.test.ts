import * as tf from '@tensorflow/tfjs-core';
import {
  BLAS_BACKEND_NAME,
  CHANNEL_AFFINE_KERNEL,
  CHANNEL_MOMENTS_KERNEL,
  CHANNEL_SUMS_KERNEL,
  LEAKY_RELU_GRAD_KERNEL,
  LEAKY_RELU_KERNEL,
  blasInfo,
  isBlasAvailable,
  registerBlasBackend,
} from './index';
import {
  firstMismatch,
  operand,
  randInt,
  runOn,
  seededRandom,
  specialValues,
  type Operand,
} from './test-utils/compare';

const native = isBlasAvailable();
if (!native)
  console.warn(`skipped the native batch-norm kernel tests: ${blasInfo().reason} (${blasInfo().hint})`);

function run(name: string, inputs: Record<string, tf.Tensor>): tf.Tensor {
  return tf.engine().runKernel(name, inputs as unknown as tf.NamedTensorMap) as tf.Tensor;
}

/** The kernels on cpu-blas, and the same formulas from tfjs ops on the JS cpu backend. */
const moments = (x: tf.Tensor): tf.Tensor => run(CHANNEL_MOMENTS_KERNEL, { x });
const momentsRef = (x: tf.Tensor): tf.Tensor => {
  const mean = tf.mean(x, 1, true);
  return tf.stack([mean, tf.mean(tf.squaredDifference(x, mean), 1, true)]);
};
const sums = (u: tf.Tensor, v: tf.Tensor): tf.Tensor => run(CHANNEL_SUMS_KERNEL, { u, v });
const sumsRef = (u: tf.Tensor, v: tf.Tensor): tf.Tensor =>
  tf.stack([tf.sum(u, 1, true), tf.sum(tf.mul(u, v), 1, true)]);
const sumsSquares = (u: tf.Tensor): tf.Tensor => run(CHANNEL_SUMS_KERNEL, { u });
const sumsSquaresRef = (u: tf.Tensor): tf.Tensor =>
  tf.stack([tf.sum(u, 1, true), tf.sum(tf.square(u), 1, true)]);
const affine = (x: tf.Tensor, a: tf.Tensor, b: tf.Tensor): tf.Tensor =>
  run(CHANNEL_AFFINE_KERNEL, { x, a, b });
const affineRef = (x: tf.Tensor, a: tf.Tensor, b: tf.Tensor): tf.Tensor => tf.add(tf.mul(x, a), b);
const affine2 = (x: tf.Tensor, a: tf.Tensor, z: tf.Tensor, s: tf.Tensor, b: tf.Tensor): tf.Tensor =>
  run(CHANNEL_AFFINE_KERNEL, { x, a, z, s, b });
const affine2Ref = (x: tf.Tensor, a: tf.Tensor, z: tf.Tensor, s: tf.Tensor, b: tf.Tensor): tf.Tensor =>
  tf.add(tf.add(tf.mul(x, a), tf.mul(z, s)), b);

const ALPHA = 0.1;
const leaky = (x: tf.Tensor): tf.Tensor =>
  tf.engine().runKernel(LEAKY_RELU_KERNEL, { x }, { alpha: ALPHA }) as tf.Tensor;
const leakyRef = (x: tf.Tensor): tf.Tensor => tf.mul(x, tf.step(x, ALPHA));
const leakyGrad = (dy: tf.Tensor, x: tf.Tensor): tf.Tensor =>
  tf.engine().runKernel(LEAKY_RELU_GRAD_KERNEL, { dy, x }, { alpha: ALPHA }) as tf.Tensor;
const leakyGradRef = (dy: tf.Tensor, x: tf.Tensor): tf.Tensor => tf.mul(dy, tf.step(x, ALPHA));

type Case = [
  string,
  (...ts: tf.Tensor[]) => tf.Tensor,
  (...ts: tf.Tensor[]) => tf.Tensor,
  (g: number, m: number, c: number) => number[][],
];

const CASES: Case[] = [
  ['channelMoments', moments, momentsRef, (g, m, c) => [[g, m, c]]],
  [
    'channelSums (u, v)',
    sums,
    sumsRef,
    (g, m, c) => [
      [g, m, c],
      [g, m, c],
    ],
  ],
  ['channelSums (u alone: Σu²)', sumsSquares, sumsSquaresRef, (g, m, c) => [[g, m, c]]],
  [
    'channelAffine (x·a + b)',
    affine,
    affineRef,
    (g, m, c) => [
      [g, m, c],
      [g, 1, c],
      [g, 1, c],
    ],
  ],
  [
    'channelAffine (x·a + z·s + b)',
    affine2,
    affine2Ref,
    (g, m, c) => [
      [g, m, c],
      [g, 1, c],
      [g, m, c],
      [g, 1, c],
      [g, 1, c],
    ],
  ],
  ['leakyRelu', leaky, leakyRef, (g, m, c) => [[g, m, c]]],
  [
    'leakyReluGrad',
    leakyGrad,
    leakyGradRef,
    (g, m, c) => [
      [g, m, c],
      [g, m, c],
    ],
  ],
];

async function agree(
  f: (...ts: tf.Tensor[]) => tf.Tensor,
  ref: (...ts: tf.Tensor[]) => tf.Tensor,
  ops: Operand[],
  tol: number,
): Promise<{ shape: number[]; at: number }> {
  const [got] = await runOn(BLAS_BACKEND_NAME, ops, f);
  const [want] = await runOn('cpu', ops, ref);
  expect(got.shape).toEqual(want.shape);
  return { shape: ops[0].shape, at: firstMismatch(got.values, want.values, tol) };
}

(native ? describe : describe.skip)('cpu-blas batch-norm kernels against the JS cpu backend', () => {
  beforeAll(() => {
    expect(registerBlasBackend()).toBe(true);
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it.each(CASES)('%s: random odd shapes, one group and several, one row', async (name, f, ref, shapes) => {
    const rand = seededRandom(name.length * 977);
    const dims: [number, number, number][] = [
      [1, 1, 1],
      [1, 1, 7],
      [3, 1, 5],
    ];
    for (let t = 0; t < 12; t++) dims.push([randInt(rand, 1, 4), randInt(rand, 1, 37), randInt(rand, 1, 19)]);
    for (const [g, m, c] of dims) {
      const ops = shapes(g, m, c).map((s) => operand(rand, s));
      expect(await agree(f, ref, ops, 2e-6)).toEqual({ shape: [g, m, c], at: -1 });
    }
  });

  it.each(CASES)('%s: large inputs (split over the worker threads) agree', async (name, f, ref, shapes) => {
    const rand = seededRandom(name.length * 31);
    for (const [g, m, c] of [
      [1, 4201, 40],
      [3, 1531, 33],
      [2, 22000, 3],
    ] as [number, number, number][]) {
      const ops = shapes(g, m, c).map((s) => operand(rand, s));
      expect(await agree(f, ref, ops, 2e-5)).toEqual({ shape: [g, m, c], at: -1 });
    }
  });

  it.each(CASES)('%s: NaN and infinities give what the composite ops give', async (name, f, ref, shapes) => {
    const rand = seededRandom(name.length * 5);
    for (const [g, m, c] of [
      [2, 30, 6],
      [2, 1700, 40],
    ] as [number, number, number][]) {
      const ops = shapes(g, m, c).map((s) => ({
        values: specialValues(
          rand,
          s.reduce((p, d) => p * d, 1),
        ),
        shape: s,
      }));
      expect(await agree(f, ref, ops, 1e-5)).toEqual({ shape: [g, m, c], at: -1 });
    }
  });

  it.each(CASES)('%s: empty inputs (no rows, no channels, no groups)', async (_name, f, ref, shapes) => {
    const rand = seededRandom(3);
    for (const [g, m, c] of [
      [2, 0, 3],
      [2, 4, 0],
      [0, 4, 3],
    ] as [number, number, number][]) {
      const ops = shapes(g, m, c).map((s) => operand(rand, s));
      expect(await agree(f, ref, ops, 0)).toEqual({ shape: [g, m, c], at: -1 });
    }
  });

  it('channelMoments keeps the variance of data with a large mean (shifted sums)', async () => {
    const m = 5000;
    const values = new Float32Array(2 * m);
    for (let i = 0; i < m; i++) {
      values[2 * i] = 1e4 + (i % 2 === 0 ? 1 : -1);
      values[2 * i + 1] = -3 + 0.001 * (i % 2 === 0 ? 1 : -1);
    }
    // The exact moments of the float32 data, in double precision.
    const exact = [0, 1].map((k) => {
      let mean = 0;
      for (let i = 0; i < m; i++) mean += values[2 * i + k] / m;
      let variance = 0;
      for (let i = 0; i < m; i++) variance += (values[2 * i + k] - mean) ** 2 / m;
      return { mean, variance };
    });
    const [got] = await runOn(BLAS_BACKEND_NAME, [{ values, shape: [1, m, 2] }], moments);
    const want = [exact[0].mean, exact[1].mean, exact[0].variance, exact[1].variance];
    expect(firstMismatch(got.values, want, 1e-6)).toBe(-1);
    expect(Math.abs(got.values[3] - exact[1].variance)).toBeLessThan(1e-5 * exact[1].variance);
  });

  it('leakyRelu and its gradient are exactly x·step(x, α) and dy·step(x, α) (−0, tiny values, NaN, ±∞)', async () => {
    const rand = seededRandom(11);
    const edge = [-0, 0, 1e-40, -1e-40, 1e-30, -1e-30, NaN, Infinity, -Infinity, 3, -3];
    const n = 3 * 40000;
    const x = specialValues(rand, n);
    x.set(edge);
    const dy = specialValues(rand, n);
    const ops = [
      { values: dy, shape: [3, 200, 200] },
      { values: x, shape: [3, 200, 200] },
    ];
    for (const [f, ref, operands] of [
      [leaky, leakyRef, [ops[1]]],
      [leakyGrad, leakyGradRef, ops],
    ] as [(...ts: tf.Tensor[]) => tf.Tensor, (...ts: tf.Tensor[]) => tf.Tensor, Operand[]][]) {
      const [got] = await runOn(BLAS_BACKEND_NAME, operands, f);
      const [want] = await runOn('cpu', operands, ref);
      // Bit for bit (Object.is: NaN equals NaN, −0 differs from 0).
      expect(got.values.length).toBe(want.values.length);
      expect(got.values.findIndex((v, i) => !Object.is(v, want.values[i]))).toBe(-1);
    }
  });

  it('refuses other dtypes, ranks and mismatched shapes with a clear error', async () => {
    await tf.setBackend(BLAS_BACKEND_NAME);
    tf.tidy(() => {
      const x = tf.zeros([2, 3, 4]);
      const a = tf.zeros([2, 1, 4]);
      expect(() => run(CHANNEL_MOMENTS_KERNEL, { x: tf.zeros([6, 4]) })).toThrow(/rank 3/);
      expect(() => run(CHANNEL_MOMENTS_KERNEL, { x: tf.zeros([2, 3, 4], 'int32') })).toThrow(/float32/);
      expect(() => run(CHANNEL_SUMS_KERNEL, { u: x, v: tf.zeros([2, 3, 5]) })).toThrow(
        /v has shape \[2,3,5\]/,
      );
      expect(() => run(CHANNEL_AFFINE_KERNEL, { x, a: tf.zeros([1, 1, 4]), b: a })).toThrow(
        /a has shape \[1,1,4\]/,
      );
      expect(() => run(CHANNEL_AFFINE_KERNEL, { x, a, b: a, z: x })).toThrow(/z and s/);
      expect(() => run(LEAKY_RELU_KERNEL, { x })).toThrow(/alpha/);
      expect(() => tf.engine().runKernel(LEAKY_RELU_GRAD_KERNEL, { dy: x, x: a }, { alpha: 0.1 })).toThrow(
        /x has shape/,
      );
    });
  });
});
