import * as tf from '@tensorflow/tfjs-core';
import { Random, type TensorTree, treeDispose } from '@bilevel/core';
import { QuadraticFixture } from '@bilevel/core/testing';
import { ClosedFormSolver } from './test-solvers';

/**
 * The shared d = 100, κ(A) = 10 quadratic of the estimator tests (eigenvalues log-spaced on [1, 10]) with an
 * exact inner solve y*(x) = A⁻¹Bx, a random x and its float64 closed-form hypergradient. Registers jest hooks
 * that create x and y₀ = 0 before the file's tests and release them (and the fixture) after; `point` holds
 * them once the tests run.
 */
export function quadraticSetup(): {
  d: number;
  fixture: QuadraticFixture;
  solver: ClosedFormSolver;
  xData: Float64Array;
  truth: Float64Array;
  point: { x: TensorTree; y0: TensorTree };
} {
  const d = 100;
  const fixture = new QuadraticFixture({ innerDimension: d, conditionNumber: 10, seed: 3 });
  const solver = new ClosedFormSolver((x) => fixture.innerSolution(x));
  const rng = new Random(17);
  const xData = Float64Array.from({ length: d }, () => rng.normal());
  const truth = fixture.hypergradientArray(xData);
  const point = { x: {} as TensorTree, y0: {} as TensorTree };
  beforeAll(() => {
    point.x = { x: tf.keep(tf.tensor1d(Float32Array.from(xData))) };
    point.y0 = { y: tf.keep(tf.zeros([d])) };
  });
  afterAll(() => {
    treeDispose(point.x);
    treeDispose(point.y0);
    fixture.dispose();
  });
  return { d, fixture, solver, xData, truth, point };
}
