import * as tf from '@tensorflow/tfjs-core';
import {
  BLAS_BACKEND_NAME,
  blasInfo,
  broadcastBatchIndex,
  isBlasAvailable,
  registerBlasBackend,
  setBlasThreads,
  setMatVecMethod,
  type MatVecMethod,
} from './index';
import { SMALL_MATMUL_MACS } from './matmul-kernels';
import {
  compareBackends,
  firstMismatch,
  operand,
  randInt,
  runOn,
  seededRandom,
  type Operand,
} from './test-utils/compare';

const TOL = 1e-4;

describe('broadcastBatchIndex', () => {
  it('maps each broadcast batch entry to the operand matrix it reads (numpy rules)', () => {
    // out [2, 3]: an operand [2, 1] repeats along the second axis, one of [3] along the first.
    expect(Array.from(broadcastBatchIndex([2, 3], [2, 1]))).toEqual([0, 0, 0, 1, 1, 1]);
    expect(Array.from(broadcastBatchIndex([2, 3], [3]))).toEqual([0, 1, 2, 0, 1, 2]);
    expect(Array.from(broadcastBatchIndex([2, 3], [1, 3]))).toEqual([0, 1, 2, 0, 1, 2]);
    expect(Array.from(broadcastBatchIndex([2, 3], []))).toEqual([0, 0, 0, 0, 0, 0]);
    expect(Array.from(broadcastBatchIndex([], []))).toEqual([0]);
    expect(Array.from(broadcastBatchIndex([2, 2, 2], [2, 1, 2]))).toEqual([0, 1, 0, 1, 2, 3, 2, 3]);
  });
});

const native = isBlasAvailable();
if (!native) {
  console.warn(`skipped the native matmul kernel tests: ${blasInfo().reason} (${blasInfo().hint})`);
}

/** Operands of op(A)·op(B) with the given batch shapes. */
function matmulOperands(
  rand: () => number,
  batchA: number[],
  batchB: number[],
  m: number,
  k: number,
  n: number,
  transposeA: boolean,
  transposeB: boolean,
): [Operand, Operand] {
  return [
    operand(rand, [...batchA, ...(transposeA ? [k, m] : [m, k])]),
    operand(rand, [...batchB, ...(transposeB ? [n, k] : [k, n])]),
  ];
}

/**
 * Reference for broadcast batch dims: both operands explicitly broadcast to the common batch shape first
 * (the JS cpu kernel indexes broadcast batches modulo the batch size, which is only right when one side has a
 * single matrix or both have the same batch shape).
 */
function broadcastMatMul(a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean): tf.Tensor {
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const ab = tf.broadcastTo(a, [...outer, ...a.shape.slice(-2)]);
  const bb = tf.broadcastTo(b, [...outer, ...b.shape.slice(-2)]);
  return tf.matMul(ab, bb, transposeA, transposeB);
}

(native ? describe : describe.skip)('cpu-blas matmul kernels against the JS cpu backend', () => {
  beforeAll(() => {
    expect(registerBlasBackend()).toBe(true);
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('BatchMatMul on random shapes, with every transpose combination', async () => {
    const rand = seededRandom(1);
    for (let trial = 0; trial < 24; trial++) {
      const transposeA = trial % 2 === 1;
      const transposeB = trial % 4 >= 2;
      const m = randInt(rand, 1, 40);
      const k = randInt(rand, 1, 40);
      const n = randInt(rand, 1, 40);
      const batch = trial < 8 ? [] : [randInt(rand, 1, 4)];
      const ops = matmulOperands(rand, batch, batch, m, k, n, transposeA, transposeB);
      const err = await compareBackends(BLAS_BACKEND_NAME, 'cpu', ops, (a, b) =>
        tf.matMul(a, b, transposeA, transposeB),
      );
      expect({ trial, m, k, n, transposeA, transposeB, agrees: err < TOL }).toEqual({
        trial,
        m,
        k,
        n,
        transposeA,
        transposeB,
        agrees: true,
      });
    }
  });

  it('BatchMatMul on shapes large enough for the threaded GEMM paths', async () => {
    const rand = seededRandom(2);
    for (const [m, k, n, tA, tB] of [
      [130, 300, 70, false, false],
      [64, 257, 129, true, false],
      [97, 128, 200, false, true],
      [256, 784, 10, false, false],
    ] as [number, number, number, boolean, boolean][]) {
      const ops = matmulOperands(rand, [], [], m, k, n, tA, tB);
      expect(
        await compareBackends(BLAS_BACKEND_NAME, 'cpu', ops, (a, b) => tf.matMul(a, b, tA, tB)),
      ).toBeLessThan(TOL);
    }
  });

  it('matrix-vector and vector-matrix products (the sgemv paths), every transpose, batched and stacked', async () => {
    const rand = seededRandom(11);
    for (const [m, k, n] of [
      [300, 257, 1],
      [1, 257, 300],
      [1, 5, 1],
      [1, 64, 33],
    ] as [number, number, number][]) {
      for (const [tA, tB] of [
        [false, false],
        [true, false],
        [false, true],
        [true, true],
      ] as [boolean, boolean][]) {
        for (const batch of [[], [3]]) {
          const ops = matmulOperands(rand, batch, batch, m, k, n, tA, tB);
          const err = await compareBackends(BLAS_BACKEND_NAME, 'cpu', ops, (a, b) => tf.matMul(a, b, tA, tB));
          expect({ m, k, n, tA, tB, batch, agrees: err < TOL }).toEqual({
            m,
            k,
            n,
            tA,
            tB,
            batch,
            agrees: true,
          });
        }
      }
    }
    // A stack of row vectors against one shared matrix folds into one product of 3 rows.
    const ops = matmulOperands(rand, [3], [], 1, 40, 7, false, false);
    expect(await compareBackends(BLAS_BACKEND_NAME, 'cpu', ops, (a, b) => tf.matMul(a, b))).toBeLessThan(TOL);
  });

  it('BatchMatMul broadcasts batch dims (numpy rules), against explicitly broadcast operands', async () => {
    const rand = seededRandom(3);
    const cases: [number[], number[]][] = [
      [[3], []],
      [[], [4]],
      [[1], [3]],
      [
        [2, 1],
        [1, 3],
      ],
      [
        [2, 1, 2],
        [3, 1],
      ],
      [[5], [1]],
      [[2, 3], [3]],
    ];
    for (const [batchA, batchB] of cases) {
      for (const [tA, tB] of [
        [false, false],
        [true, true],
        [false, true],
        [true, false],
      ] as [boolean, boolean][]) {
        const [m, k, n] = [randInt(rand, 1, 9), randInt(rand, 1, 9), randInt(rand, 1, 9)];
        const ops = matmulOperands(rand, batchA, batchB, m, k, n, tA, tB);
        const err = await compareBackends(
          BLAS_BACKEND_NAME,
          'cpu',
          ops,
          (a, b) => tf.matMul(a, b, tA, tB),
          (a, b) => broadcastMatMul(a, b, tA, tB),
        );
        expect(err).toBeLessThan(TOL);
      }
    }
  });

  it('BatchMatMul with a zero-sized dimension gives zeros of the right shape', async () => {
    await tf.setBackend(BLAS_BACKEND_NAME);
    const c = tf.matMul(tf.zeros([3, 0]), tf.zeros([0, 4]));
    expect(c.shape).toEqual([3, 4]);
    expect(Array.from(c.dataSync())).toEqual(new Array(12).fill(0));
    const d = tf.matMul(tf.zeros([0, 5]), tf.ones([5, 2]));
    expect(d.shape).toEqual([0, 2]);
    tf.dispose([c, d]);
  });

  it('BatchMatMul refuses mismatched inner dimensions with the tfjs message', async () => {
    await tf.setBackend(BLAS_BACKEND_NAME);
    expect(() => tf.matMul(tf.zeros([2, 3]), tf.zeros([4, 5]))).toThrow(/inner shapes/);
  });

  it('_FusedMatMul: bias per column and every activation, fused or through the JS epilogue', async () => {
    const rand = seededRandom(4);
    const activations: tf.fused.Activation[] = [
      'linear',
      'relu',
      'relu6',
      'elu',
      'sigmoid',
      'leakyrelu',
      'prelu',
    ];
    for (const activation of activations) {
      for (const biasKind of ['none', 'column', 'row', 'full', 'scalar'] as const) {
        const tA = rand() < 0.5;
        const tB = rand() < 0.5;
        const [m, k, n] = [randInt(rand, 2, 20), randInt(rand, 1, 20), randInt(rand, 2, 20)];
        const [a, b] = matmulOperands(rand, [], [], m, k, n, tA, tB);
        const biasShape = { none: [], column: [n], row: [m, 1], full: [m, n], scalar: [1] }[biasKind];
        const ops: Operand[] = [a, b, operand(rand, biasShape.length ? biasShape : [1]), operand(rand, [n])];
        const fused = (x: tf.Tensor, y: tf.Tensor, bias: tf.Tensor, alpha: tf.Tensor) =>
          tf.fused.matMul({
            a: x as tf.Tensor2D,
            b: y as tf.Tensor2D,
            transposeA: tA,
            transposeB: tB,
            bias: biasKind === 'none' ? undefined : bias,
            activation,
            preluActivationWeights: activation === 'prelu' ? alpha : undefined,
            leakyreluAlpha: 0.15,
          });
        const err = await compareBackends(BLAS_BACKEND_NAME, 'cpu', ops, fused);
        expect({ activation, biasKind, err: err < TOL }).toEqual({ activation, biasKind, err: true });
      }
    }
  });

  it('gradients through matMul agree (tf.grads of a loss, every transpose combination, batched)', async () => {
    const rand = seededRandom(5);
    for (const [tA, tB] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as [boolean, boolean][]) {
      const [m, k, n] = [randInt(rand, 2, 30), randInt(rand, 2, 30), randInt(rand, 2, 30)];
      const [a, b] = matmulOperands(rand, [3], [3], m, k, n, tA, tB);
      const weights = operand(rand, [3, m, n]);
      const grads = (x: tf.Tensor, y: tf.Tensor, w: tf.Tensor) =>
        tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(tf.tanh(tf.matMul(p, q, tA, tB)), w)))([x, y]);
      expect(await compareBackends(BLAS_BACKEND_NAME, 'cpu', [a, b, weights], grads)).toBeLessThan(TOL);
    }
  });

  it('gradients of a dense logistic regression on 784-d inputs agree (fused matMul with bias)', async () => {
    const rand = seededRandom(6);
    const x = operand(rand, [64, 784]);
    const w = operand(rand, [784, 10]);
    const bias = operand(rand, [10]);
    const labels = operand(rand, [64, 10]);
    const grads = (xs: tf.Tensor, ws: tf.Tensor, bs: tf.Tensor, ys: tf.Tensor) =>
      tf.grads((wv: tf.Tensor, bv: tf.Tensor) => {
        const logits = tf.fused.matMul({
          a: xs as tf.Tensor2D,
          b: wv as tf.Tensor2D,
          bias: bv,
          activation: 'linear',
        });
        return tf.mean(tf.square(tf.sub(logits, ys)));
      })([ws, bs]);
    expect(await compareBackends(BLAS_BACKEND_NAME, 'cpu', [x, w, bias, labels], grads)).toBeLessThan(TOL);
  });

  it('second derivatives through matMul agree (Hessian-vector product by double backprop)', async () => {
    const rand = seededRandom(7);
    const x = operand(rand, [20, 15]);
    const w = operand(rand, [15, 6]);
    const v = operand(rand, [15, 6]);
    const hvp = (xs: tf.Tensor, ws: tf.Tensor, vs: tf.Tensor) =>
      tf.grad((wv: tf.Tensor) => {
        const g = tf.grad((u: tf.Tensor) => tf.sum(tf.pow(tf.matMul(xs, u), 4)))(wv);
        return tf.sum(tf.mul(g, vs));
      })(ws);
    expect(await compareBackends(BLAS_BACKEND_NAME, 'cpu', [x, w, v], hvp)).toBeLessThan(TOL);
  });

  it('small products (the JS path): dots, every transpose, broadcast batches, k = 0, NaN and infinities', async () => {
    const rand = seededRandom(12);
    // Each case is at most SMALL_MATMUL_MACS multiply-adds, so it takes the JS loop; the last one is just above.
    const cases: [number[], number[], number, number, number][] = [
      [[], [], 1, 100, 1],
      [[], [], 3, 7, 5],
      [[2], [2], 4, 9, 6],
      [[2, 1], [1, 3], 2, 5, 3],
      [[3], [], 1, 40, 7],
      [[], [], 1, SMALL_MATMUL_MACS + 1, 1],
    ];
    for (const [batchA, batchB, m, k, n] of cases) {
      for (const [tA, tB] of [
        [false, false],
        [true, false],
        [false, true],
        [true, true],
      ] as [boolean, boolean][]) {
        const ops = matmulOperands(rand, batchA, batchB, m, k, n, tA, tB);
        const err = await compareBackends(
          BLAS_BACKEND_NAME,
          'cpu',
          ops,
          (a, b) => tf.matMul(a, b, tA, tB),
          (a, b) => broadcastMatMul(a, b, tA, tB),
        );
        expect({ batchA, batchB, m, k, n, tA, tB, agrees: err < TOL }).toEqual({
          batchA,
          batchB,
          m,
          k,
          n,
          tA,
          tB,
          agrees: true,
        });
      }
    }
    // tf.dot of two vectors, read back as a number.
    const [x, y] = [operand(rand, [100]), operand(rand, [100])];
    const [got] = await runOn(BLAS_BACKEND_NAME, [x, y], (a, b) =>
      tf.dot(a as tf.Tensor1D, b as tf.Tensor1D),
    );
    let want = 0;
    for (let i = 0; i < 100; i++) want += x.values[i] * y.values[i];
    expect(got.shape).toEqual([]);
    expect(got.values[0]).toBeCloseTo(want, 5);
    // k = 0 writes zeros, even into a reused output array that held other values.
    await tf.setBackend(BLAS_BACKEND_NAME);
    for (let i = 0; i < 3; i++) tf.matMul(tf.ones([4, 3]), tf.ones([3, 4])).dispose();
    const empty = tf.matMul(tf.zeros([4, 0]), tf.zeros([0, 4]));
    expect(Array.from(empty.dataSync())).toEqual(new Array(16).fill(0));
    empty.dispose();
    // NaN and infinities land where the JS kernel puts them.
    const a: Operand = { values: Float32Array.from([1, NaN, 2, 3, Infinity, 1, -1, 0, 5]), shape: [3, 3] };
    const b: Operand = { values: Float32Array.from([1, 2, 0, 1, -Infinity, 2]), shape: [3, 2] };
    const special = await runOn(BLAS_BACKEND_NAME, [a, b], (p, q) => tf.matMul(p, q));
    const reference = await runOn('cpu', [a, b], (p, q) => tf.matMul(p, q));
    expect(firstMismatch(special[0].values, reference[0].values, 1e-6)).toBe(-1);
    expect(Array.from(special[0].values).some((v) => Number.isNaN(v))).toBe(true);
  });

  it.each([
    ['the worker pool (the default)', 'pool'],
    ["OpenBLAS's own threads (setMatVecMethod('openblas'))", 'openblas'],
  ] as [string, MatVecMethod][])(
    'large matrix-vector products on %s agree with the JS kernel, with NaN and infinities',
    async (_how, mode) => {
      const rand = seededRandom(13);
      const threads = blasInfo().threads;
      // A switch in the addon (jest's process.env is a copy that the addon's getenv never sees).
      const savedMode = setMatVecMethod(mode);
      expect(savedMode).toBe('pool');
      expect(setMatVecMethod(mode)).toBe(mode);
      try {
        // The pool splits products only when it has two threads or more.
        setBlasThreads(2);
        // Products below 2^21 matrix entries run on the calling thread (OpenBLAS held to one thread), from 2^21
        // on the pool splits them: rows and columns that do not divide into whole tasks, a batched product, and
        // vector-matrix products (A·x and Aᵀ·x for each), on either side of the threshold.
        for (const [batch, m, k, n, tA, tB] of [
          [[], 2100, 1000, 1, false, false],
          [[], 2100, 1000, 1, true, false],
          [[], 1, 1000, 2100, false, false],
          [[], 1, 1000, 2100, false, true],
          [[], 400, 400, 1, false, false],
          [[], 400, 400, 1, true, false],
          [[], 513, 301, 1, false, false],
          [[], 513, 301, 1, true, false],
          [[2], 380, 360, 1, false, false],
          [[2], 380, 360, 1, true, false],
          [[], 1, 353, 401, false, false],
          [[], 1, 353, 401, false, true],
          // Aᵀ·x split over A's rows into the most blocks (32; 8,192 rows), and one too wide for row blocks
          // (more than 65,536 columns: split over columns).
          [[], 1, 8192, 300, false, false],
          [[], 1, 4, 70000, false, false],
          [[], 1, 32, 70000, false, false],
          // A few rows times a large matrix (B in row blocks, ordered partial sums), A as stored or transposed,
          // batched; and a large matrix times a few columns (A in row blocks), B as stored or transposed.
          [[], 10, 1000, 300, false, false],
          [[], 10, 1000, 300, true, false],
          [[2], 7, 640, 410, false, false],
          [[], 300, 1000, 10, false, false],
          [[], 300, 1000, 10, false, true],
          [[], 513, 260, 16, false, false],
          // A few columns and a long inner dimension (a linear model's Xᵀ·R): B in row blocks, partial sums.
          [[], 200, 1500, 10, true, false],
          [[], 150, 1300, 3, false, false],
        ] as [number[], number, number, number, boolean, boolean][]) {
          const ops = matmulOperands(rand, batch, batch, m, k, n, tA, tB);
          const err = await compareBackends(BLAS_BACKEND_NAME, 'cpu', ops, (a, b) => tf.matMul(a, b, tA, tB));
          // The pool's tasks run OpenBLAS on one thread and restore the setting after.
          expect({ threads: blasInfo().threads, m, k, n, tA, tB, agrees: err < TOL }).toEqual({
            threads: 2,
            m,
            k,
            n,
            tA,
            tB,
            agrees: true,
          });
        }
        // A stack of three matrices times one vector folds into one product of 600 rows.
        const stacked = matmulOperands(rand, [3], [], 200, 300, 1, false, false);
        expect(
          await compareBackends(BLAS_BACKEND_NAME, 'cpu', stacked, (a, b) => tf.matMul(a, b)),
        ).toBeLessThan(TOL);
        // Special values in three entries of A: NaN or ±∞ in exactly the rows (A·x) or columns (Aᵀ·x) holding them,
        // on one thread (400 × 350) and split on the pool (2,100 × 1,000).
        for (const [rows, cols, tA] of [
          [400, 350, false],
          [400, 350, true],
          [2100, 1000, false],
          [2100, 1000, true],
        ] as [number, number, boolean][]) {
          const a = operand(rand, [rows, cols]);
          a.values[5 * cols + 7] = NaN;
          a.values[300 * cols + 2] = Infinity;
          a.values[(rows - 1) * cols + cols - 1] = -Infinity;
          const x = operand(rand, [tA ? rows : cols, 1]);
          const got = await runOn(BLAS_BACKEND_NAME, [a, x], (p, q) => tf.matMul(p, q, tA, false));
          const want = await runOn('cpu', [a, x], (p, q) => tf.matMul(p, q, tA, false));
          expect({ rows, tA, mismatch: firstMismatch(got[0].values, want[0].values, 1e-3) }).toEqual({
            rows,
            tA,
            mismatch: -1,
          });
          const special = Array.from(got[0].values).filter((v) => !Number.isFinite(v)).length;
          expect({ rows, tA, special }).toEqual({ rows, tA, special: 3 });
        }
      } finally {
        setBlasThreads(Math.max(1, threads));
        setMatVecMethod(savedMode ?? 'pool');
      }
    },
  );

  it('leaves no tensor behind over many matMul iterations', async () => {
    await tf.setBackend(BLAS_BACKEND_NAME);
    const a = tf.randomNormal([8, 6]);
    const b = tf.randomNormal([6, 5]);
    const bias = tf.randomNormal([8, 5]);
    const base = tf.memory().numTensors;
    for (let i = 0; i < 50; i++) {
      tf.tidy(() => {
        tf.matMul(a, b);
        tf.fused.matMul({
          a: a as tf.Tensor2D,
          b: b as tf.Tensor2D,
          bias,
          activation: 'prelu',
          preluActivationWeights: tf.scalar(0.1),
        });
        tf.grads((p: tf.Tensor, q: tf.Tensor) =>
          tf.sum(tf.fused.matMul({ a: p as tf.Tensor2D, b: q as tf.Tensor2D, bias, activation: 'relu' })),
        )([a, b]);
      });
    }
    expect(tf.memory().numTensors).toBe(base);
    tf.dispose([a, b, bias]);
  });
});
