import type { Estimate, EstimateContext, HypergradientEstimator } from '../estimator';
import { AdamOptimizer } from '../optimizer';
import { createOracles } from '../oracles';
import type { QuadraticFixture } from '../testing';
import type { InnerResult, InnerSolveRequest, InnerSolver } from '../solver';
import { Trainer } from '../trainer';
import { Float32Values } from '../tree';

/** Float32Values with exactly these bit patterns. */
export function fromBits(pattern: readonly number[]): Float32Values {
  const v = new Float32Values(pattern.length);
  new Uint32Array(v.buffer).set(pattern);
  return v;
}

/**
 * ±0, the smallest and largest subnormals, the largest finite values, ±∞, the quiet NaN, a NaN with a
 * payload, 1/3 and 1: as raw IEEE-754 single-precision bit patterns.
 */
export const SPECIAL_BITS = [
  0x00000000, 0x80000000, 0x00000001, 0x807fffff, 0x7f7fffff, 0xff7fffff, 0x7f800000, 0xff800000, 0x7fc00000,
  0x7fa00001, 0x3eaaaaab, 0x3f800000,
];

/** y = y*(x) in closed form. */
export class ClosedFormSolver implements InnerSolver {
  readonly name = 'closed-form';
  readonly elementwise = false;
  readonly maxIterations = 1;
  solve(req: InnerSolveRequest): InnerResult {
    const p = req.oracles.problem as QuadraticFixture;
    return { y: p.innerSolution(req.x), iterations: 1, gradientNorm: 0, converged: true };
  }
}

/** ∇Φ in closed form. */
export class ClosedFormEstimator implements HypergradientEstimator {
  readonly name = 'closed-form';
  estimate(ctx: EstimateContext): Estimate {
    return { hypergradient: (ctx.problem as QuadraticFixture).hypergradient(ctx.x), diagnostics: {} };
  }
}

/** A trainer on `problem` with the closed-form solver and estimator and Adam on x (state worth saving). */
export function adamTrainer(problem: QuadraticFixture): Trainer {
  return new Trainer({
    problem,
    oracles: createOracles(problem),
    solver: new ClosedFormSolver(),
    estimator: new ClosedFormEstimator(),
    optimizer: new AdamOptimizer({ learningRate: 0.05, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 }),
    seed: 3,
    options: { steps: 100, evalEvery: 0 },
  });
}
