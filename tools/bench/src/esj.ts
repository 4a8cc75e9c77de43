/**
 * `node tools/bench/dist/run.js esj [--quick] [--out <dir>]`: how accurate the ESJ estimator's variants are
 * for a given number of perturbed inner solves and a given time, against an exact hypergradient — the
 * quadratic toy's closed form (d = 1,000) and the `exact` estimator (dense Hessian, float64 solve) on a small
 * synthetic hyper-cleaning instance. Writes `<out>/esj-measurements.md` and its SVG figures in `<out>/esj/`.
 *
 * Memoryless variants (Gaussian, orthogonal, antithetic directions) are measured at one point x for a sweep of
 * Q, over several seeds. The Jacobian-memory variant carries state across steps, so it is measured along a
 * trajectory: x moves a fixed distance per step along the exact hypergradient (the way training moves it,
 * without the estimator's noise feeding back), the inner solve is warm-started from the previous step's y as
 * in the trainer, and the accuracy is reported against the cumulated perturbed solves and time.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import {
  type BilevelProblem,
  type EstimateContext,
  type HypergradientEstimator,
  type InnerSolver,
  type Oracles,
  Random,
  type TensorTree,
  createOracles,
  registry,
  tidy,
  treeDispose,
  treeFlatten,
  treeKeep,
  treeUnflatten,
  treeSpec,
} from '@bilevel/core';
import { type ChartSeries, lineChartSpec, markdownTable, writeChart } from '@bilevel/cli';
import '@bilevel/solvers';
import '@bilevel/estimators';
import '@bilevel/problems';

/** One measured estimate (or the mean over seeds). */
export interface EsjPoint {
  /** Perturbed inner solves (per estimate; cumulated since the first step for the memory variant). */
  readonly solves: number;
  /** Seconds of estimator time (per estimate; cumulated for the memory variant). */
  readonly seconds: number;
  /** Cosine with the exact hypergradient. */
  readonly cosine: number;
  /** ‖ĝ − g‖/‖g‖. */
  readonly relativeError: number;
  /** Outer step (memory variant only). */
  readonly step?: number;
}

export interface EsjSeries {
  readonly label: string;
  readonly color: string;
  readonly options: Record<string, unknown>;
  readonly kind: 'sweep' | 'trajectory';
  readonly points: readonly EsjPoint[];
  /** Seeds per sweep point (mean reported); spread as the smallest and largest cosine. */
  readonly cosineRange?: readonly (readonly [number, number])[];
}

export interface EsjProblemResult {
  readonly id: string;
  readonly title: string;
  readonly description: string;
  readonly dx: number;
  readonly dy: number;
  readonly series: readonly EsjSeries[];
}

interface ProblemSetup {
  readonly id: string;
  readonly title: string;
  readonly description: string;
  readonly problem: BilevelProblem;
  readonly solver: InnerSolver;
  /** Exact hypergradient at x with inner iterate y (for the hyper-cleaning instance: at y_N). */
  readonly reference: (context: EstimateContext) => TensorTree;
  /** Warm-up iterations of the first inner solve (brings y near y*(x₀)). */
  readonly warmupIterations: number;
}

function log10Sweep(quick: boolean, d: number): number[] {
  const qs = quick ? [10, 30, 100] : [10, 30, 100, 300, 1000];
  return qs.filter((q) => q <= d);
}

function flatArray(t: TensorTree): Float64Array {
  return tidy(() => Float64Array.from(treeFlatten(t).dataSync()));
}

function compare(estimate: Float64Array, truth: Float64Array): { cosine: number; relativeError: number } {
  let dot = 0;
  let ne = 0;
  let nt = 0;
  let diff = 0;
  for (let i = 0; i < truth.length; i++) {
    dot += estimate[i] * truth[i];
    ne += estimate[i] ** 2;
    nt += truth[i] ** 2;
    diff += (estimate[i] - truth[i]) ** 2;
  }
  return { cosine: dot / Math.sqrt(ne * nt), relativeError: Math.sqrt(diff / nt) };
}

/** A context as the trainer builds it: the base solve of N iterations from y0 at x. */
function buildContext(
  setup: ProblemSetup,
  oracles: Oracles,
  x: TensorTree,
  y0: TensorTree,
  seed: number,
  step: number,
): EstimateContext {
  const inner = tidy(() => setup.solver.solve({ oracles, x, y0 }));
  return {
    problem: setup.problem,
    oracles,
    x,
    inner,
    solver: setup.solver,
    y0,
    rng: new Random(seed),
    step,
  };
}

function quadraticSetup(quick: boolean): ProblemSetup {
  const dimension = quick ? 300 : 1000;
  const problem = registry.create('problem', 'quadratic', { dimension, seed: 0 });
  const hypergradient = problem.hypergradient?.bind(problem);
  if (!hypergradient) throw new Error('the quadratic problem has no closed-form hypergradient');
  return {
    id: 'quadratic',
    title: `Quadratic toy, d = ${dimension.toLocaleString('en-US')} (closed form)`,
    description:
      `qNBO's quadratic toy as in the benchmark (d = ${dimension}): inner \`gd\` 20 steps of 0.6, warm-started; ` +
      'reference: the closed-form ∇Φ(x).',
    problem,
    solver: registry.create('innerSolver', 'gd', { stepSize: 0.6, maxIterations: 20 }),
    reference: (c) => hypergradient(c.x),
    warmupIterations: 0,
  };
}

function hyperCleaningSetup(quick: boolean): ProblemSetup {
  const trainSamples = quick ? 200 : 1000;
  const problem = registry.create('problem', 'hyper-cleaning', {
    dataset: 'synthetic',
    trainSamples,
    validationSamples: 1000,
    testSamples: 0,
    corruptionRate: 0.5,
    innerL2: 0.001,
    seed: 0,
    synthetic: { features: 30, classes: 10, separation: 3, noise: 1 },
  });
  const exact = registry.create('estimator', 'exact', { maxDimension: 2000 });
  return {
    id: 'hyper-cleaning',
    title: `Hyper-cleaning, synthetic (${trainSamples.toLocaleString('en-US')} samples, 30 features, 10 classes)`,
    description:
      `Data hyper-cleaning on synthetic Gaussian classes (${trainSamples} training samples, half of the labels ` +
      'corrupted, 30 features, 10 classes: x has one entry per sample, y = (W, b) has 310): inner `gd` 10 steps of 0.5, ' +
      'warm-started (the first solve 500 steps); reference: the `exact` estimator (dense Hessian, float64 solve) at ' +
      'the same y_N. ESJ estimates the Jacobian of the 10-step map, the reference the implicit one, so even a ' +
      'perfect ESJ keeps the gap between the two.',
    problem,
    solver: registry.create('innerSolver', 'gd', { stepSize: 0.5, maxIterations: 10 }),
    reference: (c) => exact.estimate(c).hypergradient,
    warmupIterations: 500,
  };
}

interface VariantSpec {
  readonly label: string;
  readonly color: string;
  readonly options: (q: number) => Record<string, unknown>;
  /** Perturbed solves per direction. */
  readonly solvesPerDirection: number;
}

const SWEEP_VARIANTS: readonly VariantSpec[] = [
  { label: 'ESJ, Gaussian (paper)', color: '#d62728', options: (q) => ({ directions: q }), solvesPerDirection: 1 },
  {
    label: 'ESJ, orthogonal',
    color: '#1f77b4',
    options: (q) => ({ directions: q, distribution: 'orthogonal' }),
    solvesPerDirection: 1,
  },
  {
    label: 'ESJ, antithetic Gaussian',
    color: '#ff7f0e',
    options: (q) => ({ directions: Math.max(1, Math.round(q / 2)), antithetic: true }),
    solvesPerDirection: 2,
  },
];

/** Keeps y near y*(x₀) before measuring: one long solve from the problem's initial y. */
function warmY(setup: ProblemSetup, oracles: Oracles, x: TensorTree, rng: Random): TensorTree {
  const y0 = tidy(() => setup.problem.initialY(rng, x));
  if (setup.warmupIterations === 0) return treeKeep(y0);
  const y = tidy(() => setup.solver.solve({ oracles, x, y0, maxIterations: setup.warmupIterations }).y);
  treeDispose(y0);
  return treeKeep(y);
}

/**
 * The point of measurement: the problem's x₀ plus N(0, 1) entries (seeded). At the quadratic's x₀ = 0 the
 * inner solution and ∇_y f vanish, so the Jacobian term — the part ESJ estimates — would be zero.
 */
function startPoint(setup: ProblemSetup): TensorTree {
  const rng = new Random(7);
  return treeKeep(
    tidy(() => {
      const x0 = setup.problem.initialX(new Random(0).fork('init'));
      const spec = treeSpec(x0);
      return treeUnflatten(tf.add(treeFlatten(x0), tf.tensor1d(rng.normalArray(spec.total))), spec);
    }),
  );
}

function timed<T>(f: () => T): { value: T; seconds: number } {
  const t0 = performance.now();
  const value = f();
  return { value, seconds: (performance.now() - t0) / 1000 };
}

function measureSweep(setup: ProblemSetup, seeds: number, quick: boolean, log: (s: string) => void): EsjSeries[] {
  const oracles = createOracles(setup.problem);
  const x = startPoint(setup);
  const y0 = warmY(setup, oracles, x, new Random(0).fork('y'));
  const d = treeSpec(x).total;
  const base = buildContext(setup, oracles, x, y0, 0, 0);
  const truth = flatArray(tidy(() => setup.reference(base)));
  const out: EsjSeries[] = [];
  for (const v of SWEEP_VARIANTS) {
    const points: EsjPoint[] = [];
    const ranges: [number, number][] = [];
    for (const q of log10Sweep(quick, d)) {
      const est: HypergradientEstimator = registry.create('estimator', 'es', { ...v.options(q), maxBatchSize: 250 });
      let cos = 0;
      let rel = 0;
      let secs = 0;
      let lo = Infinity;
      let hi = -Infinity;
      for (let s = 0; s < seeds; s++) {
        const ctx = { ...base, rng: new Random(1000 + s) };
        const { value, seconds } = timed(() => tidy(() => flatArray(est.estimate(ctx).hypergradient)));
        const c = compare(value, truth);
        cos += c.cosine / seeds;
        rel += c.relativeError / seeds;
        secs += seconds / seeds;
        lo = Math.min(lo, c.cosine);
        hi = Math.max(hi, c.cosine);
      }
      est.dispose?.();
      const solves = (v.options(q).directions as number) * v.solvesPerDirection;
      points.push({ solves, seconds: secs, cosine: cos, relativeError: rel });
      ranges.push([lo, hi]);
      log(`[esj] ${setup.id} ${v.label} Q=${q}: cosine ${cos.toFixed(3)}, rel. error ${rel.toPrecision(3)}, ${(secs * 1000).toFixed(0)} ms`);
    }
    out.push({ label: v.label, color: v.color, options: v.options(0), kind: 'sweep', points, cosineRange: ranges });
  }
  treeDispose(base.inner.y);
  treeDispose(x);
  treeDispose(y0);
  return out;
}

/**
 * The memory variant along a trajectory: x_{t+1} = x_t + 0.05·ξ_t with ξ_t ~ N(0, I) (each entry moves by about
 * 0.05 per step, as with an Adam step of 0.05, so the Jacobian changes as in training while ‖∇Φ‖ stays the
 * size it has at the sweep's point — descending along ∇Φ would shrink it and inflate every relative error), y
 * warm-started from the previous base solve.
 */
function measureTrajectory(
  setup: ProblemSetup,
  label: string,
  color: string,
  options: Record<string, unknown>,
  steps: number,
  log: (s: string) => void,
): EsjSeries {
  const oracles = createOracles(setup.problem);
  let x = startPoint(setup);
  let y0 = warmY(setup, oracles, x, new Random(0).fork('y'));
  const spec = treeSpec(x);
  const walk = new Random(11);
  const est: HypergradientEstimator = registry.create('estimator', 'es', { ...options, maxBatchSize: 250 });
  const points: EsjPoint[] = [];
  let solves = 0;
  let seconds = 0;
  const perStep = (options.directions as number) * (options.antithetic ? 2 : 1);
  for (let t = 0; t < steps; t++) {
    const ctx = buildContext(setup, oracles, x, y0, 500 + t, t);
    const truthTree = treeKeep(tidy(() => setup.reference(ctx)));
    const truth = flatArray(truthTree);
    const { value, seconds: s } = timed(() => tidy(() => flatArray(est.estimate(ctx).hypergradient)));
    solves += perStep;
    seconds += s;
    const c = compare(value, truth);
    points.push({ step: t, solves, seconds, cosine: c.cosine, relativeError: c.relativeError });
    const xi = walk.normalArray(spec.total);
    const nextX = treeKeep(tidy(() => treeUnflatten(tf.add(treeFlatten(x), tf.mul(tf.tensor1d(xi), 0.05)), spec)));
    const nextY = treeKeep(tidy(() => Object.fromEntries(Object.entries(ctx.inner.y).map(([k, v]) => [k, tf.clone(v)]))));
    treeDispose(ctx.inner.y);
    treeDispose(truthTree);
    treeDispose(x);
    treeDispose(y0);
    x = nextX;
    y0 = nextY;
  }
  const last = points[points.length - 1];
  log(
    `[esj] ${setup.id} ${label}: after ${steps} steps (${solves} solves, ${seconds.toFixed(1)} s) cosine ` +
      `${last.cosine.toFixed(4)}, rel. error ${last.relativeError.toPrecision(3)}`,
  );
  est.dispose?.();
  treeDispose(x);
  treeDispose(y0);
  return { label, color, options, kind: 'trajectory', points };
}

/** Runs the study on both problems. */
export function runEsjStudy(options: { quick: boolean; log: (s: string) => void }): EsjProblemResult[] {
  const seeds = 3;
  const results: EsjProblemResult[] = [];
  for (const make of [quadraticSetup, hyperCleaningSetup]) {
    const setup = make(options.quick);
    const probe = treeKeep(tidy(() => setup.problem.initialX(new Random(0))));
    const dx = treeSpec(probe).total;
    const dy = tidy(() => treeSpec(setup.problem.initialY(new Random(0), probe))).total;
    treeDispose(probe);
    const series = measureSweep(setup, seeds, options.quick, options.log);
    const q = options.quick ? 20 : 50;
    const steps = Math.ceil((1.5 * dx) / q);
    series.push(
      measureTrajectory(setup, `ESJ + memory (rank ${dx}, Q = ${q})`, '#2ca02c', { directions: q, memory: dx }, steps, options.log),
    );
    const quarter = Math.max(q, Math.round(dx / 4));
    series.push(
      measureTrajectory(
        setup,
        `ESJ + memory (rank ${quarter}, Q = ${q})`,
        '#9467bd',
        { directions: q, memory: quarter },
        steps,
        options.log,
      ),
    );
    results.push({ id: setup.id, title: setup.title, description: setup.description, dx, dy, series });
    setup.problem.dispose?.();
  }
  return results;
}

function fmt(v: number, digits = 3): string {
  if (!Number.isFinite(v)) return '—';
  return Math.abs(v) >= 0.01 || v === 0 ? v.toFixed(digits) : v.toPrecision(2);
}

function chart(file: string, title: string, xLabel: string, yLabel: string, series: ChartSeries[], yLog: boolean): Promise<string[]> {
  const spec = lineChartSpec(series, { title, xLabel, yLabel, xScale: 'log', yScale: yLog ? 'log' : 'linear', width: 860, height: 480 });
  return writeChart(file.replace(/\.svg$/, ''), spec, { png: false });
}

/** Writes `<outDir>/esj-measurements.md` and `<outDir>/esj/*.svg`; returns the files written. */
export async function writeEsjReport(
  results: readonly EsjProblemResult[],
  meta: { quick: boolean; command: string; loadStart: number[]; loadEnd: number[]; seconds: number; backend: string },
  outDir: string,
): Promise<string[]> {
  const figDir = path.join(outDir, 'esj');
  fs.mkdirSync(figDir, { recursive: true });
  const files: string[] = [];
  const lines: string[] = [
    '# ESJ accuracy measurements',
    '',
    `Generated by \`${meta.command}\` (${meta.quick ? 'quick sizes' : 'full sizes'}) in ${meta.seconds.toFixed(0)} s on ` +
      `backend ${meta.backend}; load average (1 min) ${meta.loadStart[0].toFixed(2)} at the start, ` +
      `${meta.loadEnd[0].toFixed(2)} at the end (2 cores shared with other jobs: times are upper bounds; compare ` +
      'variants within a table). The analysis is in [esj.md](esj.md).',
    '',
    '*Sweep*: memoryless variants at one point (x₀ plus N(0, 1) entries), mean over 3 seeds of the directions; ' +
      'cosine range = smallest and largest of the 3. *Solves* = perturbed inner solves per estimate; *ms* = estimator ' +
      'time per estimate (base solve and reference excluded). *Trajectory*: the Jacobian-memory variant over ' +
      'successive outer steps (x takes a Gaussian random-walk step of 0.05 per entry per step, so the Jacobian moves as ' +
      'in training while ‖∇Φ‖ stays the size it has at the sweep\'s point; warm-started ' +
      'inner solves); solves and time are cumulated since step 0.',
    '',
  ];
  for (const r of results) {
    lines.push(`## ${r.title}`, '', r.description, `dim x = ${r.dx.toLocaleString('en-US')}, dim y = ${r.dy.toLocaleString('en-US')}.`, '');
    const sweepRows: string[][] = [];
    for (const s of r.series.filter((x) => x.kind === 'sweep')) {
      s.points.forEach((p, i) => {
        const range = s.cosineRange?.[i];
        sweepRows.push([
          s.label,
          String(p.solves),
          fmt(p.cosine),
          range ? `${fmt(range[0])} – ${fmt(range[1])}` : '—',
          fmt(p.relativeError),
          (p.seconds * 1000).toFixed(0),
        ]);
      });
    }
    lines.push(markdownTable(['variant', 'solves', 'cosine', 'cosine range', 'rel. error', 'ms'], sweepRows), '');
    const trajRows: string[][] = [];
    for (const s of r.series.filter((x) => x.kind === 'trajectory')) {
      const n = s.points.length;
      const picks = [...new Set([0, Math.floor(n / 6), Math.floor(n / 3), Math.floor(n / 2), Math.floor((2 * n) / 3) - 1, Math.floor((2 * n) / 3), n - 1])].filter((i) => i >= 0 && i < n);
      for (const i of picks) {
        const p = s.points[i];
        trajRows.push([s.label, String(p.step), String(p.solves), fmt(p.cosine, 4), fmt(p.relativeError), p.seconds.toFixed(2)]);
      }
    }
    lines.push(markdownTable(['variant', 'step', 'solves (cum.)', 'cosine', 'rel. error', 's (cum.)'], trajRows), '');
    const toSeries = (key: 'solves' | 'seconds', metric: 'cosine' | 'relativeError'): ChartSeries[] =>
      r.series.map((s) => ({
        label: s.label,
        color: s.color,
        points: s.points.map((p) => [p[key], metric === 'cosine' ? p.cosine : p.relativeError] as const),
      }));
    const f1 = `${r.id}-error-vs-solves.svg`;
    await chart(path.join(figDir, f1), `${r.title}: relative error`, 'perturbed inner solves (cumulated for the memory)', '‖ĝ − ∇Φ‖/‖∇Φ‖ (log)', toSeries('solves', 'relativeError'), true);
    const f2 = `${r.id}-cosine-vs-solves.svg`;
    await chart(path.join(figDir, f2), `${r.title}: cosine`, 'perturbed inner solves (cumulated for the memory)', 'cosine with ∇Φ', toSeries('solves', 'cosine'), false);
    const f3 = `${r.id}-error-vs-time.svg`;
    await chart(path.join(figDir, f3), `${r.title}: relative error against time`, 'estimator seconds (cumulated for the memory)', '‖ĝ − ∇Φ‖/‖∇Φ‖ (log)', toSeries('seconds', 'relativeError'), true);
    for (const f of [f1, f2, f3]) {
      lines.push(`![${r.title}: ${f.replace(/\.svg$/, '').replace(/-/g, ' ')}](esj/${f})`, '');
      files.push(path.join(figDir, f));
    }
  }
  const md = path.join(outDir, 'esj-measurements.md');
  fs.writeFileSync(md, lines.join('\n'));
  files.unshift(md);
  return files;
}

/** The command: runs the study and writes the report (or prints only, without an output folder). */
export async function runEsjCommand(options: { quick: boolean; outDir: string; command: string }): Promise<void> {
  const { initBackend } = await import('@bilevel/backend');
  const selection = await initBackend({ log: () => undefined });
  const loadStart = os.loadavg();
  const t0 = performance.now();
  const results = runEsjStudy({ quick: options.quick, log: (s) => console.log(s) });
  const files = await writeEsjReport(
    results,
    { quick: options.quick, command: options.command, loadStart, loadEnd: os.loadavg(), seconds: (performance.now() - t0) / 1000, backend: selection.name },
    options.outDir,
  );
  console.log(`wrote ${files.join(', ')}`);
}
