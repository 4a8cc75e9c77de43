import * as tf from '@tensorflow/tfjs-core';

/** Seeded uniform generator (mulberry32), so every random shape and value is reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Integer in [lo, hi]. */
export function randInt(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}

/** Values uniform in [-1, 1). */
export function randomValues(rand: () => number, shape: readonly number[]): Float32Array {
  const size = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(size);
  for (let i = 0; i < size; i++) v[i] = 2 * rand() - 1;
  return v;
}

/** max |a − b| / max |b|: the relative error the kernel tests bound by 1e-4. */
export function maxRelativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  if (!Number.isFinite(diff)) return Infinity;
  return diff / Math.max(scale, 1e-30);
}

/** Input data of a computation, as plain arrays, so the same values become tensors on each backend. */
export interface Operand {
  readonly values: Float32Array;
  readonly shape: number[];
}

export function operand(rand: () => number, shape: number[]): Operand {
  return { values: randomValues(rand, shape), shape };
}

/**
 * Runs `fn` on the backend `backend` with the operands made into tensors there, and returns every output's
 * values and shape. Leaves no tensor behind.
 */
export async function runOn(
  backend: string,
  operands: readonly Operand[],
  fn: (...ts: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
): Promise<{ values: Float32Array; shape: number[] }[]> {
  await tf.setBackend(backend);
  const before = tf.memory().numTensors;
  // The outputs leave the tidy as tensors and are read outside it: tidy walks whatever its callback
  // returns, and a large typed array costs far more to walk than the kernels that made it.
  const outputs = tf.tidy(() => {
    const ts = operands.map((o) => tf.tensor(o.values, o.shape, 'float32'));
    const out = fn(...ts);
    return Array.isArray(out) ? out : [out];
  });
  const results = outputs.map((t) => ({ values: t.dataSync() as Float32Array, shape: t.shape.slice() }));
  tf.dispose(outputs);
  const leaked = tf.memory().numTensors - before;
  if (leaked !== 0) throw new Error(`${leaked} tensors leaked on ${backend}`);
  return results;
}

/**
 * Runs `fn` on `backend` and on `reference` and returns the largest relative error over the outputs;
 * throws when shapes differ.
 */
export async function compareBackends(
  backend: string,
  reference: string,
  operands: readonly Operand[],
  fn: (...ts: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
  referenceFn: (...ts: tf.Tensor[]) => tf.Tensor | tf.Tensor[] = fn,
): Promise<number> {
  const got = await runOn(backend, operands, fn);
  const want = await runOn(reference, operands, referenceFn);
  if (got.length !== want.length) throw new Error(`${got.length} outputs vs ${want.length}`);
  let worst = 0;
  got.forEach((g, i) => {
    const w = want[i];
    if (g.shape.join(',') !== w.shape.join(',')) {
      throw new Error(`output ${i}: shape [${g.shape}] on ${backend} vs [${w.shape}] on ${reference}`);
    }
    worst = Math.max(worst, maxRelativeError(g.values, w.values));
  });
  return worst;
}

/**
 * Whether two arrays agree elementwise: both NaN, equal infinities, or |a − b| <= tol·max(1, |b|).
 * Returns the first index that differs, or -1.
 */
export function firstMismatch(a: ArrayLike<number>, b: ArrayLike<number>, tol: number): number {
  if (a.length !== b.length) return 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (Number.isNaN(x) || Number.isNaN(y)) {
      if (!(Number.isNaN(x) && Number.isNaN(y))) return i;
    } else if (!Number.isFinite(x) || !Number.isFinite(y)) {
      if (x !== y) return i;
    } else if (Math.abs(x - y) > tol * Math.max(1, Math.abs(y))) {
      return i;
    }
  }
  return -1;
}

/** Values in [-3, 3) with a sprinkling of the special values NaN, ±Infinity, ±0 and exact ties. */
export function specialValues(rand: () => number, size: number): Float32Array {
  const specials = [NaN, Infinity, -Infinity, 0, -0, 1, 1];
  const v = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    v[i] = rand() < 0.1 ? specials[Math.floor(rand() * specials.length)] : 6 * rand() - 3;
  }
  return v;
}
