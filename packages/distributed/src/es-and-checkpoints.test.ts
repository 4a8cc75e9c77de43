/**
 * The distributed-ES wire format (the step's binary value, the job payload's validation) and the Redis
 * checkpoint store (round trip, checksum, size limit) on a private Redis.
 */
import IORedis from 'ioredis';
import { ConfigError, type PerturbedSolveRequest } from '@bilevel/core';
import { decodeStepArrays, encodeStepArrays, parseEsBlockJob, stepJobs } from './es-protocol';
import { decodeFloat32, encodeFloat32 } from './float32';
import { PROTOCOL_VERSION } from './protocol';
import { parseQueueUrl } from './queue-url';
import { RedisCheckpointStore } from './redis-checkpoints';
import { redisSkipReason, startTestRedis, type TestRedis } from './testing';

const request: PerturbedSolveRequest = {
  step: 3,
  x: Float32Array.from([1.5, -2, 3e-8]),
  xSpec: { names: ['x'], shapes: [[3]] },
  y0: Float32Array.from([0, 1]),
  yBase: Float32Array.from([0.25, -0.5]),
  gradY: Float32Array.from([Math.PI, NaN]),
  ySpec: { names: ['y'], shapes: [[2]] },
  seed: { s: [1, 2, 3, 4], spare: null },
  directions: { distribution: 'gaussian', count: 5, antithetic: true, smoothing: 0.01, batchedSolves: true },
  maxIterations: 7,
  innerBatchSource: { rng: { s: [5, 6, 7, 8], spare: 0.5 }, problem: { order: [2, 0, 1], position: 1 } },
};
const replica = { problem: { name: 'quadratic', options: { dimension: 3 } }, innerSolver: { name: 'gd', options: {} }, oracles: {} };

describe('distributed ES wire format', () => {
  it('the step value carries x, y0, y_N, ∇_y f bit for bit and the inner-batch source; its size is 24 + 4·floats + JSON', () => {
    const buf = encodeStepArrays(request);
    const tail = JSON.stringify(request.innerBatchSource).length;
    expect(buf.length).toBe(24 + 4 * (3 + 2 + 2 + 2) + tail);
    const back = decodeStepArrays(buf);
    for (const k of ['x', 'y0', 'yBase', 'gradY'] as const) {
      expect(Buffer.from(back[k].buffer).equals(Buffer.from(request[k].buffer))).toBe(true);
    }
    expect(back.innerBatchSource).toEqual(request.innerBatchSource);
    expect(() => decodeStepArrays(buf.subarray(0, buf.length - 1))).toThrow(/wrong length/);
    expect(() => decodeStepArrays(Buffer.from('nonsense, not a step value'))).toThrow(/bad header/);
  });

  it('with the Jacobian memory the value also carries the directions (28-byte header), and jobs ask for responses', () => {
    const rows = Float32Array.from({ length: 5 * 3 }, (_, i) => Math.sin(i) * 1e3);
    const withRows: PerturbedSolveRequest = { ...request, directionRows: rows, responses: true };
    const buf = encodeStepArrays(withRows);
    const tail = JSON.stringify(request.innerBatchSource).length;
    expect(buf.length).toBe(28 + 4 * (3 + 2 + 2 + 2 + 15) + tail);
    const back = decodeStepArrays(buf);
    expect(Buffer.from(back.directionRows!.buffer).equals(Buffer.from(rows.buffer))).toBe(true);
    expect(Buffer.from(back.gradY.buffer).equals(Buffer.from(request.gradY.buffer))).toBe(true);
    expect(back.innerBatchSource).toEqual(request.innerBatchSource);
    expect(() => decodeStepArrays(buf.subarray(0, buf.length - 4))).toThrow(/wrong length/);
    // Without directions the value has no fifth array.
    expect(decodeStepArrays(encodeStepArrays(request)).directionRows).toBeUndefined();
    const jobs = stepJobs(withRows, replica, { runId: 'es-1', stepKey: 'k:1', libraryVersion: '1.0.0', blockSize: 4 });
    const wire = JSON.parse(JSON.stringify(jobs[0])) as Record<string, unknown>;
    expect(parseEsBlockJob(wire, '1.0.0')).toMatchObject({ givenDirections: true, responses: true });
    // Jobs without a memory do not carry the fields at all (their payload is unchanged).
    const plain = stepJobs(request, replica, { runId: 'es-1', stepKey: 'k:1', libraryVersion: '1.0.0', blockSize: 4 });
    expect(Object.keys(plain[0])).not.toContain('givenDirections');
    expect(Object.keys(plain[0])).not.toContain('responses');
    expect(() => parseEsBlockJob({ ...wire, responses: 'yes' }, '1.0.0')).toThrow(/malformed ES job: responses/);
  });

  it('responses travel as base64 float32, bit for bit (NaN, ±∞, subnormals)', () => {
    const values = Float32Array.from([0, -0, 1.5, NaN, Infinity, -Infinity, 1e-45, 3.4e38, -1 / 3]);
    const text = encodeFloat32(values);
    // 36 bytes: 48 base64 characters (4 per 3 bytes).
    expect(text).toHaveLength(48);
    const back = decodeFloat32(text);
    expect(Buffer.from(back.buffer).equals(Buffer.from(values.buffer))).toBe(true);
    expect(encodeFloat32(values.subarray(2, 4))).toBe(encodeFloat32(Float32Array.from([1.5, NaN])));
    expect(() => decodeFloat32(Buffer.from([1, 2, 3]).toString('base64'))).toThrow(/3 bytes are not float32 values/);
  });

  it('a step is cut into blocks; jobs are validated (version, block range, unknown fields)', () => {
    const jobs = stepJobs(request, replica, { runId: 'es-1', stepKey: 'k:1', libraryVersion: '1.0.0', blockSize: 4 });
    // 2Q = 10 antithetic solves in blocks of 4.
    expect(jobs.map((j) => [j.from, j.to])).toEqual([[0, 4], [4, 8], [8, 10]]);
    expect(jobs.every((j) => j.replaysBatches)).toBe(true);
    const wire = JSON.parse(JSON.stringify(jobs[2])) as Record<string, unknown>;
    expect(parseEsBlockJob(wire, '1.0.0')).toMatchObject({ from: 8, to: 10, step: 3 });
    expect(() => parseEsBlockJob(wire, '2.0.0')).toThrow(/ES job from library version 1.0.0; this worker runs 2.0.0/);
    expect(() => parseEsBlockJob({ ...wire, protocol: PROTOCOL_VERSION + 1 }, '1.0.0')).toThrow(/protocol/);
    expect(() => parseEsBlockJob({ ...wire, to: 11 }, '1.0.0')).toThrow(/malformed ES job: to: block outside/);
    expect(() => parseEsBlockJob({ ...wire, plugins: ['./evil.js'] }, '1.0.0')).toThrow(/malformed ES job: .*plugins/);
    expect(() => parseEsBlockJob({ ...wire, stepKey: '../../etc' }, '1.0.0')).toThrow(ConfigError);
  });
});

const skip = redisSkipReason();
if (skip) console.warn(skip);
const describeRedis = skip ? describe.skip : describe;

describeRedis('checkpoints in Redis', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startTestRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('round trip, checksum, size limit, removal', async () => {
    const address = parseQueueUrl(`${redis.url}?queue=ck`);
    const store = new RedisCheckpointStore(address, 1000);
    const raw = new IORedis(address.connection as Record<string, unknown>);
    try {
      const entry = { file: 'checkpoint-00000005.safetensors', checkpoint: Buffer.from([1, 2, 3, 250]), rows: '{"step":1}\n' };
      await store.put('exp', 'esj-seed0', entry);
      expect(await store.get('exp', 'esj-seed0')).toEqual(entry);
      expect(await store.get('exp', 'other')).toBeNull();
      // One flipped byte of the checkpoint is caught by the checksum.
      const key = 'bilevel:checkpoint:ck:exp:esj-seed0';
      const value = (await raw.getBuffer(key))!;
      value[value.length - entry.rows.length - 1] ^= 1;
      await raw.set(key, value);
      await expect(store.get('exp', 'esj-seed0')).rejects.toThrow(/damaged: checksum mismatch/);
      const big = { ...entry, checkpoint: Buffer.alloc(2000) };
      expect(() => store.checkSize(big)).toThrow(/over the limit .*\(1000 bytes\): start the workers with --checkpoint-dir/);
      await expect(store.put('exp', 'big', big)).rejects.toThrow(ConfigError);
      await store.remove('exp', 'esj-seed0');
      expect(await store.get('exp', 'esj-seed0')).toBeNull();
    } finally {
      store.close();
      raw.disconnect();
    }
  });
});
