/**
 * Runs the speed section: for each workload, the Bilevel side in a worker process, then its PyTorch twin,
 * one after the other (never at the same time: they would compete for the cores).
 */
import { fork } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describeSearch, findFashionMnist } from '@bilevel/datasets';
import { type BilevelSpeedResult, type SpeedSideResult, type SpeedTask, median } from './results';
import { type TorchInfo, findTorch, openBlasCoreOf, runTwin } from './torch';
import { type SpeedWorkload, selectWorkloads, speedWorkloads } from './workloads';

export interface SpeedRow {
  readonly workload: SpeedWorkload;
  readonly bilevel: BilevelSpeedResult;
  /** Absent when PyTorch was not found. */
  readonly torch?: SpeedSideResult;
  /** 1-minute load average when each side started (the machine may be shared). */
  readonly load?: { readonly bilevel: number; readonly torch?: number };
}

export interface SpeedOutcome {
  readonly rows: readonly SpeedRow[];
  readonly torch: TorchInfo;
  readonly loadAverageStart: readonly number[];
  readonly loadAverageEnd: readonly number[];
  readonly seconds: number;
}

export interface SpeedOptions {
  readonly quick: boolean;
  /** Timed steps of every workload (`--speed-steps`). */
  readonly steps?: number;
  /** Workload ids or families (`--workloads`); all when absent. */
  readonly workloads?: readonly string[];
  readonly backend: string;
  /** dist/run.js, started with `__worker`. */
  readonly workerScript: string;
  readonly log: (line: string) => void;
  /** How PyTorch is looked for (tests pass their own). */
  readonly findTorch?: () => TorchInfo;
}

function failed(status: SpeedSideResult['status'], error: string): BilevelSpeedResult {
  return { status, error, timesMs: [], checks: {} };
}

/** Runs the Bilevel side of one workload in a worker process; never throws. */
export function runBilevelWorker(
  workerScript: string,
  task: SpeedTask,
  timeoutSeconds: number,
): Promise<BilevelSpeedResult> {
  return new Promise((resolve) => {
    let settled = false;
    const child = fork(workerScript, ['__worker'], {
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const finish = (r: BilevelSpeedResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(failed('timeout', `worker killed after ${timeoutSeconds} s`));
    }, timeoutSeconds * 1000);
    child.on('message', (m: unknown) => finish(m as BilevelSpeedResult));
    child.on('error', (e) => finish(failed('failed', `worker: ${e.message}`)));
    child.on('close', (code, signal) =>
      setTimeout(
        () =>
          finish(
            failed(
              'failed',
              `worker exited (${signal ? `signal ${signal}` : `code ${code}`}) without a result`,
            ),
          ),
        200,
      ),
    );
    child.send(task);
  });
}

/** Whether the twin reads arrays written by the Bilevel worker. */
export function twinNeedsData(w: SpeedWorkload): boolean {
  const s = w.spec;
  if (s.kind === 'network') return true;
  return s.kind === 'pipeline' && ['quadratic', 'hyper-cleaning', 'few-shot'].includes(s.problem.name);
}

function ms(v: number): string {
  return Number.isFinite(v) ? (v < 1 ? v.toPrecision(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)) : '—';
}

function summary(side: string, r: SpeedSideResult): string {
  if (r.status !== 'completed') return `${side} ${r.status}${r.error ? ` (${r.error})` : ''}`;
  return `${side} ${ms(median(r.timesMs))} ms`;
}

export async function runSpeedSection(options: SpeedOptions): Promise<SpeedOutcome> {
  const t0 = performance.now();
  const loadAverageStart = os.loadavg();
  const workloads = selectWorkloads(
    speedWorkloads({ quick: options.quick, steps: options.steps }),
    options.workloads,
  );
  const torch = (options.findTorch ?? (() => findTorch()))();
  options.log(
    torch.found
      ? `[speed] PyTorch ${torch.version} (${torch.python})`
      : `[speed] PyTorch not found: the twins do not run`,
  );
  const rows: SpeedRow[] = [];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bilevel-speed-'));
  try {
    for (const w of workloads) {
      if (w.data === 'fashion-mnist' && !findFashionMnist()) {
        const why = `Fashion-MNIST not found (searched: ${describeSearch('fashion-mnist')})`;
        const skipped = failed('skipped', why);
        rows.push({ workload: w, bilevel: skipped, ...(torch.found ? { torch: skipped } : {}) });
        options.log(`[speed] ${w.id}: skipped — ${why}`);
        continue;
      }
      const dataDir =
        torch.found && twinNeedsData(w) ? path.join(tmp, w.id.replace(/[^a-z0-9-]+/gi, '_')) : undefined;
      const task: SpeedTask = {
        kind: 'speed-task',
        workload: w.id,
        quick: options.quick,
        ...(options.steps !== undefined ? { steps: options.steps } : {}),
        backend: options.backend,
        ...(dataDir ? { twinDataDir: dataDir } : {}),
      };
      const loadBilevel = os.loadavg()[0];
      const bilevel = await runBilevelWorker(options.workerScript, task, w.timeoutSeconds);
      let twin: SpeedSideResult | undefined;
      let loadTorch: number | undefined;
      if (torch.found) {
        loadTorch = os.loadavg()[0];
        if (dataDir && !bilevel.twinData) {
          twin = failed('skipped', 'not run: the Bilevel side wrote no data for it');
        } else {
          twin = await runTwin(torch.python, {
            workload: w,
            threads: bilevel.threads ?? os.cpus().length,
            ...(dataDir ? { data: dataDir } : {}),
            ...(openBlasCoreOf(bilevel.backend?.reason)
              ? { openblasCore: openBlasCoreOf(bilevel.backend?.reason) }
              : {}),
            seed: 0,
          });
        }
        if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
      }
      rows.push({
        workload: w,
        bilevel,
        ...(twin ? { torch: twin } : {}),
        load: { bilevel: loadBilevel, ...(loadTorch !== undefined ? { torch: loadTorch } : {}) },
      });
      options.log(
        `[speed] ${w.id}: ${summary('Bilevel', bilevel)}${twin ? `, ${summary('PyTorch', twin)}` : ''}`,
      );
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return {
    rows,
    torch,
    loadAverageStart,
    loadAverageEnd: os.loadavg(),
    seconds: (performance.now() - t0) / 1000,
  };
}
