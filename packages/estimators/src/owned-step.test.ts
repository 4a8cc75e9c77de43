import * as tf from '@tensorflow/tfjs-core';
import {
  type Batch,
  type Estimate,
  type EstimateContext,
  GradientDescentOptimizer,
  type HypergradientEstimator,
  type Random,
  Trainer,
  createOracles,
  registry,
  treeClone,
  treeDispose,
  treeZerosLike,
} from '@bilevel/core';
import { QuadraticFixture } from '@bilevel/core/testing';
import './index';
import { ShiftedQuadraticProblem } from './test-utils/test-problems';
import { ClosedFormSolver, GradientDescentTestSolver } from './test-utils/test-solvers';

const d = 6;

describe('the owned step: data drawn up front and owned by the trainer', () => {
  const fixture = new QuadraticFixture({ innerDimension: d, conditionNumber: 4, seed: 3 });
  afterAll(() => fixture.dispose());

  it('ITD gets no base solve; its y_K is the step solution and the next warm start', () => {
    const K = 7;
    const alpha = 0.2;
    const solver = new GradientDescentTestSolver(50, alpha);
    const trainer = new Trainer({
      problem: fixture,
      oracles: createOracles(fixture),
      solver,
      estimator: registry.create('estimator', 'itd', { steps: K, stepSize: alpha }),
      optimizer: new GradientDescentOptimizer({ learningRate: 0.1 }),
      options: { steps: 3, evalEvery: 0 },
    });
    // Step 1 moves x away from 0 (where y₀ = 0 is already y*); step 2 is checked.
    trainer.stepOnce();
    const x1 = treeClone(trainer.x);
    const y1 = treeClone(trainer.y);
    const event = trainer.stepOnce();
    expect(solver.calls).toBe(0);
    expect(event.innerIterations).toBe(K);
    // The reference: K gradient steps from the warm start y₁ at x₁ (the test solver, not ITD's code).
    const reference = new GradientDescentTestSolver(K, alpha).solve({ oracles: createOracles(fixture), x: x1, y0: y1 });
    const got = Array.from(trainer.y.y.dataSync());
    const want = Array.from(reference.y.y.dataSync());
    expect(Math.max(...want.map(Math.abs))).toBeGreaterThan(1e-3);
    want.forEach((v, i) => expect(got[i]).toBeCloseTo(v, 5));
    expect(event.innerGradientNorm).toBeCloseTo(reference.gradientNorm, 4);
    [x1, y1, reference.y].forEach(treeDispose);
    trainer.dispose();
  });

  it('an estimator that declares no base solve gets a clear error when it reads context.inner or returns none', () => {
    const reads: HypergradientEstimator = {
      name: 'reads-inner',
      usesBaseSolve: false,
      estimate: (c: EstimateContext): Estimate => ({ hypergradient: treeClone(c.inner.y), diagnostics: {} }),
    };
    const forgets: HypergradientEstimator = {
      name: 'forgets-inner',
      usesBaseSolve: false,
      estimate: (c: EstimateContext): Estimate => ({ hypergradient: treeZerosLike(c.x), diagnostics: {} }),
    };
    for (const [estimator, message] of [
      [reads, /'reads-inner' declares usesBaseSolve: false.*but it read context.inner/],
      [forgets, /'forgets-inner' declares usesBaseSolve: false but returned no inner result/],
    ] as const) {
      const trainer = new Trainer({
        problem: fixture,
        oracles: createOracles(fixture),
        solver: new ClosedFormSolver((x) => fixture.innerSolution(x)),
        estimator,
        optimizer: new GradientDescentOptimizer({ learningRate: 0.1 }),
        options: { steps: 1, evalEvery: 0 },
      });
      const before = tf.memory().numTensors;
      expect(() => trainer.stepOnce()).toThrow(message);
      expect(tf.memory().numTensors).toBe(before);
      trainer.dispose();
    }
  });

  it('stochastic steps: batches drawn up front, owned (flat tensor count), data tensors handed out as they are left alone', () => {
    const base = new ShiftedQuadraticProblem(fixture);
    const data = tf.keep(tf.ones([d]));
    // A sampler that hands out one of the problem's data tensors as it is, besides a fresh one.
    const problem = Object.assign(Object.create(base) as ShiftedQuadraticProblem, {
      sampleInnerBatch: (rng: Random): Batch => ({ ...base.sampleInnerBatch(rng), data }),
    });
    for (const [name, options] of [
      ['es', { directions: 4 }],
      ['cg', { maxIterations: 5 }],
      ['neumann', { terms: 4, stepSize: 0.2, systemBatches: 'fresh' }],
      ['itd', { steps: 4, stepSize: 0.2 }],
      ['f2sa', { steps: 3 }],
    ] as const) {
      const trainer = new Trainer({
        problem,
        oracles: createOracles(problem),
        solver: new GradientDescentTestSolver(6, 0.2),
        estimator: registry.create('estimator', name, options),
        optimizer: new GradientDescentOptimizer({ learningRate: 0.05 }),
        options: { steps: 12, evalEvery: 0 },
      });
      trainer.stepOnce();
      const before = tf.memory().numTensors;
      for (let k = 0; k < 10; k++) trainer.stepOnce();
      expect([name, tf.memory().numTensors]).toEqual([name, before]);
      expect(data.isDisposed).toBe(false);
      trainer.dispose();
    }
    data.dispose();
    base.dispose();
  });

  it('a batch asked for beyond the declared count comes from the same stream, and is owned', () => {
    const problem = new ShiftedQuadraticProblem(fixture);
    const seen: number[][] = [];
    const reader = (count: number): HypergradientEstimator => ({
      name: 'reader',
      innerBatchCount: () => count,
      estimate: (c: EstimateContext): Estimate => {
        // Inside a tidy, as estimators run: the batch must outlive it.
        const values = tf.tidy(() => Array.from(c.innerBatches!(5)!.shift.dataSync()));
        expect(c.innerBatches!(5)!.shift.isDisposed).toBe(false);
        seen.push(values);
        return { hypergradient: treeZerosLike(c.x), diagnostics: {} };
      },
    });
    for (const count of [10, 0]) {
      const trainer = new Trainer({
        problem,
        oracles: createOracles(problem),
        solver: new ClosedFormSolver((x) => fixture.innerSolution(x)),
        estimator: reader(count),
        optimizer: new GradientDescentOptimizer({ learningRate: 0.05 }),
        seed: 4,
        options: { steps: 3, evalEvery: 0, closedFormDiagnostics: false },
      });
      trainer.stepOnce();
      const before = tf.memory().numTensors;
      trainer.stepOnce();
      trainer.stepOnce();
      expect(tf.memory().numTensors).toBe(before);
      trainer.dispose();
    }
    // Step k of the run with 10 batches up front saw what step k of the run with none did.
    expect(seen.slice(3)).toEqual(seen.slice(0, 3));
    problem.dispose();
  });
});
