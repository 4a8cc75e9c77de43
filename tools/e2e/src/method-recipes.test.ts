import { createPipeline, registry } from '@bilevel/core';
import { METHOD_RECIPES } from '@bilevel/estimators';
import '@bilevel/problems';
import '@bilevel/solvers';

describe('method recipes (bilevel list methods)', () => {
  it('name registered plugins with options their schemas accept', () => {
    expect(METHOD_RECIPES.map((r) => r.name)).toEqual([
      'soba',
      'saba',
      'amigo',
      'stocbio',
      'f2sa',
      'bome',
      'esj',
      'qnbo',
      'aid-cg',
    ]);
    for (const r of METHOD_RECIPES) {
      if (r.innerSolver)
        registry.validate('innerSolver', r.innerSolver.name, r.innerSolver.options, `${r.name}.innerSolver`);
      registry.validate('estimator', r.estimator.name, r.estimator.options, `${r.name}.estimator`);
      registry.validate(
        'outerOptimizer',
        r.outerOptimizer.name,
        r.outerOptimizer.options,
        `${r.name}.outerOptimizer`,
      );
    }
  });

  // SABA keeps its memory per fixed minibatch: it runs on a problem that has them (the quadratic has none).
  const problemFor = (name: string) =>
    name === 'saba'
      ? {
          name: 'hyperparameter-optimization',
          options: {
            dataset: 'synthetic',
            trainSamples: 40,
            validationSamples: 30,
            testSamples: 0,
            batchSize: 10,
            synthetic: { features: 5, classes: 3 },
          },
        }
      : { name: 'quadratic', options: { dimension: 5 } };

  it('each runs two outer steps on the quadratic problem (SABA: on a problem with fixed minibatches)', () => {
    for (const r of METHOD_RECIPES) {
      const pipeline = createPipeline({
        problem: problemFor(r.name),
        innerSolver: r.innerSolver ?? { name: 'gd' },
        estimator: r.estimator,
        outerOptimizer: r.outerOptimizer,
        trainer: { steps: 2, evalEvery: 0 },
      });
      for (let k = 0; k < 2; k++) {
        const ev = pipeline.trainer.stepOnce();
        expect([r.name, Number.isFinite(ev.hypergradientNorm)]).toEqual([r.name, true]);
      }
      pipeline.dispose();
    }
  });
});
