import * as tf from '@tensorflow/tfjs-core';
import { type TensorTree, tidy, treeFlatten, treeUnflatten } from '@bilevel/core';
import {
  type LinearSolveResult,
  type MatVec,
  checkFinite,
  checkInit,
  flatOperator,
  vectorDot,
  vectorNorm,
} from './linear-solve';

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
 * 2((√κ − 1)/(√κ + 1))^k. The vector algebra runs on one flat vector; only `matvec` sees the tree.
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
  const bFlat = treeFlatten(b);
  checkFinite(bFlat, 'conjugateGradient: the right-hand side b');
  const bNorm = vectorNorm(bFlat);
  const init = options.init;

  let x: tf.Tensor1D = init ? treeFlatten(init) : tf.zerosLike(bFlat);
  let r: tf.Tensor1D = init ? tf.tidy(() => tf.sub(bFlat, op.apply(x)) as tf.Tensor1D) : tf.clone(bFlat);
  let p: tf.Tensor1D = tf.clone(r);
  let rs = Math.pow(vectorNorm(r), 2);
  let iterations = 0;
  let breakdown = false;
  const target = tolerance * bNorm;
  // The iterate with the smallest residual so far (it is returned: see the doc comment).
  let best = x;
  let bestResidual = Math.sqrt(rs);
  let maxCurvature = 0;

  while (iterations < maxIterations && Math.sqrt(rs) > target && rs > 0) {
    const step = tidy(() => {
      const ap = op.apply(p);
      // pᵀAp and pᵀp in one read (each read waits for the backend).
      const [pap, pp] = tf.stack([vectorDot(p, ap), vectorDot(p, p)]).dataSync();
      const curvature = pap / pp;
      if (!(pap > 0) || !(curvature > rcond * maxCurvature)) return null;
      maxCurvature = Math.max(maxCurvature, curvature);
      const alpha = rs / pap;
      const x2 = tf.add(x, tf.mul(p, alpha)) as tf.Tensor1D;
      const r2 = tf.sub(r, tf.mul(ap, alpha)) as tf.Tensor1D;
      const rs2 = vectorDot(r2, r2).dataSync()[0];
      const p2 = tf.add(r2, tf.mul(p, rs2 / rs)) as tf.Tensor1D;
      return { x2, r2, p2, rs2 };
    });
    iterations++;
    if (step === null) {
      breakdown = true;
      break;
    }
    const oldX = x;
    r.dispose();
    p.dispose();
    x = step.x2;
    r = step.r2;
    p = step.p2;
    rs = step.rs2;
    if (Math.sqrt(rs) < bestResidual) {
      if (best !== oldX) best.dispose();
      best = x;
      bestResidual = Math.sqrt(rs);
    }
    if (oldX !== best) oldX.dispose();
  }
  const residual = bestResidual;
  const solution = treeUnflatten(best, op.spec);
  if (x !== best) x.dispose();
  best.dispose();
  r.dispose();
  p.dispose();
  bFlat.dispose();
  return {
    x: solution,
    iterations,
    residual,
    relativeResidual: bNorm > 0 ? residual / bNorm : 0,
    converged: !breakdown && residual <= target,
  };
}
