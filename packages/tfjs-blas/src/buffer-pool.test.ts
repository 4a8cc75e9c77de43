import * as tf from '@tensorflow/tfjs-core';
import {
  BLAS_BACKEND_NAME,
  BUFFER_POOL_BYTES,
  MathBackendBlas,
  POOL_MB_ENV_VAR,
  blasInfo,
  bufferPoolMaxBytes,
  isBlasAvailable,
  registerBlasBackend,
} from './index';
import { BufferPool } from './buffer-pool';
import { SMALL_OUTPUT_LENGTH } from './kernel-utils';
import { firstMismatch, operand, runOn, seededRandom, type Operand } from './test-utils/compare';

describe('BufferPool', () => {
  it('reuses a released array of the same length, and only its own untainted ones', () => {
    const pool = new BufferPool(1 << 20, 16);
    const a = pool.alloc(100);
    pool.release(a);
    expect(pool.bytes).toBe(400);
    expect(pool.alloc(100)).toBe(a);
    expect(pool.bytes).toBe(0);
    const foreign = new Float32Array(100);
    pool.release(foreign);
    expect(pool.bytes).toBe(0);
    const b = pool.alloc(100);
    pool.taint(b);
    pool.release(b);
    expect(pool.alloc(100)).not.toBe(b);
    const view = pool.alloc(64).subarray(8, 40);
    pool.release(view);
    expect(pool.bytes).toBe(0);
    const small = pool.alloc(8);
    pool.release(small);
    expect(pool.bytes).toBe(0);
  });

  it('keeps its byte count and eviction order right over many hand-outs and returns', () => {
    const pool = new BufferPool(40 * 400, 16);
    const lengths = [100, 50, 25];
    let live: Float32Array[] = [];
    const rand = (() => {
      let s = 12345;
      return () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
    })();
    for (let i = 0; i < 20000; i++) {
      if (live.length > 0 && rand() < 0.5) {
        const at = Math.floor(rand() * live.length);
        const [a] = live.splice(at, 1);
        pool.release(a);
        // A second release of the same array (a double dispose) must not list it twice.
        if (rand() < 0.1) pool.release(a);
      } else {
        live.push(pool.alloc(lengths[Math.floor(rand() * lengths.length)]));
      }
      expect(pool.bytes).toBeLessThanOrEqual(pool.maxBytes);
    }
    // No array is handed out twice while live.
    const handed = new Set<Float32Array>();
    for (let i = 0; i < 200; i++) handed.add(pool.alloc(lengths[i % 3]));
    for (const a of live) expect(handed.has(a)).toBe(false);
    expect(handed.size).toBe(200);
    live = [];
  });

  it('drops its oldest arrays beyond its byte budget', () => {
    const pool = new BufferPool(1000, 16);
    const arrays = [pool.alloc(100), pool.alloc(100), pool.alloc(50)];
    for (const a of arrays) pool.release(a);
    // 400 + 400 + 200 = 1000 fits; one more 100 evicts the first.
    expect(pool.bytes).toBe(1000);
    const d = pool.alloc(100);
    expect(d).toBe(arrays[1]);
    pool.release(d);
    pool.release(pool.alloc(60));
    expect(pool.bytes).toBeLessThanOrEqual(1000);
    expect(pool.alloc(50)).toBe(arrays[2]);
  });

  it('keeps up to twice the peak of its arrays in use, so two phases of other lengths both stay', () => {
    // Floor 800 bytes, cap 1 MB: the budget follows the peak.
    const pool = new BufferPool(1 << 20, 16, 800);
    expect(pool.budget).toBe(800);
    const phaseA = [pool.alloc(100), pool.alloc(100), pool.alloc(100)];
    expect(pool.liveBytes).toBe(1200);
    expect(pool.peakBytes).toBe(1200);
    expect(pool.budget).toBe(2400);
    for (const a of phaseA) pool.release(a);
    expect(pool.liveBytes).toBe(0);
    expect(pool.bytes).toBe(1200);
    // Phase B: other lengths, as much in use as phase A's peak; both phases' arrays fit in twice the peak.
    const phaseB = [pool.alloc(150), pool.alloc(150)];
    expect(pool.peakBytes).toBe(1200);
    for (const b of phaseB) pool.release(b);
    expect(pool.bytes).toBe(2400);
    const again = [pool.alloc(100), pool.alloc(100), pool.alloc(100)];
    expect(new Set(again)).toEqual(new Set(phaseA));
    expect([pool.alloc(150), pool.alloc(150)].every((b) => phaseB.includes(b))).toBe(true);
    expect(pool.bytes).toBe(0);

    // The same two phases with a budget of the peak alone (cap 1200): phase B's arrays push phase A's out.
    const tight = new BufferPool(1200, 16, 0);
    const a2 = [tight.alloc(100), tight.alloc(100), tight.alloc(100)];
    for (const a of a2) tight.release(a);
    const b2 = [tight.alloc(150), tight.alloc(150)];
    for (const b of b2) tight.release(b);
    expect(tight.bytes).toBeLessThanOrEqual(1200);
    expect(a2.includes(tight.alloc(100))).toBe(false);
  });

  it('counts an array in use once: tainted, released twice, or a view released', () => {
    const pool = new BufferPool(1 << 20, 16, 0);
    const a = pool.alloc(100);
    const b = pool.alloc(50);
    expect(pool.liveBytes).toBe(600);
    pool.taint(a);
    expect(pool.liveBytes).toBe(200);
    pool.taint(a);
    pool.release(a);
    expect(pool.liveBytes).toBe(200);
    pool.release(b.subarray(0, 10));
    expect(pool.liveBytes).toBe(200);
    pool.release(b);
    pool.release(b);
    expect(pool.liveBytes).toBe(0);
    expect(pool.bytes).toBe(200);
    expect(pool.peakBytes).toBe(600);
    // Arrays below minLength are neither pooled nor counted.
    pool.alloc(8);
    expect(pool.liveBytes).toBe(0);
  });

  it('setLimits drops free arrays beyond the new budget at once and rejects bad limits', () => {
    const pool = new BufferPool(1 << 20, 16, 0);
    const arrays = [pool.alloc(100), pool.alloc(100), pool.alloc(100)];
    for (const a of arrays) pool.release(a);
    expect(pool.bytes).toBe(1200);
    pool.setLimits(500, 0);
    expect(pool.bytes).toBe(400);
    expect(pool.alloc(100)).toBe(arrays[2]);
    pool.setLimits(0, 0);
    expect(pool.bytes).toBe(0);
    expect(() => pool.setLimits(-1)).toThrow(/non-negative/);
    expect(() => pool.setLimits(Number.NaN)).toThrow(/non-negative/);
  });

  it('bufferPoolMaxBytes: BILEVEL_BLAS_POOL_MB when set, else a quarter of the memory, at least the floor', () => {
    const gib = 1024 ** 3;
    expect(bufferPoolMaxBytes({}, 24 * gib)).toBe(6 * gib);
    expect(bufferPoolMaxBytes({}, 512 * 1024 ** 2)).toBe(BUFFER_POOL_BYTES);
    expect(bufferPoolMaxBytes({ [POOL_MB_ENV_VAR]: '1536' }, 24 * gib)).toBe(1536 * 1024 ** 2);
    expect(bufferPoolMaxBytes({ [POOL_MB_ENV_VAR]: '0' }, 24 * gib)).toBe(0);
    expect(bufferPoolMaxBytes({ [POOL_MB_ENV_VAR]: ' ' }, 24 * gib)).toBe(6 * gib);
    expect(() => bufferPoolMaxBytes({ [POOL_MB_ENV_VAR]: 'lots' })).toThrow(/BILEVEL_BLAS_POOL_MB .*'lots'/);
    expect(() => bufferPoolMaxBytes({ [POOL_MB_ENV_VAR]: '-5' })).toThrow(/non-negative/);
  });
});

const native = isBlasAvailable();
if (!native) console.warn(`skipped the buffer-reuse tests: ${blasInfo().reason} (${blasInfo().hint})`);

(native ? describe : describe.skip)('cpu-blas output-array reuse', () => {
  let backend: MathBackendBlas;
  beforeAll(async () => {
    expect(registerBlasBackend()).toBe(true);
    await tf.setBackend(BLAS_BACKEND_NAME);
    backend = tf.backend() as MathBackendBlas;
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  /** Puts an array of `length` NaNs into the pool, so the next native output of that length starts dirty. */
  function poison(length: number): void {
    const a = backend.allocOutput(length);
    a.fill(NaN);
    backend.pool.release(a);
  }

  const cases: [string, number[][], (...t: tf.Tensor[]) => tf.Tensor][] = [
    ['add', [[70, 300], [300]], (a, b) => tf.add(a, b)],
    ['exp', [[150, 100]], (a) => tf.exp(a)],
    [
      'matMul',
      [
        [64, 80],
        [80, 96],
      ],
      (a, b) => tf.matMul(a, b),
    ],
    [
      'matVec',
      [
        [5000, 3],
        [3, 1],
      ],
      (a, b) => tf.matMul(a, b),
    ],
    ['sum axis 0', [[40, 5000]], (a) => tf.sum(a, 0)],
    ['transpose', [[60, 70, 3]], (a) => tf.transpose(a, [1, 0, 2])],
    [
      'conv2d',
      [
        [2, 20, 20, 3],
        [3, 3, 3, 16],
      ],
      (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same'),
    ],
    [
      'conv2d gradients',
      [
        [2, 40, 40, 3],
        [3, 3, 3, 16],
      ],
      (x, w) => {
        const [gx, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.square(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same'))),
        )([x, w]);
        return tf.concat([tf.reshape(gx, [-1]), tf.reshape(gw, [-1])]);
      },
    ],
    [
      'maxPool gradient',
      [[2, 16, 16, 64]],
      (x) => tf.grad((a: tf.Tensor) => tf.sum(tf.maxPool(a as tf.Tensor4D, 2, 2, 'valid')))(x),
    ],
  ];

  it.each(cases)('%s writes every element of a reused (dirty) array', async (_name, shapes, fn) => {
    const rand = seededRandom(5);
    const ops: Operand[] = shapes.map((s) => operand(rand, s));
    const [want] = await runOn('cpu', ops, fn);
    await tf.setBackend(BLAS_BACKEND_NAME);
    // Every array length a native kernel of this computation may ask for, dirty.
    for (const n of new Set([want.values.length, ...shapes.map((s) => s.reduce((p, d) => p * d, 1))])) {
      for (let i = 0; i < 4; i++) poison(n);
    }
    const reusedBefore = backend.pool.reused;
    const [got] = await runOn(BLAS_BACKEND_NAME, ops, fn);
    // Some dirty array was handed out (else this test would check nothing).
    expect(backend.pool.reused).toBeGreaterThan(reusedBefore);
    expect(got.shape).toEqual(want.shape);
    expect(firstMismatch(got.values, want.values, 1e-4)).toBe(-1);
  });

  it('outputs from 17 floats on (the first length V8 makes off its heap) are reused; shorter ones are fresh copies', () => {
    expect(backend.pool.minLength).toBe(SMALL_OUTPUT_LENGTH);
    expect(SMALL_OUTPUT_LENGTH).toBe(17);
    const reusedFor = (n: number): number => {
      const a = tf.fill([n], 1.5);
      const b = tf.fill([n], 2);
      tf.add(a, b).dispose();
      const before = backend.pool.reused;
      const outs = [0, 1, 2].map(() => tf.add(a, b));
      const values = outs.map((t) => Array.from(t.dataSync()));
      tf.dispose([a, b, ...outs]);
      for (const v of values) expect(v).toEqual(new Array(n).fill(3.5));
      return backend.pool.reused - before;
    };
    // The first of the three sums takes the array the warm-up sum gave back.
    for (const n of [17, 32, 63]) expect(reusedFor(n)).toBeGreaterThanOrEqual(1);
    for (const n of [1, 8, 16]) expect(reusedFor(n)).toBe(0);
  });

  it('an array read out with dataSync is never handed to a later kernel', () => {
    const x = tf.fill([100_000], 2);
    const y = tf.add(x, x);
    const read = y.dataSync();
    y.dispose();
    const z = tf.tidy(() => tf.mul(tf.add(x, 1), 3));
    expect(read[0]).toBe(4);
    expect(read[99_999]).toBe(4);
    tf.dispose([x, z]);
  });

  it('a slice (a view) of a native output survives the disposal of that output', () => {
    const x = tf.fill([200, 500], 1);
    const y = tf.add(x, x);
    const s = tf.slice(y, [100, 0], [50, 500]);
    y.dispose();
    tf.tidy(() => tf.mul(tf.add(x, 5), 7));
    const v = s.dataSync();
    expect(v.every((e) => e === 2)).toBe(true);
    tf.dispose([x, s]);
  });

  it('a step of two phases with arrays of other lengths allocates no fresh output array after warm-up', () => {
    const { maxBytes, floorBytes } = backend.pool;
    // No floor: the budget is twice the peak of arrays in use alone.
    backend.pool.setLimits(maxBytes, 0);
    try {
      const a = tf.randomNormal([200, 300]);
      const b = tf.randomNormal([300, 500]);
      const step = (): number =>
        tf.tidy(() => {
          let u = a;
          for (let i = 0; i < 6; i++) u = tf.exp(tf.mul(tf.add(u, 0.5), 0.01));
          let v = b;
          for (let i = 0; i < 6; i++) v = tf.exp(tf.mul(tf.add(v, 0.5), 0.01));
          return tf.add(tf.sum(u), tf.sum(v)).dataSync()[0];
        });
      const first = step();
      step();
      const allocOutput = backend.allocOutput.bind(backend);
      let fresh = 0;
      let outputs = 0;
      backend.allocOutput = (length: number) => {
        const reused = backend.pool.reused;
        const out = allocOutput(length);
        if (length >= backend.pool.minLength) {
          outputs++;
          if (backend.pool.reused === reused) fresh++;
        }
        return out;
      };
      try {
        for (let i = 0; i < 5; i++) expect(step()).toBe(first);
      } finally {
        backend.allocOutput = allocOutput;
      }
      expect(outputs).toBeGreaterThanOrEqual(5 * 36);
      expect(fresh).toBe(0);
      expect(backend.pool.bytes).toBeLessThanOrEqual(backend.pool.budget);
      tf.dispose([a, b]);
    } finally {
      backend.pool.setLimits(maxBytes, floorBytes);
    }
  });

  it('reuse keeps the tensor count and the pool bounded over many steps', () => {
    const x = tf.randomNormal([300, 400]);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 200; i++) {
      const total = tf.tidy(() => tf.sum(tf.exp(tf.mul(tf.add(x, i), 0.001))));
      total.dataSync();
      total.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(backend.pool.bytes).toBeLessThanOrEqual(backend.pool.maxBytes);
    x.dispose();
  });
});
