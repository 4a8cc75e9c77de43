import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { blockSize, runInterleaved } from './interleave';
import { type Pace, runTimed } from './results';
import { findTorch, torchMissingText } from './torch';
import { speedWorkloads } from './workloads';

describe('runTimed', () => {
  it('alone: times every step at once', async () => {
    let n = 0;
    const times = await runTimed(() => ++n, 4);
    expect(times).toEqual([1, 2, 3, 4]);
  });

  it('paced: one untimed sample before each block, the blocks asked for, then stops', async () => {
    const asked = [2, 3, 0];
    const blocks: number[][] = [];
    const pace: Pace = {
      ready: async () => asked.shift() as number,
      blockDone: async (t) => {
        blocks.push([...t]);
        return asked.shift() as number;
      },
    };
    let n = 0;
    const times = await runTimed(() => ++n, 99, pace);
    // Samples 1 and 4 are the untimed ones.
    expect(blocks).toEqual([[2, 3], [5, 6, 7]]);
    expect(times).toEqual([2, 3, 5, 6, 7]);
  });
});

describe('blockSize', () => {
  it('gives about six rounds, at least one step a block', () => {
    expect(blockSize(30)).toBe(5);
    expect(blockSize(10)).toBe(2);
    expect(blockSize(5)).toBe(1);
    expect(blockSize(1)).toBe(1);
  });
});

/**
 * Stand-ins for the two sides: each appends "<side> <event>" lines to a shared log, so the test sees the
 * order in which they computed. The worker speaks the IPC protocol (like run.js __worker), the twin the
 * stdin/stdout one (like torch/common.py).
 */
function standIns(dir: string, twinMode: 'ok' | 'crash-before-ready' = 'ok'): { worker: string; twin: string; log: string } {
  const log = path.join(dir, 'log.txt');
  const worker = path.join(dir, 'worker.js');
  const twin = path.join(dir, 'twin.js');
  fs.writeFileSync(
    worker,
    `const fs = require('fs');
const log = (s) => fs.appendFileSync(${JSON.stringify(log)}, s + '\\n');
let n = 0;
process.on('message', (m) => {
  if (m.kind === 'speed-task') {
    if (!m.interleave) throw new Error('expected an interleaved task');
    log('bilevel ready');
    process.send({ kind: 'speed-ready', backend: { name: 'cpu-blas', reason: 'OpenBLAS 0.3.21 (Haswell), 3 threads' }, threads: 3 });
  } else if (m.kind === 'speed-block' && m.steps > 0) {
    log('bilevel untimed');
    const t = [];
    for (let i = 0; i < m.steps; i++) t.push(++n);
    log('bilevel block ' + m.steps);
    process.send({ kind: 'speed-block-done', timesMs: t });
  } else if (m.kind === 'speed-block') {
    process.send({ status: 'completed', timesMs: Array.from({ length: n }, (_, i) => i + 1), checks: { side: 1 } }, () => process.exit(0));
  }
});
`,
  );
  fs.writeFileSync(
    twin,
    `const fs = require('fs');
const readline = require('readline');
const log = (s) => fs.appendFileSync(${JSON.stringify(log)}, s + '\\n');
const config = JSON.parse(process.argv[2]);
log('twin started threads=' + config.threads + ' core=' + config.openblasCore + ' interleave=' + config.interleave);
if (${JSON.stringify(twinMode)} === 'crash-before-ready') { process.stderr.write('twin: no torch here\\n'); process.exit(3); }
console.log('some chatter');
console.log('{"ready": true}');
const times = [];
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const k = JSON.parse(line).block;
  if (k <= 0) {
    console.log(JSON.stringify({ timesMs: times, checks: { side: 2 } }));
    process.exit(0);
  }
  log('twin untimed');
  const block = [];
  for (let i = 0; i < k; i++) block.push(100 + times.length + i);
  times.push(...block);
  log('twin block ' + k);
  console.log(JSON.stringify({ blockTimesMs: block }));
});
`,
  );
  return { worker, twin, log };
}

describe('runInterleaved', () => {
  const workload = speedWorkloads({ quick: true }).find((w) => w.id === 'quadratic/aid-cg');
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bilevel-interleave-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('alternates blocks, Bilevel first then the twin first, and returns both results', async () => {
    const { worker, twin, log } = standIns(dir);
    const seen: unknown[] = [];
    const r = await runInterleaved({
      workerScript: worker,
      task: { kind: 'speed-task', workload: 'quadratic/aid-cg', quick: true, backend: 'cpu-blas' },
      python: process.execPath,
      twinScript: twin,
      twinConfig: (info) => {
        seen.push(info);
        return { workload: workload!, threads: info.threads ?? 1, openblasCore: 'Haswell', seed: 0 };
      },
      steps: 5,
      blockSteps: 2,
      timeoutSeconds: 60,
    });
    expect(seen).toEqual([{ backend: { name: 'cpu-blas', reason: 'OpenBLAS 0.3.21 (Haswell), 3 threads' }, threads: 3 }]);
    expect(r.bilevel).toEqual({ status: 'completed', timesMs: [1, 2, 3, 4, 5], checks: { side: 1 } });
    expect(r.torch).toEqual({ status: 'completed', timesMs: [100, 101, 102, 103, 104], checks: { side: 2 } });
    expect(fs.readFileSync(log, 'utf8').trim().split('\n')).toEqual([
      'bilevel ready',
      'twin started threads=3 core=Haswell interleave=true',
      'bilevel untimed',
      'bilevel block 2',
      'twin untimed',
      'twin block 2',
      'twin untimed',
      'twin block 2',
      'bilevel untimed',
      'bilevel block 2',
      'bilevel untimed',
      'bilevel block 1',
      'twin untimed',
      'twin block 1',
    ]);
  });

  it('a twin that dies before it is ready: the Bilevel side still times all its steps alone', async () => {
    const { worker, twin, log } = standIns(dir, 'crash-before-ready');
    const r = await runInterleaved({
      workerScript: worker,
      task: { kind: 'speed-task', workload: 'quadratic/aid-cg', quick: true, backend: 'cpu-blas' },
      python: process.execPath,
      twinScript: twin,
      twinConfig: (info) => ({ workload: workload!, threads: info.threads ?? 1, seed: 0 }),
      steps: 3,
      blockSteps: 2,
      timeoutSeconds: 60,
    });
    expect(r.bilevel.status).toBe('completed');
    expect(r.bilevel.timesMs).toEqual([1, 2, 3]);
    expect(r.torch.status).toBe('failed');
    expect(r.torch.error).toMatch(/twin exited with code 3: twin: no torch here/);
    expect(fs.readFileSync(log, 'utf8')).not.toMatch(/twin block/);
  });

  it('a worker that ends before it is ready: its result, and the twin is not started', async () => {
    const worker = path.join(dir, 'bad-worker.js');
    fs.writeFileSync(
      worker,
      "process.on('message', () => process.send({ status: 'skipped', error: 'Fashion-MNIST not found', timesMs: [], checks: {} }, () => process.exit(0)));",
    );
    let twinAsked = false;
    const r = await runInterleaved({
      workerScript: worker,
      task: { kind: 'speed-task', workload: 'quadratic/aid-cg', quick: true, backend: 'cpu-blas' },
      python: process.execPath,
      twinScript: path.join(dir, 'never.js'),
      twinConfig: () => {
        twinAsked = true;
        return { workload: workload!, threads: 1, seed: 0 };
      },
      steps: 3,
      blockSteps: 1,
      timeoutSeconds: 60,
    });
    expect(r.bilevel).toMatchObject({ status: 'skipped', error: 'Fashion-MNIST not found' });
    expect(r.torch).toMatchObject({ status: 'skipped' });
    expect(twinAsked).toBe(false);
  });

  it('kills both sides after the timeout and says so', async () => {
    const worker = path.join(dir, 'slow-worker.js');
    fs.writeFileSync(worker, "process.on('message', () => setInterval(() => undefined, 1000));");
    const r = await runInterleaved({
      workerScript: worker,
      task: { kind: 'speed-task', workload: 'quadratic/aid-cg', quick: true, backend: 'cpu-blas' },
      python: process.execPath,
      twinConfig: () => ({ workload: workload!, threads: 1, seed: 0 }),
      steps: 3,
      blockSteps: 1,
      timeoutSeconds: 1,
    });
    expect(r.bilevel.status).toBe('timeout');
  });
});

const torch = findTorch();
if (!torch.found) console.warn(`skipped the interleaved run of a real twin: ${torchMissingText(torch)}`);

(torch.found ? describe : describe.skip)('runInterleaved with a real PyTorch twin (torch/common.py)', () => {
  it('the twin answers each block with its times, after one untimed sample, and ends on a block of 0', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bilevel-interleave-'));
    try {
      const { worker } = standIns(dir);
      const micro = speedWorkloads({ quick: true }).find((w) => w.id === 'micro/add-100')!;
      const r = await runInterleaved({
        workerScript: worker,
        task: { kind: 'speed-task', workload: micro.id, quick: true, backend: 'cpu-blas' },
        python: (torch as { python: string }).python,
        twinConfig: () => ({ workload: micro, threads: 1, seed: 0 }),
        steps: 5,
        blockSteps: 2,
        timeoutSeconds: 120,
      });
      expect(r.bilevel.timesMs).toHaveLength(5);
      expect(r.torch.status).toBe('completed');
      expect(r.torch.timesMs).toHaveLength(5);
      for (const t of r.torch.timesMs) expect(t).toBeGreaterThan(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 150_000);
});
