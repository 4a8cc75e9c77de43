/**
 * The benchopt-ho section: its settings (the nine methods, the grid, the seeds), its command-line flags, the skip
 * without a file, a quick run of the whole section on a generated LIBSVM file (the methods run in-process here
 * instead of in worker processes, to keep the test short) that writes the figure with its quantile bands and the
 * table, the value function against an independent float64 solve, and a malformed file reported with its line.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { TemporaryFolders } from '@bilevel/core/testing';
import { UsageError, parseArgs } from '../args';
import { chooseSteps } from './benchopt';
import { readLibsvmSummary } from './benchopt-ho';
import type { EvalPoint, RunResult } from './results';
import {
  BENCHOPT_HO_GRID,
  BENCHOPT_METHOD_LABELS,
  BENCHOPT_SEEDS,
  LIBSVM_HOWTO,
  type LibsvmFiles,
  type SectionSetting,
  methodKey,
  suiteSettings,
} from './settings';
import { missingData, runSuite, type SuiteOptions, workerTask } from './suite';
import { runWorkerTask } from './worker';

const temps = new TemporaryFolders();
afterAll(() => temps.removeAll());

const FEATURES = 8;

/** A deterministic generator (LCG) so the files are the same on every run. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Rows of a sparse binary problem: labels ±1 from a linear rule with noise, about 60 % of the features set. */
function rows(n: number, seed: number): { label: number; x: Map<number, number> }[] {
  const u = lcg(seed);
  const w = Array.from({ length: FEATURES }, (_, j) => (j % 3 === 0 ? 1.5 : j % 3 === 1 ? -1 : 0.2));
  return Array.from({ length: n }, () => {
    const x = new Map<number, number>();
    for (let j = 0; j < FEATURES; j++) if (u() < 0.6) x.set(j, Math.round((2 * u() - 1) * 1000) / 1000);
    const z = [...x].reduce((s, [j, v]) => s + w[j] * v, 0);
    return { label: u() < 1 / (1 + Math.exp(-3 * z)) ? 1 : -1, x };
  });
}

function writeLibsvm(file: string, data: { label: number; x: Map<number, number> }[]): string {
  fs.writeFileSync(file, data.map((r) => `${r.label} ${[...r.x].map(([j, v]) => `${j + 1}:${v}`).join(' ')}`).join('\n') + '\n');
  return file;
}

const dir = temps.make('bench-benchopt-ho-');
const trainRows = rows(300, 1);
const validationRows = rows(120, 2);
const files: LibsvmFiles = {
  train: writeLibsvm(path.join(dir, 'train.svm'), trainRows),
  validation: writeLibsvm(path.join(dir, 'validation.svm'), validationRows),
  test: writeLibsvm(path.join(dir, 'test.svm'), rows(150, 3)),
};

const section = (quick: boolean, libsvm?: LibsvmFiles): SectionSetting =>
  suiteSettings({ quick, ...(libsvm ? { libsvm } : {}) }).find((s) => s.id === 'benchopt-ho') as SectionSetting;

function options(extra: Partial<SuiteOptions>): SuiteOptions {
  return {
    quick: true,
    outDir: undefined,
    backend: 'cpu',
    sections: ['benchopt-ho'],
    png: false,
    json: false,
    command: 'test',
    workerScript: '(unused: the methods run in-process)',
    log: () => {},
    ...extra,
  };
}

describe('benchopt-ho settings', () => {
  it("runs the hyper-cleaning protocol's nine methods: a grid on seed 0, then every method on five seeds", () => {
    const s = section(false, files);
    const benchopt = suiteSettings({ quick: false }).find((x) => x.id === 'benchopt') as SectionSetting;
    const tunedLabels = (x: SectionSetting) => [...new Set(x.methods.filter((m) => m.tuned).map((m) => m.label))];
    expect(tunedLabels(s)).toEqual([...BENCHOPT_METHOD_LABELS]);
    expect(tunedLabels(s)).toEqual(tunedLabels(benchopt));
    for (const label of BENCHOPT_METHOD_LABELS) {
      const grid = s.methods.filter((m) => m.grid?.method === label);
      const withInnerStep = label !== 'qNBO' && label !== 'AID-CG';
      expect(grid).toHaveLength(withInnerStep ? BENCHOPT_HO_GRID.innerSteps.length * BENCHOPT_HO_GRID.outerSteps.length : BENCHOPT_HO_GRID.outerSteps.length);
      expect(new Set(grid.map((m) => m.grid!.outerStep))).toEqual(new Set(BENCHOPT_HO_GRID.outerSteps));
      expect(grid.every((m) => m.seed === 0)).toBe(true);
      expect(s.methods.filter((m) => m.tuned && m.label === label).map((m) => m.seed)).toEqual([...BENCHOPT_SEEDS]);
    }
    // the grid runs come first (the tuned runs take their winners)
    const firstTuned = s.methods.findIndex((m) => m.tuned);
    expect(s.methods.slice(firstTuned).every((m) => m.tuned)).toBe(true);
    expect(s.problem).toEqual({
      name: 'hyperparameter-optimization',
      options: { dataset: 'libsvm', libsvm: { train: files.train, validation: files.validation, test: files.test }, batchSize: 64, outerBatchSize: 64, seed: 0 },
    });
    expect([s.mainMetric, s.gridMetric, s.evaluateAtIterate]).toEqual(['valueFunction', 'valueFunction', true]);
    // keys are unique (the worker finds its method by key)
    expect(new Set(s.methods.map(methodKey)).size).toBe(s.methods.length);
  });

  it('the quick size runs one grid point per method and one seed', () => {
    const s = section(true, files);
    expect(s.methods.filter((m) => m.grid)).toHaveLength(9);
    expect(s.methods.filter((m) => m.tuned)).toHaveLength(9);
  });

  it('without a file the section says how to give one; without a validation file 25 % of the training file is held out', () => {
    expect(missingData(section(true))).toBe(LIBSVM_HOWTO);
    expect(LIBSVM_HOWTO).toMatch(/--libsvm-train FILE/);
    expect(missingData(section(true, files))).toBeNull();
    const heldOut = section(false, { train: files.train });
    expect(heldOut.problem.options.libsvm).toEqual({ train: files.train, validationFraction: 0.25 });
    const summary = readLibsvmSummary({ train: files.train });
    expect([summary.trainSamples, summary.validationSamples, summary.heldOut, summary.features, summary.classes]).toEqual([225, 75, true, FEATURES, 2]);
  });

  it('a grid winner is the completed run with the lowest final h(x), not the lowest validation loss at the iterate', () => {
    const s = section(false, files);
    const grid = s.methods.filter((m) => m.grid?.method === 'SOBA');
    const ev = (outerLoss: number, valueFunction: number): EvalPoint => ({ iterate: 1, time: 1, outerLoss, metrics: { valueFunction } });
    const run = (i: number, e: EvalPoint, status: RunResult['status'] = 'completed'): RunResult => ({
      section: 'benchopt-ho',
      key: methodKey(grid[i]),
      label: 'SOBA',
      protocol: grid[i].protocol,
      status,
      steps: 1,
      trainSeconds: 1,
      wallSeconds: 1,
      setupSeconds: 0,
      curve: [],
      evals: [e],
    });
    const chosen = chooseSteps(s, [run(0, ev(0.1, 0.6)), run(1, ev(0.5, 0.4)), run(2, ev(0.05, 0.1), 'diverged')]).get('SOBA');
    expect(chosen?.validationLoss).toBe(0.4);
    expect(chosen?.steps).toEqual({ innerStep: grid[1].grid!.innerStep, outerStep: grid[1].grid!.outerStep });
  });
});

describe('benchopt-ho flags', () => {
  const suiteArgs = (argv: string[]) => {
    const r = parseArgs(argv);
    if (r.kind !== 'suite') throw new Error(r.kind);
    return r.args;
  };

  it('--libsvm-train, --libsvm-validation and --libsvm-test give the files', () => {
    expect(suiteArgs(['--only', 'benchopt-ho', '--libsvm-train', 'a.svm', '--libsvm-test=c.svm']).libsvm).toEqual({ train: 'a.svm', test: 'c.svm' });
    expect(suiteArgs(['--libsvm-train=a', '--libsvm-validation', 'b']).libsvm).toEqual({ train: 'a', validation: 'b' });
    expect(suiteArgs([]).libsvm).toBeUndefined();
    expect(suiteArgs([]).sections).toContain('benchopt-ho');
  });

  it('refuses a validation or test file without a training file, and the flags when --only leaves the section out', () => {
    expect(() => parseArgs(['--libsvm-test', 'c.svm'])).toThrow(/need '--libsvm-train'/);
    expect(() => parseArgs(['--only', 'benchopt', '--libsvm-train', 'a.svm'])).toThrow(UsageError);
    expect(() => parseArgs(['--only', 'benchopt', '--libsvm-train', 'a.svm'])).toThrow(/benchopt-ho section, which '--only' leaves out/);
    expect(() => parseArgs(['--libsvm-train'])).toThrow(/needs a value/);
  });
});

/** The methods in this process (as a worker would run them), with the tensor count before and after each. */
function inProcess(leaks: number[]): NonNullable<SuiteOptions['runMethod']> {
  return async (s, key, _label, opts, steps) => {
    const before = tf.memory().numTensors;
    const r = await runWorkerTask(workerTask(s, key, opts, steps));
    leaks.push(tf.memory().numTensors - before);
    return r;
  };
}

/** Mean softmax cross-entropy over rows, float64 (classes: −1 → 0, +1 → 1). */
function crossEntropy(data: { label: number; x: Map<number, number> }[], W: number[][], b: number[]): number {
  let sum = 0;
  for (const r of data) {
    const z = [0, 1].map((c) => b[c] + [...r.x].reduce((s, [j, v]) => s + W[j][c] * v, 0));
    const m = Math.max(...z);
    const lse = m + Math.log(z.reduce((s, v) => s + Math.exp(v - m), 0));
    sum += lse - z[r.label > 0 ? 1 : 0];
  }
  return sum / data.length;
}

/**
 * h(x₀) = f(x₀, y*(x₀)) by an independent float64 solve: gradient descent on g (mean cross-entropy on the training
 * rows plus ½ Σ_j e^{−2} ‖W_j‖², the problem's starting penalties) until the gradient vanishes.
 */
function referenceValueFunction(): number {
  const W = Array.from({ length: FEATURES }, () => [0, 0]);
  const b = [0, 0];
  const penalty = Math.exp(-2);
  for (let it = 0; it < 20000; it++) {
    const gW = Array.from({ length: FEATURES }, (_, j) => [penalty * W[j][0], penalty * W[j][1]]);
    const gb = [0, 0];
    for (const r of trainRows) {
      const z = [0, 1].map((c) => b[c] + [...r.x].reduce((s, [j, v]) => s + W[j][c] * v, 0));
      const m = Math.max(...z);
      const e = z.map((v) => Math.exp(v - m));
      const p = e.map((v) => v / (e[0] + e[1]));
      for (const c of [0, 1]) {
        const d = (p[c] - (c === (r.label > 0 ? 1 : 0) ? 1 : 0)) / trainRows.length;
        gb[c] += d;
        for (const [j, v] of r.x) gW[j][c] += d * v;
      }
    }
    let norm = gb[0] ** 2 + gb[1] ** 2;
    for (let j = 0; j < FEATURES; j++) {
      for (const c of [0, 1]) {
        W[j][c] -= 1 * gW[j][c];
        norm += gW[j][c] ** 2;
      }
    }
    b[0] -= gb[0];
    b[1] -= gb[1];
    if (Math.sqrt(norm) < 1e-10) break;
  }
  return crossEntropy(validationRows, W, b);
}

describe('benchopt-ho runs', () => {
  it('without a file: skipped with the message saying how to give one, no method run, exit 0', async () => {
    const lines: string[] = [];
    const out = temps.make('bench-benchopt-ho-skip-');
    let ran = 0;
    const code = await runSuite(options({ outDir: out, log: (l) => lines.push(l), runMethod: async () => Promise.reject(new Error(`ran ${++ran}`)) }));
    expect(code).toBe(0);
    expect(ran).toBe(0);
    expect(lines[0]).toBe(`[benchopt-ho] skipped: ${LIBSVM_HOWTO}`);
    const md = fs.readFileSync(path.join(out, 'benchmarks.md'), 'utf8');
    expect(md).toContain(`**Skipped:** ${LIBSVM_HOWTO}\n\n${section(true).about}`);
  });

  it('a quick run on a generated file: every method completes, the figure has its bands, the table its rows', async () => {
    const lines: string[] = [];
    const leaks: number[] = [];
    const out = temps.make('bench-benchopt-ho-run-');
    const runs: RunResult[] = [];
    const record = inProcess(leaks);
    const code = await runSuite(
      options({
        outDir: out,
        libsvm: files,
        json: true,
        log: (l) => lines.push(l),
        runMethod: async (...a) => {
          const r = await record(...a);
          runs.push(r);
          return r;
        },
      }),
    );
    expect(lines.filter((l) => / (failed|timeout|diverged)/.test(l))).toEqual([]);
    expect(code).toBe(0);
    expect(lines[0]).toBe(`[benchopt-ho] ${files.train}: 300 training / 120 validation samples / 150 test samples, ${FEATURES} features, 2 classes`);
    expect(runs).toHaveLength(18);
    expect(runs.every((r) => r.status === 'completed' && r.steps > 0)).toBe(true);
    // no tensor left behind by a run (the value function's y* included)
    expect(leaks).toEqual(runs.map(() => 0));
    // every evaluation has h(x) and the test error; h(x) ≤ f at the iterate's y is not guaranteed, but both are finite
    for (const r of runs) {
      for (const e of r.evals) {
        expect(Number.isFinite(e.metrics.valueFunction)).toBe(true);
        expect(e.metrics.testError).toBeGreaterThanOrEqual(0);
        expect(e.metrics.testError).toBeLessThanOrEqual(1);
      }
    }
    // h(x₀) (the evaluation before any step, same for every method) against an independent float64 solve
    const reference = referenceValueFunction();
    for (const r of runs) expect(r.evals[0].metrics.valueFunction).toBeCloseTo(reference, 4);

    const md = fs.readFileSync(path.join(out, 'benchmarks.md'), 'utf8');
    expect(md).toContain('<!-- benchopt-ho-section:begin');
    expect(md).toContain('![Per-feature L2 on a LIBSVM file: h(x) vs training time');
    expect(md).toContain('| method | steps ρ / γ (grid winner) | runs | h(x) at 0.05 s: median [20 %, 80 %]');
    for (const label of BENCHOPT_METHOD_LABELS) expect(md).toMatch(new RegExp(`\\n\\| ${label.replace(/[-]/g, '\\-')} \\| [^|]+ \\| 1 of 1 \\|`));
    expect(md).toContain('300 training samples (`train.svm`) and 120 validation samples (`validation.svm`), and 150 test samples (`test.svm`)');
    const svg = fs.readFileSync(path.join(out, 'benchmarks', 'benchopt-ho-value-function-vs-time.svg'), 'utf8');
    const marks = (kind: string) => [...svg.matchAll(new RegExp(`<g class="mark-${kind} role-mark[^"]*"[^>]*>`, 'g'))].length;
    // one filled band and one median line per method
    expect(marks('area')).toBe(9);
    expect(marks('line')).toBe(9);
    expect(fs.existsSync(path.join(out, 'benchmarks', 'results.json'))).toBe(true);

    // A second run of the section alone replaces its block and keeps the rest of the report.
    fs.writeFileSync(path.join(out, 'benchmarks.md'), `# Benchmarks\n\nan earlier section\n\n${md.slice(md.indexOf('<!-- benchopt-ho-section:begin'))}`);
    const again = await runSuite(options({ outDir: out, log: () => {}, runMethod: inProcess([]) }));
    expect(again).toBe(0);
    const md2 = fs.readFileSync(path.join(out, 'benchmarks.md'), 'utf8');
    expect(md2).toContain('an earlier section');
    expect(md2.match(/benchopt-ho-section:begin/g)).toHaveLength(1);
    expect(md2).toContain(`**Skipped:** ${LIBSVM_HOWTO}`);
  }, 120_000);

  it('a malformed file: the section fails naming the file and line, exit 1, no method run', async () => {
    const bad = path.join(dir, 'bad.svm');
    fs.writeFileSync(bad, '1 1:0.5 2:0.25\n-1 3:1\n1 2:0.5 4:abc\n');
    const lines: string[] = [];
    const out = temps.make('bench-benchopt-ho-bad-');
    let ran = 0;
    const code = await runSuite(
      options({ outDir: out, libsvm: { train: bad }, log: (l) => lines.push(l), runMethod: async () => Promise.reject(new Error(`ran ${++ran}`)) }),
    );
    expect(code).toBe(1);
    expect(ran).toBe(0);
    const message = `${bad}: line 3, column 11: feature value 'abc' is not a finite number (in '4:abc')`;
    expect(lines).toContain(`[benchopt-ho] failed: the LIBSVM data cannot be used: ${message}`);
    expect(fs.readFileSync(path.join(out, 'benchmarks.md'), 'utf8')).toContain(`**Not run (failed):** the LIBSVM data cannot be used: ${message}`);
    // a missing file and a file too small for the minibatches are refused the same way
    const missing = path.join(dir, 'none.svm');
    const lines2: string[] = [];
    expect(await runSuite(options({ libsvm: { train: files.train, test: missing }, log: (l) => lines2.push(l) }))).toBe(1);
    expect(lines2).toContain(`[benchopt-ho] failed: the LIBSVM data cannot be used: ${missing}: LIBSVM file not found`);
    expect(() => readLibsvmSummary({ train: path.join(dir, 'validation.svm') })).toThrow(/validation\.svm: 30 validation samples \(25 % held out of the training file\), fewer than the protocol's minibatch of 64/);
  });
});
