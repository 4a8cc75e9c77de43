import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  type PerturbedSolveExecutor,
  type PerturbedSolveRequest,
  Random,
  type TensorTree,
  createOracles,
  registry,
  treeDispose,
} from '@bilevel/core';
import { QuadraticFixture, tensorCountGrowth } from '@bilevel/core/testing';
import { EvolutionStrategiesEstimator } from './index';
import {
  type JacobianMemoryState,
  orthogonalDirections,
  orthonormalizeRows,
  orthonormalizeRowsFast,
} from './jacobian-memory';
import { perturbedSolveBlock, sampleDirections } from './evolution-strategies-estimator';
import { makeContext, withSeed } from './test-utils/context';
import { relativeError, treeToArray } from './test-utils/dense-operator';
import { ClosedFormSolver, GradientDescentTestSolver } from './test-utils/test-solvers';

function vec(values: ArrayLike<number>): TensorTree {
  return { x: tf.tensor1d(Float32Array.from(values)) };
}

/** Row-major [rows, cols] float64 product M·v. */
function matVec(m: ArrayLike<number>, rows: number, cols: number, v: ArrayLike<number>): Float64Array {
  const out = new Float64Array(rows);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[i] += m[i * cols + j] * v[j];
  return out;
}

/** The closed-form response Jacobian of the fixture, J = A⁻¹B ([dy, dx], row-major, float64). */
function responseJacobian(f: QuadraticFixture): Float64Array {
  const j = new Float64Array(f.dy * f.dx);
  for (let c = 0; c < f.dx; c++) {
    const e = new Float64Array(f.dx);
    e[c] = 1;
    const col = f.innerSolutionArray(e);
    for (let r = 0; r < f.dy; r++) j[r * f.dx + c] = col[r];
  }
  return j;
}

describe('orthogonal directions (Choromanski et al., 2018)', () => {
  it('orthonormalizeRows gives orthonormal rows spanning the same space, and rejects dependent rows', () => {
    const rng = new Random(3);
    const n = 4;
    const d = 7;
    const g = rng.normalArray(n * d);
    const q = orthonormalizeRows(g, n, d);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let dot = 0;
        for (let t = 0; t < d; t++) dot += q[i * d + t] * q[j * d + t];
        expect(dot).toBeCloseTo(i === j ? 1 : 0, 5);
      }
    }
    // the first row is the first input row, normalized
    const n0 = Math.hypot(...Array.from(g.slice(0, d)));
    for (let t = 0; t < d; t++) expect(q[t]).toBeCloseTo(g[t] / n0, 5);
    const dependent = Float32Array.from([1, 2, 3, 2, 4, 6]);
    expect(() => orthonormalizeRows(dependent, 2, 3)).toThrow(/row 1 is linearly dependent/);
  });

  it('orthonormalizeRowsFast (CholeskyQR2) spans the same rows orthonormally, and falls back for dependent rows', () => {
    const rng = new Random(12);
    const n = 6;
    const d = 40;
    const g = rng.normalArray(n * d);
    const fast = orthonormalizeRowsFast(tf.tensor2d(g, [n, d]));
    const q = fast.dataSync();
    const ref = orthonormalizeRows(g, n, d);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let dot = 0;
        for (let t = 0; t < d; t++) dot += q[i * d + t] * q[j * d + t];
        expect(dot).toBeCloseTo(i === j ? 1 : 0, 4);
      }
      // Cholesky-QR and Gram–Schmidt give the same Q factor (both: lower-triangular combinations, positive diagonal)
      for (let t = 0; t < d; t++) expect(q[i * d + t]).toBeCloseTo(ref[i * d + t], 3);
    }
    fast.dispose();
    // two equal rows: the Cholesky pivot vanishes, the fallback (Gram–Schmidt) names the dependent row
    const dup = tf.tensor2d([1, 2, 3, 1, 2, 3], [2, 3]);
    expect(() => orthonormalizeRowsFast(dup)).toThrow(/row 1 is linearly dependent/);
    const before = tf.memory().numTensors;
    const input = tf.randomNormal([3, 8]) as tf.Tensor2D;
    orthonormalizeRowsFast(input).dispose();
    input.dispose();
    expect(tf.memory().numTensors).toBe(before);
    dup.dispose();
  });

  it("'orthogonal' draws blocks of at most d rows with UᵀU = d·I per full block", () => {
    const d = 5;
    const rng = new Random(9);
    const u = orthogonalDirections(12, d, (n) => rng.normalArray(n)).arraySync();
    expect(u.length).toBe(12);
    for (const block of [u.slice(0, 5), u.slice(5, 10)]) {
      for (let i = 0; i < d; i++) {
        for (let j = 0; j < d; j++) {
          const s = block.reduce((acc, row) => acc + row[i] * row[j], 0);
          expect(s).toBeCloseTo(i === j ? d : 0, 3);
        }
      }
    }
    u.slice(10).forEach((row) => expect(Math.hypot(...row)).toBeCloseTo(Math.sqrt(d), 4));
    const spec = { names: ['x'], shapes: [[d]], sizes: [d], total: d };
    expect(sampleDirections('orthogonal', 3, spec, new Random(1)).shape).toEqual([3, d]);
  });

  it('with Q = d orthogonal directions the estimate of a linear response is exact (closed form)', () => {
    const f = new QuadraticFixture({ innerDimension: 4, outerDimension: 6, conditionNumber: 3, seed: 5 });
    const xData = [0.2, -0.5, 0.9, 0.1, -0.3, 0.7];
    const x = vec(xData);
    const y0 = { y: tf.zeros([4]) };
    const solver = new ClosedFormSolver((v) => f.innerSolution(v));
    const ctx = makeContext({ problem: f, oracles: createOracles(f), solver, x, y0 });
    const es = new EvolutionStrategiesEstimator({
      directions: 6,
      distribution: 'orthogonal',
      smoothing: 1e-2,
    });
    const est = es.estimate(withSeed(ctx, 2));
    expect(relativeError(treeToArray(est.hypergradient), f.hypergradientArray(xData))).toBeLessThan(1e-3);
    // while Gaussian directions with the same Q are far off
    const g = new EvolutionStrategiesEstimator({ directions: 6, smoothing: 1e-2 }).estimate(withSeed(ctx, 2));
    expect(relativeError(treeToArray(g.hypergradient), f.hypergradientArray(xData))).toBeGreaterThan(1e-2);
    [est.hypergradient, g.hypergradient, x, y0].forEach(treeDispose);
    ctx.dispose();
    f.dispose();
  });
});

describe('ESJ with a Jacobian memory', () => {
  const f = new QuadraticFixture({ innerDimension: 4, outerDimension: 6, conditionNumber: 3, seed: 5 });
  const J = responseJacobian(f);
  const solver = new ClosedFormSolver((v) => f.innerSolution(v));
  afterAll(() => f.dispose());

  /** Runs `steps` estimates at the points xs[i]; returns the relative errors against the closed form. */
  function run(es: EvolutionStrategiesEstimator, xs: number[][], seed0 = 0): number[] {
    return xs.map((xData, i) => {
      const x = vec(xData);
      const y0 = { y: tf.zeros([4]) };
      const ctx = makeContext({ problem: f, oracles: createOracles(f), solver, x, y0 });
      const est = es.estimate(withSeed(ctx, seed0 + i, i));
      const err = relativeError(treeToArray(est.hypergradient), f.hypergradientArray(xData));
      [est.hypergradient, x, y0].forEach(treeDispose);
      ctx.dispose();
      return err;
    });
  }

  const points = Array.from({ length: 8 }, (_, i) =>
    [0.2, -0.5, 0.9, 0.1, -0.3, 0.7].map((v, j) => v + 0.1 * Math.sin(i + j)),
  );

  it('remembers the closed-form responses J·b along orthonormal directions', () => {
    const es = new EvolutionStrategiesEstimator({ directions: 2, memory: 6, smoothing: 1e-2 });
    run(es, points.slice(0, 2));
    const s = es.getState() as JacobianMemoryState;
    expect(s.directions?.rank).toBe(4);
    const b = Array.from(s.directions!.values);
    const a = Array.from(s.responses!.values);
    const bRows = orthonormalizeRows(b, 4, 6);
    for (let i = 0; i < 4; i++) {
      const row = b.slice(i * 6, i * 6 + 6);
      // already orthonormal: re-orthonormalizing changes nothing
      for (let t = 0; t < 6; t++) expect(bRows[i * 6 + t]).toBeCloseTo(row[t], 4);
      const truth = matVec(J, 4, 6, row);
      expect(relativeError(a.slice(i * 4, i * 4 + 4), truth)).toBeLessThan(1e-3);
    }
    es.dispose();
  });

  it('is exact from step d/Q on while x moves (constant J), and not before', () => {
    const es = new EvolutionStrategiesEstimator({ directions: 2, memory: 6, smoothing: 1e-2 });
    const errors = run(es, points);
    // steps 0–1 estimate the complement's part from 2 random directions of 6 and 4
    expect(Math.max(errors[0], errors[1])).toBeGreaterThan(1e-2);
    // step 2: r = 4, m = 2 = Q, the complement is measured exactly; later steps refresh the oldest rows
    errors.slice(2).forEach((e) => expect(e).toBeLessThan(2e-3));
    expect(es.memoryRank).toBe(6);
    es.dispose();
  });

  it('a rank cap below d keeps the newest directions and stays unbiased on the complement', () => {
    const es = new EvolutionStrategiesEstimator({ directions: 2, memory: 4, smoothing: 1e-2 });
    run(es, points.slice(0, 5));
    expect(es.memoryRank).toBe(4);
    // the mean over many draws (from the same memory) approaches the closed form
    const xData = points[5];
    const x = vec(xData);
    const y0 = { y: tf.zeros([4]) };
    const ctx = makeContext({ problem: f, oracles: createOracles(f), solver, x, y0 });
    const state = es.getState();
    const sum = new Float64Array(6);
    const N = 300;
    for (let i = 0; i < N; i++) {
      es.setState(state);
      const est = es.estimate(withSeed(ctx, 100 + i));
      treeToArray(est.hypergradient).forEach((v, j) => (sum[j] += v / N));
      treeDispose(est.hypergradient);
    }
    expect(relativeError(sum, f.hypergradientArray(xData))).toBeLessThan(0.05);
    [x, y0].forEach(treeDispose);
    ctx.dispose();
    es.dispose();
  });

  it('with workers: blocks solved elsewhere from the sent directions give the local memory estimate', () => {
    // An executor standing in for the queue's workers: it runs each block of 2 solves with perturbedSolveBlock
    // on its own oracles, as `bilevel worker` does, and sends back what the wire carries.
    const requests: PerturbedSolveRequest[] = [];
    const workerOracles = createOracles(f);
    const executor: PerturbedSolveExecutor = {
      solve: (request) => {
        requests.push(request);
        const J = (request.directions.antithetic ? 2 : 1) * request.directions.count;
        const values = new Float32Array(J);
        const responses = new Float32Array(J * request.yBase.length);
        let iterations = 0;
        for (let from = 0; from < J; from += 2) {
          const to = Math.min(J, from + 2);
          const out = perturbedSolveBlock({ solver, oracles: workerOracles }, request, from, to);
          values.set(out.values, from);
          responses.set(out.responses!, from * request.yBase.length);
          iterations += out.iterations;
        }
        return { values, responses, iterations, oracleCalls: {}, bytes: { sent: 0, received: 0 } };
      },
      dispose: () => undefined,
    };
    for (const antithetic of [false, true]) {
      requests.length = 0;
      const options = { directions: 2, memory: 6, smoothing: 1e-2, antithetic };
      const local = new EvolutionStrategiesEstimator(options);
      const remote = new EvolutionStrategiesEstimator(
        { ...options, workers: { queue: 'redis://127.0.0.1:1' } },
        () => executor,
      );
      const estimates = [local, remote].map((es) =>
        points.slice(0, 5).map((xData, i) => {
          const x = vec(xData);
          const y0 = { y: tf.zeros([4]) };
          const ctx = makeContext({ problem: f, oracles: createOracles(f), solver, x, y0 });
          const est = es.estimate(withSeed(ctx, 20 + i, i));
          const out = Array.from(treeToArray(est.hypergradient));
          [est.hypergradient, x, y0].forEach(treeDispose);
          ctx.dispose();
          return out;
        }),
      );
      // Five steps of 2 directions with a memory of 6 = d: it fills, then drops its oldest rows.
      for (let i = 0; i < 5; i++) expect(relativeError(estimates[1][i], estimates[0][i])).toBeLessThan(1e-5);
      expect(remote.memoryRank).toBe(6);
      // Every step sent its Q = 2 directions of dim x 6 and asked for the whole responses.
      expect(requests).toHaveLength(5);
      for (const r of requests) {
        expect(r.directionRows).toHaveLength(2 * 6);
        expect(r.responses).toBe(true);
      }
      // The independent reference: from step 2 on, the memory and its complement carry the closed-form Jacobian.
      expect(relativeError(estimates[1][4], f.hypergradientArray(points[4]))).toBeLessThan(2e-3);
      local.dispose();
      remote.dispose();
    }
  });

  it('antithetic, batched and one-by-one solves give the same memory estimate; tensor count stays flat', () => {
    const xData = points[0];
    const x = vec(xData);
    const y0 = { y: tf.zeros([4]) };
    const ctx = makeContext({ problem: f, oracles: createOracles(f), solver, x, y0 });
    const outs = [true, false].map((batchedSolves) => {
      const es = new EvolutionStrategiesEstimator({
        directions: 3,
        memory: 6,
        antithetic: true,
        batchedSolves,
      });
      const e1 = es.estimate(withSeed(ctx, 4));
      const e2 = es.estimate(withSeed(ctx, 5));
      const out = [treeToArray(e1.hypergradient), treeToArray(e2.hypergradient)];
      [e1.hypergradient, e2.hypergradient].forEach(treeDispose);
      const growth = tensorCountGrowth(
        (i) => treeDispose(es.estimate(withSeed(ctx, 10 + i)).hypergradient),
        12,
      );
      expect(growth.every((g) => g === 0)).toBe(true);
      es.dispose();
      return out;
    });
    expect(relativeError(outs[0][0], outs[1][0])).toBeLessThan(1e-5);
    // after two steps of 3 the memory is full: exact (central differences of a linear response)
    expect(relativeError(outs[0][1], f.hypergradientArray(xData))).toBeLessThan(1e-3);
    [x, y0].forEach(treeDispose);
    ctx.dispose();
  });

  it('with GD inner solves from a shared warm start (not converged) it recovers the N-step Jacobian', () => {
    // y_N(x) = (I − ηA)^N y0 + (I − (I − ηA)^N) A⁻¹Bx: linear in x, so the memory becomes exact for
    // ∇ₓf + J_Nᵀ∇_y f, which a dense float64 reference computes here column by column.
    const gd = new GradientDescentTestSolver(5, 0.3);
    const eta = 0.3;
    const N = 5;
    const jn = new Float64Array(4 * 6);
    for (let c = 0; c < 6; c++) {
      const bcol = Array.from({ length: 4 }, (_, r) => f.b[r * 6 + c]);
      let y = new Float64Array(4);
      for (let k = 0; k < N; k++) {
        const ay = matVec(f.a, 4, 4, y);
        y = y.map((v, r) => v - eta * (ay[r] - bcol[r]));
      }
      for (let r = 0; r < 4; r++) jn[r * 6 + c] = y[r];
    }
    const es = new EvolutionStrategiesEstimator({ directions: 3, memory: 6, smoothing: 1e-2 });
    let last: number[] = [];
    let lastX: number[] = [];
    let lastY: Float32Array = new Float32Array(0);
    for (let i = 0; i < 3; i++) {
      const xData = points[i];
      const x = vec(xData);
      const y0 = { y: tf.tensor1d([0.1, -0.2, 0.3, 0.05]) };
      const ctx = makeContext({ problem: f, oracles: createOracles(f), solver: gd, x, y0 });
      const est = es.estimate(withSeed(ctx, i));
      last = Array.from(treeToArray(est.hypergradient));
      lastX = xData;
      lastY = ctx.inner.y.y.dataSync() as Float32Array;
      lastY = Float32Array.from(lastY);
      [est.hypergradient, x, y0].forEach(treeDispose);
      ctx.dispose();
    }
    const gy = Array.from(lastY, (v, r) => v - f.t[r]);
    const reference = lastX.map((v, c) => {
      let s = v - f.z[c];
      for (let r = 0; r < 4; r++) s += jn[r * 6 + c] * gy[r];
      return s;
    });
    expect(relativeError(last, reference)).toBeLessThan(1e-3);
    es.dispose();
  });

  it('checkpoint state round-trips: a restored estimator continues exactly as the original', () => {
    const a = new EvolutionStrategiesEstimator({ directions: 2, memory: 4, smoothing: 1e-2 });
    run(a, points.slice(0, 3));
    const saved = JSON.parse(JSON.stringify(a.getState())) as unknown;
    const b = new EvolutionStrategiesEstimator({ directions: 2, memory: 4, smoothing: 1e-2 });
    b.setState(saved);
    expect(b.memoryRank).toBe(a.memoryRank);
    const xData = points[4];
    const x = vec(xData);
    const y0 = { y: tf.zeros([4]) };
    const ctx = makeContext({ problem: f, oracles: createOracles(f), solver, x, y0 });
    const ea = a.estimate(withSeed(ctx, 77));
    const eb = b.estimate(withSeed(ctx, 77));
    expect(Array.from(treeToArray(eb.hypergradient))).toEqual(Array.from(treeToArray(ea.hypergradient)));
    [ea.hypergradient, eb.hypergradient, x, y0].forEach(treeDispose);
    ctx.dispose();
    expect(() => b.setState({ directions: { rank: 1, dx: 6, values: [1] }, responses: null })).not.toThrow();
    expect(() =>
      b.setState({ directions: { rank: 2, dx: 6, values: [1] }, responses: { rank: 2, dy: 4, values: [] } }),
    ).toThrow(/Jacobian memory sizes do not match/);
    expect(() => b.setState({ warmStart: null })).toThrow(/expected an object \{ directions, responses \}/);
    a.dispose();
    b.dispose();
  });

  it('bad options get clear errors', () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ memory: -1 }, 'estimator.options.memory', /memory/],
      [{ memory: 5, directions: 10 }, 'estimator.options.memory', /must be at least directions \(10\)/],
      [{ memory: 20, distribution: 'sphere' }, 'estimator.options.distribution', /cannot be used with it/],
    ];
    for (const [options, path, message] of cases) {
      let caught: unknown;
      try {
        registry.create('estimator', 'es', options);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(ConfigError);
      expect((caught as ConfigError).path).toBe(path);
      expect((caught as Error).message).toMatch(message);
    }
    const x = vec([1, 2, 3, 4, 5, 6]);
    const y0 = { y: tf.zeros([4]) };
    const ctx = makeContext({ problem: f, oracles: createOracles(f), solver, x, y0 });
    const es = new EvolutionStrategiesEstimator({ directions: 7, memory: 10 });
    expect(() => es.estimate(ctx)).toThrow(/directions \(7\) must not exceed the dimension of x \(6\)/);
    [x, y0].forEach(treeDispose);
    ctx.dispose();
  });
});
