import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '@bilevel/core';
import './test-utils/test-plugins';
import { planExperiment } from './config';
import { runExperiment } from './run-experiment';
import { sizeForBackend, SLOW_BACKENDS } from './slow-backend';
import { CaptureStream, makeTempDir, tinyConfig } from './test-utils/helpers';

const tmp = makeTempDir();
afterAll(() => tmp.cleanup());

/** The tiny config with a per-method step count and smaller settings for the slow backends. */
const sizedConfig = (dir: string): Record<string, unknown> => {
  const base = tinyConfig({ output: { dir, plots: false } });
  const methods = base.methods as Record<string, unknown>[];
  return {
    ...base,
    problem: { name: 'test-quadratic', options: { dimension: 5 } },
    trainer: { steps: 12, evalEvery: 4 },
    methods: [{ ...methods[0], trainer: { steps: 20 } }, methods[1]],
    slowBackend: {
      reason: 'the full size takes too long without native kernels',
      problem: { dimension: 3 },
      trainer: { steps: 4, evalEvery: 2 },
    },
  };
};

describe('sizeForBackend', () => {
  const plan = planExperiment(sizedConfig('unused'));

  it('replaces problem options and trainer settings (a method\'s own steps included) on wasm and cpu', () => {
    expect(SLOW_BACKENDS).toEqual(['wasm', 'cpu']);
    for (const backend of ['wasm', 'cpu']) {
      const sized = sizeForBackend(plan.config, backend);
      expect(sized.resized).toBe(true);
      expect(sized.config.problem.options).toEqual({ dimension: 3 });
      expect(sized.config.trainer).toMatchObject({ steps: 4, evalEvery: 2 });
      expect(sized.config.methods[0].trainer).toEqual({});
      expect(sized.config).not.toHaveProperty('slowBackend');
      expect(sized.note).toBe(
        `backend ${backend} has no native kernels, so the config's smaller slowBackend settings run ` +
          '(problem dimension 3; trainer steps 4, evalEvery 2): the full size takes too long without native kernels',
      );
      // The resized config is a valid config: every method runs 4 steps on the 3-dimensional problem.
      const replanned = planExperiment(sized.config);
      expect(replanned.methods.map((m) => m.pipeline.trainer.steps)).toEqual([4, 4]);
    }
  });

  it('keeps the config as it is on the native backends, without the slowBackend field', () => {
    for (const backend of ['cpu-blas', 'tensorflow']) {
      const sized = sizeForBackend(plan.config, backend);
      expect(sized.resized).toBe(false);
      expect(sized.note).toBeUndefined();
      expect(sized.config.problem.options).toEqual({ dimension: 5 });
      expect(sized.config.methods[0].trainer).toEqual({ steps: 20 });
      expect(sized.config).not.toHaveProperty('slowBackend');
    }
  });

  it('--steps wins over the smaller settings\' steps too', () => {
    const overridden = planExperiment(sizedConfig('unused'), { overrides: { steps: 2 } });
    const sized = sizeForBackend(overridden.config, 'cpu');
    expect(sized.config.trainer).toMatchObject({ steps: 2, evalEvery: 2 });
    expect(planExperiment(sized.config).methods.map((m) => m.pipeline.trainer.steps)).toEqual([2, 2]);
    expect(sized.note).toContain('trainer steps 2, evalEvery 2');
  });

  it('is refused with the field named when malformed', () => {
    const bad = { ...sizedConfig('unused'), slowBackend: { problem: { dimension: 3 } } };
    expect(() => planExperiment(bad)).toThrow(ConfigError);
    expect(() => planExperiment(bad)).toThrow(/slowBackend\.reason/);
    const unknownKey = { ...sizedConfig('unused'), slowBackend: { reason: 'r', steps: 3 } };
    expect(() => planExperiment(unknownKey)).toThrow(/slowBackend/);
    // A bad replacement value is caught when the resized config is validated again.
    const sized = sizeForBackend(planExperiment({ ...sizedConfig('unused'), slowBackend: { reason: 'r', trainer: { steps: 3 } } }).config, 'cpu');
    expect(() => planExperiment({ ...sized.config, trainer: { steps: -1 } })).toThrow(/trainer\.steps/);
  });
});

describe('runExperiment with slowBackend', () => {
  it('runs the smaller settings on the cpu backend, says so, and records what ran', async () => {
    expect(tf.getBackend()).toBe('cpu');
    const dir = path.join(tmp.dir, 'sized');
    const stdout = new CaptureStream(false);
    const result = await runExperiment(planExperiment(sizedConfig(dir)), { stdout, initBackend: false });
    expect(result.exitCode).toBe(0);
    expect(result.summary.runs.map((r) => [r.method, r.steps])).toEqual([
      ['exact', 4],
      ['half <step>', 4],
    ]);
    expect(stdout.text).toContain("backend cpu has no native kernels, so the config's smaller slowBackend settings run");
    const resolved = JSON.parse(fs.readFileSync(path.join(dir, 'config.resolved.json'), 'utf8'));
    expect(resolved.experiment.problem.options).toEqual({ dimension: 3 });
    expect(resolved.experiment).not.toHaveProperty('slowBackend');
    expect(resolved.methods.map((m: { trainer: { steps: number } }) => m.trainer.steps)).toEqual([4, 4]);
  });
});
