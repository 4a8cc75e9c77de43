/**
 * Small plugins for the CLI's tests, registered on import (the same way a user's plugin module works):
 *
 * - problem `test-quadratic`: core's QuadraticFixture (closed forms in float64) with a metric, the norm of
 *   the true hypergradient ‖∇Φ(x)‖ (main metric, lower is better);
 * - problem `test-data`: the same, but it first checks that its data file exists (DataError otherwise);
 * - inner solver `test-gd`: plain gradient descent y ← y − η∇_y g (optionally sleeping `sleepMs` per solve, to
 *   give subprocess tests time to act mid-run);
 * - estimator `test-closed-form`: `scale`·∇Φ(x) from the closed form (one counted outer-gradient call), or
 *   NaN at step `nanAtStep` to make a run diverge, or an error at step `throwAtStep`.
 *
 * This file is also transpiled to JavaScript by the subprocess tests and loaded with `--plugin`.
 */
import * as fs from 'fs';
import * as tf from '@tensorflow/tfjs-core';
import {
  type BilevelProblem,
  DataError,
  type Estimate,
  type EstimateContext,
  type HypergradientEstimator,
  type InnerResult,
  type InnerSolveRequest,
  type InnerSolver,
  registerEstimator,
  registerInnerSolver,
  registerProblem,
  type TensorTree,
  tidy,
  treeDispose,
  treeMap,
  treeNorm,
  treeZip,
  z,
} from '@bilevel/core';
import { QuadraticFixture } from '@bilevel/core/testing';

export const TestQuadraticOptions = z
  .object({
    dimension: z.number().int().min(1).max(200).default(6).describe('inner and outer dimension'),
    conditionNumber: z.number().min(1).default(4).describe('condition number of A'),
    seed: z.number().int().min(0).default(0).describe('seed of the problem data'),
  })
  .strict();

function quadraticProblem(options: z.output<typeof TestQuadraticOptions>, name: string): BilevelProblem {
  const f = new QuadraticFixture({
    innerDimension: options.dimension,
    conditionNumber: options.conditionNumber,
    seed: options.seed,
  });
  return {
    name,
    mainMetric: 'trueGradientNorm',
    mainMetricHigherIsBetter: false,
    initialX: () => f.initialX(),
    initialY: () => f.initialY(),
    innerLoss: (x, y) => f.innerLoss(x, y),
    outerLoss: (x, y) => f.outerLoss(x, y),
    innerSolution: (x) => f.innerSolution(x),
    hypergradient: (x) => f.hypergradient(x),
    innerLossBatched: (xs, ys) => f.innerLossBatched(xs, ys),
    evaluate: (x) => {
      const g = f.hypergradientArray(x.x.dataSync());
      return { trueGradientNorm: Math.sqrt(g.reduce((s, v) => s + v * v, 0)) };
    },
    dispose: () => f.dispose(),
  };
}

registerProblem(
  'test-quadratic',
  (o: z.output<typeof TestQuadraticOptions>) => quadraticProblem(o, 'test-quadratic'),
  TestQuadraticOptions,
  'test problem: quadratic bilevel problem with closed forms',
);

export const TestDataOptions = TestQuadraticOptions.extend({
  file: z.string().min(1).describe('a data file that must exist'),
}).strict();

registerProblem(
  'test-data',
  (o: z.output<typeof TestDataOptions>) => {
    if (!fs.existsSync(o.file)) throw new DataError(`data file not found: ${o.file}`, o.file);
    return quadraticProblem(o, 'test-data');
  },
  TestDataOptions,
  'test problem that reads a data file',
);

export const TestGdOptions = z
  .object({
    learningRate: z.number().positive().default(0.2).describe('step size η'),
    iterations: z.number().int().positive().default(20).describe('iterations per solve'),
    sleepMs: z.number().min(0).max(1000).optional().describe('milliseconds to sleep per solve (slows a run down)'),
  })
  .strict();

class TestGd implements InnerSolver {
  readonly name = 'test-gd';
  readonly elementwise = true;
  readonly maxIterations: number;
  constructor(private readonly options: z.output<typeof TestGdOptions>) {
    this.maxIterations = options.iterations;
  }

  solve(request: InnerSolveRequest): InnerResult {
    if (this.options.sleepMs) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, this.options.sleepMs);
    const n = request.maxIterations ?? this.maxIterations;
    let y: TensorTree = request.y0;
    let gradientNorm = NaN;
    for (let k = 0; k < n; k++) {
      const prev = y;
      const out = tidy(() => {
        const g = request.oracles.innerGradY(request.x, prev);
        return { y: treeZip(prev, g, (a, b) => tf.sub(a, tf.mul(b, this.options.learningRate))), norm: treeNorm(g).dataSync()[0] };
      });
      y = out.y;
      gradientNorm = out.norm;
      if (prev !== request.y0) treeDispose(prev);
    }
    return { y: y === request.y0 ? treeMap(y, (t) => tf.clone(t)) : y, iterations: n, gradientNorm, converged: false };
  }
}

registerInnerSolver('test-gd', (o: z.output<typeof TestGdOptions>) => new TestGd(o), TestGdOptions, 'test solver: gradient descent');

export const TestClosedFormOptions = z
  .object({
    scale: z.number().positive().max(10).default(1).describe('multiplies the exact hypergradient'),
    nanAtStep: z.number().int().min(0).optional().describe('return NaN at this outer step (from 0)'),
    throwAtStep: z.number().int().min(0).optional().describe('throw an error at this outer step (from 0)'),
  })
  .strict();

class TestClosedForm implements HypergradientEstimator {
  readonly name = 'test-closed-form';
  constructor(private readonly options: z.output<typeof TestClosedFormOptions>) {}

  estimate(context: EstimateContext): Estimate {
    if (this.options.throwAtStep !== undefined && context.step >= this.options.throwAtStep) {
      throw new Error('the test estimator broke on purpose');
    }
    const exact = context.problem.hypergradient;
    if (!exact) throw new Error('test-closed-form needs a problem with a closed-form hypergradient');
    const counted = context.oracles.outerGrads(context.x, context.inner.y);
    counted.value.dispose();
    treeDispose(counted.gradX);
    treeDispose(counted.gradY);
    const g = exact.call(context.problem, context.x);
    const broken = this.options.nanAtStep !== undefined && context.step >= this.options.nanAtStep;
    const out = treeMap(g, (t) => (broken ? tf.mul(t, NaN) : tf.mul(t, this.options.scale)));
    treeDispose(g);
    return { hypergradient: out, diagnostics: { scale: this.options.scale } };
  }
}

registerEstimator(
  'test-closed-form',
  (o: z.output<typeof TestClosedFormOptions>) => new TestClosedForm(o),
  TestClosedFormOptions,
  'test estimator: scaled closed-form hypergradient',
);
