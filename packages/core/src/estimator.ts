import type { Oracles } from './oracles';
import type { Batch, BilevelProblem } from './problem';
import type { Random, RandomState } from './random';

/** The state an inner-batch sequence is drawn from: the stream's state and the problem's own (its samplers). */
export interface InnerBatchSource {
  /** The inner-batch stream's state before the step's first batch. */
  readonly rng: RandomState;
  /** The problem's `getState()` before the step's first batch (undefined: the problem keeps none). */
  readonly problem?: unknown;
}
import type { BatchSchedule, InnerResult, InnerSolver } from './solver';
import type { TensorTree } from './tree';

/** Everything an estimator may use to form ∇Φ(x). */
export interface EstimateContext {
  /** The problem being solved. */
  readonly problem: BilevelProblem;
  /** The counted oracles of the pipeline (their second-order strategy and counts). */
  readonly oracles: Oracles;
  /** The outer variable x of this step. */
  readonly x: TensorTree;
  /**
   * The base inner solve at x (from `y0`). An estimator that declares `usesBaseSolve: false` gets no base
   * solve; reading this then throws an error that says so.
   */
  readonly inner: InnerResult;
  /** The inner solver, for estimators that solve again (ES at perturbed x). */
  readonly solver: InnerSolver;
  /** The warm start of the base solve; perturbed solves start here too. */
  readonly y0: TensorTree;
  /**
   * The inner minibatch sequence of this step (stochastic problems): drawn before the step's first solve
   * and owned by the trainer until the step ends, so any batch may be read inside any `tf.tidy`. It holds
   * the estimator's {@link HypergradientEstimator.innerBatchCount} batches (a batch beyond is drawn when
   * first asked for, from the same stream).
   */
  readonly innerBatches?: BatchSchedule;
  /**
   * Where `innerBatches` came from — the state of their random stream and the problem's state (its samplers)
   * before the first batch was drawn — for an estimator that declares `recordsInnerBatchSource` (stochastic
   * problems without tasks): a replica of the problem elsewhere draws the same batches again from it,
   * without receiving their data.
   */
  readonly innerBatchSource?: InnerBatchSource;
  /** The outer minibatch of this step (stochastic problems). */
  readonly outerBatch?: Batch;
  /**
   * A random source for this step, seeded from the trainer's (use it for anything random, for
   * reproducibility).
   */
  readonly rng: Random;
  /** Outer step index, from 0. */
  readonly step: number;
}

/** What an estimator returns for one outer step. */
export interface Estimate {
  /** The hypergradient estimate, x-shaped. */
  readonly hypergradient: TensorTree;
  /** Scalars worth logging: linear-system residual, number of pairs, directions used, … */
  readonly diagnostics: Record<string, number>;
  /**
   * The inner solution the estimator computed itself (required with `usesBaseSolve: false`): the step
   * reports the outer loss there and warm-starts the next step from its `y`.
   */
  readonly inner?: InnerResult;
}

/**
 * State of a plugin (for checkpoints): JSON-serializable, and typed arrays such as the `Float32Values` of
 * `treeToData` may sit anywhere in it (checkpoint files store those, and long number arrays, in binary).
 */
export type PluginState = unknown;

/** Forms the hypergradient ∇Φ(x) = ∇ₓf + (∂y*(x)/∂x)ᵀ ∇_y f. */
export interface HypergradientEstimator {
  /** The estimator's registered name. */
  readonly name: string;
  /**
   * false: the estimator makes its own inner iterates (ITD unrolls its own steps), so the trainer makes no
   * base solve for it, and the estimate returns its inner solution as `Estimate.inner`. Default true.
   */
  readonly usesBaseSolve?: boolean;
  /**
   * true: the trainer records, before each step's inner batches are drawn, where they come from (the step's
   * `innerBatchSource`), so the estimator can have them drawn again elsewhere. Default false.
   */
  readonly recordsInnerBatchSource?: boolean;
  /**
   * How many inner minibatches of the step the estimator reads, given the inner budget N (stochastic
   * problems; the trainer draws that many up front, and any batch asked for beyond when it is first asked
   * for, from the same stream). Default N with a base solve (the solve's), 0 without.
   */
  innerBatchCount?(budget: number): number;
  /** The hypergradient estimate at `context.x`; called inside the trainer's `tf.tidy`. */
  estimate(context: EstimateContext): Estimate;
  /** State carried across outer steps (CG warm start, quasi-Newton memory), for checkpoints. */
  getState?(): PluginState;
  /** Restores a state from {@link HypergradientEstimator.getState}. */
  setState?(state: PluginState): void;
  /** Releases tensors the estimator keeps across steps. */
  dispose?(): void;
}
