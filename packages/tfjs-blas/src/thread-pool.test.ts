import { spawnSync } from 'child_process';
import * as tf from '@tensorflow/tfjs-core';
import {
  ADDON_PATH,
  BLAS_BACKEND_NAME,
  blasInfo,
  isBlasAvailable,
  registerBlasBackend,
  setBlasThreads,
  setThreadSpin,
  applySpinFromEnv,
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

  it('gives the same result whether its threads spin between tasks or sleep at once', () => {
    setBlasThreads(2);
    const x = tf.tidy(() => tf.div(tf.range(0, 300_000), 1000)) as tf.Tensor1D;
    const run = (): Buffer => {
      const y = tf.tidy(() => tf.sum(tf.add(tf.exp(tf.neg(x)), tf.mul(x, 0.5)), 0, true));
      const out = Buffer.from((y.dataSync() as Float32Array).slice().buffer);
      y.dispose();
      return out;
    };
    const before = setThreadSpin(0) as number;
    try {
      expect(Number.isInteger(before)).toBe(true);
      const asleep = [run(), run()];
      expect(setThreadSpin(2000)).toBe(0);
      // Back-to-back large ops: the workers are still spinning when the next one comes.
      const spinning = [run(), run(), run()];
      for (const r of [...asleep.slice(1), ...spinning]) expect(Buffer.compare(r, asleep[0])).toBe(0);
    } finally {
      setThreadSpin(before);
    }
    expect(() => setThreadSpin(-1)).toThrow(/microseconds must be an integer from 0 to 100000/);
    expect(() => setThreadSpin(1.5)).toThrow(/got 1.5/);
    expect(() => setThreadSpin(100_001)).toThrow(/0 to 100000/);
    expect(() => applySpinFromEnv({ BILEVEL_BLAS_SPIN_US: 'fast' })).toThrow(
      /BILEVEL_BLAS_SPIN_US='fast' must be/,
    );
    const kept = setThreadSpin(before) as number;
    applySpinFromEnv({ BILEVEL_BLAS_SPIN_US: '7' });
    expect(setThreadSpin(kept)).toBe(7);
    x.dispose();
  });

  it('keeps no process alive: a script that used the pool exits on its own', () => {
    // The addon alone (no tfjs): one large element-wise op starts the workers, then the script ends.
    const script = [
      `const addon = require(${JSON.stringify(ADDON_PATH)});`,
      'addon.setThreads(2);',
      // Workers that spin for the next task (up to 100 ms) must still let the process end.
      'addon.setSpin(100000);',
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
