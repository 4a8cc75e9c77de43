import { ConfigError } from '@bilevel/core';
import { Queue } from 'bullmq';
import { checkConnection } from './connection-check';
import { esQueueName } from './es-protocol';
import { queueStatus } from './queue-status';
import { parseQueueUrl } from './queue-url';
import { QueueCoordinator, QueueWorker } from './run-queue';
import { freePort, redisSkipReason, startTestRedis, type TestRedis } from './testing';

const skip = redisSkipReason();
if (skip) {
  console.warn(skip);
}
const describeRedis = skip ? describe.skip : describe;

describeRedis('queue on a real Redis', () => {
  let redis: TestRedis;
  let secured: TestRedis;
  beforeAll(async () => {
    redis = await startTestRedis();
    secured = await startTestRedis({ password: 'pa55word' });
  });
  afterAll(async () => {
    await redis?.stop();
    await secured?.stop();
  });

  it('checks the connection: reachable, unreachable, wrong or missing password', async () => {
    await expect(checkConnection(parseQueueUrl(redis.url))).resolves.toMatch(/^\d+\./);
    await expect(checkConnection(parseQueueUrl(secured.url))).resolves.toMatch(/^\d+\./);
    const closed = await freePort();
    await expect(checkConnection(parseQueueUrl(`redis://127.0.0.1:${closed}`), 2000)).rejects.toThrow(
      /cannot reach the server/,
    );
    await expect(checkConnection(parseQueueUrl(`redis://:wrong@127.0.0.1:${secured.port}`))).rejects.toThrow(
      /authentication failed/,
    );
    await expect(checkConnection(parseQueueUrl(`redis://127.0.0.1:${secured.port}`))).rejects.toThrow(
      ConfigError,
    );
    await expect(
      checkConnection(parseQueueUrl(`redis://:wrong@127.0.0.1:${secured.port}`)),
    ).rejects.not.toThrow(/pa55word/);
  });

  it('a job goes to a worker; its rows stream back in order before its result; status lists it', async () => {
    const address = parseQueueUrl(`${redis.url}?queue=roundtrip`);
    const worker = new QueueWorker(
      address,
      async ({ job, sendRow }) => {
        const n = (job.data as { n: number }).n;
        for (let i = 0; i < n; i++) {
          sendRow({ step: i + 1, value: i === 2 ? NaN : i * i }, i);
          await new Promise((r) => setTimeout(r, 5));
        }
        return { value: { sum: n, worker: 'w' } };
      },
      { rowIntervalMs: 10, name: 'test-worker' },
    );
    const running = worker.run();
    const coordinator = new QueueCoordinator(address);
    await coordinator.ready();
    const received: { step: number; value: number }[] = [];
    const end = await coordinator.submit<{ sum: number }>('exp-1:a', { n: 12 }, (from, rows) => {
      received.length = from;
      received.push(...(rows as { step: number; value: number }[]));
    });
    expect(end).toEqual({ ok: true, value: { sum: 12, worker: 'w' } });
    expect(received.map((r) => r.step)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(received[2].value).toBeNaN();
    expect(received[11].value).toBe(121);
    const status = await queueStatus(address);
    expect(status.counts.completed).toBe(1);
    expect(status.jobs.find((j) => j.id === 'exp-1:a')).toMatchObject({
      state: 'completed',
      rows: 12,
      worker: 'test-worker',
    });
    expect(status.workers.map((w) => w.name)).toContain('test-worker');
    await coordinator.close();
    await worker.close('finish');
    await running;
  });

  it('cancel removes a job no worker has taken, and its submit ends', async () => {
    const address = parseQueueUrl(`${redis.url}?queue=cancel`);
    const coordinator = new QueueCoordinator(address);
    await coordinator.ready();
    const pending = coordinator.submit('exp-3:a', { n: 1 }, () => undefined);
    await new Promise((r) => setTimeout(r, 100));
    expect(await coordinator.cancel('exp-3:a')).toBe(true);
    expect(await pending).toEqual({ ok: false, error: 'job removed from the queue before a worker took it' });
    expect(await coordinator.cancel('exp-3:unknown')).toBe(false);
    expect((await queueStatus(address)).jobs).toEqual([]);
    await coordinator.close();
  });

  it('a failing job reports its reason; a handed-back job is taken again by another worker', async () => {
    const address = parseQueueUrl(`${redis.url}?queue=handback`);
    const taken: string[] = [];
    let first: QueueWorker | null = null;
    let release: () => void = () => undefined;
    const taking = new Promise<void>((r) => (release = r));
    first = new QueueWorker(
      address,
      async ({ job, signal }) => {
        taken.push(`first:${job.id}`);
        if ((job.data as { fail?: boolean }).fail) throw new Error('data folder missing on this worker');
        release();
        await new Promise<void>((r) => signal.addEventListener('abort', () => r()));
        return { handBack: true };
      },
      { name: 'first' },
    );
    const firstRun = first.run();
    const coordinator = new QueueCoordinator(address);
    await coordinator.ready();
    const failed = await coordinator.submit('exp-2:bad', { fail: true }, () => undefined);
    expect(failed).toEqual({ ok: false, error: 'data folder missing on this worker' });
    const pending = coordinator.submit<string>('exp-2:good', {}, () => undefined);
    await taking;
    await first.close('hand-back');
    await firstRun;
    const second = new QueueWorker(
      address,
      async ({ job }) => {
        taken.push(`second:${job.id}`);
        return { value: 'done by second' };
      },
      { name: 'second' },
    );
    const secondRun = second.run();
    expect(await pending).toEqual({ ok: true, value: 'done by second' });
    expect(taken).toEqual(['first:exp-2:bad', 'first:exp-2:good', 'second:exp-2:good']);
    const status = await queueStatus(address);
    expect(status.jobs.find((j) => j.id === 'exp-2:bad')).toMatchObject({
      state: 'failed',
      failedReason: 'data folder missing on this worker',
    });
    await coordinator.close();
    await second.close('finish');
    await secondRun;
  });

  it('status also lists the distributed-ES queue next to the run queue: blocks by state, workers, failures', async () => {
    const address = parseQueueUrl(`${redis.url}?queue=withes`);
    const es = new Queue(esQueueName(address.queueName), { connection: address.connection });
    await es.addBulk(
      ['a', 'b', 'c'].map((id) => ({ name: 'es-block', data: { fail: id === 'a' }, opts: { jobId: id } })),
    );
    const before = await queueStatus(address);
    expect(before.es.queueName).toBe('withes-es');
    expect(before.es.counts.waiting).toBe(3);
    expect(before.es.workers).toEqual([]);
    expect(before.es.failures).toEqual([]);
    // The run queue itself is empty: the blocks are counted on the ES queue only.
    expect(before.counts.waiting).toBe(0);
    const worker = new QueueWorker(
      { ...address, queueName: esQueueName(address.queueName) },
      async ({ job }) => {
        if ((job.data as { fail: boolean }).fail) throw new Error('unknown plugin on this worker');
        return { value: { values: [1] } };
      },
      { name: 'w/es' },
    );
    const running = worker.run();
    let after = await queueStatus(address);
    for (let i = 0; i < 200 && after.es.counts.completed + after.es.counts.failed < 3; i++) {
      await new Promise((r) => setTimeout(r, 50));
      after = await queueStatus(address);
    }
    expect(after.es.counts).toMatchObject({ waiting: 0, active: 0, failed: 1, completed: 2 });
    expect(after.es.workers.map((w) => w.name)).toEqual(['w/es']);
    expect(after.workers).toEqual([]);
    expect(after.es.failures).toEqual([{ id: 'a', failedReason: 'unknown plugin on this worker' }]);
    await worker.close('finish');
    await running;
    await es.close();
  });
});
