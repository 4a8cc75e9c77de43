/**
 * The curvature memory of an inner solve belongs to its result (`InnerResult.curvature`): neither a later solve
 * of the same solver nor the perturbed solves an estimator runs with it (ES) may dispose or change it, and the
 * trainer releases it with the step. Real solvers and estimators, on the quadratic fixture.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  createOracles,
  createPipeline,
  type EstimateContext,
  Random,
  type TensorTree,
  treeDispose,
} from '@bilevel/core';
import { QuadraticFixture, tensorCountGrowth } from '@bilevel/core/testing';
import { EvolutionStrategiesEstimator, QnboEstimator } from '@bilevel/estimators';
import '@bilevel/problems';
import { LbfgsSolver, Sr1Solver } from '@bilevel/solvers';

const problem = new QuadraticFixture({ innerDimension: 12, outerDimension: 4, conditionNumber: 10, seed: 5 });
afterAll(() => problem.dispose());

function contextFor(solver: LbfgsSolver | Sr1Solver, x: TensorTree, y0: TensorTree): EstimateContext {
  const oracles = createOracles(problem);
  const inner = solver.solve({ oracles, x, y0 });
  return { problem, oracles, x, inner, solver, y0, rng: new Random(0), step: 0 };
}

describe('the inner result owns its curvature memory', () => {
  it.each([
    ['lbfgs', () => new LbfgsSolver({ maxIterations: 15, memory: 6 })],
    ['sr1', () => new Sr1Solver({ maxIterations: 15, memory: 6 })],
  ])('%s: qNBO reuse-inner gives the same hypergradient after an extra solve', (_name, make) => {
    const solver = make();
    const x = { x: new Random(1).normalTensor([4]) };
    const x2 = { x: new Random(2).normalTensor([4]) };
    const y0 = problem.initialY();
    const ctx = contextFor(solver, x, y0);
    const estimator = new QnboEstimator({ mode: 'reuse-inner' });
    const first = estimator.estimate(ctx);
    // Another solve with the same solver (the next step's, or any other caller's) at another x.
    const extra = solver.solve({ oracles: ctx.oracles, x: x2, y0 });
    const second = estimator.estimate(ctx);
    expect(first.diagnostics.pairsKept).toBeGreaterThan(0);
    expect(second.diagnostics.pairsKept).toBe(first.diagnostics.pairsKept);
    expect(Array.from(second.hypergradient.x.dataSync())).toEqual(
      Array.from(first.hypergradient.x.dataSync()),
    );
    ctx.inner.curvature?.dispose();
    extra.curvature?.dispose();
    [first.hypergradient, second.hypergradient, ctx.inner.y, extra.y, x, x2, y0].forEach(treeDispose);
  });

  it("ES's perturbed solves leave the base solve's memory intact", () => {
    const solver = new LbfgsSolver({ maxIterations: 12, memory: 5 });
    const x = { x: new Random(3).normalTensor([4]) };
    const y0 = problem.initialY();
    const ctx = contextFor(solver, x, y0);
    const memory = ctx.inner.curvature!;
    const pairs = [...memory.pairs];
    const v = { y: tf.linspace(-1, 1, 12) };
    const before = tf.tidy(() => memory.applyInverseHessian(v).y.dataSync());
    const es = new EvolutionStrategiesEstimator({ directions: 4 });
    const estimate = es.estimate(ctx);
    expect(estimate.diagnostics.perturbedSolves).toBeGreaterThan(0);
    expect(pairs.length).toBe(5);
    expect(pairs.every((p) => !p.s.isDisposed && !p.r.isDisposed)).toBe(true);
    const after = tf.tidy(() => memory.applyInverseHessian(v).y.dataSync());
    expect(Array.from(after)).toEqual(Array.from(before));
    memory.dispose();
    [estimate.hypergradient, ctx.inner.y, x, y0, v].forEach(treeDispose);
  });

  it('the trainer releases each step’s memory: qNBO reuse-inner keeps the tensor count flat', () => {
    const pipeline = createPipeline({
      problem: { name: 'quadratic', options: { dimension: 10, seed: 4 } },
      innerSolver: { name: 'lbfgs', options: { maxIterations: 12, memory: 5 } },
      estimator: { name: 'qnbo', options: { mode: 'reuse-inner' } },
      outerOptimizer: { name: 'gd', options: { learningRate: 0.1 } },
      trainer: { steps: 10 },
      seed: 0,
    });
    const pairs: number[] = [];
    const growth = tensorCountGrowth(() => {
      pairs.push(pipeline.trainer.stepOnce().diagnostics.pairsKept);
    }, 8);
    expect(Math.min(...pairs.slice(1))).toBeGreaterThan(0);
    expect(growth.slice(1).every((g) => g === growth[1])).toBe(true);
    pipeline.dispose();
  });
});
