/**
 * Distributed evolution-strategies steps on BullMQ: the coordinator's {@link RemotePerturbedSolves} (the
 * executor the `es` estimator's `workers` option resolves from the plugin container, registered by
 * {@link registerDistributedEs}) and the worker's {@link startEsWorker}.
 */
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from 'worker_threads';
import IORedis from 'ioredis';
import {
  PERTURBED_SOLVE_EXECUTORS,
  type PerturbedSolveExecutor,
  type PerturbedSolveExecutorFactory,
  type PerturbedSolveReply,
  type PerturbedSolveRequest,
  type PipelineReplica,
  type PluginRegistry,
  type WorkerPoolOptions,
} from '@bilevel/core';
import {
  decodeStepArrays,
  type EsBlockJob,
  type EsBlockResult,
  encodeStepArrays,
  esQueueName,
  parseEsBlockJob,
  stepJobs,
} from './es-protocol';
import { encodeFloat32 } from './float32';
import type { EsThreadAnswer, EsThreadData, EsThreadStep } from './es-thread';
import { parseQueueUrl, type QueueAddress } from './queue-url';
import { QueueWorker, type QueueWorkerOptions } from './run-queue';

/** The compiled thread module (next to this file in dist/; from src/ under ts-jest, the built copy). */
function threadFile(): string {
  const here = path.join(__dirname, 'es-thread.js');
  if (fs.existsSync(here)) return here;
  const built = path.join(__dirname, '..', 'dist', 'es-thread.js');
  if (fs.existsSync(built)) return built;
  throw new Error(`es-thread.js not found next to ${__filename} nor in ../dist (build @bilevel/distributed)`);
}

/**
 * The coordinator's end of distributed ES: each step's x, y0, y_N(x) and ∇_y f go to Redis once (one binary
 * value), its J perturbed solves go to the workers as ⌈J / blockSize⌉ jobs, and the c_j come back. A thread
 * does the I/O while the (synchronous) step waits for it. A step whose jobs do not all finish within
 * `timeoutMs` throws an error naming the missing jobs; a job whose worker dies is taken over by another
 * worker (BullMQ's stalled-job check, after the workers' lock duration).
 */
export class RemotePerturbedSolves implements PerturbedSolveExecutor {
  private thread: Worker | null = null;
  private port: MessagePort | null = null;
  private flag: Int32Array | null = null;
  /** This executor's id (prefix of its job ids and step keys). */
  readonly runId = `es-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;

  constructor(
    private readonly address: QueueAddress,
    private readonly options: WorkerPoolOptions,
    private readonly replica: PipelineReplica,
    private readonly libraryVersion: string,
  ) {}

  private start(): void {
    if (this.thread) return;
    const shared = new SharedArrayBuffer(4);
    const { port1, port2 } = new MessageChannel();
    const data: EsThreadData & { esThread: true } = {
      connection: this.address.connection,
      queueName: esQueueName(this.address.queueName),
      flag: shared,
      port: port2,
      esThread: true,
    };
    this.thread = new Worker(threadFile(), { workerData: data, transferList: [port2] });
    // The thread never keeps the process alive by itself.
    this.thread.unref();
    this.thread.on('error', () => undefined);
    this.port = port1;
    this.flag = new Int32Array(shared);
  }

  /** Sends a message to the thread and sleeps until it answers (or `waitMs` passes). */
  private ask(message: EsThreadStep | { type: 'close' }, waitMs: number): unknown {
    const flag = this.flag!;
    Atomics.store(flag, 0, 0);
    this.thread!.postMessage(message);
    Atomics.wait(flag, 0, 0, waitMs);
    return receiveMessageOnPort(this.port!)?.message;
  }

  solve(request: PerturbedSolveRequest): PerturbedSolveReply {
    this.start();
    const stepKey = `bilevel:es:${this.runId}:${request.step}`;
    const jobs = stepJobs(request, this.replica, {
      runId: this.runId,
      stepKey,
      libraryVersion: this.libraryVersion,
      blockSize: this.options.blockSize,
    });
    const buffer = encodeStepArrays(request);
    const solves = (request.directions.antithetic ? 2 : 1) * request.directions.count;
    const message: EsThreadStep = {
      type: 'step',
      step: request.step,
      stepKey,
      buffer: new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength),
      jobs: jobs.map((j) => ({ id: `${this.runId}:${j.step}:${j.from}`, data: j as unknown as Record<string, unknown> })),
      seed: request.seed,
      solves,
      timeoutMs: this.options.timeoutMs,
      ...(request.responses ? { responseLength: request.yBase.length } : {}),
    };
    const answer = this.ask(message, this.options.timeoutMs + 30_000) as EsThreadAnswer | undefined;
    if (!answer) {
      throw new Error(
        `ES step ${request.step + 1}: the queue thread did not answer within ${this.options.timeoutMs + 30_000} ms (queue ${this.address.display})`,
      );
    }
    if (!answer.ok) throw new Error(`${answer.error} (queue ${this.address.display})`);
    return {
      values: answer.values,
      iterations: answer.iterations,
      oracleCalls: answer.oracleCalls,
      bytes: { sent: answer.sent, received: answer.received },
      ...(answer.responses ? { responses: answer.responses } : {}),
    };
  }

  dispose(): void {
    if (!this.thread) return;
    this.ask({ type: 'close' }, 5000);
    void this.thread.terminate();
    this.port?.close();
    this.thread = null;
    this.port = null;
  }
}

/**
 * Registers the executor factory of the `es` estimator's `workers` option in `registry`'s container: an
 * estimator created with `workers: { queue }` then sends its perturbed solves to that queue's workers,
 * stamping its jobs with `libraryVersion` (workers of another version refuse them).
 */
export function registerDistributedEs(registry: PluginRegistry, libraryVersion: string): void {
  const factory: PerturbedSolveExecutorFactory = {
    create: (options, replica) =>
      new RemotePerturbedSolves(parseQueueUrl(options.queue), options, replica, libraryVersion),
  };
  registry.container.register(PERTURBED_SOLVE_EXECUTORS, { useValue: factory });
}

/**
 * What a worker computes for a block: the block's c_j, summed iterations and oracle calls, and (when the job
 * asks for them) the responses y_N(x + μu_j) − y_N(x), row-major [to − from, dim y].
 */
export type EsBlockComputer = (
  job: EsBlockJob,
  request: PerturbedSolveRequest,
) => { values: Float32Array; iterations: number; oracleCalls: Record<string, number>; responses?: Float32Array };

/** The block's responses, checked to be (to − from) rows of dim y. */
function checkedResponses(responses: Float32Array | undefined, job: EsBlockJob, dimY: number): Float32Array {
  const expected = (job.to - job.from) * dimY;
  if (!responses || responses.length !== expected) {
    throw new Error(`the block's responses have ${responses?.length ?? 0} values, expected ${expected}`);
  }
  return responses;
}

/** A running perturbed-solve worker. */
export interface EsWorkerHandle {
  /** The underlying queue worker. */
  readonly worker: QueueWorker;
  /** Takes jobs until closed. */
  readonly running: Promise<void>;
  /** Stops taking jobs (a running block finishes first) and closes the connections. */
  close(): Promise<void>;
}

/**
 * Takes perturbed-solve jobs from the ES queue next to `address`'s run queue: validates each payload
 * (shape, protocol, library version), reads the step's binary value from Redis (cached for the step's other
 * blocks) and returns `compute`'s c_j with the directions' seed and the block.
 */
export function startEsWorker(
  address: QueueAddress,
  compute: EsBlockComputer,
  options: QueueWorkerOptions & { libraryVersion: string },
): EsWorkerHandle {
  const redis = new IORedis(address.connection as Record<string, unknown>);
  redis.on('error', () => undefined);
  const cache = new Map<string, ReturnType<typeof decodeStepArrays>>();
  const name = options.name ?? `${os.hostname()}:${process.pid}`;
  const worker = new QueueWorker(
    { ...address, queueName: esQueueName(address.queueName) },
    async ({ job }) => {
      const data = parseEsBlockJob(job.data, options.libraryVersion);
      let arrays = cache.get(data.stepKey);
      if (!arrays) {
        const buf = await redis.getBuffer(data.stepKey);
        if (!buf) throw new Error(`the step's values (${data.stepKey}) are gone from Redis (the step timed out or its coordinator stopped)`);
        arrays = decodeStepArrays(buf);
        cache.clear();
        cache.set(data.stepKey, arrays);
      }
      const size = (spec: { shapes: number[][] }): number =>
        spec.shapes.reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0);
      if (arrays.x.length !== size(data.xSpec) || arrays.yBase.length !== size(data.ySpec)) {
        throw new Error(`the step's values do not match the job's layouts (${data.stepKey})`);
      }
      const request: PerturbedSolveRequest = {
        step: data.step,
        ...arrays,
        xSpec: data.xSpec,
        ySpec: data.ySpec,
        seed: data.seed,
        directions: data.directions,
        maxIterations: data.maxIterations,
        ...(data.givenDirections ? { directionRows: arrays.directionRows } : {}),
        ...(data.responses ? { responses: true } : {}),
      };
      if (data.givenDirections && !arrays.directionRows) {
        throw new Error(`the step's value carries no directions though the job says they travel with it (${data.stepKey})`);
      }
      if (data.replaysBatches && !arrays.innerBatchSource) {
        throw new Error(`the step's value carries no inner-batch source though the job replays batches (${data.stepKey})`);
      }
      const out = compute(data, request);
      const result: EsBlockResult = {
        seed: data.seed,
        from: data.from,
        to: data.to,
        values: Array.from(out.values),
        ...(data.responses
          ? { responses: encodeFloat32(checkedResponses(out.responses, data, size(data.ySpec))) }
          : {}),
        iterations: out.iterations,
        oracleCalls: out.oracleCalls,
        worker: name,
      };
      return { value: result };
    },
    { ...options, name },
  );
  const running = worker.run();
  return {
    worker,
    running,
    close: async () => {
      await worker.close('finish');
      await running;
      redis.disconnect();
    },
  };
}
