import type * as tf from '@tensorflow/tfjs-core';
import type { PluginState } from './estimator';
import type { Random } from './random';
import type { TensorTree } from './tree';

/** A minibatch: named tensors (inputs, labels, sample indices, …) that a problem's losses understand. */
export type Batch = { readonly [name: string]: tf.Tensor };

/**
 * The inner and outer data of a problem split once into fixed minibatches, drawn by their index: what
 * variance-reduced methods (SABA and other SAGA-type methods) need to keep one memory entry per batch. The
 * whole-data loss is the weighted sum of the batch losses: g(x, y) = Σ_b w_b g_b(x, y) with the weights of
 * {@link FixedBatches.innerWeight} (the batch's share of the samples, when each batch loss is a mean over its
 * samples plus the whole loss's regularizer); likewise f with {@link FixedBatches.outerWeight}.
 */
export interface FixedBatches {
  /** Number of fixed inner batches. */
  readonly innerCount: number;
  /** Number of fixed outer batches. */
  readonly outerCount: number;
  /** w_b of inner batch b (the inner weights sum to 1). */
  innerWeight(index: number): number;
  /** w_b of outer batch b (the outer weights sum to 1). */
  outerWeight(index: number): number;
  /** Inner batch b, 0 ≤ b < innerCount: new tensors (the caller disposes them, e.g. in a `tf.tidy`). */
  innerBatch(index: number): Batch;
  /** Outer batch b, 0 ≤ b < outerCount: new tensors (the caller disposes them). */
  outerBatch(index: number): Batch;
}

/**
 * A bilevel problem
 *
 *     min_x Φ(x) = f(x, y*(x))   subject to   y*(x) = argmin_y g(x, y)
 *
 * with g the inner loss and f the outer loss. Only the two losses and the starting points are required;
 * everything else is optional and unlocks more (stochastic methods, evaluation, closed-form checks,
 * batched evolution-strategies solves).
 */
export interface BilevelProblem {
  /** The problem's name (as registered). */
  readonly name: string;
  /** Starting outer variable x₀. */
  initialX(rng: Random): TensorTree;
  /** Starting inner variable y₀ (for x). */
  initialY(rng: Random, x: TensorTree): TensorTree;
  /** Inner loss g(x, y), on a minibatch when one is given, else on the whole inner data. */
  innerLoss(x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar;
  /** Outer loss f(x, y), on a minibatch when one is given, else on the whole outer data. */
  outerLoss(x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar;

  /**
   * Data drawn once per outer step and shared by the inner and outer losses of that step — a few-shot
   * episode (support and query sets of the same classes). It is given to both samplers below; when a
   * sampler is absent, the task itself is the batch of that level.
   */
  sampleTask?(rng: Random): Batch;
  /** Minibatch samplers of the stochastic variant (ESJ-S and other stochastic methods). */
  sampleInnerBatch?(rng: Random, task?: Batch): Batch;
  /**
   * Outer minibatch for one outer step (when absent, f is evaluated on the whole outer data, or on the task).
   */
  sampleOuterBatch?(rng: Random, task?: Batch): Batch;

  /**
   * The data split once into fixed minibatches drawn by index, for variance-reduced methods (SABA) that keep
   * one memory entry per batch. A problem with minibatch samplers provides it; see {@link FixedBatches}.
   */
  fixedBatches?(): FixedBatches;

  /** Metrics at (x, y): test accuracy, closed-form errors and the like. */
  evaluate?(x: TensorTree, y: TensorTree): Record<string, number>;
  /** Name of the metric that plots and summaries show first (e.g. `testAccuracy`). */
  readonly mainMetric?: string;
  /** Whether larger values of `mainMetric` are better. */
  readonly mainMetricHigherIsBetter?: boolean;

  /** Keeps x feasible after an outer step (e.g. a box); identity when absent. */
  projectX?(x: TensorTree): TensorTree;

  /** Closed forms, for problems that have them. */
  innerSolution?(x: TensorTree): TensorTree;
  /**
   * Closed-form hypergradient ∇Φ(x); the trainer then reports each estimate's `hypergradientRelativeError`.
   */
  hypergradient?(x: TensorTree): TensorTree;
  /** Closed-form minimizer x* of Φ. */
  optimalX?(): TensorTree;

  /**
   * Batched inner loss: `xs` and `ys` carry a leading axis of B independent outer/inner variables; the
   * result holds the B losses. Lets estimators run B inner solves as one computation.
   */
  innerLossBatched?(xs: TensorTree, ys: TensorTree, batch?: Batch): tf.Tensor1D;

  /**
   * State that changes as the run goes and decides what comes next — e.g. the position and order of
   * epoch-based minibatch samplers — as JSON, so a checkpoint resumes the same data order.
   */
  getState?(): PluginState;
  /** Restores a state from {@link BilevelProblem.getState}. */
  setState?(state: PluginState): void;

  /** Releases data tensors held by the problem. */
  dispose?(): void;
}
