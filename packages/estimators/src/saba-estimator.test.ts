import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  GradientDescentOptimizer,
  Trainer,
  type TrainerState,
  createOracles,
  registry,
} from '@bilevel/core';
import { QuadraticFixture } from '@bilevel/core/testing';
import './index';
import { SabaEstimator, type SabaState } from './saba-estimator';
import { FiniteSumQuadratic } from './test-utils/finite-sum-quadratic';
import { ClosedFormSolver } from './test-utils/test-solvers';

const X0 = [0.5, -1, 0.25];
const Y0 = [1, 0.5, -0.5, 2];

function makeTrainer(
  problem: FiniteSumQuadratic,
  options: Record<string, unknown>,
  learningRate: number,
  seed = 3,
): { trainer: Trainer; estimator: SabaEstimator } {
  const estimator = registry.create('estimator', 'saba', options) as SabaEstimator;
  const trainer = new Trainer({
    problem,
    oracles: createOracles(problem),
    // never called: SABA makes its own inner iterates
    solver: new ClosedFormSolver(() => problem.initialY()),
    estimator,
    optimizer: new GradientDescentOptimizer({ learningRate }),
    seed,
    options: { steps: 100_000, evalEvery: 0 },
  });
  return { trainer, estimator };
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number =>
  Math.max(...Array.from(a, (v, k) => Math.abs(v - b[k])));

describe('saba estimator', () => {
  // dx = 3, dy = 4; 12 inner samples in 6 fixed batches, 8 outer samples in 4 batches
  const problem = new FiniteSumQuadratic(3, 4, 12, 8, 2, X0, Y0, 11);
  afterAll(() => problem.dispose());

  it('its first two steps match a float64 hand computation (memories filled by a first pass)', () => {
    const rho = 0.2;
    const rhoV = 0.15;
    const gamma = 0.1;
    const { trainer, estimator } = makeTrainer(problem, { stepSize: rho, systemStepSize: rhoV, initialization: 'full-pass' }, gamma);
    const e1 = trainer.stepOnce();
    const e2 = trainer.stepOnce();
    const i = e2.diagnostics.innerBatch;
    const j = e2.diagnostics.outerBatch;
    expect(Number.isInteger(i) && i >= 0 && i < 6).toBe(true);
    expect(Number.isInteger(j) && j >= 0 && j < 4).toBe(true);
    expect(e1.diagnostics.innerBatch).toBeGreaterThanOrEqual(0);

    const { dx, dy } = problem;
    const mean = (v: Float64Array, size: number, from: number, to: number) => problem.meanOf(v, size, from, to);
    const A = mean(problem.a, dy * dy, 0, 12);
    const C = mean(problem.c, dy * dx, 0, 12);
    const zBar = mean(problem.z, dx, 0, 8);
    const tBar = mean(problem.t, dy, 0, 8);
    const Ai = mean(problem.a, dy * dy, 2 * i, 2 * i + 2);
    const Ci = mean(problem.c, dy * dx, 2 * i, 2 * i + 2);
    const zj = mean(problem.z, dx, 2 * j, 2 * j + 2);
    const tj = mean(problem.t, dy, 2 * j, 2 * j + 2);
    const mv = (m: Float64Array, v: ArrayLike<number>, rows: number, cols: number) =>
      Float64Array.from({ length: rows }, (_, r) => {
        let s = 0;
        for (let c = 0; c < cols; c++) s += m[r * cols + c] * v[c];
        return s;
      });
    const mtv = (m: Float64Array, v: ArrayLike<number>, rows: number, cols: number) =>
      Float64Array.from({ length: cols }, (_, c) => {
        let s = 0;
        for (let r = 0; r < rows; r++) s += m[r * cols + c] * v[r];
        return s;
      });
    const comb = (...terms: [number, ArrayLike<number>][]) =>
      Float64Array.from({ length: terms[0][1].length }, (_, k) => terms.reduce((s, [c, v]) => s + c * v[k], 0));
    const x0 = Float64Array.from(X0);
    const y0 = Float64Array.from(Y0);
    // ∇_y g_b = A_b y − C_b x; ∇²_yy g_b v = A_b v; ∇²ₓᵧ g_b v = −C_bᵀ v; ∇_y f_b = y − t_b; ∇ₓ f_b = x − z_b.
    // Step 1: the memories hold every batch's value at (x₀, y₀, v₀ = 0), so each SAGA direction is the full one.
    const dy1 = comb([1, mv(A, y0, dy, dy)], [-1, mv(C, x0, dy, dx)]);
    const dv1 = comb([1, y0], [-1, tBar]);
    const dx1 = comb([1, x0], [-1, zBar]);
    const y1 = comb([1, y0], [-rho, dy1]);
    const v1 = comb([-rhoV, dv1]);
    const x1 = comb([1, x0], [-gamma, dx1]);
    // Step 2 on inner batch i and outer batch j: fresh value − memory of the batch + average of the memories.
    const dy2 = comb(
      [1, mv(Ai, y1, dy, dy)],
      [-1, mv(Ci, x1, dy, dx)],
      [-1, mv(Ai, y0, dy, dy)],
      [1, mv(Ci, x0, dy, dx)],
      [1, dy1],
    );
    // Hessian and mixed products: memories 0 (v₀ = 0)
    const dv2 = comb([1, mv(Ai, v1, dy, dy)], [1, y1], [-1, tj], [-1, y0], [1, tj], [1, y0], [-1, tBar]);
    const dx2 = comb([-1, mtv(Ci, v1, dy, dx)], [1, x1], [-1, zj], [-1, x0], [1, zj], [1, x0], [-1, zBar]);
    const y2 = comb([1, y1], [-rho, dy2]);
    const v2 = comb([1, v1], [-rhoV, dv2]);
    const x2 = comb([1, x1], [-gamma, dx2]);

    expect(maxAbsDiff(trainer.x.x.dataSync(), x2)).toBeLessThan(1e-5);
    expect(maxAbsDiff(trainer.y.y.dataSync(), y2)).toBeLessThan(1e-5);
    const state = estimator.getState() as SabaState;
    expect(maxAbsDiff(state.v as Float32Array, v2)).toBeLessThan(1e-5);
    // the step moved something (the test is not comparing zeros)
    expect(maxAbsDiff(x2, x0)).toBeGreaterThan(1e-2);
    expect(maxAbsDiff(v2, v1)).toBeGreaterThan(1e-2);
    trainer.dispose();
  });

  it('with zero memories (the default) its first step is a plain stochastic step on the drawn batches', () => {
    const { trainer } = makeTrainer(problem, { stepSize: 0.2 }, 0.1);
    const e = trainer.stepOnce();
    const i = e.diagnostics.innerBatch;
    const j = e.diagnostics.outerBatch;
    const { dx, dy } = problem;
    const Ai = problem.meanOf(problem.a, dy * dy, 2 * i, 2 * i + 2);
    const Ci = problem.meanOf(problem.c, dy * dx, 2 * i, 2 * i + 2);
    const zj = problem.meanOf(problem.z, dx, 2 * j, 2 * j + 2);
    // y₁ = y₀ − ρ(A_i y₀ − C_i x₀), x₁ = x₀ − γ(x₀ − z_j) (the mixed product is 0 at v₀ = 0)
    const y1 = Y0.map((v, p) => {
      let g = 0;
      for (let q = 0; q < dy; q++) g += Ai[p * dy + q] * Y0[q];
      for (let q = 0; q < dx; q++) g -= Ci[p * dx + q] * X0[q];
      return v - 0.2 * g;
    });
    const x1 = X0.map((v, p) => v - 0.1 * (v - zj[p]));
    expect(maxAbsDiff(trainer.y.y.dataSync(), y1)).toBeLessThan(1e-5);
    expect(maxAbsDiff(trainer.x.x.dataSync(), x1)).toBeLessThan(1e-5);
    trainer.dispose();
  });

  it('converges to the closed-form x* with constant steps (variance reduced), tensor count flat', () => {
    const { trainer } = makeTrainer(problem, { stepSize: 0.25 }, 0.3);
    const xStar = problem.optimalXArray();
    const rel = () => maxAbsDiff(trainer.x.x.dataSync(), xStar) / Math.max(...xStar.map(Math.abs));
    const start = rel();
    const counts: number[] = [];
    for (let k = 0; k < 300; k++) {
      trainer.stepOnce();
      if (k >= 2) counts.push(tf.memory().numTensors);
    }
    // stated tolerance: max-norm error below 1e-3 of ‖x*‖∞ (float32 arithmetic; SAGA removes the sampling noise)
    expect(start).toBeGreaterThan(0.1);
    expect(rel()).toBeLessThan(1e-3);
    expect(new Set(counts).size).toBe(1);
    trainer.dispose();
  });

  it('a checkpointed run resumes exactly: v and the SAGA memories travel in the estimator state', () => {
    const opts = { stepSize: 0.15 };
    const a = makeTrainer(problem, opts, 0.1).trainer;
    for (let k = 0; k < 4; k++) a.stepOnce();
    // getState copies: the later steps of a do not touch it
    const copy = a.getState();
    for (let k = 0; k < 4; k++) a.stepOnce();
    const b = makeTrainer(problem, opts, 0.1).trainer;
    b.setState(copy);
    for (let k = 0; k < 4; k++) b.stepOnce();
    const xa = Array.from(a.x.x.dataSync());
    expect(Array.from(b.x.x.dataSync())).toEqual(xa);
    expect(Array.from(b.y.y.dataSync())).toEqual(Array.from(a.y.y.dataSync()));
    // through JSON (typed arrays become plain number arrays) it resumes exactly too
    const c = makeTrainer(problem, opts, 0.1).trainer;
    c.setState(JSON.parse(JSON.stringify(copy)) as TrainerState);
    for (let k = 0; k < 4; k++) c.stepOnce();
    expect(Array.from(c.x.x.dataSync())).toEqual(xa);
    // without the estimator state (fresh memories filled at the resumed iterate) the run differs
    const d = makeTrainer(problem, opts, 0.1).trainer;
    d.setState({ ...copy, estimator: undefined });
    for (let k = 0; k < 4; k++) d.stepOnce();
    expect(Array.from(d.x.x.dataSync())).not.toEqual(xa);
    [a, b, c, d].forEach((t) => t.dispose());
  });

  it('refuses a problem without fixed batches, naming what is missing', () => {
    const fixture = new QuadraticFixture({ innerDimension: 3, conditionNumber: 2, seed: 1 });
    const trainer = new Trainer({
      problem: fixture,
      oracles: createOracles(fixture),
      solver: new ClosedFormSolver((x) => fixture.innerSolution(x)),
      estimator: registry.create('estimator', 'saba', {}),
      optimizer: new GradientDescentOptimizer({ learningRate: 0.1 }),
      options: { steps: 1, evalEvery: 0 },
    });
    expect(() => trainer.stepOnce()).toThrow(/fixedBatches/);
    trainer.dispose();
    fixture.dispose();
  });

  it('refuses a memory larger than maxMemoryFloats, naming the size', () => {
    // 6 × (2·4 + 3) + 4 × (4 + 3) = 94 floats
    expect(SabaEstimator.memoryFloats(6, 4, 4, 3)).toBe(94);
    const { trainer } = makeTrainer(problem, { maxMemoryFloats: 93 }, 0.1);
    expect(() => trainer.stepOnce()).toThrow(/94 floats.*6 inner batches.*maxMemoryFloats = 93/);
    trainer.dispose();
    const ok = makeTrainer(problem, { maxMemoryFloats: 94 }, 0.1).trainer;
    expect(() => ok.stepOnce()).not.toThrow();
    ok.dispose();
  });

  it('bad options name the field', () => {
    expect(() => registry.create('estimator', 'saba', { stepSize: 0 })).toThrow(ConfigError);
    expect(() => registry.create('estimator', 'saba', { initialization: 'x' })).toThrow(/estimator\.options\.initialization/);
  });
});
