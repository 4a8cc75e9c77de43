import * as fs from 'fs';
import * as path from 'path';
import { ConfigError } from '@bilevel/core';
import './test-utils/test-plugins';
import { applyOverrides, ExperimentConfigSchema, loadExperiment, planExperiment, readConfigFile } from './config';
import { makeTempDir, tinyConfig } from './test-utils/helpers';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('planExperiment', () => {
  it('resolves every method into a full pipeline spec with defaults', () => {
    const plan = planExperiment(tinyConfig());
    expect(plan.methods.map((m) => m.label)).toEqual(['exact', 'half <step>']);
    const [a, b] = plan.methods.map((m) => m.pipeline);
    expect(a.innerSolver).toEqual({ name: 'test-gd', options: { learningRate: 0.2, iterations: 20 } });
    expect(b.innerSolver).toEqual({ name: 'test-gd', options: { learningRate: 0.2, iterations: 10 } });
    expect(b.estimator).toEqual({ name: 'test-closed-form', options: { scale: 0.5 } });
    expect(a.problem).toEqual({ name: 'test-quadratic', options: { dimension: 5, conditionNumber: 4, seed: 0 } });
    expect(a.trainer.steps).toBe(12);
    expect(a.trainer.evalEvery).toBe(4);
    expect(a.trainer.warmStart).toBe(true);
    expect(a.oracles).toEqual({ secondOrder: 'autodiff', finiteDifferenceStep: 1e-3 });
  });

  it('lets a method override the top-level trainer and oracle settings field by field', () => {
    const cfg = tinyConfig();
    (cfg.methods as Record<string, unknown>[])[1].trainer = { steps: 3 };
    (cfg.methods as Record<string, unknown>[])[1].oracles = { secondOrder: 'finite-difference' };
    const plan = planExperiment(cfg);
    expect(plan.methods[0].pipeline.trainer.steps).toBe(12);
    expect(plan.methods[1].pipeline.trainer.steps).toBe(3);
    expect(plan.methods[1].pipeline.trainer.evalEvery).toBe(4);
    expect(plan.methods[1].pipeline.oracles.secondOrder).toBe('finite-difference');
    expect(plan.methods[0].pipeline.oracles.secondOrder).toBe('autodiff');
  });

  it('applies --steps to every method (also method-level steps), --seed and --out', () => {
    const cfg = tinyConfig();
    (cfg.methods as Record<string, unknown>[])[1].trainer = { steps: 3 };
    const plan = planExperiment(cfg, { overrides: { steps: 2, seeds: [4, 7], out: 'somewhere', backend: 'cpu' } });
    expect(plan.methods.map((m) => m.pipeline.trainer.steps)).toEqual([2, 2]);
    expect(plan.config.seeds).toEqual([4, 7]);
    expect(plan.config.output.dir).toBe('somewhere');
    expect(plan.config.backend).toBe('cpu');
  });

  it('names an unknown plugin and lists the registered ones', () => {
    const cfg = tinyConfig();
    (cfg.methods as Record<string, unknown>[])[1].estimator = 'no-such-estimator';
    const e = configError(() => planExperiment(cfg));
    expect(e.path).toBe('methods.1.estimator.name');
    expect(e.message).toMatch(/unknown estimator 'no-such-estimator'/);
    expect(e.message).toMatch(/test-closed-form/);
  });

  it('names a plugin option of the wrong type or out of range', () => {
    const cfg = tinyConfig();
    (cfg.methods as Record<string, unknown>[])[0].estimator = { name: 'test-closed-form', options: { scale: 100 } };
    const e = configError(() => planExperiment(cfg));
    expect(e.path).toBe('methods.0.estimator.options.scale');
    expect(e.message).toMatch(/methods\.0\.estimator\.options\.scale: .*less than or equal to 10.*got 100/);

    const cfg2 = tinyConfig({ problem: { name: 'test-quadratic', options: { dimension: 'five' } } });
    const e2 = configError(() => planExperiment(cfg2));
    expect(e2.message).toMatch(/problem\.options\.dimension: Expected number, received string/);
  });

  it('names wrong fields of the config itself', () => {
    expect(configError(() => planExperiment(tinyConfig({ trainer: { steps: 'ten' } }))).message).toMatch(
      /trainer\.steps: Expected number, received string/,
    );
    expect(configError(() => planExperiment(tinyConfig({ trainer: { steps: -1 } }))).message).toMatch(/trainer\.steps: .*greater than 0/);
    expect(configError(() => planExperiment(tinyConfig({ seeds: [1, 1] }))).message).toMatch(/seeds: seeds must be distinct/);
    expect(configError(() => planExperiment(tinyConfig({ epochs: 3 }))).message).toMatch(/unknown option\(s\) 'epochs'/);
    expect(configError(() => planExperiment(tinyConfig({ name: 'a/b' }))).message).toMatch(/^name: must be letters/);
    const cfg = tinyConfig();
    (cfg.methods as Record<string, unknown>[])[1].label = 'exact';
    expect(configError(() => planExperiment(cfg)).message).toMatch(/methods\.1\.label: duplicate label \(also methods\.0\.label\)/);
    const cfg2 = tinyConfig();
    (cfg2.methods as Record<string, unknown>[])[0].estimator = { name: 'test-closed-form', option: {} };
    expect(configError(() => planExperiment(cfg2)).message).toMatch(/methods\.0\.estimator: unknown option\(s\) 'option'/);
    expect(configError(() => planExperiment([1, 2])).message).toMatch(/mapping/);
  });

  it('loads plugin modules named in the config before checking plugin names', () => {
    const loaded: string[] = [];
    const plan = planExperiment(tinyConfig({ plugins: ['./extra.js'] }), {
      baseDir: '/cfg',
      loadPlugins: (mods, base) => loaded.push(...mods.map((m) => path.resolve(base, m))),
    });
    expect(loaded).toEqual(['/cfg/extra.js']);
    expect(plan.baseDir).toBe('/cfg');
  });

  it('refuses bad overrides', () => {
    const cfg = ExperimentConfigSchema.parse(tinyConfig());
    expect(() => applyOverrides(cfg, { steps: 0 })).toThrow(/--steps/);
    expect(() => applyOverrides(cfg, { seeds: [-1] })).toThrow(/--seed/);
  });
});

describe('readConfigFile', () => {
  const tmp = makeTempDir();
  afterAll(() => tmp.cleanup());

  it('reads YAML and JSON', () => {
    const y = path.join(tmp.dir, 'a.yaml');
    fs.writeFileSync(y, 'name: a\nseeds: [1, 2]\n');
    expect(readConfigFile(y)).toEqual({ name: 'a', seeds: [1, 2] });
    const j = path.join(tmp.dir, 'a.json');
    fs.writeFileSync(j, '{"name": "b"}');
    expect(readConfigFile(j)).toEqual({ name: 'b' });
  });

  it('reports bad YAML with its line, bad JSON and a missing file', () => {
    const y = path.join(tmp.dir, 'bad.yaml');
    fs.writeFileSync(y, 'name: a\nmethods: [1, 2\ntrainer: {}\n');
    expect(configError(() => readConfigFile(y)).message).toMatch(/bad YAML at line 3, column 1/);
    const j = path.join(tmp.dir, 'bad.json');
    fs.writeFileSync(j, '{"name": }');
    expect(configError(() => readConfigFile(j)).message).toMatch(/bad JSON/);
    expect(configError(() => readConfigFile(path.join(tmp.dir, 'nope.yaml'))).message).toMatch(/config file not found/);
  });

  it('loadExperiment resolves plugin paths against the config folder', () => {
    const file = path.join(tmp.dir, 'exp.json');
    fs.writeFileSync(file, JSON.stringify(tinyConfig({ plugins: ['./p.js'] })));
    const seen: string[] = [];
    const plan = loadExperiment(file, { loadPlugins: (mods, base) => seen.push(path.resolve(base, mods[0])) });
    expect(seen).toEqual([path.join(tmp.dir, 'p.js')]);
    expect(plan.source).toBe(file);
  });
});
