/**
 * `bilevel resume` on an experiment killed (SIGKILL) during its first run, before any summary.json was written:
 * the folder holds only config.resolved.json, the first run's rows and its checkpoints. It must be recognised as
 * a results folder and continued to the end, every row written once; `compare` on it before the resume says it is
 * a results folder without a summary yet.
 */
import { execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as ts from 'typescript';
import { makeTempDir, readJsonl, tinyConfig } from './test-utils/helpers';

const root = path.resolve(__dirname, '..', '..', '..');
const main = path.resolve(__dirname, '..', 'dist', 'main.js');
const tmp = makeTempDir();
afterAll(() => tmp.cleanup());

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function bilevel(args: string[], whileRunning?: (child: ReturnType<typeof spawn>) => void): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [main, ...args], {
      cwd: tmp.dir,
      // The plugin module outside the repository finds @bilevel/core and tfjs in the workspace's node_modules.
      env: { ...process.env, BILEVEL_BACKEND: 'cpu', NODE_PATH: path.join(root, 'node_modules') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    whileRunning?.(child);
  });
}

const rowsIn = (file: string): number => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).length : 0);

beforeAll(() => {
  execFileSync('npx', ['nx', 'run', '@bilevel/cli:build', '--outputStyle=static'], { cwd: root, stdio: 'pipe', timeout: 600_000 });
}, 600_000);

it('resume continues an experiment killed before its first summary, each row once', async () => {
  // The test plugins as JavaScript, loaded through the config's plugins list.
  const source = fs.readFileSync(path.join(__dirname, 'test-utils', 'test-plugins.ts'), 'utf8');
  const pluginFile = path.join(tmp.dir, 'test-plugins.js');
  fs.writeFileSync(
    pluginFile,
    ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    }).outputText,
  );
  const dir = path.join(tmp.dir, 'killed');
  const config = path.join(tmp.dir, 'slow.json');
  fs.writeFileSync(
    config,
    JSON.stringify({
      plugins: [pluginFile],
      ...tinyConfig({
        // 40 steps of at least 25 ms each: killed after its first checkpoint, long before the run ends.
        methods: [{ label: 'slow', innerSolver: { name: 'test-gd', options: { sleepMs: 25 } }, estimator: 'test-closed-form' }],
        trainer: { steps: 40, evalEvery: 0 },
        checkpoint: { every: 5 },
        output: { plots: false, dir },
      }),
    }),
  );
  const jsonl = path.join(dir, 'runs', 'slow-seed0.jsonl');
  const killed = await bilevel(['run', config], (child) => {
    const timer = setInterval(() => {
      if (rowsIn(jsonl) >= 7) {
        clearInterval(timer);
        child.kill('SIGKILL');
      }
    }, 5);
    child.on('close', () => clearInterval(timer));
  });
  expect({ signal: killed.signal, stderr: killed.stderr }).toEqual({ signal: 'SIGKILL', stderr: '' });
  expect(fs.existsSync(path.join(dir, 'summary.json'))).toBe(false);
  expect(fs.existsSync(path.join(dir, 'config.resolved.json'))).toBe(true);
  expect(rowsIn(jsonl)).toBeLessThan(40);

  const compare = await bilevel(['compare', dir]);
  expect(compare.code).toBe(2);
  expect(compare.stderr).toContain('is a results folder without a summary yet');

  const resumed = await bilevel(['resume', dir]);
  expect(resumed.stderr).toBe('');
  expect(resumed.code).toBe(0);
  expect(resumed.stdout).toMatch(/continuing from step \d+/);
  const summary = JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8'));
  expect(summary.status).toBe('completed');
  expect(summary.runs.map((r: { status: string; steps: number }) => [r.status, r.steps])).toEqual([['completed', 40]]);
  const steps = (readJsonl(jsonl) as { step: number }[]).map((r) => r.step);
  expect(steps).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
}, 120_000);
