import { type BilevelProblem, createOracles, registry, Trainer } from '@bilevel/core';
import './plugins';

/**
 * Which estimator runs on which problem: every registered estimator against every registered problem (tiny
 * synthetic instances; the stochastic problems also with minibatches), one outer step each. A pair either
 * runs (finite outer loss and hypergradient) or is refused before its first update with an error that names
 * what the problem lacks. The table below is the expected outcome; a new estimator or problem must be added.
 */
const PROBLEMS: Record<string, { name: string; options: Record<string, unknown> }> = {
  quadratic: { name: 'quadratic', options: { dimension: 4 } },
  'hyper-cleaning': { name: 'hyper-cleaning', options: { dataset: 'synthetic', trainSamples: 24, validationSamples: 12, testSamples: 0 } },
  'hyper-cleaning (batches)': {
    name: 'hyper-cleaning',
    options: { dataset: 'synthetic', trainSamples: 24, validationSamples: 12, testSamples: 0, batchSize: 8 },
  },
  'hyperparameter-optimization (batches)': {
    name: 'hyperparameter-optimization',
    options: { dataset: 'synthetic', trainSamples: 24, validationSamples: 12, testSamples: 0, batchSize: 8 },
  },
  'hyper-representation (batches)': {
    name: 'hyper-representation',
    options: { samples: 24, testSamples: 0, inputDimension: 4, embeddingDimension: 3, batchSize: 8 },
  },
  'few-shot': {
    name: 'few-shot',
    options: {
      dataset: 'synthetic',
      imageSize: 16,
      syntheticClasses: 6,
      syntheticImagesPerClass: 4,
      ways: 2,
      shots: 1,
      queries: 1,
      evalEpisodes: 1,
      backbone: { name: 'conv4', options: { filters: 2 } },
    },
  },
};

/** Small budgets (the matrix checks which pairs run, not how well). */
const CHEAP: Record<string, Record<string, unknown>> = {
  es: { directions: 2 },
  qnbo: { passes: 2 },
  cg: { maxIterations: 2 },
  neumann: { terms: 2 },
  'fixed-point': { maxIterations: 2 },
  itd: { steps: 2 },
  f2sa: { steps: 2 },
  bome: { steps: 2 },
};

/** Problems without fixed minibatches (BilevelProblem.fixedBatches): SABA refuses them. */
const WITHOUT_FIXED_BATCHES = new Set(['quadratic', 'hyper-cleaning', 'few-shot']);

/** The expected outcome of a pair: 'runs', or the capability the problem lacks (named in the refusal). */
function expected(estimator: string, problem: string): string {
  if (estimator === 'saba' && WITHOUT_FIXED_BATCHES.has(problem)) return 'fixedBatches';
  return 'runs';
}

/** What a pair does in one outer step: 'runs', 'non-finite', or the refusal's message. */
function outcome(problem: BilevelProblem, estimator: string): string {
  let trainer: Trainer | undefined;
  try {
    trainer = new Trainer({
      problem,
      oracles: createOracles(problem),
      solver: registry.create('innerSolver', 'gd', { maxIterations: 2, stepSize: 0.05 }),
      estimator: registry.create('estimator', estimator, CHEAP[estimator] ?? {}),
      optimizer: registry.create('outerOptimizer', 'gd', { learningRate: 0.01 }),
      seed: 0,
      options: { steps: 1, evalEvery: 0 },
    });
    const ev = trainer.stepOnce();
    return Number.isFinite(ev.outerLoss) && Number.isFinite(ev.hypergradientNorm) ? 'runs' : 'non-finite';
  } catch (e) {
    const err = e as Error & { cause?: Error };
    return `refused: ${err.message}${err.cause ? ` (${err.cause.message})` : ''}`;
  } finally {
    trainer?.dispose();
  }
}

describe('estimator × problem matrix (one outer step per pair)', () => {
  it('covers every registered estimator and problem', () => {
    expect(registry.names('problem').filter((n) => !Object.values(PROBLEMS).some((p) => p.name === n))).toEqual([]);
    expect(registry.names('estimator').length).toBeGreaterThanOrEqual(10);
  });

  it.each(Object.keys(PROBLEMS))('%s', (problem) => {
    const got: Record<string, string> = {};
    const want: Record<string, string> = {};
    // one instance per row (the trainer does not dispose the problem)
    const instance = registry.create('problem', PROBLEMS[problem].name, PROBLEMS[problem].options) as BilevelProblem;
    for (const e of registry.names('estimator')) {
      const o = outcome(instance, e);
      const w = expected(e, problem);
      want[e] = w;
      // a refusal must name the missing capability
      got[e] = o === 'runs' ? 'runs' : o.startsWith('refused') && o.includes(w) ? w : o;
    }
    instance.dispose?.();
    expect(got).toEqual(want);
  });
});
