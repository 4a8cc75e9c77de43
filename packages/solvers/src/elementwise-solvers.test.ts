import * as tf from '@tensorflow/tfjs-core';
import { createOracles, matVec, Random, treeStack } from '@bilevel/core';
import { QuadraticFixture } from '@bilevel/core/testing';
import { AdamSolver, GradientDescentSolver } from './index';
import { type SolverResult } from './elementwise';
import { norm, relErr } from './test-utils/problems';

const d = 12;
const dx = 5;
const p = new QuadraticFixture({ innerDimension: d, outerDimension: dx, conditionNumber: 10, seed: 7 });
const rng = new Random(8);
const xArr = rng.normalArray(dx);
const y0Arr = rng.normalArray(d);
afterAll(() => p.dispose());

/** ∇_y g = Ay − Bx in float64. */
function grad(x: ArrayLike<number>, y: ArrayLike<number>): Float64Array {
  const ay = matVec(p.a, d, d, y);
  const bx = matVec(p.b, d, dx, x);
  return ay.map((v, i) => v - bx[i]);
}

/** Float64 reference iterations of heavy-ball / Nesterov GD. */
function referenceGd(steps: number, alpha: number, beta: number, nesterov: boolean): Float64Array {
  const y = Float64Array.from(y0Arr);
  const v = new Float64Array(d);
  for (let k = 0; k < steps; k++) {
    const g = grad(xArr, y);
    for (let i = 0; i < d; i++) {
      v[i] = beta * v[i] + g[i];
      y[i] -= alpha * (nesterov ? g[i] + beta * v[i] : v[i]);
    }
  }
  return y;
}

/** Float64 reference iterations of Adam. */
function referenceAdam(steps: number, lr: number, b1: number, b2: number, eps: number): Float64Array {
  const y = Float64Array.from(y0Arr);
  const m = new Float64Array(d);
  const v = new Float64Array(d);
  for (let k = 1; k <= steps; k++) {
    const g = grad(xArr, y);
    for (let i = 0; i < d; i++) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      y[i] -= (lr * (m[i] / (1 - b1 ** k))) / (Math.sqrt(v[i] / (1 - b2 ** k)) + eps);
    }
  }
  return y;
}

function solveOnce(solver: GradientDescentSolver | AdamSolver): { y: Float32Array; res: SolverResult } {
  const x = { x: tf.tensor1d(xArr) };
  const y0 = { y: tf.tensor1d(y0Arr) };
  const res = solver.solve({ oracles: createOracles(p), x, y0 });
  const y = res.y.y.dataSync() as Float32Array;
  tf.dispose([x.x, y0.y, res.y.y]);
  return { y, res };
}

describe('GD and Adam follow their update rules (float64 reference iterations)', () => {
  it.each([
    ['plain', 0, false],
    ['heavy ball', 0.8, false],
    ['Nesterov', 0.8, true],
  ] as const)('GD, %s', (_name, momentum, nesterov) => {
    const { y, res } = solveOnce(
      new GradientDescentSolver({ stepSize: 0.05, momentum, nesterov, maxIterations: 25 }),
    );
    expect(res.iterations).toBe(25);
    expect(relErr(y, referenceGd(25, 0.05, momentum, nesterov))).toBeLessThan(1e-5);
    // The reported norm is that of the last gradient computed (at y₂₄).
    expect(res.gradientNorm / norm(grad(xArr, referenceGd(24, 0.05, momentum, nesterov)))).toBeCloseTo(1, 4);
  });

  it('Adam with bias correction', () => {
    const { y, res } = solveOnce(
      new AdamSolver({ learningRate: 0.05, beta1: 0.8, beta2: 0.95, maxIterations: 25 }),
    );
    expect(res.iterations).toBe(25);
    expect(relErr(y, referenceAdam(25, 0.05, 0.8, 0.95, 1e-8))).toBeLessThan(1e-5);
  });

  it('GD converges to y* = A⁻¹Bx with a tolerance', () => {
    const { y, res } = solveOnce(
      new GradientDescentSolver({ stepSize: 2 / 11, maxIterations: 2000, tolerance: 1e-5, checkEvery: 5 }),
    );
    expect(res.converged).toBe(true);
    expect(res.stoppedBy).toBe('tolerance');
    expect(res.iterations % 5).toBe(0);
    expect(relErr(y, p.innerSolutionArray(xArr))).toBeLessThan(1e-5);
  });
});

describe('solveBatched: B stacked problems in one solve', () => {
  const B = 3;
  const xs = Array.from({ length: B }, () => tf.tensor1d(rng.normalArray(dx)));
  const ys = Array.from({ length: B }, () => tf.tensor1d(rng.normalArray(d)));
  afterAll(() => tf.dispose([...xs, ...ys]));

  it.each([
    [
      'gd (Nesterov)',
      () => new GradientDescentSolver({ stepSize: 0.05, momentum: 0.5, nesterov: true, maxIterations: 20 }),
    ],
    ['adam', () => new AdamSolver({ learningRate: 0.05, maxIterations: 20 })],
  ])('%s matches B separate solves', (_name, make) => {
    const solver = make();
    const oracles = createOracles(p);
    const separate = xs.map((x, b) => solver.solve({ oracles, x: { x }, y0: { y: ys[b] } }));
    const perSolve = oracles.counts.innerGradY;
    oracles.resetCounts();
    const xStack = treeStack(xs.map((x) => ({ x })));
    const yStack = treeStack(ys.map((y) => ({ y })));
    const batched = solver.solveBatched({ oracles, x: xStack, y0: yStack });
    expect(batched.y.y.shape).toEqual([B, d]);
    // The batched solve is charged one gradient per member per iteration, like the separate solves.
    expect(oracles.counts.innerGradY).toBe(perSolve);
    const rows = tf.unstack(batched.y.y);
    rows.forEach((row, b) => expect(relErr(row.dataSync(), separate[b].y.y.dataSync())).toBeLessThan(1e-5));
    // Its gradient norm is the largest member's.
    const largest = Math.max(...separate.map((r) => r.gradientNorm));
    expect(batched.gradientNorm / largest).toBeCloseTo(1, 4);
    tf.dispose([...rows, batched.y.y, xStack.x, yStack.y, ...separate.map((r) => r.y.y)]);
  });

  it('refuses a problem without innerLossBatched', () => {
    const oracles = createOracles({
      name: 'plain',
      initialX: () => ({ x: tf.zeros([1]) }),
      initialY: () => ({ y: tf.zeros([1]) }),
      innerLoss: (_x, y) => tf.sum(tf.square(y.y)) as tf.Scalar,
      outerLoss: (_x, y) => tf.sum(y.y) as tf.Scalar,
    });
    const y0 = { y: tf.zeros([2, 1]) };
    const x = { x: tf.zeros([2, 1]) };
    expect(() => new GradientDescentSolver().solveBatched({ oracles, x, y0 })).toThrow(
      /inner solver 'gd': solveBatched needs a problem with innerLossBatched \('plain' has none\)/,
    );
    tf.dispose([x.x, y0.y]);
  });
});
