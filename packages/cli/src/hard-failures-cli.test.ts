/**
 * Hard failures through the built `bilevel` executable (dist/main.js) as real processes: two commands on one
 * results folder at once, the lock released on SIGTERM and taken over after SIGKILL, `--out /proc/…` refused
 * at once (it used to spin forever), and plugins whose own imports fail — one that cannot resolve
 * `@bilevel/core`, one that brings its own copy of it.
 */
import { execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ts from 'typescript';
import { makeTempDir, tinyConfig } from './test-utils/helpers';

const root = path.resolve(__dirname, '..', '..', '..');
const main = path.resolve(__dirname, '..', 'dist', 'main.js');
const tmp = makeTempDir();
let pluginFile = '';
afterAll(() => tmp.cleanup());

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the executable; `whileRunning` may act on the live process. No NODE_PATH unless `nodePath`. */
function bilevel(
  args: string[],
  options: { nodePath?: boolean; whileRunning?: (child: ReturnType<typeof spawn>) => void } = {},
): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, BILEVEL_BACKEND: '' };
    delete env.NODE_PATH;
    if (options.nodePath) env.NODE_PATH = path.join(root, 'node_modules');
    const child = spawn(process.execPath, [main, ...args], { cwd: tmp.dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    options.whileRunning?.(child);
  });
}

function writeConfig(name: string, config: Record<string, unknown>): string {
  const file = path.join(tmp.dir, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({ plugins: [pluginFile], ...config }));
  return file;
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1200 && !cond(); i++) await new Promise((r) => setTimeout(r, 50));
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

beforeAll(() => {
  execFileSync('npx', ['nx', 'run', '@bilevel/cli:build', '--outputStyle=static'], { cwd: root, stdio: 'pipe', timeout: 600_000 });
  const source = fs.readFileSync(path.join(__dirname, 'test-utils', 'test-plugins.ts'), 'utf8');
  const js = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
  }).outputText;
  pluginFile = path.join(tmp.dir, 'test-plugins.js');
  fs.writeFileSync(pluginFile, js);
}, 600_000);

/** A run that only ends when stopped (the test solver sleeps 2 ms per solve). */
function slowConfig(name: string): string {
  return writeConfig(
    name,
    tinyConfig({
      methods: [{ label: 'slow', innerSolver: { name: 'test-gd', options: { sleepMs: 2 } }, estimator: 'test-closed-form' }],
      trainer: { steps: 100000, evalEvery: 0 },
      checkpoint: { every: 20 },
      output: { plots: false },
    }),
  );
}

describe('two bilevel processes on one results folder', () => {
  it('the second exits 2 naming the holder; SIGTERM releases the lock; after SIGKILL the next command takes it over', async () => {
    const out = path.join(tmp.dir, 'shared');
    const lock = path.join(out, '.bilevel.lock');
    const config = slowConfig('slow');
    let second: Outcome | null = null;
    let holderPid = 0;
    const first = await bilevel(['run', config, '--out', out, '--backend', 'cpu', '--force'], {
      nodePath: true,
      whileRunning: (child) => {
        holderPid = child.pid ?? 0;
        void until(() => fs.existsSync(path.join(out, 'runs', 'slow-seed0.jsonl')), 'the first run').then(async () => {
          second = await bilevel(['run', config, '--out', out, '--backend', 'cpu', '--force'], { nodePath: true });
          child.kill('SIGTERM');
        });
      },
    });
    expect(second).not.toBeNull();
    const refused = second as unknown as Outcome;
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(
      new RegExp(`^bilevel: results folder ${out} is in use by pid ${holderPid} on ${os.hostname()} since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z \\(bilevel run ${config}`),
    );
    expect(first.code).toBe(130);
    expect(fs.existsSync(lock)).toBe(false);

    // Killed outright (while resuming): the lock stays behind, and the next command takes it over (the pid is gone).
    let killedPid = 0;
    const killed = await bilevel(['resume', out, '--backend', 'cpu'], {
      nodePath: true,
      whileRunning: (child) => {
        killedPid = child.pid ?? 0;
        void until(() => fs.existsSync(lock), 'the lock').then(() => setTimeout(() => child.kill('SIGKILL'), 300));
      },
    });
    expect(killed.signal).toBe('SIGKILL');
    expect(fs.existsSync(lock)).toBe(true);
    const next = await bilevel(['run', config, '--out', out, '--backend', 'cpu', '--force', '--steps', '5'], { nodePath: true });
    expect(next.stderr).toBe('');
    expect(next.code).toBe(0);
    expect(next.stdout).toMatch(new RegExp(`taking over the lock of pid ${killedPid} \\(started [^)]+\\), which is no longer running`));
    expect(fs.existsSync(lock)).toBe(false);
    const rows = fs.readFileSync(path.join(out, 'runs', 'slow-seed0.jsonl'), 'utf8').trim().split('\n');
    expect(rows.map((l) => (JSON.parse(l) as { step: number }).step)).toEqual([1, 2, 3, 4, 5]);
  });
});

describe('special file systems', () => {
  it('refuses --out /proc/x at once with exit 2 (it used to spin at full CPU)', async () => {
    const config = writeConfig('proc', tinyConfig({ trainer: { steps: 2 } }));
    const r = await bilevel(['run', config, '--out', '/proc/bilevel-x', '--backend', 'cpu'], {
      nodePath: true,
      whileRunning: (child) => {
        const t = setTimeout(() => child.kill('SIGKILL'), 60_000);
        child.on('close', () => clearTimeout(t));
      },
    });
    expect(r.signal).toBeNull();
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^bilevel: config error: output\.dir \(--out\): cannot write results into '\/proc\/bilevel-x': \/proc is a special file system/);
  });
});

describe('plugins whose own imports fail', () => {
  it('names the import of @bilevel/core that cannot be resolved (not "plugin not found")', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bilevel-plugin-'));
    try {
      const plugin = path.join(dir, 'my-plugin.js');
      fs.writeFileSync(plugin, "require('@bilevel/core');\n");
      const r = await bilevel(['list', 'estimators', '--plugin', plugin]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(
        /^bilevel: config error: plugins\.0: cannot load plugin module '.*my-plugin\.js' \(.*\): its import of '@bilevel\/core' \(in .*my-plugin\.js\) cannot be resolved; install @bilevel\/core where the plugin can find it/,
      );
      expect(r.stderr).not.toMatch(/module not found|\n\s+at /);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('detects a plugin that brings its own copy of @bilevel/core and names both copies', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bilevel-own-core-'));
    try {
      const modules = path.join(dir, 'node_modules');
      const copy = path.join(modules, '@bilevel', 'core');
      fs.mkdirSync(copy, { recursive: true });
      fs.copyFileSync(path.join(root, 'packages', 'core', 'package.json'), path.join(copy, 'package.json'));
      // What the package holds (its `files`): the compiled code and the bundled tfjs registrations.
      for (const part of ['dist', 'vendor']) {
        fs.cpSync(path.join(root, 'packages', 'core', part), path.join(copy, part), { recursive: true });
      }
      // The copy's own dependencies are the workspace's (so only @bilevel/core is doubled).
      for (const dep of ['tsyringe', 'reflect-metadata', 'zod', '@tensorflow']) {
        fs.symlinkSync(path.join(root, 'node_modules', dep), path.join(modules, dep));
      }
      const plugin = path.join(dir, 'plugin.js');
      fs.writeFileSync(
        plugin,
        "const core = require('@bilevel/core');\n" +
          "core.registerEstimator('own-core', () => ({ name: 'own-core', estimate: () => { throw new Error('unused'); } }));\n",
      );
      const r = await bilevel(['list', 'estimators', '--plugin', plugin]);
      expect(r.code).toBe(2);
      const realCore = fs.realpathSync(path.join(root, 'packages', 'core'));
      expect(r.stderr).toContain(
        `bilevel: config error: plugins.0: plugin module '${plugin}' (${plugin}) loaded its own copy of @bilevel/core (${copy}) beside the one bilevel uses (${realCore})`,
      );
      expect(r.stderr).toMatch(/Make @bilevel\/core a peerDependency of the plugin/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
