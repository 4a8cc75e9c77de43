import type { TensorTree } from '@bilevel/core';
import { flatVectors, fromTree, residualOf } from './flat-vectors';
import { type LinearSolveResult, type MatVec, checkInit, flatOperator } from './linear-solve';

/** Options of {@link conjugateGradient}. */
export interface ConjugateGradientOptions {
  /** Starting guess x₀ (a warm start); zero when absent. */
  readonly init?: TensorTree;
  /** Largest number of CG steps (one matvec each). Default 100. */
  readonly maxIterations?: number;
  /** Stop once ‖r_k‖ ≤ tolerance·‖b‖ (relative residual). Default 1e-6; 0 runs every step. */
  readonly tolerance?: number;
  /**
   * Stop when the curvature along the search direction, pᵀAp/pᵀp, falls to rcond × the largest seen: the
   * remaining directions are numerically null (a singular A, or operator noise). Default 1e-6.
   */
  readonly rcond?: number;
}

/**
 * Conjugate gradient (Hestenes & Stiefel, 1952) for a symmetric positive-definite A:
 *
 *     r₀ = b − A x₀,  p₀ = r₀
 *     α_k = r_kᵀr_k / p_kᵀA p_k,   x_{k+1} = x_k + α_k p_k,   r_{k+1} = r_k − α_k A p_k
 *     β_k = r_{k+1}ᵀr_{k+1} / r_kᵀr_k,   p_{k+1} = r_{k+1} + β_k p_k
 *
 * In exact arithmetic it reaches the solution in at most d steps and its error in the A-norm falls like
 * 2((√κ − 1)/(√κ + 1))^k. The vector algebra runs on one flat vector (host arrays on the CPU backends, see
 * {@link FlatVectors}); only `matvec` sees the tree.
 * When pᵀAp ≤ 0 (A not positive definite along p) it stops and returns the current iterate, not converged.
 * On a consistent singular system (b in the range of A — e.g. an unpenalized softmax bias) CG from zero
 * converges to the minimum-norm solution, but rounding or operator noise eventually feeds the null space,
 * where pᵀAp ≈ 0 makes the step huge; the `rcond` guard stops before that.
 * This is AID-CG's linear solver (Pedregosa, 2016; Ji, Yang & Liang, 2021).
 *
 * It returns the iterate with the smallest (recursively updated) residual, usually the last one. With an
 * inexact operator — finite-difference Hessian-vector products carry relative noise ~1e-5 in float32 — CG
 * reaches a noise floor and then drifts away; keeping the best iterate makes extra steps harmless.
 */
export function conjugateGradient(
  matvec: MatVec,
  b: TensorTree,
  options: ConjugateGradientOptions = {},
): LinearSolveResult {
  const maxIterations = options.maxIterations ?? 100;
  const tolerance = options.tolerance ?? 1e-6;
  const rcond = options.rcond ?? 1e-6;
  if (!Number.isInteger(maxIterations) || maxIterations < 0) {
    throw new Error(`conjugateGradient: maxIterations must be an integer >= 0 (got ${maxIterations})`);
  }
  if (!(tolerance >= 0)) throw new Error(`conjugateGradient: tolerance must be >= 0 (got ${tolerance})`);
  checkInit(options.init, b, 'conjugateGradient');
  const op = flatOperator(matvec, b);
  const vs = flatVectors(op);
  const bv = fromTree(vs, b, 'conjugateGradient: the right-hand side b');
  const bNorm = Math.sqrt(vs.dots([[bv, bv]])[0]);
  let x = options.init ? fromTree(vs, options.init) : vs.zeros();
  let r = options.init ? residualOf(vs, bv, x) : vs.clone(bv);
  vs.dispose(bv);
  let p = vs.clone(r);
  let rs = vs.dots([[r, r]])[0];
  let iterations = 0;
  let breakdown = false;
  const target = tolerance * bNorm;
  // The iterate with the smallest residual so far (it is returned: see the doc comment).
  let best = x;
  let bestResidual = Math.sqrt(rs);
  let maxCurvature = 0;

  while (iterations < maxIterations && Math.sqrt(rs) > target && rs > 0) {
    const ap = vs.apply(p);
    // pᵀAp and pᵀp in one read.
    const [pap, pp] = vs.dots([
      [p, ap],
      [p, p],
    ]);
    const curvature = pap / pp;
    iterations++;
    if (!(pap > 0) || !(curvature > rcond * maxCurvature)) {
      vs.dispose(ap);
      breakdown = true;
      break;
    }
    maxCurvature = Math.max(maxCurvature, curvature);
    const alpha = rs / pap;
    const x2 = vs.axpy(alpha, p, x);
    const r2 = vs.axpy(-alpha, ap, r);
    const rs2 = vs.dots([[r2, r2]])[0];
    const p2 = vs.axpy(rs2 / rs, p, r2);
    vs.dispose(ap, r, p);
    const oldX = x;
    x = x2;
    r = r2;
    p = p2;
    rs = rs2;
    if (Math.sqrt(rs) < bestResidual) {
      if (best !== oldX) vs.dispose(best);
      best = x;
      bestResidual = Math.sqrt(rs);
    }
    if (oldX !== best) vs.dispose(oldX);
  }
  const residual = bestResidual;
  const solution = vs.toTree(best);
  if (x !== best) vs.dispose(x);
  vs.dispose(best, r, p);
  return {
    x: solution,
    iterations,
    residual,
    relativeResidual: bNorm > 0 ? residual / bNorm : 0,
    converged: !breakdown && residual <= target,
  };
}
