import * as tf from '@tensorflow/tfjs-core';
import { type TensorTree, tidy, treeFlatten, treeUnflatten } from '@bilevel/core';
import { type LinearSolveResult, type MatVec, euclideanNorm, flatOperator, vectorNorm } from './linear-solve';
import type { LbfgsMemory } from './lbfgs-memory';
import { createPairMemory } from './pair-memories';
import type { Sr1Memory } from './sr1-memory';

/** Options of {@link quasiNewtonSolve}. */
export interface QuasiNewtonSolveOptions {
  /** The pair recursion: `'bfgs'` (the L-BFGS two-loop operator) or `'sr1'`. Default `'bfgs'`. */
  readonly update?: 'bfgs' | 'sr1';
  /**
   * How pairs are gathered. `'steps'` (default): quasi-Newton iterations with unit steps on
   * q(x) = ½xᵀAx − bᵀx from x₀ = 0. `'directions'`: pairs (x_j, A x_j) along x_j = H_j b.
   */
  readonly pairs?: 'steps' | 'directions';
  /** Passes Q (one matvec each). Default 10. */
  readonly passes?: number;
  /** `'steps'`: stop once ‖A x − b‖ ≤ tolerance·‖b‖. Default 0 (all Q passes). */
  readonly tolerance?: number;
  /** Pairs kept (oldest dropped). Default 10. */
  readonly memory?: number;
  /** H₀ = γI: `'auto'` (γ = sᵀr / rᵀr of the newest pair) or a fixed γ. Default `'auto'`. */
  readonly initialScaling?: 'auto' | number;
  /** A pair is kept only when sᵀr > ε. Default 1e-10. */
  readonly curvatureEpsilon?: number;
  /** SR1 skip rule constant. Default 1e-8. */
  readonly sr1SkipThreshold?: number;
}

/** A {@link LinearSolveResult} with the statistics of the pair memory that produced it. */
export interface QuasiNewtonSolveResult extends LinearSolveResult {
  /** Pairs held by the memory at the end. */
  readonly pairsKept: number;
  /** Pairs the memory refused (curvature test, SR1 skip rule). */
  readonly pairsRejected: number;
  /** The memory's final H₀ scale γ. */
  readonly gamma: number;
}

/**
 * qNBO's subroutine B (Fang, Liu, Yao, Yu & Zhang, "qNBO: quasi-Newton Meets Bilevel Optimization",
 * ICLR 2025) as a linear solver `solve(matvec, b)`: a fresh limited-memory quasi-Newton operator H ≈ A⁻¹
 * (L-BFGS or SR1, see {@link createPairMemory}) is built from Q matvecs along b, for a symmetric A:
 *
 *   pairs 'steps' (default): quasi-Newton iterations with unit steps on q(x) = ½xᵀAx − bᵀx from x₀ = 0,
 *       x_{j+1} = x_j − H_j ∇q(x_j),   ∇q(x) = A x − b,
 *       pair (x_{j+1} − x_j, ∇q(x_{j+1}) − ∇q(x_j)) kept when sᵀr > ε;      x = x_Q;
 *   pairs 'directions': x_j = H_j b, pair (x_j, A x_j) kept when sᵀr > ε;  x = H_Q b.
 *
 * The first two iterates of both forms coincide (x₁ = H₀b, x₂ = H₁b by the secant equation); beyond them the
 * 'directions' pairs become nearly parallel and stall, while 'steps' converges. In qNBO the matvec is a secant
 * of inner gradients, A v ≈ (∇_y g(x, y + τv) − ∇_y g(x, y))/τ, so no Hessian-vector product is formed.
 *
 * The residual is ‖A x − b‖ of the returned x for 'steps' (its last ∇q), and for 'directions' that of the last
 * probed x_j, one pass behind the result. The vector algebra runs on tensors (the memory's products are
 * matrix products over the stacked pairs).
 */
export function quasiNewtonSolve(
  matvec: MatVec,
  b: TensorTree,
  options: QuasiNewtonSolveOptions = {},
): QuasiNewtonSolveResult {
  const passes = options.passes ?? 10;
  const tolerance = options.tolerance ?? 0;
  const pairs = options.pairs ?? 'steps';
  if (!Number.isInteger(passes) || passes < 1) {
    throw new Error(`quasiNewtonSolve: passes must be an integer >= 1 (got ${passes})`);
  }
  if (!(tolerance >= 0)) throw new Error(`quasiNewtonSolve: tolerance must be >= 0 (got ${tolerance})`);
  if (pairs !== 'steps' && pairs !== 'directions') {
    throw new Error(`quasiNewtonSolve: pairs must be 'steps' or 'directions' (got ${String(pairs)})`);
  }
  const op = flatOperator(matvec, b);
  const memory = createPairMemory((options.update ?? 'bfgs') === 'bfgs' ? 'lbfgs' : 'sr1', op.spec, {
    ...(options.memory !== undefined ? { memory: options.memory } : {}),
    ...(options.initialScaling !== undefined ? { initialScaling: options.initialScaling } : {}),
    ...(options.curvatureEpsilon !== undefined ? { curvatureEpsilon: options.curvatureEpsilon } : {}),
    ...(options.sr1SkipThreshold !== undefined ? { sr1SkipThreshold: options.sr1SkipThreshold } : {}),
  });
  const bFlat = tidy(() => treeFlatten(b));
  try {
    const bNorm = vectorNorm(bFlat);
    const apply = (v: tf.Tensor1D) => op.apply(v);
    const result =
      pairs === 'steps'
        ? steps(passes, tolerance, bFlat, bNorm, memory, apply)
        : directions(passes, bFlat, memory, apply);
    const x = tidy(() => treeUnflatten(result.x, op.spec));
    result.x.dispose();
    const residual = result.residual;
    return {
      x,
      iterations: result.passes,
      residual,
      relativeResidual: bNorm > 0 ? residual / bNorm : 0,
      converged: residual <= tolerance * bNorm,
      pairsKept: memory.size,
      pairsRejected: memory.rejected,
      gamma: memory.gamma,
    };
  } finally {
    bFlat.dispose();
    memory.dispose();
  }
}

/**
 * Quasi-Newton iterations on q(x) = ½xᵀAx − bᵀx from x₀ = 0 with unit steps: x_{j+1} = x_j − H_j ∇q(x_j),
 * pair (x_{j+1} − x_j, ∇q(x_{j+1}) − ∇q(x_j)). The first two iterates equal H₀b and H₁b; ‖∇q(x)‖ is the
 * residual.
 */
function steps(
  Q: number,
  tolerance: number,
  b: tf.Tensor1D,
  bNorm: number,
  memory: LbfgsMemory | Sr1Memory,
  apply: (v: tf.Tensor1D) => tf.Tensor1D,
): { x: tf.Tensor1D; passes: number; residual: number } {
  let u = tf.zerosLike(b);
  let grad = tf.neg(b) as tf.Tensor1D;
  let residual = bNorm;
  let passes = 0;
  const target = tolerance * bNorm;
  while (passes < Q && !(residual <= target)) {
    const uj = u;
    const gj = grad;
    const next = tidy(() => {
      const d = tf.neg(memory.applyFlat(gj)) as tf.Tensor1D;
      const u2 = tf.add(uj, d) as tf.Tensor1D;
      const g2 = tf.sub(apply(u2), b) as tf.Tensor1D;
      memory.push(d, tf.sub(g2, gj) as tf.Tensor1D);
      return { u2, g2, res: euclideanNorm(g2).dataSync()[0] };
    });
    uj.dispose();
    gj.dispose();
    u = next.u2;
    grad = next.g2;
    residual = next.res;
    passes++;
  }
  grad.dispose();
  return { x: u, passes, residual };
}

/**
 * Pairs along the current estimate: x_j = H_j b, pair (x_j, A x_j); returns H_Q b. Its residual is that of the
 * last probed x_j (one pass behind the result).
 */
function directions(
  Q: number,
  b: tf.Tensor1D,
  memory: LbfgsMemory | Sr1Memory,
  apply: (v: tf.Tensor1D) => tf.Tensor1D,
): { x: tf.Tensor1D; passes: number; residual: number } {
  let residual = NaN;
  for (let j = 0; j < Q; j++) {
    residual = tidy(() => {
      const uj = memory.applyFlat(b);
      const r = apply(uj);
      const res = euclideanNorm(tf.sub(r, b)).dataSync()[0];
      memory.push(uj, r);
      return res;
    });
  }
  return { x: memory.applyFlat(b), passes: Q, residual };
}
