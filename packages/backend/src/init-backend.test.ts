import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { ConfigError } from '@bilevel/core';
import { blasInfo, isBlasAvailable } from '@bilevel/tfjs-blas';
import {
  BACKEND_ENV_VAR,
  BackendUnavailableError,
  initBackend,
  listBackends,
  type BackendChoice,
  type BackendSelection,
} from './index';
import { optionalModules } from './optional-modules';

const blas = isBlasAvailable();
if (!blas) console.warn(`skipped the cpu-blas selection tests: ${blasInfo().reason} (${blasInfo().hint})`);

/** Runs initBackend and collects its log lines. */
async function init(
  options: Parameters<typeof initBackend>[0] = {},
): Promise<{ selection: BackendSelection; lines: string[] }> {
  const lines: string[] = [];
  const selection = await initBackend({ ...options, log: (l) => lines.push(l) });
  return { selection, lines };
}

/** Values of a small matMul + conv2d on the current backend. */
function probe(): number[] {
  return tf.tidy(() => {
    const a = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
    const b = tf.tensor2d([1, 0, -1, 2, 0.5, 1], [3, 2]);
    const y = tf.conv2d(
      tf.reshape(tf.range(0, 16, 1, 'float32'), [1, 4, 4, 1]) as tf.Tensor4D,
      tf.ones([2, 2, 1, 1]) as tf.Tensor4D,
      1,
      'valid',
    );
    return [...Array.from(tf.matMul(a, b).dataSync()), ...Array.from(y.dataSync())];
  });
}
// Hand-computed: [1,2,3;4,5,6]·[1,0;-1,2;0.5,1] and 2×2 box sums of 0..15 laid out 4×4.
const PROBE = [0.5, 7, 2, 16, 10, 14, 18, 26, 30, 34, 42, 46, 50];

const savedEnv = process.env[BACKEND_ENV_VAR];
afterEach(async () => {
  if (savedEnv === undefined) delete process.env[BACKEND_ENV_VAR];
  else process.env[BACKEND_ENV_VAR] = savedEnv;
  jest.restoreAllMocks();
  await tf.setBackend('cpu');
});

describe('initBackend: explicit choices', () => {
  beforeEach(() => {
    delete process.env[BACKEND_ENV_VAR];
  });

  it("'cpu' starts the JS backend and logs one line", async () => {
    const { selection, lines } = await init({ backend: 'cpu' });
    expect(selection.name).toBe('cpu');
    expect(selection.chosenBy).toBe('option');
    expect(tf.getBackend()).toBe('cpu');
    expect(lines).toEqual(['bilevel: backend cpu (pure JavaScript, slow); chosen by the backend option']);
    expect(probe()).toEqual(PROBE);
  });

  it("'wasm' starts WebAssembly and computes the same values", async () => {
    const { selection, lines } = await init({ backend: 'wasm' });
    expect(selection.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^bilevel: backend wasm \(WebAssembly/);
    expect(probe()).toEqual(PROBE);
  });

  (blas ? it : it.skip)("'cpu-blas' starts the native BLAS backend with the threads asked for", async () => {
    const { selection, lines } = await init({ backend: 'cpu-blas', threads: 1 });
    expect(selection.name).toBe('cpu-blas');
    expect(tf.getBackend()).toBe('cpu-blas');
    expect(selection.detail).toBe(blasInfo().summary);
    if (blasInfo().library === 'OpenBLAS') expect(blasInfo().threads).toBe(1);
    expect(lines[0]).toContain(`bilevel: backend cpu-blas (${blasInfo().library}`);
    expect(probe()).toEqual(PROBE);
  });

  it("'tensorflow' fails when tfjs-node is not installed, saying how to install it", async () => {
    const attempt = init({ backend: 'tensorflow' });
    await expect(attempt).rejects.toBeInstanceOf(BackendUnavailableError);
    await expect(attempt).rejects.toThrow(
      /backend 'tensorflow' is not available: tfjs-node not installed; .*npm install @tensorflow\/tfjs-node/,
    );
  });

  it("'tensorflow' runs when tfjs-node is present (a stand-in registers the backend)", async () => {
    jest.spyOn(optionalModules, 'load').mockImplementation((name: string) => {
      if (name !== '@tensorflow/tfjs-node') {
        throw Object.assign(new Error(`Cannot find module '${name}'`), { code: 'MODULE_NOT_FOUND' });
      }
      if (!tf.findBackendFactory('tensorflow')) {
        for (const k of tf.getKernelsForBackend('cpu'))
          tf.registerKernel({ ...k, backendName: 'tensorflow' });
        tf.registerBackend('tensorflow', () => new MathBackendCPU(), 3);
      }
      return {};
    });
    try {
      const { selection, lines } = await init({ backend: 'tensorflow' });
      expect(selection.name).toBe('tensorflow');
      expect(tf.getBackend()).toBe('tensorflow');
      expect(lines[0]).toBe(
        'bilevel: backend tensorflow (@tensorflow/tfjs-node, native TensorFlow); chosen by the backend option',
      );
      const auto = await init();
      expect(auto.selection.name).toBe('tensorflow');
      expect(auto.selection.skipped).toEqual([]);
    } finally {
      await tf.setBackend('cpu');
      tf.removeBackend('tensorflow');
    }
  });

  it("'tensorflow' installed but broken: the message names the package and its error", async () => {
    jest.spyOn(optionalModules, 'load').mockImplementation((name: string) => {
      if (name === '@tensorflow/tfjs-node-gpu') {
        throw Object.assign(new Error(`Cannot find module '${name}'`), { code: 'MODULE_NOT_FOUND' });
      }
      throw new Error('libtensorflow.so.2: cannot open shared object file');
    });
    await expect(init({ backend: 'tensorflow' })).rejects.toThrow(
      /@tensorflow\/tfjs-node is installed but failed to load \(libtensorflow\.so\.2: cannot open/,
    );
  });
});

describe('initBackend: auto', () => {
  beforeEach(() => {
    delete process.env[BACKEND_ENV_VAR];
  });

  it('picks the fastest available backend and says why the faster ones were passed over', async () => {
    const { selection, lines } = await init();
    expect(selection.chosenBy).toBe('auto');
    expect(selection.skipped[0]).toEqual({ name: 'tensorflow', reason: 'tfjs-node not installed' });
    expect(selection.name).toBe(blas ? 'cpu-blas' : 'wasm');
    expect(tf.getBackend()).toBe(selection.name);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toBe(
      `bilevel: backend ${selection.name} (${selection.detail}); ` +
        selection.skipped.map((s) => `${s.name}: ${s.reason}`).join('; '),
    );
    if (blas)
      expect(lines[0]).toMatch(
        /^bilevel: backend cpu-blas \((OpenBLAS|Accelerate).*\); tensorflow: tfjs-node not installed$/,
      );
  });

  it('without the native addon it falls back to wasm, and says why cpu-blas was passed over', async () => {
    const saved = process.env.BILEVEL_BLAS_DISABLE;
    process.env.BILEVEL_BLAS_DISABLE = '1';
    try {
      let fresh: typeof import('./index') | undefined;
      jest.isolateModules(() => {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        fresh = require('./index') as typeof import('./index');
      });
      const lines: string[] = [];
      const selection = await (fresh as typeof import('./index')).initBackend({ log: (l) => lines.push(l) });
      expect(selection.name).toBe('wasm');
      expect(selection.skipped.map((s) => s.name)).toEqual(['tensorflow', 'cpu-blas']);
      expect(selection.skipped[1].reason).toContain('BILEVEL_BLAS_DISABLE=1');
      expect(lines[0]).toMatch(
        /^bilevel: backend wasm \(.*\); tensorflow: tfjs-node not installed; cpu-blas: native addon disabled/,
      );
      // 'cpu-blas' asked for explicitly now fails with the install hint.
      await expect(
        (fresh as typeof import('./index')).initBackend({ backend: 'cpu-blas', log: () => undefined }),
      ).rejects.toThrow(
        /backend 'cpu-blas' is not available: .*libopenblas-dev.*npm rebuild @bilevel\/tfjs-blas/,
      );
    } finally {
      if (saved === undefined) delete process.env.BILEVEL_BLAS_DISABLE;
      else process.env.BILEVEL_BLAS_DISABLE = saved;
    }
  });
});

describe('initBackend: environment variable and validation', () => {
  it(`${BACKEND_ENV_VAR} chooses when the option is absent or 'auto'`, async () => {
    process.env[BACKEND_ENV_VAR] = 'wasm';
    const { selection, lines } = await init();
    expect(selection.name).toBe('wasm');
    expect(selection.chosenBy).toBe('environment');
    expect(lines[0]).toMatch(new RegExp(`; chosen by ${BACKEND_ENV_VAR}=wasm$`));
    process.env[BACKEND_ENV_VAR] = 'cpu';
    expect((await init({ backend: 'auto' })).selection.name).toBe('cpu');
  });

  it('the backend option wins over the environment variable', async () => {
    process.env[BACKEND_ENV_VAR] = 'wasm';
    const { selection } = await init({ backend: 'cpu' });
    expect(selection.name).toBe('cpu');
    expect(selection.chosenBy).toBe('option');
  });

  it('an invalid name fails with a ConfigError naming the field and the allowed values', async () => {
    delete process.env[BACKEND_ENV_VAR];
    const bad = init({ backend: 'gpu' as BackendChoice });
    await expect(bad).rejects.toBeInstanceOf(ConfigError);
    await expect(bad).rejects.toThrow(
      /^backend: must be one of 'auto', 'tensorflow', 'cpu-blas', 'wasm', 'cpu' \(got "gpu"\)/,
    );
    process.env[BACKEND_ENV_VAR] = 'webgl';
    await expect(init()).rejects.toThrow(
      new ConfigError(
        `${BACKEND_ENV_VAR}: must be one of 'auto', 'tensorflow', 'cpu-blas', 'wasm', 'cpu' (got "webgl")`,
      ),
    );
    delete process.env[BACKEND_ENV_VAR];
    await expect(init({ threads: 0 })).rejects.toThrow(/^threads: Number must be greater than or equal to 1/);
    await expect(init({ backend: 'cpu', thread: 2 } as Parameters<typeof initBackend>[0])).rejects.toThrow(
      /unknown option\(s\) 'thread'/,
    );
  });

  it('says when the threads option does not apply', async () => {
    delete process.env[BACKEND_ENV_VAR];
    const { lines } = await init({ backend: 'cpu', threads: 2 });
    expect(lines[1]).toBe('bilevel: the threads option applies to cpu-blas only; cpu ignores it');
  });
});

describe('listBackends', () => {
  it('reports each backend, fastest first, with availability and the reason', async () => {
    await init({ backend: 'cpu' });
    const list = listBackends();
    expect(list.map((b) => b.name)).toEqual(['tensorflow', 'cpu-blas', 'wasm', 'cpu']);
    const byName = Object.fromEntries(list.map((b) => [b.name, b]));
    expect(byName.tensorflow.available).toBe(false);
    expect(byName.tensorflow.reason).toMatch(
      /^tfjs-node not installed; to enable it, install @tensorflow\/tfjs-node/,
    );
    expect(byName['cpu-blas'].available).toBe(blas);
    expect(byName['cpu-blas'].reason).toContain(blas ? blasInfo().summary : 'libopenblas-dev');
    expect(byName.wasm.available).toBe(true);
    expect(byName.cpu).toEqual({
      name: 'cpu',
      available: true,
      reason: 'pure JavaScript, slow',
      active: true,
    });
    expect(list.filter((b) => b.active).map((b) => b.name)).toEqual(['cpu']);
  });

  it('sees tfjs-node when it is installed', () => {
    jest
      .spyOn(optionalModules, 'resolve')
      .mockImplementation((name: string) =>
        name === '@tensorflow/tfjs-node' ? '/somewhere/tfjs-node/dist/index.js' : null,
      );
    const tfNode = listBackends()[0];
    expect(tfNode).toEqual({
      name: 'tensorflow',
      available: true,
      reason: '@tensorflow/tfjs-node installed',
      active: false,
    });
  });
});
