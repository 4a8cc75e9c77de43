import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, createOracles, Random, registry, treeDispose } from '@bilevel/core';
import { tensorCountGrowth } from '@bilevel/core/testing';
import { QuadraticProblem } from './index';
import { gaussianSolve, relativeMaxError } from './test-utils/reference';

describe('quadratic (qNBO toy)', () => {
  const n = 12;
  const problem = new QuadraticProblem({ dimension: n, seed: 4 });
  const rng = new Random(1);
  afterAll(() => problem.dispose());

  it('aInverse (formed on first use) is the inverse of A, and y*(x) = A⁻¹x agrees with it', () => {
    const a = problem.a;
    const inv = problem.aInverse;
    expect(problem.aInverse).toBe(inv); // kept
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += a[i * n + k] * inv[k * n + j];
        expect(Math.abs(s - (i === j ? 1 : 0))).toBeLessThan(1e-12);
      }
    const x = Float64Array.from({ length: n }, () => rng.normal());
    const ys = problem.innerSolutionArray(x);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += inv[i * n + j] * x[j];
      expect(ys[i]).toBeCloseTo(s, 12);
    }
  });

  it('has a symmetric A with spectrum in [1, 2]', () => {
    const a = problem.a;
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) expect(a[i * n + j]).toBeCloseTo(a[j * n + i], 12);
    for (const l of problem.eigenvalues) expect(l >= 1 && l <= 2).toBe(true);
    // Rayleigh quotients of random vectors stay inside the spectrum.
    for (let t = 0; t < 20; t++) {
      const v = Float64Array.from({ length: n }, () => rng.normal());
      let num = 0;
      let den = 0;
      for (let i = 0; i < n; i++) {
        let av = 0;
        for (let j = 0; j < n; j++) av += a[i * n + j] * v[j];
        num += v[i] * av;
        den += v[i] * v[i];
      }
      expect(num / den).toBeGreaterThanOrEqual(1 - 1e-12);
      expect(num / den).toBeLessThanOrEqual(2 + 1e-12);
    }
  });

  it('closed forms agree with a float64 Gaussian-elimination reference', () => {
    const x = Float64Array.from({ length: n }, () => rng.normal());
    const ys = gaussianSolve(problem.a, x, n);
    expect(relativeMaxError(problem.innerSolutionArray(x), ys)).toBeLessThan(1e-12);
    const grad = problem.hypergradientArray(x);
    expect(
      relativeMaxError(
        grad,
        x.map((v, i) => v - problem.z0[i] + ys[i]),
      ),
    ).toBeLessThan(1e-12);
    // Finite differences of Φ(x) = f(x, y*(x)) with the reference solve.
    const phi = (v: Float64Array) => {
      const y = gaussianSolve(problem.a, v, n);
      let s = 0;
      for (let i = 0; i < n; i++) {
        let ay = 0;
        for (let j = 0; j < n; j++) ay += problem.a[i * n + j] * y[j];
        s += 0.5 * (v[i] - problem.z0[i]) ** 2 + 0.5 * y[i] * ay;
      }
      return s;
    };
    const h = 1e-6;
    for (let i = 0; i < n; i++) {
      const p = Float64Array.from(x);
      const m = Float64Array.from(x);
      p[i] += h;
      m[i] -= h;
      expect((phi(p) - phi(m)) / (2 * h)).toBeCloseTo(grad[i], 6);
    }
    expect(problem.objectiveArray(x)).toBeCloseTo(phi(x), 10);
    // x* is stationary: x* − z₀ + A⁻¹x* = 0.
    const xs = problem.optimalXArray();
    const r = gaussianSolve(problem.a, xs, n).map((v, i) => v + xs[i] - problem.z0[i]);
    expect(Math.max(...r.map(Math.abs))).toBeLessThan(1e-12);
  });

  it('autodiff gradients match ∇_y g = Ay − x, ∇_x g = −y, ∇_x f = x − z₀, ∇_y f = Ay and ∇²_yy g·v = Av', () => {
    const oracles = createOracles(problem);
    const xv = rng.normalArray(n);
    const yv = rng.normalArray(n);
    const vv = rng.normalArray(n);
    const x = { x: tf.tensor1d(xv) };
    const y = { y: tf.tensor1d(yv) };
    const v = { y: tf.tensor1d(vv) };
    const ay = Array.from({ length: n }, (_, i) =>
      problem.a.slice(i * n, i * n + n).reduce((s, aij, j) => s + aij * yv[j], 0),
    );
    const av = Array.from({ length: n }, (_, i) =>
      problem.a.slice(i * n, i * n + n).reduce((s, aij, j) => s + aij * vv[j], 0),
    );
    const gy = oracles.innerGradY(x, y);
    const gx = oracles.innerGradX(x, y);
    const outer = oracles.outerGrads(x, y);
    const hv = oracles.hessianVectorProduct(x, y, v);
    const mv = oracles.mixedVectorProduct(x, y, v);
    expect(
      relativeMaxError(
        gy.y.dataSync(),
        ay.map((s, i) => s - xv[i]),
      ),
    ).toBeLessThan(1e-5);
    expect(
      relativeMaxError(
        gx.x.dataSync(),
        Array.from(yv, (t) => -t),
      ),
    ).toBeLessThan(1e-6);
    expect(
      relativeMaxError(
        outer.gradX.x.dataSync(),
        Array.from(xv, (t, i) => t - problem.z0[i]),
      ),
    ).toBeLessThan(1e-5);
    expect(relativeMaxError(outer.gradY.y.dataSync(), ay)).toBeLessThan(1e-5);
    expect(relativeMaxError(hv.y.dataSync(), av)).toBeLessThan(1e-5);
    expect(
      relativeMaxError(
        mv.x.dataSync(),
        Array.from(vv, (t) => -t),
      ),
    ).toBeLessThan(1e-6);
    let g = 0;
    let f = 0;
    for (let i = 0; i < n; i++) {
      g += 0.5 * yv[i] * ay[i] - xv[i] * yv[i];
      f += 0.5 * (xv[i] - problem.z0[i]) ** 2 + 0.5 * yv[i] * ay[i];
    }
    expect(oracles.innerLoss(x, y).dataSync()[0]).toBeCloseTo(g, 4);
    expect(outer.value.dataSync()[0]).toBeCloseTo(f, 4);
    tf.dispose([x.x, y.y, v.y, gy.y, gx.x, outer.value, outer.gradX.x, outer.gradY.y, hv.y, mv.x]);
  });

  it('innerLossBatched equals the member-wise inner losses', () => {
    const b = 3;
    const xs = { x: rng.normalTensor([b, n]) };
    const ys = { y: rng.normalTensor([b, n]) };
    const batched = problem.innerLossBatched(xs, ys).dataSync();
    for (let k = 0; k < b; k++) {
      const single = tf.tidy(
        () =>
          problem
            .innerLoss(
              { x: xs.x.slice([k, 0], [1, n]).reshape([n]) },
              { y: ys.y.slice([k, 0], [1, n]).reshape([n]) },
            )
            .dataSync()[0],
      );
      expect(batched[k]).toBeCloseTo(single, 4);
    }
    treeDispose(xs);
    treeDispose(ys);
  });

  it('evaluate reports the relative error to x* and tensor-valued closed forms match', () => {
    const xStar = problem.optimalX();
    const yStar = problem.innerSolution(xStar);
    const atStar = problem.evaluate(xStar, yStar);
    expect(atStar.xRelativeError).toBeLessThan(1e-6);
    expect(atStar.yRelativeError).toBeLessThan(1e-6);
    expect(Math.abs(atStar.suboptimality)).toBeLessThan(1e-10);
    expect(atStar.hypergradientNorm).toBeLessThan(1e-5);
    const x0 = problem.initialX();
    const y0 = problem.initialY();
    expect(problem.evaluate(x0, y0).xRelativeError).toBeCloseTo(1, 12);
    const hg = problem.hypergradient(x0);
    expect(
      relativeMaxError(
        hg.x.dataSync(),
        Array.from(problem.z0, (z) => -z),
      ),
    ).toBeLessThan(1e-6);
    tf.dispose([xStar.x, yStar.y, x0.x, y0.y, hg.x]);
    expect(problem.mainMetric).toBe('xRelativeError');
    expect(problem.mainMetricHigherIsBetter).toBe(false);
  });

  it('keeps the tensor count flat over repeated oracle calls', () => {
    const oracles = createOracles(problem);
    const x = { x: rng.normalTensor([n]) };
    const y = { y: rng.normalTensor([n]) };
    const growth = tensorCountGrowth(() => {
      tf.tidy(() => {
        oracles.innerGradY(x, y);
        oracles.outerGrads(x, y);
        oracles.hessianVectorProduct(x, y, y);
        oracles.mixedVectorProduct(x, y, y);
      });
      problem.evaluate(x, y);
    }, 5);
    expect(growth).toEqual([0, 0, 0, 0, 0]);
    treeDispose(x);
    treeDispose(y);
  });

  it('is registered with validated options and is seeded', () => {
    const p = registry.create('problem', 'quadratic', { dimension: 5, seed: 4 }) as QuadraticProblem;
    const q = new QuadraticProblem({ dimension: 5, seed: 4 });
    expect(Array.from(p.a)).toEqual(Array.from(q.a));
    const r = new QuadraticProblem({ dimension: 5, seed: 5 });
    expect(Array.from(p.a)).not.toEqual(Array.from(r.a));
    r.dispose();
    expect(() => registry.create('problem', 'quadratic', { dimension: 0 })).toThrow(ConfigError);
    expect(() => registry.create('problem', 'quadratic', { dimension: 0 })).toThrow(
      /problem\.options\.dimension/,
    );
    expect(() => registry.create('problem', 'quadratic', { dim: 3 })).toThrow(/unknown option\(s\) 'dim'/);
    p.dispose();
    q.dispose();
  });
});
