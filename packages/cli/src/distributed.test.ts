/**
 * Distributed runs end to end on a real Redis (a private redis-server on a free loopback port) with workers
 * as child processes of the built `bilevel` executable: a sweep on two workers writes the local run's
 * results; a worker killed with SIGKILL mid-run, or stopped with SIGTERM, loses nothing; bad queue URLs,
 * passwords and hostile job payloads fail with messages that say which.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { Queue } from 'bullmq';
import { parseQueueUrl, PROTOCOL_VERSION, queueStatus } from '@bilevel/distributed';
import {
  freePort,
  makeTestCertificates,
  redisSkipReason,
  startTestRedis,
  type TestRedis,
} from '@bilevel/distributed/testing';
import { runCli } from './cli';
import { type CliProcess, CliProcesses, waitFor, workerReady } from './test-utils/cli-processes';
import { makeTempDir } from './test-utils/helpers';

const root = path.resolve(__dirname, '..', '..', '..');
const skip = redisSkipReason();
if (skip) {
  console.warn(skip);
}
const describeRedis = skip ? describe.skip : describe;

type Proc = CliProcess;

const tmp = makeTempDir('bilevel-distributed-');
const processes = new CliProcesses(tmp.dir);

function bilevel(args: string[], env: Record<string, string> = {}): Proc {
  return processes.start(args, env);
}

function startWorker(url: string, name: string, extra: string[] = []): Proc {
  return bilevel(['worker', '--queue', url, '--name', name, ...extra]);
}

const ready = (worker: Proc): Promise<void> => workerReady(worker);

async function stop(worker: Proc): Promise<void> {
  if (worker.child.exitCode === null) worker.child.kill('SIGINT');
  await worker.done;
}

const TIME_COLUMNS = new Set(['time', 'wallTime']);

/** A CSV without its time columns. */
function csvWithoutTimes(file: string): string {
  const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
  const header = lines[0].split(',');
  const keep = header.map((h, i) => (TIME_COLUMNS.has(h) ? -1 : i)).filter((i) => i >= 0);
  return lines.map((l) => keep.map((i) => l.split(',')[i]).join(',')).join('\n');
}

/** JSONL rows without their time fields. */
function jsonlWithoutTimes(file: string): unknown[] {
  return fs
    .readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      const { time: _t, wallTime: _w, ...rest } = JSON.parse(l) as Record<string, unknown>;
      return rest;
    });
}

function summaryRuns(dir: string): unknown[] {
  const s = JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8')) as {
    runs: Record<string, unknown>[];
  };
  return s.runs.map((r) => ({
    method: r.method,
    seed: r.seed,
    status: r.status,
    steps: r.steps,
    finalOuterLoss: r.finalOuterLoss,
    finalMetrics: r.finalMetrics,
    oracleCalls: r.oracleCalls,
    files: r.files,
  }));
}

/** The results of two folders are the same apart from time columns: file names, rows, summary entries. */
function expectSameResults(a: string, b: string): void {
  const list = (d: string): string[] => fs.readdirSync(d).sort();
  expect(list(b)).toEqual(list(a));
  expect(list(path.join(b, 'runs'))).toEqual(list(path.join(a, 'runs')));
  for (const f of list(path.join(a, 'runs'))) {
    if (f.endsWith('.csv'))
      expect(csvWithoutTimes(path.join(b, 'runs', f))).toBe(csvWithoutTimes(path.join(a, 'runs', f)));
    if (f.endsWith('.jsonl'))
      expect(jsonlWithoutTimes(path.join(b, 'runs', f))).toEqual(jsonlWithoutTimes(path.join(a, 'runs', f)));
  }
  expect(summaryRuns(b)).toEqual(summaryRuns(a));
}

function writeConfig(name: string, config: Record<string, unknown>): string {
  const file = path.join(tmp.dir, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({ name, ...config }));
  return file;
}

const quadratic = { name: 'quadratic', options: { dimension: 20, seed: 0 } };
const esMethod = {
  label: 'ESJ',
  innerSolver: { name: 'gd', options: { stepSize: 0.6, maxIterations: 10 } },
  estimator: { name: 'es', options: { directions: 4, smoothing: 0.01 } },
  outerOptimizer: { name: 'gd', options: { learningRate: 0.05 } },
};

describeRedis('bilevel worker / run --queue / status on a real Redis', () => {
  let redis: TestRedis;

  beforeAll(async () => {
    // The CLI and the packages it imports (nx builds dependencies first and caches).
    execFileSync('npx', ['nx', 'run', '@bilevel/cli:build', '--outputStyle=static'], {
      cwd: root,
      stdio: 'pipe',
      timeout: 600_000,
    });
    redis = await startTestRedis();
  }, 600_000);

  afterAll(async () => {
    processes.killAll();
    await new Promise((r) => setTimeout(r, 100));
    await redis?.stop();
    tmp.cleanup();
  });

  it("a sweep (methods × seeds × a grid) on two workers writes the local run's results (apart from time columns), rows streamed as they come", async () => {
    const url = `${redis.url}?queue=sweep`;
    const config = writeConfig('sweep', {
      problem: quadratic,
      trainer: { steps: 12, evalEvery: 4 },
      seeds: [0, 1],
      sweep: { 'outerOptimizer.options.learningRate': [0.05, 0.2] },
      // Sized for the coordinator's backend (cpu) before the runs are sent: workers run the same 8 steps.
      slowBackend: { reason: 'tests run on cpu', trainer: { steps: 8 } },
      methods: [
        esMethod,
        {
          label: 'AID-CG',
          innerSolver: { name: 'gd', options: { stepSize: 0.6, maxIterations: 10 } },
          estimator: { name: 'cg', options: { maxIterations: 5 } },
          outerOptimizer: { name: 'gd', options: { learningRate: 0.3 } },
        },
      ],
    });
    const workers = [startWorker(url, 'w1'), startWorker(url, 'w2')];
    await Promise.all(workers.map(ready));
    expect(workers[0].out()).toMatch(/worker w1: backend cpu/);
    const coordinator = bilevel(['--out', 'dist-out', 'run', config, '--queue', url]);
    expect(await coordinator.done).toBe(0);
    const local = bilevel(['--out', 'local-out', '--quiet', 'run', config]);
    expect(await local.done).toBe(0);
    expectSameResults(path.join(tmp.dir, 'local-out'), path.join(tmp.dir, 'dist-out'));
    // The same plots and report.html as a local run; the report's runs table lists the 8 runs.
    const figures = (dir: string): string[] =>
      fs
        .readdirSync(path.join(tmp.dir, dir))
        .filter((f) => /\.(svg|png|html)$/.test(f))
        .sort();
    expect(figures('dist-out')).toEqual(figures('local-out'));
    expect(figures('dist-out')).toEqual(
      ['outer-loss-vs-step', 'outer-loss-vs-time', 'xrelativeerror-vs-step', 'xrelativeerror-vs-time']
        .flatMap((n) => [`${n}.png`, `${n}.svg`])
        .concat('report.html')
        .sort(),
    );
    const report = fs.readFileSync(path.join(tmp.dir, 'dist-out', 'report.html'), 'utf8');
    const runsTable = report.slice(report.indexOf('<h2>Runs</h2>'), report.indexOf('<h2>Charts</h2>'));
    expect(runsTable.match(/<tr>/g)).toHaveLength(1 + 8);
    // Per-step progress lines came back while the runs ran, and both workers took runs.
    expect(coordinator.out()).toMatch(/\[ESJ · learningRate=0\.2 · seed 1\] step 1\/8/);
    expect(coordinator.out()).toMatch(/done on w1/);
    expect(coordinator.out()).toMatch(/done on w2/);
    const status = bilevel(['status', '--queue', url]);
    expect(await status.done).toBe(0);
    expect(status.out()).toMatch(/completed 8/);
    expect(
      fs
        .readFileSync(path.join(tmp.dir, 'dist-out', 'runs', 'esj-learningrate-0-05-seed0.csv'), 'utf8')
        .trim()
        .split('\n'),
    ).toHaveLength(9);
    expect(fs.readdirSync(path.join(tmp.dir, 'dist-out', 'runs'))).toContain(
      'aid-cg-learningrate-0-2-seed1.csv',
    );
    expect(status.out()).toMatch(/w1/);
    await Promise.all(workers.map(stop));
  });

  it('a worker killed with SIGKILL mid-run: another takes the job over from the newest checkpoint; rows equal an uninterrupted run', async () => {
    const url = `${redis.url}?queue=kill`;
    const shared = path.join(tmp.dir, 'shared-checkpoints');
    const fast = ['--checkpoint-dir', shared, '--lock-duration', '1500', '--stalled-interval', '500'];
    const config = writeConfig('kill', {
      problem: quadratic,
      trainer: { steps: 150, evalEvery: 5 },
      checkpoint: { every: 5 },
      output: { plots: false },
      seeds: [0],
      methods: [esMethod],
    });
    const first = startWorker(url, 'doomed', fast);
    await ready(first);
    const coordinator = bilevel(['--out', 'kill-out', 'run', config, '--queue', url]);
    const csv = path.join(tmp.dir, 'kill-out', 'runs', 'esj-seed0.csv');
    // Rows stream into the results folder while the run is under way.
    await waitFor(
      '20 streamed rows',
      () => fs.existsSync(csv) && fs.readFileSync(csv, 'utf8').split('\n').length > 21,
    );
    first.child.kill('SIGKILL');
    await first.done;
    const second = startWorker(url, 'rescuer', fast);
    expect(await coordinator.done).toBe(0);
    expect(coordinator.out()).toMatch(/taken over by rescuer/);
    expect(second.out()).toMatch(/continuing from step [1-9]\d*/);
    const local = bilevel(['--out', 'kill-local', '--quiet', 'run', config]);
    expect(await local.done).toBe(0);
    expectSameResults(path.join(tmp.dir, 'kill-local'), path.join(tmp.dir, 'kill-out'));
    await stop(second);
  });

  it('without --checkpoint-dir, a run taken over from a worker killed with SIGKILL continues from its checkpoint in Redis', async () => {
    const url = `${redis.url}?queue=kill-redis`;
    // No shared folder: each worker checkpoints to a private folder and copies the newest checkpoint to Redis.
    const fast = ['--lock-duration', '1500', '--stalled-interval', '500'];
    const config = writeConfig('kill-redis', {
      problem: quadratic,
      trainer: { steps: 150, evalEvery: 5 },
      checkpoint: { every: 5 },
      output: { plots: false },
      seeds: [0],
      methods: [esMethod],
    });
    const first = startWorker(url, 'doomed-r', fast);
    await ready(first);
    expect(first.out()).toMatch(/copied to Redis/);
    const coordinator = bilevel(['--out', 'kill-redis-out', 'run', config, '--queue', url]);
    const csv = path.join(tmp.dir, 'kill-redis-out', 'runs', 'esj-seed0.csv');
    await waitFor(
      '20 streamed rows',
      () => fs.existsSync(csv) && fs.readFileSync(csv, 'utf8').split('\n').length > 21,
    );
    first.child.kill('SIGKILL');
    await first.done;
    const second = startWorker(url, 'rescuer-r', fast);
    expect(await coordinator.done).toBe(0);
    expect(coordinator.out()).toMatch(/taken over by rescuer-r/);
    // It continued from the Redis copy (it has no other: its own folder is new).
    expect(second.out()).toMatch(/checkpoint checkpoint-\d{8}\.safetensors from Redis/);
    expect(second.out()).toMatch(/continuing from step [1-9]\d*/);
    const local = bilevel(['--out', 'kill-redis-local', '--quiet', 'run', config]);
    expect(await local.done).toBe(0);
    expectSameResults(path.join(tmp.dir, 'kill-redis-local'), path.join(tmp.dir, 'kill-redis-out'));
    // A finished run's copy is removed from Redis.
    const keys = execFileSync(
      'redis-cli',
      ['-p', String(redis.port), '--scan', '--pattern', 'bilevel:checkpoint:*'],
      {
        encoding: 'utf8',
      },
    );
    expect(keys.trim()).toBe('');
    await stop(second);
  });

  it('a checkpoint over the Redis limit stops the run with a message saying to pass --checkpoint-dir', async () => {
    const url = `${redis.url}?queue=limit`;
    const config = writeConfig('limit', {
      problem: quadratic,
      trainer: { steps: 20, evalEvery: 5 },
      checkpoint: { every: 5 },
      output: { plots: false },
      seeds: [0],
      methods: [esMethod],
    });
    const worker = startWorker(url, 'small-limit', ['--redis-checkpoint-limit', '1000']);
    await ready(worker);
    const coordinator = bilevel(['--out', 'limit-out', 'run', config, '--queue', url]);
    await coordinator.done;
    expect(coordinator.out()).toMatch(
      /checkpoint \(\d+ bytes with its rows\) is over the limit for checkpoints kept in Redis \(1000 bytes\): start the workers with --checkpoint-dir/,
    );
    await stop(worker);
  });

  it('one worker with --concurrency 2 runs two jobs at once; rows equal the local run', async () => {
    const url = `${redis.url}?queue=concurrent`;
    const config = writeConfig('concurrent', {
      problem: quadratic,
      trainer: { steps: 80, evalEvery: 5 },
      output: { plots: false },
      seeds: [0, 1],
      methods: [esMethod],
    });
    const worker = startWorker(url, 'double', ['--concurrency', '2']);
    await ready(worker);
    expect(worker.out()).toMatch(/concurrency 2/);
    const coordinator = bilevel(['--out', 'concurrent-out', 'run', config, '--queue', url]);
    // Both runs are active on the one worker at the same time.
    let bothActive = false;
    while (coordinator.child.exitCode === null && !bothActive) {
      const status = await queueStatus(parseQueueUrl(url));
      bothActive = status.counts.active === 2;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(bothActive).toBe(true);
    expect(await coordinator.done).toBe(0);
    const local = bilevel(['--out', 'concurrent-local', '--quiet', 'run', config]);
    expect(await local.done).toBe(0);
    expectSameResults(path.join(tmp.dir, 'concurrent-local'), path.join(tmp.dir, 'concurrent-out'));
    await stop(worker);
  });

  it('rediss://: a worker and a coordinator on a TLS-only Redis (a private CA given by NODE_EXTRA_CA_CERTS); without the CA, a clear error', async () => {
    const certDir = path.join(tmp.dir, 'tls');
    fs.mkdirSync(certDir, { recursive: true });
    const files = makeTestCertificates(certDir);
    if ('skip' in files) {
      // Not a hidden failure: the reason is printed, and openssl is part of the CI image.
      console.warn(`rediss:// test skipped: ${files.skip}`);
      return;
    }
    const tlsRedis = await startTestRedis({ tls: files });
    try {
      expect(tlsRedis.url).toMatch(/^rediss:\/\//);
      const env = { NODE_EXTRA_CA_CERTS: files.ca };
      const url = `${tlsRedis.url}?queue=tls`;
      const config = writeConfig('tls', {
        problem: quadratic,
        trainer: { steps: 6, evalEvery: 3 },
        output: { plots: false },
        seeds: [0],
        methods: [esMethod],
      });
      const worker = bilevel(['worker', '--queue', url, '--name', 'tls-worker'], env);
      await ready(worker);
      const coordinator = bilevel(['--out', 'tls-out', 'run', config, '--queue', url], env);
      expect(await coordinator.done).toBe(0);
      expect(coordinator.out()).toMatch(/done on tls-worker/);
      const status = bilevel(['status', '--queue', url], env);
      expect(await status.done).toBe(0);
      expect(status.out()).toMatch(/queue rediss:\/\/127\.0\.0\.1:\d+\?queue=tls: .*completed 1/);
      // The server's certificate is not trusted without the CA: one clear error, exit code 2.
      const untrusted = bilevel(['status', '--queue', url]);
      expect(await untrusted.done).toBe(2);
      expect(untrusted.out()).toMatch(
        /--queue rediss:\/\/127\.0\.0\.1:\d+\?queue=tls: .*(self[- ]signed|certificate)/i,
      );
      await stop(worker);
    } finally {
      await tlsRedis.stop();
    }
  });

  it('SIGTERM hands the running job back with a checkpoint; the next worker continues it', async () => {
    const url = `${redis.url}?queue=handback`;
    const shared = path.join(tmp.dir, 'shared-handback');
    const config = writeConfig('handback', {
      problem: quadratic,
      trainer: { steps: 150, evalEvery: 5 },
      checkpoint: { every: 50 },
      output: { plots: false },
      seeds: [0],
      methods: [esMethod],
    });
    const first = startWorker(url, 'leaving', ['--checkpoint-dir', shared]);
    await ready(first);
    const coordinator = bilevel(['--out', 'handback-out', 'run', config, '--queue', url]);
    const csv = path.join(tmp.dir, 'handback-out', 'runs', 'esj-seed0.csv');
    await waitFor(
      '20 streamed rows',
      () => fs.existsSync(csv) && fs.readFileSync(csv, 'utf8').split('\n').length > 21,
    );
    first.child.kill('SIGTERM');
    expect(await first.done).toBe(0);
    const step = Number(/handed back at step (\d+)/.exec(first.out())?.[1]);
    expect(step).toBeGreaterThan(0);
    expect(step).toBeLessThan(150);
    const second = startWorker(url, 'next', ['--checkpoint-dir', shared]);
    expect(await coordinator.done).toBe(0);
    expect(second.out()).toContain(`continuing from step ${step}`);
    const local = bilevel(['--out', 'handback-local', '--quiet', 'run', config]);
    expect(await local.done).toBe(0);
    expectSameResults(path.join(tmp.dir, 'handback-local'), path.join(tmp.dir, 'handback-out'));
    await stop(second);
  });

  it('a Redis restart mid-sweep (persistence on): every run completes, rows equal to an uninterrupted run', async () => {
    const persistent = await startTestRedis({ appendonly: true });
    try {
      const url = `${persistent.url}?queue=restart`;
      const config = writeConfig('restart', {
        problem: quadratic,
        trainer: { steps: 150, evalEvery: 5 },
        checkpoint: { every: 5 },
        output: { plots: false },
        seeds: [0, 1],
        methods: [esMethod],
      });
      const worker = startWorker(url, 'steady', ['--checkpoint-dir', path.join(tmp.dir, 'shared-restart')]);
      await ready(worker);
      const coordinator = bilevel(['--out', 'restart-out', 'run', config, '--queue', url]);
      const csv = path.join(tmp.dir, 'restart-out', 'runs', 'esj-seed0.csv');
      await waitFor(
        '20 streamed rows',
        () => fs.existsSync(csv) && fs.readFileSync(csv, 'utf8').split('\n').length > 21,
      );
      // Mid-run: the first run has not finished when Redis goes down (restart waits for the old server's exit).
      expect(fs.readFileSync(csv, 'utf8').trim().split('\n').length - 1).toBeLessThan(150);
      await persistent.restart();
      expect(await coordinator.done).toBe(0);
      const local = bilevel(['--out', 'restart-local', '--quiet', 'run', config]);
      expect(await local.done).toBe(0);
      expectSameResults(path.join(tmp.dir, 'restart-local'), path.join(tmp.dir, 'restart-out'));
      await stop(worker);
    } finally {
      await persistent.stop();
    }
  });

  it('Ctrl-C on the coordinator removes the jobs no worker took: exit 130, runs interrupted, queue empty', async () => {
    const url = `${redis.url}?queue=cancel`;
    const config = writeConfig('cancel', {
      problem: quadratic,
      trainer: { steps: 5 },
      seeds: [0, 1],
      methods: [esMethod],
    });
    const coordinator = bilevel(['--out', 'cancel-out', 'run', config, '--queue', url]);
    await waitFor('two jobs queued', () => (coordinator.out().match(/→ job/g) ?? []).length === 2);
    coordinator.child.kill('SIGINT');
    expect(await coordinator.done).toBe(130);
    const summary = JSON.parse(fs.readFileSync(path.join(tmp.dir, 'cancel-out', 'summary.json'), 'utf8')) as {
      runs: { status: string }[];
    };
    expect(summary.runs.map((r) => r.status)).toEqual(['interrupted', 'interrupted']);
    const status = bilevel(['status', '--queue', url]);
    expect(await status.done).toBe(0);
    expect(status.out()).toMatch(/active 0, waiting 0/);
  });

  it('wrong URL, unreachable Redis and wrong password fail with exit code 2 and a message naming which', async () => {
    const closed = await freePort();
    const secured = await startTestRedis({ password: 'right' });
    try {
      const cases: [string[], RegExp][] = [
        [['worker', '--queue', 'http://127.0.0.1:1'], /scheme must be redis:\/\/ or rediss:\/\//],
        [['worker', '--queue', `redis://127.0.0.1:${closed}`], /cannot reach the server/],
        [['worker', '--queue', `redis://:wrong@127.0.0.1:${secured.port}`], /authentication failed/],
        [['status', '--queue', `redis://127.0.0.1:${closed}`], /cannot reach the server/],
        [
          ['run', 'nothing.yaml', '--queue', `redis://127.0.0.1:${closed}`],
          /config file not found|cannot reach the server/,
        ],
      ];
      for (const [args, message] of cases) {
        let text = '';
        const stream = { write: (s: string) => ((text += s), true) };
        expect(await runCli(args, { stdout: stream, stderr: stream })).toBe(2);
        expect(text).toMatch(message);
        expect(text).not.toContain('wrong@');
      }
      const good = startWorker(`${secured.url}?queue=pw`, 'with-password');
      await ready(good);
      await stop(good);
    } finally {
      await secured.stop();
    }
  });

  it('malformed, hostile and other-version jobs fail on the worker with a message saying which; it runs nothing of theirs', async () => {
    const url = `${redis.url}?queue=hostile`;
    const worker = startWorker(url, 'careful');
    await ready(worker);
    const address = parseQueueUrl(url);
    const queue = new Queue(address.queueName, { connection: address.connection });
    const marker = path.join(tmp.dir, 'plugin-was-loaded');
    const plugin = path.join(tmp.dir, 'evil-plugin.js');
    fs.writeFileSync(plugin, `require('fs').writeFileSync(${JSON.stringify(marker)}, 'x');`);
    const config = {
      name: 'hostile',
      plugins: [plugin],
      problem: quadratic,
      trainer: { steps: 2 },
      methods: [esMethod],
    };
    const base = {
      protocol: PROTOCOL_VERSION,
      libraryVersion: '0.1.0',
      experimentId: 'h',
      fileBase: 'esj-seed0',
      methodIndex: 0,
      seed: 0,
      index: 1,
      total: 1,
    };
    const version = (
      JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }
    ).version;
    base.libraryVersion = version;
    const jobs: [string, Record<string, unknown>, RegExp][] = [
      ['bad-path', { ...base, fileBase: '../../escape', config }, /malformed job: fileBase/],
      ['old-version', { ...base, libraryVersion: '0.0.1', config }, /library version 0\.0\.1/],
      [
        'unknown-plugin',
        { ...base, config: { ...config, methods: [{ ...esMethod, estimator: 'from-evil-plugin' }] } },
        /unknown estimator 'from-evil-plugin'.*loads plugins only from its own --plugin/,
      ],
      [
        'out-of-range',
        {
          ...base,
          config: {
            ...config,
            methods: [{ ...esMethod, estimator: { name: 'es', options: { directions: -3 } } }],
          },
        },
        /methods\.0\.estimator\.options\.directions/,
      ],
      ['no-such-method', { ...base, methodIndex: 5, config }, /methodIndex 5/],
    ];
    try {
      for (const [id, data] of jobs) await queue.add('run', data, { jobId: id, attempts: 1 });
      await waitFor(
        'every hostile job failed',
        () => (worker.out().match(/failed:/g) ?? []).length >= jobs.length,
      );
      for (const [id, , message] of jobs) {
        const job = await queue.getJob(id);
        expect(await job?.getState()).toBe('failed');
        expect(job?.failedReason).toMatch(message);
      }
      expect(fs.existsSync(marker)).toBe(false);
      const status = bilevel(['status', '--queue', url]);
      expect(await status.done).toBe(0);
      expect(status.out()).toMatch(/failures:[\s\S]*bad-path: malformed job: fileBase/);
    } finally {
      await queue.close();
      await stop(worker);
    }
  });
});
