/**
 * Benchmark of distributed evolution-strategies steps (the `es` estimator's `workers` option): a private
 * redis-server on a free loopback port (`@bilevel/distributed/testing`), pools of 1, 2 and 4 `bilevel worker`
 * processes (each pool on its own queue), and the same steps run locally — all on the `cpu` backend, every
 * variant taking one timed step per round in turn, so that a drifting load falls on all of them alike. Reports per workload the median
 * milliseconds per outer step (local one by one, local batched, distributed with each worker count), the bytes
 * that travel per step, and the cost model's prediction
 *
 *     T_dist(W) ≈ T_base + t_m + ⌈B / W⌉·blockSize·t_s
 *
 * from measured parts: t_s (one perturbed solve) and T_base (the rest of a local step) from local one-by-one
 * steps with Q and Q/4 directions (a straight line through the two), t_m (the messaging overhead of a step)
 * from the 1-worker step; the 2- and 4-worker predictions are then checked against their measurements. The
 * prediction is also given with W limited to the machine's cores (workers beyond them share cores). Everything
 * runs on this machine, so the workers share its cores with each other (and with anything else running).
 */
import { type ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { initBackend } from '@bilevel/backend';
import { createPipeline, type PipelineSpec, registry } from '@bilevel/core';
import { registerDistributedEs } from '@bilevel/distributed';
import { findRedisServer, startTestRedis } from '@bilevel/distributed/testing';
import '@bilevel/estimators';
import '@bilevel/problems';
import '@bilevel/solvers';
import { median } from './suite/stats';

/** The worker counts measured. */
export const WORKER_COUNTS = [1, 2, 4] as const;

/** One worker count's measurement and the cost model's predictions. */
export interface DistributedEsPoint {
  /** W, the workers. */
  readonly workers: number;
  /** Median ms per outer step, measured. */
  readonly measuredMs: number;
  /** T_base + t_m + ⌈B / W⌉·blockSize·t_s. */
  readonly modelMs: number;
  /** The same with W limited to the machine's cores. */
  readonly modelOnCoresMs: number;
}

/** One workload's timings. */
export interface DistributedEsResult {
  readonly label: string;
  readonly directions: number;
  /** Perturbed solves per job and jobs per step (B). */
  readonly blockSize: number;
  readonly jobs: number;
  /** Median ms per outer step: local one by one, local batched. */
  readonly localMs: number;
  readonly localBatchedMs: number;
  /** The model's parts, measured: one perturbed solve, the rest of a local step, the messaging overhead. */
  readonly solveMs: number;
  readonly baseMs: number;
  readonly messagingMs: number;
  /** One point per worker count (1, 2, 4). */
  readonly points: readonly DistributedEsPoint[];
  /** Bytes sent to and received from Redis per step (the coordinator's side). */
  readonly bytesSent: number;
  readonly bytesReceived: number;
}

/** The machine's load and cores while the benchmark ran. */
export interface DistributedEsRun {
  readonly results: readonly DistributedEsResult[];
  readonly cores: number;
  /** Load average (1 min) at the start and at the end. */
  readonly loadStart: number;
  readonly loadEnd: number;
}

async function waitForText(child: ChildProcess, text: string, what: string): Promise<void> {
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start in 60 s:\n${out}`)), 60_000);
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
  child.stdout?.removeAllListeners('data');
  child.stderr?.removeAllListeners('data');
  child.stdout?.resume();
  child.stderr?.resume();
}

/** A pipeline kept across rounds: one step timed per round (after a warm-up step at creation). */
interface TimedPipeline {
  step(): void;
  readonly times: number[];
  sent: number;
  received: number;
  dispose(): void;
}

function timedPipeline(spec: PipelineSpec): TimedPipeline {
  const pipeline = createPipeline(spec);
  pipeline.trainer.stepOnce(); // warm-up (and the workers' replicas)
  const timed: TimedPipeline = {
    times: [],
    sent: 0,
    received: 0,
    step: () => {
      const t0 = performance.now();
      const ev = pipeline.trainer.stepOnce();
      timed.times.push(performance.now() - t0);
      timed.sent = ev.diagnostics.bytesSent ?? 0;
      timed.received = ev.diagnostics.bytesReceived ?? 0;
    },
    dispose: () => pipeline.dispose(),
  };
  return timed;
}

/** The workloads: a small quadratic (messaging dominates) and a larger one (solves dominate). */
const WORKLOADS = [
  { label: 'quadratic d=100, N=20, Q=20', dimension: 100, iterations: 20, directions: 20 },
  { label: 'quadratic d=400, N=300, Q=16', dimension: 400, iterations: 300, directions: 16 },
];
type Workload = (typeof WORKLOADS)[number];

/** T_base + t_m + ⌈B / W⌉·blockSize·t_s. */
export function costModelMs(
  parts: { baseMs: number; messagingMs: number; solveMs: number; jobs: number; blockSize: number },
  workers: number,
): number {
  return parts.baseMs + parts.messagingMs + Math.ceil(parts.jobs / workers) * parts.blockSize * parts.solveMs;
}

/** Runs the benchmark (needs redis-server and the built `bilevel` command). */
export async function runDistributedEsBench(steps = 5): Promise<DistributedEsRun> {
  if (!findRedisServer()) throw new Error('redis-server is not installed (apt-get install redis-server)');
  const main = path.join(path.dirname(require.resolve('@bilevel/cli/package.json')), 'dist', 'main.js');
  if (!fs.existsSync(main)) throw new Error(`${main} not found: build @bilevel/cli first`);
  // The workers run the cpu backend; so does this process (the same kernels on both sides).
  await initBackend({ backend: 'cpu' });
  // Jobs carry the library version; the workers (the built CLI) refuse another one.
  const version = (JSON.parse(fs.readFileSync(path.join(path.dirname(main), '..', 'package.json'), 'utf8')) as { version: string }).version;
  registerDistributedEs(registry, version);
  const cores = os.cpus().length;
  const loadStart = os.loadavg()[0];
  const redis = await startTestRedis();
  const workers: ChildProcess[] = [];
  try {
    const url = redis.url;
    const startWorker = async (queue: string, name: string): Promise<void> => {
      const child = spawn(process.execPath, [main, '--backend', 'cpu', '--quiet', 'worker', '--queue', queue, '--name', name], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, BILEVEL_BACKEND: '' },
      });
      workers.push(child);
      await waitForText(child, 'taking jobs', `worker ${name}`);
    };
    const spec = (w: Workload, es: Record<string, unknown>, directions = w.directions): PipelineSpec => ({
      problem: { name: 'quadratic', options: { dimension: w.dimension, seed: 0 } },
      innerSolver: { name: 'gd', options: { stepSize: 0.6, maxIterations: w.iterations } },
      estimator: { name: 'es', options: { directions, ...es } },
      outerOptimizer: { name: 'gd', options: { learningRate: 0.05 } },
      trainer: { evalEvery: 0 },
      seed: 1,
    });
    // Unbatched solves on the workers; blocks of Q/4, so that 1, 2 and 4 workers share a step evenly.
    const blockSize = (w: Workload): number => Math.max(1, w.directions / 4);
    // One pool of workers per worker count, each on its own queue, all started first (idle workers wait on
    // Redis without using the CPU); then every variant of a workload takes one timed step per round, in turn,
    // so that the load of the machine, which drifts, falls on all of them alike.
    for (const count of WORKER_COUNTS) {
      for (let i = 1; i <= count; i++) await startWorker(`${url}?queue=w${count}`, `bench-w${count}-${i}`);
    }
    const remote = (w: Workload, count: number): PipelineSpec =>
      spec(w, {
        batchedSolves: false,
        workers: { queue: `${url}?queue=w${count}`, blockSize: blockSize(w), timeoutMs: 600_000 },
      });
    const results: DistributedEsResult[] = [];
    for (const w of WORKLOADS) {
      const variants = {
        local: timedPipeline(spec(w, { batchedSolves: false })),
        quarter: timedPipeline(spec(w, { batchedSolves: false }, w.directions / 4)),
        batched: timedPipeline(spec(w, {})),
        remote: WORKER_COUNTS.map((count) => timedPipeline(remote(w, count))),
      };
      const all = [variants.local, variants.quarter, variants.batched, ...variants.remote];
      try {
        for (let round = 0; round < steps; round++) for (const v of all) v.step();
      } finally {
        for (const v of all) v.dispose();
      }
      const full = median(variants.local.times);
      const quarter = median(variants.quarter.times);
      // A straight line through (Q/4, quarter) and (Q, full): slope t_s, intercept T_base.
      const solveMs = Math.max(0, (full - quarter) / (w.directions - w.directions / 4));
      const baseMs = Math.max(0, full - w.directions * solveMs);
      const jobs = Math.ceil(w.directions / blockSize(w));
      const parts = { baseMs, solveMs, jobs, blockSize: blockSize(w), messagingMs: 0 };
      const measured = variants.remote.map((v) => median(v.times));
      // t_m: what the 1-worker step takes beyond the local step's parts.
      parts.messagingMs = Math.max(0, measured[0] - costModelMs(parts, 1));
      results.push({
        label: w.label,
        directions: w.directions,
        blockSize: blockSize(w),
        jobs,
        localMs: full,
        localBatchedMs: median(variants.batched.times),
        solveMs,
        baseMs,
        messagingMs: parts.messagingMs,
        points: WORKER_COUNTS.map((count, k) => ({
          workers: count,
          measuredMs: measured[k],
          modelMs: costModelMs(parts, count),
          modelOnCoresMs: costModelMs(parts, Math.min(count, cores)),
        })),
        bytesSent: variants.remote[0].sent,
        bytesReceived: variants.remote[0].received,
      });
    }
    return { results, cores, loadStart, loadEnd: os.loadavg()[0] };
  } finally {
    // Ctrl-C for each worker (it removes its private folder); SIGKILL for one still running after 15 s.
    await Promise.all(
      workers.map(async (w) => {
        if (w.exitCode !== null || w.signalCode !== null) return;
        const exited = new Promise((r) => w.once('exit', r));
        w.kill('SIGINT');
        const timer = setTimeout(() => w.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }),
    );
    await redis.stop();
  }
}

/** The results as Markdown: the local steps and the model's parts, then measured against predicted per W. */
export function formatDistributedEsTable(run: DistributedEsRun): string {
  const ms = (v: number): string => `${v.toFixed(0)} ms`;
  const lines = [
    `${run.cores} cores; load average (1 min) ${run.loadStart.toFixed(1)} at the start, ${run.loadEnd.toFixed(1)} at the end.`,
    '',
    '| workload | local, one by one | local, batched | t_s (one solve) | T_base | t_m (from 1 worker) | jobs × block | bytes out / back per step |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const r of run.results) {
    lines.push(
      `| ${r.label} | ${ms(r.localMs)} | ${ms(r.localBatchedMs)} | ${r.solveMs.toFixed(1)} ms | ${ms(r.baseMs)} | ` +
        `${ms(r.messagingMs)} | ${r.jobs} × ${r.blockSize} | ${r.bytesSent} / ${r.bytesReceived} |`,
    );
  }
  lines.push(
    '',
    `| workload | workers | measured | model | model, W ≤ ${run.cores} cores | measured / model (cores) | speed-up over 1 worker |`,
    '|---|---|---|---|---|---|---|',
  );
  for (const r of run.results) {
    const one = r.points[0].measuredMs;
    for (const p of r.points) {
      lines.push(
        `| ${r.label} | ${p.workers} | ${ms(p.measuredMs)} | ${ms(p.modelMs)}${p.workers === 1 ? ' (fit)' : ''} | ` +
          `${ms(p.modelOnCoresMs)} | ${(p.measuredMs / p.modelOnCoresMs).toFixed(2)} | ×${(one / p.measuredMs).toFixed(2)} |`,
      );
    }
  }
  return lines.join('\n');
}
