import type * as tf from '@tensorflow/tfjs-core';
import type { Oracles } from './oracles';
import type { Batch } from './problem';
import type { TensorTree } from './tree';

/** Minibatch for inner iteration k; a fixed schedule lets perturbed solves replay the same sequence. */
export type BatchSchedule = (iteration: number) => Batch | undefined;

export interface InnerSolveRequest {
  readonly oracles: Oracles;
  readonly x: TensorTree;
  /** Starting point (the warm start). It is not disposed by the solver. */
  readonly y0: TensorTree;
  /** Overrides the solver's own iteration budget. */
  readonly maxIterations?: number;
  /** Minibatches by iteration (stochastic problems); full-batch losses when absent. */
  readonly batches?: BatchSchedule;
}

/** One curvature pair of a quasi-Newton method: step s and gradient difference r (flat vectors). */
export interface CurvaturePair {
  readonly s: tf.Tensor1D;
  readonly r: tf.Tensor1D;
}

/**
 * Curvature gathered by a quasi-Newton solver, as an operator H ≈ [∇²_yy g]⁻¹ that an estimator may
 * reuse (qNBO's reuse mode).
 */
export interface CurvatureMemory {
  readonly kind: string;
  readonly pairs: readonly CurvaturePair[];
  /** H · v for a y-shaped tree v. */
  applyInverseHessian(v: TensorTree): TensorTree;
  dispose(): void;
}

export interface InnerResult {
  /** The approximate inner solution y_N(x). */
  readonly y: TensorTree;
  readonly iterations: number;
  /** ‖∇_y g(x, y_N)‖ at the last gradient the solver computed. */
  readonly gradientNorm: number;
  readonly converged: boolean;
  readonly curvature?: CurvatureMemory;
}

/** Solves the inner problem min_y g(x, y). */
export interface InnerSolver {
  readonly name: string;
  /**
   * True when the update acts on each stacked member independently (GD, Adam), so B independent
   * problems stacked along a leading axis can be solved as one (batched evolution-strategies solves).
   */
  readonly elementwise: boolean;
  /** Iteration budget used when the request gives none. */
  readonly maxIterations: number;
  solve(request: InnerSolveRequest): InnerResult;
  /**
   * Solves B stacked problems at once (`x`, `y0` carry a leading axis of B); only for elementwise
   * solvers and problems with `innerLossBatched`.
   */
  solveBatched?(request: InnerSolveRequest): InnerResult;
}
