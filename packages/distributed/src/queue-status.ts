import { Queue } from 'bullmq';
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

/** A queue's jobs, workers and failures. */
export interface QueueStatus {
  /** Jobs by state. */
  readonly counts: Readonly<Record<string, number>>;
  /** The jobs (newest first, at most `limit` per state). */
  readonly jobs: readonly JobStatus[];
  /** The connected workers (name and address). */
  readonly workers: readonly { readonly name: string; readonly addr: string; readonly idleSeconds: number }[];
}

const STATES = ['active', 'waiting', 'delayed', 'prioritized', 'failed', 'completed'] as const;

/** Reads the status of a queue: counts by state, the jobs, the workers connected to it. */
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
    const workers = (await queue.getWorkers()).map((w) => ({
      // BullMQ names a worker's connection bull:<queue>:w:<name>.
      name: (w.rawname ?? w.name ?? '?').replace(/^.*?:w:/, ''),
      addr: w.addr ?? '?',
      idleSeconds: Number(w.idle ?? 0),
    }));
    return { counts, jobs, workers };
  } finally {
    await queue.close();
  }
}
