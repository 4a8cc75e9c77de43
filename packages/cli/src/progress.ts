import { formatDuration, formatNumber } from './format';
import type { MetricsRow } from './run-recorder';

/** Where progress goes: `process.stdout` or a test's buffer. */
export interface OutputStream {
  /** Writes text. */
  write(chunk: string): unknown;
  /** Whether it is a terminal (then a live bar is drawn). */
  readonly isTTY?: boolean;
  /** Terminal width in columns. */
  readonly columns?: number;
}

/** Options of {@link ProgressReporter}. */
export interface ProgressOptions {
  /** A live bar redrawn in place (terminal) instead of plain log lines. */
  readonly tty: boolean;
  /** Nothing at all. */
  readonly quiet?: boolean;
  /** Plain lines: one after at least this many seconds since the previous one. */
  readonly intervalSeconds?: number;
  /** Plain lines: also one every this many steps. */
  readonly everySteps?: number;
  /** Clock in seconds (tests). */
  readonly now?: () => number;
}

/** Which run is starting, for the progress display. */
export interface RunInfo {
  /** Position of the run (1-based). */
  readonly index: number;
  /** Number of runs of the experiment. */
  readonly total: number;
  /** The method's label. */
  readonly label: string;
  /** The seed. */
  readonly seed: number;
  /** Outer steps planned. */
  readonly steps: number;
  /** Time limit of the run, if any. */
  readonly timeLimitSeconds?: number;
  /** Name of the problem's main metric, shown beside the loss. */
  readonly mainMetric?: string;
}

/** Seconds left: from the wall time per step so far, capped by the time limit. */
export function estimateRemaining(
  step: number,
  steps: number,
  wallSeconds: number,
  trainSeconds: number,
  timeLimitSeconds?: number,
): number | undefined {
  if (step <= 0) return undefined;
  let eta = (wallSeconds / step) * Math.max(0, steps - step);
  if (timeLimitSeconds !== undefined && trainSeconds > 0) {
    const byTime = Math.max(0, timeLimitSeconds - trainSeconds) * (wallSeconds / trainSeconds);
    eta = Math.min(eta, byTime);
  }
  return eta;
}

/**
 * Progress of the runs of an experiment: on a terminal a bar per run, redrawn in place (step, elapsed,
 * ETA, outer loss, main metric); otherwise plain log lines, throttled in time (and optionally by steps).
 */
export class ProgressReporter {
  private run: RunInfo | null = null;
  private lastDraw = -Infinity;
  private lastLineStep = 0;
  private barVisible = false;
  private lastMain: number | undefined;
  private readonly now: () => number;

  constructor(
    private readonly out: OutputStream,
    private readonly options: ProgressOptions,
  ) {
    this.now = options.now ?? (() => performance.now() / 1000);
  }

  /** A message line (clears the bar first on a terminal). */
  log(line: string): void {
    if (this.options.quiet) return;
    this.clearBar();
    this.out.write(line + '\n');
  }

  /** Starts the display of a run. */
  startRun(info: RunInfo): void {
    this.run = info;
    this.lastDraw = -Infinity;
    this.lastLineStep = 0;
    this.lastMain = undefined;
  }

  /** Shows the progress after a step. */
  step(row: MetricsRow): void {
    const run = this.run;
    if (!run || this.options.quiet) return;
    if (run.mainMetric && row.metrics[run.mainMetric] !== undefined) this.lastMain = row.metrics[run.mainMetric];
    const t = this.now();
    const last = row.step >= run.steps;
    if (this.options.tty) {
      if (last || t - this.lastDraw >= 0.1) {
        this.lastDraw = t;
        this.drawBar(row);
      }
      return;
    }
    const every = this.options.everySteps;
    const due =
      row.step === 1 ||
      last ||
      t - this.lastDraw >= (this.options.intervalSeconds ?? 2) ||
      (every !== undefined && row.step - this.lastLineStep >= every);
    if (due) {
      this.lastDraw = t;
      this.lastLineStep = row.step;
      this.out.write(this.plainLine(row) + '\n');
    }
  }

  /** Ends the current run's display with a closing line. */
  endRun(line: string): void {
    if (this.options.quiet) return;
    if (this.barVisible) {
      this.out.write('\n');
      this.barVisible = false;
    }
    this.out.write(line + '\n');
    this.run = null;
  }

  private values(row: MetricsRow): string {
    const run = this.run as RunInfo;
    const parts = [`loss ${formatNumber(row.outerLoss)}`];
    if (run.mainMetric) parts.push(`${run.mainMetric} ${formatNumber(this.lastMain)}`);
    return parts.join('  ');
  }

  private eta(row: MetricsRow): number | undefined {
    const run = this.run as RunInfo;
    return estimateRemaining(row.step, run.steps, row.wallTime, row.time, run.timeLimitSeconds);
  }

  private plainLine(row: MetricsRow): string {
    const run = this.run as RunInfo;
    return (
      `[${run.label} · seed ${run.seed}] step ${row.step}/${run.steps}  ` +
      `elapsed ${formatDuration(row.wallTime)}  ETA ${formatDuration(this.eta(row))}  ` +
      `${this.values(row)}  |∇Φ| ${formatNumber(row.hypergradientNorm)}`
    );
  }

  private drawBar(row: MetricsRow): void {
    const run = this.run as RunInfo;
    const columns = this.out.columns && this.out.columns > 20 ? this.out.columns : 100;
    const head = `${run.label} · seed ${run.seed} `;
    const tail = ` ${row.step}/${run.steps} ${formatDuration(row.wallTime)}<${formatDuration(this.eta(row))} ${this.values(row)}`;
    const room = columns - head.length - tail.length - 3;
    const barWidth = Math.max(8, Math.min(30, room));
    const frac = Math.min(1, row.step / Math.max(1, run.steps));
    const filled = Math.round(frac * barWidth);
    const bar = '█'.repeat(filled) + '░'.repeat(barWidth - filled);
    let line = `${head}▕${bar}▏${tail}`;
    if ([...line].length > columns - 1) line = [...line].slice(0, columns - 1).join('');
    this.out.write(`\r\x1b[2K${line}`);
    this.barVisible = true;
  }

  private clearBar(): void {
    if (this.barVisible) {
      this.out.write('\r\x1b[2K');
      this.barVisible = false;
    }
  }
}
