import * as tf from '@tensorflow/tfjs-core';
import { type TensorTree, treeFlatten, treeUnflatten } from '@bilevel/core';
import { type LinearSolveResult, type MatVec, checkFinite, flatOperator, vectorNorm } from './linear-solve';

/** Options of {@link neumannSeries}. */
export interface NeumannOptions {
  /** Number of terms K of the truncated series (one matvec each). Default 20. */
  readonly terms?: number;
  /** Step η; the series converges when 0 < η < 2/λ_max(A). Default 1. */
  readonly stepSize?: number;
  /**
   * Stop early once the remainder ‖(I − ηA)^k b‖ ≤ tolerance·‖b‖. Default 0: all K terms (and `converged`
   * is then false unless the residual is exactly zero).
   */
  readonly tolerance?: number;
}

/**
 * Truncated Neumann series for A⁻¹b (AID-NS; Lorraine, Vicol & Duvenaud, 2020; Ji, Yang & Liang, 2021):
 *
 *     A⁻¹ = η Σ_{k≥0} (I − ηA)^k   ⇒   x_K = η Σ_{k=0}^{K−1} (I − ηA)^k b
 *
 * With p_k = (I − ηA)^k b the residual is exact and free: b − A x_K = (I − ηA)^K b = p_K, which is the
 * K-th matvec. Starts from zero (there is no warm start: use {@link fixedPointIteration} for that).
 */
export function neumannSeries(
  matvec: MatVec,
  b: TensorTree,
  options: NeumannOptions = {},
): LinearSolveResult {
  const terms = options.terms ?? 20;
  const eta = options.stepSize ?? 1;
  const tolerance = options.tolerance ?? 0;
  if (!Number.isInteger(terms) || terms < 1)
    throw new Error(`neumannSeries: terms must be an integer >= 1 (got ${terms})`);
  if (!(eta > 0)) throw new Error(`neumannSeries: stepSize must be > 0 (got ${eta})`);
  if (!(tolerance >= 0)) throw new Error(`neumannSeries: tolerance must be >= 0 (got ${tolerance})`);
  const op = flatOperator(matvec, b);
  const bFlat = treeFlatten(b);
  checkFinite(bFlat, 'neumannSeries: the right-hand side b');
  const bNorm = vectorNorm(bFlat);
  let p: tf.Tensor1D = tf.clone(bFlat);
  let sum: tf.Tensor1D = tf.clone(bFlat);
  let iterations = 0;
  let residual = bNorm;
  for (let k = 1; k <= terms; k++) {
    const pNext = tf.tidy(() => tf.sub(p, tf.mul(op.apply(p), eta)) as tf.Tensor1D);
    iterations++;
    p.dispose();
    p = pNext;
    if (tolerance > 0 || k === terms) residual = vectorNorm(p);
    if (k === terms || residual <= tolerance * bNorm) break;
    const s2 = tf.add(sum, p) as tf.Tensor1D;
    sum.dispose();
    sum = s2;
  }
  const solution = tf.tidy(() => treeUnflatten(tf.mul(sum, eta), op.spec));
  p.dispose();
  sum.dispose();
  bFlat.dispose();
  return {
    x: solution,
    iterations,
    residual,
    relativeResidual: bNorm > 0 ? residual / bNorm : 0,
    converged: residual <= tolerance * bNorm,
  };
}
