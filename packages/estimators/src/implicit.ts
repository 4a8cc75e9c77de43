import * as tf from '@tensorflow/tfjs-core';
import { type Batch, type EstimateContext, type TensorTree, treeSub } from '@bilevel/core';
import { checkedBatches } from './batch-schedule';
import type { LinearSolveResult, MatVec } from './linear-solve';

/**
 * The minibatch on which the linear system of an implicit estimator is formed (stochastic problems): the
 * batch drawn right after the N batches of the inner solve, `innerBatches(N)`, so the Hessian is not
 * evaluated on the very samples that produced y_N. Undefined for deterministic problems; the task itself for
 * task-based (few-shot) problems.
 */
export function linearSystemBatch(context: EstimateContext): Batch | undefined {
  return checkedBatches(context)?.(context.inner.iterations);
}

/** v ↦ ∇²_yy g(x, y_N)·v through the oracles (their second-order strategy, counted). */
export function innerHessian(context: EstimateContext, batch: Batch | undefined): MatVec {
  const { oracles, x, inner } = context;
  return (v: TensorTree) => oracles.hessianVectorProduct(x, inner.y, v, batch);
}

/** ∇ₓf(x, y_N) and ∇_y f(x, y_N) on the step's outer batch. */
export function outerGradients(context: EstimateContext): {
  /** ∇ₓf(x, y_N). */
  gradX: TensorTree;
  /** ∇_y f(x, y_N). */
  gradY: TensorTree;
} {
  const { value, gradX, gradY } = context.oracles.outerGrads(context.x, context.inner.y, context.outerBatch);
  value.dispose();
  return { gradX, gradY };
}

/**
 * The implicit-function-theorem hypergradient with u ≈ [∇²_yy g]⁻¹ ∇_y f:
 *
 *     ∇Φ(x) = ∇ₓf − ∇²_xy g · u        (since ∂y*(x)/∂x = −[∇²_yy g]⁻¹ ∇²_yx g)
 */
export function implicitHypergradient(
  context: EstimateContext,
  gradX: TensorTree,
  u: TensorTree,
  batch: Batch | undefined,
): TensorTree {
  return tf.tidy(() =>
    treeSub(gradX, context.oracles.mixedVectorProduct(context.x, context.inner.y, u, batch)),
  );
}

/** Diagnostics of a linear solve: residual, relative residual, iterations, convergence flag. */
export function solveDiagnostics(result: LinearSolveResult): Record<string, number> {
  return {
    residual: result.residual,
    relativeResidual: result.relativeResidual,
    iterations: result.iterations,
    converged: result.converged ? 1 : 0,
  };
}
