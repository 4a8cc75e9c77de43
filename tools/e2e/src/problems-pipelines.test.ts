/**
 * The problem zoo through whole pipelines: every problem of @bilevel/problems with the solvers and estimators
 * of the other packages, checked against closed forms (quadratic, linear hyper-representation), against the
 * exact dense estimator (hyperparameter optimization) and by the cleaning it achieves (hyper-cleaning).
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  createOracles,
  createPipeline,
  Random,
  registry,
  tidy,
  treeDot,
  treeNorm,
  type PipelineSpec,
  type StepEvent,
} from '@bilevel/core';
import { tensorCountGrowth, TemporaryFolders } from '@bilevel/core/testing';
import '@bilevel/estimators';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import '@bilevel/problems';
import '@bilevel/solvers';

const temps = new TemporaryFolders();
afterAll(() => temps.removeAll());

function run(spec: PipelineSpec): { events: StepEvent[]; final: Record<string, number> } {
  const pipeline = createPipeline(spec);
  const events: StepEvent[] = [];
  const steps = pipeline.spec.trainer.steps;
  for (let i = 0; i < steps; i++) events.push(pipeline.trainer.stepOnce());
  const final = pipeline.trainer.finalEvaluation().metrics;
  pipeline.dispose();
  return { events, final };
}

describe('quadratic toy through pipelines', () => {
  for (const estimator of ['cg', 'qnbo', 'exact']) {
    it(`${estimator}: estimates agree with the closed-form ∇Φ and x converges to x* = (A⁻¹ + I)⁻¹z₀`, () => {
      const { events, final } = run({
        problem: { name: 'quadratic', options: { dimension: 8, seed: 1 } },
        innerSolver: { name: 'lbfgs', options: { maxIterations: 30, tolerance: 1e-6 } },
        estimator: { name: estimator, options: estimator === 'qnbo' ? { passes: 20 } : {} },
        outerOptimizer: { name: 'gd', options: { learningRate: 0.5 } },
        trainer: { steps: 30, evalEvery: 1 },
      });
      // Near x* the true ∇Φ is as small as float32 rounding; compare while it is 1000× above that.
      const scale = events[0].metrics.hypergradientNorm;
      const informative = events.filter((e) => e.metrics.hypergradientNorm > 1e-3 * scale);
      expect(informative.length).toBeGreaterThanOrEqual(5);
      for (const e of informative) expect(e.metrics.hypergradientCosine).toBeGreaterThan(0.9999);
      expect(final.xRelativeError).toBeLessThan(1e-5);
    });
  }

  it('es: the evolution-strategies estimate correlates with the closed form and x approaches x*', () => {
    const { events, final } = run({
      problem: { name: 'quadratic', options: { dimension: 8, seed: 1 } },
      innerSolver: { name: 'gd', options: { maxIterations: 60, stepSize: 0.5 } },
      estimator: { name: 'es', options: { directions: 16, smoothing: 0.01, antithetic: true } },
      outerOptimizer: { name: 'gd', options: { learningRate: 0.2 } },
      trainer: { steps: 40, evalEvery: 1 },
    });
    // The ES noise does not vanish at x* (∇_y f ≠ 0 there), so x settles in a noise ball: compare the
    // estimates while ∇Φ is large, and require a clear approach to x*.
    const early = events.slice(0, 5).map((e) => e.metrics.hypergradientCosine);
    expect(early.reduce((a, b) => a + b, 0) / early.length).toBeGreaterThan(0.7);
    expect(final.xRelativeError).toBeLessThan(0.3);
  });
});

describe('linear hyper-representation through pipelines', () => {
  it('cg and qnbo estimates agree with the closed-form hypergradient', () => {
    for (const estimator of ['cg', 'qnbo']) {
      const { events } = run({
        problem: {
          name: 'hyper-representation',
          options: { samples: 100, testSamples: 50, inputDimension: 6, embeddingDimension: 10, seed: 2 },
        },
        innerSolver: { name: 'lbfgs', options: { maxIterations: 60, tolerance: 1e-5 } },
        estimator: {
          name: estimator,
          options: estimator === 'qnbo' ? { passes: 30 } : { maxIterations: 30 },
        },
        outerOptimizer: { name: 'adam', options: { learningRate: 0.01 } },
        trainer: { steps: 5, evalEvery: 0 },
      });
      for (const e of events) expect(e.metrics.hypergradientCosine).toBeGreaterThan(0.99);
    }
  });
});

describe('hyperparameter optimization', () => {
  it('AID-CG matches the exact dense estimator on a small instance', () => {
    const problem = registry.create('problem', 'hyperparameter-optimization', {
      dataset: 'synthetic',
      trainSamples: 60,
      validationSamples: 40,
      testSamples: 0,
      initialLogPenalty: -1,
      synthetic: { features: 5, classes: 3 },
    });
    const oracles = createOracles(problem);
    const solver = registry.create('innerSolver', 'lbfgs', { maxIterations: 200, tolerance: 1e-6 });
    const cg = registry.create('estimator', 'cg', { maxIterations: 50, tolerance: 1e-8 });
    const exact = registry.create('estimator', 'exact', {});
    const rng = new Random(3);
    const cosine = tidy(() => {
      const x = problem.initialX(rng);
      const y0 = problem.initialY(rng, x);
      const inner = solver.solve({ oracles, x, y0 });
      const context = { problem, oracles, x, inner, solver, y0, rng, step: 0 };
      const a = cg.estimate(context).hypergradient;
      const b = exact.estimate(context).hypergradient;
      return treeDot(a, b).dataSync()[0] / (treeNorm(a).dataSync()[0] * treeNorm(b).dataSync()[0]);
    });
    expect(cosine).toBeGreaterThan(0.999);
    cg.dispose?.();
    exact.dispose?.();
    problem.dispose?.();
  });

  it('lowers the validation loss with qNBO on synthetic data', () => {
    const { events } = run({
      problem: {
        name: 'hyperparameter-optimization',
        options: {
          dataset: 'synthetic',
          trainSamples: 80,
          validationSamples: 80,
          testSamples: 80,
          synthetic: { features: 20, classes: 3, separation: 2 },
        },
      },
      innerSolver: { name: 'lbfgs', options: { maxIterations: 30 } },
      estimator: 'qnbo',
      outerOptimizer: { name: 'adam', options: { learningRate: 0.1 } },
      trainer: { steps: 20, evalEvery: 0 },
    });
    expect(events[events.length - 1].outerLoss).toBeLessThan(events[0].outerLoss);
  });
});

describe('hyperparameter optimization on sparse LIBSVM files', () => {
  it('AID-CG runs on the sparse product and lowers the validation loss', () => {
    const dir = temps.make('bilevel-e2e-libsvm-');
    const rng = new Random(4);
    // Two classes told apart by features 1–5 out of 200; every sample has 8 nonzeros.
    const lines = (count: number) =>
      Array.from({ length: count }, () => {
        const label = rng.uniform() < 0.5 ? -1 : 1;
        const idx = new Set<number>();
        while (idx.size < 8) idx.add(1 + rng.int(200));
        return [
          label,
          ...[...idx].sort((a, b) => a - b).map((j) => `${j}:${(j <= 5 ? label : 0) + rng.normal() * 0.5}`),
        ].join(' ');
      }).join('\n');
    writeFileSync(join(dir, 'train.svm'), lines(120));
    writeFileSync(join(dir, 'valid.svm'), lines(80));
    const { events } = run({
      problem: {
        name: 'hyperparameter-optimization',
        options: {
          dataset: 'libsvm',
          libsvm: { train: join(dir, 'train.svm'), validation: join(dir, 'valid.svm') },
        },
      },
      innerSolver: { name: 'lbfgs', options: { maxIterations: 30 } },
      estimator: { name: 'cg', options: { maxIterations: 20 } },
      outerOptimizer: { name: 'adam', options: { learningRate: 0.2 } },
      trainer: { steps: 15, evalEvery: 0 },
    });
    expect(events[events.length - 1].outerLoss).toBeLessThan(events[0].outerLoss);
  });
});

describe('hyper-cleaning on synthetic data', () => {
  const problem = {
    name: 'hyper-cleaning',
    options: {
      dataset: 'synthetic',
      trainSamples: 200,
      validationSamples: 100,
      testSamples: 200,
      corruptionRate: 0.5,
      synthetic: { features: 10, classes: 3, separation: 5 },
    },
  };

  it('AID-CG flags the corrupted samples and beats training on the noisy labels', () => {
    const { events, final } = run({
      problem,
      innerSolver: { name: 'lbfgs', options: { maxIterations: 30, tolerance: 1e-5 } },
      estimator: { name: 'cg', options: { maxIterations: 20 } },
      outerOptimizer: { name: 'adam', options: { learningRate: 0.3 } },
      trainer: { steps: 30, evalEvery: 1 },
    });
    expect(final.cleanF1).toBeGreaterThan(0.85);
    expect(final.meanWeightClean).toBeGreaterThan(final.meanWeightCorrupted);
    // The first step reports x₀ (every weight 0.5): the model trained on all noisy labels.
    expect(final.testAccuracy).toBeGreaterThan(events[0].metrics.testAccuracy);
  });

  it('ESJ-S on minibatches runs with a flat tensor count', () => {
    const pipeline = createPipeline({
      problem: { ...problem, options: { ...problem.options, batchSize: 32 } },
      innerSolver: { name: 'gd', options: { maxIterations: 10, stepSize: 0.1 } },
      estimator: { name: 'es', options: { directions: 4 } },
      outerOptimizer: { name: 'adam', options: { learningRate: 0.1 } },
      trainer: { steps: 100, evalEvery: 0 },
    });
    const growth = tensorCountGrowth(() => {
      const e = pipeline.trainer.stepOnce();
      expect(Number.isFinite(e.outerLoss) && Number.isFinite(e.hypergradientNorm)).toBe(true);
    }, 6);
    expect(growth.slice(1).every((g) => g === growth[1])).toBe(true);
    pipeline.dispose();
    expect(tf.memory().numTensors).toBeGreaterThanOrEqual(0);
  });
});
