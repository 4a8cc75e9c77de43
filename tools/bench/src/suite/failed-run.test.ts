/**
 * How the suite reports a run that fails: a worker that exits without a result, is killed, sends a failed
 * result or hangs past its section's time limit becomes a 'failed' or 'timeout' RunResult with the cause; the
 * suite logs one line per run with that cause, lists it under the section's problems in benchmarks.md, and exits
 * 1. The workers here are small scripts standing in for dist/run.js.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { RunResult } from './results';
import { methodKey, suiteSettings, type SectionSetting } from './settings';
import { runInWorker, runSuite, type SuiteOptions } from './suite';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-failed-run-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A worker script: `body` runs when the task arrives (as `task`). */
function workerScript(name: string, body: string): string {
  const file = path.join(tmp, `${name}.js`);
  fs.writeFileSync(file, `process.once('message', (task) => {\n${body}\n});\n`);
  return file;
}

const quadratic = suiteSettings({ quick: true }).find((s) => s.id === 'quadratic') as SectionSetting;
const method = quadratic.methods[0];

function options(workerScriptFile: string, extra: Partial<SuiteOptions> = {}): SuiteOptions {
  return {
    quick: true,
    outDir: undefined,
    backend: 'cpu',
    sections: ['quadratic'],
    png: false,
    json: false,
    command: 'test',
    workerScript: workerScriptFile,
    log: () => {},
    ...extra,
  };
}

const run = (section: SectionSetting, script: string): Promise<RunResult> =>
  runInWorker(section, methodKey(method), method.label, options(script));

describe('runInWorker: a run that fails', () => {
  it('a worker that exits without a result: failed, with its exit code', async () => {
    const r = await run(quadratic, workerScript('exit-3', 'process.exit(3);'));
    expect(r).toMatchObject({ section: 'quadratic', key: methodKey(method), label: method.label, status: 'failed', steps: 0 });
    expect(r.error).toBe('worker exited (code 3) without a result');
    expect(r.curve).toEqual([]);
  });

  it('a worker killed by a signal: failed, naming the signal', async () => {
    const r = await run(quadratic, workerScript('killed', "process.kill(process.pid, 'SIGKILL');"));
    expect(r.status).toBe('failed');
    expect(r.error).toBe('worker exited (signal SIGKILL) without a result');
  });

  it("a worker's own failed result is passed on as it is", async () => {
    const failed = {
      section: 'quadratic',
      key: methodKey(method),
      label: method.label,
      status: 'failed',
      error: 'inner solver diverged at step 4',
      steps: 3,
      trainSeconds: 0.5,
      wallSeconds: 0.7,
      setupSeconds: 0.1,
      curve: [],
      evals: [],
    };
    const script = workerScript('sends-failure', `process.send(${JSON.stringify(failed)}, () => process.exit(0));`);
    expect(await run(quadratic, script)).toEqual(failed);
  });

  it('a worker that hangs past the time limit: killed, timeout', async () => {
    const r = await run({ ...quadratic, workerTimeoutSeconds: 1 }, workerScript('hangs', 'setInterval(() => {}, 1000);'));
    expect(r.status).toBe('timeout');
    expect(r.error).toBe('worker killed after 1 s');
    expect(r.wallSeconds).toBeGreaterThanOrEqual(0.9);
  });
});

describe('runSuite with failing runs', () => {
  it('logs each failure with its cause, lists it in benchmarks.md, and exits 1', async () => {
    const lines: string[] = [];
    const outDir = path.join(tmp, 'report');
    const code = await runSuite(options(workerScript('exit-5', 'process.exit(5);'), { outDir, log: (l) => lines.push(l) }));
    expect(code).toBe(1);
    for (const m of quadratic.methods) {
      expect(lines).toContain(`[quadratic] ${m.label}: failed — worker exited (code 5) without a result`);
    }
    const md = fs.readFileSync(path.join(outDir, 'benchmarks.md'), 'utf8');
    for (const m of quadratic.methods) {
      expect(md).toContain(`failed**`);
      expect(md).toContain(m.label);
    }
    expect(md).toContain('worker exited (code 5) without a result');
  });

  it('a diverged method is a result, not a failure: exit 0, with the divergence in the log', async () => {
    const lines: string[] = [];
    const body =
      'process.send({ section: task.section, key: task.key, label: task.key, status: "diverged", error: "outer loss NaN at step 2", ' +
      'steps: 1, trainSeconds: 0.1, wallSeconds: 0.2, setupSeconds: 0, curve: [], evals: [] }, () => process.exit(0));';
    const code = await runSuite(options(workerScript('diverges', body), { outDir: path.join(tmp, 'diverged'), log: (l) => lines.push(l) }));
    expect(code).toBe(0);
    expect(lines.filter((l) => / diverged, 1 steps, .* — outer loss NaN at step 2 \(load average [\d.]+ \/ [\d.]+ \/ [\d.]+\)$/.test(l))).toHaveLength(quadratic.methods.length);
  });
});
