/**
 * The bad-input suite, through the `bilevel` command (in-process `runCli`, the same code as the executable):
 * broken configs (wrong types, out-of-range values, unknown keys, unknown plugins), broken data files (IDX cut
 * short, wrong magic number, labels out of range, image and label counts that disagree, too few images, a
 * corrupt LIBSVM line) and a user-defined problem whose shapes do not fit. Each must end with exit code 2 and
 * one message that names the field, the file or the problem — never a stack trace.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { registerProblem, z } from '@bilevel/core';
import { QuadraticFixture } from '@bilevel/core/testing';
import { encodeIdx } from '@bilevel/datasets';
import './plugins';
import './test-utils/test-plugins';
import { runCli } from './cli';
import { CaptureStream, makeTempDir, tinyConfig } from './test-utils/helpers';

const tmp = makeTempDir();
afterAll(() => tmp.cleanup());
let counter = 0;

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const stdout = new CaptureStream(false);
  const stderr = new CaptureStream(false);
  const code = await runCli(args, { stdout, stderr });
  return { code, out: stdout.text, err: stderr.text };
}

/** Runs a config (an object, or raw text) and returns what the command said. */
async function runConfig(config: unknown, ext = 'json'): Promise<{ code: number; out: string; err: string }> {
  const n = ++counter;
  const file = path.join(tmp.dir, `config-${n}.${ext}`);
  fs.writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config));
  return cli(['run', file, '--out', path.join(tmp.dir, `out-${n}`), '--backend', 'cpu', '--quiet']);
}

/** Exit code 2, one `bilevel: <kind> error: …` message matching `pattern`, and no stack trace. */
function expectRefused(r: { code: number; err: string }, kind: 'config' | 'data', pattern: RegExp): void {
  expect(r.code).toBe(2);
  expect(r.err.startsWith(`bilevel: ${kind} error: `)).toBe(true);
  expect(r.err).toMatch(pattern);
  expect(r.err).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
  expect(r.err).not.toMatch(/\n\s+at /);
}

type Config = Record<string, unknown>;
const withMethod = (change: (m: Config) => Config): Config => {
  const c = tinyConfig();
  const methods = c.methods as Config[];
  return { ...c, methods: [change(methods[0]), methods[1]] };
};

describe('bad configs: exit code 2 and a message naming the field', () => {
  const cases: [string, Config | string, RegExp][] = [
    ['wrong type (string for a number)', tinyConfig({ trainer: { steps: 'ten' } }), /trainer\.steps: Expected number, received string \(got "ten"\)/],
    ['wrong type (number for a list)', tinyConfig({ seeds: 3 }), /seeds: Expected array, received number \(got 3\)/],
    ['wrong type (number for a plugin choice)', withMethod((m) => ({ ...m, estimator: 5 })), /methods\.0\.estimator: Expected object, received number/],
    ['wrong type (boolean option)', tinyConfig({ trainer: { warmStart: 'yes' } }), /trainer\.warmStart: Expected boolean, received string/],
    ['out of range (trainer)', tinyConfig({ trainer: { shrinkFactor: 1.5 } }), /trainer\.shrinkFactor: Number must be less than 1 \(got 1\.5\)/],
    [
      'out of range (a built-in estimator option)',
      withMethod((m) => ({ ...m, estimator: { name: 'cg', options: { maxIterations: -1 } } })),
      /methods\.0\.estimator\.options\.maxIterations: Number must be greater than 0 \(got -1\)/,
    ],
    ['out of range (problem option)', tinyConfig({ problem: { name: 'test-quadratic', options: { dimension: 500 } } }), /problem\.options\.dimension: Number must be less than or equal to 200 \(got 500\)/],
    ['out of range (checkpoint)', tinyConfig({ checkpoint: { every: -1 } }), /checkpoint\.every: Number must be greater than or equal to 0 \(got -1\)/],
    ['not an integer', tinyConfig({ checkpoint: { keep: 1.5 } }), /checkpoint\.keep: Expected integer, received float/],
    ['bad enum value', tinyConfig({ trainer: { onNonFinite: 'explode' } }), /trainer\.onNonFinite: must be one of 'stop', 'skip', 'shrink' \(got "explode"\)/],
    ['unknown top-level key', tinyConfig({ stepz: 5 }), /\(root\): unknown option\(s\) 'stepz'/],
    ['unknown key of a method', withMethod((m) => ({ ...m, estimatr: 'cg' })), /methods\.0: unknown option\(s\) 'estimatr'/],
    ['unknown trainer key', tinyConfig({ trainer: { step: 5 } }), /trainer: unknown option\(s\) 'step'/],
    ['unknown checkpoint key', tinyConfig({ checkpoint: { everySteps: 5 } }), /checkpoint: unknown option\(s\) 'everySteps'/],
    [
      'unknown plugin option',
      withMethod((m) => ({ ...m, estimator: { name: 'cg', options: { maxIter: 5 } } })),
      /methods\.0\.estimator(\.options)?: unknown option\(s\) 'maxIter'/,
    ],
    ['unknown estimator', withMethod((m) => ({ ...m, estimator: 'nope' })), /methods\.0\.estimator\.name: unknown estimator 'nope'; registered: .*\bcg\b.*\bes\b/],
    ['unknown inner solver', withMethod((m) => ({ ...m, innerSolver: 'newton' })), /methods\.0\.innerSolver\.name: unknown innerSolver 'newton'; registered: .*\blbfgs\b/],
    ['unknown outer optimizer', withMethod((m) => ({ ...m, outerOptimizer: { name: 'sgd' } })), /methods\.0\.outerOptimizer\.name: unknown outerOptimizer 'sgd'; registered: adam, gd, momentum/],
    ['unknown problem', tinyConfig({ problem: 'nope' }), /problem\.name: unknown problem 'nope'; registered: .*\bquadratic\b/],
    ['unknown backend', tinyConfig({ backend: 'gpu' }), /backend: /],
    ['missing required field', { name: 'x', methods: [] }, /problem: Required/],
    ['a plugin module that does not exist', tinyConfig({ plugins: ['./no-such-plugin.js'] }), /plugins\.0: cannot load plugin module '\.\/no-such-plugin\.js' .*module not found/],
    ['bad YAML', 'name: x\nproblem: [unclosed\n', /bad YAML at line \d+, column \d+/],
  ];

  it.each(cases)('%s', async (_what, config, pattern) => {
    const r = await runConfig(config, typeof config === 'string' ? 'yaml' : 'json');
    expectRefused(r, 'config', pattern);
  });
});

describe('bad data files: exit code 2 and a message naming the file', () => {
  /** A Fashion-MNIST-layout folder of raw IDX files: 60,000 training images of 1×1 pixel (so the problem's indices fit). */
  function mnistFolder(change: { images?: number; labels?: number[]; labelCount?: number } = {}): string {
    const dir = path.join(tmp.dir, `mnist-${++counter}`);
    fs.mkdirSync(dir);
    const n = change.images ?? 60000;
    const labelCount = change.labelCount ?? n;
    const labels = change.labels ?? Array.from({ length: labelCount }, (_, i) => i % 10);
    fs.writeFileSync(path.join(dir, 'train-images-idx3-ubyte'), encodeIdx('uint8', [n, 1, 1], Array.from({ length: n }, (_, i) => (i * 7) % 256)));
    fs.writeFileSync(path.join(dir, 'train-labels-idx1-ubyte'), encodeIdx('uint8', [labelCount], labels));
    fs.writeFileSync(path.join(dir, 't10k-images-idx3-ubyte'), encodeIdx('uint8', [10, 1, 1], new Array(10).fill(3)));
    fs.writeFileSync(path.join(dir, 't10k-labels-idx1-ubyte'), encodeIdx('uint8', [10], new Array(10).fill(1)));
    return dir;
  }

  function hyperCleaning(dir: string): Config {
    return tinyConfig({
      problem: { name: 'hyper-cleaning', options: { dataset: 'fashion-mnist', path: dir, trainSamples: 20, validationSamples: 10, testSamples: 0 } },
      methods: [{ label: 'cg', innerSolver: { name: 'gd', options: { maxIterations: 3 } }, estimator: 'cg' }],
      trainer: { steps: 2 },
      output: { plots: false },
    });
  }

  it('runs on an intact folder (the control: the failures below come from the damage alone)', async () => {
    const r = await runConfig(hyperCleaning(mnistFolder()));
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
  });

  it('an IDX file cut short', async () => {
    const dir = mnistFolder();
    const file = path.join(dir, 'train-images-idx3-ubyte');
    const bytes = fs.readFileSync(file);
    fs.writeFileSync(file, bytes.subarray(0, bytes.length - 1000));
    const r = await runConfig(hyperCleaning(dir));
    expectRefused(r, 'data', new RegExp(`${file}: .*60016.* 59016|${file}: .*cut short|${file}: .*truncated`));
  });

  it('a wrong magic number', async () => {
    const dir = mnistFolder();
    const file = path.join(dir, 'train-labels-idx1-ubyte');
    const bytes = fs.readFileSync(file);
    bytes[0] = 0x1f;
    fs.writeFileSync(file, bytes);
    expectRefused(await runConfig(hyperCleaning(dir)), 'data', new RegExp(`${file}: .*magic`));
  });

  it('labels out of range', async () => {
    const dir = mnistFolder({ labels: new Array(60000).fill(12) });
    expectRefused(
      await runConfig(hyperCleaning(dir)),
      'data',
      new RegExp(`${path.join(dir, 'train-labels-idx1-ubyte')}: label 12 of sample \\d+ is outside 0\\.\\.9`),
    );
  });

  it('image and label counts that disagree', async () => {
    const dir = mnistFolder({ labelCount: 59999 });
    expectRefused(
      await runConfig(hyperCleaning(dir)),
      'data',
      new RegExp(`${path.join(dir, 'train-labels-idx1-ubyte')}: holds 59999 labels but .* holds 60000 images`),
    );
  });

  it('fewer images than the data set has', async () => {
    const dir = mnistFolder({ images: 100 });
    expectRefused(
      await runConfig(hyperCleaning(dir)),
      'data',
      new RegExp(`${path.join(dir, 'train-images-idx3-ubyte')}: sample index \\d+ .* holds only 100 images`),
    );
  });

  it('a corrupt LIBSVM line', async () => {
    const file = path.join(tmp.dir, 'train.svm');
    fs.writeFileSync(file, '1 1:0.5 3:1\n0 2:0.25\n1 4:x\n0 1:1\n');
    const r = await runConfig(
      tinyConfig({
        problem: { name: 'hyperparameter-optimization', options: { dataset: 'libsvm', libsvm: { train: file } } },
        methods: [{ label: 'cg', innerSolver: { name: 'gd', options: { maxIterations: 3 } }, estimator: 'cg' }],
        trainer: { steps: 2 },
      }),
    );
    expectRefused(r, 'data', new RegExp(`${file}: line 3, column \\d+: `));
  });
});

describe('a user-defined problem whose shapes do not fit: exit code 2, naming the problem and the mismatch', () => {
  const Options = z
    .object({ wrong: z.enum(['none', 'initialY', 'initialX', 'loss']).default('none') })
    .strict();
  registerProblem(
    'test-mismatched',
    (o: z.output<typeof Options>) => {
      const f = new QuadraticFixture({ innerDimension: 5, seed: 1 });
      return {
        name: 'test-mismatched',
        initialX: () => (o.wrong === 'initialX' ? { x: tf.zeros([3]) } : f.initialX()),
        initialY: () => (o.wrong === 'initialY' ? { y: tf.zeros([4]) } : f.initialY()),
        innerLoss: (x, y) => f.innerLoss(x, y),
        outerLoss: (x, y) =>
          o.wrong === 'loss' ? (tf.tidy(() => tf.square(tf.sub(x.x, y.y))) as unknown as tf.Scalar) : f.outerLoss(x, y),
        hypergradient: (x) => f.hypergradient(x),
        dispose: () => f.dispose(),
      };
    },
    Options,
    'test problem with a shape bug on demand',
  );
  const config = (wrong: string): Config =>
    tinyConfig({ problem: { name: 'test-mismatched', options: { wrong } }, output: { plots: false } });

  it('runs when nothing is wrong (the control)', async () => {
    const r = await runConfig(config('none'));
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
  });

  it.each([
    ['initialY', /problem 'test-mismatched': innerLoss\(x₀, y₀\) failed with x \{x: \[5\]\}, y \{y: \[4\]\}: .*(matMul|shape)/i],
    ['initialX', /problem 'test-mismatched': innerLoss\(x₀, y₀\) failed with x \{x: \[3\]\}, y \{y: \[5\]\}: /],
    ['loss', /problem 'test-mismatched': outerLoss\(x₀, y₀\) returned a tensor of shape \[5\]; a loss must be a scalar/],
  ])('wrong %s', async (wrong, pattern) => {
    const r = await runConfig(config(wrong));
    expectRefused(r, 'config', pattern);
  });
});
