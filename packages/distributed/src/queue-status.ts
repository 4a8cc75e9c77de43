import { Queue } from 'bullmq';
import { esQueueName } from './es-protocol';
import type { QueueAddress } from './queue-url';

/** One job as `bilevel status` lists it. */
export interface JobStatus {
  /** The job id (`<experiment>:<run>`). */
  readonly id: string;
  /** waiting, active, completed, failed, delayed… */
  readonly state: string;
  /** Times a worker took it. */
  readonly attemptsMade: number;
  /** Rows received so far (from the latest progress message), when running. */
  readonly rows?: number;
  /** The worker that sent the latest rows. */
  readonly worker?: string;
  /** Why it failed. */
  readonly failedReason?: string;
}

/** A worker connected to a queue. */
export interface WorkerStatus {
  /** Its name (`--name`, default host:pid; `<name>/es` on the ES queue). */
  readonly name: string;
  /** Its address as Redis sees it. */
  readonly addr: string;
  /** Seconds since its connection last sent a command. */
  readonly idleSeconds: number;
}

/** A perturbed-solve job of distributed ES that failed, as `bilevel status` lists it. */
export interface EsFailure {
  /** The job id (`<estimator id>:<step>:<first solve>`). */
  readonly id: string;
  /** Why it failed (the worker's reason). */
  readonly failedReason: string;
}

/** The perturbed-solve queue of distributed ES next to a run queue (`<name>-es`). */
export interface EsQueueStatus {
  /** Its name. */
  readonly queueName: string;
  /** Jobs (blocks of perturbed solves) by state. */
  readonly counts: Readonly<Record<string, number>>;
  /** The workers attached to it (every `bilevel worker` takes ES blocks too). */
  readonly workers: readonly WorkerStatus[];
  /** The newest failed blocks (at most `limit`) with their reasons. */
  readonly failures: readonly EsFailure[];
}

/** A queue's jobs, workers and failures. */
export interface QueueStatus {
  /** Jobs by state. */
  readonly counts: Readonly<Record<string, number>>;
  /** The jobs (newest first, at most `limit` per state). */
  readonly jobs: readonly JobStatus[];
  /** The connected workers (name and address). */
  readonly workers: readonly WorkerStatus[];
  /** The distributed-ES queue next to it: its blocks by state, its workers, its failures. */
  readonly es: EsQueueStatus;
}

const STATES = ['active', 'waiting', 'delayed', 'prioritized', 'failed', 'completed'] as const;

/** The workers connected to `queue`. */
async function workersOf(queue: Queue): Promise<WorkerStatus[]> {
  return (await queue.getWorkers()).map((w) => ({
    // BullMQ names a worker's connection bull:<queue>:w:<name>.
    name: (w.rawname ?? w.name ?? '?').replace(/^.*?:w:/, ''),
    addr: w.addr ?? '?',
    idleSeconds: Number(w.idle ?? 0),
  }));
}

/** The ES queue next to the run queue `queueName`: counts, workers and the newest failures. */
async function esQueueStatus(address: QueueAddress, limit: number): Promise<EsQueueStatus> {
  const queueName = esQueueName(address.queueName);
  const queue = new Queue(queueName, { connection: address.connection });
  try {
    const counts = await queue.getJobCounts(...STATES);
    const failures: EsFailure[] = [];
    for (const job of await queue.getJobs('failed', 0, limit - 1, false)) {
      if (job?.id) failures.push({ id: job.id, failedReason: job.failedReason || '(no reason recorded)' });
    }
    return { queueName, counts, workers: await workersOf(queue), failures };
  } finally {
    await queue.close();
  }
}

/**
 * Reads the status of a queue: counts by state, the jobs, the workers connected to it, and the same for the
 * distributed-ES queue next to it (`<name>-es`: blocks by state, attached workers, failed blocks).
 */
export async function queueStatus(address: QueueAddress, limit = 50): Promise<QueueStatus> {
  const queue = new Queue(address.queueName, { connection: address.connection });
  try {
    const counts = await queue.getJobCounts(...STATES);
    const jobs: JobStatus[] = [];
    for (const state of STATES) {
      for (const job of await queue.getJobs(state, 0, limit - 1, false)) {
        if (!job?.id) continue;
        const progress = job.progress as unknown;
        const message =
          typeof progress === 'object' && progress !== null
            ? (progress as { from?: number; rows?: string; worker?: string })
            : {};
        let rows: number | undefined;
        if (typeof message.from === 'number' && typeof message.rows === 'string') {
          try {
            rows = message.from + (JSON.parse(message.rows) as unknown[]).length;
          } catch {
            rows = undefined;
          }
        }
        jobs.push({
          id: job.id,
          state,
          attemptsMade: job.attemptsMade + (job.stalledCounter ?? 0),
          rows,
          worker: message.worker,
          failedReason: job.failedReason || undefined,
        });
      }
    }
    const workers = await workersOf(queue);
    return { counts, jobs, workers, es: await esQueueStatus(address, limit) };
  } finally {
    await queue.close();
  }
}
