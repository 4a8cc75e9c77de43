/**
 * Benchmark of distributed evolution-strategies steps (the `es` estimator's `workers` option): a private
 * redis-server on a free loopback port, 1 and then 2 `bilevel worker` processes, and the same steps run
 * locally. Reports per workload the median milliseconds per outer step — local one by one, local batched,
 * distributed with 1 and 2 workers — and the bytes that travel per step. Everything runs on this machine, so
 * the workers share its cores with each other (and with anything else running).
 */
import { type ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { createPipeline, type PipelineSpec, registry } from '@bilevel/core';
import { registerDistributedEs } from '@bilevel/distributed';
import '@bilevel/estimators';
import '@bilevel/problems';
import '@bilevel/solvers';
import { median } from './suite/stats';

/** One workload's timings. */
export interface DistributedEsResult {
  readonly label: string;
  readonly directions: number;
  /** Median ms per outer step: local one by one, local batched, 1 worker, 2 workers. */
  readonly localMs: number;
  readonly localBatchedMs: number;
  readonly oneWorkerMs: number;
  readonly twoWorkersMs: number;
  /** Bytes sent to and received from Redis per step (the coordinator's side). */
  readonly bytesSent: number;
  readonly bytesReceived: number;
}


function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

async function waitForText(child: ChildProcess, text: string, what: string): Promise<void> {
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start in 30 s:\n${out}`)), 30_000);
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (out.includes(text)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with code ${code}:\n${out}`));
    });
  });
  child.removeAllListeners('exit');
}

function stepTimes(spec: PipelineSpec, steps: number): { ms: number; sent: number; received: number } {
  const pipeline = createPipeline(spec);
  try {
    pipeline.trainer.stepOnce(); // warm-up (and the workers' replicas)
    const times: number[] = [];
    let sent = 0;
    let received = 0;
    for (let k = 0; k < steps; k++) {
      const t0 = performance.now();
      const ev = pipeline.trainer.stepOnce();
      times.push(performance.now() - t0);
      sent = ev.diagnostics.bytesSent ?? 0;
      received = ev.diagnostics.bytesReceived ?? 0;
    }
    return { ms: median(times), sent, received };
  } finally {
    pipeline.dispose();
  }
}

/** The workloads: a small quadratic (messaging dominates) and a larger one (solves dominate). */
const WORKLOADS = [
  { label: 'quadratic d=100, N=20, Q=20', dimension: 100, iterations: 20, directions: 20 },
  { label: 'quadratic d=400, N=300, Q=16', dimension: 400, iterations: 300, directions: 16 },
];

/** Runs the benchmark (needs redis-server and the built `bilevel` command). */
export async function runDistributedEsBench(steps = 3): Promise<DistributedEsResult[]> {
  const which = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const redisBin = which.stdout.trim();
  if (which.status !== 0 || !redisBin) throw new Error('redis-server is not installed (apt-get install redis-server)');
  const main = path.join(path.dirname(require.resolve('@bilevel/cli/package.json')), 'dist', 'main.js');
  if (!fs.existsSync(main)) throw new Error(`${main} not found: build @bilevel/cli first`);
  // Jobs carry the library version; the workers (the built CLI) refuse another one.
  const version = (JSON.parse(fs.readFileSync(path.join(path.dirname(main), '..', 'package.json'), 'utf8')) as { version: string }).version;
  registerDistributedEs(registry, version);
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bilevel-bench-redis-'));
  const redis = spawn(redisBin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const workers: ChildProcess[] = [];
  try {
    await waitForText(redis, 'Ready to accept connections', 'redis-server');
    const url = `redis://127.0.0.1:${port}`;
    const startWorker = async (name: string): Promise<void> => {
      const child = spawn(process.execPath, [main, '--backend', 'cpu', '--quiet', 'worker', '--queue', url, '--name', name], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, BILEVEL_BACKEND: '' },
      });
      workers.push(child);
      await waitForText(child, 'taking jobs', `worker ${name}`);
    };
    const results: DistributedEsResult[] = [];
    const timings = new Map<string, { local: number; batched: number; one: number; two: number; sent: number; received: number }>();
    const spec = (w: (typeof WORKLOADS)[number], es: Record<string, unknown>): PipelineSpec => ({
      problem: { name: 'quadratic', options: { dimension: w.dimension, seed: 0 } },
      innerSolver: { name: 'gd', options: { stepSize: 0.6, maxIterations: w.iterations } },
      estimator: { name: 'es', options: { directions: w.directions, ...es } },
      outerOptimizer: { name: 'gd', options: { learningRate: 0.05 } },
      trainer: { evalEvery: 0 },
      seed: 1,
    });
    for (const w of WORKLOADS) {
      timings.set(w.label, {
        local: stepTimes(spec(w, { batchedSolves: false }), steps).ms,
        batched: stepTimes(spec(w, {}), steps).ms,
        one: 0,
        two: 0,
        sent: 0,
        received: 0,
      });
    }
    // Unbatched solves on the workers; blocks of Q/4, so that two workers share a step evenly.
    const remote = (w: (typeof WORKLOADS)[number]) =>
      spec(w, { batchedSolves: false, workers: { queue: url, blockSize: Math.max(1, w.directions / 4), timeoutMs: 600_000 } });
    await startWorker('bench-1');
    for (const w of WORKLOADS) {
      const r = stepTimes(remote(w), steps);
      Object.assign(timings.get(w.label)!, { one: r.ms, sent: r.sent, received: r.received });
    }
    await startWorker('bench-2');
    for (const w of WORKLOADS) timings.get(w.label)!.two = stepTimes(remote(w), steps).ms;
    for (const w of WORKLOADS) {
      const t = timings.get(w.label)!;
      results.push({
        label: w.label,
        directions: w.directions,
        localMs: t.local,
        localBatchedMs: t.batched,
        oneWorkerMs: t.one,
        twoWorkersMs: t.two,
        bytesSent: t.sent,
        bytesReceived: t.received,
      });
    }
    return results;
  } finally {
    for (const w of workers) w.kill('SIGKILL');
    redis.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The results as a Markdown table. */
export function formatDistributedEsTable(results: readonly DistributedEsResult[]): string {
  const lines = [
    '| workload | local, one by one | local, batched | 1 worker | 2 workers | 1 → 2 workers | bytes sent / received per step |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    lines.push(
      `| ${r.label} | ${r.localMs.toFixed(0)} ms | ${r.localBatchedMs.toFixed(0)} ms | ${r.oneWorkerMs.toFixed(0)} ms | ` +
        `${r.twoWorkersMs.toFixed(0)} ms | ×${(r.oneWorkerMs / r.twoWorkersMs).toFixed(2)} | ${r.bytesSent} / ${r.bytesReceived} |`,
    );
  }
  return lines.join('\n');
}
