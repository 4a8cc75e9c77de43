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
  /**
   * Interleaved with the twin: after its warm-up the worker says `speed-ready` and times only the blocks of
   * steps the parent asks for (`speed-block`), answering each with `speed-block-done`, until a block of 0.
   */
  readonly interleave?: boolean;
}

/** Parent → worker (interleaved runs): time `steps` more steps, or finish when 0. */
export interface SpeedBlock {
  readonly kind: 'speed-block';
  readonly steps: number;
}

/** Worker → parent (interleaved runs): warm-up done, waiting for the first block; the twin's settings need these. */
export interface SpeedReady {
  readonly kind: 'speed-ready';
  readonly backend?: BilevelSpeedResult['backend'];
  readonly threads?: number;
}

/** Worker → parent (interleaved runs): the times of the block just run. */
export interface SpeedBlockDone {
  readonly kind: 'speed-block-done';
  readonly timesMs: readonly number[];
}

export function isSpeedBlock(m: unknown): m is SpeedBlock {
  return typeof m === 'object' && m !== null && (m as { kind?: unknown }).kind === 'speed-block';
}

/**
 * How a side's timed steps are paced. Alone, it runs all its steps at once; interleaved with the twin, it
 * runs the blocks the parent asks for, so both sides sample the same minutes of a shared machine.
 */
export interface Pace {
  /** The backend the side runs on (told before the warm-up; sent with the ready message). */
  describe?(info: { backend: BilevelSpeedResult['backend']; threads: number | undefined }): void;
  /** The warm-up is done: the size of the first block (0: time nothing more). */
  ready(): Promise<number>;
  /** A block is done, with its times: the size of the next block (0: finish). */
  blockDone(timesMs: readonly number[]): Promise<number>;
}

/** Times `steps` samples (`sample()` returns one sample's milliseconds), or the blocks `pace` asks for. */
export async function runTimed(sample: () => number, steps: number, pace?: Pace): Promise<number[]> {
  const times: number[] = [];
  if (!pace) {
    for (let i = 0; i < steps; i++) times.push(sample());
    return times;
  }
  let k = await pace.ready();
  while (k > 0) {
    // One untimed sample first: the other side's block just ran, and this side's first step after it pays for
    // caches, pages and sleeping threads (up to 5× a step), which a side that runs alone pays only once.
    sample();
    const block: number[] = [];
    for (let i = 0; i < k; i++) block.push(sample());
    times.push(...block);
    k = await pace.blockDone(block);
  }
  return times;
}

export function isSpeedTask(m: unknown): m is SpeedTask {
  return typeof m === 'object' && m !== null && (m as { kind?: unknown }).kind === 'speed-task';
}

export { median } from '../stats';

export function minimum(values: readonly number[]): number {
  return values.length === 0 ? NaN : Math.min(...values);
}
