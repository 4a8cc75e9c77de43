import * as tf from '@tensorflow/tfjs-core';
import { BLAS_BACKEND_NAME, blasInfo, isBlasAvailable, registerBlasBackend } from './index';
import { firstMismatch, randInt, seededRandom, specialValues } from './test-utils/compare';

const native = isBlasAvailable();
if (!native) console.warn(`skipped the cpu-blas GatherV2 tests: ${blasInfo().reason} (${blasInfo().hint})`);

interface GatherCase {
  readonly shape: number[];
  readonly values: Float32Array | Int32Array | Uint8Array;
  readonly dtype: 'float32' | 'int32' | 'bool';
  readonly indices: Int32Array;
  readonly indexShape: number[];
  readonly axis: number;
  readonly batchDims: number;
}

/** `tf.gather` of the case on `backend`: its values (as plain numbers), shape and dtype. Leaves no tensor. */
async function gatherOn(
  backend: string,
  c: GatherCase,
): Promise<{ values: number[]; shape: number[]; dtype: string }> {
  await tf.setBackend(backend);
  const before = tf.memory().numTensors;
  const x = tf.tensor(c.values, c.shape, c.dtype);
  const idx = tf.tensor(c.indices, c.indexShape, 'int32');
  const y = tf.gather(x, idx, c.axis, c.batchDims);
  const out = { values: Array.from(y.dataSync() as ArrayLike<number>), shape: y.shape, dtype: y.dtype };
  tf.dispose([x, idx, y]);
  expect(tf.memory().numTensors).toBe(before);
  return out;
}

function randomCase(rand: () => number, dtype: GatherCase['dtype']): GatherCase {
  const rank = randInt(rand, 1, 4);
  const shape = Array.from({ length: rank }, () => randInt(rand, 1, rank > 2 ? 6 : 40));
  const axis = randInt(rand, 0, rank - 1);
  const batchDims = rand() < 0.3 ? randInt(rand, 0, axis) : 0;
  // batch dims of the indices must equal x's leading dims
  const indexShape = [
    ...shape.slice(0, batchDims),
    ...Array.from({ length: randInt(rand, 0, 2) }, () => randInt(rand, 0, 5)),
  ];
  const size = shape.reduce((a, b) => a * b, 1);
  const values =
    dtype === 'float32'
      ? specialValues(rand, size)
      : dtype === 'int32'
        ? Int32Array.from({ length: size }, () => randInt(rand, -1000, 1000))
        : Uint8Array.from({ length: size }, () => (rand() < 0.5 ? 1 : 0));
  const count = indexShape.reduce((a, b) => a * b, 1);
  const indices = Int32Array.from({ length: count }, () => randInt(rand, 0, shape[axis] - 1));
  return { shape, values, dtype, indices, indexShape, axis, batchDims };
}

(native ? describe : describe.skip)('cpu-blas GatherV2 against the JS cpu backend', () => {
  beforeAll(() => {
    expect(registerBlasBackend()).toBe(true);
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('runs its own kernel, not the JS one', () => {
    expect(tf.getKernel('GatherV2', BLAS_BACKEND_NAME).kernelFunc).not.toBe(
      tf.getKernel('GatherV2', 'cpu').kernelFunc,
    );
  });

  it('random shapes, axes, batch dims and repeated indices (float32 with NaN/±Infinity/−0, int32, bool) agree exactly', async () => {
    const rand = seededRandom(31);
    for (let trial = 0; trial < 120; trial++) {
      const c = randomCase(rand, (['float32', 'int32', 'bool'] as const)[trial % 3]);
      const got = await gatherOn(BLAS_BACKEND_NAME, c);
      const want = await gatherOn('cpu', c);
      const what = { shape: c.shape, axis: c.axis, batchDims: c.batchDims, indexShape: c.indexShape };
      expect({ ...what, shape: got.shape, dtype: got.dtype }).toEqual({
        ...what,
        shape: want.shape,
        dtype: want.dtype,
      });
      // toEqual compares numbers with Object.is: NaN equals NaN, and −0 must stay −0 (a copy, not arithmetic)
      expect({ ...what, values: got.values }).toEqual({ ...what, values: want.values });
    }
  });

  it('a minibatch of rows from a large matrix (the stochastic methods’ draw), long and short rows', async () => {
    const rand = seededRandom(5);
    for (const [rows, cols] of [
      [2000, 784],
      [2000, 10],
      [2000, 1],
    ]) {
      const c: GatherCase = {
        shape: [rows, cols],
        values: specialValues(rand, rows * cols),
        dtype: 'float32',
        indices: Int32Array.from({ length: 64 }, () => randInt(rand, 0, rows - 1)),
        indexShape: [64],
        axis: 0,
        batchDims: 0,
      };
      const got = await gatherOn(BLAS_BACKEND_NAME, c);
      const want = await gatherOn('cpu', c);
      expect(got.shape).toEqual([64, cols]);
      expect(firstMismatch(got.values, want.values, 0)).toBe(-1);
    }
  });

  it('empty indices and empty inputs', async () => {
    await tf.setBackend(BLAS_BACKEND_NAME);
    const x = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2]);
    const none = tf.gather(x, tf.tensor1d([], 'int32'));
    expect(none.shape).toEqual([0, 2]);
    const emptyRows = tf.gather(tf.zeros([4, 0]), tf.tensor1d([3, 1], 'int32'));
    expect(emptyRows.shape).toEqual([2, 0]);
    tf.dispose([x, none, emptyRows]);
  });

  it('an index out of range fails as the JS kernel does, naming the index and the range', async () => {
    await tf.setBackend(BLAS_BACKEND_NAME);
    const x = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2]);
    const before = tf.memory().numTensors;
    expect(() => tf.gather(x, tf.tensor1d([0, 3], 'int32'))).toThrow(
      'GatherV2: the index value 3 is not in [0, 2]',
    );
    expect(() => tf.gather(x, tf.tensor1d([-1], 'int32'))).toThrow(
      'GatherV2: the index value -1 is not in [0, 2]',
    );
    // the index tensors made inside the expect calls are the only ones left behind
    expect(tf.memory().numTensors).toBe(before + 2);
    x.dispose();
  });

  it('keeps the tensor count flat over many draws', async () => {
    await tf.setBackend(BLAS_BACKEND_NAME);
    const data = tf.randomUniform([500, 30]);
    const rand = seededRandom(9);
    const start = tf.memory().numTensors;
    for (let i = 0; i < 200; i++) {
      tf.tidy(() => {
        const idx = tf.tensor1d(
          Int32Array.from({ length: 16 }, () => randInt(rand, 0, 499)),
          'int32',
        );
        return tf.sum(tf.gather(data, idx)).dataSync();
      });
    }
    expect(tf.memory().numTensors).toBe(start);
    data.dispose();
  });
});
