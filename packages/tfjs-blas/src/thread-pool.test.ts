import { spawnSync } from 'child_process';
import * as tf from '@tensorflow/tfjs-core';
import {
  ADDON_PATH,
  BLAS_BACKEND_NAME,
  blasInfo,
  isBlasAvailable,
  registerBlasBackend,
  setBlasThreads,
} from './index';

const native = isBlasAvailable();
if (!native) console.warn(`skipped the worker-pool tests: ${blasInfo().reason} (${blasInfo().hint})`);

(native ? describe : describe.skip)('the element-wise worker pool', () => {
  beforeAll(async () => {
    expect(registerBlasBackend()).toBe(true);
    await tf.setBackend(BLAS_BACKEND_NAME);
  });
  afterAll(async () => {
    setBlasThreads(2);
    await tf.setBackend('cpu');
  });

  it('gives the same result with 1, 2 and 3 threads, changed back and forth between large ops', () => {
    const x = tf.tidy(() => tf.div(tf.range(0, 300_000), 1000)) as tf.Tensor1D;
    const results: Float32Array[] = [];
    for (const threads of [1, 2, 3, 1, 3, 2]) {
      setBlasThreads(threads);
      const y = tf.tidy(() => tf.add(tf.exp(tf.neg(x)), tf.mul(x, 0.5)));
      results.push(y.dataSync() as Float32Array);
      y.dispose();
    }
    for (const r of results.slice(1))
      expect(Buffer.compare(Buffer.from(r.buffer), Buffer.from(results[0].buffer))).toBe(0);
    x.dispose();
  });

  it('keeps no process alive: a script that used the pool exits on its own', () => {
    // The addon alone (no tfjs): one large element-wise op starts the workers, then the script ends.
    const script = [
      `const addon = require(${JSON.stringify(ADDON_PATH)});`,
      'addon.setThreads(2);',
      'const n = 400000;',
      'const a = new Float32Array(n).fill(1);',
      'const out = new Float32Array(n);',
      'addon.binary(0, a, Int32Array.of(1), a, Int32Array.of(1), out, Int32Array.of(n));',
      'process.stdout.write(String(out.reduce((s, v) => s + v, 0)));',
    ].join('\n');
    const run = spawnSync(process.execPath, ['-e', script], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect({
      status: run.status,
      signal: run.signal,
      out: run.stdout,
      err: run.stderr.slice(0, 300),
    }).toEqual({
      status: 0,
      signal: null,
      out: '800000',
      err: '',
    });
  });
});
