import * as tf from '@tensorflow/tfjs-core';
import {
  type Batch,
  type BilevelProblem,
  type TensorTree,
  createOracles,
  matTVec,
  matVec,
  treeDispose,
} from '@bilevel/core';
import { QuadraticFixture } from '@bilevel/core/testing';
import { FixedPointEstimator, NeumannEstimator } from './index';
import { makeContext } from './test-utils/context';
import { relativeError, treeToArray } from './test-utils/dense-operator';
import { ClosedFormSolver } from './test-utils/test-solvers';

/**
 * The quadratic fixture whose inner Hessian depends on the minibatch: g(x, y; s) = s·½yᵀAy − yᵀBx, with the
 * scale s carried by the batch (1 without one). ∇²_yy g = sA, ∇²_xy g·v = −Bᵀv.
 */
class ScaledQuadratic implements BilevelProblem {
  readonly name = 'scaled-quadratic';
  constructor(readonly fixture: QuadraticFixture) {}
  initialX(): TensorTree {
    return this.fixture.initialX();
  }
  initialY(): TensorTree {
    return this.fixture.initialY();
  }
  innerLoss(x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar {
    return tf.tidy(() => {
      const quad = tf.add(this.fixture.innerLoss(x, y), this.linearPart(x, y));
      const scaled = batch ? tf.mul(batch.scale, quad) : quad;
      return tf.sub(scaled, this.linearPart(x, y)) as tf.Scalar;
    });
  }
  /** yᵀBx (so that the fixture's g + yᵀBx is the pure quadratic part). */
  private linearPart(x: TensorTree, y: TensorTree): tf.Scalar {
    const { dy, dx } = this.fixture;
    const b = tf.tensor2d(Float32Array.from(this.fixture.b), [dy, dx]);
    return tf.sum(tf.mul(y.y, tf.reshape(tf.matMul(b, tf.reshape(x.x, [dx, 1])), [dy])));
  }
  outerLoss(x: TensorTree, y: TensorTree): tf.Scalar {
    return this.fixture.outerLoss(x, y);
  }
}

const d = 12;
const fixture = new QuadraticFixture({ innerDimension: d, conditionNumber: 3, seed: 9 });
const problem = new ScaledQuadratic(fixture);
const solver = new ClosedFormSolver((x) => fixture.innerSolution(x));
const xData = Float64Array.from({ length: d }, (_, i) => Math.sin(i + 1));
/** The scale of inner batch k. */
const scaleOf = (k: number) => 0.6 + (0.5 * ((k * 7) % 5)) / 4;

/** A memoized schedule of scale batches that records which indices were asked for. */
function schedule() {
  const memo = new Map<number, Batch>();
  const asked: number[] = [];
  const fn = (k: number): Batch => {
    asked.push(k);
    if (!memo.has(k)) memo.set(k, { scale: tf.keep(tf.scalar(scaleOf(k))) });
    return memo.get(k) as Batch;
  };
  return { fn, asked, dispose: () => memo.forEach((b) => tf.dispose(b.scale)) };
}

/** (x − z) + Bᵀu in float64: the implicit hypergradient ∇ₓf − ∇²_xy g·u of this problem. */
function hypergradientOf(u: Float64Array): Float64Array {
  const back = matTVec(fixture.b, d, d, u);
  return Float64Array.from({ length: d }, (_, i) => xData[i] - fixture.z[i] + back[i]);
}

/** A·v in float64, times s. */
const scaledA = (s: number, v: ArrayLike<number>) => matVec(fixture.a, d, d, v).map((w) => s * w);

function run(estimator: FixedPointEstimator | NeumannEstimator, withBatches: boolean) {
  const oracles = createOracles(problem, { secondOrder: 'autodiff' });
  const sched = schedule();
  const x = { x: tf.tensor1d(Float32Array.from(xData)) };
  const y0 = { y: tf.zeros([d]) };
  const ctx = makeContext({
    problem,
    oracles,
    solver,
    x,
    y0,
    innerBatches: withBatches ? sched.fn : undefined,
  });
  const est = estimator.estimate(ctx);
  const values = treeToArray(est.hypergradient);
  const base = ctx.inner.iterations;
  treeDispose(est.hypergradient);
  ctx.dispose();
  treeDispose(x);
  treeDispose(y0);
  sched.dispose();
  return { values, asked: sched.asked, base, diagnostics: est.diagnostics };
}

describe("implicit estimators with a fresh minibatch per Hessian-vector product (systemBatches: 'fresh')", () => {
  afterAll(() => fixture.dispose());
  const ys = fixture.innerSolutionArray(xData);
  const rhs = ys.map((v, i) => v - fixture.t[i]); // ∇_y f(x, y*) = y* − t
  const K = 6;
  const eta = 0.3;

  it('fixed-point: u ← u − η(s_k A u − ∇_y f) with s_k of batch N + 1 + k, as a float64 recursion', () => {
    const got = run(
      new FixedPointEstimator({ maxIterations: K, stepSize: eta, warmStart: false, systemBatches: 'fresh' }),
      true,
    );
    let u: Float64Array = new Float64Array(d);
    for (let k = 0; k < K; k++) {
      const au = scaledA(scaleOf(got.base + 1 + k), u);
      u = u.map((v, i) => v - eta * (au[i] - rhs[i]));
    }
    expect(relativeError(got.values, hypergradientOf(u))).toBeLessThan(1e-5);
    for (let k = 0; k < K; k++) expect(got.asked).toContain(got.base + 1 + k);
    expect(got.diagnostics['calls.hessianVector']).toBe(K);
  });

  it("fixed-point, 'shared': every product on batch N (the recursion with one scale)", () => {
    const got = run(new FixedPointEstimator({ maxIterations: K, stepSize: eta, warmStart: false }), true);
    const s = scaleOf(got.base);
    let u: Float64Array = new Float64Array(d);
    for (let k = 0; k < K; k++) {
      const au = scaledA(s, u);
      u = u.map((v, i) => v - eta * (au[i] - rhs[i]));
    }
    expect(relativeError(got.values, hypergradientOf(u))).toBeLessThan(1e-5);
    expect(got.asked.filter((k) => k > got.base)).toEqual([]);
  });

  it('neumann: u = η Σ_k Π_{j<k}(I − η s_j A) ∇_y f with s_j of batch N + 1 + j (StocBiO)', () => {
    const got = run(new NeumannEstimator({ terms: K, stepSize: eta, systemBatches: 'fresh' }), true);
    let p = Float64Array.from(rhs);
    const u = new Float64Array(d);
    for (let k = 0; k < K; k++) {
      for (let i = 0; i < d; i++) u[i] += eta * p[i];
      const ap = scaledA(scaleOf(got.base + 1 + k), p);
      p = p.map((v, i) => v - eta * ap[i]);
    }
    expect(relativeError(got.values, hypergradientOf(u))).toBeLessThan(1e-5);
    expect(got.diagnostics['calls.hessianVector']).toBe(K);
  });

  it("without minibatches 'fresh' is the deterministic solve", () => {
    for (const make of [
      (b: 'fresh' | 'shared') =>
        new FixedPointEstimator({ maxIterations: K, stepSize: eta, warmStart: false, systemBatches: b }),
      (b: 'fresh' | 'shared') => new NeumannEstimator({ terms: K, stepSize: eta, systemBatches: b }),
    ]) {
      const fresh = run(make('fresh'), false).values;
      const shared = run(make('shared'), false).values;
      expect(relativeError(fresh, shared)).toBeLessThan(1e-6);
    }
  });
});
