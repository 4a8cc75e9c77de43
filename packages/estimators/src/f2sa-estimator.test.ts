import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  createOracles,
  matTVec,
  matVec,
  registry,
  treeDispose,
} from '@bilevel/core';
import { QuadraticFixture, tensorCountGrowth } from '@bilevel/core/testing';
import { F2saEstimator } from './index';
import { luSolve } from '@bilevel/linalg';
import { ClosedFormSolver } from './test-utils/test-solvers';
import { makeContext } from './test-utils/context';
import { relativeError, treeToArray } from './test-utils/dense-operator';
import { quadraticSetup } from './test-utils/quadratic-setup';

// d = 100, κ(A) = 10: g = ½yᵀAy − yᵀBx, f = ½‖x − z‖² + ½‖y − t‖², exact inner solve y*(x) = A⁻¹Bx.
const { d, fixture, solver, xData, truth, point } = quadraticSetup();

/**
 * The float64 closed form of F2SA's estimate once w has converged: w*_λ = (A + I/λ)⁻¹(Bx + t/λ) minimises
 * f(x, w)/λ + g(x, w), and ∇ₓf(x, w) + λ(∇ₓg(x, w) − ∇ₓg(x, y*)) = (x − z) + λBᵀ(y* − w*_λ).
 */
function convergedEstimate(f: QuadraticFixture, x: Float64Array, lambda: number): Float64Array {
  const n = f.dy;
  const shifted = Float64Array.from(f.a);
  for (let i = 0; i < n; i++) shifted[i * n + i] += 1 / lambda;
  const bx = matVec(f.b, f.dy, f.dx, x);
  const w = luSolve(
    shifted,
    n,
    bx.map((v, i) => v + f.t[i] / lambda),
  );
  const ys = f.innerSolutionArray(x);
  const back = matTVec(
    f.b,
    f.dy,
    f.dx,
    ys.map((v, i) => v - w[i]),
  );
  return Float64Array.from({ length: f.dx }, (_, i) => x[i] - f.z[i] + lambda * back[i]);
}

function estimateWith(estimator: F2saEstimator, step = 0) {
  const oracles = createOracles(fixture, { secondOrder: 'autodiff' });
  const ctx = makeContext({ problem: fixture, oracles, solver, ...point, step });
  const est = estimator.estimate(ctx);
  const values = treeToArray(est.hypergradient);
  treeDispose(est.hypergradient);
  ctx.dispose();
  return { values, diagnostics: est.diagnostics };
}

describe('f2sa estimator (fully first-order penalty method)', () => {
  it('converged, equals the float64 closed form (x − z) + λBᵀ(y* − w*_λ)', () => {
    for (const lambda of [10, 100]) {
      const est = new F2saEstimator({ multiplier: lambda, steps: 120, stepSize: 0.15, warmStart: false });
      const { values, diagnostics } = estimateWith(est);
      expect(relativeError(values, convergedEstimate(fixture, xData, lambda))).toBeLessThan(2e-3);
      expect(diagnostics.multiplier).toBe(lambda);
      // First-order oracles only: no Hessian- or mixed-vector product.
      expect(diagnostics['calls.hessianVector']).toBe(0);
      expect(diagnostics['calls.mixedVector']).toBe(0);
      expect(diagnostics['calls.innerGradX']).toBe(2);
      est.dispose();
    }
  });

  it('its bias against the exact hypergradient shrinks like 1/λ', () => {
    const errors = [10, 100, 1000].map((lambda) => {
      const est = new F2saEstimator({ multiplier: lambda, steps: 120, stepSize: 0.15, warmStart: false });
      const err = relativeError(estimateWith(est).values, truth);
      est.dispose();
      return err;
    });
    // The float64 closed form has the same 1/λ law; float32 rounding adds about 1e-6·λ.
    const exactErrors = [10, 100, 1000].map((l) => relativeError(convergedEstimate(fixture, xData, l), truth));
    expect(exactErrors[1]).toBeLessThan(exactErrors[0] / 5);
    expect(errors[0]).toBeGreaterThan(0.5 * exactErrors[0]);
    expect(errors[0]).toBeLessThan(1.5 * exactErrors[0]);
    expect(errors[1]).toBeLessThan(errors[0] / 5);
    expect(errors[2]).toBeLessThan(errors[1]);
    expect(errors[2]).toBeLessThan(0.01);
  });

  it('one step matches a hand computation on a 2-dimensional problem', () => {
    const tiny = new QuadraticFixture({ innerDimension: 2, conditionNumber: 3, seed: 5 });
    const x = Float64Array.of(0.7, -1.3);
    const lambda = 4;
    const alpha = 0.2;
    const ys = tiny.innerSolutionArray(x);
    // w₁ = y* − α(∇_y f(x, y*)/λ + ∇_y g(x, y*)) = y* − α(y* − t)/λ, since ∇_y g(x, y*) = 0.
    const w1 = ys.map((v, i) => v - (alpha * (v - tiny.t[i])) / lambda);
    // estimate = (x − z) + λ(∇ₓg(x, w₁) − ∇ₓg(x, y*)) = (x − z) − λBᵀ(w₁ − y*)
    const back = matTVec(
      tiny.b,
      2,
      2,
      w1.map((v, i) => v - ys[i]),
    );
    const hand = Float64Array.from({ length: 2 }, (_, i) => x[i] - tiny.z[i] - lambda * back[i]);
    const est = new F2saEstimator({ multiplier: lambda, steps: 1, stepSize: alpha, warmStart: false });
    const tinySolver = new ClosedFormSolver((xt) => tiny.innerSolution(xt));
    const oracles = createOracles(tiny, { secondOrder: 'autodiff' });
    const xT = { x: tf.tensor1d(Float32Array.from(x)) };
    const y0 = { y: tf.zeros([2]) };
    const ctx = makeContext({ problem: tiny, oracles, solver: tinySolver, x: xT, y0 });
    const got = est.estimate(ctx);
    expect(relativeError(treeToArray(got.hypergradient), hand)).toBeLessThan(1e-5);
    expect(got.diagnostics.penalizedGap).toBeCloseTo(Math.hypot(w1[0] - ys[0], w1[1] - ys[1]), 5);
    treeDispose(got.hypergradient);
    ctx.dispose();
    treeDispose(xT);
    treeDispose(y0);
    tiny.dispose();
  });

  it('grows λ on schedule, keeps w across steps, and its checkpoint state resumes it exactly', () => {
    const options = { multiplier: 10, multiplierGrowth: 5, maxMultiplier: 22, steps: 3, stepSize: 0.15 };
    const a = new F2saEstimator(options);
    expect([0, 1, 2, 3].map((k) => a.multiplierAt(k))).toEqual([10, 15, 20, 22]);
    const first = estimateWith(a, 0);
    const warmSecond = estimateWith(a, 1);
    expect(warmSecond.diagnostics.multiplier).toBe(15);
    const state = JSON.parse(JSON.stringify(a.getState()));
    const third = estimateWith(a, 2);
    const b = new F2saEstimator(options);
    b.setState(state);
    const resumedThird = estimateWith(b, 2);
    expect(Array.from(resumedThird.values)).toEqual(Array.from(third.values));
    // Warm-started w keeps converging: 3 more steps from the kept w move the estimate less than the first 3.
    const cold = new F2saEstimator({ ...options, warmStart: false });
    const coldSecond = estimateWith(cold, 1);
    expect(relativeError(warmSecond.values, convergedEstimate(fixture, xData, 15))).toBeLessThan(
      relativeError(coldSecond.values, convergedEstimate(fixture, xData, 15)),
    );
    expect(first.values.length).toBe(d);
    for (const e of [a, b, cold]) e.dispose();
  });

  it('keeps the tensor count flat over many estimates', () => {
    const est = new F2saEstimator({ steps: 4 });
    const oracles = createOracles(fixture, { secondOrder: 'autodiff' });
    const ctx = makeContext({ problem: fixture, oracles, solver, ...point });
    const growth = tensorCountGrowth((i) => {
      const e = est.estimate({ ...ctx, step: i });
      treeDispose(e.hypergradient);
    }, 12);
    // The first estimate creates the kept warm start; after that nothing accumulates.
    expect(new Set(growth.slice(1))).toEqual(new Set([growth[0]]));
    ctx.dispose();
    est.dispose();
  });

  it('is registered with validated options that name the field', () => {
    expect(registry.has('estimator', 'f2sa')).toBe(true);
    expect(() => registry.create('estimator', 'f2sa', { stepSize: -1 })).toThrow(ConfigError);
    expect(() => registry.create('estimator', 'f2sa', { stepSize: -1 })).toThrow(/stepSize/);
    expect(() => new F2saEstimator({ multiplier: 100, maxMultiplier: 10 })).toThrow(/maxMultiplier/);
  });
});
