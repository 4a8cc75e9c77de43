/**
 * Leaks: over 1,000 outer steps of the trainer the number of live tensors stays flat for every estimator
 * (and both quasi-Newton updates of qNBO, and qNBO reusing an L-BFGS inner solver's pairs), on the
 * 3-dimensional quadratic problem. Budgets are the smallest that still run every code path once per step
 * (one inner iteration, one CG / Neumann / fixed-point / ITD step, one qNBO pass, one ES direction): each tfjs
 * op costs tens of microseconds under jest, so a step is a few milliseconds whatever the size. The outer
 * optimizer is plain GD; Adam's kept moments are leak-checked over 200 steps in core's pipeline test.
 */
import * as tf from '@tensorflow/tfjs-core';
import { createPipeline, type PipelineSpec } from '@bilevel/core';
import { tensorCountGrowth } from '@bilevel/core/testing';
import '@bilevel/estimators';
import '@bilevel/problems';
import '@bilevel/solvers';

const STEPS = 1000;
const gd = { name: 'gd', options: { stepSize: 0.5, maxIterations: 1 } };

/** [name, plugins, whether the kept state may vary in size from step to step (but not grow)]. */
const cases: [string, Pick<PipelineSpec, 'estimator' | 'innerSolver'>, boolean][] = [
  ['es', { innerSolver: gd, estimator: { name: 'es', options: { directions: 1 } } }, false],
  [
    'qnbo (bfgs)',
    { innerSolver: gd, estimator: { name: 'qnbo', options: { passes: 1, update: 'bfgs' } } },
    false,
  ],
  [
    'qnbo (sr1)',
    { innerSolver: gd, estimator: { name: 'qnbo', options: { passes: 1, update: 'sr1' } } },
    false,
  ],
  // The L-BFGS solver keeps the pairs of its last solve (for the estimator) until its next solve: their
  // number varies with the pairs accepted, so here the count moves within a fixed range.
  [
    'qnbo (reuse-inner, lbfgs)',
    {
      innerSolver: { name: 'lbfgs', options: { maxIterations: 2 } },
      estimator: { name: 'qnbo', options: { mode: 'reuse-inner' } },
    },
    true,
  ],
  ['cg', { innerSolver: gd, estimator: { name: 'cg', options: { maxIterations: 1 } } }, false],
  [
    'neumann',
    { innerSolver: gd, estimator: { name: 'neumann', options: { terms: 1, stepSize: 0.3 } } },
    false,
  ],
  [
    'fixed-point',
    { innerSolver: gd, estimator: { name: 'fixed-point', options: { maxIterations: 1, stepSize: 0.3 } } },
    false,
  ],
  ['itd', { innerSolver: gd, estimator: { name: 'itd', options: { steps: 1, stepSize: 0.3 } } }, false],
  ['exact', { innerSolver: gd, estimator: 'exact' }, false],
];

describe(`the tensor count stays flat over ${STEPS} outer steps`, () => {
  const seconds: Record<string, number> = {};
  afterAll(() => {
    // The measured cost, for the record (no assertion on time).
    console.log(
      Object.entries(seconds)
        .map(([k, v]) => `${k}: ${v.toFixed(2)} s`)
        .join(', '),
    );
  });

  it.each(cases)('%s', (name, plugins, varies) => {
    const start = tf.memory().numTensors;
    const pipeline = createPipeline({
      problem: { name: 'quadratic', options: { dimension: 3, seed: 4 } },
      ...plugins,
      outerOptimizer: { name: 'gd', options: { learningRate: 0.05 } },
      trainer: { steps: STEPS, evalEvery: 0, closedFormDiagnostics: false },
      seed: 1,
    });
    const t0 = performance.now();
    const growth = tensorCountGrowth(() => {
      pipeline.trainer.stepOnce();
    }, STEPS);
    seconds[name] = (performance.now() - t0) / 1000;
    // The first step creates the kept state (a warm start, the solver's last pairs); from the second step on
    // nothing may accumulate.
    const settled = growth.slice(1);
    if (varies) {
      // No growth: the second half stays within the range of steps 2..100.
      const early = growth.slice(1, 100);
      const late = growth.slice(STEPS / 2);
      expect(Math.max(...late)).toBeLessThanOrEqual(Math.max(...early));
      expect(Math.min(...late)).toBeGreaterThanOrEqual(Math.min(...early));
    } else {
      expect(Math.max(...settled) - Math.min(...settled)).toBe(0);
    }
    expect(Math.max(...settled)).toBeLessThanOrEqual(12);
    expect(pipeline.trainer.step).toBe(STEPS);
    expect(Number.isFinite(pipeline.trainer.finalEvaluation().outerLoss)).toBe(true);
    pipeline.dispose();
    expect(tf.memory().numTensors).toBe(start);
  });
});
