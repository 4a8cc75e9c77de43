/**
 * Checkpoints and `resume` in-process: an experiment interrupted mid-run and resumed gives exactly the rows
 * and final results of an uninterrupted run, finished runs are kept, a damaged newest checkpoint falls back to
 * the previous one, and the metrics files never hold a step twice.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { listCheckpoints } from '@bilevel/core';
import './plugins';
import './test-utils/test-plugins';
import { runCli } from './cli';
import { loadResumePlan, planExperiment } from './config';
import { checkpointDir, type ExperimentResult, runExperiment } from './run-experiment';
import { readRunRows, type MetricsRow } from './run-recorder';
import { CaptureStream, makeTempDir, readCsv } from './test-utils/helpers';

const tmp = makeTempDir();
afterAll(() => tmp.cleanup());
let counter = 0;
const outDir = (): string => path.join(tmp.dir, `out-${++counter}`);

/**
 * Two methods with state that must travel through a checkpoint: AID-CG with only 2 CG steps per estimate (so
 * each estimate depends on the warm start carried from the step before) and Adam (moments, step count), and
 * ESJ (random directions from the run's generator) with momentum.
 */
function config(dir: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'resumable',
    problem: { name: 'test-quadratic', options: { dimension: 5 } },
    methods: [
      {
        label: 'cg-adam',
        innerSolver: { name: 'test-gd', options: { iterations: 5 } },
        estimator: { name: 'cg', options: { maxIterations: 2, tolerance: 0 } },
        outerOptimizer: { name: 'adam', options: { learningRate: 0.05 } },
      },
      {
        label: 'es-momentum',
        innerSolver: { name: 'test-gd', options: { iterations: 5 } },
        estimator: { name: 'es', options: { directions: 3 } },
        outerOptimizer: { name: 'momentum', options: { learningRate: 0.05 } },
      },
    ],
    trainer: { steps: 12, evalEvery: 3 },
    seeds: [0],
    checkpoint: { every: 4, keep: 2 },
    progress: { everySteps: 1 },
    output: { dir, plots: false },
    ...extra,
  };
}

/** The numbers of a row, without the clock readings. */
function numbers(row: MetricsRow): Omit<MetricsRow, 'time' | 'wallTime'> {
  const { time: _t, wallTime: _w, ...rest } = row;
  return rest;
}

async function run(dir: string, stopAt?: { label: string; step: number }, resume = false): Promise<ExperimentResult & { log: string }> {
  const controller = new AbortController();
  const stdout = new CaptureStream(false, (chunk) => {
    if (stopAt && chunk.includes(`[${stopAt.label} · seed 0] step ${stopAt.step}/`)) controller.abort();
  });
  const plan = resume ? loadResumePlan(dir) : planExperiment(config(dir));
  const result = await runExperiment(plan, { stdout, initBackend: false, signal: controller.signal, resume: resume ? dir : undefined });
  return { ...result, log: stdout.text };
}

const reference = outDir();
let referenceResult: ExperimentResult;
beforeAll(async () => {
  referenceResult = await run(reference);
});

function expectSameAsReference(dir: string, result: ExperimentResult): void {
  expect(result.exitCode).toBe(0);
  expect(result.summary.status).toBe('completed');
  for (const file of ['cg-adam-seed0', 'es-momentum-seed0']) {
    const rows = readRunRows(path.join(dir, 'runs', `${file}.jsonl`));
    const want = readRunRows(path.join(reference, 'runs', `${file}.jsonl`));
    expect(rows.map((r) => r.step)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(rows.map(numbers)).toEqual(want.map(numbers));
    const csv = readCsv(path.join(dir, 'runs', `${file}.csv`));
    expect(csv.rows.map((r) => Number(r.step))).toEqual(rows.map((r) => r.step));
    expect(csv.rows.map((r) => Number(r.outerLoss))).toEqual(rows.map((r) => r.outerLoss));
  }
  result.summary.runs.forEach((r, i) => {
    const want = referenceResult.summary.runs[i];
    expect([r.method, r.status, r.steps]).toEqual([want.method, 'completed', 12]);
    expect(r.finalOuterLoss).toBe(want.finalOuterLoss);
    expect(r.finalMetrics).toEqual(want.finalMetrics);
    expect(r.oracleCalls).toEqual(want.oracleCalls);
  });
  // A finished run's checkpoints are removed.
  expect(fs.existsSync(path.join(dir, 'checkpoints'))).toBe(false);
}

describe('checkpoints and resume', () => {
  it('the uninterrupted reference run checkpoints nothing that outlives it and records resume information', () => {
    expect(referenceResult.exitCode).toBe(0);
    expect(fs.existsSync(path.join(reference, 'checkpoints'))).toBe(false);
    const resolved = JSON.parse(fs.readFileSync(path.join(reference, 'config.resolved.json'), 'utf8'));
    expect(resolved.experiment.checkpoint).toEqual({ every: 4, keep: 2, onInterrupt: true, final: false });
    expect(resolved.checkpoint).toEqual({ every: 4, keep: 2, onInterrupt: true, final: false });
  });

  it('interrupted in the first run, then resumed: the same rows and results as without the interruption', async () => {
    const dir = outDir();
    const tensors = tf.memory().numTensors;
    const first = await run(dir, { label: 'cg-adam', step: 6 });
    expect(first.exitCode).toBe(130);
    expect(first.log).toMatch(/continue with: bilevel resume /);
    // Every 4 steps, and at the interruption (step 6).
    const files = listCheckpoints(path.join(dir, checkpointDir('cg-adam-seed0'))).map((f) => path.basename(f));
    expect(files).toEqual(['checkpoint-00000004.safetensors', 'checkpoint-00000006.safetensors']);
    expect(first.summary.runs.map((r) => [r.status, r.steps])).toEqual([
      ['interrupted', 6],
      ['not-run', 0],
    ]);

    const second = await run(dir, undefined, true);
    expect(second.log).toMatch(/continuing from step 6 \(checkpoints\/cg-adam-seed0\/checkpoint-00000006\.safetensors\)/);
    expect(second.log).toMatch(/no checkpoint: starting over/);
    expectSameAsReference(dir, second);
    expect(tf.memory().numTensors).toBe(tensors);
  });

  it('keeps finished runs, and drops the rows written after the checkpoint it continues from', async () => {
    const dir = outDir();
    await run(dir, { label: 'es-momentum', step: 10 });
    // As if killed at step 10 after the checkpoint of step 8: the rows of steps 9 and 10 are on disk, the
    // checkpoint of step 10 is not.
    const ckpts = path.join(dir, checkpointDir('es-momentum-seed0'));
    fs.rmSync(path.join(ckpts, 'checkpoint-00000010.safetensors'));
    expect(readRunRows(path.join(dir, 'runs', 'es-momentum-seed0.jsonl'))).toHaveLength(10);
    const before = fs.readFileSync(path.join(dir, 'runs', 'cg-adam-seed0.jsonl'), 'utf8');

    const second = await run(dir, undefined, true);
    expect(second.log).toMatch(/cg-adam, seed 0: already completed \(12 steps\), kept/);
    expect(second.log).toMatch(/continuing from step 8 /);
    expect(fs.readFileSync(path.join(dir, 'runs', 'cg-adam-seed0.jsonl'), 'utf8')).toBe(before);
    expectSameAsReference(dir, second);
  });

  it('falls back to the previous checkpoint when the newest is cut short, and says so', async () => {
    const dir = outDir();
    await run(dir, { label: 'cg-adam', step: 9 });
    const files = listCheckpoints(path.join(dir, checkpointDir('cg-adam-seed0')));
    expect(files.map((f) => path.basename(f))).toEqual(['checkpoint-00000008.safetensors', 'checkpoint-00000009.safetensors']);
    const newest = files[1];
    const bytes = fs.readFileSync(newest);
    fs.writeFileSync(newest, bytes.subarray(0, Math.floor(bytes.length / 2)));

    const second = await run(dir, undefined, true);
    expect(second.log).toContain(`warning: checkpoint ${newest}: payload has`);
    expect(second.log).toMatch(/\(file cut short\?\); trying an older checkpoint/);
    expect(second.log).toMatch(/continuing from step 8 \(checkpoints\/cg-adam-seed0\/checkpoint-00000008\.safetensors\)/);
    expectSameAsReference(dir, second);
  });

  it('resuming a finished experiment changes nothing', async () => {
    const again = await run(reference, undefined, true);
    expect(again.log.match(/already completed/g)).toHaveLength(2);
    expectSameAsReference(reference, again);
  });

  it('the resume command refuses what it cannot do, with exit code 2', async () => {
    const io = (): { stdout: CaptureStream; stderr: CaptureStream } => ({ stdout: new CaptureStream(), stderr: new CaptureStream() });
    let s = io();
    expect(await runCli(['resume', path.join(tmp.dir, 'nowhere')], s)).toBe(2);
    expect(s.stderr.text).toMatch(/^bilevel: config error: resume: results folder not found: .*nowhere\n$/);
    const empty = outDir();
    fs.mkdirSync(empty);
    s = io();
    expect(await runCli(['resume', empty], s)).toBe(2);
    expect(s.stderr.text).toMatch(/has no config\.resolved\.json; is it a results folder written by `bilevel run`\?/);
    s = io();
    expect(await runCli(['--steps', '5', 'resume', reference], s)).toBe(2);
    expect(s.stderr.text).toMatch(/resume: --steps cannot be used/);
  });
});
