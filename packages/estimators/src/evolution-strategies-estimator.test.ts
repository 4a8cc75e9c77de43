import * as tf from '@tensorflow/tfjs-core';
import {
  type Batch,
  ConfigError,
  Random,
  type TensorTree,
  createOracles,
  registry,
  treeDispose,
  treeSpec,
} from '@bilevel/core';
import { QuadraticFixture, tensorCountGrowth } from '@bilevel/core/testing';
import { EvolutionStrategiesEstimator } from './index';
import { sampleDirections } from './evolution-strategies-estimator';
import { makeContext, withSeed } from './test-utils/context';
import { norm, relativeError, treeToArray } from './test-utils/dense-operator';
import { NonlinearResponseProblem, ShiftedQuadraticProblem } from './test-utils/test-problems';
import { ClosedFormSolver, GradientDescentTestSolver } from './test-utils/test-solvers';

function vec(values: ArrayLike<number>): TensorTree {
  return { x: tf.tensor1d(Float32Array.from(values)) };
}

/** Mean and total variance (trace of the covariance) of estimates given as rows. */
function moments(rows: Float64Array[]): { mean: Float64Array; variance: number } {
  const n = rows.length;
  const d = rows[0].length;
  const mean = new Float64Array(d);
  rows.forEach((r) => r.forEach((v, i) => (mean[i] += v / n)));
  let variance = 0;
  rows.forEach((r) => r.forEach((v, i) => (variance += (v - mean[i]) ** 2 / (n - 1))));
  return { mean, variance };
}

describe('ESJ on the quadratic fixture (exact inner solve)', () => {
  const d = 5;
  const fixture = new QuadraticFixture({ innerDimension: d, conditionNumber: 4, seed: 21 });
  const solver = new ClosedFormSolver((x) => fixture.innerSolution(x));
  const xData = [0.3, -0.7, 1.1, 0.2, -0.4];
  const truth = fixture.hypergradientArray(xData);
  afterAll(() => fixture.dispose());

  it('the mean of 2000 estimates (Gaussian, μ = 1e-3, Q = 10) is within 5% of the closed form', () => {
    const x = vec(xData);
    const y0 = { y: tf.zeros([d]) };
    const oracles = createOracles(fixture);
    const ctx = makeContext({ problem: fixture, oracles, solver, x, y0 });
    const es = new EvolutionStrategiesEstimator({
      directions: 10,
      smoothing: 1e-3,
      distribution: 'gaussian',
    });
    const N = 2000;
    const rows: Float64Array[] = [];
    for (let i = 0; i < N; i++) {
      const est = es.estimate(withSeed(ctx, 1000 + i));
      rows.push(treeToArray(est.hypergradient));
      treeDispose(est.hypergradient);
    }
    const { mean, variance } = moments(rows);
    const err = relativeError(mean, truth);
    // For a linear response the Jacobian term is (1/Q)Σ u uᵀw with w = Jᵀ∇_y f; for Gaussian u its covariance
    // is (‖w‖²I + wwᵀ)/Q, so the error of the mean has norm ≈ √((d+1)/(NQ))·‖w‖ ≈ 0.017‖w‖: 5% is ~3σ.
    const w = Float64Array.from(truth, (v, i) => v - (xData[i] - fixture.z[i]));
    expect(variance).toBeGreaterThan(0.5 * (((d + 1) * norm(w) ** 2) / 10));
    expect(variance).toBeLessThan(2 * (((d + 1) * norm(w) ** 2) / 10));
    expect(err).toBeLessThan(0.05);
    [x, y0].forEach(treeDispose);
    ctx.dispose();
  });

  it('batched and one-by-one perturbed solves give the same estimate, with the stated cost', () => {
    const x = vec(xData);
    const y0 = { y: tf.zeros([d]) };
    const oracles = createOracles(fixture);
    const ctx = makeContext({ problem: fixture, oracles, solver, x, y0 });
    const batched = new EvolutionStrategiesEstimator({ directions: 6 }).estimate(withSeed(ctx, 5));
    const requestsBefore = solver.requests.length;
    const single = new EvolutionStrategiesEstimator({ directions: 6, batchedSolves: false }).estimate(
      withSeed(ctx, 5),
    );
    expect(relativeError(treeToArray(batched.hypergradient), treeToArray(single.hypergradient))).toBeLessThan(
      1e-5,
    );
    expect(batched.diagnostics.batchedSolves).toBe(1);
    expect(single.diagnostics.batchedSolves).toBe(0);
    expect(solver.requests.length - requestsBefore).toBe(6);
    expect(solver.requests.slice(requestsBefore).every((r) => !r.batched && r.request.y0 === y0)).toBe(true);
    expect(batched.diagnostics['calls.outerGrad']).toBe(1);
    expect(batched.diagnostics['calls.hessianVector'] + batched.diagnostics['calls.mixedVector']).toBe(0);
    // chunked batches (maxBatchSize) give the same estimate again
    const chunked = new EvolutionStrategiesEstimator({ directions: 6, maxBatchSize: 4 }).estimate(
      withSeed(ctx, 5),
    );
    expect(relativeError(treeToArray(chunked.hypergradient), treeToArray(single.hypergradient))).toBeLessThan(
      1e-5,
    );
    [batched.hypergradient, single.hypergradient, chunked.hypergradient, x, y0].forEach(treeDispose);
    ctx.dispose();
  });

  it("'sphere' and 'per-tensor-unit' directions have the stated norms and second moments", () => {
    const spec = { names: ['a', 'b'], shapes: [[3], [2, 2]], sizes: [3, 4], total: 7 };
    const rng = new Random(4);
    const sphere = sampleDirections('sphere', 4000, spec, rng).arraySync();
    sphere.slice(0, 20).forEach((u) => expect(norm(u)).toBeCloseTo(Math.sqrt(7), 4));
    const unit = sampleDirections('per-tensor-unit', 4000, spec, rng).arraySync();
    unit.slice(0, 20).forEach((u) => {
      expect(norm(u.slice(0, 3))).toBeCloseTo(1, 5);
      expect(norm(u.slice(3))).toBeCloseTo(1, 5);
    });
    // E[uuᵀ]: I for the scaled sphere, blockdiag(I/3, I/4) for unit blocks (checked on the diagonal, ±10%)
    for (let i = 0; i < 7; i++) {
      const s = sphere.reduce((acc, u) => acc + u[i] * u[i], 0) / 4000;
      const p = unit.reduce((acc, u) => acc + u[i] * u[i], 0) / 4000;
      expect(s).toBeGreaterThan(0.9);
      expect(s).toBeLessThan(1.1);
      expect(p * (i < 3 ? 3 : 4)).toBeGreaterThan(0.9);
      expect(p * (i < 3 ? 3 : 4)).toBeLessThan(1.1);
    }
  });

  it("'per-tensor-unit' with unbiased = false is the unbiased estimate with each block divided by its size", () => {
    // a two-tensor outer variable: x = {p: [2], q: [3]} feeding the fixture's x = concat(p, q)
    const two = new TwoTensorQuadratic(fixture);
    const solver2 = new ClosedFormSolver((x) => two.innerSolution(x));
    const x = { p: tf.tensor1d(xData.slice(0, 2)), q: tf.tensor1d(xData.slice(2)) };
    const y0 = { y: tf.zeros([d]) };
    const ctx = makeContext({ problem: two, oracles: createOracles(two), solver: solver2, x, y0 });
    const opts = { directions: 3, distribution: 'per-tensor-unit' } as const;
    const scaled = new EvolutionStrategiesEstimator({ ...opts, unbiased: true }).estimate(withSeed(ctx, 8));
    const raw = new EvolutionStrategiesEstimator({ ...opts, unbiased: false }).estimate(withSeed(ctx, 8));
    const fx = xData.map((v, i) => v - fixture.z[i]); // ∇ₓf
    const s = treeToArray(scaled.hypergradient).map((v, i) => v - fx[i]);
    const r = treeToArray(raw.hypergradient).map((v, i) => v - fx[i]);
    const expected = s.map((v, i) => v / (i < 2 ? 2 : 3));
    expect(relativeError(r, expected)).toBeLessThan(1e-4);
    // and the scaled version is unbiased: its mean over many draws approaches the closed form
    const rows: Float64Array[] = [];
    const es = new EvolutionStrategiesEstimator({ directions: 20, distribution: 'per-tensor-unit' });
    for (let i = 0; i < 400; i++) {
      const e = es.estimate(withSeed(ctx, 50 + i));
      rows.push(treeToArray(e.hypergradient));
      treeDispose(e.hypergradient);
    }
    expect(relativeError(moments(rows).mean, truth)).toBeLessThan(0.05);
    [scaled.hypergradient, raw.hypergradient, x, y0].forEach(treeDispose);
    ctx.dispose();
    two.dispose();
  });

  it('keeps the tensor count flat (batched and one by one)', () => {
    const x = vec(xData);
    const y0 = { y: tf.zeros([d]) };
    const ctx = makeContext({ problem: fixture, oracles: createOracles(fixture), solver, x, y0 });
    for (const batchedSolves of [true, false]) {
      const es = new EvolutionStrategiesEstimator({ directions: 4, antithetic: true, batchedSolves });
      const growth = tensorCountGrowth((i) => treeDispose(es.estimate(withSeed(ctx, i)).hypergradient), 5);
      expect(growth.every((g) => g === 0)).toBe(true);
    }
    [x, y0].forEach(treeDispose);
    ctx.dispose();
  });
});

describe('antithetic sampling', () => {
  it('lowers the variance at equal inner-solve count when the response is nonlinear', () => {
    // y*(x) = ½(Bx)²: the one-sided difference carries the curvature term (μ/2)(Bu)², which ± pairs cancel.
    const problem = new NonlinearResponseProblem(4, 6, 2);
    const solver = new ClosedFormSolver((x) => problem.innerSolution(x));
    const xData = [0.2, -0.1, 0.15, 0.05];
    const truth = problem.hypergradientArray(xData);
    const x = vec(xData);
    const y0 = { y: tf.zeros([6]) };
    const ctx = makeContext({ problem, oracles: createOracles(problem), solver, x, y0 });
    const collect = (es: EvolutionStrategiesEstimator) => {
      const rows: Float64Array[] = [];
      for (let i = 0; i < 300; i++) {
        const e = es.estimate(withSeed(ctx, 7000 + i));
        rows.push(treeToArray(e.hypergradient));
        treeDispose(e.hypergradient);
      }
      return moments(rows);
    };
    // 8 perturbed solves each: 8 one-sided directions vs 4 antithetic pairs
    const plain = collect(new EvolutionStrategiesEstimator({ directions: 8, smoothing: 0.5 }));
    const anti = collect(
      new EvolutionStrategiesEstimator({ directions: 4, smoothing: 0.5, antithetic: true }),
    );
    expect(anti.variance).toBeLessThan(0.5 * plain.variance);
    // Gaussian smoothing of a quadratic response leaves the expected Jacobian term unchanged: both are unbiased
    expect(relativeError(anti.mean, truth)).toBeLessThan(0.05);
    const e = new EvolutionStrategiesEstimator({ directions: 4, antithetic: true }).estimate(ctx);
    expect(e.diagnostics.perturbedSolves).toBe(8);
    expect(e.diagnostics.directions).toBe(4);
    [e.hypergradient, x, y0].forEach(treeDispose);
    ctx.dispose();
    problem.dispose();
  });
});

describe('ESJ-S on a stochastic problem', () => {
  const d = 5;
  const fixture = new QuadraticFixture({ innerDimension: d, conditionNumber: 4, seed: 31 });
  afterAll(() => fixture.dispose());

  it('perturbed solves replay the base minibatch sequence and ∇f uses the outer batch (deterministic twin)', () => {
    const stochastic = new ShiftedQuadraticProblem(fixture);
    const rng = new Random(3);
    const innerBatch: Batch = stochastic.sampleInnerBatch(rng);
    const outerBatch: Batch = stochastic.sampleOuterBatch(rng);
    const twin = new ShiftedQuadraticProblem(
      fixture,
      innerBatch.shift.dataSync(),
      outerBatch.outerShift.dataSync(),
    );
    const xData = [0.5, -0.2, 0.1, 0.9, -1.2];
    const x = vec(xData);
    const y0 = { y: tf.zeros([d]) };
    const solverS = new ClosedFormSolver((xx, batches) => stochastic.solution(xx, batches));
    const solverT = new ClosedFormSolver((xx, batches) => twin.solution(xx, batches));
    const innerBatches = () => innerBatch;
    const ctxS = makeContext({
      problem: stochastic,
      oracles: createOracles(stochastic),
      solver: solverS,
      x,
      y0,
      innerBatches,
      outerBatch,
    });
    const ctxT = makeContext({ problem: twin, oracles: createOracles(twin), solver: solverT, x, y0 });
    for (const batchedSolves of [true, false]) {
      const es = new EvolutionStrategiesEstimator({ directions: 8, batchedSolves });
      const s = es.estimate(withSeed(ctxS, 9));
      const t = es.estimate(withSeed(ctxT, 9));
      // identical up to float rounding; a perturbed solve without the batch would be off by A⁻¹c/μ
      expect(relativeError(treeToArray(s.hypergradient), treeToArray(t.hypergradient))).toBeLessThan(1e-4);
      [s.hypergradient, t.hypergradient].forEach(treeDispose);
    }
    const perturbed = solverS.requests.slice(1);
    expect(perturbed.length).toBe(1 + 8); // one batched call, then eight single solves
    expect(
      perturbed.every((r) => r.request.batches?.(0) === innerBatch && (r.batched || r.request.y0 === y0)),
    ).toBe(true);
    [x, y0].forEach(treeDispose);
    [ctxS, ctxT].forEach((c) => c.dispose());
    [stochastic, twin].forEach((p) => p.dispose());
  });

  it('with a GD inner solver: ESJ-S equals ∇ₓf + (1/Q)Σ u uᵀ M_Nᵀ∇_y f (float64 reference, same directions)', () => {
    // GD with per-iteration shifts c_k: y_N(x) = (I − αA)^N y₀ + Σ_k (I − αA)^{N−1−k} α(Bx + c_k) is affine in
    // x with linear part M_N = α Σ_{j<N} (I − αA)^j B, whatever the batches. Replaying the batch sequence makes
    // (y_N(x + μu) − y_N(x))/μ = M_N u exactly; any other sequence adds (shift differences)/μ.
    const problem = new ShiftedQuadraticProblem(fixture);
    const rng = new Random(5);
    const N = 12;
    // drawn up front: a lazily memoized schedule would create its tensors inside the base solve's tidy
    const memo: Batch[] = Array.from({ length: N + 1 }, () => problem.sampleInnerBatch(rng));
    const innerBatches = (k: number) => memo[k];
    const alpha = 0.2;
    const solver = new GradientDescentTestSolver(100, alpha);
    const xData = [0.5, -0.2, 0.1, 0.9, -1.2];
    const x = vec(xData);
    const y0 = { y: tf.zeros([d]) };
    const oracles = createOracles(problem);
    const ctx = makeContext({ problem, oracles, solver, x, y0, innerBatches, maxIterations: N });
    expect(ctx.inner.iterations).toBe(N);
    // float64 M_N
    let m = new Float64Array(d * d);
    for (let k = 0; k < N; k++) {
      const next = new Float64Array(d * d);
      for (let i = 0; i < d; i++) {
        for (let j = 0; j < d; j++) {
          let s = 0;
          for (let l = 0; l < d; l++) s += fixture.a[i * d + l] * m[l * d + j];
          next[i * d + j] = m[i * d + j] - alpha * s + alpha * fixture.b[i * d + j];
        }
      }
      m = next;
    }
    const Q = 5;
    const U = sampleDirections('gaussian', Q, treeSpec(x), new Random(2)).arraySync();
    const gy = treeToArray(ctx.inner.y).map((v, i) => v - fixture.t[i]); // ∇_y f (no outer batch)
    const mtg = new Float64Array(d);
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) mtg[j] += m[i * d + j] * gy[i];
    const reference = Float64Array.from(xData, (v, i) => v - fixture.z[i]);
    for (const u of U) {
      const c = u.reduce((acc, ui, i) => acc + ui * mtg[i], 0);
      u.forEach((ui, i) => (reference[i] += (c * ui) / Q));
    }
    for (const batchedSolves of [true, false]) {
      const est = new EvolutionStrategiesEstimator({
        directions: Q,
        smoothing: 0.01,
        batchedSolves,
      }).estimate(withSeed(ctx, 2));
      expect(relativeError(treeToArray(est.hypergradient), reference)).toBeLessThan(1e-3);
      expect(est.diagnostics.perturbedIterations).toBe(N);
      expect(est.diagnostics['calls.innerGradY']).toBe(Q * N);
      treeDispose(est.hypergradient);
    }
    expect(solver.batchedCalls).toBe(1);
    memo.forEach((b) => b.shift.dispose());
    [x, y0].forEach(treeDispose);
    ctx.dispose();
    problem.dispose();
  });
});

describe('options', () => {
  it('bad options raise ConfigError naming the field', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ directions: 0 }, 'estimator.options.directions'],
      [{ smoothing: 0 }, 'estimator.options.smoothing'],
      [{ distribution: 'cauchy' }, 'estimator.options.distribution'],
      [{ antithetic: 1 }, 'estimator.options.antithetic'],
      [{ maxBatchSize: 0 }, 'estimator.options.maxBatchSize'],
    ];
    for (const [options, path] of cases) {
      let caught: unknown;
      try {
        registry.create('estimator', 'es', options);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(ConfigError);
      expect((caught as ConfigError).path).toBe(path);
    }
    expect(() => new EvolutionStrategiesEstimator({ distribution: 'cauchy' as 'gaussian' })).toThrow(
      /estimator\.options\.distribution: must be one of 'gaussian', 'sphere', 'per-tensor-unit'/,
    );
  });
});

/** The fixture with its outer variable split into two tensors p ([2]) and q ([3]). */
class TwoTensorQuadratic {
  readonly name = 'two-tensor-quadratic';
  constructor(private readonly f: QuadraticFixture) {}
  private join(x: TensorTree): TensorTree {
    return { x: tf.concat([x.p, x.q]) };
  }
  initialX(): TensorTree {
    return { p: tf.zeros([2]), q: tf.zeros([3]) };
  }
  initialY(): TensorTree {
    return this.f.initialY();
  }
  innerLoss(x: TensorTree, y: TensorTree): tf.Scalar {
    return tf.tidy(() => this.f.innerLoss(this.join(x), y));
  }
  outerLoss(x: TensorTree, y: TensorTree): tf.Scalar {
    return tf.tidy(() => this.f.outerLoss(this.join(x), y));
  }
  innerLossBatched(xs: TensorTree, ys: TensorTree): tf.Tensor1D {
    return tf.tidy(() => this.f.innerLossBatched({ x: tf.concat([xs.p, xs.q], 1) }, ys));
  }
  innerSolution(x: TensorTree): TensorTree {
    return tf.tidy(() => this.f.innerSolution(this.join(x)));
  }
  dispose(): void {}
}
