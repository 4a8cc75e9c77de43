/**
 * End-to-end: the built `bilevel` executable (dist/main.js) run as a real subprocess on tiny configs, with
 * the test plugins transpiled to JavaScript and loaded through the config's `plugins` list.
 */
import { execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { PNG } from 'pngjs';
import * as ts from 'typescript';
import { makeTempDir, readCsv, readJsonl, tinyConfig } from './test-utils/helpers';
import { linePaths, parseXml } from './test-utils/xml';

const root = path.resolve(__dirname, '..', '..', '..');
const main = path.resolve(__dirname, '..', 'dist', 'main.js');
const tmp = makeTempDir();
let pluginFile = '';

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI; `whileRunning` may act on the live process (e.g. send SIGINT). */
function bilevel(args: string[], whileRunning?: (child: ReturnType<typeof spawn>) => void): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [main, ...args], {
      cwd: tmp.dir,
      // Plugin modules outside the repository find @bilevel/core in the workspace's node_modules.
      env: { ...process.env, NODE_PATH: path.join(root, 'node_modules'), BILEVEL_BACKEND: '' },
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

function writeConfig(name: string, config: Record<string, unknown>): string {
  const file = path.join(tmp.dir, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({ plugins: [pluginFile], ...config }));
  return file;
}

beforeAll(() => {
  // Builds the CLI and the packages it imports (nx builds dependencies first and caches).
  execFileSync('npx', ['nx', 'run', '@bilevel/cli:build', '--outputStyle=static'], { cwd: root, stdio: 'pipe', timeout: 600_000 });
  const source = fs.readFileSync(path.join(__dirname, 'test-utils', 'test-plugins.ts'), 'utf8');
  const js = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
  }).outputText;
  pluginFile = path.join(tmp.dir, 'test-plugins.js');
  fs.writeFileSync(pluginFile, js);
}, 600_000);

afterAll(() => tmp.cleanup());

describe('bilevel (subprocess)', () => {
  it('runs an experiment and writes metrics, summary and plots', async () => {
    const out = path.join(tmp.dir, 'results-ok');
    const config = writeConfig('ok', tinyConfig({ trainer: { steps: 6, evalEvery: 2 } }));
    const r = await bilevel(['run', config, '--out', out, '--backend', 'cpu']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/bilevel: backend cpu/);
    expect(r.stdout).toMatch(/\[exact · seed 0\] step 1\/6/);
    expect(r.stdout).toMatch(/method\s+runs\s+steps\s+train time \(s\)\s+outer loss\s+trueGradientNorm\s+oracle calls/);

    const csv = readCsv(path.join(out, 'runs', 'exact-seed0.csv'));
    expect(csv.rows.map((row) => Number(row.step))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(csv.rows.every((row) => Number.isFinite(Number(row.outerLoss)))).toBe(true);
    const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
    expect(summary.status).toBe('completed');
    expect(summary.methods.map((m: { label: string; completed: number }) => [m.label, m.completed])).toEqual([
      ['exact', 1],
      ['half <step>', 1],
    ]);
    expect(fs.readFileSync(path.join(out, 'summary.md'), 'utf8')).toMatch(/## Final results/);

    for (const name of ['outer-loss-vs-step', 'outer-loss-vs-time', 'truegradientnorm-vs-step', 'truegradientnorm-vs-time']) {
      const svg = parseXml(fs.readFileSync(path.join(out, `${name}.svg`), 'utf8'));
      expect(linePaths(svg)).toHaveLength(2);
      const png = PNG.sync.read(fs.readFileSync(path.join(out, `${name}.png`)));
      expect([png.width, png.height]).toEqual([400, 250]);
      let coloured = 0;
      for (let i = 0; i < png.data.length; i += 4) {
        const [r, g, b] = [png.data[i], png.data[i + 1], png.data[i + 2]];
        if (Math.max(r, g, b) - Math.min(r, g, b) > 80) coloured++;
      }
      expect(coloured).toBeGreaterThan(100);
    }
  });

  it('stops on SIGINT at the end of a step, keeps partial results and exits 130', async () => {
    const out = path.join(tmp.dir, 'results-interrupted');
    const config = writeConfig('long', tinyConfig({ trainer: { steps: 100000, evalEvery: 5 } }));
    const jsonl = path.join(out, 'runs', 'exact-seed0.jsonl');
    const r = await bilevel(['run', config, '--out', out, '--backend', 'cpu'], (child) => {
      const poll = setInterval(() => {
        if (fs.existsSync(jsonl) && fs.readFileSync(jsonl, 'utf8').split('\n').length > 12) {
          clearInterval(poll);
          child.kill('SIGINT');
        }
      }, 100);
      child.on('close', () => clearInterval(poll));
    });
    expect(r.code).toBe(130);
    expect(r.stderr).toMatch(/interrupted: stopping after the current step/);
    const rows = readJsonl(jsonl);
    const csv = readCsv(path.join(out, 'runs', 'exact-seed0.csv'));
    expect(rows.length).toBeGreaterThan(10);
    expect(csv.rows).toHaveLength(rows.length);
    const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
    expect(summary.status).toBe('interrupted');
    expect(summary.runs[0]).toMatchObject({ method: 'exact', status: 'interrupted', steps: rows.length });
    expect(summary.runs[1]).toMatchObject({ status: 'not-run' });
    expect(fs.readFileSync(path.join(out, 'summary.md'), 'utf8')).toMatch(/status: \*\*interrupted\*\*/);
    parseXml(fs.readFileSync(path.join(out, 'outer-loss-vs-step.svg'), 'utf8'));
    expect(PNG.sync.read(fs.readFileSync(path.join(out, 'outer-loss-vs-time.png'))).width).toBe(400);
  });

  it('on SIGTERM stops like Ctrl-C and saves a checkpoint of the step it stopped at', async () => {
    const out = path.join(tmp.dir, 'results-sigterm');
    // No periodic checkpoints (every: 0): the one found is the interrupt's.
    const config = writeConfig(
      'term',
      tinyConfig({ trainer: { steps: 100000, evalEvery: 5 }, checkpoint: { every: 0 }, output: { plots: false } }),
    );
    const jsonl = path.join(out, 'runs', 'exact-seed0.jsonl');
    const r = await bilevel(['run', config, '--out', out, '--backend', 'cpu'], (child) => {
      const poll = setInterval(() => {
        if (fs.existsSync(jsonl) && fs.readFileSync(jsonl, 'utf8').split('\n').length > 5) {
          clearInterval(poll);
          child.kill('SIGTERM');
        }
      }, 50);
      child.on('close', () => clearInterval(poll));
    });
    expect(r.code).toBe(130);
    expect(r.stdout).toMatch(/continue with: bilevel resume /);
    const rows = readJsonl(jsonl);
    const files = fs.readdirSync(path.join(out, 'checkpoints', 'exact-seed0'));
    expect(files).toEqual([`checkpoint-${String(rows.length).padStart(8, '0')}.safetensors`]);
  });

  it('killed with SIGKILL mid-run and resumed, ends with the same metrics as an uninterrupted run', async () => {
    // The second run (AID-CG with 2 CG steps per estimate, so its warm start matters, and Adam) sleeps 4 ms per
    // inner solve: its 60 steps take over half a second, time enough to kill it after its first checkpoint (step 10).
    const config = writeConfig(
      'resumable',
      tinyConfig({
        methods: [
          {
            label: 'es',
            innerSolver: { name: 'test-gd', options: { iterations: 5 } },
            estimator: { name: 'es', options: { directions: 3 } },
            outerOptimizer: { name: 'momentum', options: { learningRate: 0.05 } },
            trainer: { steps: 10 },
          },
          {
            label: 'cg-adam',
            innerSolver: { name: 'test-gd', options: { iterations: 5, sleepMs: 4 } },
            estimator: { name: 'cg', options: { maxIterations: 2, tolerance: 0 } },
            outerOptimizer: { name: 'adam', options: { learningRate: 0.05 } },
          },
        ],
        trainer: { steps: 60, evalEvery: 10 },
        checkpoint: { every: 10 },
        output: { plots: false },
      }),
    );
    const reference = path.join(tmp.dir, 'results-reference');
    const killed = path.join(tmp.dir, 'results-killed');
    const ref = await bilevel(['run', config, '--out', reference, '--backend', 'cpu', '--quiet']);
    expect(ref.code).toBe(0);

    const checkpoints = path.join(killed, 'checkpoints', 'cg-adam-seed0');
    const first = await bilevel(['run', config, '--out', killed, '--backend', 'cpu', '--quiet'], (child) => {
      const poll = setInterval(() => {
        if (fs.existsSync(checkpoints) && fs.readdirSync(checkpoints).some((f) => /^checkpoint-\d+\.safetensors$/.test(f))) {
          clearInterval(poll);
          child.kill('SIGKILL');
        }
      }, 5);
      child.on('close', () => clearInterval(poll));
    });
    expect(first.signal).toBe('SIGKILL');
    const cut = JSON.parse(fs.readFileSync(path.join(killed, 'summary.json'), 'utf8'));
    expect(cut.status).toBe('running');
    expect(cut.runs.map((r: { method: string; status: string }) => [r.method, r.status])).toEqual([['es', 'completed']]);
    const rowsAtKill = readJsonl(path.join(killed, 'runs', 'cg-adam-seed0.jsonl')).length;
    expect(rowsAtKill).toBeGreaterThanOrEqual(10);
    expect(rowsAtKill).toBeLessThan(60);

    const resumed = await bilevel(['resume', killed]);
    expect(resumed.stderr).toBe('');
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toMatch(/es, seed 0: already completed \(10 steps\), kept/);
    expect(resumed.stdout).toMatch(/continuing from step ([1-5]0) \(checkpoints\/cg-adam-seed0\/checkpoint-000000[1-5]0\.safetensors\)/);

    const strip = (row: Record<string, unknown>): Record<string, unknown> => {
      const { time: _t, wallTime: _w, ...rest } = row;
      return rest;
    };
    for (const [file, steps] of [
      ['es-seed0', 10],
      ['cg-adam-seed0', 60],
    ] as const) {
      const got = readJsonl(path.join(killed, 'runs', `${file}.jsonl`));
      const want = readJsonl(path.join(reference, 'runs', `${file}.jsonl`));
      expect(got.map((r) => r.step)).toEqual(Array.from({ length: steps }, (_, i) => i + 1));
      expect(got.map(strip)).toEqual(want.map(strip));
      expect(readCsv(path.join(killed, 'runs', `${file}.csv`)).rows).toHaveLength(steps);
    }
    const a = JSON.parse(fs.readFileSync(path.join(killed, 'summary.json'), 'utf8'));
    const b = JSON.parse(fs.readFileSync(path.join(reference, 'summary.json'), 'utf8'));
    expect(a.status).toBe('completed');
    const finals = (s: { runs: { method: string; steps: number; finalOuterLoss: number; finalMetrics: unknown; oracleCalls: unknown }[] }) =>
      s.runs.map((r) => [r.method, r.steps, r.finalOuterLoss, r.finalMetrics, r.oracleCalls]);
    expect(finals(a)).toEqual(finals(b));
    expect(fs.existsSync(path.join(killed, 'checkpoints'))).toBe(false);
  });

  it('exits 2 with a clear message (no stack trace) on a bad config', async () => {
    const config = writeConfig('bad', tinyConfig({ trainer: { steps: 0 } }));
    const r = await bilevel(['run', config]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^bilevel: config error: trainer\.steps: Number must be greater than 0 \(got 0\)/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('exits 2 when a data file is missing', async () => {
    const config = writeConfig('nodata', tinyConfig({ problem: { name: 'test-data', options: { file: '/nonexistent/data.idx' } } }));
    const r = await bilevel(['run', config, '--out', path.join(tmp.dir, 'results-nodata'), '--backend', 'cpu']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/data error: data file not found: \/nonexistent\/data\.idx/);
  });
});
