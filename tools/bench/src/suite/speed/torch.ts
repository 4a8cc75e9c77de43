/**
 * Finding a Python with PyTorch and running a twin script (tools/bench/torch/<family>.py) on one workload.
 * The twin gets its settings as one JSON argument and prints one JSON line with its per-step times.
 */
import { spawn, spawnSync } from 'child_process';
import * as path from 'path';
import type { SpeedSideResult } from './results';
import { type SpeedWorkload, twinScript } from './workloads';

/** The environment variable naming the Python to use (`none`: do not look for PyTorch). */
export const TORCH_PYTHON_ENV = 'BILEVEL_TORCH_PYTHON';

/** Pythons tried after the environment variable, in order. */
export const DEFAULT_PYTHONS: readonly string[] = ['/usr/bin/python3', 'python3'];

export type TorchInfo =
  | { readonly found: true; readonly python: string; readonly version: string }
  | {
      readonly found: false;
      /** What was tried and why each failed, e.g. `/usr/bin/python3 (no module named torch)`. */
      readonly looked: readonly string[];
    };

/** The outcome of `python -c 'import torch'`: torch's version, or why it failed. */
export type TorchProbe = (python: string) => { readonly version: string } | { readonly error: string };

/** Runs the Python and imports torch (a minute at most). */
export const probeTorch: TorchProbe = (python) => {
  const r = spawnSync(python, ['-c', 'import torch, sys; sys.stdout.write(torch.__version__)'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.error)
    return { error: (r.error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : r.error.message };
  if (r.status !== 0) {
    const last = (r.stderr || '').trim().split('\n').pop() ?? '';
    return {
      error: /No module named/.test(last) ? 'no module named torch' : last || `exit code ${r.status}`,
    };
  }
  return { version: r.stdout.trim() };
};

/**
 * The first Python that imports torch: `$BILEVEL_TORCH_PYTHON` when set, then /usr/bin/python3, then
 * `python3` on the PATH. `BILEVEL_TORCH_PYTHON=none` turns the twins off.
 */
export function findTorch(
  env: Readonly<Record<string, string | undefined>> = process.env,
  probe: TorchProbe = probeTorch,
): TorchInfo {
  const looked: string[] = [];
  const chosen = env[TORCH_PYTHON_ENV];
  if (chosen === 'none') return { found: false, looked: [`${TORCH_PYTHON_ENV}=none (twins turned off)`] };
  const candidates = [...(chosen ? [chosen] : []), ...DEFAULT_PYTHONS.filter((p) => p !== chosen)];
  if (!chosen) looked.push(`${TORCH_PYTHON_ENV} (not set)`);
  for (const python of candidates) {
    const r = probe(python);
    if ('version' in r) return { found: true, python, version: r.version };
    looked.push(`${python} (${r.error})`);
  }
  return { found: false, looked };
}

/** The text of a missing PyTorch, as the report shows it. */
export function torchMissingText(info: TorchInfo): string {
  return info.found ? '' : `PyTorch not found (looked for ${info.looked.join(', ')})`;
}

/** The settings a twin receives (as JSON in argv[1]). */
export interface TwinConfig {
  readonly workload: SpeedWorkload;
  /** Threads for torch.set_num_threads: the Bilevel side's. */
  readonly threads: number;
  /** The folder of arrays written by the Bilevel worker, when the workload has data. */
  readonly data?: string;
  readonly seed: number;
  /**
   * The OpenBLAS kernel family the Bilevel side ran on (e.g. `SkylakeX`), given to the twin as
   * `OPENBLAS_CORETYPE` so both sides multiply with the same kernels (Debian's torch links the same OpenBLAS).
   */
  readonly openblasCore?: string;
}

/** The OpenBLAS kernel family named in a backend description such as `OpenBLAS 0.3.21 (SkylakeX), 2 threads`. */
export function openBlasCoreOf(description: string | undefined): string | undefined {
  return /OpenBLAS [0-9.]+ \(([A-Za-z0-9_]+)\)/.exec(description ?? '')?.[1];
}

/** tools/bench (this file is tools/bench/dist/suite/speed/torch.js). */
export const BENCH_ROOT = path.resolve(__dirname, '..', '..', '..');

/** Parses a twin's output: the last line that is a JSON object with `timesMs`. */
export function parseTwinOutput(stdout: string): SpeedSideResult | null {
  const lines = stdout.trim().split('\n').reverse();
  for (const line of lines) {
    const t = line.trim();
    if (!t.startsWith('{')) continue;
    try {
      const v = JSON.parse(t) as {
        timesMs?: unknown;
        checks?: unknown;
        setupSeconds?: unknown;
        error?: unknown;
        status?: unknown;
      };
      if (typeof v.error === 'string') {
        return {
          status: v.status === 'skipped' ? 'skipped' : 'failed',
          error: v.error,
          timesMs: [],
          checks: {},
        };
      }
      if (!Array.isArray(v.timesMs)) continue;
      return {
        status: 'completed',
        timesMs: v.timesMs.map(Number),
        checks: (v.checks && typeof v.checks === 'object' ? v.checks : {}) as Record<string, number>,
        ...(typeof v.setupSeconds === 'number' ? { setupSeconds: v.setupSeconds } : {}),
      };
    } catch {
      continue;
    }
  }
  return null;
}

/** The twin's environment: this process's, with its thread counts and OpenBLAS kernels set. */
export function twinEnvironment(config: TwinConfig): NodeJS.ProcessEnv {
  return {
    ...process.env,
    OMP_NUM_THREADS: String(config.threads),
    MKL_NUM_THREADS: String(config.threads),
    OPENBLAS_NUM_THREADS: String(config.threads),
    ...(config.openblasCore ? { OPENBLAS_CORETYPE: config.openblasCore } : {}),
  };
}

/** Runs the twin of a workload; never throws. */
export function runTwin(python: string, config: TwinConfig): Promise<SpeedSideResult> {
  const script = path.join(BENCH_ROOT, twinScript(config.workload.family));
  return new Promise((resolve) => {
    const child = spawn(python, [script, JSON.stringify(config)], {
      cwd: BENCH_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: twinEnvironment(config),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, config.workload.timeoutSeconds * 1000);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ status: 'failed', error: `${python}: ${e.message}`, timesMs: [], checks: {} });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (timedOut) {
        resolve({
          status: 'timeout',
          error: `twin killed after ${config.workload.timeoutSeconds} s`,
          timesMs: [],
          checks: {},
        });
        return;
      }
      const parsed = parseTwinOutput(stdout);
      if (parsed && (code === 0 || parsed.status !== 'completed')) {
        resolve(parsed);
        return;
      }
      const tail = stderr.trim().split('\n').slice(-3).join(' / ');
      resolve({
        status: 'failed',
        error: `twin exited with code ${code}${tail ? `: ${tail}` : ''}`,
        timesMs: [],
        checks: {},
      });
    });
  });
}
