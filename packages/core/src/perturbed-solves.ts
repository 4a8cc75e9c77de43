/**
 * The contract through which an estimator sends perturbed inner solves elsewhere (the evolution-strategies
 * estimator's `workers` option): an estimator resolves a {@link PerturbedSolveExecutorFactory} from the
 * dependency-injection container it is created in, and never imports the package that implements it (the
 * `bilevel` command registers one on BullMQ/Redis). The pipeline it belongs to is described to the factory by
 * a {@link PipelineReplica}, from which a remote worker builds a replica of the problem, solver and oracles.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { DependencyContainer, InjectionToken } from 'tsyringe';
import { ConfigError } from './errors';
import type { InnerBatchSource } from './estimator';
import type { OracleCounts } from './oracles';
import type { ResolvedPluginRef } from './pipeline';
import type { Batch, BilevelProblem } from './problem';
import { Random, type RandomState } from './random';
import type { BatchSchedule } from './solver';

/** What a remote worker needs to build a replica of a pipeline's problem, inner solver and oracles. */
export interface PipelineReplica {
  /** The problem as `{ name, options }` (validated options). */
  readonly problem: ResolvedPluginRef;
  /** The inner solver as `{ name, options }`. */
  readonly innerSolver: ResolvedPluginRef;
  /** The oracles' settings (second-order strategy, finite-difference step). */
  readonly oracles: Record<string, unknown>;
}

/** Where perturbed solves go: a queue URL, the longest wait for a step's results, and the block size. */
export interface WorkerPoolOptions {
  /** The queue URL (`redis://…`, `rediss://…`). */
  readonly queue: string;
  /** Milliseconds a step waits for all its blocks before it fails naming the missing ones. */
  readonly timeoutMs: number;
  /** Perturbed solves per job (the directions of one step are split into blocks of this size). */
  readonly blockSize: number;
}

/** Names and shapes of a tensor tree, enough to rebuild it from a flat float32 vector. */
export interface FlatTreeSpec {
  /** Tensor names in flattening order. */
  readonly names: readonly string[];
  /** Their shapes. */
  readonly shapes: readonly (readonly number[])[];
}

/** How the directions of a step are drawn and used (the ES estimator's options that the workers need). */
export interface DirectionSettings {
  /** The distribution name (as the estimator's `distribution` option). */
  readonly distribution: string;
  /** Q, the number of directions. */
  readonly count: number;
  /** Whether each direction is used as the pair ±u (2Q solves). */
  readonly antithetic: boolean;
  /** μ, the perturbation size. */
  readonly smoothing: number;
  /** Whether a block's solves run as one batched solve when the solver and problem allow it. */
  readonly batchedSolves: boolean;
  /** Largest number of solves stacked in one batched solve. */
  readonly maxBatchSize?: number;
}

/**
 * One outer step's perturbed solves: the solves j = 0 … J − 1 at x + μ·offset_j (offsets: the directions u_q
 * drawn from `seed`, then −u_q with antithetic pairs), each from `y0` with `maxIterations`, replaying the
 * inner batches drawn from `innerBatchSeed`. The executor returns c_j = ⟨y_N(x + μ·offset_j) − yBase, gradY⟩
 * (and, when asked, the responses y_N(x + μ·offset_j) − yBase themselves).
 */
export interface PerturbedSolveRequest {
  /** The outer step (from 0). */
  readonly step: number;
  /** x, flat float32. */
  readonly x: Float32Array;
  /** x's tree layout. */
  readonly xSpec: FlatTreeSpec;
  /** The warm start y0, flat float32. */
  readonly y0: Float32Array;
  /** The base solve's y_N(x), flat float32. */
  readonly yBase: Float32Array;
  /** ∇_y f at (x, y_N(x)), flat float32. */
  readonly gradY: Float32Array;
  /** y's tree layout. */
  readonly ySpec: FlatTreeSpec;
  /** State of the random source the directions are drawn from. */
  readonly seed: RandomState;
  /** The directions' settings. */
  readonly directions: DirectionSettings;
  /** Iteration budget of every perturbed solve (undefined: the solver's own budget and tolerance). */
  readonly maxIterations?: number;
  /** Where the step's inner batches came from (stochastic problems): a replica draws them again. */
  readonly innerBatchSource?: InnerBatchSource;
  /**
   * The Q directions themselves, row-major [Q, dim x] flat float32, when they cannot be drawn from `seed`
   * alone (the ES estimator's Jacobian memory draws them in the complement of its remembered directions,
   * which only the coordinator holds); absent: drawn from `seed`.
   */
  readonly directionRows?: Float32Array;
  /**
   * Whether the executor also returns the whole responses y_N(x + μ·offset_j) − yBase (the Jacobian memory
   * keeps them), not only the c_j.
   */
  readonly responses?: boolean;
}

/** The answer to a {@link PerturbedSolveRequest}. */
export interface PerturbedSolveReply {
  /** c_j for j = 0 … J − 1 (J = Q, or 2Q with antithetic pairs). */
  readonly values: Float32Array;
  /** Sum over the J solves of their iteration counts. */
  readonly iterations: number;
  /** Oracle calls the solves made (added to the coordinator's counts, so a step costs what it costs locally). */
  readonly oracleCalls: Partial<OracleCounts>;
  /** Bytes sent to and received from the queue for this step. */
  readonly bytes: TransferredBytes;
  /**
   * With {@link PerturbedSolveRequest.responses}: y_N(x + μ·offset_j) − yBase for j = 0 … J − 1, row-major
   * [J, dim y] flat float32.
   */
  readonly responses?: Float32Array;
}

/** Bytes a step sent and received. */
export interface TransferredBytes {
  /** Sent (the step's value and the jobs' payloads). */
  readonly sent: number;
  /** Received (the jobs' results). */
  readonly received: number;
}

/** Inner batches drawn again by {@link replayInnerBatches}. */
export interface ReplayedBatches {
  /** The batches by iteration (drawn when first asked for). */
  readonly schedule: BatchSchedule;
  /** Disposes every batch drawn. */
  release(): void;
}

/** Runs a step's perturbed solves (synchronously: the trainer's step is synchronous). */
export interface PerturbedSolveExecutor {
  /** The step's c_j; throws when the workers do not answer within the timeout (naming the missing jobs). */
  solve(request: PerturbedSolveRequest): PerturbedSolveReply;
  /** Releases connections and threads. */
  dispose(): void;
}

/** Makes executors for a pipeline (registered under {@link PERTURBED_SOLVE_EXECUTORS}). */
export interface PerturbedSolveExecutorFactory {
  /** An executor sending the perturbed solves of the pipeline `replica` to the pool `options`. */
  create(options: WorkerPoolOptions, replica: PipelineReplica): PerturbedSolveExecutor;
}

/** Token of the {@link PerturbedSolveExecutorFactory} in the plugin container (the `bilevel` command registers it). */
export const PERTURBED_SOLVE_EXECUTORS: InjectionToken<PerturbedSolveExecutorFactory> = Symbol.for(
  'bilevel.perturbedSolveExecutors',
);

/** Token of the {@link PipelineReplica} of the pipeline a plugin is created for (registered by `createPipeline`). */
export const PIPELINE_REPLICA: InjectionToken<PipelineReplica> = Symbol.for('bilevel.pipelineReplica');

/**
 * The executor for `options` from `container`: a {@link ConfigError} naming `path` when no factory is
 * registered (e.g. the library used without the `bilevel` command) or the plugin was created outside a pipeline.
 */
export function resolvePerturbedSolveExecutor(
  container: DependencyContainer,
  options: WorkerPoolOptions,
  path: string,
): PerturbedSolveExecutor {
  if (!container.isRegistered(PERTURBED_SOLVE_EXECUTORS, true)) {
    throw new ConfigError(
      `${path}: no perturbed-solve executor is registered; run the experiment with the bilevel command (or call registerDistributedEs from @bilevel/distributed on the registry's container)`,
      path,
    );
  }
  if (!container.isRegistered(PIPELINE_REPLICA, true)) {
    throw new ConfigError(`${path}: workers need the estimator to be created by createPipeline`, path);
  }
  return container.resolve(PERTURBED_SOLVE_EXECUTORS).create(options, container.resolve(PIPELINE_REPLICA));
}

/**
 * The inner-batch schedule a step drew from `source`, drawn again by the problem's own sampler: the problem's
 * state is set to the recorded one (a replica of the problem then draws the same batches from the same
 * stream state). Batches are kept until `release`.
 */
export function replayInnerBatches(
  problem: BilevelProblem,
  source: InnerBatchSource,
): ReplayedBatches {
  const sample = problem.sampleInnerBatch;
  if (!sample) throw new Error('replayInnerBatches: the problem draws no inner batches');
  if (source.problem !== undefined) {
    if (!problem.setState) throw new Error('replayInnerBatches: the recorded problem state cannot be restored (the problem has no setState)');
    problem.setState(source.problem);
  }
  const rng = new Random(source.rng);
  const drawn: Batch[] = [];
  return {
    schedule: (k: number) => {
      while (drawn.length <= k) {
        const batch = tf.tidy(() => {
          const b = sample.call(problem, rng);
          const out: Record<string, tf.Tensor> = {};
          for (const name of Object.keys(b)) out[name] = tf.clone(b[name]);
          return out;
        });
        // Kept out of every scope (a solve may ask for a batch inside its own tidy), owned until release.
        for (const t of Object.values(batch)) tf.keep(t);
        drawn.push(batch);
      }
      return drawn[k];
    },
    release: () => {
      for (const b of drawn) for (const t of Object.values(b)) t.dispose();
      drawn.length = 0;
    },
  };
}
