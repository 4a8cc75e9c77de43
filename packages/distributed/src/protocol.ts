/**
 * What travels through the queue: the payload of a run job, the progress messages a worker sends while it
 * runs, and its result. Numbers that JSON cannot hold (NaN, ±Infinity) travel as strings.
 */
import { ConfigError, z } from '@bilevel/core';

/** Version of the job format; a worker refuses jobs of another version (or another library version). */
export const PROTOCOL_VERSION = 1;

/** Experiment ids name a folder in the shared checkpoint store: letters, digits, . _ - only. */
const SafeName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,150}$/, 'must be letters, digits, . _ -');

/** The payload of one run job: which experiment, which (method, seed) of it, and the experiment's config. */
export const RunJobSchema = z
  .object({
    protocol: z.number().int(),
    libraryVersion: z.string().min(1),
    experimentId: SafeName,
    fileBase: SafeName,
    methodIndex: z.number().int().min(0),
    seed: z.number().int().min(0),
    index: z.number().int().min(1),
    total: z.number().int().min(1),
    /** The experiment config, validated by the worker with the same schemas as a config file. */
    config: z.record(z.unknown()),
  })
  .strict();
/** A run job's payload. */
export type RunJob = z.output<typeof RunJobSchema>;

/**
 * Checks a job payload before anything runs: its shape, then its protocol and library version against this
 * worker's. Throws a {@link ConfigError} that says which.
 */
export function parseRunJob(data: unknown, libraryVersion: string): RunJob {
  const parsed = RunJobSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(`malformed job: ${issue.path.join('.') || '(payload)'}: ${issue.message}`, 'job');
  }
  const job = parsed.data;
  if (job.protocol !== PROTOCOL_VERSION) {
    throw new ConfigError(
      `job of protocol ${job.protocol}; this worker speaks protocol ${PROTOCOL_VERSION}`,
      'job.protocol',
    );
  }
  if (job.libraryVersion !== libraryVersion) {
    throw new ConfigError(
      `job from library version ${job.libraryVersion}; this worker runs ${libraryVersion} (start workers of the same version)`,
      'job.libraryVersion',
    );
  }
  return job;
}

/** Encodes a value as JSON text with NaN and ±Infinity as strings (read back by {@link decodeJson}). */
export function encodeJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    typeof v === 'number' && !Number.isFinite(v) ? String(v) : v,
  );
}

const NON_FINITE = new Set(['NaN', 'Infinity', '-Infinity']);

/** Decodes {@link encodeJson}'s text (the strings "NaN", "Infinity", "-Infinity" become numbers). */
export function decodeJson<T>(text: string): T {
  return JSON.parse(text, (_k, v: unknown) =>
    typeof v === 'string' && NON_FINITE.has(v) ? Number(v) : v,
  ) as T;
}

/** A progress message: rows `from`, `from + 1`, … of a run (a resumed run sends from its checkpoint on). */
export interface RowsMessage {
  /** Index of the first row in the run's rows. */
  readonly from: number;
  /** The rows, {@link encodeJson}-encoded. */
  readonly rows: string;
  /** The worker that sends them. */
  readonly worker: string;
}

/**
 * Sends rows as they come, in batches: at most one message per `intervalMs` (and one at {@link flush}),
 * in order, one message at a time.
 */
export class RowBatcher<Row> {
  private pending: Row[] = [];
  private pendingFrom = 0;
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<void> = Promise.resolve();
  private failed: unknown = null;

  constructor(
    private readonly send: (from: number, rows: readonly Row[]) => Promise<void>,
    private readonly intervalMs = 200,
  ) {}

  /** Queues row number `index` (rows before it that were not sent are sent with it). */
  add(row: Row, index: number): void {
    if (this.pending.length === 0) this.pendingFrom = index;
    this.pending.push(row);
    this.timer ??= setTimeout(() => {
      this.timer = null;
      this.ship();
    }, this.intervalMs);
  }

  private ship(): void {
    if (this.pending.length === 0) return;
    const from = this.pendingFrom;
    const rows = this.pending;
    this.pending = [];
    this.pendingFrom = from + rows.length;
    this.chain = this.chain.then(() =>
      this.send(from, rows).catch((e: unknown) => {
        this.failed = e;
      }),
    );
  }

  /** Sends what is pending and waits until every message has gone; rejects if one could not be sent. */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.ship();
    await this.chain;
    if (this.failed) throw this.failed;
  }
}
