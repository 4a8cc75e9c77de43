import * as tf from '@tensorflow/tfjs-core';
import { BLAS_BACKEND_NAME, blasInfo, isBlasAvailable, registerBlasBackend } from './index';
import { randInt, seededRandom, specialValues } from './test-utils/compare';

const native = isBlasAvailable();
if (!native)
  console.warn(`skipped the cpu-blas Pack/Concat tests: ${blasInfo().reason} (${blasInfo().hint})`);

type Dtype = 'float32' | 'int32' | 'bool';

function randomValues(
  rand: () => number,
  dtype: Dtype,
  size: number,
): Float32Array | Int32Array | Uint8Array {
  if (dtype === 'float32') return specialValues(rand, size);
  if (dtype === 'int32') return Int32Array.from({ length: size }, () => randInt(rand, -1000, 1000));
  return Uint8Array.from({ length: size }, () => (rand() < 0.5 ? 1 : 0));
}

interface Outcome {
  values: number[];
  shape: number[];
  dtype: string;
}

/** `fn` of tensors made from the parts on `backend`: values (−0 and NaN kept by Object.is), shape, dtype; no tensor left. */
async function joinOn(
  backend: string,
  parts: { values: Float32Array | Int32Array | Uint8Array; shape: number[] }[],
  dtype: Dtype,
  fn: (ts: tf.Tensor[]) => tf.Tensor,
): Promise<Outcome> {
  await tf.setBackend(backend);
  const before = tf.memory().numTensors;
  const ts = parts.map((p) => tf.tensor(p.values, p.shape, dtype));
  const y = fn(ts);
  const out = { values: Array.from(y.dataSync() as ArrayLike<number>), shape: y.shape, dtype: y.dtype };
  tf.dispose([...ts, y]);
  expect(tf.memory().numTensors).toBe(before);
  return out;
}

/** Whether two outcomes are equal element for element (−0 ≠ 0, NaN = NaN). */
function same(a: Outcome, b: Outcome): boolean {
  if (a.dtype !== b.dtype || a.shape.join() !== b.shape.join() || a.values.length !== b.values.length)
    return false;
  return a.values.every((v, i) => Object.is(v, b.values[i]));
}

(native ? describe : describe.skip)('cpu-blas Pack and Concat against the JS cpu backend', () => {
  beforeAll(() => {
    expect(registerBlasBackend()).toBe(true);
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('run their own kernels, not the JS ones', () => {
    for (const name of ['Pack', 'Concat', 'Tile']) {
      expect(tf.getKernel(name, BLAS_BACKEND_NAME).kernelFunc).not.toBe(tf.getKernel(name, 'cpu').kernelFunc);
    }
  });

  it('tf.stack: random shapes, every axis (negative too), 2 to 6 inputs, float32 / int32 / bool, agree exactly', async () => {
    const rand = seededRandom(31);
    let cases = 0;
    for (const dtype of ['float32', 'int32', 'bool'] as Dtype[]) {
      for (let c = 0; c < 40; c++) {
        const rank = randInt(rand, 0, 3);
        // Short runs (a loop) and long ones (`set` on subarrays): rows up to 40 wide.
        const shape = Array.from({ length: rank }, () => randInt(rand, 1, rank > 1 ? 6 : 40));
        const count = randInt(rand, 2, 6);
        const size = shape.reduce((a, b) => a * b, 1);
        const parts = Array.from({ length: count }, () => ({
          values: randomValues(rand, dtype, size),
          shape,
        }));
        const axis = randInt(rand, -(rank + 1), rank);
        const got = await joinOn(BLAS_BACKEND_NAME, parts, dtype, (ts) => tf.stack(ts, axis));
        const want = await joinOn('cpu', parts, dtype, (ts) => tf.stack(ts, axis));
        expect({ dtype, shape, count, axis, same: same(got, want) }).toEqual({
          dtype,
          shape,
          count,
          axis,
          same: true,
        });
        cases++;
      }
    }
    expect(cases).toBe(120);
  });

  it('tf.concat: random shapes, every axis, inputs of different widths and empty ones, agree exactly', async () => {
    const rand = seededRandom(37);
    let cases = 0;
    for (const dtype of ['float32', 'int32', 'bool'] as Dtype[]) {
      for (let c = 0; c < 40; c++) {
        const rank = randInt(rand, 1, 4);
        const shape = Array.from({ length: rank }, () => randInt(rand, 1, rank > 2 ? 5 : 30));
        const axis = randInt(rand, 0, rank - 1);
        const count = randInt(rand, 1, 5);
        const parts = Array.from({ length: count }, () => {
          const s = shape.slice();
          s[axis] = rand() < 0.15 ? 0 : randInt(rand, 1, rank > 2 ? 5 : 30);
          return {
            values: randomValues(
              rand,
              dtype,
              s.reduce((a, b) => a * b, 1),
            ),
            shape: s,
          };
        });
        const got = await joinOn(BLAS_BACKEND_NAME, parts, dtype, (ts) => tf.concat(ts, axis));
        const want = await joinOn('cpu', parts, dtype, (ts) => tf.concat(ts, axis));
        const widths = parts.map((p) => p.shape[axis]);
        expect({ dtype, shape, axis, widths, same: same(got, want) }).toEqual({
          dtype,
          shape,
          axis,
          widths,
          same: true,
        });
        cases++;
      }
    }
    expect(cases).toBe(120);
  });

  it('tf.tile and tf.broadcastTo: random shapes and repeats (ones, zeros, short and long blocks), float32 / int32 / bool, agree exactly', async () => {
    const rand = seededRandom(43);
    let cases = 0;
    for (const dtype of ['float32', 'int32', 'bool'] as Dtype[]) {
      for (let c = 0; c < 40; c++) {
        const rank = randInt(rand, 1, 4);
        const shape = Array.from({ length: rank }, () => randInt(rand, 1, rank > 2 ? 5 : 30));
        // Mostly 1–3 repeats, sometimes none along any dim (a plain copy) or zero (an empty result).
        const reps = shape.map(() => (rand() < 0.05 ? 0 : randInt(rand, 1, 3)));
        if (c % 10 === 0) reps.fill(1);
        const parts = [
          {
            values: randomValues(
              rand,
              dtype,
              shape.reduce((a, b) => a * b, 1),
            ),
            shape,
          },
        ];
        const got = await joinOn(BLAS_BACKEND_NAME, parts, dtype, ([t]) => tf.tile(t, reps));
        const want = await joinOn('cpu', parts, dtype, ([t]) => tf.tile(t, reps));
        expect({ dtype, shape, reps, same: same(got, want) }).toEqual({ dtype, shape, reps, same: true });
        // broadcastTo: the size-1 dims of the input repeated (as the gradients of sums and means do).
        const ones = shape.map((n) => (rand() < 0.5 ? 1 : n));
        const target = ones.map((n, i) => (n === 1 ? shape[i] + randInt(rand, 0, 2) : n));
        const small = [
          {
            values: randomValues(
              rand,
              dtype,
              ones.reduce((a, b) => a * b, 1),
            ),
            shape: ones,
          },
        ];
        const gotB = await joinOn(BLAS_BACKEND_NAME, small, dtype, ([t]) => tf.broadcastTo(t, target));
        const wantB = await joinOn('cpu', small, dtype, ([t]) => tf.broadcastTo(t, target));
        expect({ dtype, ones, target, same: same(gotB, wantB) }).toEqual({ dtype, ones, target, same: true });
        cases++;
      }
    }
    expect(cases).toBe(120);
    // ES's tiling of one point into Q + 1 rows, long rows.
    const x = [{ values: specialValues(rand, 784 * 10), shape: [1, 784, 10] }];
    const got = await joinOn(BLAS_BACKEND_NAME, x, 'float32', ([t]) => tf.tile(t, [11, 1, 1]));
    const want = await joinOn('cpu', x, 'float32', ([t]) => tf.tile(t, [11, 1, 1]));
    expect(same(got, want)).toBe(true);
  });

  it('stacks vectors of 1,000 floats and scalars (the quasi-Newton memories and one-read checks)', async () => {
    const rand = seededRandom(41);
    const vectors = Array.from({ length: 3 }, () => ({ values: specialValues(rand, 1000), shape: [1000] }));
    const scalars = Array.from({ length: 3 }, () => ({
      values: specialValues(rand, 1),
      shape: [] as number[],
    }));
    for (const [parts, axis] of [
      [vectors, 0],
      [vectors, 1],
      [scalars, 0],
    ] as const) {
      const got = await joinOn(BLAS_BACKEND_NAME, [...parts], 'float32', (ts) => tf.stack(ts, axis));
      const want = await joinOn('cpu', [...parts], 'float32', (ts) => tf.stack(ts, axis));
      expect({ axis, size: got.values.length, same: same(got, want) }).toEqual({
        axis,
        size: parts.length * parts[0].values.length,
        same: true,
      });
    }
  });

  it('refuse mismatched shapes with the JS kernels’ messages', async () => {
    await tf.setBackend(BLAS_BACKEND_NAME);
    const a = tf.zeros([2, 3]);
    const b = tf.zeros([3, 3]);
    const c = tf.zeros([2, 4]);
    expect(() => tf.stack([a, b])).toThrow(/All tensors passed to stack must have matching shapes/);
    expect(() => tf.concat([a, c], 0)).toThrow(
      /Error in concat2D: Shape of tensors\[1\] \(2,4\) does not match/,
    );
    tf.dispose([a, b, c]);
  });

  it('keeps the tensor count flat over many joins, gradients included', async () => {
    await tf.setBackend(BLAS_BACKEND_NAME);
    const x = tf.randomNormal([50]);
    const y = tf.randomNormal([50]);
    const round = () =>
      tf.tidy(() => {
        const g = tf.grad((v: tf.Tensor) =>
          tf.sum(
            tf.square(
              tf.concat([tf.stack([v, y]), tf.stack([y, v]), tf.tile(tf.reshape(v, [2, 25]), [1, 2])], 1),
            ),
          ),
        )(x);
        return g.dataSync()[0];
      });
    const first = round();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 50; i++) expect(round()).toBe(first);
    expect(tf.memory().numTensors).toBe(before);
    // The gradient of Σ(stack/concat/tile)² in v is 8v (v appears twice, and twice more in the tile).
    expect(first).toBeCloseTo(8 * x.dataSync()[0], 5);
    tf.dispose([x, y]);
  });
});
