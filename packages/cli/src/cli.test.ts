import * as fs from 'fs';
import * as path from 'path';
import './test-utils/test-plugins';
import { runCli } from './cli';
import { CaptureStream, makeTempDir, tinyConfig } from './test-utils/helpers';

const tmp = makeTempDir();
afterAll(() => tmp.cleanup());
let counter = 0;

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const stdout = new CaptureStream(false);
  const stderr = new CaptureStream(false);
  const code = await runCli(args, {
    stdout,
    stderr,
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    loadModule: (id) => require(id),
  });
  return { code, out: stdout.text, err: stderr.text };
}

function writeConfig(config: unknown, ext = 'json'): string {
  const file = path.join(tmp.dir, `config-${++counter}.${ext}`);
  fs.writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config));
  return file;
}

const noStackTrace = (text: string): void => {
  expect(text).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
};

describe('bilevel --help', () => {
  it('describes every command and the global options', async () => {
    const r = await cli(['--help']);
    expect(r.code).toBe(0);
    for (const word of ['run', 'resume', 'list', 'compare', '--backend', '--seed', '--out', '--steps', '--quiet']) expect(r.out).toContain(word);
  });

  it.each(['run', 'resume', 'list', 'compare'])('has help for %s', async (command) => {
    const r = await cli([command, '--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(new RegExp(`Usage: bilevel ${command}`));
  });

  it('explains exit codes in run --help', async () => {
    expect((await cli(['run', '--help'])).out).toMatch(/2 config or data error, 130 interrupted/);
  });

  it('explains checkpoints and resume in run --help and resume --help', async () => {
    expect((await cli(['run', '--help'])).out).toMatch(/continue an interrupted or killed experiment with `bilevel resume <results>`/);
    const r = (await cli(['resume', '--help'])).out;
    expect(r).toMatch(/Usage: bilevel resume \[options\] <results>/);
    expect(r).toMatch(/newest valid checkpoint/);
    expect(r).toMatch(/no row twice/);
  });

  it('exits 2 on an unknown command or option', async () => {
    expect((await cli(['frobnicate'])).code).toBe(2);
    const r = await cli(['run', 'x.yaml', '--frob']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown option '--frob'/);
    expect((await cli(['--steps', '0', 'run', 'x.yaml'])).err).toMatch(/expected an integer from 1 to 4294967295/);
  });
});

describe('bilevel list', () => {
  it('shows plugins with option name, type, default and description, and the backends', async () => {
    const r = await cli(['list']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/Problems \(problem\)/);
    expect(r.out).toMatch(/Outer optimizers \(outerOptimizer\)/);
    expect(r.out).toMatch(/test-closed-form — test estimator: scaled closed-form hypergradient/);
    expect(r.out).toMatch(/scale\s+number \(> 0, <= 10\)\s+1\s+multiplies the exact hypergradient/);
    expect(r.out).toMatch(/learningRate\s+number \(> 0\)\s+0\.1\s+step size α/);
    expect(r.out).toMatch(/Backends\n\s+tensorflow\s/);
    expect(r.out).toMatch(/\n\s+cpu\s+(running|available)/);
  });

  it('filters by kind and prints JSON', async () => {
    const r = await cli(['list', 'estimators', '--json']);
    expect(r.code).toBe(0);
    const parsed = JSON.parse(r.out) as { plugins: { kind: string; name: string; options: { name: string; default?: unknown }[] }[] };
    expect(parsed.plugins.every((p) => p.kind === 'estimator')).toBe(true);
    const mine = parsed.plugins.find((p) => p.name === 'test-closed-form');
    expect(mine?.options.map((o) => [o.name, o.default])).toEqual([
      ['scale', 1],
      ['nanAtStep', undefined],
      ['throwAtStep', undefined],
    ]);
    const backends = await cli(['list', 'backends']);
    expect(backends.out).toMatch(/^Backends/);
    expect(backends.out).not.toMatch(/Problems/);
  });

  it('lists the field\'s methods as plugin combinations (list methods, and in the full listing)', async () => {
    const r = await cli(['list', 'methods']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Methods as plugin combinations/);
    expect(r.out).toMatch(/soba — SOBA \(Dagréou/);
    expect(r.out).toMatch(/estimator\s+fixed-point \{"maxIterations":1,"stepSize":0\.1,"warmStart":true,"systemBatches":"fresh"\}/);
    expect(r.out).toMatch(/bome — BOME[^\n]*\n\s+innerSolver\s+\(none: the estimator moves y\)/);
    const json = JSON.parse((await cli(['list', 'methods', '--json'])).out) as { methods: { name: string }[] };
    expect(json.methods.map((m) => m.name)).toEqual(['soba', 'saba', 'amigo', 'stocbio', 'f2sa', 'bome', 'esj', 'qnbo', 'aid-cg']);
    expect((await cli(['list'])).out).toMatch(/Methods as plugin combinations/);
  });

  it('names an unknown kind', async () => {
    const r = await cli(['list', 'gizmos']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown kind 'gizmos'/);
  });
});

describe('bilevel run: bad configs exit 2 with a message naming the field', () => {
  const cases: [string, () => unknown, RegExp][] = [
    [
      'unknown plugin',
      () => {
        const c = tinyConfig();
        (c.methods as Record<string, unknown>[])[0].innerSolver = 'newton-magic';
        return c;
      },
      /config error: methods\.0\.innerSolver\.name: unknown innerSolver 'newton-magic'; registered: .*test-gd/,
    ],
    ['wrong type', () => tinyConfig({ seeds: 'zero' }), /config error: seeds: Expected array, received string \(got "zero"\)/],
    [
      'out-of-range value',
      () => tinyConfig({ problem: { name: 'test-quadratic', options: { dimension: 1000 } } }),
      /config error: problem\.options\.dimension: Number must be less than or equal to 200 \(got 1000\)/,
    ],
    ['bad YAML', () => 'name: x\nmethods: [\n  - a: 1\n', /config error: .*bad YAML at line \d+, column \d+/],
    ['unknown backend', () => tinyConfig({ backend: 'gpu-magic' }), /config error: backend: must be one of 'auto', 'tensorflow'/],
  ];

  it.each(cases)('%s', async (_name, make, pattern) => {
    const config = make();
    const file = writeConfig(config, typeof config === 'string' ? 'yaml' : 'json');
    const r = await cli(['run', file, '--out', path.join(tmp.dir, `never-${counter}`)]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(pattern);
    noStackTrace(r.err);
    expect(fs.existsSync(path.join(tmp.dir, `never-${counter}`))).toBe(false);
  });

  it('missing data file (DataError)', async () => {
    const missing = path.join(tmp.dir, 'no-such-data.idx');
    const file = writeConfig(tinyConfig({ problem: { name: 'test-data', options: { file: missing } } }));
    const r = await cli(['run', file, '--out', path.join(tmp.dir, 'data-err'), '--backend', 'cpu']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(new RegExp(`data error: data file not found: ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    noStackTrace(r.err);
  });

  it('missing config file', async () => {
    const r = await cli(['run', path.join(tmp.dir, 'nope.yaml')]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/config file not found/);
  });

  it('a plugin module that cannot be found', async () => {
    const file = writeConfig(tinyConfig({ plugins: ['./no-such-plugin.js'] }));
    const r = await cli(['run', file, '--dry-run']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/plugins\.0: cannot load plugin module '\.\/no-such-plugin\.js'/);
  });
});

describe('bilevel run and compare', () => {
  it('--dry-run validates and prints the plan without running', async () => {
    const file = writeConfig(tinyConfig());
    const r = await cli(['run', file, '--dry-run', '--steps', '3']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/OK/);
    expect(r.out).toMatch(/exact\s+test-gd\s+test-closed-form\s+gd\s+3/);
  });

  it('runs a config with overrides, writes results, and compare reads them back', async () => {
    const out1 = path.join(tmp.dir, 'res-1');
    const out2 = path.join(tmp.dir, 'res-2');
    const file = writeConfig(tinyConfig({ output: { plots: false } }));
    const r1 = await cli(['run', file, '--out', out1, '--steps', '4', '--seed', '3', '--backend', 'cpu']);
    expect(r1.err).toBe('');
    expect(r1.code).toBe(0);
    const s1 = JSON.parse(fs.readFileSync(path.join(out1, 'summary.json'), 'utf8'));
    expect(s1.runs.map((r: { seed: number; steps: number }) => [r.seed, r.steps])).toEqual([
      [3, 4],
      [3, 4],
    ]);
    expect(s1.backend).toBe('cpu');
    const resolved = JSON.parse(fs.readFileSync(path.join(out1, 'config.resolved.json'), 'utf8'));
    expect(resolved.command).toEqual(expect.arrayContaining(['--steps', '4', '--seed', '3']));

    const r2 = await cli(['--quiet', 'run', file, '--out', out2, '--steps', '2', '--seed', '0,1']);
    expect(r2.code).toBe(0);
    expect(r2.out.trim()).toBe(out2);

    const cmp = await cli(['compare', out1, path.join(out2, 'summary.json')]);
    expect(cmp.code).toBe(0);
    const lines = cmp.out.trim().split('\n');
    expect(lines[0]).toMatch(
      /^results\s+experiment\s+seeds\s+problem\s+method\s+status\s+runs\s+steps\s+train time \(s\)\s+outer loss\s+trueGradientNorm\s+oracle calls/,
    );
    // Two runs of one config (same experiment name), two methods each: told apart by folder and seeds.
    expect(lines.filter((l) => /^res-1\s+tiny\s+3\s+test-quadratic/.test(l))).toHaveLength(2);
    expect(lines.filter((l) => /^res-2\s+tiny\s+0,1\s+test-quadratic/.test(l))).toHaveLength(2);
    expect(cmp.out).toMatch(/exact\s+completed\s+2\/2\s+2 ± 0/);
    const md = await cli(['compare', '--markdown', out1]);
    expect(md.out).toMatch(/^\| results \| experiment \| seeds \| problem \| method \|/);
  });

  it('compare names a folder without summary', async () => {
    const r = await cli(['compare', tmp.dir]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/no summary\.json at/);
  });

  it('compare recognises a results folder stopped before its first summary and says to resume it', async () => {
    const dir = path.join(tmp.dir, 'no-summary-yet');
    fs.mkdirSync(path.join(dir, 'runs'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'config.resolved.json'), '{}');
    const r = await cli(['compare', dir]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`'${dir}' is a results folder without a summary yet`);
    expect(r.err).toContain(`bilevel resume ${dir}`);
    noStackTrace(r.err);
  });

  it('exits 1 and names method, seed and step when a run diverges', async () => {
    const c = tinyConfig({ output: { plots: false } });
    (c.methods as Record<string, unknown>[])[1].estimator = { name: 'test-closed-form', options: { nanAtStep: 1 } };
    const r = await cli(['run', writeConfig(c), '--out', path.join(tmp.dir, 'diverge')]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/run diverged: method 'half <step>', seed 0, outer step 2: DivergenceError/);
    noStackTrace(r.out + r.err);
  });

  it('loads a plugin module given with --plugin', async () => {
    const r = await cli(['list', 'problems', '--plugin', path.join(__dirname, 'test-utils', 'test-plugins.ts')]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/test-quadratic/);
  });
});
