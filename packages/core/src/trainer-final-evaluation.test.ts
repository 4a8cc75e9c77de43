import * as tf from '@tensorflow/tfjs-core';
import type { Estimate, EstimateContext, HypergradientEstimator } from './estimator';
import { GradientDescentOptimizer } from './optimizer';
import { createOracles } from './oracles';
import { QuadraticFixture } from './testing';
import type { InnerResult, InnerSolveRequest, InnerSolver } from './solver';
import { Trainer } from './trainer';
import { treeNorm, treeScale } from './tree';

/** Records the norm of every warm start it gets; returns y = y0 + 1 (so the trainer's y moves away from 0). */
class ProbeSolver implements InnerSolver {
  readonly name = 'probe';
  readonly elementwise = false;
  readonly maxIterations = 1;
  readonly starts: number[] = [];
  solve(req: InnerSolveRequest): InnerResult {
    this.starts.push(treeNorm(req.y0).dataSync()[0]);
    return { y: { y: tf.add(req.y0.y, 1) }, iterations: 1, gradientNorm: 0, converged: true };
  }
}

class ZeroEstimator implements HypergradientEstimator {
  readonly name = 'zero';
  estimate(ctx: EstimateContext): Estimate {
    return { hypergradient: treeScale(ctx.x, 0), diagnostics: {} };
  }
}

describe('Trainer.finalEvaluation', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it.each([
    [true, 'continues from the last y'],
    [false, 'starts from a fresh initial y, as every step does'],
  ])('with warmStart %s it %s', async (warmStart) => {
    const problem = new QuadraticFixture({ innerDimension: 4, conditionNumber: 2, seed: 0 });
    const solver = new ProbeSolver();
    const trainer = new Trainer({
      problem,
      oracles: createOracles(problem),
      solver,
      estimator: new ZeroEstimator(),
      optimizer: new GradientDescentOptimizer({ learningRate: 0.1 }),
      options: { steps: 3, warmStart, evalEvery: 0, closedFormDiagnostics: false },
    });
    await trainer.run(); // 3 steps, then the final evaluation's solve
    const initial = 0; // the fixture's initial y is 0
    expect(solver.starts.slice(0, 3)).toEqual(warmStart ? [initial, 2, 4] : [initial, initial, initial]);
    const final = solver.starts[3];
    if (warmStart) expect(final).toBeCloseTo(6, 5); // ‖y0 + 3·1‖ over 4 entries
    else expect(final).toBe(initial);
    trainer.dispose();
    problem.dispose?.();
  });
});
