/**
 * Every registered estimator × every registered problem (small options, plus a stochastic variant where a
 * problem has minibatches) runs 3 outer steps through createPipeline, under both second-order strategies,
 * with finite results and a flat tensor count.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  type PipelineSpec,
  SECOND_ORDER_STRATEGIES,
  createPipeline,
  registry,
  treeIsFinite,
} from '@bilevel/core';
import '@bilevel/estimators';
import '@bilevel/problems';
import '@bilevel/solvers';

/** Small instances of every registered problem (a new problem must be added here). */
const problems: Record<string, Record<string, unknown>[]> = {
  quadratic: [{ dimension: 8 }],
  'hyper-representation': [
    { variant: 'linear', samples: 40, testSamples: 0, inputDimension: 6, embeddingDimension: 4 },
    {
      variant: 'linear',
      samples: 40,
      testSamples: 0,
      inputDimension: 6,
      embeddingDimension: 4,
      batchSize: 10,
    },
  ],
  'hyperparameter-optimization': [
    {
      dataset: 'synthetic',
      trainSamples: 40,
      validationSamples: 30,
      testSamples: 0,
      synthetic: { features: 5, classes: 3 },
    },
    {
      dataset: 'synthetic',
      trainSamples: 40,
      validationSamples: 30,
      testSamples: 0,
      batchSize: 10,
      synthetic: { features: 5, classes: 3 },
    },
  ],
  'hyper-cleaning': [
    {
      dataset: 'synthetic',
      trainSamples: 30,
      validationSamples: 30,
      testSamples: 0,
      synthetic: { features: 5, classes: 3 },
    },
  ],
};

/** Small settings of every registered estimator; `solver` overrides the inner solver. */
const estimators: Record<string, { options: Record<string, unknown>; solver?: string }[]> = {
  es: [
    { options: { directions: 3 } },
    { options: { directions: 2, antithetic: true, distribution: 'per-tensor-unit', batchedSolves: false } },
  ],
  qnbo: [
    { options: { passes: 3 } },
    { options: { update: 'sr1', passes: 3, passesGrowth: 1 } },
    { options: { mode: 'reuse-inner' }, solver: 'lbfgs' },
  ],
  cg: [{ options: { maxIterations: 5 } }],
  neumann: [
    { options: { terms: 5, stepSize: 0.05 } },
    { options: { terms: 3, stepSize: 0.05, systemBatches: 'fresh' } },
  ],
  'fixed-point': [
    { options: { maxIterations: 5, stepSize: 0.05 } },
    { options: { maxIterations: 3, stepSize: 0.05, systemBatches: 'fresh' } },
  ],
  itd: [{ options: { steps: 5, stepSize: 0.05 } }],
  exact: [{ options: {} }],
  f2sa: [{ options: { steps: 3, stepSize: 0.05, multiplierGrowth: 1 } }],
  bome: [{ options: { steps: 3, stepSize: 0.05, yStepSize: 0.05 } }],
  saba: [{ options: { stepSize: 0.05 } }],
};

/**
 * Estimators that need a problem capability: on problem variants without it they must refuse, naming it
 * (SABA's SAGA memory is kept per fixed minibatch, so it runs where a problem has `batchSize`).
 */
const requirements: Record<
  string,
  { capability: string; has: (problemOptions: Record<string, unknown>) => boolean }
> = {
  saba: { capability: 'fixedBatches', has: (o) => o.batchSize !== undefined },
};

const solvers: Record<string, Record<string, unknown>> = {
  gd: { stepSize: 0.05, maxIterations: 10 },
  lbfgs: { maxIterations: 10 },
};

it('the tables cover every registered problem and estimator', () => {
  expect(registry.names('problem').filter((n) => !(n in problems))).toEqual([]);
  expect(registry.names('estimator').filter((n) => !(n in estimators))).toEqual([]);
});

const cases: [string, string, string, number, number][] = [];
const refusals: [string, string, number, string][] = [];
for (const problem of Object.keys(problems)) {
  for (const estimator of Object.keys(estimators)) {
    const needs = requirements[estimator];
    problems[problem].forEach((options, p) => {
      if (needs && !needs.has(options)) {
        refusals.push([estimator, problem, p, needs.capability]);
        return;
      }
      for (const strategy of SECOND_ORDER_STRATEGIES) {
        estimators[estimator].forEach((_e, e) => cases.push([estimator, problem, strategy, p, e]));
      }
    });
  }
}

it('every estimator runs on at least one problem variant', () => {
  expect(Object.keys(estimators).filter((name) => !cases.some(([e]) => e === name))).toEqual([]);
});

it.each(refusals)(
  '%s on %s (problem variant %i) is refused, naming %s',
  (estimator, problem, p, capability) => {
    const pipeline = createPipeline({
      problem: { name: problem, options: problems[problem][p] },
      innerSolver: { name: 'gd', options: solvers.gd },
      estimator: { name: estimator, options: estimators[estimator][0].options },
      outerOptimizer: { name: 'gd', options: { learningRate: 0.01 } },
      trainer: { steps: 1, evalEvery: 0 },
      seed: 3,
    });
    try {
      expect(() => pipeline.trainer.stepOnce()).toThrow(new RegExp(capability));
    } finally {
      pipeline.dispose();
    }
  },
);

it.each(cases)(
  '%s on %s (%s, problem variant %i, estimator variant %i): 3 steps, finite, flat tensor count',
  (estimator, problem, strategy, p, e) => {
    const est = estimators[estimator][e];
    const solver = est.solver ?? 'gd';
    const spec: PipelineSpec = {
      problem: { name: problem, options: problems[problem][p] },
      innerSolver: { name: solver, options: solvers[solver] },
      estimator: { name: estimator, options: est.options },
      outerOptimizer: { name: 'gd', options: { learningRate: 0.01 } },
      oracles: { secondOrder: strategy as 'autodiff' | 'finite-difference' },
      trainer: { steps: 3, evalEvery: 0 },
      seed: 3,
    };
    const pipeline = createPipeline(spec);
    try {
      const counts: number[] = [];
      for (let k = 0; k < 3; k++) {
        const ev = pipeline.trainer.stepOnce();
        expect(Number.isFinite(ev.outerLoss)).toBe(true);
        expect(Number.isFinite(ev.hypergradientNorm)).toBe(true);
        expect(ev.skipped).toBe(false);
        expect(ev.diagnostics['calls.total']).toBeGreaterThan(0);
        // a quasi-Newton solver keeps its last curvature memory (a varying number of pairs) until its next solve
        (pipeline.solver as { releaseCurvature?: () => void }).releaseCurvature?.();
        counts.push(tf.memory().numTensors);
      }
      expect(treeIsFinite(pipeline.trainer.x)).toBe(true);
      // the first step may create kept state (warm starts, solver memories); nothing may grow afterwards
      expect(counts[2]).toBe(counts[1]);
    } finally {
      pipeline.dispose();
    }
  },
);
