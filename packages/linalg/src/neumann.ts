import type { TensorTree } from '@bilevel/core';
import { flatVectors, fromTree } from './flat-vectors';
import { type LinearSolveResult, type MatVec, flatOperator } from './linear-solve';

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
  const vs = flatVectors(op);
  const bv = fromTree(vs, b, 'neumannSeries: the right-hand side b');
  const bNorm = Math.sqrt(vs.dots([[bv, bv]])[0]);
  let p = vs.clone(bv);
  let sum = bv;
  let iterations = 0;
  let residual = bNorm;
  for (let k = 1; k <= terms; k++) {
    const ap = vs.apply(p);
    const pNext = vs.axpy(-eta, ap, p);
    vs.dispose(ap, p);
    iterations++;
    p = pNext;
    if (tolerance > 0 || k === terms) residual = Math.sqrt(vs.dots([[p, p]])[0]);
    if (k === terms || residual <= tolerance * bNorm) break;
    const s2 = vs.axpy(1, p, sum);
    vs.dispose(sum);
    sum = s2;
  }
  const scaled = vs.scale(eta, sum);
  const solution = vs.toTree(scaled);
  vs.dispose(scaled, p, sum);
  return {
    x: solution,
    iterations,
    residual,
    relativeResidual: bNorm > 0 ? residual / bNorm : 0,
    converged: residual <= tolerance * bNorm,
  };
}
