import {
  ConfigError,
  type HypergradientEstimator,
  SECOND_ORDER_STRATEGIES,
  createOracles,
  matVec,
  registry,
  treeDispose,
} from '@bilevel/core';
import { tensorCountGrowth } from '@bilevel/core/testing';
import {
  ConjugateGradientEstimator,
  ExactEstimator,
  FixedPointEstimator,
  ItdEstimator,
  NeumannEstimator,
} from './index';
import { makeContext } from './test-utils/context';
import { relativeError, treeToArray } from './test-utils/dense-operator';
import { quadraticSetup } from './test-utils/quadratic-setup';

// d = 100, κ(A) = 10, exact inner solve y*(x) = A⁻¹Bx, closed-form hypergradient in float64.
const { d, fixture, solver, xData, truth, point } = quadraticSetup();

function relErrorOf(estimator: HypergradientEstimator, strategy: (typeof SECOND_ORDER_STRATEGIES)[number]) {
  const oracles = createOracles(fixture, { secondOrder: strategy });
  const ctx = makeContext({ problem: fixture, oracles, solver, ...point });
  const est = estimator.estimate(ctx);
  const err = relativeError(treeToArray(est.hypergradient), truth);
  treeDispose(est.hypergradient);
  ctx.dispose();
  return { err, diagnostics: est.diagnostics };
}

describe.each(SECOND_ORDER_STRATEGIES)(
  'implicit estimators on the quadratic (d = 100), %s products',
  (strategy) => {
    it('exact: dense Hessian from d products and a float64 solve, within 1e-3 of the closed form', () => {
      const { err, diagnostics } = relErrorOf(new ExactEstimator(), strategy);
      expect(err).toBeLessThan(1e-3);
      expect(diagnostics['calls.hessianVector']).toBe(d);
      expect(diagnostics['calls.mixedVector']).toBe(1);
      expect(diagnostics['calls.outerGrad']).toBe(1);
      expect(diagnostics.cholesky).toBe(1);
      expect(diagnostics.rank).toBe(d);
      expect(diagnostics.relativeResidual).toBeLessThan(1e-6);
    });

    it('cg: within 1e-3 with 50 steps at tolerance 1e-6', () => {
      const { err, diagnostics } = relErrorOf(
        new ConjugateGradientEstimator({ maxIterations: 50, tolerance: 1e-6 }),
        strategy,
      );
      expect(err).toBeLessThan(1e-3);
      expect(diagnostics.converged).toBe(1);
      expect(diagnostics.relativeResidual).toBeLessThanOrEqual(1e-6);
      // CG on κ = 10 needs about √κ·ln(2/1e-6)/2 ≈ 23 steps
      expect(diagnostics.iterations).toBeLessThanOrEqual(35);
      expect(diagnostics['calls.hessianVector']).toBe(diagnostics.iterations);
    });

    it('neumann: within 1e-3 with K = 120 terms at η = 0.1 (remainder 0.9^120 ≈ 3e-6)', () => {
      const { err, diagnostics } = relErrorOf(new NeumannEstimator({ terms: 120, stepSize: 0.1 }), strategy);
      expect(err).toBeLessThan(1e-3);
      expect(diagnostics.iterations).toBe(120);
      expect(diagnostics['calls.hessianVector']).toBe(120);
      expect(diagnostics.relativeResidual).toBeLessThan(1e-4);
    });

    it('fixed-point: within 1e-3 with K = 120 steps at η = 0.1', () => {
      const { err, diagnostics } = relErrorOf(
        new FixedPointEstimator({ maxIterations: 120, stepSize: 0.1 }),
        strategy,
      );
      expect(err).toBeLessThan(1e-3);
      expect(diagnostics.relativeResidual).toBeLessThan(1e-4);
    });

    it('itd: error to ∇Φ decreases in K and is below 1e-3 for K = 150', () => {
      const errs = [5, 20, 60, 150].map(
        (K) => relErrorOf(new ItdEstimator({ steps: K, stepSize: 0.1 }), strategy).err,
      );
      for (let i = 1; i < errs.length; i++) expect(errs[i]).toBeLessThan(errs[i - 1]);
      expect(errs[0]).toBeGreaterThan(0.05); // five steps from y0 = 0 are far from y*
      expect(errs[3]).toBeLessThan(1e-3);
    });
  },
);

describe('itd differentiates its own unrolled steps exactly', () => {
  /**
   * Float64 reference: y_K = (I − αA)^K y₀ + M_K x with M_{k+1} = (I − αA)M_k + αB, so
   * Φ_K(x) = f(x, y_K(x)) has ∇Φ_K = (x − z) + M_Kᵀ(y_K − t) — the truncated hypergradient ITD must return.
   */
  function truncatedHypergradient(K: number, alpha: number): Float64Array {
    const n = d;
    let m = new Float64Array(n * n);
    let yk = new Float64Array(n);
    for (let k = 0; k < K; k++) {
      const next = new Float64Array(n * n);
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let l = 0; l < n; l++) s += fixture.a[i * n + l] * m[l * n + j];
          next[i * n + j] = m[i * n + j] - alpha * s + alpha * fixture.b[i * n + j];
        }
      }
      m = next;
      const ay = matVec(fixture.a, n, n, yk);
      yk = yk.map((v, i) => v - alpha * ay[i]);
    }
    const yK = matVec(m, n, n, xData).map((v, i) => v + yk[i]);
    const r = yK.map((v, i) => v - fixture.t[i]);
    const mt = new Float64Array(n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) mt[j] += m[i * n + j] * r[i];
    return Float64Array.from({ length: n }, (_, i) => xData[i] - fixture.z[i] + mt[i]);
  }

  it.each(SECOND_ORDER_STRATEGIES)(
    'K = 8 and K = 25 match the float64 unrolled derivative (%s)',
    (strategy) => {
      for (const K of [8, 25]) {
        const oracles = createOracles(fixture, { secondOrder: strategy });
        const ctx = makeContext({ problem: fixture, oracles, solver, ...point });
        const est = new ItdEstimator({ steps: K, stepSize: 0.1 }).estimate(ctx);
        expect(relativeError(treeToArray(est.hypergradient), truncatedHypergradient(K, 0.1))).toBeLessThan(
          1e-4,
        );
        expect(est.diagnostics['calls.innerGradY']).toBe(K);
        expect(est.diagnostics['calls.hessianVector']).toBe(K - 1);
        expect(est.diagnostics['calls.mixedVector']).toBe(K);
        treeDispose(est.hypergradient);
        treeDispose(est.inner?.y);
        ctx.dispose();
      }
    },
  );
});

describe('warm starts, checkpoints and memory', () => {
  it('cg warm start: the second solve starts from the first solution and needs fewer steps', () => {
    const oracles = createOracles(fixture);
    const ctx = makeContext({ problem: fixture, oracles, solver, ...point });
    const cg = new ConjugateGradientEstimator({ maxIterations: 60, tolerance: 1e-5 });
    const first = cg.estimate(ctx);
    const second = cg.estimate(ctx);
    expect(first.diagnostics.warmStarted).toBe(0);
    expect(second.diagnostics.warmStarted).toBe(1);
    expect(second.diagnostics.iterations).toBeLessThan(first.diagnostics.iterations);
    [first.hypergradient, second.hypergradient].forEach(treeDispose);
    cg.dispose();
    ctx.dispose();
  });

  it.each([
    ['cg', () => new ConjugateGradientEstimator({ maxIterations: 3, tolerance: 0 })],
    ['fixed-point', () => new FixedPointEstimator({ maxIterations: 3, stepSize: 0.1 })],
  ] as const)('%s: getState/setState resume exactly (state survives JSON)', (_name, make) => {
    const oracles = createOracles(fixture);
    const ctx = makeContext({ problem: fixture, oracles, solver, ...point });
    const a = make();
    treeDispose(a.estimate(ctx).hypergradient);
    const state: unknown = JSON.parse(JSON.stringify(a.getState()));
    const b = make();
    b.setState(state);
    const ea = a.estimate(ctx);
    const eb = b.estimate(ctx);
    // three steps from the kept solution: identical iterates only if the warm start was restored
    expect(relativeError(treeToArray(eb.hypergradient), treeToArray(ea.hypergradient))).toBeLessThan(1e-6);
    const fresh = make().estimate(ctx);
    expect(relativeError(treeToArray(fresh.hypergradient), treeToArray(ea.hypergradient))).toBeGreaterThan(
      1e-4,
    );
    [ea.hypergradient, eb.hypergradient, fresh.hypergradient].forEach(treeDispose);
    expect(() => b.setState({ nonsense: 1 })).toThrow(/warmStart/);
    a.dispose();
    b.dispose();
    ctx.dispose();
  });

  it.each([
    ['exact', () => new ExactEstimator()],
    ['cg', () => new ConjugateGradientEstimator({ maxIterations: 5 })],
    ['neumann', () => new NeumannEstimator({ terms: 5 })],
    ['fixed-point', () => new FixedPointEstimator({ maxIterations: 5 })],
    ['itd', () => new ItdEstimator({ steps: 5 })],
  ] as const)('%s: tensor count flat over repeated estimates (both strategies)', (_name, make) => {
    for (const strategy of SECOND_ORDER_STRATEGIES) {
      const oracles = createOracles(fixture, { secondOrder: strategy });
      const ctx = makeContext({ problem: fixture, oracles, solver, ...point });
      const est = make();
      const growth = tensorCountGrowth(() => {
        const e = est.estimate(ctx);
        // The caller owns what an estimate returns: ∇Φ and, from ITD, its own inner solution.
        treeDispose(e.hypergradient);
        treeDispose(e.inner?.y);
      }, 6);
      // a warm-started estimator keeps one solution after the first call; nothing may grow afterwards
      expect(new Set(growth.slice(1)).size).toBe(1);
      expect(growth[1]).toBeLessThanOrEqual(1);
      (est as HypergradientEstimator).dispose?.();
      ctx.dispose();
    }
  });
});

describe('options', () => {
  it('bad options raise ConfigError naming the field (registry and constructors)', () => {
    const cases: [string, Record<string, unknown>, string][] = [
      ['cg', { maxIterations: 0 }, 'estimator.options.maxIterations'],
      ['cg', { tolerance: -1 }, 'estimator.options.tolerance'],
      ['neumann', { stepSize: 'big' }, 'estimator.options.stepSize'],
      ['fixed-point', { warmStart: 'yes' }, 'estimator.options.warmStart'],
      ['itd', { steps: 2.5 }, 'estimator.options.steps'],
      ['exact', { maxDimension: -3 }, 'estimator.options.maxDimension'],
      ['exact', { unknownKey: 1 }, 'estimator.options'],
    ];
    for (const [name, options, path] of cases) {
      let caught: unknown;
      try {
        registry.create('estimator', name, options);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(ConfigError);
      expect((caught as ConfigError).path).toBe(path);
      expect((caught as ConfigError).message).toContain(path);
    }
    expect(() => new NeumannEstimator({ terms: -1 })).toThrow(/estimator\.options\.terms/);
  });

  it('registers every estimator with defaults that construct', () => {
    for (const name of ['cg', 'neumann', 'fixed-point', 'itd', 'exact', 'es']) {
      expect(registry.has('estimator', name)).toBe(true);
      expect(registry.create('estimator', name).name).toBe(name);
    }
    const doc = registry.list('estimator').find((p) => p.name === 'cg');
    expect(doc?.source).toBe('@bilevel/estimators');
    expect(doc?.options.map((o) => o.name)).toEqual(['maxIterations', 'tolerance', 'warmStart']);
  });

  it('exact refuses inner variables above maxDimension with a ConfigError naming it', () => {
    const oracles = createOracles(fixture);
    const ctx = makeContext({ problem: fixture, oracles, solver, ...point });
    const call = () => new ExactEstimator({ maxDimension: 50 }).estimate(ctx);
    expect(call).toThrow(ConfigError);
    expect(call).toThrow(/100 entries, above estimator\.options\.maxDimension = 50/);
    expect(oracles.counts.hessianVector).toBe(0);
    ctx.dispose();
  });
});
