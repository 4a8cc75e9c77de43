import * as tf from '@tensorflow/tfjs-core';
import { BLAS_BACKEND_NAME, blasInfo, isBlasAvailable, registerBlasBackend } from './index';
import { transposeLayout } from './transpose-kernel';
import {
  firstMismatch,
  randInt,
  runOn,
  seededRandom,
  specialValues,
  type Operand,
} from './test-utils/compare';

describe('transposeLayout', () => {
  it('drops size-1 dims and merges input dims that stay neighbours', () => {
    expect(transposeLayout([10, 5000, 10], [1, 0, 2])).toEqual({ shape: [10, 5000, 10], perm: [1, 0, 2] });
    expect(transposeLayout([2, 3, 4], [2, 0, 1])).toEqual({ shape: [6, 4], perm: [1, 0] });
    expect(transposeLayout([2, 3, 4], [0, 1, 2])).toEqual({ shape: [24], perm: [0] });
    expect(transposeLayout([2, 1, 4], [2, 1, 0])).toEqual({ shape: [2, 4], perm: [1, 0] });
    expect(transposeLayout([1, 1], [1, 0])).toEqual({ shape: [1], perm: [0] });
    expect(transposeLayout([2, 3, 4, 5], [0, 3, 1, 2])).toEqual({ shape: [2, 12, 5], perm: [0, 2, 1] });
  });
});

const native = isBlasAvailable();
if (!native) console.warn(`skipped the native transpose tests: ${blasInfo().reason} (${blasInfo().hint})`);

function randomPerm(rand: () => number, rank: number): number[] {
  const p = Array.from({ length: rank }, (_, i) => i);
  for (let i = rank - 1; i > 0; i--) {
    const j = randInt(rand, 0, i);
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

(native ? describe : describe.skip)('cpu-blas Transpose against the JS cpu backend', () => {
  beforeAll(() => {
    expect(registerBlasBackend()).toBe(true);
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('random shapes and permutations of rank 1 to 6 (odd sizes, size-1 dims, NaN and ±Infinity) agree exactly', async () => {
    const rand = seededRandom(2024);
    for (let trial = 0; trial < 60; trial++) {
      const rank = randInt(rand, 1, 6);
      const shape = Array.from({ length: rank }, () =>
        rand() < 0.2 ? 1 : randInt(rand, 1, rank > 3 ? 5 : 40),
      );
      const perm = randomPerm(rand, rank);
      const size = shape.reduce((a, b) => a * b, 1);
      const ops: Operand[] = [{ values: specialValues(rand, size), shape }];
      const [got] = await runOn(BLAS_BACKEND_NAME, ops, (x) => tf.transpose(x, perm));
      const [want] = await runOn('cpu', ops, (x) => tf.transpose(x, perm));
      expect(got.shape).toEqual(want.shape);
      expect({ shape, perm, at: firstMismatch(got.values, want.values, 0) }).toEqual({ shape, perm, at: -1 });
    }
  });

  it('large tiles: the batched-solve layouts [Q, n, k] ↔ [n, Q, k] and a 2-D transpose over several tiles', async () => {
    const rand = seededRandom(7);
    const cases: [number[], number[]][] = [
      [
        [11, 503, 10],
        [1, 0, 2],
      ],
      [
        [67, 129],
        [1, 0],
      ],
      [
        [3, 70, 33, 2],
        [2, 0, 3, 1],
      ],
    ];
    for (const [shape, perm] of cases) {
      const size = shape.reduce((a, b) => a * b, 1);
      const ops: Operand[] = [{ values: specialValues(rand, size), shape }];
      const [got] = await runOn(BLAS_BACKEND_NAME, ops, (x) => tf.transpose(x, perm));
      const [want] = await runOn('cpu', ops, (x) => tf.transpose(x, perm));
      expect(got.shape).toEqual(want.shape);
      expect(firstMismatch(got.values, want.values, 0)).toBe(-1);
    }
  });

  it('empty tensors and int32 tensors take the JS kernel', async () => {
    await tf.setBackend(BLAS_BACKEND_NAME);
    const e = tf.transpose(tf.zeros([0, 3]));
    expect(e.shape).toEqual([3, 0]);
    const i = tf.transpose(tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3], 'int32'));
    expect(i.dtype).toBe('int32');
    expect(Array.from(i.dataSync())).toEqual([1, 4, 2, 5, 3, 6]);
    tf.dispose([e, i]);
  });
});
