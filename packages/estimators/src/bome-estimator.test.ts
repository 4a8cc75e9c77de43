import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  GradientDescentOptimizer,
  Trainer,
  createOracles,
  registry,
  treeDispose,
} from '@bilevel/core';
import { QuadraticFixture, tensorCountGrowth } from '@bilevel/core/testing';
import { BomeEstimator } from './index';
import { makeContext } from './test-utils/context';
import { ClosedFormSolver } from './test-utils/test-solvers';

/** Row-major float64 helpers for the hand computation. */
const mv = (m: Float64Array, rows: number, cols: number, v: ArrayLike<number>): number[] =>
  Array.from({ length: rows }, (_, i) => {
    let s = 0;
    for (let j = 0; j < cols; j++) s += m[i * cols + j] * v[j];
    return s;
  });
const mtv = (m: Float64Array, rows: number, cols: number, v: ArrayLike<number>): number[] =>
  Array.from({ length: cols }, (_, j) => {
    let s = 0;
    for (let i = 0; i < rows; i++) s += m[i * cols + j] * v[i];
    return s;
  });
const dot = (a: number[], b: number[]) => a.reduce((s, ai, i) => s + ai * b[i], 0);

/**
 * One BOME step by hand on g = ½yᵀAy − yᵀBx, f = ½‖x − z‖² + ½‖y − t‖² (float64): ∇_y g = Ay − Bx,
 * ∇ₓg = −Bᵀy, ∇ₓf = x − z, ∇_y f = y − t.
 */
function handStep(f: QuadraticFixture, x: number[], y: number[], T: number, alpha: number, eta: number, xi: number) {
  const { dx, dy } = f;
  let theta = [...y];
  for (let t = 0; t < T; t++) {
    const ay = mv(f.a, dy, dy, theta);
    const bx = mv(f.b, dy, dx, x);
    theta = theta.map((v, i) => v - alpha * (ay[i] - bx[i]));
  }
  const qx = mtv(f.b, dy, dx, theta).map((v, j) => -mtv(f.b, dy, dx, y)[j] + v);
  const ay = mv(f.a, dy, dy, y);
  const bx = mv(f.b, dy, dx, x);
  const qy = ay.map((v, i) => v - bx[i]);
  const fx = x.map((v, j) => v - f.z[j]);
  const fy = y.map((v, i) => v - f.t[i]);
  const qq = dot(qx, qx) + dot(qy, qy);
  const lambda = Math.max((eta * qq - (dot(fx, qx) + dot(fy, qy))) / qq, 0);
  return {
    lambda,
    hypergradient: fx.map((v, j) => v + lambda * qx[j]),
    yNext: y.map((v, i) => v - xi * (fy[i] + lambda * qy[i])),
  };
}

describe('bome estimator', () => {
  const fixture = new QuadraticFixture({ innerDimension: 4, outerDimension: 3, conditionNumber: 3, seed: 7 });
  afterAll(() => fixture.dispose());

  it('one step equals the hand computation (θ steps, ∇q̂, λ from the barrier, the joint update)', () => {
    const x = [0.3, -0.5, 0.8];
    // Between y*(x) and the outer target t, where ∇_y f and ∇_y g point against each other: the barrier binds.
    const ys = fixture.innerSolutionArray(x);
    const y = Array.from(ys, (v, i) => v + 0.5 * (fixture.t[i] - v));
    const options = { steps: 3, stepSize: 0.2, eta: 0.5, yStepSize: 0.15 };
    const xt = { x: tf.tensor1d(x) };
    const yt = { y: tf.tensor1d(y) };
    const solver = new ClosedFormSolver((xx) => fixture.innerSolution(xx));
    const ctx = makeContext({ problem: fixture, oracles: createOracles(fixture), solver, x: xt, y0: yt });
    const est = new BomeEstimator(options).estimate(ctx);
    const want = handStep(fixture, x, y, 3, 0.2, 0.5, 0.15);
    expect(want.lambda).toBeGreaterThan(0);
    expect(est.diagnostics.multiplier).toBeCloseTo(want.lambda, 4);
    Array.from(est.hypergradient.x.dataSync()).forEach((v, j) => expect(v).toBeCloseTo(want.hypergradient[j], 4));
    Array.from(est.inner!.y.y.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(want.yNext[i], 4));
    expect(est.inner!.iterations).toBe(3);
    // First-order only: T + 1 inner gradients in y, two in x, one outer gradient, no second-order product.
    expect(est.diagnostics['calls.innerGradY']).toBe(4);
    expect(est.diagnostics['calls.innerGradX']).toBe(2);
    expect(est.diagnostics['calls.hessianVector'] ?? 0).toBe(0);
    expect(est.diagnostics['calls.mixedVector'] ?? 0).toBe(0);
    treeDispose(est.hypergradient);
    treeDispose(est.inner!.y);
    const growth = tensorCountGrowth(() => {
      const e = new BomeEstimator(options).estimate(ctx);
      treeDispose(e.hypergradient);
      treeDispose(e.inner!.y);
    }, 5);
    expect(new Set(growth).size).toBe(1);
    [xt, yt].forEach(treeDispose);
    ctx.dispose();
  });

  it('through the trainer: settles at a fixed point near x* (no base solve)', () => {
    // BOME's iterates settle where the joint step balances ∇f against λ∇q̂, which is near, not at, the
    // bilevel solution: measured on this problem ‖∇Φ‖/‖∇Φ(x₀)‖ = 4.3e-3 (ξ = 0.05, T = 10); with ξ = 0.2 the
    // iterates cycle instead (period 4), so the step must be small.
    const solver = new ClosedFormSolver((xx) => fixture.innerSolution(xx));
    const trainer = new Trainer({
      problem: fixture,
      oracles: createOracles(fixture),
      solver,
      estimator: registry.create('estimator', 'bome', { steps: 10, stepSize: 0.3, eta: 0.5, yStepSize: 0.05 }),
      optimizer: new GradientDescentOptimizer({ learningRate: 0.05 }),
      options: { steps: 300, evalEvery: 0, closedFormDiagnostics: false },
    });
    const start = Math.hypot(...fixture.hypergradientArray(trainer.x.x.dataSync()));
    for (let k = 0; k < 290; k++) trainer.stepOnce();
    const before = Array.from(trainer.x.x.dataSync());
    for (let k = 0; k < 10; k++) trainer.stepOnce();
    const x = Array.from(trainer.x.x.dataSync());
    expect(Math.hypot(...fixture.hypergradientArray(x)) / start).toBeLessThan(1e-2);
    expect(Math.hypot(...x.map((v, i) => v - before[i]))).toBeLessThan(1e-4 * Math.hypot(...x));
    expect(solver.requests).toHaveLength(0);
    trainer.dispose();
  });

  it('bad options name the field', () => {
    expect(() => registry.create('estimator', 'bome', { steps: 0 })).toThrow(ConfigError);
    expect(() => registry.create('estimator', 'bome', { eta: -1 })).toThrow(/estimator\.options\.eta/);
  });
});
