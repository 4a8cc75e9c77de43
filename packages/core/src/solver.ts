import type * as tf from '@tensorflow/tfjs-core';
import type { Oracles } from './oracles';
import type { Batch } from './problem';
import type { TensorTree } from './tree';

/** Minibatch for inner iteration k; a fixed schedule lets perturbed solves replay the same sequence. */
export type BatchSchedule = (iteration: number) => Batch | undefined;

/** What an inner solver is asked to do: minimize g(x, ·) from `y0`. */
export interface InnerSolveRequest {
  /** The counted oracles through which the solver evaluates g and its gradients. */
  readonly oracles: Oracles;
  /** The outer variable x at which the inner problem is solved (not modified). */
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
  /** The step s = y₊ − y. */
  readonly s: tf.Tensor1D;
  /** The gradient difference r = ∇g(y₊) − ∇g(y). */
  readonly r: tf.Tensor1D;
}

/**
 * Curvature gathered by a quasi-Newton solver, as an operator H ≈ [∇²_yy g]⁻¹ that an estimator may
 * reuse (qNBO's reuse mode). Only the contract lives here; the memories (L-BFGS, SR1, dense BFGS) are in
 * `@bilevel/linalg`.
 */
export interface CurvatureMemory {
  /** Which update built the memory, e.g. `lbfgs`, `sr1` or `bfgs`. */
  readonly kind: string;
  /** The curvature pairs held, oldest first. */
  readonly pairs: readonly CurvaturePair[];
  /** H · v for a y-shaped tree v. */
  applyInverseHessian(v: TensorTree): TensorTree;
  /** Releases the pairs' tensors. */
  dispose(): void;
}

/** The result of an inner solve. */
export interface InnerResult {
  /** The approximate inner solution y_N(x). */
  readonly y: TensorTree;
  /** Iterations run (quasi-Newton solvers count their warm-up steps). */
  readonly iterations: number;
  /** ‖∇_y g(x, y_N)‖ at the last gradient the solver computed. */
  readonly gradientNorm: number;
  /** Whether the gradient-norm tolerance was reached before the budget ran out. */
  readonly converged: boolean;
  /**
   * The curvature pairs of a quasi-Newton solver, as an inverse-Hessian operator. The result owns it: later
   * solves (the next step's, an estimator's perturbed ones) do not touch it, and whoever holds the result
   * disposes it — the trainer does once the step's estimate is formed.
   */
  readonly curvature?: CurvatureMemory;
}

/** Solves the inner problem min_y g(x, y). */
export interface InnerSolver {
  /** The solver's registered name. */
  readonly name: string;
  /**
   * True when the update acts on each stacked member independently (GD, Adam), so B independent
   * problems stacked along a leading axis can be solved as one (batched evolution-strategies solves).
   */
  readonly elementwise: boolean;
  /** Iteration budget used when the request gives none. */
  readonly maxIterations: number;
  /** Runs the solve; `request.y0` is not disposed. */
  solve(request: InnerSolveRequest): InnerResult;
  /**
   * Solves B stacked problems at once (`x`, `y0` carry a leading axis of B); only for elementwise
   * solvers and problems with `innerLossBatched`.
   */
  solveBatched?(request: InnerSolveRequest): InnerResult;
  /** Releases tensors the solver keeps between solves (e.g. a curvature memory whose owner did not release it). */
  dispose?(): void;
}
