import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, createOracles, type InnerSolver, Random, registry, treeStack } from '@bilevel/core';
import { QuadraticFixture, tensorCountGrowth } from '@bilevel/core/testing';
import {
  AdamSolver,
  BfgsSolver,
  GradientDescentSolver,
  LbfgsSolver,
  type QuasiNewtonResult,
  SolverDivergenceError,
  Sr1Solver,
} from './index';
import { LogBarrierProblem, relErr, TargetProblem } from './test-utils/problems';

const NAMES = ['adam', 'bfgs', 'gd', 'lbfgs', 'sr1'];

function configError(fn: () => unknown): ConfigError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  return err as ConfigError;
}

describe('registration and options', () => {
  it('registers every solver by name with validated, documented options', () => {
    const names = registry.names('innerSolver');
    for (const n of NAMES) expect(names).toContain(n);
    for (const entry of registry.list('innerSolver').filter((e) => NAMES.includes(e.name))) {
      expect(entry.description).not.toBe('');
      for (const o of entry.options) expect(o.description ?? '').not.toBe('');
    }
    const lbfgs = registry.create('innerSolver', 'lbfgs', { memory: 4 });
    expect(lbfgs).toBeInstanceOf(LbfgsSolver);
    expect((lbfgs as LbfgsSolver).options).toMatchObject({
      memory: 4,
      lineSearch: 'strong-wolfe',
      initialScaling: 'auto',
    });
    expect(lbfgs.elementwise).toBe(false);
    expect(registry.create('innerSolver', 'gd', {}).elementwise).toBe(true);
  });

  it.each([
    ['gd', { stepSize: 0 }, 'stepSize'],
    ['gd', { stepSize: -1 }, 'stepSize'],
    ['gd', { momentum: 1 }, 'momentum'],
    ['gd', { maxIterations: 0 }, 'maxIterations'],
    ['gd', { checkEvery: 0 }, 'checkEvery'],
    ['adam', { learningRate: 0 }, 'learningRate'],
    ['adam', { beta2: 1 }, 'beta2'],
    ['lbfgs', { memory: 0 }, 'memory'],
    ['lbfgs', { memory: 2.5 }, 'memory'],
    ['lbfgs', { lineSearch: 'exact' }, 'lineSearch'],
    ['lbfgs', { c1: 0.5, c2: 0.4 }, 'c2'],
    ['lbfgs', { stepSize: 0 }, 'stepSize'],
    ['lbfgs', { initialScaling: -2 }, 'initialScaling'],
    ['sr1', { memory: 0 }, 'memory'],
    ['sr1', { skipThreshold: 1 }, 'skipThreshold'],
    ['sr1', { warmupSteps: -1 }, 'warmupSteps'],
    ['sr1', { warmupStepSize: 0 }, 'warmupStepSize'],
    ['bfgs', { maxDimension: 0 }, 'maxDimension'],
    ['bfgs', { tolerance: -1 }, 'tolerance'],
  ])('%s %j fails naming %s', (name, options, field) => {
    const err = configError(() => registry.create('innerSolver', name, options));
    expect(err.path).toBe(`innerSolver.options.${field}`);
    expect(err.message).toContain(`innerSolver.options.${field}`);
  });

  it('refuses unknown options, and validates direct construction too', () => {
    const err = configError(() => registry.create('innerSolver', 'gd', { learningRate: 0.1 }));
    expect(err.message).toMatch(/unknown option\(s\) 'learningRate'/);
    expect(configError(() => new LbfgsSolver({ memory: 0 })).path).toBe('lbfgs.memory');
    expect(configError(() => new GradientDescentSolver({ stepSize: 0 })).message).toMatch(/gd\.stepSize/);
  });

  it('BFGS refuses an inner dimension above maxDimension with a clear error', () => {
    const p = new QuadraticFixture({ innerDimension: 30, seed: 1 });
    const x = p.initialX();
    const y0 = p.initialY();
    const err = configError(() =>
      new BfgsSolver({ maxDimension: 20 }).solve({ oracles: createOracles(p), x, y0 }),
    );
    expect(err.message).toMatch(/inner variable has 30 entries, above maxDimension 20/);
    expect(err.message).toMatch(/use 'lbfgs'/);
    tf.dispose([x.x, y0.y]);
    p.dispose();
  });
});

describe('warm starts and stop rules', () => {
  const p = new QuadraticFixture({ innerDimension: 15, outerDimension: 6, conditionNumber: 20, seed: 2 });
  const x = { x: new Random(3).normalTensor([6]) };
  const yStar = p.innerSolutionArray(x.x.dataSync());
  afterAll(() => {
    p.dispose();
    x.x.dispose();
  });
  const solvers: [string, () => InnerSolver][] = [
    [
      'gd',
      () => new GradientDescentSolver({ stepSize: 0.09, maxIterations: 400, tolerance: 1e-4, checkEvery: 1 }),
    ],
    [
      'adam',
      () => new AdamSolver({ learningRate: 0.01, maxIterations: 400, tolerance: 1e-4, checkEvery: 1 }),
    ],
    ['bfgs', () => new BfgsSolver({ maxIterations: 100, tolerance: 1e-4 })],
    ['lbfgs', () => new LbfgsSolver({ maxIterations: 100, tolerance: 1e-4 })],
    ['sr1', () => new Sr1Solver({ maxIterations: 100, tolerance: 1e-4 })],
  ];

  it.each(solvers)(
    '%s: keeps y0, returns fresh tensors, and stops at once when started at y*',
    (_n, make) => {
      const solver = make();
      const oracles = createOracles(p);
      const y0 = { y: tf.tensor1d(Float32Array.from(yStar)) };
      const res = solver.solve({ oracles, x, y0 });
      expect(res.iterations).toBe(0);
      expect(res.converged).toBe(true);
      expect(res.y.y).not.toBe(y0.y);
      expect(y0.y.isDisposed).toBe(false);
      expect(relErr(res.y.y.dataSync(), yStar)).toBeLessThan(1e-6);
      tf.dispose([res.y.y, y0.y]);
    },
  );

  it.each(solvers)(
    '%s: a warm start near y* needs fewer iterations; maxIterations of the request wins',
    (_n, make) => {
      const solver = make();
      const oracles = createOracles(p);
      const cold = { y: tf.zeros([15]) };
      const r1 = solver.solve({ oracles, x, y0: cold });
      expect(r1.converged).toBe(true);
      const warm = { y: tf.tensor1d(Float32Array.from(yStar, (v) => v * 1.001)) };
      const r2 = solver.solve({ oracles, x, y0: warm });
      expect(r2.converged).toBe(true);
      expect(r2.iterations).toBeLessThan(r1.iterations);
      expect(cold.y.isDisposed || warm.y.isDisposed).toBe(false);
      const r3 = solver.solve({ oracles, x, y0: cold, maxIterations: 2 });
      expect(r3.iterations).toBe(2);
      expect(r3.converged).toBe(false);
      tf.dispose([cold.y, warm.y, r1.y.y, r2.y.y, r3.y.y]);
    },
  );

  it('reads the gradient norm only every checkEvery iterations (GD)', () => {
    const oracles = createOracles(p);
    const y0 = { y: tf.zeros([15]) };
    const every1 = new GradientDescentSolver({
      stepSize: 0.09,
      maxIterations: 400,
      tolerance: 1e-4,
      checkEvery: 1,
    }).solve({ oracles, x, y0 });
    const every7 = new GradientDescentSolver({
      stepSize: 0.09,
      maxIterations: 400,
      tolerance: 1e-4,
      checkEvery: 7,
    }).solve({ oracles, x, y0 });
    expect(every7.iterations % 7).toBe(0);
    expect(every7.iterations).toBeGreaterThanOrEqual(every1.iterations);
    expect(every7.iterations - every1.iterations).toBeLessThan(7);
    tf.dispose([y0.y, every1.y.y, every7.y.y]);
  });
});

describe('iteration observer (quasi-Newton solvers)', () => {
  it('reports the start and every iteration, and stops when it returns true', () => {
    const p = new QuadraticFixture({ innerDimension: 12, outerDimension: 3, conditionNumber: 30, seed: 11 });
    const x = { x: new Random(12).normalTensor([3]) };
    const y0 = { y: tf.zeros([12]) };
    const events: { iteration: number; value: number; gradientNorm: number }[] = [];
    const full = new LbfgsSolver({ maxIterations: 30, tolerance: 1e-5 }).solve({
      oracles: createOracles(p),
      x,
      y0,
      onIteration: (e) => {
        events.push(e);
      },
    });
    expect(events.map((e) => e.iteration)).toEqual(Array.from({ length: full.iterations + 1 }, (_, i) => i));
    // Strong Wolfe steps decrease g, up to the float32 noise band valueNoise·|g| = 1e-6·|g| within which
    // decrease is judged from the slope.
    for (let i = 1; i < events.length; i++) {
      expect(events[i].value).toBeLessThanOrEqual(events[i - 1].value + 1e-6 * Math.abs(events[i - 1].value));
    }
    expect(events[events.length - 1].gradientNorm).toBeCloseTo(full.gradientNorm, 10);
    // Stop at the first value below a target halfway down.
    const target = 0.5 * (events[0].value + events[events.length - 1].value);
    const stopped = new LbfgsSolver({ maxIterations: 30, tolerance: 1e-5 }).solve({
      oracles: createOracles(p),
      x,
      y0,
      onIteration: (e) => e.value <= target,
    });
    expect(stopped.stoppedBy).toBe('observer');
    expect(stopped.iterations).toBe(events.findIndex((e) => e.value <= target));
    expect(stopped.converged).toBe(false);
    tf.dispose([x.x, y0.y, full.y.y, stopped.y.y]);
    p.dispose();
  });
});

describe('minibatch schedules', () => {
  // g(y; t_k) = ½‖y − t_k‖²: a unit gradient step lands exactly on the batch's target.
  const targets = Array.from({ length: 8 }, (_, k) => [k + 1, -k, 0.5 * k]);

  it('GD gives batch k to iteration k', () => {
    const problem = new TargetProblem(targets);
    const oracles = createOracles(problem);
    const x = problem.initialX();
    const y0 = problem.initialY();
    const res = new GradientDescentSolver({ stepSize: 1, maxIterations: 5 }).solve({
      oracles,
      x,
      y0,
      batches: (k) => problem.batches[k],
    });
    expect(problem.seen).toEqual([0, 1, 2, 3, 4]);
    expect(Array.from(res.y.y.dataSync())).toEqual(targets[4]);
    tf.dispose([x.x, y0.y, res.y.y]);
    problem.dispose();
  });

  it('quasi-Newton solvers evaluate every trial of iteration k on batch k, and re-evaluate on batch k + 1', () => {
    const problem = new TargetProblem(targets);
    const oracles = createOracles(problem);
    const x = problem.initialX();
    const y0 = problem.initialY();
    const res = new LbfgsSolver({ lineSearch: 'fixed', maxIterations: 3, initialScaling: 1 }).solve({
      oracles,
      x,
      y0,
      batches: (k) => problem.batches[k],
    });
    // Iteration k: the gradient at y_k on batch k, then the trial y_k + d on batch k.
    expect(problem.seen).toEqual([0, 0, 1, 1, 2, 2]);
    // The pairs compare gradients of one batch: r = ∇g(y₊; t_k) − ∇g(y; t_k) = s exactly (Hessian I).
    for (const pair of res.curvature.pairs)
      expect(relErr(pair.r.dataSync(), pair.s.dataSync())).toBeLessThan(1e-6);
    // With unit Hessian, H = I after a pair: each step lands on the batch's target.
    expect(relErr(res.y.y.dataSync(), targets[2])).toBeLessThan(1e-6);
    tf.dispose([x.x, y0.y, res.y.y]);
    problem.dispose();
  });

  it('with one fixed batch (a task) the gradient is not recomputed between iterations', () => {
    const problem = new TargetProblem(targets);
    const oracles = createOracles(problem);
    const x = problem.initialX();
    const y0 = problem.initialY();
    // Half steps never land on the target, so all three iterations run.
    const res = new LbfgsSolver({ lineSearch: 'fixed', stepSize: 0.5, maxIterations: 3 }).solve({
      oracles,
      x,
      y0,
      batches: () => problem.batches[5],
    });
    expect(problem.seen).toEqual([5, 5, 5, 5]);
    expect(oracles.counts.innerGradY).toBe(4);
    tf.dispose([x.x, y0.y, res.y.y]);
    problem.dispose();
  });
});

describe("qNBO's schedule: P gradient warm-up steps, then quasi-Newton steps", () => {
  it('the warm-up steps are plain gradient steps and give no pairs', () => {
    const p = new QuadraticFixture({ innerDimension: 10, outerDimension: 3, seed: 4 });
    const x = { x: new Random(5).normalTensor([3]) };
    const y0 = { y: tf.zeros([10]) };
    const gd = new GradientDescentSolver({ stepSize: 0.05, maxIterations: 4 }).solve({
      oracles: createOracles(p),
      x,
      y0,
    });
    const warm = new Sr1Solver({
      warmupSteps: 4,
      warmupStepSize: 0.05,
      maxIterations: 4,
      lineSearch: 'fixed',
    }).solve({
      oracles: createOracles(p),
      x,
      y0,
    });
    expect(relErr(warm.y.y.dataSync(), gd.y.y.dataSync())).toBeLessThan(1e-6);
    expect(warm.pairsOffered).toBe(0);
    const more = new Sr1Solver({
      warmupSteps: 4,
      warmupStepSize: 0.05,
      maxIterations: 9,
      lineSearch: 'fixed',
    }).solve({
      oracles: createOracles(p),
      x,
      y0,
    });
    expect(more.iterations).toBe(9);
    expect(more.pairsOffered).toBe(5);
    tf.dispose([x.x, y0.y, gd.y.y, warm.y.y, more.y.y]);
    p.dispose();
  });
});

describe('divergence', () => {
  it('GD with too long a step reports the solver and the iteration', () => {
    const p = new QuadraticFixture({ innerDimension: 8, conditionNumber: 100, seed: 6 });
    const x = { x: tf.ones([8]) };
    const y0 = { y: tf.zeros([8]) };
    let err: unknown;
    try {
      new GradientDescentSolver({ stepSize: 1, maxIterations: 1000, checkEvery: 5 }).solve({
        oracles: createOracles(p),
        x,
        y0,
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SolverDivergenceError);
    const e = err as SolverDivergenceError;
    expect(e.solver).toBe('gd');
    expect(e.iteration % 5).toBe(0);
    expect(e.message).toMatch(
      new RegExp(`inner solver 'gd': gradient norm became (NaN|Infinity) at inner iteration ${e.iteration}`),
    );
    tf.dispose([x.x, y0.y]);
    p.dispose();
  });

  it('a quasi-Newton step into NaN reports the solver and the iteration', () => {
    // ½‖y‖² − Σ log y from y = 0.5 with fixed steps of 10: y₁ = 15.5 is still feasible, the second step
    // crosses 0 and the log of a negative number is NaN.
    const problem = new LogBarrierProblem();
    const x = problem.initialX();
    const y0 = problem.initialY();
    const before = tf.memory().numTensors;
    expect(() =>
      new LbfgsSolver({ lineSearch: 'fixed', stepSize: 10, maxIterations: 5 }).solve({
        oracles: createOracles(problem),
        x,
        y0,
      }),
    ).toThrow(/inner solver 'lbfgs': inner loss became NaN at inner iteration 2/);
    expect(tf.memory().numTensors).toBe(before);
    // A line search instead backs off and solves it (y* = 1).
    const res = new LbfgsSolver({ maxIterations: 50, tolerance: 1e-5 }).solve({
      oracles: createOracles(problem),
      x,
      y0,
    });
    expect(relErr(res.y.y.dataSync(), [1, 1, 1])).toBeLessThan(1e-4);
    tf.dispose([x.x, y0.y, res.y.y]);
  });
});

describe('memory', () => {
  const p = new QuadraticFixture({ innerDimension: 16, outerDimension: 4, conditionNumber: 10, seed: 9 });
  const x = { x: new Random(10).normalTensor([4]) };
  afterAll(() => {
    p.dispose();
    x.x.dispose();
  });

  it.each([
    [
      'gd',
      () => new GradientDescentSolver({ maxIterations: 20, momentum: 0.5, tolerance: 1e-9, checkEvery: 3 }),
    ],
    ['adam', () => new AdamSolver({ maxIterations: 20 })],
    ['bfgs', () => new BfgsSolver({ maxIterations: 20 })],
    ['lbfgs', () => new LbfgsSolver({ maxIterations: 20, memory: 3 })],
    ['sr1', () => new Sr1Solver({ maxIterations: 20, memory: 3, warmupSteps: 2 })],
  ])('%s: the tensor count stays flat over many warm-started solves', (_n, make) => {
    const solver = make();
    const oracles = createOracles(p);
    let y = { y: tf.zeros([16]) };
    const growth = tensorCountGrowth(() => {
      const res = solver.solve({ oracles, x, y0: y });
      tf.dispose(y.y);
      y = { y: tf.add(res.y.y, 0.1) };
      tf.dispose(res.y.y);
      // The result owns its curvature memory: the caller releases it with the result.
      res.curvature?.dispose();
    }, 12);
    expect(growth.slice(1).every((g) => g === growth[1])).toBe(true);
    tf.dispose(y.y);
    if (solver instanceof LbfgsSolver || solver instanceof Sr1Solver || solver instanceof BfgsSolver) {
      solver.releaseCurvature();
    }
    expect(growth[1]).toBeGreaterThanOrEqual(0);
  });

  it('batched solves keep the tensor count flat', () => {
    const solver = new AdamSolver({ maxIterations: 10 });
    const oracles = createOracles(p);
    const xs = treeStack([x, x, x]);
    const ys = { y: tf.zeros([3, 16]) };
    const growth = tensorCountGrowth(
      () => tf.dispose(solver.solveBatched({ oracles, x: xs, y0: ys }).y.y),
      8,
    );
    expect(growth.every((g) => g === 0)).toBe(true);
    tf.dispose([xs.x, ys.y]);
  });

  it('the curvature memory of a solve belongs to its result: later solves leave it intact', () => {
    const solver = new LbfgsSolver({ maxIterations: 10, memory: 4 });
    const oracles = createOracles(p);
    const y0 = { y: tf.zeros([16]) };
    const v = { y: tf.linspace(-1, 1, 16) };
    const first = solver.solve({ oracles, x, y0 }) as QuasiNewtonResult;
    const pair = first.curvature.pairs[0];
    const before = tf.tidy(() => first.curvature.applyInverseHessian(v).y.dataSync());
    const x2 = { x: tf.mul(x.x, 2) };
    const second = solver.solve({ oracles, x: x2, y0 });
    // A later solve neither disposes nor changes the first result's memory.
    expect(pair.s.isDisposed).toBe(false);
    expect(first.curvature.pairs.length).toBe(4);
    const after = tf.tidy(() => first.curvature.applyInverseHessian(v).y.dataSync());
    expect(Array.from(after)).toEqual(Array.from(before));
    expect(second.curvature?.pairs[0].s.isDisposed).toBe(false);
    // The owner releases it; the solver's teardown releases the most recent one if its owner did not.
    first.curvature.dispose();
    expect(pair.s.isDisposed).toBe(true);
    solver.releaseCurvature();
    expect(second.curvature?.pairs.length).toBe(0);
    tf.dispose([y0.y, v.y, x2.x, first.y.y, second.y.y]);
  });
});
