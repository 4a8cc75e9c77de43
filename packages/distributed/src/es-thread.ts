/**
 * The thread that talks to Redis for a {@link RemotePerturbedSolves} executor. The trainer's step is
 * synchronous, so the estimator's thread posts a step here and sleeps (`Atomics.wait`) until this thread has
 * published the step's values, queued its blocks, collected their results and answered on the port. This
 * module imports BullMQ and ioredis only (not the tensor library).
 */
import { type MessagePort, parentPort, workerData } from 'worker_threads';
import { type ConnectionOptions, Job, Queue, QueueEvents } from 'bullmq';
import IORedis from 'ioredis';
import { decodeFloat32 } from './float32';

/** What the executor gives the thread when it starts it. */
export interface EsThreadData {
  /** Connection options of the queue's Redis. */
  readonly connection: ConnectionOptions;
  /** The perturbed-solve queue's name. */
  readonly queueName: string;
  /** One int32: set to 1 (and notified) when an answer is on the port. */
  readonly flag: SharedArrayBuffer;
  /** Where answers go. */
  readonly port: MessagePort;
}

/** A step for the thread: the binary value to publish and the jobs to queue. */
export interface EsThreadStep {
  readonly type: 'step';
  readonly step: number;
  readonly stepKey: string;
  readonly buffer: Uint8Array;
  readonly jobs: readonly { readonly id: string; readonly data: Record<string, unknown> }[];
  readonly seed: { readonly s: readonly number[]; readonly spare: number | null };
  readonly solves: number;
  readonly timeoutMs: number;
  /** dim y, when the blocks return whole responses (the Jacobian memory). */
  readonly responseLength?: number;
}

/** The thread's answer to a step. */
export type EsThreadAnswer =
  | {
      readonly ok: true;
      readonly values: Float32Array;
      readonly iterations: number;
      readonly oracleCalls: Record<string, number>;
      readonly sent: number;
      readonly received: number;
      /** With `responseLength`: the responses of the J solves, row-major [J, dim y]. */
      readonly responses?: Float32Array;
    }
  | { readonly ok: false; readonly error: string };

interface BlockResult {
  seed: { s: number[]; spare: number | null };
  from: number;
  to: number;
  values: (number | string)[];
  responses?: string;
  iterations: number;
  oracleCalls: Record<string, number>;
  worker: string;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function main(data: EsThreadData): Promise<void> {
  const flag = new Int32Array(data.flag);
  const answer = (a: EsThreadAnswer | { closed: true }): void => {
    data.port.postMessage(a);
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
  };
  let connected: Promise<{ queue: Queue; events: QueueEvents; redis: IORedis }> | null = null;
  const connect = (): Promise<{ queue: Queue; events: QueueEvents; redis: IORedis }> => {
    connected ??= (async () => {
      const queue = new Queue(data.queueName, { connection: data.connection });
      const events = new QueueEvents(data.queueName, { connection: data.connection });
      const redis = new IORedis(data.connection as Record<string, unknown>);
      queue.on('error', () => undefined);
      // Every block of a step waits on these (one listener each).
      queue.setMaxListeners(0);
      events.setMaxListeners(0);
      events.on('error', () => undefined);
      redis.on('error', () => undefined);
      await queue.waitUntilReady();
      await events.waitUntilReady();
      return { queue, events, redis };
    })();
    return connected;
  };

  const runStep = async (m: EsThreadStep): Promise<EsThreadAnswer> => {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), m.timeoutMs);
    });
    const c = await Promise.race([connect(), deadline]);
    if (c === 'timeout') {
      clearTimeout(timer);
      return { ok: false, error: `ES step ${m.step + 1}: the queue's Redis did not answer within ${m.timeoutMs} ms` };
    }
    const { queue, events, redis } = c;
    // The step's arrays once, for every block; they expire by themselves if this process dies.
    await redis.set(m.stepKey, Buffer.from(m.buffer.buffer, m.buffer.byteOffset, m.buffer.byteLength), 'PX', m.timeoutMs + 60_000);
    let sent = m.buffer.byteLength;
    const jobs = await queue.addBulk(
      m.jobs.map((j) => {
        sent += JSON.stringify(j.data).length;
        return {
          name: 'es-block',
          data: j.data,
          opts: { jobId: j.id, attempts: 1, removeOnComplete: { count: 1000 }, removeOnFail: { count: 1000 } },
        };
      }),
    );
    const results = new Map<string, BlockResult>();
    let received = 0;
    const all = Promise.all(
      jobs.map(async (job: Job) => {
        const value = (await job.waitUntilFinished(events)) as string;
        received += value.length;
        results.set(job.id!, JSON.parse(value) as BlockResult);
      }),
    );
    try {
      const outcome = await Promise.race([all, deadline]);
      if (outcome === 'timeout') {
        const missing: string[] = [];
        for (const job of jobs) {
          if (results.has(job.id!)) continue;
          const state = await job.getState().catch(() => 'unknown');
          const fresh = await Job.fromId(queue, job.id!).catch(() => undefined);
          const why =
            state === 'waiting' || state === 'prioritized'
              ? 'waiting: no worker took it'
              : state === 'active'
                ? `active${fresh?.processedBy ? ` on ${fresh.processedBy}` : ''}`
                : state;
          missing.push(`${job.id} (${why})`);
          if (state === 'waiting' || state === 'delayed' || state === 'prioritized') await job.remove().catch(() => undefined);
        }
        return {
          ok: false,
          error: `ES step ${m.step + 1}: ${missing.length} of ${jobs.length} perturbed-solve jobs did not finish within ${m.timeoutMs} ms (estimator.options.workers.timeoutMs): ${missing.join(', ')}. Are workers running on this queue (bilevel worker --queue …)?`,
        };
      }
    } catch (e) {
      return { ok: false, error: `ES step ${m.step + 1}: a perturbed-solve job failed on its worker: ${message(e)}` };
    } finally {
      clearTimeout(timer);
      await redis.del(m.stepKey).catch(() => undefined);
    }
    const values = new Float32Array(m.solves);
    const filled = new Uint8Array(m.solves);
    const dy = m.responseLength;
    const responses = dy !== undefined ? new Float32Array(m.solves * dy) : undefined;
    let iterations = 0;
    const oracleCalls: Record<string, number> = {};
    for (const [id, r] of results) {
      if (r.seed.s.some((v, i) => v !== m.seed.s[i]) || r.seed.spare !== m.seed.spare) {
        return { ok: false, error: `ES step ${m.step + 1}: job ${id} answered for another directions' seed` };
      }
      r.values.forEach((v, i) => {
        values[r.from + i] = Number(v);
        filled[r.from + i] = 1;
      });
      if (responses && dy !== undefined) {
        const block = typeof r.responses === 'string' ? decodeFloat32(r.responses) : null;
        if (!block || block.length !== (r.to - r.from) * dy) {
          return { ok: false, error: `ES step ${m.step + 1}: job ${id} returned no responses of ${r.to - r.from} × ${dy} values` };
        }
        responses.set(block, r.from * dy);
      }
      iterations += r.iterations;
      for (const [k, v] of Object.entries(r.oracleCalls)) oracleCalls[k] = (oracleCalls[k] ?? 0) + v;
    }
    if (filled.some((f) => f === 0)) return { ok: false, error: `ES step ${m.step + 1}: the blocks did not cover every solve` };
    return { ok: true, values, iterations, oracleCalls, sent, received, ...(responses ? { responses } : {}) };
  };

  parentPort!.on('message', (m: EsThreadStep | { type: 'close' }) => {
    if (m.type === 'close') {
      void (async () => {
        if (connected) {
          const c = await connected.catch(() => null);
          if (c) {
            await c.events.close().catch(() => undefined);
            await c.queue.close().catch(() => undefined);
            c.redis.disconnect();
          }
        }
        answer({ closed: true });
      })();
      return;
    }
    runStep(m).then(answer, (e: unknown) => answer({ ok: false, error: `ES step ${m.step + 1}: ${message(e)}` }));
  });
}

if (parentPort && workerData && (workerData as { esThread?: boolean }).esThread) {
  void main(workerData as EsThreadData);
}
