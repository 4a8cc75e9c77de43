/**
 * Distributed evolution-strategies steps on a real Redis (a private redis-server on a free loopback port) with
 * `bilevel worker` child processes of the built executable: the `es` estimator with `workers` gives the local
 * estimate to float32 rounding for the same seed (deterministic quadratic; antithetic ESJ-S with minibatch
 * replay on synthetic hyper-cleaning) with 2 workers, and with 1 and 3 workers on the quadratic with d = 100
 * and small hyper-cleaning; also when a worker is killed mid-step; a step nobody answers fails after its
 * timeout naming the missing jobs.
 */
import { spawn } from 'child_process';
import * as tf from '@tensorflow/tfjs-core';
import { Queue } from 'bullmq';
import { parseQueueUrl } from '@bilevel/distributed';
import { createPipeline, type PipelineSpec, treeFlatten, treeFromData } from '@bilevel/core';
import '@bilevel/problems';
import '@bilevel/solvers';
import '@bilevel/estimators';
import {
  redisSkipReason,
  startTestRedis,
  type TestRedis,
} from '@bilevel/distributed/testing';
// Registers the executor factory of the `workers` option (as the bilevel command does).
import './distributed';
import { type CliProcess, CliProcesses, workerReady } from './test-utils/cli-processes';
import { makeTempDir } from './test-utils/helpers';

const skip = redisSkipReason();
if (skip) console.warn(skip);
const describeRedis = skip ? describe.skip : describe;

type Proc = CliProcess;

const tmp = makeTempDir('bilevel-dist-es-');
const processes = new CliProcesses(tmp.dir);

function startWorker(url: string, name: string, extra: string[] = []): Proc {
  return processes.start(['worker', '--queue', url, '--name', name, ...extra]);
}

const ready = (worker: Proc): Promise<void> => workerReady(worker);

/** Runs `steps` outer steps of `spec` in this process; returns x after each step and the last diagnostics. */
function run(
  spec: PipelineSpec,
  steps: number,
): { xs: Float32Array[]; diagnostics: Record<string, number>; calls: number } {
  const pipeline = createPipeline(spec);
  try {
    const xs: Float32Array[] = [];
    let diagnostics: Record<string, number> = {};
    for (let k = 0; k < steps; k++) {
      diagnostics = pipeline.trainer.stepOnce().diagnostics;
      const x = treeFromData(pipeline.trainer.getState().x);
      xs.push(tf.tidy(() => treeFlatten(x).dataSync() as Float32Array));
      Object.values(x).forEach((t) => t.dispose());
    }
    const calls = Object.values(pipeline.oracles.counts).reduce((s, v) => s + v, 0);
    return { xs, diagnostics, calls };
  } finally {
    pipeline.dispose();
  }
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(a[i]));
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
  }
  return diff / scale;
}

function quadratic(es: Record<string, unknown>, seed = 3, iterations = 15, dimension = 20): PipelineSpec {
  return {
    problem: { name: 'quadratic', options: { dimension, seed: 0 } },
    innerSolver: { name: 'gd', options: { stepSize: 0.6, maxIterations: iterations } },
    estimator: { name: 'es', options: es },
    outerOptimizer: { name: 'gd', options: { learningRate: 0.05 } },
    trainer: { evalEvery: 0 },
    seed,
  };
}

/** Small synthetic hyper-cleaning with minibatches (ESJ-S: the workers replay the step's inner batches). */
function hyperCleaning(es: Record<string, unknown>): PipelineSpec {
  return {
    problem: {
      name: 'hyper-cleaning',
      options: {
        dataset: 'synthetic',
        trainSamples: 60,
        validationSamples: 30,
        testSamples: 0,
        batchSize: 16,
        synthetic: { features: 5, classes: 3 },
        seed: 1,
      },
    },
    innerSolver: { name: 'gd', options: { stepSize: 0.5, maxIterations: 8 } },
    estimator: { name: 'es', options: es },
    outerOptimizer: { name: 'gd', options: { learningRate: 1 } },
    trainer: { evalEvery: 0 },
    seed: 5,
  };
}

describeRedis('distributed ES (the es estimator with workers)', () => {
  let redis: TestRedis;
  const workers: Proc[] = [];

  beforeAll(async () => {
    redis = await startTestRedis();
    workers.push(startWorker(redis.url, 'w1'), startWorker(redis.url, 'w2'));
    await Promise.all(workers.map(ready));
  }, 60_000);

  afterAll(async () => {
    processes.killAll();
    await Promise.all(workers.map((w) => w.done));
    await redis?.stop();
    tmp.cleanup();
  });

  it('equals the local estimate to float32 rounding for the same seed (quadratic, 2 workers)', () => {
    const options = { directions: 6, smoothing: 0.01 };
    const local = run(quadratic(options), 3);
    const tensors = tf.memory().numTensors;
    const remote = run(
      quadratic({ ...options, workers: { queue: redis.url, blockSize: 2, timeoutMs: 30_000 } }),
      3,
    );
    // Every tensor of the distributed steps is released with the pipeline.
    expect(tf.memory().numTensors).toBe(tensors);
    for (let k = 0; k < 3; k++) expect(maxRelDiff(remote.xs[k], local.xs[k])).toBeLessThan(1e-5);
    // The same cost is charged: the workers' oracle calls are added to the coordinator's counts.
    expect(remote.calls).toBe(local.calls);
    expect(remote.diagnostics.perturbedSolves).toBe(6);
    // x (20 floats), y0, y_N(x), ∇_y f (20 each) and a 24-byte header once; the jobs' payloads and results.
    expect(remote.diagnostics.bytesSent).toBeGreaterThan(24 + 4 * 80);
    expect(remote.diagnostics.bytesReceived).toBeGreaterThan(0);
    // The comparison can fail: another seed's directions give another iterate.
    const other = run(quadratic(options, 4), 3);
    expect(maxRelDiff(other.xs[2], local.xs[2])).toBeGreaterThan(1e-3);
  });

  it('antithetic ESJ-S on minibatches replays the step’s batches on the workers (synthetic hyper-cleaning)', () => {
    const spec = hyperCleaning;
    const options = { directions: 5, smoothing: 0.05, antithetic: true };
    // Five steps of batch 16 out of 60 samples: the samplers pass an epoch boundary.
    const local = run(spec(options), 5);
    const remote = run(
      spec({ ...options, workers: { queue: redis.url, blockSize: 3, timeoutMs: 30_000 } }),
      5,
    );
    expect(remote.diagnostics.perturbedSolves).toBe(10);
    for (let k = 0; k < 5; k++) expect(maxRelDiff(remote.xs[k], local.xs[k])).toBeLessThan(1e-5);
    expect(remote.calls).toBe(local.calls);
  });

  // The worker counts: 1 and 3 (the tests above use 2). Each count has its own queue on the same Redis
  // and its workers are started once for both problems.
  describe.each([1, 3])('with %i worker(s)', (count) => {
    const queue = `w${count}`;
    const url = (): string => `${redis.url}?queue=${queue}`;
    const pool: Proc[] = [];

    beforeAll(async () => {
      for (let i = 1; i <= count; i++) pool.push(startWorker(url(), `${queue}-${i}`));
      await Promise.all(pool.map(ready));
    }, 60_000);

    afterAll(async () => {
      pool.forEach((w) => w.child.kill('SIGINT'));
      await Promise.all(pool.map((w) => w.done));
    });

    /** The names of the workers that completed the queue's perturbed-solve jobs so far. */
    async function blockWorkers(): Promise<string[]> {
      const q = new Queue(`${queue}-es`, { connection: parseQueueUrl(redis.url).connection });
      try {
        const jobs = await q.getJobs(['completed'], 0, -1);
        return jobs.map((j) => j.processedBy ?? '?');
      } finally {
        await q.close();
      }
    }

    it('equals the local estimate on the quadratic, d = 100', async () => {
      const options = { directions: 9, smoothing: 0.01 };
      const local = run(quadratic(options, 3, 15, 100), 3);
      const remote = run(
        quadratic({ ...options, workers: { queue: url(), blockSize: 1, timeoutMs: 30_000 } }, 3, 15, 100),
        3,
      );
      for (let k = 0; k < 3; k++) expect(maxRelDiff(remote.xs[k], local.xs[k])).toBeLessThan(1e-5);
      expect(remote.calls).toBe(local.calls);
      expect(remote.diagnostics.perturbedSolves).toBe(9);
      // x, y0, y_N(x) and ∇_y f (100 floats each) once per step, plus the 9 jobs.
      expect(remote.diagnostics.bytesSent).toBeGreaterThan(24 + 4 * 400);
      // Every block was solved by this pool's workers (by name, `<worker>/es`).
      const by = await blockWorkers();
      expect(by).toHaveLength(27);
      for (const w of by) expect(w).toMatch(new RegExp(`^${queue}-[1-${count}]/es$`));
      if (count > 1) expect(new Set(by).size).toBeGreaterThan(1);
    }, 60_000);

    it('equals the local estimate on small hyper-cleaning (antithetic ESJ-S, minibatches)', () => {
      const options = { directions: 4, smoothing: 0.05, antithetic: true };
      // Five steps of batch 16 out of 60 samples: the samplers pass an epoch boundary.
      const local = run(hyperCleaning(options), 5);
      const remote = run(
        hyperCleaning({ ...options, workers: { queue: url(), blockSize: 2, timeoutMs: 30_000 } }),
        5,
      );
      expect(remote.diagnostics.perturbedSolves).toBe(8);
      for (let k = 0; k < 5; k++) expect(maxRelDiff(remote.xs[k], local.xs[k])).toBeLessThan(1e-5);
      expect(remote.calls).toBe(local.calls);
    }, 60_000);

    it('`bilevel status` lists the ES queue: its blocks by state and the attached workers', async () => {
      const status = processes.start(['status', '--queue', url()]);
      expect(await status.done).toBe(0);
      // 27 blocks of the quadratic (3 steps of 9) and 20 of hyper-cleaning (5 steps of 4).
      expect(status.out()).toMatch(
        new RegExp(`distributed-ES queue ${queue}-es: waiting 0, active 0, failed 0, completed 47`),
      );
      const names = Array.from({ length: count }, (_, i) => `${queue}-${i + 1}/es`);
      const attached = /workers attached \((\d+)\): (.*)/.exec(status.out());
      expect(attached?.[1]).toBe(String(count));
      expect(attached?.[2].split(', ').sort()).toEqual(names);
    }, 30_000);
  });

  it('with a Jacobian memory (directions sent, whole responses back) equals the local estimate (2 workers)', () => {
    // d = 30, Q = 6, memory 18: the memory fills at step 3 and then drops its oldest rows; antithetic too.
    for (const antithetic of [false, true]) {
      const options = { directions: 6, smoothing: 0.01, memory: 18, antithetic };
      const local = run(quadratic(options, 3, 15, 30), 5);
      const tensors = tf.memory().numTensors;
      const remote = run(
        quadratic({ ...options, workers: { queue: redis.url, blockSize: 4, timeoutMs: 30_000 } }, 3, 15, 30),
        5,
      );
      expect(tf.memory().numTensors).toBe(tensors);
      for (let k = 0; k < 5; k++) expect(maxRelDiff(remote.xs[k], local.xs[k])).toBeLessThan(1e-5);
      expect(remote.calls).toBe(local.calls);
      expect(remote.diagnostics.memoryRank).toBe(local.diagnostics.memoryRank);
      expect(remote.diagnostics.memoryRank).toBe(12);
      const J = antithetic ? 12 : 6;
      expect(remote.diagnostics.perturbedSolves).toBe(J);
      // Out: the value with x, y0, y_N, ∇_y f and the 6 directions of dim 30; back: J responses of dim 30
      // (base64 float32).
      expect(remote.diagnostics.bytesSent).toBeGreaterThan(28 + 4 * (4 * 30 + 6 * 30));
      expect(remote.diagnostics.bytesReceived).toBeGreaterThan((4 * J * 30 * 4) / 3);
    }
    // On small hyper-cleaning with minibatches (ESJ-S): x has 60 entries, y 18.
    const options = { directions: 5, smoothing: 0.05, memory: 20 };
    const local = run(hyperCleaning(options), 5);
    const remote = run(
      hyperCleaning({ ...options, workers: { queue: redis.url, blockSize: 2, timeoutMs: 30_000 } }),
      5,
    );
    for (let k = 0; k < 5; k++) expect(maxRelDiff(remote.xs[k], local.xs[k])).toBeLessThan(1e-5);
    expect(remote.calls).toBe(local.calls);
  }, 60_000);

  it('a step that no worker answers fails after its timeout, naming the missing jobs', () => {
    const pipeline = createPipeline(
      quadratic({
        directions: 4,
        workers: { queue: `${redis.url}?queue=nobody`, blockSize: 2, timeoutMs: 1500 },
      }),
    );
    try {
      expect(() => pipeline.trainer.stepOnce()).toThrow(
        /ES step 1: 2 of 2 perturbed-solve jobs did not finish within 1500 ms .*es-[0-9a-z]+-[0-9a-f]+:0:0 \(waiting: no worker took it\), .*:0:2 \(waiting/,
      );
    } finally {
      pipeline.dispose();
    }
  });

  it('a worker killed mid-step does not change the result: its block is redone by another worker', async () => {
    // Workers with short locks, so a killed worker's block is taken over within a second or two.
    const fast = [
      startWorker(`${redis.url}?queue=fast`, 'f1', ['--lock-duration', '1500', '--stalled-interval', '500']),
      startWorker(`${redis.url}?queue=fast`, 'f2', ['--lock-duration', '1500', '--stalled-interval', '500']),
    ];
    await Promise.all(fast.map(ready));
    // Solves long enough that the step is still running when f1 is killed (one solve per job).
    const options = { directions: 16, smoothing: 0.01 };
    const local = run(quadratic(options, 3, 600, 40), 1);
    // The step blocks this thread: the kill comes from a shell started before it.
    const killer = spawn('sh', ['-c', `sleep 0.8; kill -9 ${fast[0].child.pid}`], { stdio: 'ignore' });
    const remote = run(
      quadratic(
        { ...options, workers: { queue: `${redis.url}?queue=fast`, blockSize: 1, timeoutMs: 60_000 } },
        3,
        600,
        40,
      ),
      1,
    );
    await new Promise((r) => killer.on('close', r));
    await fast[0].done;
    expect(fast[0].child.signalCode).toBe('SIGKILL');
    expect(maxRelDiff(remote.xs[0], local.xs[0])).toBeLessThan(1e-5);
    // A block was started twice: by f1, killed during it, then by f2 (otherwise the kill proved nothing).
    const queue = new Queue('fast-es', { connection: parseQueueUrl(redis.url).connection });
    const completed = await queue.getJobs(['completed']);
    await queue.close();
    expect(completed).toHaveLength(16);
    expect(completed.filter((j) => j.attemptsStarted >= 2).map((j) => j.processedBy)).toContain('f2/es');
    fast[1].child.kill('SIGINT');
    await fast[1].done;
  }, 90_000);
});
