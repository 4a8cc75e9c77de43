import { ConfigError } from '@bilevel/core';
import { planExperiment } from './config';
import './plugins';
import { expandSweep } from './sweep';

const base = {
  name: 'grid',
  problem: { name: 'quadratic', options: { dimension: 5 } },
  trainer: { steps: 3 },
  methods: [
    {
      label: 'ESJ',
      innerSolver: 'gd',
      estimator: { name: 'es', options: { directions: 4 } },
      outerOptimizer: 'gd',
      color: '#112233',
    },
    { label: 'CG', innerSolver: 'gd', estimator: 'cg' },
  ],
};

describe('sweep grid', () => {
  it('expands every method over the grid, first key slowest, with labels naming the point', () => {
    const plan = planExperiment({
      ...base,
      sweep: { 'outerOptimizer.options.learningRate': [0.1, 0.3], 'trainer.steps': [2, 4] },
    });
    expect(plan.methods.map((m) => m.label)).toEqual([
      'ESJ · learningRate=0.1 · steps=2',
      'ESJ · learningRate=0.1 · steps=4',
      'ESJ · learningRate=0.3 · steps=2',
      'ESJ · learningRate=0.3 · steps=4',
      'CG · learningRate=0.1 · steps=2',
      'CG · learningRate=0.1 · steps=4',
      'CG · learningRate=0.3 · steps=2',
      'CG · learningRate=0.3 · steps=4',
    ]);
    const lr = (i: number): unknown =>
      (plan.methods[i].pipeline.outerOptimizer as unknown as { options: { learningRate: number } }).options
        .learningRate;
    expect([0, 1, 2, 3].map(lr)).toEqual([0.1, 0.1, 0.3, 0.3]);
    expect(plan.methods.map((m) => m.pipeline.trainer.steps)).toEqual([2, 4, 2, 4, 2, 4, 2, 4]);
    // Other settings of each method are kept; the variants get palette colours.
    expect(
      (plan.methods[0].pipeline.estimator as unknown as { options: { directions: number } }).options
        .directions,
    ).toBe(4);
    expect(plan.methods[0].color).toBeUndefined();
    // The stored config is the expanded one (a resumed experiment re-plans the same methods).
    expect(plan.config.methods).toHaveLength(8);
    expect('sweep' in plan.config).toBe(false);
  });

  it('sweeps whole plugin choices', () => {
    const plan = planExperiment({
      ...base,
      methods: [base.methods[1]],
      sweep: { estimator: ['cg', { name: 'neumann', options: { terms: 3 } }] },
    });
    expect(plan.methods.map((m) => [m.label, (m.pipeline.estimator as { name: string }).name])).toEqual([
      ['CG · estimator=cg', 'cg'],
      ['CG · estimator=neumann', 'neumann'],
    ]);
  });

  it('a bad grid value is reported at the method as written, with the grid point', () => {
    const run = (): unknown =>
      planExperiment({ ...base, sweep: { 'outerOptimizer.options.learningRate': [0.1, -2] } });
    expect(run).toThrow(ConfigError);
    expect(run).toThrow(
      /^methods\.0\.outerOptimizer\.options\.learningRate: .*\(at sweep point learningRate=-2\)$/,
    );
    try {
      run();
    } catch (e) {
      expect((e as ConfigError).path).toBe('methods.0.outerOptimizer.options.learningRate');
    }
  });

  it.each([
    [[0.1], /sweep: must be a mapping/],
    [{}, /sweep: must be a mapping/],
    [
      { 'problem.options.dimension': [2] },
      /sweep\.problem\.options\.dimension: must start with one of innerSolver, estimator/,
    ],
    [{ 'estimator.maxIterations': [2] }, /sweep\.estimator\.maxIterations: use estimator \(whole choices\)/],
    [{ trainer: [2] }, /sweep\.trainer: name a field of trainer/],
    [{ 'trainer.steps': [] }, /sweep\.trainer\.steps: must be a non-empty list/],
    [{ 'trainer.steps': 5 }, /sweep\.trainer\.steps: must be a non-empty list/],
    [{ 'trainer..steps': [1] }, /a path of field names/],
  ])('malformed sweep %j is a ConfigError naming the key', (sweep, message) => {
    expect(() => planExperiment({ ...base, sweep })).toThrow(message);
  });

  it('refuses a grid of more than 1000 points', () => {
    const many = Array.from({ length: 40 }, (_, i) => i + 1);
    expect(() =>
      expandSweep({ ...base, sweep: { 'trainer.steps': many, 'trainer.evalEvery': many } }),
    ).toThrow(/1600 grid points; at most 1000/);
  });

  it('a config without a sweep is planned as before', () => {
    expect(planExperiment(base).methods.map((m) => m.label)).toEqual(['ESJ', 'CG']);
  });
});
