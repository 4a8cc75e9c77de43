import * as tf from '@tensorflow/tfjs-core';
import { Random, matVec, treeDispose } from '@bilevel/core';
import { tensorCountGrowth } from '@bilevel/core/testing';
import { LbfgsMemory, quasiNewtonSolve } from './index';
import {
  logSpaced,
  relativeError,
  residualNorm,
  spectralSystem,
  treeFromArray,
  treeOperator,
  treeToArray,
  twoTensorSpec,
} from './test-utils/dense-operator';

const n = 30;
const spec = twoTensorSpec(n);
const sys = spectralSystem(n, logSpaced(n, 1, 10), 21);
const rng = new Random(22);
const b = Float64Array.from({ length: n }, () => rng.normal());
const exact = matVec(sys.aInv!, n, n, b);

describe('quasiNewtonSolve (qNBO subroutine B)', () => {
  it.each(['bfgs', 'sr1'] as const)(
    "%s, pairs 'steps': reaches A⁻¹b (float64 reference) and reports the true residual",
    (update) => {
      const op = treeOperator(sys, spec);
      const bt = treeFromArray(b, spec);
      const res = quasiNewtonSolve(op.matvec, bt, { update, passes: 40, memory: 40, tolerance: 1e-6 });
      const x = treeToArray(res.x);
      expect(relativeError(x, exact)).toBeLessThan(1e-4);
      // One matvec per pass; the reported residual is ‖A x − b‖ of the returned x (float32 rounding apart).
      expect(op.calls()).toBe(res.iterations);
      expect(res.converged).toBe(true);
      expect(res.iterations).toBeLessThan(40);
      const trueResidual = residualNorm(sys, x, b);
      expect(Math.abs(res.residual - trueResidual)).toBeLessThan(1e-4 * Math.sqrt(n));
      expect(res.pairsKept).toBeGreaterThan(0);
      [bt, res.x].forEach(treeDispose);
      op.dispose();
    },
  );

  it("pairs 'directions': x = H_Q b for the L-BFGS memory of the pairs (u_j, A u_j), u_j = H_j b", () => {
    const op = treeOperator(sys, spec);
    const bt = treeFromArray(b, spec);
    const Q = 3;
    const res = quasiNewtonSolve(op.matvec, bt, { pairs: 'directions', passes: Q, memory: 10 });
    expect(res.iterations).toBe(Q);
    expect(op.calls()).toBe(Q);
    // Rebuild the memory by hand from the same pairs, with the dense operator as the matvec.
    const memory = new LbfgsMemory(
      { names: ['v'], shapes: [[n]], sizes: [n], total: n },
      {
        memory: 10,
        initialScaling: 'auto',
        curvatureEpsilon: 1e-10,
      },
    );
    const bFlat = tf.tensor1d(Float32Array.from(b));
    for (let j = 0; j < Q; j++) {
      tf.tidy(() => {
        const u = memory.applyFlat(bFlat);
        const au = tf.tensor1d(Float32Array.from(matVec(sys.a, n, n, u.dataSync())));
        memory.push(u, au);
      });
    }
    const expected = tf.tidy(() => memory.applyFlat(bFlat).dataSync());
    expect(relativeError(treeToArray(res.x), expected)).toBeLessThan(1e-4);
    memory.dispose();
    bFlat.dispose();
    [bt, res.x].forEach(treeDispose);
    op.dispose();
  });

  it('keeps the tensor count flat and validates its options', () => {
    const op = treeOperator(sys, spec);
    const bt = treeFromArray(b, spec);
    const growth = tensorCountGrowth(() => {
      for (const pairs of ['steps', 'directions'] as const) {
        treeDispose(quasiNewtonSolve(op.matvec, bt, { pairs, update: 'sr1', passes: 5 }).x);
      }
    }, 4);
    expect(growth.every((g) => g === 0)).toBe(true);
    expect(() => quasiNewtonSolve(op.matvec, bt, { passes: 0 })).toThrow(/passes must be an integer >= 1/);
    expect(() => quasiNewtonSolve(op.matvec, bt, { tolerance: -1 })).toThrow(/tolerance must be >= 0/);
    expect(() => quasiNewtonSolve(op.matvec, bt, { memory: 0 })).toThrow(/lbfgs memory: memory/);
    treeDispose(bt);
    op.dispose();
  });
});
