import { ConfigError } from '@bilevel/core';
import { METHOD_RECIPES } from '@bilevel/estimators';
import './plugins';
import { planExperiment } from './config';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

const base = (methods: unknown[]) => ({
  name: 'recipes',
  problem: { name: 'quadratic', options: { dimension: 4 } },
  methods,
  trainer: { steps: 2 },
});

describe('methods given by recipe name', () => {
  it('expands a recipe into its plugins (label defaults to the recipe name)', () => {
    const plan = planExperiment(base([{ recipe: 'soba' }]));
    const soba = METHOD_RECIPES.find((r) => r.name === 'soba')!;
    const m = plan.methods[0];
    expect(m.label).toBe('soba');
    expect(m.pipeline.innerSolver.name).toBe(soba.innerSolver!.name);
    expect(m.pipeline.estimator.name).toBe('fixed-point');
    expect(m.pipeline.estimator.options).toMatchObject(soba.estimator.options);
    expect(m.pipeline.outerOptimizer.options).toMatchObject(soba.outerOptimizer.options);
  });

  it('merges overrides of the same plugin into the recipe and replaces a different plugin', () => {
    const plan = planExperiment(
      base([
        { recipe: 'soba', label: 'soba small', estimator: { options: { stepSize: 0.05 } }, outerOptimizer: 'adam' },
        { recipe: 'stocbio', innerSolver: { name: 'gd', options: { maxIterations: 3 } } },
      ]),
    );
    const [a, b] = plan.methods;
    expect(a.label).toBe('soba small');
    expect(a.pipeline.estimator.options).toMatchObject({ stepSize: 0.05, maxIterations: 1, warmStart: true, systemBatches: 'fresh' });
    expect(a.pipeline.outerOptimizer.name).toBe('adam');
    expect(a.pipeline.outerOptimizer.options).not.toHaveProperty('learningRate', 0.01);
    expect(b.pipeline.innerSolver.options).toMatchObject({ maxIterations: 3, stepSize: 0.1 });
    expect(b.pipeline.estimator.name).toBe('neumann');
  });

  it('gives recipes without an inner solve (bome, saba) a one-step evaluation solver', () => {
    const plan = planExperiment(base([{ recipe: 'saba' }, { recipe: 'bome' }]));
    for (const m of plan.methods) {
      expect(m.pipeline.innerSolver.name).toBe('gd');
      expect(m.pipeline.innerSolver.options.maxIterations).toBe(1);
    }
    expect(plan.methods.map((m) => m.pipeline.estimator.name)).toEqual(['saba', 'bome']);
  });

  it('names an unknown recipe and lists the known ones', () => {
    const e = configError(() => planExperiment(base([{ label: 'x', innerSolver: 'gd', estimator: 'cg' }, { recipe: 'sobba' }])));
    expect(e.path).toBe('methods.1.recipe');
    expect(e.message).toMatch(/unknown recipe 'sobba'/);
    for (const r of METHOD_RECIPES) expect(e.message).toContain(r.name);
    expect(configError(() => planExperiment(base([{ recipe: 3 }]))).path).toBe('methods.0.recipe');
  });

  it('validates overridden options like any other', () => {
    const e = configError(() => planExperiment(base([{ recipe: 'soba', estimator: { options: { stepSize: -1 } } }])));
    expect(e.path).toBe('methods.0.estimator.options.stepSize');
  });
});
