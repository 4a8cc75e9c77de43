import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  type CurvatureMemory,
  type InnerSolveRequest,
  Random,
  SECOND_ORDER_STRATEGIES,
  createOracles,
  matTVec,
  matVec,
  registry,
  treeDispose,
  treeSpec,
} from '@bilevel/core';
import { tensorCountGrowth } from '@bilevel/core/testing';
import { LbfgsMemory } from '@bilevel/linalg';
import { QnboEstimator } from './index';
import { makeContext } from './test-utils/context';
import { relativeError, treeToArray } from './test-utils/dense-operator';
import { ClosedFormSolver } from './test-utils/test-solvers';
import { quadraticSetup } from './test-utils/quadratic-setup';

// d = 100, κ(A) = 10, exact inner solve y*(x) = A⁻¹Bx, closed-form hypergradient in float64.
const { d, fixture, solver, xData, truth, point } = quadraticSetup();

function run(
  options: ConstructorParameters<typeof QnboEstimator>[0],
  strategy: 'autodiff' | 'finite-difference' = 'autodiff',
  step = 0,
) {
  const oracles = createOracles(fixture, { secondOrder: strategy });
  const ctx = makeContext({ problem: fixture, oracles, solver, ...point, step });
  const est = new QnboEstimator(options).estimate(ctx);
  const values = treeToArray(est.hypergradient);
  treeDispose(est.hypergradient);
  ctx.dispose();
  return { values, err: relativeError(values, truth), diagnostics: est.diagnostics };
}

describe.each(SECOND_ORDER_STRATEGIES)(
  'qNBO subroutine B on the quadratic (d = 100), %s mixed product',
  (strategy) => {
    it.each(['bfgs', 'sr1'] as const)('%s: within 1e-3 of the closed form after 20 passes', (update) => {
      const { err, diagnostics } = run({ update, passes: 20, memory: 20 }, strategy);
      expect(err).toBeLessThan(1e-3);
      expect(diagnostics.passes).toBe(20);
      expect(diagnostics.pairsKept).toBeGreaterThan(5);
      expect(diagnostics.relativeResidual).toBeLessThan(1e-3);
      // one inner gradient at y_N, one per pass; no Hessian-vector product; one mixed product
      expect(diagnostics['calls.innerGradY']).toBe(21);
      expect(diagnostics['calls.hessianVector']).toBe(0);
      expect(diagnostics['calls.mixedVector']).toBe(1);
    });
  },
);

describe('subroutine B details', () => {
  it('the error falls with the number of passes (BFGS and SR1)', () => {
    for (const update of ['bfgs', 'sr1'] as const) {
      const errs = [3, 8, 16].map((passes) => run({ update, passes, memory: 20 }).err);
      expect(errs[1]).toBeLessThan(errs[0]);
      expect(errs[2]).toBeLessThan(errs[1]);
    }
  });

  it('stops at the tolerance on the secant residual', () => {
    const { diagnostics } = run({ passes: 50, tolerance: 1e-4 });
    expect(diagnostics.passes).toBeLessThan(50);
    expect(diagnostics.relativeResidual).toBeLessThanOrEqual(1e-4);
  });

  it("'directions' pairs: one pass returns H̃₁b, the second iterate of 'steps'", () => {
    // steps: u₁ = H̃₀b, u₂ = u₁ − H̃₁(Au₁ − b) = H̃₁b because H̃₁ r₀ = s₀ = u₁ (secant equation)
    const a = run({ pairs: 'directions', passes: 1 });
    const b = run({ pairs: 'steps', passes: 2 });
    expect(relativeError(a.values, b.values)).toBeLessThan(1e-4);
  });

  it('the probe scale τ does not change the result on a quadratic (exact secants)', () => {
    const a = run({ passes: 12 });
    const b = run({ passes: 12, probeScale: 0.01 });
    expect(relativeError(b.values, a.values)).toBeLessThan(1e-3);
  });

  it('Q_k grows with the outer step and is capped', () => {
    const est = new QnboEstimator({ passes: 3, passesGrowth: 0.5, maxPasses: 6 });
    expect([0, 1, 2, 3, 6, 100].map((k) => est.passesAt(k))).toEqual([3, 3, 4, 4, 6, 6]);
    expect(run({ passes: 3, passesGrowth: 0.5, maxPasses: 6 }, 'autodiff', 4).diagnostics.passes).toBe(5);
  });

  it('keeps the tensor count flat', () => {
    const oracles = createOracles(fixture);
    const ctx = makeContext({ problem: fixture, oracles, solver, ...point });
    for (const update of ['bfgs', 'sr1'] as const) {
      for (const pairs of ['steps', 'directions'] as const) {
        const est = new QnboEstimator({ update, pairs, passes: 6 });
        const growth = tensorCountGrowth(() => treeDispose(est.estimate(ctx).hypergradient), 4);
        expect(growth.every((g) => g === 0)).toBe(true);
      }
    }
    ctx.dispose();
  });
});

describe("mode 'reuse-inner'", () => {
  /** Closed-form solve that also hands back an L-BFGS memory with pairs (s_i, A s_i) (a quasi-Newton solver's). */
  class CurvatureSolver extends ClosedFormSolver {
    readonly memory: LbfgsMemory;
    constructor() {
      super((xx) => fixture.innerSolution(xx));
      this.memory = new LbfgsMemory(treeSpec({ y: tf.zeros([d]) }), {
        memory: 8,
        initialScaling: 'auto',
        curvatureEpsilon: 1e-10,
      });
      const r = new Random(4);
      for (let i = 0; i < 8; i++) {
        const s = Float64Array.from({ length: d }, () => r.normal());
        tf.tidy(() => {
          this.memory.push(
            tf.tensor1d(Float32Array.from(s)),
            tf.tensor1d(Float32Array.from(matVec(fixture.a, d, d, s))),
          );
        });
      }
    }
    override solve(request: InnerSolveRequest) {
      const res = super.solve(request);
      const curvature: CurvatureMemory = this.memory;
      return { ...res, curvature };
    }
  }

  it("applies the inner solver's memory: ∇Φ = ∇ₓf + BᵀH∇_y f (float64 check), no passes", () => {
    const cs = new CurvatureSolver();
    const oracles = createOracles(fixture);
    const ctx = makeContext({ problem: fixture, oracles, solver: cs, ...point });
    const est = new QnboEstimator({ mode: 'reuse-inner' }).estimate(ctx);
    // reference: u = H b with b = y* − t, then (x − z) + Bᵀu
    const b = treeToArray(ctx.inner.y).map((v, i) => v - fixture.t[i]);
    const hb = tf.tidy(() => cs.memory.applyFlat(tf.tensor1d(Float32Array.from(b))).dataSync());
    const btu = matTVec(fixture.b, d, d, hb);
    const expected = Float64Array.from(xData, (v, i) => v - fixture.z[i] + btu[i]);
    expect(relativeError(treeToArray(est.hypergradient), expected)).toBeLessThan(1e-4);
    expect(est.diagnostics.reusedInnerCurvature).toBe(1);
    expect(est.diagnostics.pairsKept).toBe(8);
    expect(est.diagnostics['calls.innerGradY']).toBe(0);
    treeDispose(est.hypergradient);
    ctx.dispose();
    cs.memory.dispose();
  });

  it('raises a ConfigError naming the mode when the solver returns no curvature', () => {
    const ctx = makeContext({ problem: fixture, oracles: createOracles(fixture), solver, ...point });
    const call = () => new QnboEstimator({ mode: 'reuse-inner' }).estimate(ctx);
    expect(call).toThrow(ConfigError);
    expect(call).toThrow(/mode 'reuse-inner' needs an inner solver that returns its curvature pairs/);
    ctx.dispose();
  });
});

describe('options', () => {
  it('bad options raise ConfigError naming the field', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ update: 'dfp' }, 'estimator.options.update'],
      [{ passes: 0 }, 'estimator.options.passes'],
      [{ memory: 1.5 }, 'estimator.options.memory'],
      [{ initialScaling: 'scaled' }, 'estimator.options.initialScaling'],
      [{ probeScale: -1 }, 'estimator.options.probeScale'],
      [{ mode: 'reuse' }, 'estimator.options.mode'],
    ];
    for (const [options, path] of cases) {
      let caught: unknown;
      try {
        registry.create('estimator', 'qnbo', options);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(ConfigError);
      expect((caught as ConfigError).path).toBe(path);
    }
  });
});
