/**
 * One method of one section, run in its own process (so that its memory is its own): builds the problem and
 * the plugins from the suite's settings, trains under the section's budget, and reports the curves, the
 * evaluations, the oracle calls by kind, the memory and the backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendChoice } from '@bilevel/backend';
import {
  type BilevelProblem,
  DataError,
  DivergenceError,
  type HypergradientEstimator,
  ORACLE_KINDS,
  Random,
  Trainer,
  type TensorTree,
  createOracles,
  registry,
  tidy,
  treeClone,
  treeDispose,
  treeKeep,
} from '@bilevel/core';
import '@bilevel/solvers';
import '@bilevel/estimators';
import '@bilevel/problems';
import '@bilevel/meta-learning';
import { MemoryMeter } from './memory';
import { PartialGradientEstimator } from './partial-gradient';
import type { CurvePoint, EvalPoint, RunResult, WorkerTask } from './results';
import { PARTIAL_GRADIENT, findMethod } from './settings';

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A NaN/Inf met by the trainer (DivergenceError) or by an inner solver (wrapped in a StepError). */
function isDivergence(e: unknown): boolean {
  if (e instanceof DivergenceError) return true;
  const cause = (e as { cause?: unknown }).cause;
  return cause instanceof Error && /DivergenceError$/.test(cause.name);
}

/**
 * The problem with every cold inner solve starting from the same w₀ (as the ESJ code does with its `p0`),
 * instead of a fresh draw per step: `initialY` returns a copy of one fixed draw. Everything else is the
 * problem's own.
 */
function withFixedInitialY(problem: BilevelProblem, w0: TensorTree): BilevelProblem {
  return Object.create(problem, {
    initialY: { value: (): TensorTree => treeClone(w0) },
  }) as BilevelProblem;
}

export async function runWorkerTask(task: WorkerTask): Promise<RunResult> {
  const wallStart = performance.now();
  const found = findMethod({ quick: task.quick, ...(task.libsvm ? { libsvm: task.libsvm } : {}) }, task.section, task.key);
  const section = found.section;
  const method = task.stepSizes && section.withSteps ? section.withSteps(found.method, task.stepSizes) : found.method;
  const base = {
    section: section.id,
    key: task.key,
    label: method.label,
    ...(method.protocol ? { protocol: method.protocol } : {}),
    ...(task.stepSizes ? { stepSizes: task.stepSizes } : {}),
  };
  const wall = () => (performance.now() - wallStart) / 1000;
  const selection = await initBackend({ backend: task.backend as BackendChoice, log: () => undefined });
  const backend = { name: selection.name, reason: selection.reason };

  const setupStart = performance.now();
  let problem: BilevelProblem;
  try {
    const options = {
      ...section.problem.options,
      ...(method.problemOptions ?? {}),
      ...(method.fullBatch ? { batchSize: undefined, outerBatchSize: undefined } : {}),
      ...(method.seed !== undefined ? { seed: method.seed } : {}),
    };
    problem = registry.create('problem', section.problem.name, options);
  } catch (e) {
    const status = e instanceof DataError ? 'skipped' : 'failed';
    return { ...base, status, error: errorText(e), steps: 0, trainSeconds: 0, wallSeconds: wall(), setupSeconds: 0, curve: [], evals: [], backend };
  }
  const setupSeconds = (performance.now() - setupStart) / 1000;
  const seed = method.seed ?? section.seed;
  let fixedY: TensorTree | null = null;
  let trained: BilevelProblem = problem;
  if (method.fixedInitialY) {
    const x0 = tidy(() => problem.initialX(new Random(seed).fork('init')));
    fixedY = treeKeep(tidy(() => problem.initialY(new Random(seed).fork('fixed-initial-y'), x0)));
    treeDispose(x0);
    trained = withFixedInitialY(problem, fixedY);
  }

  const solver = registry.create('innerSolver', method.innerSolver.name, method.innerSolver.options);
  const estimator: HypergradientEstimator =
    method.estimator.name === PARTIAL_GRADIENT
      ? new PartialGradientEstimator()
      : registry.create('estimator', method.estimator.name, method.estimator.options);
  const timeLimitSeconds = method.timeLimitSeconds ?? section.timeLimitSeconds;
  const optimizer = registry.create('outerOptimizer', method.outerOptimizer.name, method.outerOptimizer.options);
  const oracles = createOracles(trained);
  const trainer = new Trainer({
    problem: trained,
    oracles,
    solver,
    estimator,
    optimizer,
    seed,
    options: {
      steps: section.steps,
      ...(timeLimitSeconds !== undefined ? { timeLimitSeconds } : {}),
      evalEvery: 0,
      warmStart: method.warmStart,
      closedFormDiagnostics: section.closedFormDiagnostics,
    },
  });

  // The value function h(x) = f(x, y*(x)) (benchopt-ho): its own solver and oracles (not counted), y* kept between
  // evaluations as the next one's warm start.
  const vfSolver = section.valueFunctionSolver
    ? registry.create('innerSolver', section.valueFunctionSolver.name, section.valueFunctionSolver.options)
    : undefined;
  const vfOracles = vfSolver ? createOracles(trained) : undefined;
  let yStar: TensorTree | null = null;
  const valueFunction = (): number => {
    if (!vfSolver || !vfOracles) return NaN;
    const y0 = yStar ?? tidy(() => trained.initialY(new Random(seed).fork('value-function'), trainer.x));
    // A copy: the solver may hand back y0's own tensors (no iteration needed), and y0 is released here.
    const solved = tidy(() => {
      const r = vfSolver.solve({ oracles: vfOracles, x: trainer.x, y0 });
      r.curvature?.dispose();
      return treeClone(r.y);
    });
    treeDispose(y0);
    yStar = treeKeep(solved);
    return tidy(() => trained.outerLoss(trainer.x, yStar as TensorTree).dataSync()[0]);
  };

  const meter = new MemoryMeter();
  const curve: CurvePoint[] = [];
  const evals: EvalPoint[] = [];
  // benchopt's way: the metrics of the iterate (x, y) itself; else after an uncharged inner solve at x.
  const atIterate = (): { outerLoss: number; metrics: Record<string, number> } => {
    const r = tidy(() => ({
      outerLoss: trained.outerLoss(trainer.x, trainer.y).dataSync()[0],
      metrics: trained.evaluate ? trained.evaluate(trainer.x, trainer.y) : {},
    }));
    return vfSolver ? { ...r, metrics: { ...r.metrics, valueFunction: valueFunction() } } : r;
  };
  const withError = (metrics: Record<string, number>): Record<string, number> =>
    metrics.testAccuracy !== undefined && (section.mainMetric === 'testError' || section.evaluateAtIterate)
      ? { ...metrics, testError: 1 - metrics.testAccuracy }
      : metrics;
  const evaluate = (iterate: number, time: number): void => {
    const r = section.evaluateAtIterate ? atIterate() : trainer.finalEvaluation();
    evals.push({ iterate, time, outerLoss: r.outerLoss, metrics: withError(r.metrics) });
  };
  let lastEvalTime = 0;
  let previousTime = 0;
  trainer.on('step', (e) => {
    meter.setMeasuring(false);
    meter.sample();
    const total = ORACLE_KINDS.reduce((s, k) => s + e.oracleCalls[k], 0);
    const cosine = e.metrics.hypergradientCosine;
    curve.push({
      iterate: e.step - 1,
      time: previousTime,
      outerLoss: e.outerLoss,
      ...(cosine !== undefined ? { hypergradientCosine: cosine } : {}),
      oracleCalls: total,
    });
    previousTime = e.elapsedSeconds;
    const last = e.step >= section.steps;
    const outOfTime = timeLimitSeconds !== undefined && e.elapsedSeconds >= timeLimitSeconds;
    // The run's own final evaluation covers the last iterate (and must not count as training memory).
    if (!last && !outOfTime && e.elapsedSeconds - lastEvalTime >= section.evalIntervalSeconds) {
      evaluate(e.step, e.elapsedSeconds);
      lastEvalTime = e.elapsedSeconds;
    }
    meter.setMeasuring(!last && !outOfTime);
  });

  let status: RunResult['status'] = 'completed';
  let error: string | undefined;
  let stoppedBy: string | undefined;
  try {
    evaluate(0, 0);
    meter.setMeasuring(true);
    const result = await trainer.run();
    meter.setMeasuring(false);
    stoppedBy = result.stoppedBy;
    if (section.evaluateAtIterate) evaluate(result.steps, result.elapsedSeconds);
    else evals.push({ iterate: result.steps, time: result.elapsedSeconds, outerLoss: result.finalOuterLoss, metrics: withError(result.finalMetrics) });
  } catch (e) {
    meter.setMeasuring(false);
    status = isDivergence(e) ? 'diverged' : 'failed';
    error = errorText(e);
  }
  const memory = meter.report();
  meter.dispose();
  const out: RunResult = {
    ...base,
    status,
    ...(error !== undefined ? { error } : {}),
    ...(stoppedBy !== undefined ? { stoppedBy } : {}),
    steps: trainer.step,
    trainSeconds: trainer.elapsedSeconds,
    wallSeconds: wall(),
    setupSeconds,
    curve,
    evals,
    oracleCalls: { ...oracles.counts },
    memory,
    backend,
  };
  trainer.dispose();
  treeDispose(fixedY);
  treeDispose(yStar);
  vfSolver?.dispose?.();
  problem.dispose?.();
  tf.disposeVariables();
  return out;
}
