import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ConfigError, DivergenceError } from './errors';
import type { HypergradientEstimator, PluginState } from './estimator';
import type { OuterOptimizer } from './optimizer';
import { checkParameterTree, describeTreeShapes, preflightProblem, problemError } from './preflight';
import { type OracleCounts, type Oracles } from './oracles';
import type { Batch, BilevelProblem } from './problem';
import { Random, type RandomState } from './random';
import type { BatchSchedule, InnerSolver } from './solver';
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
   * The step's inner minibatch sequence, drawn lazily and memoized so that every solve of the step (the
   * base solve and, for ES, the perturbed ones) sees the same batches. A batch may first be drawn deep
   * inside a solver's `tf.tidy`, so the tensors it creates are kept out of every scope and disposed by
   * `release()` once the step is over. Tensors a problem hands out that existed before the draw (its data)
   * are left alone.
   */
  private batchSchedule(
    rng: Random,
    task: Batch | undefined,
  ): { schedule: BatchSchedule | undefined; release: () => void } {
    const sample = this.problem.sampleInnerBatch;
    if (!sample) return { schedule: task ? () => task : undefined, release: () => undefined };
    const memo: Batch[] = [];
    const owned: tf.Tensor[] = [];
    const schedule = (k: number): Batch => {
      while (memo.length <= k) {
        const probe = tf.scalar(0);
        const firstNewId = probe.id;
        probe.dispose();
        const batch = sample.call(this.problem, rng, task);
        for (const t of Object.values(batch)) {
          if (t.id > firstNewId && !t.isDisposed) owned.push(tf.keep(t));
        }
        memo.push(batch);
      }
      return memo[k];
    };
    const release = () => {
      for (const t of owned) t.dispose();
      owned.length = 0;
      memo.length = 0;
    };
    return { schedule, release };
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

  private stepUnguarded(): StepEvent {
    const opts = this.options;
    const index = this.stepCount;
    const stepRng = this.rng.fork('step');
    const evaluateNow = opts.evalEvery > 0 && (index + 1) % opts.evalEvery === 0;
    const t0 = performance.now();
    let trainSeconds = 0;
    let releaseBatches = () => undefined as void;
    try {
      const out = tidy(() => {
        const x = this.xCur;
        const y0 = opts.warmStart ? this.yCur : this.problem.initialY(stepRng.fork('y0'), x);
        const task = this.problem.sampleTask?.(stepRng.fork('task'));
        const drawn = this.batchSchedule(stepRng.fork('inner-batches'), task);
        releaseBatches = drawn.release;
        const innerBatches = drawn.schedule;
        const outerBatch = this.problem.sampleOuterBatch
          ? this.problem.sampleOuterBatch(stepRng.fork('outer-batch'), task)
          : task;
        const inner = this.solver.solve({
          oracles: this.oracles,
          x,
          y0,
          maxIterations: opts.innerIterations,
          batches: innerBatches,
        });
        const est = this.estimator.estimate({
          problem: this.problem,
          oracles: this.oracles,
          x,
          inner,
          solver: this.solver,
          y0,
          innerBatches,
          outerBatch,
          rng: stepRng.fork('estimator'),
          step: index,
        });
        const gradNorm = treeNorm(est.hypergradient).dataSync()[0];
        // Reporting: not charged to the method (direct problem calls, not counted oracles).
        // Task-based problems (few-shot) have no whole-data outer loss: report the step's own.
        const outerLoss = this.problem.outerLoss(x, inner.y, task ? outerBatch : undefined).dataSync()[0];
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
        let skipped = false;
        let newX: TensorTree;
        if (bad.length > 0) {
          const [quantity, value] = bad[0];
          if (opts.onNonFinite === 'stop' || this.consecutiveSkips + 1 > opts.maxConsecutiveSkips) {
            throw new DivergenceError(index + 1, quantity, value, Number.isFinite(value) ? bound : undefined);
          }
          skipped = true;
          newX = x;
          if (opts.onNonFinite === 'shrink') this.optimizer.scaleLearningRate?.(opts.shrinkFactor);
        } else {
          let g = est.hypergradient;
          if (opts.clipNorm !== undefined && gradNorm > opts.clipNorm)
            g = treeScale(g, opts.clipNorm / gradNorm);
          const stepped = this.optimizer.step(x, g);
          newX = this.problem.projectX ? this.problem.projectX(stepped) : stepped;
        }
        trainSeconds = (performance.now() - t0) / 1000;
        const metrics: Record<string, number> = {};
        if (opts.closedFormDiagnostics && this.problem.hypergradient) {
          const truth = this.problem.hypergradient(x);
          const dot = treeDot(truth, est.hypergradient).dataSync()[0];
          const tn = treeNorm(truth).dataSync()[0];
          const dn = treeNorm(treeSub(truth, est.hypergradient)).dataSync()[0];
          metrics.hypergradientCosine = dot / Math.max(tn * gradNorm, 1e-30);
          metrics.hypergradientRelativeError = dn / Math.max(tn, 1e-30);
        }
        if (evaluateNow && this.problem.evaluate) Object.assign(metrics, this.problem.evaluate(x, inner.y));
        const keepX = newX === x ? null : newX;
        return {
          x: keepX,
          y: inner.y,
          outerLoss,
          gradNorm,
          skipped,
          metrics,
          diagnostics: est.diagnostics,
          innerIterations: inner.iterations,
          innerGradientNorm: inner.gradientNorm,
        };
      });
      return this.finishStep(out, trainSeconds);
    } finally {
      releaseBatches();
    }
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
    let releaseBatches = () => undefined as void;
    try {
      const res = tidy(() => {
        const rng = new Random(this.rng.getState()).fork('final-evaluation');
        const task = this.problem.sampleTask?.(rng);
        const drawn = this.batchSchedule(rng.fork('inner-batches'), task);
        releaseBatches = drawn.release;
        // Start where a training step would: the last y, or (warmStart: false) a fresh initial y.
        const y0 = this.options.warmStart ? this.yCur : this.problem.initialY(rng.fork('y0'), this.xCur);
        const inner = this.solver.solve({
          oracles: this.oracles,
          x: this.xCur,
          y0,
          maxIterations: this.options.innerIterations,
          batches: drawn.schedule,
        });
        const outerBatch =
          task && this.problem.sampleOuterBatch ? this.problem.sampleOuterBatch(rng, task) : task;
        const outerLoss = this.problem.outerLoss(this.xCur, inner.y, outerBatch).dataSync()[0];
        const metrics = this.problem.evaluate ? this.problem.evaluate(this.xCur, inner.y) : {};
        return { outerLoss, metrics };
      });
      return res;
    } finally {
      releaseBatches();
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
