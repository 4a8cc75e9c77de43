import * as tf from '@tensorflow/tfjs-core';
import {
  type Batch,
  type Estimate,
  type EstimateContext,
  type TensorTree,
  tidy,
  treeSub,
} from '@bilevel/core';
import type { LinearSolveResult, MatVec } from '@bilevel/linalg';
import { OracleCallMeter } from './oracle-calls';
import type { WarmStart } from './warm-start';

/**
 * The minibatch on which the linear system of an implicit estimator is formed (stochastic problems): the
 * batch drawn right after the N batches of the inner solve, `innerBatches(N)`, so the Hessian is not
 * evaluated on the very samples that produced y_N. Undefined for deterministic problems; the task itself for
 * task-based (few-shot) problems.
 */
export function linearSystemBatch(context: EstimateContext): Batch | undefined {
  return context.innerBatches?.(context.inner.iterations);
}

/** v ↦ ∇²_yy g(x, y_N)·v through the oracles (their second-order strategy, counted). */
export function innerHessian(context: EstimateContext, batch: Batch | undefined): MatVec {
  const { oracles, x, inner } = context;
  return (v: TensorTree) => oracles.hessianVectorProduct(x, inner.y, v, batch);
}

/** How an implicit estimator's Hessian-vector products pick their minibatches (stochastic problems). */
export interface SystemBatches {
  /**
   * true: the k-th product (k = 0, 1, …) on its own fresh inner minibatch `innerBatches(N + 1 + k)`, as the
   * stochastic methods SOBA, AmIGO and StocBiO do; false: every product on `innerBatches(N)`.
   */
  readonly fresh: boolean;
  /** How many products the solve makes (batches drawn ahead; a product beyond reuses the last). */
  readonly products: number;
}

/**
 * `count` inner minibatches after the inner solve's and the linear system's, `innerBatches(N + 1 + k)` for
 * k < count (at least one), from the step's schedule (whose tensors the trainer owns for the whole step;
 * the estimator declares the count with `innerBatchCount`). Undefined for deterministic problems (no schedule, or it gives no batches).
 */
export function freshInnerBatches(context: EstimateContext, count: number): Batch[] | undefined {
  const schedule = context.innerBatches;
  if (!schedule) return undefined;
  const base = context.inner.iterations + 1;
  const batches: Batch[] = [];
  for (let k = 0; k < Math.max(count, 1); k++) {
    const b = schedule(base + k);
    if (!b) return undefined;
    batches.push(b);
  }
  return batches;
}

/** v ↦ ∇²_yy g(x, y_N; B_k)·v with B_k the k-th of `batches` at the k-th call (the last one beyond). */
function freshHessian(context: EstimateContext, batches: readonly Batch[]): MatVec {
  const { oracles, x, inner } = context;
  let calls = 0;
  return (v: TensorTree) => {
    const batch = batches[Math.min(calls, batches.length - 1)];
    calls++;
    return oracles.hessianVectorProduct(x, inner.y, v, batch);
  };
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

/** Solves ∇²_yy g · u = ∇_y f approximately, from `init` when given. */
export type ImplicitLinearSolver = (
  hessian: MatVec,
  rhs: TensorTree,
  init: TensorTree | undefined,
) => LinearSolveResult;

/**
 * The whole estimate of an implicit (AID) estimator: the linear system on its batch, u from `solve`, then
 * ∇Φ ≈ ∇ₓf − ∇²_xy g · u, with the solve's diagnostics and the oracle calls it made. With `warmStart`, the
 * solve starts from the previous step's u when `enabled` (diagnostic `warmStarted`) and the new u is kept.
 */
export function implicitEstimate(
  context: EstimateContext,
  solve: ImplicitLinearSolver,
  warmStart?: { readonly memory: WarmStart; readonly enabled: boolean },
  systemBatches?: SystemBatches,
): Estimate {
  const meter = new OracleCallMeter(context.oracles);
  const fresh = systemBatches?.fresh ? freshInnerBatches(context, systemBatches.products) : undefined;
  const { hypergradient, diagnostics } = tidy(() => {
    const batch = linearSystemBatch(context);
    const { gradX, gradY } = outerGradients(context);
    const warm = warmStart?.enabled ? warmStart.memory : undefined;
    const init = warm?.get(gradY) ?? undefined;
    const hessian = fresh ? freshHessian(context, fresh) : innerHessian(context, batch);
    const solution = solve(hessian, gradY, init);
    warm?.set(solution.x);
    const solveDiag = solveDiagnostics(solution);
    return {
      hypergradient: implicitHypergradient(context, gradX, solution.x, batch),
      diagnostics: warmStart ? { ...solveDiag, warmStarted: init ? 1 : 0 } : solveDiag,
    };
  });
  return { hypergradient, diagnostics: { ...diagnostics, ...meter.diagnostics() } };
}
