import * as tf from '@tensorflow/tfjs-core';
import { BLAS_BACKEND_NAME, blasInfo, isBlasAvailable, registerBlasBackend, setBlasThreads } from './index';
import {
  compareBackends,
  firstMismatch,
  operand,
  randInt,
  runOn,
  seededRandom,
  type Operand,
} from './test-utils/compare';

const native = isBlasAvailable();
if (!native)
  console.warn(`skipped the native pooling kernel tests: ${blasInfo().reason} (${blasInfo().hint})`);

(native ? describe : describe.skip)('cpu-blas max pooling against the JS cpu backend', () => {
  beforeAll(() => {
    expect(registerBlasBackend()).toBe(true);
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('maxPool and its gradient on random windows, strides and paddings', async () => {
    const rand = seededRandom(41);
    for (let trial = 0; trial < 20; trial++) {
      const f: [number, number] = [randInt(rand, 1, 3), randInt(rand, 1, 3)];
      const s: [number, number] = [randInt(rand, 1, 3), randInt(rand, 1, 3)];
      const pad = rand() < 0.5 ? 'same' : 'valid';
      const shape = [
        randInt(rand, 1, 3),
        randInt(rand, f[0], 9),
        randInt(rand, f[1], 9),
        randInt(rand, 1, 5),
      ];
      const ops = [operand(rand, shape)];
      const fwdBwd = (x: tf.Tensor) => {
        const y = tf.maxPool(x as tf.Tensor4D, f, s, pad);
        const w = tf.reshape(tf.range(0, y.size, 1, 'float32'), y.shape);
        const dx = tf.grad((p: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(p as tf.Tensor4D, f, s, pad), w)))(x);
        return [y, dx];
      };
      const err = await compareBackends(BLAS_BACKEND_NAME, 'cpu', ops, fwdBwd);
      expect({ shape, f, s, pad, agrees: err < 1e-6 }).toEqual({ shape, f, s, pad, agrees: true });
    }
  });

  it.each([
    ['2×2, stride 2 (the ResNet-12 pools: the gradient split by output rows)', 2, 2, 'valid'],
    ['3×3, stride 2, same padding (overlapping windows: the gradient split by images)', 3, 2, 'same'],
    ['3×3, stride 1 (overlapping rows and columns)', 3, 1, 'same'],
  ] as [string, number, number, 'same' | 'valid'][])(
    'large inputs split over two threads agree exactly with the JS kernel: %s',
    async (_name, f, s, pad) => {
      const threads = blasInfo().threads;
      setBlasThreads(2);
      try {
        const rand = seededRandom(43 + f * 10 + s);
        // 4 images of 22×20 with 40 channels: every pass has far more than the 2 × 32,768 window visits that
        // the pool splits; ties (rounded values) exercise the first-max rule in each thread's share.
        const x: Operand = {
          values: operand(rand, [4, 22, 20, 40]).values.map((v) => Math.round(v * 4) / 4),
          shape: [4, 22, 20, 40],
        };
        const fn = (t: tf.Tensor) => {
          const y = tf.maxPool(t as tf.Tensor4D, f, s, pad);
          const w = tf.reshape(tf.range(0, y.size, 1, 'float32'), y.shape);
          return [
            y,
            tf.grad((p: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(p as tf.Tensor4D, f, s, pad), w)))(t),
          ];
        };
        const got = await runOn(BLAS_BACKEND_NAME, [x], fn);
        const want = await runOn('cpu', [x], fn);
        expect(blasInfo().threads).toBe(2);
        got.forEach((g, j) =>
          expect({ output: j, mismatch: firstMismatch(g.values, want[j].values, 0) }).toEqual({
            output: j,
            mismatch: -1,
          }),
        );
      } finally {
        setBlasThreads(Math.max(1, threads));
      }
    },
  );

  it('non-overlapping windows (stride ≥ window: the gradient’s band path) with gaps, leftovers, padding and special values', async () => {
    const rand = seededRandom(47);
    let cases = 0;
    for (const [f, st] of [
      [
        [2, 2],
        [2, 2],
      ],
      [
        [2, 2],
        [3, 2],
      ],
      [
        [1, 2],
        [2, 3],
      ],
      [
        [3, 3],
        [3, 3],
      ],
      [
        [2, 3],
        [4, 3],
      ],
    ] as [[number, number], [number, number]][]) {
      for (const pad of ['same', 'valid'] as const) {
        const shape = [2, randInt(rand, f[0], 11), randInt(rand, f[1], 11), randInt(rand, 1, 19)];
        const x = operand(rand, shape);
        // Ties, NaN and -Infinity among the inputs (NaN never wins; a window of -Infinity passes nothing).
        for (let i = 0; i < x.values.length; i++) {
          const u = rand();
          if (u < 0.05) x.values[i] = NaN;
          else if (u < 0.1) x.values[i] = -Infinity;
          else if (u < 0.3) x.values[i] = Math.round(x.values[i]);
        }
        const fn = (t: tf.Tensor) => {
          // A disposed array of x's size filled with 7s: the backend hands it out again (the gradient's dx
          // must then be fully written, zeros included).
          tf.mul(tf.onesLike(t), 7).dispose();
          const y = tf.maxPool(t as tf.Tensor4D, f, st, pad);
          const w = tf.reshape(tf.range(1, y.size + 1, 1, 'float32'), y.shape);
          return [
            y,
            tf.grad((p: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(p as tf.Tensor4D, f, st, pad), w)))(t),
          ];
        };
        const got = await runOn(BLAS_BACKEND_NAME, [x], fn);
        const want = await runOn('cpu', [x], fn);
        got.forEach((g, j) =>
          expect({
            f,
            st,
            pad,
            shape,
            output: j,
            mismatch: firstMismatch(g.values, want[j].values, 0),
          }).toEqual({
            f,
            st,
            pad,
            shape,
            output: j,
            mismatch: -1,
          }),
        );
        cases++;
      }
    }
    expect(cases).toBe(10);
  });

  it('ties go to the first max pixel, and windows of -Infinity pass no gradient, as in the JS kernel', async () => {
    const ops: Operand[] = [
      { values: new Float32Array(2 * 4 * 4 * 2).fill(1), shape: [2, 4, 4, 2] },
      { values: new Float32Array(1 * 3 * 3 * 1).fill(-Infinity), shape: [1, 3, 3, 1] },
    ];
    for (const [i, pad] of [
      [0, 'valid'],
      [0, 'same'],
      [1, 'same'],
    ] as [number, 'same' | 'valid'][]) {
      const fn = (x: tf.Tensor) => [
        tf.maxPool(x as tf.Tensor4D, 3, 2, pad),
        tf.grad((p: tf.Tensor) => tf.sum(tf.maxPool(p as tf.Tensor4D, 3, 2, pad)))(x),
      ];
      const got = await runOn(BLAS_BACKEND_NAME, [ops[i]], fn);
      const want = await runOn('cpu', [ops[i]], fn);
      got.forEach((g, j) => expect(firstMismatch(g.values, want[j].values, 0)).toBe(-1));
    }
  });
});
