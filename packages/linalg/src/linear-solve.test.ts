import * as tf from '@tensorflow/tfjs-core';
import { Random, type TensorTree, matVec, treeDispose } from '@bilevel/core';
import { tensorCountGrowth } from '@bilevel/core/testing';
import {
  DimensionLimitError,
  choleskyFactor,
  choleskySolve,
  conjugateGradient,
  denseSolve,
  euclideanNorm,
  fixedPointIteration,
  luSolve,
  neumannSeries,
  pseudoInverseSolve,
  setFlatVectorPlacement,
  solveDenseSystem,
  symmetricEigen,
  vectorNorm,
} from './index';
import {
  logSpaced,
  norm,
  powerOfRelaxation,
  relativeError,
  residualNorm,
  spectralSystem,
  treeFromArray,
  treeOperator,
  treeToArray,
  twoTensorSpec,
} from './test-utils/dense-operator';

const n = 40;
const spec = twoTensorSpec(n);

function rhs(seed: number): Float64Array {
  const rng = new Random(seed);
  return Float64Array.from({ length: n }, () => rng.normal());
}

// The iterative solvers' vector algebra runs on host arrays on the CPU backends and on tensors elsewhere:
// every test of them runs both ways.
describe.each(['host', 'tensor'] as const)('with %s vectors', (placement) => {
  beforeAll(() => setFlatVectorPlacement(placement));
  afterAll(() => setFlatVectorPlacement('auto'));

  describe('conjugateGradient', () => {
    const sys = spectralSystem(n, logSpaced(n, 1, 100), 1);
    const op = treeOperator(sys, spec);
    const b = rhs(2);
    const exact = matVec(sys.aInv!, n, n, b);
    afterAll(() => op.dispose());

    it('solves an SPD system (κ = 100) to the float64 reference A⁻¹b on a two-tensor tree', () => {
      const bt = treeFromArray(b, spec);
      const res = conjugateGradient(op.matvec, bt, { maxIterations: 200, tolerance: 1e-6 });
      const x = treeToArray(res.x);
      expect(relativeError(x, exact)).toBeLessThan(1e-4);
      expect(res.converged).toBe(true);
      // Theory: ‖r_k‖/‖b‖ ≤ 2κ((√κ − 1)/(√κ + 1))^k, so tolerance 1e-6 at κ = 100 needs at most
      // ln(2e8)/ln(11/9) ≈ 95 steps (float32 rounding makes it exceed the exact-arithmetic bound d = 40).
      expect(res.iterations).toBeLessThanOrEqual(Math.ceil(Math.log((2 * 100) / 1e-6) / Math.log(11 / 9)));
      // the reported residual is the recursive one: it must agree with the true residual of the returned x
      const trueResidual = residualNorm(sys, x, b);
      expect(res.residual).toBeLessThanOrEqual(1e-6 * norm(b) * 1.0001);
      expect(Math.abs(trueResidual - res.residual)).toBeLessThan(1e-4 * norm(b));
      expect(res.relativeResidual).toBeCloseTo(res.residual / norm(b), 10);
      expect(res.x.a.shape).toEqual([2, 3]);
      treeDispose(bt);
      treeDispose(res.x);
    });

    it('a warm start at the solution needs no step; the iteration budget caps the work', () => {
      const bt = treeFromArray(b, spec);
      const init = treeFromArray(exact, spec);
      const before = op.calls();
      const warm = conjugateGradient(op.matvec, bt, { init, tolerance: 1e-5 });
      expect(warm.iterations).toBe(0);
      expect(op.calls() - before).toBe(1); // the initial residual b − A x₀
      const capped = conjugateGradient(op.matvec, bt, { maxIterations: 3, tolerance: 0 });
      expect(capped.iterations).toBe(3);
      expect(capped.converged).toBe(false);
      // three steps cannot resolve 40 log-spaced eigenvalues on [1, 100]: still far from the solution
      expect(relativeError(treeToArray(capped.x), exact)).toBeGreaterThan(1e-2);
      [bt, init, warm.x, capped.x].forEach(treeDispose);
    });

    it('stops without converging when A is indefinite along a search direction', () => {
      const eig = logSpaced(n, 1, 10).map((l, i) => (i % 2 === 0 ? -l : l));
      const bad = spectralSystem(n, eig, 3);
      const badOp = treeOperator(bad, spec);
      const bt = treeFromArray(b, spec);
      const res = conjugateGradient(badOp.matvec, bt, { maxIterations: 100 });
      expect(res.converged).toBe(false);
      treeDispose(bt);
      treeDispose(res.x);
      badOp.dispose();
    });

    it('refuses a warm start of another shape and a non-finite right-hand side', () => {
      const bt = treeFromArray(b, spec);
      const wrong = { a: tf.zeros([6]), b: tf.zeros([n - 6]) };
      expect(() => conjugateGradient(op.matvec, bt, { init: wrong })).toThrow(/initial guess.*a: \[6\]/);
      const nan = treeFromArray(
        Array.from(b, (v, i) => (i === 7 ? NaN : v)),
        spec,
      );
      expect(() => conjugateGradient(op.matvec, nan)).toThrow(/right-hand side b has 1 non-finite entry/);
      [bt, wrong, nan].forEach(treeDispose);
    });

    it('on a singular system with a noisy operator, steps past the noise floor do not hurt (best iterate kept)', () => {
      // Like a softmax-bias null direction with finite-difference products: A has a zero eigenvalue, b lies in
      // its range, products carry relative noise 1e-5. Reference: the minimum-norm solution A⁺b.
      const eig = logSpaced(n, 1, 100).map((v, i) => (i === 0 ? 0 : v));
      const sing = spectralSystem(n, eig, 22);
      const pinv = spectralSystem(
        n,
        eig.map((v) => (v === 0 ? 0 : 1 / v)),
        22,
      ).a;
      const singOp = treeOperator(sing, spec);
      const inRange = matVec(sing.a, n, n, rhs(23));
      const reference = matVec(pinv, n, n, inRange);
      const noise = new Random(21);
      const noisy = (v: TensorTree) =>
        tf.tidy(() =>
          treeFromArray(
            treeToArray(singOp.matvec(v)).map((u) => u * (1 + 1e-5 * noise.normal())),
            spec,
          ),
        );
      const bt = treeFromArray(inRange, spec);
      const errs = [60, 300].map((K) => {
        const res = conjugateGradient(noisy, bt, { maxIterations: K, tolerance: 0 });
        const e = relativeError(treeToArray(res.x), reference);
        treeDispose(res.x);
        return e;
      });
      expect(errs[0]).toBeLessThan(1e-3);
      expect(errs[1]).toBeLessThan(1e-3);
      treeDispose(bt);
      singOp.dispose();
    });

    it('keeps the tensor count flat', () => {
      const bt = treeFromArray(b, spec);
      const growth = tensorCountGrowth(
        () => treeDispose(conjugateGradient(op.matvec, bt, { maxIterations: 10 }).x),
        5,
      );
      expect(growth.every((g) => g === 0)).toBe(true);
      treeDispose(bt);
    });
  });

  describe('neumannSeries and fixedPointIteration', () => {
    const sys = spectralSystem(n, logSpaced(n, 1, 10), 4);
    const op = treeOperator(sys, spec);
    const b = rhs(5);
    const eta = 0.1;
    const exact = matVec(sys.aInv!, n, n, b);
    afterAll(() => op.dispose());

    /** η Σ_{k<K} (I − ηA)^k b in float64. */
    function partialSum(K: number): Float64Array {
      const out = new Float64Array(n);
      for (let k = 0; k < K; k++) {
        const p = powerOfRelaxation(sys, eta, k, b);
        for (let i = 0; i < n; i++) out[i] += eta * p[i];
      }
      return out;
    }

    it('Neumann: K terms equal the float64 truncated series and report the exact remainder', () => {
      const bt = treeFromArray(b, spec);
      const res = neumannSeries(op.matvec, bt, { terms: 7, stepSize: eta });
      expect(res.iterations).toBe(7);
      expect(relativeError(treeToArray(res.x), partialSum(7))).toBeLessThan(1e-5);
      const remainder = norm(powerOfRelaxation(sys, eta, 7, b));
      expect(res.residual).toBeCloseTo(remainder, 4);
      expect(residualNorm(sys, treeToArray(res.x), b)).toBeCloseTo(res.residual, 3);
      treeDispose(bt);
      treeDispose(res.x);
    });

    it('Neumann converges to A⁻¹b as K grows, and stops early at the tolerance', () => {
      const bt = treeFromArray(b, spec);
      const errs = [10, 50, 250].map((K) => {
        const r = neumannSeries(op.matvec, bt, { terms: K, stepSize: eta });
        const e = relativeError(treeToArray(r.x), exact);
        treeDispose(r.x);
        return e;
      });
      expect(errs[1]).toBeLessThan(errs[0]);
      expect(errs[2]).toBeLessThan(errs[1]);
      expect(errs[2]).toBeLessThan(1e-5);
      const early = neumannSeries(op.matvec, bt, { terms: 1000, stepSize: eta, tolerance: 1e-3 });
      expect(early.converged).toBe(true);
      expect(early.iterations).toBeLessThan(1000);
      expect(early.relativeResidual).toBeLessThanOrEqual(1e-3);
      // 0.9^k·‖b‖ bounds the remainder; it first drops below 1e-3 no later than k = 66
      expect(early.iterations).toBeLessThanOrEqual(66);
      treeDispose(bt);
      treeDispose(early.x);
    });

    it('fixed point from zero equals the Neumann series with as many terms', () => {
      const bt = treeFromArray(b, spec);
      const fp = fixedPointIteration(op.matvec, bt, { maxIterations: 12, stepSize: eta });
      expect(relativeError(treeToArray(fp.x), partialSum(12))).toBeLessThan(1e-5);
      expect(fp.iterations).toBe(12);
      expect(fp.residual).toBeCloseTo(residualNorm(sys, treeToArray(fp.x), b), 3);
      treeDispose(bt);
      treeDispose(fp.x);
    });

    it('fixed point from a warm start x₀ contracts the error: x_K − x* = (I − ηA)^K (x₀ − x*)', () => {
      const bt = treeFromArray(b, spec);
      const rng = new Random(9);
      const x0 = Float64Array.from(exact, (v) => v + 0.5 * rng.normal());
      const init = treeFromArray(x0, spec);
      const fp = fixedPointIteration(op.matvec, bt, { init, maxIterations: 15, stepSize: eta });
      const err0 = Float64Array.from(x0, (v, i) => v - exact[i]);
      const errK = powerOfRelaxation(sys, eta, 15, err0);
      const expected = Float64Array.from(exact, (v, i) => v + errK[i]);
      expect(relativeError(treeToArray(fp.x), expected)).toBeLessThan(1e-5);
      [bt, init, fp.x].forEach(treeDispose);
    });

    it('validates its options', () => {
      const bt = treeFromArray(b, spec);
      expect(() => neumannSeries(op.matvec, bt, { terms: 0 })).toThrow(/terms must be an integer >= 1/);
      expect(() => neumannSeries(op.matvec, bt, { stepSize: -1 })).toThrow(/stepSize must be > 0/);
      expect(() => fixedPointIteration(op.matvec, bt, { maxIterations: 1.5 })).toThrow(/maxIterations/);
      treeDispose(bt);
    });
  });
});

describe('dense solve', () => {
  it('Cholesky and LU agree with the float64 inverse (1e-10)', () => {
    const m = 12;
    const sys = spectralSystem(m, logSpaced(m, 0.5, 50), 6);
    const rng = new Random(7);
    const bb = Float64Array.from({ length: m }, () => rng.normal());
    const exact = matVec(sys.aInv!, m, m, bb);
    const l = choleskyFactor(sys.a, m);
    expect(l).not.toBeNull();
    expect(relativeError(choleskySolve(l!, m, bb), exact)).toBeLessThan(1e-10);
    expect(relativeError(luSolve(sys.a, m, bb), exact)).toBeLessThan(1e-10);
    // an indefinite matrix has no Cholesky factor: solveDenseSystem uses the eigendecomposition
    const ind = spectralSystem(
      m,
      logSpaced(m, 1, 5).map((v, i) => (i < 3 ? -v : v)),
      8,
    );
    expect(choleskyFactor(ind.a, m)).toBeNull();
    const sol = solveDenseSystem(ind.a, m, bb);
    expect(sol.factorization).toBe('eigen');
    expect(sol.rank).toBe(m);
    expect(relativeError(sol.x, matVec(ind.aInv!, m, m, bb))).toBeLessThan(1e-10);
    const nonSymmetric = solveDenseSystem(ind.a, m, bb, false);
    expect(nonSymmetric.factorization).toBe('lu');
    expect(relativeError(nonSymmetric.x, matVec(ind.aInv!, m, m, bb))).toBeLessThan(1e-10);
    // LU names a singular matrix as such
    const sing = spectralSystem(
      m,
      logSpaced(m, 1, 5).map((v, i) => (i === 4 ? 0 : v)),
      10,
    );
    expect(() => luSolve(sing.a, m, bb)).toThrow(/singular/);
  });

  it('symmetricEigen recovers the spectrum and an orthonormal basis (float64)', () => {
    const m = 15;
    const eig = logSpaced(m, 0.1, 30).map((v, i) => (i % 4 === 0 ? -v : v));
    const sys = spectralSystem(m, eig, 14);
    const { values, vectors } = symmetricEigen(sys.a, m);
    const sorted = (v: ArrayLike<number>) => Array.from(v).sort((p, q) => p - q);
    sorted(values).forEach((v, i) => expect(v).toBeCloseTo(sorted(eig)[i], 10));
    // A v_k = λ_k v_k
    for (let k = 0; k < m; k++) {
      const vk = Array.from({ length: m }, (_, i) => vectors[i * m + k]);
      const av = matVec(sys.a, m, m, vk);
      expect(
        relativeError(
          av,
          vk.map((v) => v * values[k]),
        ),
      ).toBeLessThan(1e-10);
    }
  });

  it('a numerically singular symmetric system gets the minimum-norm solution A⁺b', () => {
    // rank-deficient: two zero eigenvalues plus float32-sized noise on them
    const m = 12;
    const eig = logSpaced(m, 1, 20).map((v, i) => (i < 2 ? 1e-9 * (i + 1) : v));
    const sys = spectralSystem(m, eig, 15);
    const pinv = spectralSystem(
      m,
      eig.map((v) => (v < 1e-6 ? 0 : 1 / v)),
      15,
    ).a;
    const rng = new Random(16);
    const bb = Float64Array.from({ length: m }, () => rng.normal());
    const sol = solveDenseSystem(sys.a, m, bb);
    expect(sol.factorization).toBe('eigen');
    expect(sol.rank).toBe(m - 2);
    expect(relativeError(sol.x, matVec(pinv, m, m, bb))).toBeLessThan(1e-8);
    expect(relativeError(pseudoInverseSolve(sys.a, m, bb, 1e-6).x, matVec(pinv, m, m, bb))).toBeLessThan(
      1e-8,
    );
  });

  it('denseSolve assembles A from d matvecs and matches A⁻¹b', () => {
    const sys = spectralSystem(n, logSpaced(n, 1, 100), 11);
    const op = treeOperator(sys, spec);
    const b = rhs(12);
    const bt = treeFromArray(b, spec);
    const before = op.calls();
    const res = denseSolve(op.matvec, bt);
    expect(op.calls() - before).toBe(n);
    expect(res.iterations).toBe(n);
    expect(relativeError(treeToArray(res.x), matVec(sys.aInv!, n, n, b))).toBeLessThan(1e-5);
    expect(res.relativeResidual).toBeLessThan(1e-6);
    treeDispose(bt);
    treeDispose(res.x);
    op.dispose();
  });

  it('refuses systems above the size limit with an error naming the option', () => {
    const sys = spectralSystem(n, logSpaced(n, 1, 2), 13);
    const op = treeOperator(sys, spec);
    const bt = treeFromArray(rhs(1), spec);
    const call = () =>
      denseSolve(op.matvec, bt, { maxDimension: 10, sizeOptionName: 'estimator.options.maxDimension' });
    expect(call).toThrow(DimensionLimitError);
    expect(call).toThrow(/40 unknowns, above the limit estimator\.options\.maxDimension = 10/);
    expect(op.calls()).toBe(0);
    treeDispose(bt);
    op.dispose();
  });
});

describe('euclideanNorm', () => {
  it('is √Σv² over all of v or along an axis, against the float64 sum', () => {
    const rng = new Random(5);
    const values = Float64Array.from({ length: 12 }, () => rng.normal());
    const rowNorm = (r: number) => Math.sqrt(values.slice(4 * r, 4 * r + 4).reduce((a, v) => a + v * v, 0));
    const whole = Math.sqrt(values.reduce((a, v) => a + v * v, 0));
    const m = tf.tensor2d(Float32Array.from(values), [3, 4]);
    const rows = euclideanNorm(m, 1, true);
    expect(rows.shape).toEqual([3, 1]);
    Array.from(rows.dataSync()).forEach((v, r) => expect(v).toBeCloseTo(rowNorm(r), 5));
    tf.tidy(() => {
      expect(vectorNorm(tf.reshape(m, [12]))).toBeCloseTo(whole, 5);
      expect(vectorNorm(tf.tensor1d([3, 4]))).toBe(5);
    });
    tf.dispose([m, rows]);
  });
});
