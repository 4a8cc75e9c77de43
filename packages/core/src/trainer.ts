import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ConfigError, DivergenceError } from './errors';
import type { Estimate, EstimateContext, HypergradientEstimator, InnerBatchSource, PluginState } from './estimator';
import type { OuterOptimizer } from './optimizer';
import { checkParameterTree, describeTreeShapes, preflightProblem, problemError } from './preflight';
import { type OracleCounts, type Oracles } from './oracles';
import type { Batch, BilevelProblem } from './problem';
import { Random, type RandomState } from './random';
import type { BatchSchedule, CurvatureMemory, InnerResult, InnerSolver } from './solver';
import {
  assertSameStructure,
  type TensorTree,
  type TreeData,
  treeDispose,
  treeDot,
  treeFromData,
  treeKeep,
  treeNorm,
  tidy,
  treeReplace,
  treeScale,
  treeSub,
  treeToData,
} from './tree';

/**
 * Default of the trainer's `divergenceBound`: a step whose outer loss or hypergradient norm exceeds 10¹² in
 * absolute value counts as diverged, like a NaN, however few steps the run has (the outer loss after the last
 * step, at the final x, is checked too).
 */
export const DEFAULT_DIVERGENCE_BOUND = 1e12;

/** Options of the {@link Trainer}: stop rules, warm starts, evaluation and divergence guards. */
export const TrainerOptionsSchema = z
  .object({
    steps: z.number().int().positive().default(100).describe('number of outer steps'),
    timeLimitSeconds: z.number().positive().optional().describe('stop after this much training time'),
    tolerance: z.number().min(0).default(0).describe('stop once ‖∇Φ‖ ≤ tolerance'),
    innerIterations: z.number().int().positive().optional().describe("overrides the inner solver's budget"),
    warmStart: z.boolean().default(true).describe('start each inner solve from the previous y'),
    evalEvery: z
      .number()
      .int()
      .min(0)
      .default(1)
      .describe('evaluate metrics every k steps (0: only at the end)'),
    closedFormDiagnostics: z
      .boolean()
      .default(true)
      .describe('compare each estimate with the closed-form hypergradient when the problem has one'),
    onNonFinite: z
      .enum(['stop', 'skip', 'shrink'])
      .default('stop')
      .describe(
        "when a loss or hypergradient is NaN/Inf: 'stop' with an error naming the step, 'skip' the update, or skip and 'shrink' the outer step size",
      ),
    shrinkFactor: z.number().gt(0).lt(1).default(0.5).describe("step-size factor of onNonFinite: 'shrink'"),
    maxConsecutiveSkips: z
      .number()
      .int()
      .positive()
      .default(10)
      .describe('stop with an error after this many skipped updates in a row'),
    clipNorm: z.number().positive().optional().describe('rescale the hypergradient to at most this norm'),
    divergenceBound: z
      .number()
      .positive()
      .default(DEFAULT_DIVERGENCE_BOUND)
      .describe(
        'the run diverged when |outer loss| or ‖∇Φ‖ exceeds this, or a loss or gradient is NaN/Inf (also the final outer loss); handled by onNonFinite',
      ),
  })
  .strict();
/** Validated trainer options. */
export type TrainerOptions = z.output<typeof TrainerOptionsSchema>;

/** An error raised during an outer step, with that step's number. */
export class StepError extends Error {
  constructor(
    /** The outer step (1-based) during which the error was raised. */
    readonly step: number,
    /** The original error. */
    override readonly cause: unknown,
  ) {
    super(`at outer step ${step}: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'StepError';
  }
}

/** What the trainer reports after each outer step k, for the pair (x_k, y_N(x_k)). */
export interface StepEvent {
  /** Outer steps done so far (1 after the first). */
  readonly step: number;
  /** Training time so far, evaluation excluded. */
  readonly elapsedSeconds: number;
  /** f(x_k, y_N(x_k)) on the whole outer data. */
  readonly outerLoss: number;
  /** ‖∇Φ‖ of this step's estimate. */
  readonly hypergradientNorm: number;
  /** Iterations of this step's inner solve. */
  readonly innerIterations: number;
  /** ‖∇_y g‖ at the end of this step's inner solve. */
  readonly innerGradientNorm: number;
  /** Problem metrics (on evaluation steps) and closed-form diagnostics. */
  readonly metrics: Record<string, number>;
  /** Estimator diagnostics of this step. */
  readonly diagnostics: Record<string, number>;
  /** Cumulative oracle calls by kind. */
  readonly oracleCalls: Readonly<OracleCounts>;
  /** Whether the update was skipped (non-finite estimate with `onNonFinite: 'skip'`). */
  readonly skipped: boolean;
}

/** What ended a run: the step budget, the time limit, the tolerance on ‖∇Φ‖, or an abort (`AbortSignal`). */
export type StopReason = 'steps' | 'time' | 'tolerance' | 'interrupt';

/** What {@link Trainer.run} returns. */
export interface TrainResult {
  /** Outer steps done. */
  readonly steps: number;
  /** What ended the run. */
  readonly stoppedBy: StopReason;
  /** Training seconds (evaluation excluded). */
  readonly elapsedSeconds: number;
  /** Outer loss at the final x (after a last inner solve there). */
  readonly finalOuterLoss: number;
  /** Metrics at the final x (after a last inner solve there). */
  readonly finalMetrics: Record<string, number>;
  /** Oracle calls of the run, by kind. */
  readonly oracleCalls: Readonly<OracleCounts>;
}

/** The events a {@link Trainer} emits, with their payloads. */
export interface TrainerEvents {
  /** Before the first step of `run`, with the step budget. */
  start: {
    /** The step budget of the run. */
    readonly steps: number;
  };
  /** After every outer step. */
  step: StepEvent;
  /** When `run` ends, with its result. */
  end: TrainResult;
}

type Listener<E> = (event: E) => void;

/** Everything needed to continue a run exactly where it stopped. */
export interface TrainerState {
  /** Outer steps done. */
  readonly step: number;
  /** Training seconds so far. */
  readonly elapsedSeconds: number;
  /** The outer variable x. */
  readonly x: TreeData;
  /** The inner variable y (the next warm start). */
  readonly y: TreeData;
  /** State of the trainer's random source. */
  readonly rng: RandomState;
  /** Updates skipped in a row by the divergence policy. */
  readonly consecutiveSkips?: number;
  /** Oracle calls so far, by kind. */
  readonly oracleCalls: OracleCounts;
  /** The outer optimizer's state. */
  readonly optimizer?: PluginState;
  /** The estimator's state. */
  readonly estimator?: PluginState;
  /** The problem's own state (minibatch samplers), when it has one. */
  readonly problem?: PluginState;
}

/** The random streams of a step's data, asked for in this order: task, inner minibatches, outer minibatch. */
interface StepStreams {
  /** The task's stream (task-based problems). */
  task(): Random;
  /** The inner minibatches' stream. */
  inner(): Random;
  /** The outer minibatch's stream, or undefined to use the task (or the whole outer data) instead. */
  outer(hasTask: boolean): Random | undefined;
}

/** The data of one outer step, drawn up front and owned by the trainer until `release()`. */
interface StepData {
  /** The step's task (task-based problems). */
  readonly task?: Batch;
  /** The outer minibatch (or the task). */
  readonly outerBatch?: Batch;
  /** The inner minibatches by iteration (drawn up front; any beyond, when first asked for). */
  readonly innerBatches?: BatchSchedule;
  /** Where the step's inner batches came from (when the estimator asks for it; problems without tasks). */
  readonly innerBatchSource?: InnerBatchSource;
  /** Disposes every tensor of the step's data. */
  release(): void;
}

/** The parts a {@link Trainer} is built from (`createPipeline` assembles them from a spec). */
export interface TrainerParts {
  /** The problem. */
  readonly problem: BilevelProblem;
  /** The counted oracles of the problem. */
  readonly oracles: Oracles;
  /** The inner solver. */
  readonly solver: InnerSolver;
  /** The hypergradient estimator. */
  readonly estimator: HypergradientEstimator;
  /** The outer optimizer. */
  readonly optimizer: OuterOptimizer;
  /** Seed of the random source (default 0). */
  readonly seed?: number;
  /** Trainer options (defaults filled in). */
  readonly options?: Partial<TrainerOptions>;
}

/**
 * The outer loop, the one place that orders the steps: warm-started inner solve at x_k, hypergradient
 * estimate, outer update, events. Each step runs inside `tf.tidy`, so only x, y and the plugins' own
 * state survive it.
 */
export class Trainer {
  /** The validated options. */
  readonly options: TrainerOptions;
  /** The problem. */
  readonly problem: BilevelProblem;
  /** The counted oracles. */
  readonly oracles: Oracles;
  /** The inner solver. */
  readonly solver: InnerSolver;
  /** The hypergradient estimator. */
  readonly estimator: HypergradientEstimator;
  /** The outer optimizer. */
  readonly optimizer: OuterOptimizer;
  private rng: Random;
  private consecutiveSkips = 0;
  private xCur: TensorTree;
  private yCur: TensorTree;
  private stepCount = 0;
  private elapsed = 0;
  private lastOuterLoss = NaN;
  private checked = false;
  private readonly seed: number;
  private readonly listeners: { [K in keyof TrainerEvents]: Listener<TrainerEvents[K]>[] } = {
    start: [],
    step: [],
    end: [],
  };

  constructor(parts: TrainerParts) {
    this.options = TrainerOptionsSchema.parse(parts.options ?? {});
    this.problem = parts.problem;
    this.oracles = parts.oracles;
    this.solver = parts.solver;
    this.estimator = parts.estimator;
    this.optimizer = parts.optimizer;
    if (this.options.onNonFinite === 'shrink' && !this.optimizer.scaleLearningRate) {
      throw new ConfigError(
        `trainer.onNonFinite: 'shrink' needs an outer optimizer with a step size to shrink; '${this.optimizer.name}' has none`,
        'trainer.onNonFinite',
      );
    }
    this.seed = parts.seed ?? 0;
    this.rng = new Random(this.seed);
    const init = this.rng.fork('init');
    this.xCur = treeKeep(this.initial('initialX', () => this.problem.initialX(init)));
    try {
      this.yCur = treeKeep(this.initial('initialY', () => this.problem.initialY(init, this.xCur)));
    } catch (e) {
      treeDispose(this.xCur);
      throw e;
    }
  }

  /** Calls initialX / initialY, naming the problem when it throws or returns something unusable. */
  private initial(what: 'initialX' | 'initialY', make: () => TensorTree): TensorTree {
    let tree: TensorTree;
    try {
      tree = tf.tidy(make);
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      const at = what === 'initialY' ? ` (x ${describeTreeShapes(this.xCur)})` : '';
      throw problemError(this.problem, `${what} failed${at}: ${e instanceof Error ? e.message : String(e)}`);
    }
    try {
      checkParameterTree(this.problem, what, tree);
    } catch (e) {
      const made: unknown = tree;
      if (made instanceof tf.Tensor) made.dispose();
      else if (made && typeof made === 'object')
        for (const t of Object.values(made)) if (t instanceof tf.Tensor) t.dispose();
      throw e;
    }
    return tree;
  }

  /** Current outer variable (owned by the trainer; clone it to keep it). */
  get x(): TensorTree {
    return this.xCur;
  }

  /** Current inner variable (owned by the trainer). */
  get y(): TensorTree {
    return this.yCur;
  }

  /** Outer steps done so far. */
  get step(): number {
    return this.stepCount;
  }

  /** Training seconds so far (evaluation excluded). */
  get elapsedSeconds(): number {
    return this.elapsed;
  }

  /** Adds a listener for `start`, `step` or `end`; returns the trainer. */
  on<K extends keyof TrainerEvents>(event: K, listener: Listener<TrainerEvents[K]>): this {
    this.listeners[event].push(listener);
    return this;
  }

  private emit<K extends keyof TrainerEvents>(event: K, payload: TrainerEvents[K]): void {
    for (const l of this.listeners[event]) l(payload);
  }

  /**
   * The data of one outer step, drawn up front, before any solve: the task (task-based problems), the first
   * `innerCount` inner minibatches and the outer minibatch, from the step's random streams. The trainer
   * owns every tensor of it (each one a clone, so data tensors a sampler hands out as they are stay the
   * problem's) until `release()`, so any solve or estimate of the step — the base solve, ES's perturbed
   * solves, a linear system's fresh batches — may read any batch, inside any `tf.tidy`. A batch asked for
   * beyond the first `innerCount` is drawn then, from the same stream, and owned the same way.
   */
  private drawStepData(streams: StepStreams, innerCount: number): StepData {
    const problem = this.problem;
    const own = (batch: Batch | undefined): Batch | undefined => {
      if (!batch) return undefined;
      const out: Record<string, tf.Tensor> = {};
      for (const name of Object.keys(batch)) out[name] = tf.clone(batch[name]);
      return out;
    };
    let innerRng: Random | undefined;
    let innerBatchSource: InnerBatchSource | undefined;
    const recordSource = this.estimator.recordsInnerBatchSource === true;
    const drawn = tf.tidy(() => {
      const task = problem.sampleTask?.(streams.task());
      innerRng = streams.inner();
      if (recordSource && problem.sampleInnerBatch && task === undefined) {
        innerBatchSource = { rng: innerRng.getState(), problem: problem.getState?.() };
      }
      const inner: Batch[] = [];
      if (problem.sampleInnerBatch) {
        for (let k = 0; k < innerCount; k++) inner.push(own(problem.sampleInnerBatch(innerRng, task))!);
      }
      const outerRng = streams.outer(task !== undefined);
      const outer = outerRng && problem.sampleOuterBatch ? problem.sampleOuterBatch(outerRng, task) : task;
      return { task: own(task), inner, outer: own(outer) };
    });
    const { task, inner } = drawn;
    let innerBatches: BatchSchedule | undefined;
    const sample = problem.sampleInnerBatch;
    if (sample) {
      innerBatches = (k: number) => {
        // Beyond the batches drawn up front (a solve that runs past the declared count): drawn now from the
        // same stream, kept out of every scope, and owned like the others.
        while (inner.length <= k) {
          const batch = tf.tidy(() => own(sample.call(problem, innerRng!, task))!);
          for (const t of Object.values(batch)) tf.keep(t);
          inner.push(batch);
        }
        return inner[k];
      };
    } else if (task) {
      innerBatches = () => task;
    }
    const release = () => {
      for (const b of [...inner, drawn.task, drawn.outer]) if (b) for (const t of Object.values(b)) t.dispose();
      inner.length = 0;
    };
    return { task, outerBatch: drawn.outer, innerBatches, innerBatchSource, release };
  }

  /** The inner iteration budget of a step: the trainer's `innerIterations`, else the solver's own. */
  private innerBudget(): number {
    return this.options.innerIterations ?? this.solver.maxIterations;
  }

  /**
   * Evaluates the problem once at the current (x, y) — losses, gradients, projection, closed form — and throws
   * a `ConfigError` naming the problem and the mismatch when shapes do not fit (see {@link preflightProblem}).
   * Runs by itself before the first step of this trainer; does not change the run.
   */
  preflight(): void {
    preflightProblem(this.problem, this.xCur, this.yCur, new Random(this.seed).fork('preflight'), {
      closedForm: this.options.closedFormDiagnostics,
    });
    this.checked = true;
  }

  /** One outer step. Synchronous; returns what it reports. Errors name the step. */
  stepOnce(): StepEvent {
    if (!this.checked) this.preflight();
    try {
      return this.stepUnguarded();
    } catch (err) {
      if (err instanceof DivergenceError || err instanceof ConfigError || err instanceof StepError) throw err;
      throw new StepError(this.stepCount + 1, err);
    }
  }

  /**
   * One outer step in phases: draw the step's data (owned by the trainer), solve the inner problem at x_k
   * (unless the estimator makes its own inner iterates), estimate ∇Φ, guard against divergence, update x —
   * the clock stops here — then the reporting-only work (closed-form diagnostics, metrics).
   */
  private stepUnguarded(): StepEvent {
    const opts = this.options;
    const index = this.stepCount;
    const stepRng = this.rng.fork('step');
    const evaluateNow = opts.evalEvery > 0 && (index + 1) % opts.evalEvery === 0;
    const t0 = performance.now();
    // Streams forked in a fixed order (each fork advances the step's generator).
    const y0Rng = opts.warmStart ? undefined : stepRng.fork('y0');
    const taskRng = this.problem.sampleTask ? stepRng.fork('task') : stepRng;
    const innerRng = stepRng.fork('inner-batches');
    const outerRng = this.problem.sampleOuterBatch ? stepRng.fork('outer-batch') : undefined;
    const estimatorRng = stepRng.fork('estimator');
    const usesBaseSolve = this.estimator.usesBaseSolve !== false;
    const budget = this.innerBudget();
    const data = this.drawStepData(
      { task: () => taskRng, inner: () => innerRng, outer: () => outerRng },
      this.estimator.innerBatchCount?.(budget) ?? (usesBaseSolve ? budget : 0),
    );
    let reportingMs = 0;
    // The inner result owns its curvature memory (quasi-Newton solvers); released with the step.
    let curvature: CurvatureMemory | undefined;
    try {
      const out = tidy(() => {
        const x = this.xCur;
        const y0 = y0Rng ? this.problem.initialY(y0Rng, x) : this.yCur;
        const inner = usesBaseSolve
          ? this.solver.solve({
              oracles: this.oracles,
              x,
              y0,
              maxIterations: opts.innerIterations,
              batches: data.innerBatches,
            })
          : undefined;
        curvature = inner?.curvature;
        const est = this.estimateAt(x, y0, inner, data, estimatorRng, index);
        const solution = inner ?? est.inner!;
        curvature ??= solution.curvature;
        const gradNorm = treeNorm(est.hypergradient).dataSync()[0];
        // Reporting: not charged to the method (direct problem calls, not counted oracles, clock excluded).
        // Task-based problems (few-shot) have no whole-data outer loss: report the step's own.
        const reportStart = performance.now();
        const outerLoss = this.problem
          .outerLoss(x, solution.y, data.task ? data.outerBatch : undefined)
          .dataSync()[0];
        reportingMs += performance.now() - reportStart;
        const { newX, skipped } = this.guardAndUpdate(index, x, est.hypergradient, gradNorm, solution, outerLoss);
        const trainMs = performance.now() - t0 - reportingMs;
        const metrics = this.reportMetrics(x, solution.y, est.hypergradient, gradNorm, evaluateNow);
        return {
          trainSeconds: trainMs / 1000,
          x: newX === x ? null : newX,
          y: solution.y,
          outerLoss,
          gradNorm,
          skipped,
          metrics,
          diagnostics: est.diagnostics,
          innerIterations: solution.iterations,
          innerGradientNorm: solution.gradientNorm,
        };
      });
      return this.finishStep(out, out.trainSeconds);
    } finally {
      curvature?.dispose();
      data.release();
    }
  }

  /** The estimate phase: the estimator's context for this step, and its result checked against its declaration. */
  private estimateAt(
    x: TensorTree,
    y0: TensorTree,
    inner: InnerResult | undefined,
    data: StepData,
    rng: Random,
    step: number,
  ): Estimate {
    const name = this.estimator.name;
    const base = {
      problem: this.problem,
      oracles: this.oracles,
      x,
      solver: this.solver,
      y0,
      innerBatches: data.innerBatches,
      innerBatchSource: data.innerBatchSource,
      outerBatch: data.outerBatch,
      rng,
      step,
    };
    const context: EstimateContext = inner
      ? { ...base, inner }
      : Object.defineProperty(base, 'inner', {
          get: () => {
            throw new Error(
              `estimator '${name}' declares usesBaseSolve: false, so the step made no base inner solve, but it read context.inner`,
            );
          },
        }) as unknown as EstimateContext;
    const est = this.estimator.estimate(context);
    if (!inner && !est.inner) {
      throw new Error(
        `estimator '${name}' declares usesBaseSolve: false but returned no inner result (Estimate.inner) for the step to report and warm-start from`,
      );
    }
    return est;
  }

  /**
   * The guard and update phases: a non-finite or out-of-bound inner gradient norm, hypergradient norm or
   * outer loss stops the run or skips the update (the `onNonFinite` policy); otherwise x is updated by the
   * outer optimizer (after clipping) and projected.
   */
  private guardAndUpdate(
    index: number,
    x: TensorTree,
    hypergradient: TensorTree,
    gradNorm: number,
    inner: InnerResult,
    outerLoss: number,
  ): { newX: TensorTree; skipped: boolean } {
    const opts = this.options;
    // Iterates that blow up show in the outer loss and the hypergradient at them (both at hand, no extra
    // pass over x); the last step's iterate is checked by the final evaluation.
    const bound = opts.divergenceBound;
    const bad: [string, number][] = (
      [
        ['inner gradient norm', inner.gradientNorm],
        ['hypergradient norm', gradNorm],
        ['outer loss', outerLoss],
      ] as [string, number][]
    ).filter(([quantity, v]) => !Number.isFinite(v) || (quantity !== 'inner gradient norm' && Math.abs(v) > bound));
    if (bad.length > 0) {
      const [quantity, value] = bad[0];
      if (opts.onNonFinite === 'stop' || this.consecutiveSkips + 1 > opts.maxConsecutiveSkips) {
        throw new DivergenceError(index + 1, quantity, value, Number.isFinite(value) ? bound : undefined);
      }
      if (opts.onNonFinite === 'shrink') this.optimizer.scaleLearningRate?.(opts.shrinkFactor);
      return { newX: x, skipped: true };
    }
    let g = hypergradient;
    if (opts.clipNorm !== undefined && gradNorm > opts.clipNorm) g = treeScale(g, opts.clipNorm / gradNorm);
    const stepped = this.optimizer.step(x, g);
    return { newX: this.problem.projectX ? this.problem.projectX(stepped) : stepped, skipped: false };
  }

  /** The reporting phase (off the clock): closed-form diagnostics and, on evaluation steps, the problem's metrics. */
  private reportMetrics(
    x: TensorTree,
    y: TensorTree,
    hypergradient: TensorTree,
    gradNorm: number,
    evaluateNow: boolean,
  ): Record<string, number> {
    const metrics: Record<string, number> = {};
    if (this.options.closedFormDiagnostics && this.problem.hypergradient) {
      const truth = this.problem.hypergradient(x);
      const dot = treeDot(truth, hypergradient).dataSync()[0];
      const tn = treeNorm(truth).dataSync()[0];
      const dn = treeNorm(treeSub(truth, hypergradient)).dataSync()[0];
      metrics.hypergradientCosine = dot / Math.max(tn * gradNorm, 1e-30);
      metrics.hypergradientRelativeError = dn / Math.max(tn, 1e-30);
    }
    if (evaluateNow && this.problem.evaluate) Object.assign(metrics, this.problem.evaluate(x, y));
    return metrics;
  }

  private finishStep(
    out: {
      x: TensorTree | null;
      y: TensorTree;
      outerLoss: number;
      gradNorm: number;
      skipped: boolean;
      metrics: Record<string, number>;
      diagnostics: Record<string, number>;
      innerIterations: number;
      innerGradientNorm: number;
    },
    trainSeconds: number,
  ): StepEvent {
    if (out.x) this.xCur = treeReplace(this.xCur, out.x);
    this.yCur = treeReplace(this.yCur, out.y);
    this.elapsed += trainSeconds;
    this.stepCount += 1;
    this.consecutiveSkips = out.skipped ? this.consecutiveSkips + 1 : 0;
    this.lastOuterLoss = out.outerLoss;
    const event: StepEvent = {
      step: this.stepCount,
      elapsedSeconds: this.elapsed,
      outerLoss: out.outerLoss,
      hypergradientNorm: out.gradNorm,
      innerIterations: out.innerIterations,
      innerGradientNorm: out.innerGradientNorm,
      metrics: out.metrics,
      diagnostics: out.diagnostics,
      oracleCalls: { ...this.oracles.counts },
      skipped: out.skipped,
    };
    this.emit('step', event);
    return event;
  }

  /** Metrics at the current x after one more inner solve there (not charged to the method). */
  finalEvaluation(): {
    /** f at the current x and the inner solution there. */
    outerLoss: number;
    /** The problem's metrics there. */
    metrics: Record<string, number>;
  } {
    const saved = { ...this.oracles.counts };
    const rng = new Random(this.rng.getState()).fork('final-evaluation');
    let y0Rng: Random | undefined;
    // The task, the inner stream, the warm start's stream, then (task-based problems) the outer batch.
    const data = this.drawStepData(
      {
        task: () => rng,
        inner: () => rng.fork('inner-batches'),
        outer: (hasTask) => {
          if (!this.options.warmStart) y0Rng = rng.fork('y0');
          return hasTask ? rng : undefined;
        },
      },
      this.innerBudget(),
    );
    try {
      return tidy(() => {
        // Start where a training step would: the last y, or (warmStart: false) a fresh initial y.
        const y0 = y0Rng ? this.problem.initialY(y0Rng, this.xCur) : this.yCur;
        const inner = this.solver.solve({
          oracles: this.oracles,
          x: this.xCur,
          y0,
          maxIterations: this.options.innerIterations,
          batches: data.innerBatches,
        });
        inner.curvature?.dispose();
        const outerLoss = this.problem.outerLoss(this.xCur, inner.y, data.task ? data.outerBatch : undefined).dataSync()[0];
        const metrics = this.problem.evaluate ? this.problem.evaluate(this.xCur, inner.y) : {};
        return { outerLoss, metrics };
      });
    } finally {
      data.release();
      this.oracles.restoreCounts(saved);
    }
  }

  /**
   * Runs outer steps until the step budget, the time limit or the tolerance is reached, or `signal`
   * aborts (Ctrl-C). Yields to the event loop between steps.
   */
  async run(options: { signal?: AbortSignal } = {}): Promise<TrainResult> {
    const opts = this.options;
    this.emit('start', { steps: opts.steps });
    let stoppedBy: StopReason = 'steps';
    while (this.stepCount < opts.steps) {
      if (options.signal?.aborted) {
        stoppedBy = 'interrupt';
        break;
      }
      const ev = this.stepOnce();
      if (opts.tolerance > 0 && ev.hypergradientNorm <= opts.tolerance) {
        stoppedBy = 'tolerance';
        break;
      }
      if (opts.timeLimitSeconds !== undefined && this.elapsed >= opts.timeLimitSeconds) {
        stoppedBy = 'time';
        break;
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    const final =
      stoppedBy === 'interrupt' ? { outerLoss: this.lastOuterLoss, metrics: {} } : this.finalEvaluation();
    // The iterate of the last step is seen here first: a run that blew up on its last step is no success.
    if (stoppedBy !== 'interrupt' && (!Number.isFinite(final.outerLoss) || Math.abs(final.outerLoss) > opts.divergenceBound)) {
      const value = final.outerLoss;
      throw new DivergenceError(this.stepCount, 'outer loss at the final x', value, Number.isFinite(value) ? opts.divergenceBound : undefined);
    }
    const result: TrainResult = {
      steps: this.stepCount,
      stoppedBy,
      elapsedSeconds: this.elapsed,
      finalOuterLoss: final.outerLoss,
      finalMetrics: final.metrics,
      oracleCalls: { ...this.oracles.counts },
    };
    this.emit('end', result);
    return result;
  }

  /** The whole state of the run (for checkpoints); {@link Trainer.setState} continues from it exactly. */
  getState(): TrainerState {
    return {
      step: this.stepCount,
      elapsedSeconds: this.elapsed,
      x: treeToData(this.xCur),
      y: treeToData(this.yCur),
      rng: this.rng.getState(),
      consecutiveSkips: this.consecutiveSkips,
      oracleCalls: { ...this.oracles.counts },
      optimizer: this.optimizer.getState?.(),
      estimator: this.estimator.getState?.(),
      problem: this.problem.getState?.(),
    };
  }

  /**
   * Continues from a saved state (e.g. a checkpoint): x, y, the random generator, step count, time, oracle
   * counts and the optimizer's, estimator's and problem's own state. A state whose x or y does not have this
   * problem's names and shapes is refused with a `ConfigError`.
   */
  setState(state: TrainerState): void {
    const x = treeKeep(treeFromData(state.x));
    const y = treeKeep(treeFromData(state.y));
    try {
      assertSameStructure(x, this.xCur, 'saved x vs the x of this problem');
      assertSameStructure(y, this.yCur, 'saved y vs the y of this problem');
    } catch (e) {
      treeDispose(x);
      treeDispose(y);
      throw new ConfigError(
        `the saved state does not fit problem '${this.problem.name}': ${e instanceof Error ? e.message : String(e)}`,
        'checkpoint',
      );
    }
    treeDispose(this.xCur);
    treeDispose(this.yCur);
    this.xCur = x;
    this.yCur = y;
    this.stepCount = state.step;
    this.elapsed = state.elapsedSeconds;
    this.rng.setState(state.rng);
    this.consecutiveSkips = state.consecutiveSkips ?? 0;
    this.oracles.restoreCounts(state.oracleCalls);
    if (state.optimizer !== undefined) this.optimizer.setState?.(state.optimizer);
    if (state.estimator !== undefined) this.estimator.setState?.(state.estimator);
    if (state.problem !== undefined) this.problem.setState?.(state.problem);
  }

  /** Releases x, y and the plugins' state. */
  dispose(): void {
    treeDispose(this.xCur);
    treeDispose(this.yCur);
    this.solver.dispose?.();
    this.estimator.dispose?.();
    this.optimizer.dispose?.();
  }
}
