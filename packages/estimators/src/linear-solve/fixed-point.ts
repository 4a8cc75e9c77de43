import * as tf from '@tensorflow/tfjs-core';
import { type TensorTree, treeFlatten, treeUnflatten } from '@bilevel/core';
import {
  type LinearSolveResult,
  type MatVec,
  checkFinite,
  checkInit,
  flatOperator,
  vectorNorm,
} from './linear-solve';

/** Options of {@link fixedPointIteration}. */
export interface FixedPointOptions {
  /** Starting guess x₀ (a warm start); zero when absent. */
  readonly init?: TensorTree;
  /** Number of steps K (one matvec each, plus one for the initial residual of a nonzero x₀). Default 20. */
  readonly maxIterations?: number;
  /** Step η; converges when 0 < η < 2/λ_max(A). Default 1. */
  readonly stepSize?: number;
  /** Stop once ‖b − A x_k‖ ≤ tolerance·‖b‖. Default 0 (all K steps). */
  readonly tolerance?: number;
}

/**
 * Fixed-point (Richardson) iteration for A x = b, the linear solver of AID-FP (Grazzi et al., 2020):
 *
 *     x_{k+1} = x_k − η (A x_k − b) = x_k + η r_k,     r_{k+1} = r_k − η A r_k
 *
 * The residual r_k = b − A x_k is carried along (one matvec per step), so its norm is known at every step.
 * From x₀ = 0 it equals the truncated Neumann series with the same η and K = number of steps.
 */
export function fixedPointIteration(
  matvec: MatVec,
  b: TensorTree,
  options: FixedPointOptions = {},
): LinearSolveResult {
  const maxIterations = options.maxIterations ?? 20;
  const eta = options.stepSize ?? 1;
  const tolerance = options.tolerance ?? 0;
  if (!Number.isInteger(maxIterations) || maxIterations < 0) {
    throw new Error(`fixedPointIteration: maxIterations must be an integer >= 0 (got ${maxIterations})`);
  }
  if (!(eta > 0)) throw new Error(`fixedPointIteration: stepSize must be > 0 (got ${eta})`);
  if (!(tolerance >= 0)) throw new Error(`fixedPointIteration: tolerance must be >= 0 (got ${tolerance})`);
  checkInit(options.init, b, 'fixedPointIteration');
  const op = flatOperator(matvec, b);
  const bFlat = treeFlatten(b);
  checkFinite(bFlat, 'fixedPointIteration: the right-hand side b');
  const bNorm = vectorNorm(bFlat);
  const init = options.init;
  let x: tf.Tensor1D = init ? treeFlatten(init) : tf.zerosLike(bFlat);
  let r: tf.Tensor1D = init ? tf.tidy(() => tf.sub(bFlat, op.apply(x)) as tf.Tensor1D) : tf.clone(bFlat);
  let residual = vectorNorm(r);
  let iterations = 0;
  const target = tolerance * bNorm;
  while (iterations < maxIterations && !(residual <= target)) {
    const next = tf.tidy(() => ({
      x2: tf.add(x, tf.mul(r, eta)) as tf.Tensor1D,
      r2: tf.sub(r, tf.mul(op.apply(r), eta)) as tf.Tensor1D,
    }));
    x.dispose();
    r.dispose();
    x = next.x2;
    r = next.r2;
    iterations++;
    if (tolerance > 0 || iterations === maxIterations) residual = vectorNorm(r);
  }
  const solution = treeUnflatten(x, op.spec);
  x.dispose();
  r.dispose();
  bFlat.dispose();
  return {
    x: solution,
    iterations,
    residual,
    relativeResidual: bNorm > 0 ? residual / bNorm : 0,
    converged: residual <= target,
  };
}
