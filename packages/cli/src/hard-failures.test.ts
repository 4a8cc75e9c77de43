/**
 * Hard failures, through the `bilevel` command in-process (`runCli`, the code of the executable): a disk that
 * fills up during a run, two commands on one results folder, folders results cannot be written into, and numbers that must not pass silently (seeds past 2³², infinite or NaN options,
 * counts past the maximum, a short run that explodes). Each ends with its exit code, one message that names
 * the cause, no stack trace — and nothing lost.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import './plugins';
import './test-utils/test-plugins';
import { runCli } from './cli';
import { LOCK_FILE, RESERVE_FILE } from './results-folder';
import { readRunRows, type MetricsRow } from './run-recorder';
import { CaptureStream, makeTempDir, tinyConfig } from './test-utils/helpers';
import { canMountTmpfs, mountTmpfs, simulatedDisk, type SmallDisk } from './test-utils/small-disk';

const tmp = makeTempDir();
afterAll(() => tmp.cleanup());
let counter = 0;

interface Said {
  code: number;
  out: string;
  err: string;
}

async function cli(args: string[], signal?: AbortSignal): Promise<Said> {
  const stdout = new CaptureStream(false);
  const stderr = new CaptureStream(false);
  const code = await runCli(args, { stdout, stderr, signal });
  return { code, out: stdout.text, err: stderr.text };
}

function writeConfig(config: unknown, ext = 'json'): string {
  const file = path.join(tmp.dir, `config-${++counter}.${ext}`);
  fs.writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config));
  return file;
}

function noStackTrace(text: string): void {
  expect(text).not.toMatch(/\n\s+at .+:\d+:\d+\)?/);
}

/** Every file under a folder, relative to it. */
function filesUnder(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(dir, f)).isFile()).sort();
}

/** What a row says apart from timings (identical between an uninterrupted and a resumed run). */
function comparable(rows: readonly MetricsRow[]): unknown[] {
  return rows.map(({ time: _t, wallTime: _w, ...rest }) => rest);
}

describe('a disk that fills up during a run', () => {
  // Two methods × 150 steps, a checkpoint every 10 steps: the disk fills during the first run.
  const config = tinyConfig({
    trainer: { steps: 150, evalEvery: 5 },
    checkpoint: { every: 10, keep: 2 },
    // No figures: the disk is sized from the reference folder's rows and checkpoints.
    output: { plots: false, report: false },
  });
  let reference = '';
  let referenceBytes = 0;

  beforeAll(async () => {
    reference = path.join(tmp.dir, 'full-disk-reference');
    const r = await cli(['run', writeConfig(config), '--out', reference, '--backend', 'cpu', '--quiet']);
    expect(r.code).toBe(0);
    referenceBytes = filesUnder(reference).reduce((s, f) => s + fs.statSync(path.join(reference, f)).size, 0);
  });

  const kinds: ('tmpfs' | 'simulated')[] = canMountTmpfs() ? ['tmpfs', 'simulated'] : ['simulated'];
  if (!kinds.includes('tmpfs')) {
    console.log('full-disk test: no tmpfs can be mounted here (needs root with CAP_SYS_ADMIN); ENOSPC is simulated in fs only');
  }

  it.each(kinds)(
    'on a %s disk: exit 1 "disk full at <file>", whole rows, no temporary file, checkpoints kept, summary failed; resume continues exactly',
    async (kind) => {
      // Room for the space reserve, the config and about 40 % of the rows.
      const size = 128 * 1024 + 8 * 1024 + Math.round(referenceBytes * 0.4);
      const disk: SmallDisk = kind === 'tmpfs' ? mountTmpfs(size) : simulatedDisk(size);
      try {
        const out = path.join(disk.root, 'results');
        const cfg = writeConfig(config);
        const first = await cli(['run', cfg, '--out', out, '--backend', 'cpu', '--quiet']);
        expect(first.code).toBe(1);
        expect(first.err).toMatch(
          new RegExp(`^bilevel: disk full at ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/\\S+ \\(ENOSPC\\); .*bilevel resume ${out}`, 'm'),
        );
        noStackTrace(first.err);

        const files = filesUnder(out);
        expect(files.filter((f) => /\.tmp-|\.tmp$/.test(f))).toEqual([]);
        expect(files).not.toContain(LOCK_FILE);
        expect(files).not.toContain(RESERVE_FILE);
        const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')) as {
          status: string;
          runs: { status: string; error?: { kind: string } }[];
        };
        expect(summary.status).toBe('failed');
        expect(summary.runs.some((r) => r.error?.kind === 'StorageError')).toBe(true);
        // Rows whole: every CSV line has the header's cells, every JSON line parses, both files agree.
        for (const base of ['exact-seed0', 'half-step-seed0']) {
          const csvFile = path.join(out, 'runs', `${base}.csv`);
          if (!fs.existsSync(csvFile)) continue;
          const text = fs.readFileSync(csvFile, 'utf8');
          expect(text.endsWith('\n')).toBe(true);
          const lines = text.trimEnd().split('\n');
          const width = lines[0].split(',').length;
          for (const line of lines) expect(line.split(',')).toHaveLength(width);
          const jsonl = fs.readFileSync(path.join(out, 'runs', `${base}.jsonl`), 'utf8');
          expect(jsonl === '' || jsonl.endsWith('\n')).toBe(true);
          const rows = jsonl.split('\n').filter((l) => l);
          for (const l of rows) expect(() => JSON.parse(l)).not.toThrow();
          expect(rows).toHaveLength(lines.length - 1);
        }
        // The run that hit the full disk keeps its checkpoints (none deleted for a newer one that failed).
        const ckpts = files.filter((f) => f.startsWith('checkpoints/'));
        expect(ckpts.length).toBeGreaterThan(0);

        // Room again: resume continues from the checkpoints and ends with the rows of the uninterrupted run.
        disk.grow(16 * 1024 * 1024);
        const again = await cli(['resume', out, '--quiet']);
        expect(again.err).toBe('');
        expect(again.code).toBe(0);
        const resumed = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')) as { status: string; runs: { status: string }[] };
        expect(resumed.status).toBe('completed');
        expect(resumed.runs.map((r) => r.status)).toEqual(['completed', 'completed']);
        for (const base of ['exact-seed0', 'half-step-seed0']) {
          const mine = readRunRows(path.join(out, 'runs', `${base}.jsonl`));
          const want = readRunRows(path.join(reference, 'runs', `${base}.jsonl`));
          expect(mine).toHaveLength(150);
          expect(comparable(mine)).toEqual(comparable(want));
          const csv = fs.readFileSync(path.join(out, 'runs', `${base}.csv`), 'utf8').trimEnd().split('\n');
          expect(csv).toHaveLength(151);
        }
        expect(filesUnder(out).filter((f) => /\.tmp-|\.tmp$|^checkpoints\//.test(f))).toEqual([]);
      } finally {
        disk.dispose();
      }
    },
  );

  it('repairs a last row cut short by a kill when resuming (rows equal to the uninterrupted run)', async () => {
    const out = path.join(tmp.dir, 'torn');
    const stop = new AbortController();
    const stdout = new CaptureStream(false, (chunk) => {
      if (chunk.includes('[exact · seed 0] step 37/')) stop.abort();
    });
    const cfg = writeConfig({ ...config, progress: { everySteps: 1 } });
    expect(await runCli(['run', cfg, '--out', out, '--backend', 'cpu'], { stdout, stderr: new CaptureStream(false), signal: stop.signal })).toBe(130);
    // What a kill in the middle of a write leaves: half a line at the end of both files.
    fs.appendFileSync(path.join(out, 'runs', 'exact-seed0.jsonl'), '{"step":38,"time":0.1,"wallTi');
    fs.appendFileSync(path.join(out, 'runs', 'exact-seed0.csv'), '38,0.1,0.2,4.');
    const again = await cli(['resume', out, '--quiet']);
    expect(again.code).toBe(0);
    for (const base of ['exact-seed0', 'half-step-seed0']) {
      const rows = readRunRows(path.join(out, 'runs', `${base}.jsonl`));
      expect(comparable(rows)).toEqual(comparable(readRunRows(path.join(reference, 'runs', `${base}.jsonl`))));
      const csv = fs.readFileSync(path.join(out, 'runs', `${base}.csv`), 'utf8').trimEnd().split('\n');
      expect(csv).toHaveLength(151);
      expect(csv.slice(1).map((l) => Number(l.split(',')[0]))).toEqual(rows.map((r) => r.step));
    }
  });
});

describe('one results folder, one command at a time', () => {
  /** A run slow enough to be caught in the middle (the test solver sleeps 2 ms per solve). */
  const slow = (): string =>
    writeConfig(
      tinyConfig({
        methods: [{ label: 'slow', innerSolver: { name: 'test-gd', options: { sleepMs: 2 } }, estimator: 'test-closed-form' }],
        trainer: { steps: 100000, evalEvery: 0 },
        output: { plots: false },
      }),
    );

  async function until(cond: () => boolean): Promise<void> {
    for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
    expect(cond()).toBe(true);
  }

  it('refuses a second run, --force or resume on a folder in use (exit 2 naming pid, host, start); releases on exit', async () => {
    const out = path.join(tmp.dir, 'locked');
    const cfg = slow();
    const ac = new AbortController();
    const first = cli(['run', cfg, '--out', out, '--backend', 'cpu', '--quiet'], ac.signal);
    await until(() => fs.existsSync(path.join(out, 'runs', 'slow-seed0.jsonl')));
    const holder = new RegExp(
      `results folder ${out} is in use by pid ${process.pid} on ${os.hostname()} since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z \\(bilevel run ${cfg}`,
    );
    for (const args of [
      ['run', cfg, '--out', out, '--backend', 'cpu', '--force'],
      ['run', cfg, '--out', out, '--backend', 'cpu'],
      ['resume', out],
    ]) {
      const second = await cli(args);
      expect(second.code).toBe(2);
      expect(second.err).toMatch(new RegExp(`^bilevel: ${holder.source}`));
      noStackTrace(second.err);
    }
    ac.abort();
    const done = await first;
    expect(done.code).toBe(130);
    expect(fs.existsSync(path.join(out, LOCK_FILE))).toBe(false);
    // The folder is free again: the interrupted run is resumed (and stopped again at once).
    const stop = new AbortController();
    stop.abort();
    expect((await cli(['resume', out, '--quiet'], stop.signal)).code).toBe(130);
  });

  it('releases the lock when the command ends with an error', async () => {
    const out = path.join(tmp.dir, 'lock-error');
    const cfg = writeConfig(
      tinyConfig({ problem: { name: 'test-data', options: { file: path.join(tmp.dir, 'no-such-data.bin') } }, output: { plots: false } }),
    );
    const r = await cli(['run', cfg, '--out', out, '--backend', 'cpu']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^bilevel: data error: data file not found/);
    expect(fs.existsSync(path.join(out, LOCK_FILE))).toBe(false);
    expect(fs.existsSync(path.join(out, RESERVE_FILE))).toBe(false);
  });

  it('takes over the lock of a process that is gone, saying so; keeps one from another host', async () => {
    const out = path.join(tmp.dir, 'stale');
    fs.mkdirSync(out);
    const dead = spawnSync(process.execPath, ['-e', '']).pid;
    fs.writeFileSync(
      path.join(out, LOCK_FILE),
      JSON.stringify({ pid: dead, host: os.hostname(), startedAt: '2020-01-01T00:00:00.000Z', command: 'bilevel run old.yaml' }),
    );
    const cfg = writeConfig(tinyConfig({ trainer: { steps: 3 }, output: { plots: false } }));
    const r = await cli(['run', cfg, '--out', out, '--backend', 'cpu', '--force']);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`warning: results folder ${out}: taking over the lock of pid ${dead} (started 2020-01-01T00:00:00.000Z), which is no longer running`);
    expect(fs.existsSync(path.join(out, LOCK_FILE))).toBe(false);

    fs.writeFileSync(
      path.join(out, LOCK_FILE),
      JSON.stringify({ pid: dead, host: 'elsewhere.example', startedAt: '2020-01-01T00:00:00.000Z' }),
    );
    const other = await cli(['run', cfg, '--out', out, '--backend', 'cpu', '--force']);
    expect(other.code).toBe(2);
    expect(other.err).toMatch(/in use by pid \d+ on elsewhere\.example since 2020-01-01T00:00:00\.000Z; .*held from another host: remove .*\.bilevel\.lock/);
  });
});

describe('results folders that cannot be written', () => {
  const cfg = (): string => writeConfig(tinyConfig({ trainer: { steps: 2 }, output: { plots: false } }));

  it.each([
    ['/proc/bilevel-x', /\/proc is a special file system \(not storage\)/],
    ['/sys/kernel/bilevel-x', /\/sys is a special file system/],
    ['/dev/bilevel-x', /\/dev is a special file system/],
  ])('refuses --out %s up front (exit 2)', async (out, why) => {
    const r = await cli(['run', cfg(), '--out', out, '--backend', 'cpu']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(new RegExp(`^bilevel: config error: output\\.dir \\(--out\\): cannot write results into '${out}': ${why.source}`));
    expect(fs.existsSync(out)).toBe(false);
  });

  it('accepts /dev/shm (a tmpfs, not a device view)', async () => {
    expect(fs.statSync('/dev/shm').isDirectory()).toBe(true);
    const out = fs.mkdtempSync('/dev/shm/bilevel-test-');
    try {
      const r = await cli(['run', cfg(), '--out', path.join(out, 'results'), '--backend', 'cpu', '--quiet']);
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });

  it('names a file in the way (exit 2, nothing trained)', async () => {
    const file = path.join(tmp.dir, 'a-file');
    fs.writeFileSync(file, 'x');
    const r = await cli(['run', cfg(), '--out', path.join(file, 'results'), '--backend', 'cpu']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^bilevel: config error: output\.dir \(--out\): cannot write results into '.*a-file\/results': .*a-file is a file, not a folder/);
    expect(r.out).not.toMatch(/▶ run/);
  });

  // A read-only tmpfs when one can be mounted; otherwise a folder without write permission (as root, which
  // ignores permissions, the EACCES of mkdir is injected: fs.mkdirSync fails the way it would).
  const mountable = canMountTmpfs();
  it(`names ${mountable ? 'a read-only file system' : 'a folder without write permission'} (exit 2, nothing trained)`, async () => {
    let disk: SmallDisk | null = null;
    let parent: string;
    let restore = (): void => undefined;
    if (mountable) {
      disk = mountTmpfs(64 * 1024, { ro: true });
      parent = disk.root;
    } else {
      parent = path.join(tmp.dir, 'no-write');
      fs.mkdirSync(parent, { mode: 0o555 });
      if (process.getuid?.() === 0) {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const nodeFs = require('fs') as { mkdirSync: (...args: unknown[]) => unknown };
        const mkdir = nodeFs.mkdirSync;
        nodeFs.mkdirSync = (...args: unknown[]) => {
          if (typeof args[0] === 'string' && path.resolve(args[0]).startsWith(parent + path.sep)) {
            throw Object.assign(new Error(`EACCES: permission denied, mkdir '${args[0]}'`), { code: 'EACCES', errno: -13, syscall: 'mkdir' });
          }
          return mkdir.apply(fs, args);
        };
        restore = () => {
          nodeFs.mkdirSync = mkdir;
        };
      }
    }
    try {
      const r = await cli(['run', cfg(), '--out', path.join(parent, 'sub', 'results'), '--backend', 'cpu']);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(
        disk
          ? /output\.dir \(--out\): cannot write results into '.*': cannot create .*\/sub: the file system is read-only \(EROFS\)/
          : /output\.dir \(--out\): cannot write results into '.*': cannot create .*\/sub: permission denied \(EACCES\)/,
      );
      expect(r.out).not.toMatch(/▶ run/);
    } finally {
      restore();
      disk?.dispose();
    }
  });
});

describe('numbers that must not pass silently', () => {
  const run = (config: unknown, ext = 'json', extra: string[] = []): Promise<Said> =>
    cli(['run', writeConfig(config, ext), '--out', path.join(tmp.dir, `numbers-${++counter}`), '--backend', 'cpu', '--quiet', ...extra]);

  it.each([
    ['seed 2^32 in a config', () => run(tinyConfig({ seeds: [4294967296] })), /seeds\.0: Number must be less than or equal to 4294967295 \(got 4294967296\)/],
    ['seed 2^53 + 2 in a config', () => run(tinyConfig({ seeds: [2 ** 53 + 2] })), /seeds\.0: Number must be less than or equal to 4294967295 \(got 9007199254740994\)/],
    ['--seed 4294967296', () => run(tinyConfig(), 'json', ['--seed', '4294967296']), /--seed <seeds>' argument '4294967296' is invalid\. expected integers from 0 to 4294967295/],
    ['a plugin seed past 2^32', () => run(tinyConfig({ problem: { name: 'test-quadratic', options: { seed: 2 ** 32 } } })), /problem\.options\.seed: must be at most 4294967295 \(2\^32 - 1\) \(got 4294967296\)/],
    ['steps 1e20 in a config', () => run(tinyConfig({ trainer: { steps: 1e20 } })), /trainer\.steps: must be at most 4294967295 \(2\^32 - 1\) \(got 100000000000000000000\)/],
    ['--steps 1e20', () => run(tinyConfig(), 'json', ['--steps', '1e20']), /--steps <n>' argument '1e20' is invalid\. expected an integer from 1 to 4294967295/],
    ['a step size of .inf (YAML)', () => run('name: inf\nproblem: test-quadratic\nmethods:\n  - label: a\n    innerSolver: test-gd\n    estimator: test-closed-form\n    outerOptimizer: { name: gd, options: { learningRate: .inf } }\n', 'yaml'), /methods\.0\.outerOptimizer\.options\.learningRate: must be a finite number \(got Infinity\)/],
    ['a time limit of -.inf (YAML)', () => run('name: inf\nproblem: test-quadratic\ntrainer: { timeLimitSeconds: -.inf }\nmethods:\n  - { label: a, innerSolver: test-gd, estimator: test-closed-form }\n', 'yaml'), /trainer\.timeLimitSeconds: .*\(got -Infinity\)/],
    ['a NaN option (YAML .nan)', () => run('name: nan\nproblem: { name: test-quadratic, options: { conditionNumber: .nan } }\nmethods:\n  - { label: a, innerSolver: test-gd, estimator: test-closed-form }\n', 'yaml'), /problem\.options\.conditionNumber: must be a number, not NaN \(got NaN\)/],
  ])('%s: exit 2, named', async (_name, go, message) => {
    const r = await go();
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.err).not.toMatch(/got null/);
    noStackTrace(r.err);
  });

  it('honours the largest seed, 2^32 - 1, as a seed of its own (not wrapped onto another one)', async () => {
    // ES draws its directions from the run's random generator, so the seed shows in the numbers.
    const es = (seeds: number[]): Record<string, unknown> =>
      tinyConfig({
        methods: [{ label: 'es', innerSolver: 'test-gd', estimator: { name: 'es', options: { directions: 2 } } }],
        seeds,
        trainer: { steps: 2, evalEvery: 0 },
        output: { plots: false },
      });
    const outA = path.join(tmp.dir, 'seed-top');
    const a = await cli(['run', writeConfig(es([0, 4294967295])), '--out', outA, '--backend', 'cpu', '--quiet']);
    expect(a.code).toBe(0);
    const outB = path.join(tmp.dir, 'seed-top-again');
    expect((await cli(['run', writeConfig(es([4294967295])), '--out', outB, '--backend', 'cpu', '--quiet'])).code).toBe(0);
    const loss = (dir: string, seed: number): number[] => readRunRows(path.join(dir, 'runs', `es-seed${seed}.jsonl`)).map((r) => r.hypergradientNorm);
    expect(loss(outA, 4294967295)).not.toEqual(loss(outA, 0));
    expect(loss(outB, 4294967295)).toEqual(loss(outA, 4294967295));
  });

  it('flags a 3-step run that explodes past 1e12: exit 1, status diverged, the step named; rows kept', async () => {
    const out = path.join(tmp.dir, 'explode');
    const cfg = tinyConfig({
      methods: [{ label: 'boom', innerSolver: 'test-gd', estimator: 'test-closed-form', outerOptimizer: { name: 'gd', options: { learningRate: 1e4 } } }],
      trainer: { steps: 3, evalEvery: 1 },
      output: { plots: false },
    });
    const r = await cli(['run', writeConfig(cfg), '--out', out, '--backend', 'cpu']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/run diverged: method 'boom', seed 0, outer step (\d): DivergenceError: .* past the divergence bound 1000000000000 \(trainer\.divergenceBound\)/);
    const step = Number(/outer step (\d): DivergenceError/.exec(r.out)?.[1]);
    const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')) as {
      status: string;
      runs: { status: string; steps: number; error: { kind: string; step: number } }[];
    };
    expect(summary.status).toBe('diverged');
    expect(summary.runs[0]).toMatchObject({ status: 'diverged', steps: step - 1, error: { kind: 'DivergenceError', step } });
    expect(readRunRows(path.join(out, 'runs', 'boom-seed0.jsonl'))).toHaveLength(step - 1);
    // Without the guard the same run "completes" with a loss far past the bound: the guard is what flags it.
    const free = await cli([
      'run',
      writeConfig({ ...cfg, trainer: { steps: 3, evalEvery: 1, divergenceBound: 1e300 } }),
      '--out',
      path.join(tmp.dir, 'explode-free'),
      '--backend',
      'cpu',
      '--quiet',
    ]);
    expect(free.err).toBe('');
    expect(free.code).toBe(0);
    const freeSummary = JSON.parse(fs.readFileSync(path.join(tmp.dir, 'explode-free', 'summary.json'), 'utf8')) as {
      runs: { finalOuterLoss: number }[];
    };
    expect(Math.abs(freeSummary.runs[0].finalOuterLoss)).toBeGreaterThan(1e12);
  });
});
