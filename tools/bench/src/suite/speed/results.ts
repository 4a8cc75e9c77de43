/** What the two sides of a speed workload report, and the task a Bilevel worker runs. */

export type SpeedStatus = 'completed' | 'failed' | 'timeout' | 'skipped';

/** One side (Bilevel or PyTorch) of one workload. */
export interface SpeedSideResult {
  readonly status: SpeedStatus;
  /** Why it failed or was skipped. */
  readonly error?: string;
  /** Milliseconds of each timed step (or per call, for micro workloads). */
  readonly timesMs: readonly number[];
  /**
   * Checks of what was computed, after all steps: `xRelativeError` (‖x − x*‖/‖x*‖, quadratic), `outerLoss`
   * (the last step's outer loss), `loss` (the network's loss), …
   */
  readonly checks: Readonly<Record<string, number>>;
  /** Seconds to build the problem, data and model (not timed). */
  readonly setupSeconds?: number;
}

/** What a Bilevel worker reports: its side, the backend and threads, and the data file for the twin. */
export interface BilevelSpeedResult extends SpeedSideResult {
  readonly backend?: { readonly name: string; readonly reason: string };
  /** Threads of the backend (native BLAS threads for cpu-blas, 1 for the plain JS backend). */
  readonly threads?: number;
  /** A folder of arrays (problem data) the twin reads, written by the worker when asked. */
  readonly twinData?: string;
}

/** A task for a worker process of the speed section. */
export interface SpeedTask {
  readonly kind: 'speed-task';
  readonly workload: string;
  readonly quick: boolean;
  readonly steps?: number;
  readonly backend: string;
  /** Where to write the problem's data for the twin (a new folder), when a twin will run. */
  readonly twinDataDir?: string;
}

export function isSpeedTask(m: unknown): m is SpeedTask {
  return typeof m === 'object' && m !== null && (m as { kind?: unknown }).kind === 'speed-task';
}

export { median } from '../stats';

export function minimum(values: readonly number[]): number {
  return values.length === 0 ? NaN : Math.min(...values);
}
