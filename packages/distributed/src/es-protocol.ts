/**
 * What travels for distributed evolution-strategies steps: per step, one binary Redis value with x, the warm
 * start y0, y_N(x) and ∇_y f (raw float32); per block of perturbed solves, one small job naming the step's
 * value, the directions' seed and the block; per job, one result with a scalar per solve. With the ES
 * estimator's Jacobian memory the step's value also carries the directions (drawn against the coordinator's
 * memory) and each result the block's whole responses.
 */
import { ConfigError, type PerturbedSolveRequest, type PipelineReplica, z } from '@bilevel/core';
import { PROTOCOL_VERSION } from './protocol';


/** Name of every perturbed-solve job. */
export const ES_JOB_NAME = 'es-block';

/** The queue of perturbed-solve jobs next to a run queue `name`. */
export function esQueueName(queueName: string): string {
  return `${queueName}-es`;
}

const RandomStateSchema = z
  .object({
    s: z.tuple([z.number().int(), z.number().int(), z.number().int(), z.number().int()]),
    spare: z.number().nullable(),
  })
  .strict();

const FlatSpecSchema = z
  .object({
    names: z.array(z.string().min(1)).min(1).max(10_000),
    shapes: z.array(z.array(z.number().int().min(0)).max(16)).max(10_000),
  })
  .strict()
  .refine((s) => s.names.length === s.shapes.length, 'names and shapes differ in length');

const RefSchema = z.object({ name: z.string().min(1).max(200), options: z.record(z.unknown()) }).strict();

/** The payload of one perturbed-solve job. */
export const EsBlockJobSchema = z
  .object({
    protocol: z.number().int(),
    libraryVersion: z.string().min(1),
    /** The coordinating estimator's id (a replica is built once per run id and pipeline). */
    runId: z.string().regex(/^[A-Za-z0-9._:-]{1,200}$/),
    /** The Redis key of the step's binary values. */
    stepKey: z.string().regex(/^[A-Za-z0-9._:-]{1,300}$/),
    step: z.number().int().min(0),
    /** The block: solves from … to − 1 of the step. */
    from: z.number().int().min(0),
    to: z.number().int().min(1),
    replica: z.object({ problem: RefSchema, innerSolver: RefSchema, oracles: z.record(z.unknown()) }).strict(),
    xSpec: FlatSpecSchema,
    ySpec: FlatSpecSchema,
    seed: RandomStateSchema,
    directions: z
      .object({
        distribution: z.string().min(1).max(40),
        count: z.number().int().min(1).max(1_000_000),
        antithetic: z.boolean(),
        smoothing: z.number().positive(),
        batchedSolves: z.boolean(),
        maxBatchSize: z.number().int().positive().optional(),
      })
      .strict(),
    maxIterations: z.number().int().positive().optional(),
    /** Whether the step's value carries an inner-batch source (stochastic problems). */
    replaysBatches: z.boolean(),
    /** Whether the step's value carries the directions themselves (the Jacobian memory's), not drawn from the seed. */
    givenDirections: z.boolean().optional(),
    /** Whether the worker returns the whole responses y_N(x + μu_j) − y_N(x) (the Jacobian memory keeps them). */
    responses: z.boolean().optional(),
  })
  .strict()
  .refine((j) => j.from < j.to && j.to <= (j.directions.antithetic ? 2 : 1) * j.directions.count, {
    message: 'block outside the step’s solves',
    path: ['to'],
  });
/** A perturbed-solve job's payload. */
export type EsBlockJob = z.output<typeof EsBlockJobSchema>;

/** What a worker returns for a block. */
export interface EsBlockResult {
  /** The directions' seed it drew from (the coordinator checks it against the step's). */
  readonly seed: EsBlockJob['seed'];
  /** The block. */
  readonly from: number;
  /** The block's end (exclusive). */
  readonly to: number;
  /** c_j for j in the block. */
  readonly values: number[];
  /**
   * When the job asks for them: the responses y_N(x + μu_j) − y_N(x) of the block, row-major
   * [to − from, dim y] float32, base64.
   */
  readonly responses?: string;
  /** Summed iteration counts of the block's solves. */
  readonly iterations: number;
  /** The oracle calls the block's solves made. */
  readonly oracleCalls: Record<string, number>;
  /** The worker's name. */
  readonly worker: string;
}

/** Checks a perturbed-solve job's payload: shape, then protocol and library version. */
export function parseEsBlockJob(data: unknown, libraryVersion: string): EsBlockJob {
  const parsed = EsBlockJobSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(`malformed ES job: ${issue.path.join('.') || '(payload)'}: ${issue.message}`, 'job');
  }
  const job = parsed.data;
  if (job.protocol !== PROTOCOL_VERSION) {
    throw new ConfigError(`ES job of protocol ${job.protocol}; this worker speaks protocol ${PROTOCOL_VERSION}`, 'job.protocol');
  }
  if (job.libraryVersion !== libraryVersion) {
    throw new ConfigError(
      `ES job from library version ${job.libraryVersion}; this worker runs ${libraryVersion} (start workers of the same version)`,
      'job.libraryVersion',
    );
  }
  return job;
}

const MAGIC = 0x53454c42; // 'BLES': x, y0, y_N, ∇_y f
const MAGIC_WITH_DIRECTIONS = 0x44454c42; // 'BLED': the same, then the directions
const HEADER = 24;

/** The parts of a step that travel in its binary value. */
export type StepArrays = Pick<
  PerturbedSolveRequest,
  'x' | 'y0' | 'yBase' | 'gradY' | 'innerBatchSource' | 'directionRows'
>;

/**
 * The step's x, y0, y_N(x), ∇_y f as one binary value: a 24-byte header (magic, the 4 array lengths, the
 * length of the JSON tail), raw float32, then the inner-batch source as JSON (the RNG state and the problem's
 * sampler state, e.g. its epoch order; empty without one). With `directionRows` (the Jacobian memory's
 * directions) the magic is 'BLED', the header has a fifth length (28 bytes) and the rows follow ∇_y f.
 */
export function encodeStepArrays(request: StepArrays): Buffer {
  const arrays = [request.x, request.y0, request.yBase, request.gradY];
  if (request.directionRows) arrays.push(request.directionRows);
  const header = HEADER + 4 * (arrays.length - 4);
  const total = arrays.reduce((s, a) => s + a.length, 0);
  const tail = request.innerBatchSource ? Buffer.from(JSON.stringify(request.innerBatchSource), 'utf8') : Buffer.alloc(0);
  const buf = Buffer.alloc(header + 4 * total + tail.length);
  buf.writeUInt32LE(request.directionRows ? MAGIC_WITH_DIRECTIONS : MAGIC, 0);
  arrays.forEach((a, i) => buf.writeUInt32LE(a.length, 4 + 4 * i));
  buf.writeUInt32LE(tail.length, header - 4);
  let o = header;
  for (const a of arrays) {
    Buffer.from(a.buffer, a.byteOffset, a.byteLength).copy(buf, o);
    o += a.byteLength;
  }
  tail.copy(buf, o);
  return buf;
}

/** Reads {@link encodeStepArrays}'s value (checking its header and length). */
export function decodeStepArrays(buf: Buffer): StepArrays {
  const magic = buf.length >= HEADER ? buf.readUInt32LE(0) : 0;
  if (magic !== MAGIC && magic !== MAGIC_WITH_DIRECTIONS) throw new Error('ES step value: bad header');
  const count = magic === MAGIC ? 4 : 5;
  const header = HEADER + 4 * (count - 4);
  if (buf.length < header) throw new Error('ES step value: wrong length');
  const lengths = Array.from({ length: count }, (_, i) => buf.readUInt32LE(4 + 4 * i));
  const tailLength = buf.readUInt32LE(header - 4);
  if (buf.length !== header + 4 * lengths.reduce((s, n) => s + n, 0) + tailLength) {
    throw new Error('ES step value: wrong length');
  }
  const out: Float32Array[] = [];
  let o = header;
  for (const n of lengths) {
    const a = new Float32Array(n);
    Buffer.from(a.buffer).set(buf.subarray(o, o + 4 * n));
    out.push(a);
    o += 4 * n;
  }
  const innerBatchSource = tailLength
    ? (JSON.parse(buf.subarray(o, o + tailLength).toString('utf8')) as StepArrays['innerBatchSource'])
    : undefined;
  return {
    x: out[0],
    y0: out[1],
    yBase: out[2],
    gradY: out[3],
    innerBatchSource,
    ...(count === 5 ? { directionRows: out[4] } : {}),
  };
}

/** The job payloads of one step: blocks of `blockSize` of its J solves. */
export function stepJobs(
  request: PerturbedSolveRequest,
  replica: PipelineReplica,
  meta: { runId: string; stepKey: string; libraryVersion: string; blockSize: number },
): EsBlockJob[] {
  const J = (request.directions.antithetic ? 2 : 1) * request.directions.count;
  const jobs: EsBlockJob[] = [];
  for (let from = 0; from < J; from += meta.blockSize) {
    jobs.push({
      protocol: PROTOCOL_VERSION,
      libraryVersion: meta.libraryVersion,
      runId: meta.runId,
      stepKey: meta.stepKey,
      step: request.step,
      from,
      to: Math.min(J, from + meta.blockSize),
      replica: {
        problem: { name: replica.problem.name, options: replica.problem.options },
        innerSolver: { name: replica.innerSolver.name, options: replica.innerSolver.options },
        oracles: replica.oracles,
      },
      xSpec: { names: [...request.xSpec.names], shapes: request.xSpec.shapes.map((s) => [...s]) },
      ySpec: { names: [...request.ySpec.names], shapes: request.ySpec.shapes.map((s) => [...s]) },
      seed: { s: [...request.seed.s] as [number, number, number, number], spare: request.seed.spare },
      directions: { ...request.directions },
      ...(request.maxIterations !== undefined ? { maxIterations: request.maxIterations } : {}),
      replaysBatches: request.innerBatchSource !== undefined,
      ...(request.directionRows ? { givenDirections: true } : {}),
      ...(request.responses ? { responses: true } : {}),
    });
  }
  return jobs;
}
