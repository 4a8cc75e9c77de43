/**
 * The distributed side of the `bilevel` command, on @bilevel/distributed (BullMQ on Redis):
 * `bilevel worker` (takes run jobs), `bilevel run --queue` (a {@link RunExecutor} that sends each run to a
 * worker and streams its rows back into the results folder) and `bilevel status` (jobs, workers, failures).
 * A worker runs one (method, seed) with the same `executeRun` as a local run, so its rows are the
 * local run's rows.
 */
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  type BilevelProblem,
  ConfigError,
  createOracles,
  DataError,
  type InnerSolver,
  type Oracles,
  registry as defaultRegistry,
  OracleSpecSchema,
  type PluginRegistry,
  replayInnerBatches,
  zeroCounts,
} from '@bilevel/core';
import {
  checkConnection,
  type EsBlockComputer,
  DEFAULT_REDIS_CHECKPOINT_LIMIT,
  RedisCheckpointStore,
  registerDistributedEs,
  startEsWorker,
  type StoredCheckpoint,
  parseQueueUrl,
  parseRunJob,
  PROTOCOL_VERSION,
  QueueCoordinator,
  queueStatus,
  QueueWorker,
  type QueueAddress,
  type QueueStatus,
  type RunJob,
} from '@bilevel/distributed';
import { perturbedSolveBlock } from '@bilevel/estimators';
import { initBackend } from './backend';
import { type ExperimentConfig, type ExperimentPlan, planExperiment } from './config';
import { formatDuration, formatNumber, textTable } from './format';
import { type OutputStream, ProgressReporter } from './progress';
import {
  checkpointDir,
  executeRun,
  type RunExecutor,
  type RunOutcome,
  runFiles,
  type RunTask,
} from './run-experiment';
import { type MetricsRow, RunRecorder } from './run-recorder';
import type { RunSummary } from './summary';

/** The library version a job is stamped with; workers of another version refuse it. */
export function libraryVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

// The `es` estimator's `workers` option sends perturbed solves to this package's workers.
registerDistributedEs(defaultRegistry, libraryVersion());

/** A worker's replica of a pipeline's problem, inner solver and oracles. */
interface Replica {
  readonly problem: BilevelProblem;
  readonly solver: InnerSolver;
  readonly oracles: Oracles;
}

/**
 * The perturbed-solve blocks of distributed ES jobs on this worker: each job names the pipeline (problem,
 * inner solver, oracles, validated here with the same schemas as a config, against this process's plugins);
 * its replica is built once and kept (the newest `keep` pipelines).
 */
export function esBlockComputer(reg: PluginRegistry, keep = 4): EsBlockComputer & { dispose(): void } {
  const replicas = new Map<string, Replica>();
  const replicaOf = (spec: EsBlockJobReplica): Replica => {
    const key = JSON.stringify(spec);
    const found = replicas.get(key);
    if (found) return found;
    const problem = reg.create('problem', spec.problem.name, spec.problem.options, 'problem');
    const solver = reg.create('innerSolver', spec.innerSolver.name, spec.innerSolver.options, 'innerSolver');
    const oracles = createOracles(problem, parseOracleSpec(spec.oracles));
    const replica = { problem, solver, oracles };
    replicas.set(key, replica);
    while (replicas.size > keep) {
      const [oldest, r] = replicas.entries().next().value as [string, Replica];
      r.problem.dispose?.();
      replicas.delete(oldest);
    }
    return replica;
  };
  const compute = ((job, request) => {
    const replica = replicaOf(job.replica);
    const before = { ...replica.oracles.counts } as Record<string, number>;
    const batches = request.innerBatchSource ? replayInnerBatches(replica.problem, request.innerBatchSource) : null;
    try {
      const out = perturbedSolveBlock(
        { solver: replica.solver, oracles: replica.oracles, innerBatches: batches?.schedule },
        request,
        job.from,
        job.to,
      );
      const after = replica.oracles.counts as Record<string, number>;
      const oracleCalls: Record<string, number> = {};
      for (const k of Object.keys(after)) if (after[k] !== before[k]) oracleCalls[k] = after[k] - (before[k] ?? 0);
      return { ...out, oracleCalls };
    } finally {
      batches?.release();
    }
  }) as EsBlockComputer & { dispose(): void };
  compute.dispose = () => {
    for (const r of replicas.values()) r.problem.dispose?.();
    replicas.clear();
  };
  return compute;
}

type EsBlockJobReplica = Parameters<EsBlockComputer>[0]['replica'];

function parseOracleSpec(spec: Record<string, unknown>): Parameters<typeof createOracles>[1] {
  return OracleSpecSchema.parse(spec) as Parameters<typeof createOracles>[1];
}

/** What a worker sends back for a run: the outcome, with errors as plain kind and message. */
interface RunJobResult {
  readonly summary: RunSummary;
  readonly rows: readonly MetricsRow[];
  readonly fatal: { readonly kind: string; readonly message: string } | null;
  readonly failureLine: string | null;
  readonly problemInfo: Extract<RunOutcome, { kind: 'ran' }>['problemInfo'];
  readonly worker: string;
  readonly backend: string;
}

/** Options of {@link runWorker}. */
export interface WorkerOptions {
  /** The queue URL (`redis://…`, `rediss://…`). */
  readonly queue: string;
  /** Runs at once in this process (default 1). */
  readonly concurrency?: number;
  /**
   * A folder every worker can reach, for checkpoints. Without it, checkpoints go to a private temporary
   * folder and the newest one of each run (with its rows) is copied to Redis, where another worker finds it.
   */
  readonly checkpointDir?: string;
  /** Largest checkpoint (file plus rows, bytes) kept in Redis when there is no checkpoint folder (default 16 MiB). */
  readonly redisCheckpointLimit?: number;
  /** The tfjs backend (default auto). */
  readonly backend?: string;
  /** Stopping it ends the worker: its running jobs stop after their step, checkpoint, and go back to the queue. */
  readonly signal?: AbortSignal;
  /** Messages and run progress. */
  readonly stdout: OutputStream;
  /** Errors. */
  readonly stderr: OutputStream;
  /** No run progress, only the worker's own messages. */
  readonly quiet?: boolean;
  /** Milliseconds a job's lock lives (a killed worker's job is taken over after it; default 30 000). */
  readonly lockDuration?: number;
  /** Milliseconds between stalled-job checks (default 30 000). */
  readonly stalledInterval?: number;
  /** The plugin registry (default core's). */
  readonly registry?: PluginRegistry;
  /** The worker's name (default host:pid). */
  readonly name?: string;
  /** Called once the worker takes jobs. */
  readonly onReady?: () => void;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Runs a worker until `signal` is aborted: checks the queue's Redis (a clear error for a wrong URL,
 * password or an unreachable server), starts its backend and reports it, then takes run jobs. Each job is
 * validated (its format and version, then its config with the same schemas as a config file, against the
 * plugins this process has loaded — plugin modules named in a job are never loaded) and run with
 * `executeRun`, checkpointing into the checkpoint folder and streaming its rows to the coordinator.
 */
export async function runWorker(options: WorkerOptions): Promise<void> {
  const log = (line: string): void => {
    options.stdout.write(line + '\n');
  };
  const address = parseQueueUrl(options.queue);
  const redisVersion = await checkConnection(address);
  const running = await initBackend(options.backend, () => undefined);
  const reg = options.registry ?? defaultRegistry;
  const store = options.checkpointDir
    ? path.resolve(options.checkpointDir)
    : fs.mkdtempSync(path.join(os.tmpdir(), 'bilevel-worker-'));
  fs.mkdirSync(store, { recursive: true });
  // Without a shared folder, each run's newest checkpoint is copied to Redis for whoever takes the run over.
  const redisCheckpoints = options.checkpointDir
    ? null
    : new RedisCheckpointStore(address, options.redisCheckpointLimit ?? DEFAULT_REDIS_CHECKPOINT_LIMIT);
  const version = libraryVersion();
  const worker = new QueueWorker(
    address,
    async ({ job, signal, sendRow }) => {
      const data = parseRunJob(job.data, version);
      const { plan, task } = planJob(data, reg);
      const requested = plan.config.backend;
      if (requested !== undefined && requested !== 'auto' && requested !== running.name) {
        throw new ConfigError(
          `the experiment asks for backend '${requested}'; worker ${worker.name} runs '${running.name}' (start it with --backend ${requested})`,
          'backend',
        );
      }
      const dir = path.join(store, data.experimentId);
      const progress = new ProgressReporter(options.stdout, {
        tty: false,
        quiet: options.quiet,
        intervalSeconds: 5,
      });
      log(`job ${job.id}: ${task.method.label}, seed ${task.seed}`);
      const files = runFiles(task.fileBase);
      let uploads: Promise<void> = Promise.resolve();
      let uploadError: unknown = null;
      let onCheckpoint: ((file: string) => void) | undefined;
      if (redisCheckpoints) {
        const saved = await redisCheckpoints.get(data.experimentId, task.fileBase);
        if (saved && restoreCheckpoint(dir, task.fileBase, saved)) {
          log(`job ${job.id}: checkpoint ${saved.file} from Redis`);
        }
        onCheckpoint = (file) => {
          const entry: StoredCheckpoint = {
            file: path.basename(file),
            checkpoint: fs.readFileSync(file),
            rows: fs.readFileSync(path.join(dir, files.jsonl), 'utf8'),
          };
          // Over the limit: the run stops here with a message saying to use --checkpoint-dir.
          redisCheckpoints.checkSize(entry);
          uploads = uploads.then(() =>
            redisCheckpoints.put(data.experimentId, task.fileBase, entry).catch((e: unknown) => {
              uploadError ??= e;
            }),
          );
        };
      }
      const outcome = await executeRun(task, {
        registry: reg,
        dir,
        checkpoint: plan.config.checkpoint,
        resume: true,
        progress,
        signal,
        onRows: (rows) => rows.forEach((row, i) => sendRow(row, i)),
        onRow: (row, i) => sendRow(row, i),
        onCheckpoint,
      });
      await uploads;
      if (uploadError) {
        options.stderr.write(`job ${job.id}: copying a checkpoint to Redis failed: ${errorMessage(uploadError)}\n`);
      }
      if (outcome.kind === 'setup-failed') throw outcome.error;
      if (outcome.summary.status === 'interrupted' && signal.aborted) {
        log(`job ${job.id}: handed back at step ${outcome.summary.steps} (checkpoint in ${redisCheckpoints ? 'Redis' : dir})`);
        return { handBack: true };
      }
      await redisCheckpoints?.remove(data.experimentId, task.fileBase);
      // The coordinator writes the run's files from the returned rows; the worker's copies go.
      for (const f of [files.csv, files.jsonl]) fs.rmSync(path.join(dir, f), { force: true });
      for (const sub of [path.join(dir, 'runs'), path.join(dir, 'checkpoints'), dir]) {
        try {
          fs.rmdirSync(sub);
        } catch {
          // still used by another run of the experiment
        }
      }
      const result: RunJobResult = {
        summary: outcome.summary,
        rows: outcome.rows,
        fatal: outcome.fatal
          ? { kind: (outcome.fatal as Error).name || 'Error', message: errorMessage(outcome.fatal) }
          : null,
        failureLine: outcome.failureLine,
        problemInfo: outcome.problemInfo,
        worker: worker.name,
        backend: running.name,
      };
      return { value: result };
    },
    {
      concurrency: options.concurrency,
      lockDuration: options.lockDuration,
      stalledInterval: options.stalledInterval,
      name: options.name,
    },
  );
  worker.on('failed', (...args: unknown[]) => {
    const [job, error] = args as [{ id?: string } | undefined, Error];
    options.stderr.write(`job ${job?.id ?? '?'} failed: ${error.message}\n`);
  });
  // Connection errors repeat while Redis is away (ioredis reconnects by itself): one line per outage.
  let lastError = '';
  worker.on('error', (...args: unknown[]) => {
    const message = errorMessage(args[0]);
    if (message !== lastError) options.stderr.write(`worker error: ${message} (retrying)\n`);
    lastError = message;
  });
  worker.on('active', () => {
    lastError = '';
  });
  const runningWorker = worker.run();
  await worker.ready();
  // Perturbed-solve blocks of distributed ES steps, from the ES queue next to the run queue.
  if (reg !== defaultRegistry) registerDistributedEs(reg, version);
  const esCompute = esBlockComputer(reg);
  const esWorker = startEsWorker(address, esCompute, {
    libraryVersion: version,
    concurrency: 1,
    lockDuration: options.lockDuration,
    stalledInterval: options.stalledInterval,
    name: `${worker.name}/es`,
  });
  esWorker.worker.on('failed', (...args: unknown[]) => {
    const [job, error] = args as [{ id?: string } | undefined, Error];
    options.stderr.write(`ES job ${job?.id ?? '?'} failed: ${error.message}\n`);
  });
  await esWorker.worker.ready();
  log(
    `worker ${worker.name}: backend ${running.name} (${running.reason}); queue ${address.display} (Redis ${redisVersion}), ` +
      `concurrency ${options.concurrency ?? 1}; checkpoints in ${store}${redisCheckpoints ? ` (private; each run's newest one is copied to Redis, up to ${redisCheckpoints.limitBytes} bytes, for a worker that takes the run over)` : ''}`,
  );
  log(
    `plugins: ${reg.names('estimator').length} estimators, ${reg.names('problem').length} problems registered; taking jobs (Ctrl-C to stop)`,
  );
  options.onReady?.();
  await new Promise<void>((resolve) => {
    if (options.signal?.aborted) resolve();
    options.signal?.addEventListener('abort', () => resolve());
  });
  log('stopping: running jobs stop after their step and go back to the queue');
  await worker.close('hand-back');
  await runningWorker;
  await esWorker.close();
  esCompute.dispose();
  redisCheckpoints?.close();
  // A private temporary store is of no use to any later worker (its newest checkpoints are in Redis).
  if (!options.checkpointDir) fs.rmSync(store, { recursive: true, force: true });
  log('worker stopped');
}

/**
 * Writes a checkpoint kept in Redis (and the rows up to it) into the run's folder, unless that folder already
 * has it; true when written.
 */
function restoreCheckpoint(dir: string, fileBase: string, saved: StoredCheckpoint): boolean {
  const ckptDir = path.join(dir, checkpointDir(fileBase));
  const target = path.join(ckptDir, saved.file);
  if (fs.existsSync(target)) return false;
  fs.mkdirSync(ckptDir, { recursive: true });
  const jsonl = path.join(dir, runFiles(fileBase).jsonl);
  fs.mkdirSync(path.dirname(jsonl), { recursive: true });
  fs.writeFileSync(jsonl, saved.rows);
  fs.writeFileSync(target, saved.checkpoint);
  return true;
}

/** Validates a job's config like a config file (against this process's plugins) and finds its run. */
function planJob(data: RunJob, reg: PluginRegistry): { plan: ExperimentPlan; task: RunTask } {
  const listed = Array.isArray(data.config.plugins) ? (data.config.plugins as unknown[]).map(String) : [];
  let plan: ExperimentPlan;
  try {
    plan = planExperiment(data.config, {
      registry: reg,
      // A worker runs only code it was started with: plugin modules come from its own --plugin, never a job.
      loadPlugins: () => undefined,
    });
  } catch (e) {
    if (e instanceof ConfigError && listed.length && e.path.endsWith('.name')) {
      throw new ConfigError(
        `${e.message} (the job's config lists plugin module(s) ${listed.join(', ')}; a worker loads plugins only from its own --plugin)`,
        e.path,
      );
    }
    throw e;
  }
  const method = plan.methods[data.methodIndex];
  if (!method)
    throw new ConfigError(
      `malformed job: methodIndex ${data.methodIndex} but the config has ${plan.methods.length} method(s)`,
      'job',
    );
  if (!plan.config.seeds.includes(data.seed))
    throw new ConfigError(`malformed job: seed ${data.seed} is not among the config's seeds`, 'job');
  return {
    plan,
    task: { method, seed: data.seed, index: data.index, total: data.total, fileBase: data.fileBase },
  };
}

function rebuildError(kind: string, message: string): Error {
  if (kind === 'ConfigError') return new ConfigError(message);
  if (kind === 'DataError') return new DataError(message);
  const e = new Error(message);
  e.name = kind;
  return e;
}

/** A coordinator of a distributed experiment: the executor for `runExperiment`, and its connection. */
export interface DistributedExecution {
  /** Sends each run to a worker (for `runExperiment`'s `executor`). */
  readonly executor: RunExecutor;
  /** The experiment's id (the prefix of its job ids). */
  readonly experimentId: string;
  /** Closes the connection to the queue. */
  close(): Promise<void>;
}

/**
 * Connects to the queue (a clear error for a wrong URL, password or an unreachable server) and returns an
 * executor that sends each (method, seed) of `plan` as one job. While a job runs, its rows stream into the
 * results folder's metrics files (with per-run progress lines); when it ends, the files are rewritten from
 * the worker's complete rows. A job that fails on its worker is a failed run naming the worker's reason.
 */
export async function connectDistributed(
  plan: ExperimentPlan,
  options: { queue: string; stdout: OutputStream; quiet?: boolean },
): Promise<DistributedExecution> {
  const address: QueueAddress = parseQueueUrl(options.queue);
  await checkConnection(address);
  const coordinator = new QueueCoordinator(address, {
    onConnectionError: (e) => options.stdout.write(`queue connection lost (${errorMessage(e)}); retrying\n`),
  });
  await coordinator.ready();
  const experimentId = `${plan.config.name}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const config: ExperimentConfig = plan.config;
  const version = libraryVersion();
  const executor: RunExecutor = async (task, context) => {
    // The config runExperiment runs (sized for the coordinator's backend when it has `slowBackend` settings).
    const runConfig = context.config ?? config;
    const methodIndex = runConfig.methods.findIndex((m) => m.label === task.method.label);
    const job: RunJob = {
      protocol: PROTOCOL_VERSION,
      libraryVersion: version,
      experimentId,
      fileBase: task.fileBase,
      methodIndex,
      seed: task.seed,
      index: task.index,
      total: task.total,
      config: runConfig as unknown as Record<string, unknown>,
    };
    const files = runFiles(task.fileBase);
    const csv = path.join(context.dir, files.csv);
    const jsonl = path.join(context.dir, files.jsonl);
    fs.mkdirSync(path.dirname(csv), { recursive: true });
    let recorder = new RunRecorder(csv, jsonl);
    context.onRows?.(recorder.rows);
    const progress = new ProgressReporter(options.stdout, {
      tty: false,
      quiet: options.quiet,
      intervalSeconds: config.progress.intervalSeconds,
      everySteps: config.progress.everySteps,
    });
    progress.startRun({
      index: task.index,
      total: task.total,
      label: task.method.label,
      seed: task.seed,
      steps: task.method.pipeline.trainer.steps,
      timeLimitSeconds: task.method.pipeline.trainer.timeLimitSeconds,
    });
    const jobId = `${experimentId}:${task.fileBase}`;
    context.progress.log(
      `▶ run ${task.index}/${task.total}: ${task.method.label}, seed ${task.seed} → job ${jobId}`,
    );
    const onAbort = (): void => {
      void coordinator.cancel(jobId);
    };
    context.signal?.addEventListener('abort', onAbort);
    let lastWorker = '';
    const end = await coordinator.submit<RunJobResult>(
      jobId,
      job as unknown as Record<string, unknown>,
      (from, rows, worker) => {
        if (worker !== lastWorker) {
          if (lastWorker)
            context.progress.log(`  job ${jobId}: taken over by ${worker} from row ${from + 1}`);
          lastWorker = worker;
        }
        if (from < recorder.rows.length) {
          // A run resumed from a checkpoint on another worker sends again from there.
          recorder.close();
          recorder = new RunRecorder(csv, jsonl, recorder.rows.slice(0, from));
          context.onRows?.(recorder.rows);
        }
        (rows as MetricsRow[]).forEach((row, i) => {
          if (from + i === recorder.rows.length) {
            recorder.add(row);
            progress.step(row);
          }
        });
      },
    );
    context.signal?.removeEventListener('abort', onAbort);
    recorder.close();
    const problemName = (task.method.pipeline.problem as { name: string }).name;
    if (!end.ok) {
      const cancelled = context.signal?.aborted && end.error.includes('removed');
      const message = `on the worker: ${end.error}`;
      const line = `run failed: method '${task.method.label}', seed ${task.seed}, ${message}`;
      const summary: RunSummary = {
        method: task.method.label,
        seed: task.seed,
        // A job removed by Ctrl-C on the coordinator is an interrupted run (`bilevel resume` continues it).
        status: cancelled ? 'interrupted' : 'failed',
        steps: recorder.rows.length,
        trainSeconds: 0,
        wallSeconds: 0,
        setupSeconds: 0,
        finalMetrics: {},
        oracleCalls: recorder.rows[recorder.rows.length - 1]?.oracleCalls ?? zeroCounts(),
        oracleCallsTotal: recorder.rows[recorder.rows.length - 1]?.oracleCallsTotal ?? 0,
        files,
        error: cancelled
          ? undefined
          : { kind: 'WorkerError', message: end.error, step: recorder.rows.length + 1 },
      };
      if (!cancelled) progress.endRun(`✗ ${line}`);
      return {
        kind: 'ran',
        summary,
        rows: recorder.rows,
        fatal: null,
        failureLine: cancelled ? null : line,
        problemInfo: { name: problemName },
      };
    }
    const result = end.value;
    // The worker's complete rows are the run's record.
    new RunRecorder(csv, jsonl, result.rows).close();
    context.onRows?.(result.rows);
    const s = result.summary;
    if (!result.fatal && !result.failureLine) {
      progress.endRun(
        `✓ done on ${result.worker} (${result.backend}): ${s.method} seed ${s.seed}: ${s.steps} steps in ${formatDuration(s.wallSeconds)}, outer loss ${formatNumber(s.finalOuterLoss)}`,
      );
    } else if (result.failureLine) {
      progress.endRun(`✗ ${result.failureLine} (on ${result.worker})`);
    }
    return {
      kind: 'ran',
      summary: s,
      rows: result.rows,
      fatal: result.fatal ? rebuildError(result.fatal.kind, result.fatal.message) : null,
      failureLine: result.failureLine,
      problemInfo: result.problemInfo,
    };
  };
  return { executor, experimentId, close: () => coordinator.close() };
}

/**
 * The text `bilevel status` prints: job counts, the workers, the jobs, the failures; then the distributed-ES
 * queue's blocks (waiting, active, failed, completed), its attached workers and its failed blocks.
 */
export function statusText(status: QueueStatus, display: string): string {
  const lines: string[] = [];
  const counts = Object.entries(status.counts)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  lines.push(`queue ${display}: ${counts}`);
  lines.push('');
  lines.push(
    status.workers.length
      ? textTable(
          ['worker', 'address', 'idle'],
          status.workers.map((w) => [w.name, w.addr, `${w.idleSeconds} s`]),
        )
      : 'workers: none connected',
  );
  if (status.jobs.length) {
    lines.push('');
    lines.push(
      textTable(
        ['job', 'state', 'rows', 'worker', 'taken'],
        status.jobs.map((j) => [
          j.id,
          j.state,
          j.rows === undefined ? '' : String(j.rows),
          j.worker ?? '',
          String(j.attemptsMade),
        ]),
      ),
    );
  }
  const failures = status.jobs.filter((j) => j.failedReason);
  if (failures.length) {
    lines.push('');
    lines.push('failures:');
    for (const j of failures) lines.push(`  ${j.id}: ${j.failedReason}`);
  }
  const es = status.es;
  const esCounts = ['waiting', 'active', 'failed', 'completed']
    .map((k) => `${k} ${(es.counts[k] ?? 0) + (k === 'waiting' ? (es.counts.prioritized ?? 0) + (es.counts.delayed ?? 0) : 0)}`)
    .join(', ');
  lines.push('');
  lines.push(`distributed-ES queue ${es.queueName}: ${esCounts}`);
  lines.push(
    es.workers.length
      ? `  workers attached (${es.workers.length}): ${es.workers.map((w) => w.name).join(', ')}`
      : '  workers attached: none',
  );
  if (es.failures.length) {
    lines.push('  failed blocks:');
    for (const f of es.failures) lines.push(`    ${f.id}: ${f.failedReason}`);
  }
  return lines.join('\n');
}

/** Reads and formats a queue's status (`bilevel status --queue …`). */
export async function showStatus(queue: string, json: boolean): Promise<string> {
  const address = parseQueueUrl(queue);
  await checkConnection(address);
  const status = await queueStatus(address);
  return json ? JSON.stringify(status, null, 2) : statusText(status, address.display);
}
