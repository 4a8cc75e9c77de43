import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, DataError, readCheckpoint } from '@bilevel/core';
import { QuadraticFixture } from '@bilevel/core/testing';
import { PNG } from 'pngjs';
import './test-utils/test-plugins';
import { planExperiment } from './config';
import { runExperiment } from './run-experiment';
import type { ExperimentSummary } from './summary';
import { CaptureStream, makeTempDir, readCsv, readJsonl, tinyConfig } from './test-utils/helpers';
import { findAll, linePaths, parseXml } from './test-utils/xml';

const tmp = makeTempDir();
afterAll(() => tmp.cleanup());
let counter = 0;
const outDir = (): string => path.join(tmp.dir, `out-${++counter}`);

describe('runExperiment', () => {
  let dir: string;
  let summary: ExperimentSummary;
  let exitCode: number;
  let stdout: CaptureStream;
  let tensorsBefore = 0;
  let tensorsAfter = 0;

  beforeAll(async () => {
    dir = outDir();
    const plan = planExperiment(tinyConfig({ seeds: [0, 1], output: { dir, pixelRatio: 1, width: 400, height: 250 } }));
    stdout = new CaptureStream(false);
    tensorsBefore = tf.memory().numTensors;
    const result = await runExperiment(plan, { stdout, initBackend: false });
    tensorsAfter = tf.memory().numTensors;
    summary = result.summary;
    exitCode = result.exitCode;
  });

  it('completes every (method, seed) run and exits 0', () => {
    expect(exitCode).toBe(0);
    expect(summary.status).toBe('completed');
    expect(summary.runs.map((r) => [r.method, r.seed, r.status, r.steps])).toEqual([
      ['exact', 0, 'completed', 12],
      ['exact', 1, 'completed', 12],
      ['half <step>', 0, 'completed', 12],
      ['half <step>', 1, 'completed', 12],
    ]);
  });

  it('leaves no tensors behind', () => {
    expect(tensorsAfter).toBe(tensorsBefore);
  });

  it('writes the resolved config with every default filled in', () => {
    const resolved = JSON.parse(fs.readFileSync(path.join(dir, 'config.resolved.json'), 'utf8'));
    expect(resolved.backend.running).toBe(tf.getBackend());
    expect(resolved.methods[0].innerSolver).toEqual({ name: 'test-gd', options: { learningRate: 0.2, iterations: 20 } });
    expect(resolved.methods[1].trainer.steps).toBe(12);
    expect(resolved.seeds).toEqual([0, 1]);
  });

  it('writes per-step metrics as CSV and JSON lines that agree, with exact oracle counts', () => {
    const csv = readCsv(path.join(dir, 'runs', 'exact-seed1.csv'));
    const jsonl = readJsonl(path.join(dir, 'runs', 'exact-seed1.jsonl'));
    expect(csv.rows).toHaveLength(12);
    expect(jsonl).toHaveLength(12);
    expect(csv.header).toEqual(
      expect.arrayContaining(['step', 'time', 'outerLoss', 'hypergradientNorm', 'metric.trueGradientNorm', 'oracle.innerGradY', 'oracle.total']),
    );
    csv.rows.forEach((row, i) => {
      const j = jsonl[i] as { step: number; outerLoss: number; time: number; metrics: Record<string, number>; oracleCalls: Record<string, number> };
      expect(Number(row.step)).toBe(i + 1);
      expect(j.step).toBe(i + 1);
      expect(Number(row.outerLoss)).toBe(j.outerLoss);
      expect(Number(row.time)).toBe(j.time);
      // Metrics only on evaluation steps (evalEvery 4): the cell is empty elsewhere.
      if ((i + 1) % 4 === 0) expect(Number(row['metric.trueGradientNorm'])).toBe(j.metrics.trueGradientNorm);
      else expect(row['metric.trueGradientNorm']).toBe('');
      // test-gd: 20 inner gradients per solve; test-closed-form: one outer gradient per step.
      expect(Number(row['oracle.innerGradY'])).toBe(20 * (i + 1));
      expect(Number(row['oracle.outerGrad'])).toBe(i + 1);
      expect(Number(row['oracle.total'])).toBe(21 * (i + 1));
      if (i > 0) expect(Number(row.time)).toBeGreaterThanOrEqual(Number(csv.rows[i - 1].time));
    });
  });

  it('reaches a smaller true hypergradient norm than at the start (float64 reference)', () => {
    const f = new QuadraticFixture({ innerDimension: 5, conditionNumber: 4, seed: 0 });
    const g0 = f.hypergradientArray(new Float64Array(5));
    f.dispose();
    const initial = Math.sqrt(g0.reduce((s, v) => s + v * v, 0));
    for (const run of summary.runs) expect(run.finalMetrics.trueGradientNorm).toBeLessThan(0.5 * initial);
    // The exact method converges faster than the one that takes half steps.
    const byMethod = (m: string): number => summary.methods.find((s) => s.label === m)!.stats['metric.trueGradientNorm'].mean;
    expect(byMethod('exact')).toBeLessThan(byMethod('half <step>'));
  });

  it('summarizes each method with mean ± sd over seeds', () => {
    for (const m of summary.methods) {
      const vals = summary.runs.filter((r) => r.method === m.label).map((r) => r.finalOuterLoss as number);
      const mean = (vals[0] + vals[1]) / 2;
      const sd = Math.abs(vals[0] - vals[1]) / Math.SQRT2; // sample sd of two values
      expect(m.stats.finalOuterLoss.mean).toBeCloseTo(mean, 12);
      expect(m.stats.finalOuterLoss.sd).toBeCloseTo(sd, 12);
      expect(m.stats.finalOuterLoss.n).toBe(2);
      // Oracle calls of the method, not of the final evaluation: 12 steps × (iterations + 1).
      const iters = m.label === 'exact' ? 20 : 10;
      expect(m.stats.oracleCallsTotal.mean).toBe(12 * (iters + 1));
    }
    const md = fs.readFileSync(path.join(dir, 'summary.md'), 'utf8');
    expect(md).toMatch(/\| exact \| 2\/2 \| 12 ± 0 \|/);
    expect(md).toMatch(/\| half <step> \| 2\/2 \|/);
    const onDisk = JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8'));
    expect(onDisk.status).toBe('completed');
    expect(onDisk.problem).toEqual({ name: 'test-quadratic', mainMetric: 'trueGradientNorm', mainMetricHigherIsBetter: false });
  });

  it('draws outer loss and the main metric against steps and time, as valid SVG and PNG', () => {
    const names = ['outer-loss-vs-step', 'outer-loss-vs-time', 'truegradientnorm-vs-step', 'truegradientnorm-vs-time'];
    for (const n of names) {
      const svg = parseXml(fs.readFileSync(path.join(dir, `${n}.svg`), 'utf8'));
      expect(svg.name).toBe('svg');
      const series = linePaths(svg);
      // Two seeds per method: two faint lines and a mean line each.
      expect(series).toHaveLength(6);
      const legend = findAll(svg, 'text').map((t) => t.text);
      expect(legend).toEqual(expect.arrayContaining(['exact (mean of 2)', 'half <step> (mean of 2)']));
    }
    const png = PNG.sync.read(fs.readFileSync(path.join(dir, 'outer-loss-vs-step.png')));
    expect([png.width, png.height]).toEqual([400, 250]);
    // Pixels in the first two palette colours (the two methods' lines).
    const near = (i: number, rgb: number[]): boolean => rgb.every((c, k) => Math.abs(png.data[i + k] - c) < 30);
    let blue = 0;
    let orange = 0;
    for (let i = 0; i < png.data.length; i += 4) {
      if (near(i, [0x1f, 0x77, 0xb4])) blue++;
      if (near(i, [0xff, 0x7f, 0x0e])) orange++;
    }
    expect(blue).toBeGreaterThan(100);
    expect(orange).toBeGreaterThan(100);
  });

  it('prints plain progress lines and a final table when the output is not a terminal', () => {
    expect(stdout.text).toMatch(/\[exact · seed 0\] step 1\/12 .*loss /);
    expect(stdout.text).toMatch(/✓ done: half <step> seed 1: 12 steps/);
    expect(stdout.text).toMatch(/method\s+runs\s+steps/);
    expect(stdout.text).not.toMatch(/\x1b\[/);
  });
});

describe('runExperiment: checkpoint.final', () => {
  it('keeps the final state of each completed run, readable and at the point of its final metrics', async () => {
    const dir = outDir();
    const plan = planExperiment(
      tinyConfig({ checkpoint: { every: 5, final: true }, output: { dir, pixelRatio: 1, width: 400, height: 250 } }),
    );
    const result = await runExperiment(plan, { stdout: new CaptureStream(false), initBackend: false });
    expect(result.exitCode).toBe(0);
    // The resume checkpoints of finished runs are gone; the final states stay, one file per run.
    expect(fs.existsSync(path.join(dir, 'checkpoints'))).toBe(false);
    const fixture = new QuadraticFixture({ innerDimension: 5, conditionNumber: 4, seed: 0 });
    try {
      for (const base of ['exact-seed0', 'half-step-seed0']) {
        const files = fs.readdirSync(path.join(dir, 'final', base));
        expect(files).toEqual(['checkpoint-00000012.safetensors']);
        const payload = readCheckpoint(path.join(dir, 'final', base, files[0]));
        expect(payload.trainer.step).toBe(12);
        // Independent check: ‖∇Φ(x)‖ of the stored x (float64 closed form) is the run's final metric, which the
        // trainer evaluated at its final x.
        const g = fixture.hypergradientArray(Array.from(payload.trainer.x.x.values));
        const norm = Math.sqrt(g.reduce((s, v) => s + v * v, 0));
        const run = result.summary.runs.find((r) => `${r.method === 'exact' ? 'exact' : 'half-step'}-seed0` === base);
        expect(run?.finalMetrics.trueGradientNorm).toBeGreaterThan(0);
        expect(norm).toBeCloseTo(run!.finalMetrics.trueGradientNorm, 5);
      }
    } finally {
      fixture.dispose();
    }
  });

  it('writes no final state by default', async () => {
    const dir = outDir();
    const plan = planExperiment(tinyConfig({ output: { dir, pixelRatio: 1, width: 400, height: 250 } }));
    await runExperiment(plan, { stdout: new CaptureStream(false), initBackend: false });
    expect(fs.existsSync(path.join(dir, 'final'))).toBe(false);
  });
});

describe('runExperiment: interruption, failures, bad input', () => {
  it('stops at the end of the step when the signal aborts, keeps partial results and exits 130', async () => {
    const dir = outDir();
    const controller = new AbortController();
    const stdout = new CaptureStream(false, (chunk) => {
      if (/step 3\/500/.test(chunk)) controller.abort();
    });
    const plan = planExperiment(
      tinyConfig({ trainer: { steps: 500, evalEvery: 2 }, progress: { everySteps: 1 }, output: { dir, pixelRatio: 1, width: 400, height: 250 } }),
    );
    const result = await runExperiment(plan, { stdout, initBackend: false, signal: controller.signal });
    expect(result.exitCode).toBe(130);
    expect(result.summary.status).toBe('interrupted');
    expect(result.summary.runs.map((r) => [r.method, r.status, r.steps])).toEqual([
      ['exact', 'interrupted', 3],
      ['half <step>', 'not-run', 0],
    ]);
    expect(readCsv(path.join(dir, 'runs', 'exact-seed0.csv')).rows).toHaveLength(3);
    const onDisk = JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8'));
    expect(onDisk.status).toBe('interrupted');
    expect(onDisk.methods[0].partial).toBe(true);
    // Last evaluated metric (step 2) stands in for the final one.
    expect(onDisk.runs[0].finalMetrics.trueGradientNorm).toBeGreaterThan(0);
    expect(fs.existsSync(path.join(dir, 'outer-loss-vs-step.svg'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'outer-loss-vs-time.png'))).toBe(true);
    expect(stdout.text).toMatch(/interrupted: partial results kept/);
  });

  it('records a diverging run with its method, seed and step, goes on with the others and exits 1', async () => {
    const dir = outDir();
    const cfg = tinyConfig({ output: { dir, plots: false } });
    (cfg.methods as Record<string, unknown>[])[0].estimator = { name: 'test-closed-form', options: { nanAtStep: 4 } };
    const result = await runExperiment(planExperiment(cfg), { stdout: new CaptureStream(), initBackend: false });
    expect(result.exitCode).toBe(1);
    expect(result.errors).toHaveLength(1);
    // Step index 4 (from 0) is the fifth outer step.
    expect(result.errors[0]).toMatch(/method 'exact', seed 0, outer step 5: DivergenceError: hypergradient norm became NaN/);
    expect(result.summary.runs.map((r) => [r.status, r.steps])).toEqual([
      ['diverged', 4],
      ['completed', 12],
    ]);
    expect(readCsv(path.join(dir, 'runs', 'exact-seed0.csv')).rows).toHaveLength(4);
  });

  it('names the step of any other error raised while training', async () => {
    const dir = outDir();
    const cfg = tinyConfig({ output: { dir, plots: false } });
    (cfg.methods as Record<string, unknown>[])[1].estimator = { name: 'test-closed-form', options: { throwAtStep: 2 } };
    const result = await runExperiment(planExperiment(cfg), { stdout: new CaptureStream(), initBackend: false });
    expect(result.exitCode).toBe(1);
    expect(result.errors).toEqual([
      "run failed: method 'half <step>', seed 0, outer step 3: Error: the test estimator broke on purpose",
    ]);
    expect(result.summary.runs[1]).toMatchObject({ status: 'failed', steps: 2, error: { step: 3, kind: 'Error' } });
  });

  it("with onRunError 'stop' skips the remaining runs after a failure", async () => {
    const dir = outDir();
    const cfg = tinyConfig({ onRunError: 'stop', output: { dir, plots: false } });
    (cfg.methods as Record<string, unknown>[])[0].estimator = { name: 'test-closed-form', options: { nanAtStep: 0 } };
    const result = await runExperiment(planExperiment(cfg), { stdout: new CaptureStream(), initBackend: false });
    expect(result.exitCode).toBe(1);
    expect(result.summary.runs.map((r) => r.status)).toEqual(['diverged', 'not-run']);
  });

  it('throws the DataError of a missing data file before any training', async () => {
    const dir = outDir();
    const cfg = tinyConfig({ problem: { name: 'test-data', options: { file: path.join(tmp.dir, 'missing.idx') } }, output: { dir, plots: false } });
    await expect(runExperiment(planExperiment(cfg), { stdout: new CaptureStream(), initBackend: false })).rejects.toThrow(DataError);
    const onDisk = JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8'));
    expect(onDisk.status).toBe('failed');
    expect(onDisk.runs.every((r: { steps: number }) => r.steps === 0)).toBe(true);
  });

  it('refuses a non-empty results folder unless forced', async () => {
    const dir = outDir();
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'keep.txt'), 'x');
    const plan = planExperiment(tinyConfig({ trainer: { steps: 1 }, output: { dir, plots: false } }));
    await expect(runExperiment(plan, { stdout: new CaptureStream(), initBackend: false })).rejects.toThrow(ConfigError);
    const forced = await runExperiment(plan, { stdout: new CaptureStream(), initBackend: false, force: true });
    expect(forced.exitCode).toBe(0);
    expect(fs.existsSync(path.join(dir, 'keep.txt'))).toBe(true);
  });

  it('draws a live bar on a terminal', async () => {
    const dir = outDir();
    const stdout = new CaptureStream(true);
    const plan = planExperiment(tinyConfig({ trainer: { steps: 3 }, output: { dir, plots: false } }));
    await runExperiment(plan, { stdout, initBackend: false });
    expect(stdout.text).toMatch(/\r\x1b\[2Kexact · seed 0 ▕█+░*▏ 3\/3 /);
  });
});
