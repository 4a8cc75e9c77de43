/**
 * The coordinator's and the workers' ends of a BullMQ queue of run jobs.
 */
import * as os from 'os';
import { DelayedError, type Job, Queue, QueueEvents, Worker } from 'bullmq';
import { decodeJson, encodeJson, type RowsMessage, RowBatcher } from './protocol';
import type { QueueAddress } from './queue-url';

/** Name of every run job in the queue. */
export const RUN_JOB_NAME = 'run';

/** Options of a {@link QueueCoordinator}. */
export interface CoordinatorOptions {
  /** Completed jobs kept in Redis for `bilevel status` (default 1000). */
  readonly keepCompleted?: number;
  /** Told when the connection to Redis fails (once per outage; the connection is retried). */
  readonly onConnectionError?: (error: Error) => void;
}

/** How a submitted job ended on the coordinator's side. */
export type JobEnd<R> =
  { readonly ok: true; readonly value: R } | { readonly ok: false; readonly error: string };

/**
 * The coordinator's end: adds jobs, receives the rows their workers stream back (as BullMQ progress
 * events), and waits for their results.
 */
export class QueueCoordinator {
  private readonly queue: Queue;
  private readonly events: QueueEvents;
  private readonly listeners = new Map<string, (message: RowsMessage) => void>();
  private readonly cancellers = new Map<string, () => void>();

  constructor(
    readonly address: QueueAddress,
    private readonly options: CoordinatorOptions = {},
  ) {
    this.queue = new Queue(address.queueName, { connection: address.connection });
    this.events = new QueueEvents(address.queueName, { connection: address.connection });
    // Connection errors (e.g. while Redis restarts): ioredis reconnects by itself; one line per outage.
    let down = false;
    const onError = (e: Error): void => {
      if (!down) options.onConnectionError?.(e);
      down = true;
    };
    this.queue.on('error', onError);
    this.events.on('error', onError);
    const up = (): void => {
      down = false;
    };
    this.events.on('progress', up);
    this.events.on('progress', ({ jobId, data }) => {
      const listener = this.listeners.get(jobId);
      if (listener && typeof data === 'object' && data !== null) listener(data as unknown as RowsMessage);
    });
  }

  /** Waits until both Redis connections are ready (call before submitting, so no event is missed). */
  async ready(): Promise<void> {
    await this.queue.waitUntilReady();
    await this.events.waitUntilReady();
  }

  /**
   * Adds one job (`jobId` unique in the queue) and resolves when it ends: its worker's return value
   * (decoded), or the reason it failed. `onRows` receives the rows streamed while it runs.
   */
  async submit<R>(
    jobId: string,
    data: Record<string, unknown>,
    onRows: (from: number, rows: unknown[], worker: string) => void,
  ): Promise<JobEnd<R>> {
    this.listeners.set(jobId, (m) => onRows(m.from, decodeJson<unknown[]>(m.rows), m.worker));
    try {
      const job = await this.queue.add(RUN_JOB_NAME, data, {
        jobId,
        attempts: 1,
        removeOnComplete: { count: this.options.keepCompleted ?? 1000 },
        removeOnFail: false,
      });
      const cancelled = new Promise<JobEnd<R>>((resolve) =>
        this.cancellers.set(jobId, () =>
          resolve({ ok: false, error: 'job removed from the queue before a worker took it' }),
        ),
      );
      const finished = job.waitUntilFinished(this.events).then(
        (value: string): JobEnd<R> => ({ ok: true, value: decodeJson<R>(value) }),
        (e: unknown): JobEnd<R> => ({ ok: false, error: e instanceof Error ? e.message : String(e) }),
      );
      return await Promise.race([finished, cancelled]);
    } finally {
      this.listeners.delete(jobId);
      this.cancellers.delete(jobId);
    }
  }

  /** Removes a job that no worker has taken yet; false when it is running or gone. */
  async cancel(jobId: string): Promise<boolean> {
    const job = await this.queue.getJob(jobId);
    if (!job) return false;
    const state = await job.getState();
    if (state !== 'waiting' && state !== 'delayed' && state !== 'prioritized') return false;
    try {
      await job.remove();
    } catch {
      return false;
    }
    this.cancellers.get(jobId)?.();
    return true;
  }

  /** Closes the connections. */
  async close(): Promise<void> {
    await this.events.close();
    await this.queue.close();
  }
}

/** What a job processor is given. */
export interface ProcessorContext {
  /** The job. */
  readonly job: Job;
  /** Aborted when the worker is told to hand its jobs back (the run stops after its step). */
  readonly signal: AbortSignal;
  /** Streams the job's rows to the coordinator (batched); `index` is the row's number in the run. */
  readonly sendRow: (row: unknown, index: number) => void;
}

/** What a processor returns: a result for the coordinator, or `handBack` to put the job back in the queue. */
export type ProcessorResult = { readonly value: unknown } | { readonly handBack: true };

/** Options of a {@link QueueWorker}. */
export interface QueueWorkerOptions {
  /** Jobs run at once in this process (default 1). */
  readonly concurrency?: number;
  /** Milliseconds a job's lock lives without renewal; a killed worker's job is free again after it (default 30 000). */
  readonly lockDuration?: number;
  /** Milliseconds between checks for stalled jobs (default 30 000). */
  readonly stalledInterval?: number;
  /** Times a job may stall (its worker died) before it fails (default 5). */
  readonly maxStalledCount?: number;
  /** The worker's name, shown by `bilevel status` (default host:pid). */
  readonly name?: string;
  /** Milliseconds between row batches sent to the coordinator (default 200). */
  readonly rowIntervalMs?: number;
}

/** How long {@link QueueWorker.close} waits for BullMQ's own close once no job is running. */
const IDLE_CLOSE_GRACE_MS = 5_000;

/**
 * A worker's end: takes run jobs one (or `concurrency`) at a time and runs `process` on each. Its result
 * goes back to the coordinator as the job's return value; rows given to `sendRow` stream there as they
 * come. A job whose worker dies (even `kill -9`) is given to another worker by BullMQ's stalled-job check
 * once its lock has expired.
 */
export class QueueWorker {
  private readonly worker: Worker;
  private readonly handBack = new AbortController();
  /** Jobs whose processor is running. */
  private activeJobs = 0;
  /** Resolved when {@link close} had to close the connections outright ({@link run} ends then too). */
  private readonly forcedClose = (() => {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    return { promise, resolve };
  })();
  /** The worker's name (host:pid unless given). */
  readonly name: string;

  constructor(
    readonly address: QueueAddress,
    process: (context: ProcessorContext) => Promise<ProcessorResult>,
    options: QueueWorkerOptions = {},
  ) {
    this.name = options.name ?? `${os.hostname()}:${globalThis.process.pid}`;
    const name = this.name;
    this.worker = new Worker(
      address.queueName,
      async (job: Job, token?: string) => {
        this.activeJobs++;
        try {
          const batcher = new RowBatcher<unknown>(
            (from, rows) => job.updateProgress({ from, rows: encodeJson(rows), worker: name }),
            options.rowIntervalMs ?? 200,
          );
          const result = await process({
            job,
            signal: this.handBack.signal,
            sendRow: (row, i) => batcher.add(row, i),
          });
          await batcher.flush();
          if ('handBack' in result) {
            // Back to the queue at once for another worker (BullMQ's documented way to re-queue from a processor).
            await job.moveToDelayed(Date.now(), token);
            throw new DelayedError();
          }
          return encodeJson(result.value);
        } finally {
          this.activeJobs--;
        }
      },
      {
        connection: address.connection,
        concurrency: options.concurrency ?? 1,
        lockDuration: options.lockDuration ?? 30_000,
        stalledInterval: options.stalledInterval ?? 30_000,
        maxStalledCount: options.maxStalledCount ?? 5,
        name,
        autorun: false,
      },
    );
  }

  /** Registers a listener of the underlying BullMQ worker's events ('failed', 'error', …). */
  on(event: 'failed' | 'error' | 'completed' | 'active', listener: (...args: unknown[]) => void): void {
    (this.worker.on as (e: string, l: (...args: unknown[]) => void) => void)(event, listener);
  }

  /** Takes jobs until {@link close} (resolves then). */
  run(): Promise<void> {
    return Promise.race([this.worker.run(), this.forcedClose.promise]);
  }

  /** Waits until the worker's connection is ready. */
  async ready(): Promise<void> {
    await this.worker.waitUntilReady();
  }

  /**
   * Stops taking jobs. `finish`: the running jobs end normally first. `hand-back`: they stop after their
   * current step (their processors see the signal) and go back to the queue for another worker.
   */
  async close(mode: 'finish' | 'hand-back'): Promise<void> {
    const closing = this.worker.close();
    if (mode === 'hand-back') this.handBack.abort();
    let settled = false;
    let failure: unknown = null;
    const done = closing.then(
      () => {
        settled = true;
      },
      (e: unknown) => {
        settled = true;
        failure = e;
      },
    );
    // After a Redis restart BullMQ's close could wait minutes on its blocking connection with no job left to
    // finish: once no processor has run for IDLE_CLOSE_GRACE_MS, the connections are closed outright.
    let idleSince: number | null = null;
    while (!settled) {
      await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 100))]);
      if (settled) break;
      if (this.activeJobs > 0) {
        idleSince = null;
        continue;
      }
      idleSince ??= Date.now();
      if (Date.now() - idleSince > IDLE_CLOSE_GRACE_MS) {
        await this.worker.disconnect().catch(() => undefined);
        this.forcedClose.resolve();
        return;
      }
    }
    if (failure) throw failure;
  }
}
