/**
 * Runs the speed section: for each workload, the Bilevel side in a worker process and its PyTorch twin, never
 * computing at the same time (they would compete for the cores). For the pipelines and the network (not
 * few-shot, see canInterleave) both are started and time alternating blocks of steps (interleave.ts); for
 * the others one side runs after the other.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describeSearch, findFashionMnist } from '@bilevel/datasets';
import { type BilevelSpeedResult, type SpeedSideResult, type SpeedTask, median } from './results';
import { blockSize, forkSpeedWorker, runInterleaved } from './interleave';
import { type TorchInfo, type TwinConfig, findTorch, openBlasCoreOf, runTwin } from './torch';
import { type SpeedWorkload, selectWorkloads, speedWorkloads } from './workloads';

export interface SpeedRow {
  readonly workload: SpeedWorkload;
  readonly bilevel: BilevelSpeedResult;
  /** Absent when PyTorch was not found. */
  readonly torch?: SpeedSideResult;
  /** 1-minute load average when each side started (the machine may be shared). */
  readonly load?: { readonly bilevel: number; readonly torch?: number };
  /** Whether the two sides timed alternating blocks of steps (else one after the other). */
  readonly interleaved?: boolean;
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
  /** Runs every workload side after side, never interleaved (`--speed-sequential`). */
  readonly sequential?: boolean;
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
    const child = forkSpeedWorker(workerScript);
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

/**
 * Whether the two sides time alternating blocks: pipelines whose twin data is complete before the timed steps
 * (not few-shot, whose twin replays the tasks drawn while timing) and the network. Micro-kernels run side after
 * side: each side's samples take well under a second in all, so load drift between the sides matters less
 * than what idling between blocks does to the JS heap (measured: add of 100 floats 1.9–2.0 µs side after side,
 * 2.4–3.1 µs in blocks).
 */
export function canInterleave(w: SpeedWorkload): boolean {
  if (w.spec.kind === 'micro') return false;
  return !(w.spec.kind === 'pipeline' && w.spec.problem.name === 'few-shot');
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
      const twinConfig = (info: { backend?: { reason: string }; threads?: number }): TwinConfig => {
        const core = openBlasCoreOf(info.backend?.reason);
        return {
          workload: w,
          threads: info.threads ?? os.cpus().length,
          ...(dataDir ? { data: dataDir } : {}),
          ...(core ? { openblasCore: core } : {}),
          seed: 0,
        };
      };
      if (torch.found && !options.sequential && canInterleave(w)) {
        let loadTorch: number | undefined;
        const pair = await runInterleaved({
          workerScript: options.workerScript,
          task,
          python: torch.python,
          twinConfig,
          steps: w.steps,
          blockSteps: blockSize(w.steps),
          timeoutSeconds: 2 * w.timeoutSeconds,
          onBilevelReady: () => (loadTorch = os.loadavg()[0]),
        });
        if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
        rows.push({
          workload: w,
          bilevel: pair.bilevel,
          torch: pair.torch,
          load: { bilevel: loadBilevel, ...(loadTorch !== undefined ? { torch: loadTorch } : {}) },
          interleaved: true,
        });
        options.log(`[speed] ${w.id} (interleaved): ${summary('Bilevel', pair.bilevel)}, ${summary('PyTorch', pair.torch)}`);
        continue;
      }
      const bilevel = await runBilevelWorker(options.workerScript, task, w.timeoutSeconds);
      let twin: SpeedSideResult | undefined;
      let loadTorch: number | undefined;
      if (torch.found) {
        loadTorch = os.loadavg()[0];
        if (dataDir && !bilevel.twinData) {
          twin = failed('skipped', 'not run: the Bilevel side wrote no data for it');
        } else {
          twin = await runTwin(torch.python, twinConfig(bilevel));
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
