import type { TensorTree } from '@bilevel/core';
import { type FlatVectors, flatVectors, fromTree, residualOf } from './flat-vectors';
import { type LinearSolveResult, type MatVec, checkInit, flatOperator } from './linear-solve';

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
  /**
   * The matvec may be a different operator at every call (a stochastic Hessian on a fresh minibatch, as in
   * SOBA, AmIGO and StocBiO): each step then evaluates its own residual, x ← x − η(A_k x − b), one matvec per
   * step, and the reported residual is the last step's ‖b − A_k x_k‖ (before its update). Default false.
   */
  readonly operatorVaries?: boolean;
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
  const vs = flatVectors(op);
  const bv = fromTree(vs, b, 'fixedPointIteration: the right-hand side b');
  const bNorm = Math.sqrt(vs.dots([[bv, bv]])[0]);
  if (options.operatorVaries) return varyingFixedPoint(vs, bv, bNorm, options, maxIterations, eta, tolerance);
  let x = options.init ? fromTree(vs, options.init) : vs.zeros();
  let r = options.init ? residualOf(vs, bv, x) : vs.clone(bv);
  vs.dispose(bv);
  let residual = Math.sqrt(vs.dots([[r, r]])[0]);
  let iterations = 0;
  const target = tolerance * bNorm;
  while (iterations < maxIterations && !(residual <= target)) {
    const ar = vs.apply(r);
    const x2 = vs.axpy(eta, r, x);
    const r2 = vs.axpy(-eta, ar, r);
    vs.dispose(ar, x, r);
    x = x2;
    r = r2;
    iterations++;
    if (tolerance > 0 || iterations === maxIterations) residual = Math.sqrt(vs.dots([[r, r]])[0]);
  }
  vs.dispose(r);
  return finish(vs, x, iterations, residual, bNorm, target);
}

/** {@link fixedPointIteration} for an operator that changes at every matvec: x ← x + η(b − A_k x). */
function varyingFixedPoint<V>(
  vs: FlatVectors<V>,
  bv: V,
  bNorm: number,
  options: FixedPointOptions,
  maxIterations: number,
  eta: number,
  tolerance: number,
): LinearSolveResult {
  let x = options.init ? fromTree(vs, options.init) : vs.zeros();
  let residual = bNorm;
  let iterations = 0;
  const target = tolerance * bNorm;
  while (iterations < maxIterations) {
    const r = residualOf(vs, bv, x);
    residual = Math.sqrt(vs.dots([[r, r]])[0]);
    if (residual <= target) {
      vs.dispose(r);
      break;
    }
    const x2 = vs.axpy(eta, r, x);
    vs.dispose(r, x);
    x = x2;
    iterations++;
  }
  vs.dispose(bv);
  return finish(vs, x, iterations, residual, bNorm, target);
}

/** The result of a fixed-point solve ending at `x` (released here). */
function finish<V>(
  vs: FlatVectors<V>,
  x: V,
  iterations: number,
  residual: number,
  bNorm: number,
  target: number,
): LinearSolveResult {
  const solution = vs.toTree(x);
  vs.dispose(x);
  return {
    x: solution,
    iterations,
    residual,
    relativeResidual: bNorm > 0 ? residual / bNorm : 0,
    converged: residual <= target,
  };
}
