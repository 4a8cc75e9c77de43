import * as tf from '@tensorflow/tfjs-core';
import {
  BLAS_BACKEND_NAME,
  CHANNEL_AFFINE_KERNEL,
  CHANNEL_MOMENTS_KERNEL,
  CHANNEL_SUMS_KERNEL,
  INSTALL_HINT,
  LEAKY_RELU_GRAD_KERNEL,
  LEAKY_RELU_KERNEL,
  NATIVE_KERNEL_NAMES,
  blasInfo,
  isBlasAvailable,
  preferredOpenBlasCore,
  registerBlasBackend,
  requireNativeBlas,
  setBlasThreads,
  sgemm,
} from './index';
import { maxRelativeError, randomValues, seededRandom } from './test-utils/compare';

const native = isBlasAvailable();
if (!native) {
  console.warn(`skipped the native cpu-blas backend tests: ${blasInfo().reason} (${blasInfo().hint})`);
}

/** Reference product in float64, C = op(A)·op(B), row-major. */
function referenceGemm(
  tA: boolean,
  tB: boolean,
  m: number,
  n: number,
  k: number,
  a: Float32Array,
  b: Float32Array,
): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++)
        s += (tA ? a[p * m + i] : a[i * k + p]) * (tB ? b[j * k + p] : b[p * n + j]);
      c[i * n + j] = s;
    }
  }
  return c;
}

// CI sets BILEVEL_REQUIRE_BLAS=1 after installing libopenblas-dev, so a failed native build fails the run
// instead of only skipping the native tests.
(process.env.BILEVEL_REQUIRE_BLAS === '1' ? it : it.skip)(
  'the native addon is built (BILEVEL_REQUIRE_BLAS=1)',
  () => {
    expect(blasInfo().reason).toBe('');
    expect(isBlasAvailable()).toBe(true);
  },
);

// Runs first, while no cpu-blas backend is registered in this test file's tfjs engine.
describe('preferredOpenBlasCore', () => {
  const cpuinfo = (flags: string) => `processor\t: 0\nmodel name\t: x\nflags\t\t: fpu sse sse2 ${flags}\n`;
  it('asks for the AVX-512 kernels when every AVX-512 subset they use is present', () => {
    expect(preferredOpenBlasCore(cpuinfo('avx2 fma avx512f avx512cd avx512bw avx512dq avx512vl'))).toBe(
      'SkylakeX',
    );
  });
  it('asks for the AVX2 kernels with AVX2 and FMA but an incomplete AVX-512', () => {
    expect(preferredOpenBlasCore(cpuinfo('avx avx2 fma avx512f'))).toBe('Haswell');
  });
  it("leaves older CPUs and other formats to OpenBLAS's own detection", () => {
    expect(preferredOpenBlasCore(cpuinfo('avx'))).toBeUndefined();
    expect(preferredOpenBlasCore('Features\t: fp asimd evtstrm\n')).toBeUndefined();
  });
});

describe('without the native addon', () => {
  it('falls back: not available, registers nothing, says why and how to enable it', () => {
    const saved = process.env.BILEVEL_BLAS_DISABLE;
    process.env.BILEVEL_BLAS_DISABLE = '1';
    try {
      jest.isolateModules(() => {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const blas = require('./index') as typeof import('./index');
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const tfi = require('@tensorflow/tfjs-core') as typeof tf;
        expect(blas.isBlasAvailable()).toBe(false);
        expect(blas.registerBlasBackend()).toBe(false);
        expect(tfi.findBackendFactory(blas.BLAS_BACKEND_NAME)).toBeFalsy();
        const info = blas.blasInfo();
        expect(info.available).toBe(false);
        expect(info.reason).toContain('BILEVEL_BLAS_DISABLE=1');
        expect(info.hint).toBe(INSTALL_HINT);
        expect(info.summary).toContain('libopenblas-dev');
        expect(blas.setBlasThreads(2)).toBe(false);
        expect(() => blas.requireNativeBlas()).toThrow(/npm rebuild @bilevel\/tfjs-blas/);
        expect(() =>
          blas.sgemm(
            false,
            false,
            1,
            1,
            1,
            1,
            new Float32Array(1),
            new Float32Array(1),
            0,
            new Float32Array(1),
          ),
        ).toThrow(/not built|disabled/);
      });
    } finally {
      if (saved === undefined) delete process.env.BILEVEL_BLAS_DISABLE;
      else process.env.BILEVEL_BLAS_DISABLE = saved;
    }
  });

  it('the JS cpu backend still computes everything the native kernels would', async () => {
    await tf.setBackend('cpu');
    const a = tf.tensor2d([1, 2, 3, 4], [2, 2]);
    const y = tf.conv2d(
      tf.ones([1, 3, 3, 1]) as tf.Tensor4D,
      tf.ones([2, 2, 1, 1]) as tf.Tensor4D,
      1,
      'valid',
    );
    expect(Array.from(tf.matMul(a, a).dataSync())).toEqual([7, 10, 15, 22]);
    expect(Array.from(y.dataSync())).toEqual([4, 4, 4, 4]);
    tf.dispose([a, y]);
  });
});

(native ? describe : describe.skip)('the cpu-blas backend (native addon built)', () => {
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('registers under its name with every JS cpu kernel and the native ones in place', async () => {
    expect(registerBlasBackend()).toBe(true);
    expect(registerBlasBackend()).toBe(true); // idempotent
    const cpu = tf
      .getKernelsForBackend('cpu')
      .map((k) => k.kernelName)
      .sort();
    const blas = tf
      .getKernelsForBackend(BLAS_BACKEND_NAME)
      .map((k) => k.kernelName)
      .sort();
    // The kernels of its own (batch norm, LeakyReLU) come on top of the cpu backend's.
    const own = [
      CHANNEL_AFFINE_KERNEL,
      CHANNEL_MOMENTS_KERNEL,
      CHANNEL_SUMS_KERNEL,
      LEAKY_RELU_GRAD_KERNEL,
      LEAKY_RELU_KERNEL,
    ];
    expect(blas).toEqual([...cpu, ...own].sort());
    for (const name of NATIVE_KERNEL_NAMES) {
      const js = tf.getKernel(name, 'cpu');
      if (own.includes(name)) expect(js).toBeUndefined();
      else expect(tf.getKernel(name, BLAS_BACKEND_NAME).kernelFunc).not.toBe(js.kernelFunc);
    }
    expect(await tf.setBackend(BLAS_BACKEND_NAME)).toBe(true);
    expect(tf.getBackend()).toBe(BLAS_BACKEND_NAME);
    // An op without a native kernel runs the copied JS kernel.
    expect(Array.from(tf.add(tf.tensor1d([1, 2]), tf.tensor1d([3, 4])).dataSync())).toEqual([4, 6]);
  });

  it('reports the library, its version and threads', () => {
    const info = blasInfo();
    expect(info.available).toBe(true);
    expect(['OpenBLAS', 'Accelerate']).toContain(info.library);
    if (info.library === 'OpenBLAS') {
      expect(info.version).toMatch(/^\d+\.\d+/);
      expect(info.threads).toBeGreaterThanOrEqual(1);
      expect(info.summary).toContain(`${info.threads} thread`);
    }
    expect(info.reason).toBe('');
  });

  it('sets the thread count (and refuses a bad one)', () => {
    const before = blasInfo().threads;
    if (blasInfo().library === 'OpenBLAS') {
      expect(setBlasThreads(1)).toBe(true);
      expect(blasInfo().threads).toBe(1);
      setBlasThreads(Math.max(1, before));
      expect(blasInfo().threads).toBe(Math.max(1, before));
    }
    expect(() => setBlasThreads(0)).toThrow(/threads must be an integer >= 1/);
    expect(() => setBlasThreads(1.5)).toThrow(/threads must be an integer >= 1/);
  });

  it('raw sgemm agrees with a float64 product for every transpose combination', () => {
    const rand = seededRandom(21);
    for (const [tA, tB] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as [boolean, boolean][]) {
      const [m, n, k] = [37, 23, 51];
      const a = randomValues(rand, [m * k]);
      const b = randomValues(rand, [k * n]);
      const c = randomValues(rand, [m * n]);
      const c0 = Float64Array.from(c);
      sgemm(tA, tB, m, n, k, 0.5, a, b, 2, c);
      const ref = referenceGemm(tA, tB, m, n, k, a, b).map((v, i) => 0.5 * v + 2 * c0[i]);
      expect(maxRelativeError(c, ref)).toBeLessThan(1e-5);
    }
  });

  it('the addon checks its arguments instead of reading out of bounds', () => {
    const addon = requireNativeBlas();
    const small = new Float32Array(4);
    expect(() => addon.sgemm(false, false, 3, 3, 3, 1, small, 3, small, 3, 0, small, 3)).toThrow(/too small/);
    expect(() =>
      addon.batchMatMul(
        small,
        small,
        small,
        Int32Array.from([0, 5]),
        Int32Array.from([0, 0]),
        1,
        2,
        2,
        false,
        false,
        null,
        0,
        0,
      ),
    ).toThrow(/out must hold|out of range/);
    expect(() => addon.conv2d(small, small, small, new Int32Array(3), null, 0, 0)).toThrow(
      /geometry must hold 15/,
    );
    expect(() =>
      addon.conv2dBackpropFilter(
        small,
        small,
        new Float32Array(1),
        Int32Array.from([1, 2, 2, 1, 2, 2, 1, 1, 1, 1, 1, 1, 1, 0, 0]),
      ),
    ).not.toThrow();
    expect(() =>
      addon.conv2dBackpropFilter(
        small,
        small,
        new Float32Array(9),
        Int32Array.from([1, 2, 2, 1, 2, 2, 1, 1, 1, 1, 1, 1, 1, 0, 0]),
      ),
    ).toThrow(/does not match the geometry/);
    expect(() =>
      addon.sgemm(false, false, 1, 1, 1, 1, [1] as unknown as Float32Array, 1, small, 1, 0, small, 1),
    ).toThrow(/a must be a Float32Array/);
  });
});
