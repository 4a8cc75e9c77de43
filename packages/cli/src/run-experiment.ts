import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import {
  Checkpointer,
  listCheckpoints,
  ConfigError,
  createPipeline,
  DataError,
  DivergenceError,
  loadLatestCheckpoint,
  registry as defaultRegistry,
  StepError,
  zeroCounts,
  type OracleCounts,
  type Pipeline,
  type PluginRegistry,
  type TrainResult,
  writeCheckpoint,
} from '@bilevel/core';
import { type ExperimentPlan, planExperiment, type ResolvedMethod } from './config';
import { currentBackend, initBackend as startBackend } from './backend';
import { formatDuration, formatNumber, slug } from './format';
import { cliVersion, writeFiguresAndReport } from './report';
import { type OutputStream, ProgressReporter } from './progress';
import {
  acquireResultsLock,
  assertNotLocked,
  checkOutputFolder,
  guardWrite,
  isStorageFailure,
  reserveSpace,
  type ResultsLock,
  StorageError,
  toStorageError,
  writeFileAtomic,
} from './results-folder';
import {
  jsonWithNonFinite,
  readRunRows,
  rowFromEvent,
  RunRecorder,
  totalCalls,
  type MetricsRow,
} from './run-recorder';
import { sizeForBackend } from './slow-backend';
import {
  type ExperimentStatus,
  type ExperimentSummary,
  type RunSummary,
  summarizeMethod,
  summaryMarkdown,
  summaryText,
} from './summary';

/** Exit codes of the `bilevel` command. */
export const EXIT = {
  /** Every run completed. */
  ok: 0,
  /** A run failed (it names the method, seed and outer step). */
  runError: 1,
  /** A config or data error, before anything ran. */
  configError: 2,
  /** Interrupted (Ctrl-C); everything computed so far is kept. */
  interrupted: 130,
} as const;

/** Options of {@link runExperiment}. */
export interface RunExperimentOptions {
  /** The plugin registry (default: core's global one). */
  readonly registry?: PluginRegistry;
  /** Progress and messages (default process.stdout). */
  readonly stdout?: OutputStream;
  /** Live bar (true) or plain lines (false); default: whether `stdout` is a terminal. */
  readonly tty?: boolean;
  /** No progress output. */
  readonly quiet?: boolean;
  /** Aborting it stops the current run at the end of its step and skips the remaining runs. */
  readonly signal?: AbortSignal;
  /** Write into an existing non-empty results folder. */
  readonly force?: boolean;
  /** Start the tfjs backend named in the config (default true). */
  readonly initBackend?: boolean;
  /** The command line, recorded in config.resolved.json. */
  readonly argv?: readonly string[];
  /** Clock for the default folder name (tests). */
  readonly date?: Date;
  /**
   * Continue the experiment of this results folder (`bilevel resume`): finished runs are kept as they are,
   * every other run continues from its newest valid checkpoint (or starts over when it has none), and its
   * metrics files keep the rows up to that checkpoint, with no row written twice.
   */
  readonly resume?: string;
  /** Runs one (method, seed); default `executeRun` in this process (another: e.g. on a worker). */
  readonly executor?: RunExecutor;
  /** How many runs may be under way at once (default 1: one after another). */
  readonly concurrency?: number;
}

/** What {@link runExperiment} returns. */
export interface ExperimentResult {
  /** The results folder. */
  readonly dir: string;
  /** The experiment's summary (also in summary.json). */
  readonly summary: ExperimentSummary;
  /** The exit code of the `bilevel` command for this outcome (see {@link EXIT}). */
  readonly exitCode: number;
  /** One line per failed run: method, seed, step, error. */
  readonly errors: readonly string[];
}

/** A run that failed after its pipeline was built (the experiment goes on or stops per `onRunError`). */
class RunFailure extends Error {
  constructor(
    message: string,
    readonly kind: string,
    readonly step: number,
  ) {
    super(message);
  }
}

function timestamp(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

function isNonEmptyDir(dir: string): boolean {
  try {
    return fs.readdirSync(dir).length > 0;
  } catch {
    return false;
  }
}

/** The results folder: the configured one (must be empty unless forced) or results/<name>-<timestamp>. */
export function resultsDir(plan: ExperimentPlan, options: { force?: boolean; date?: Date } = {}): string {
  const configured = plan.config.output.dir;
  if (configured !== undefined) {
    const dir = path.resolve(configured);
    if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) {
      throw new ConfigError(`output.dir: '${configured}' exists and is not a folder`, 'output.dir');
    }
    // A folder another command is writing into is named with its holder, --force or not.
    if (fs.existsSync(dir)) assertNotLocked(dir);
    if (!options.force && isNonEmptyDir(dir)) {
      throw new ConfigError(
        `output.dir: '${configured}' exists and is not empty; choose another folder (--out) or pass --force`,
        'output.dir',
      );
    }
    return dir;
  }
  const base = path.resolve('results', `${plan.config.name}-${timestamp(options.date ?? new Date())}`);
  let dir = base;
  for (let i = 2; fs.existsSync(dir); i++) dir = `${base}-${i}`;
  return dir;
}

function pluginNames(m: ResolvedMethod): { innerSolver: string; estimator: string; outerOptimizer: string } {
  const name = (ref: unknown): string =>
    typeof ref === 'string' ? ref : String((ref as { name: string }).name);
  return {
    innerSolver: name(m.pipeline.innerSolver),
    estimator: name(m.pipeline.estimator),
    outerOptimizer: name(m.pipeline.outerOptimizer),
  };
}

/** Builds every method's solver, estimator and optimizer once, so their own checks run before any training. */
function precheckPlugins(plan: ExperimentPlan, reg: PluginRegistry): void {
  plan.methods.forEach((m, i) => {
    const spec = m.pipeline;
    const refs = [
      ['innerSolver', spec.innerSolver],
      ['estimator', spec.estimator],
      ['outerOptimizer', spec.outerOptimizer],
    ] as const;
    for (const [kind, ref] of refs) {
      const r = typeof ref === 'string' ? { name: ref, options: {} } : ref;
      const made = reg.create(kind, r.name, r.options, `methods.${i}.${kind}`) as { dispose?: () => void };
      made.dispose?.();
    }
  });
}

function errorKind(e: unknown): string {
  return e instanceof Error ? e.name || 'Error' : 'Error';
}

function isConfigLike(e: unknown): e is ConfigError | DataError {
  return e instanceof ConfigError || e instanceof DataError;
}

/** Where the final state of a completed run goes with `checkpoint.final`, relative to the results folder. */
export function finalStateDir(fileBase: string): string {
  return path.join('final', fileBase);
}

/** Where a run's checkpoints go, relative to the results folder. */
export function checkpointDir(fileBase: string): string {
  return path.join('checkpoints', fileBase);
}

/**
 * Whether a run recorded in a previous summary is done and is kept as it is on resume: completed runs, runs
 * that diverged and runs that failed while training (re-running them would fail the same way). Runs stopped
 * by a config or data error or by a full disk, interrupted runs and runs not run yet are continued.
 */
export function isFinishedRun(run: RunSummary): boolean {
  if (run.status === 'completed' || run.status === 'diverged') return true;
  // A run stopped by a full disk (StorageError) is continued once there is room again.
  return (
    run.status === 'failed' &&
    run.error !== undefined &&
    !['ConfigError', 'DataError', 'StorageError'].includes(run.error.kind)
  );
}

function readPreviousSummary(dir: string): ExperimentSummary | null {
  const file = path.join(dir, 'summary.json');
  if (!fs.existsSync(file)) return null;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'), (_k, v: unknown) =>
      v === 'NaN' || v === 'Infinity' || v === '-Infinity' ? Number(v) : v,
    ) as ExperimentSummary;
  } catch (e) {
    throw new ConfigError(`resume: ${file} is not valid JSON (${(e as Error).message})`, 'resume');
  }
}

/** One (method, seed) run of an experiment. */
export interface RunTask {
  /** The method. */
  readonly method: ResolvedMethod;
  /** The run's seed. */
  readonly seed: number;
  /** Its number among the experiment's runs (1-based, method-major order). */
  readonly index: number;
  /** How many runs the experiment has. */
  readonly total: number;
  /** Base name of its files: runs/<fileBase>.csv and .jsonl, checkpoints/<fileBase>/. */
  readonly fileBase: string;
}

/** What a run needs besides its task: where it writes, how it checkpoints, where it reports. */
export interface RunContext {
  /** The plugin registry. */
  readonly registry: PluginRegistry;
  /** The folder that holds runs/ and checkpoints/. */
  readonly dir: string;
  /** Checkpoint settings of the experiment. */
  readonly checkpoint: ExperimentPlan['config']['checkpoint'];
  /** Continue from the newest valid checkpoint and the rows up to it (or start over when there is none). */
  readonly resume: boolean;
  /** Progress display and messages. */
  readonly progress: ProgressReporter;
  /** Aborting it stops the run at the end of its step (and saves a checkpoint). */
  readonly signal?: AbortSignal;
  /** Called once the run has its rows array (the same array grows as steps come). */
  readonly onRows?: (rows: readonly MetricsRow[]) => void;
  /** Called after each step's row is written (e.g. to send it on). */
  readonly onRow?: (row: MetricsRow, index: number) => void;
  /** The experiment config being run (after the backend's `slowBackend` sizing), for executors that send it on. */
  readonly config?: ExperimentPlan['config'];
  /**
   * Called after each checkpoint is written (its file; the rows up to it are on disk), e.g. to copy it where
   * another worker can reach it. An error thrown here ends the run (a ConfigError as a fatal error).
   */
  readonly onCheckpoint?: (file: string) => void;
}

/** How a run ended. */
export type RunOutcome =
  | {
      /** The pipeline could not be built, or its checkpoint not read: nothing ran. */
      readonly kind: 'setup-failed';
      /** The error (a ConfigError or DataError, or an Error naming the method and seed). */
      readonly error: unknown;
    }
  | {
      /** The run trained (to the end, to an interrupt, or to a failure). */
      readonly kind: 'ran';
      /** Its summary entry. */
      readonly summary: RunSummary;
      /** Every row (those kept from a checkpoint first). */
      readonly rows: readonly MetricsRow[];
      /** A config or data error met while training (it stops the experiment). */
      readonly fatal: unknown;
      /** The failure line of a run that failed while training (divergence…), or null. */
      readonly failureLine: string | null;
      /** The problem's name and main metric. */
      readonly problemInfo: ExperimentSummary['problem'];
    };

/** Runs one task and says how it ended; `executeRun` in this process, or another process's worker. */
export type RunExecutor = (task: RunTask, context: RunContext) => Promise<RunOutcome>;

/** The metrics files of a run, relative to the results folder. */
export interface RunFiles {
  /** runs/<fileBase>.csv */
  readonly csv: string;
  /** runs/<fileBase>.jsonl */
  readonly jsonl: string;
}

/** The metrics files of a run, relative to the results folder. */
export function runFiles(fileBase: string): RunFiles {
  return { csv: `runs/${fileBase}.csv`, jsonl: `runs/${fileBase}.jsonl` };
}

/**
 * Runs one (method, seed) of an experiment in this process: builds its pipeline, continues from its newest
 * checkpoint when resuming, trains with progress, writes its metrics files as steps come and checkpoints
 * every `checkpoint.every` steps (removed once the run is finished), and returns its summary entry.
 */
export async function executeRun(task: RunTask, context: RunContext): Promise<RunOutcome> {
  const { method, seed, index, total, fileBase } = task;
  const { dir, progress } = context;
  const names = pluginNames(method);
  const files = runFiles(fileBase);
  const ckptDir = path.join(dir, checkpointDir(fileBase));
  fs.mkdirSync(path.join(dir, 'runs'), { recursive: true });
  progress.log(
    `▶ run ${index}/${total}: ${method.label} (${names.innerSolver} + ${names.estimator}, outer ${names.outerOptimizer}), seed ${seed}`,
  );
  const setupStart = performance.now();
  let pipeline: Pipeline;
  try {
    pipeline = createPipeline({ ...method.pipeline, seed }, context.registry);
  } catch (e) {
    const error = isConfigLike(e)
      ? e
      : new Error(
          `setting up method '${method.label}', seed ${seed} failed: ${e instanceof Error ? e.message : String(e)}`,
        );
    return { kind: 'setup-failed', error };
  }
  const setupSeconds = (performance.now() - setupStart) / 1000;
  const problem = pipeline.problem;
  const problemInfo: ExperimentSummary['problem'] = {
    name: (method.pipeline.problem as { name: string }).name,
    mainMetric: problem.mainMetric,
    mainMetricHigherIsBetter: problem.mainMetricHigherIsBetter,
  };
  // Resume: the newest valid checkpoint (a damaged newest file falls back to the one before), and the rows
  // written up to it; rows after it were computed again from there.
  let keptRows: MetricsRow[] = [];
  let wallOffset = 0;
  let found: ReturnType<typeof loadLatestCheckpoint> = null;
  if (context.resume) {
    const invalid: string[] = [];
    try {
      found = loadLatestCheckpoint(ckptDir, {
        onInvalid: (e) => {
          invalid.push(e.file);
          progress.log(`warning: ${e.message}; trying an older checkpoint`);
        },
      });
      // A damaged file would linger among the kept ones (and be tried first again): it goes.
      for (const f of invalid) fs.rmSync(f, { force: true });
      if (found) pipeline.trainer.setState(found.payload.trainer);
    } catch (e) {
      pipeline.dispose();
      const error = isConfigLike(e)
        ? e
        : new ConfigError(`resume: ${e instanceof Error ? e.message : String(e)}`, 'checkpoint');
      return { kind: 'setup-failed', error };
    }
    if (found) {
      const step = found.payload.trainer.step;
      keptRows = readRunRows(path.join(dir, files.jsonl)).filter((r) => r.step <= step);
      const extra = found.payload.extra as { wallSeconds?: number } | undefined;
      wallOffset = extra?.wallSeconds ?? keptRows[keptRows.length - 1]?.wallTime ?? 0;
      progress.log(`  continuing from step ${step} (${path.relative(dir, found.file)})`);
      if (keptRows.length !== step) {
        progress.log(
          `warning: ${files.jsonl} holds ${keptRows.length} rows up to step ${step}; the missing ones stay missing`,
        );
      }
    } else {
      progress.log('  no checkpoint: starting over');
    }
  }
  // A run that starts over must not leave older checkpoints (e.g. of an earlier experiment in a --force'd
  // folder) beside its own: a later resume would take the newest step number.
  if (!found) fs.rmSync(ckptDir, { recursive: true, force: true });
  const recorder = new RunRecorder(path.join(dir, files.csv), path.join(dir, files.jsonl), keptRows);
  context.onRows?.(recorder.rows);
  const steps = pipeline.spec.trainer.steps;
  progress.startRun({
    index,
    total,
    label: method.label,
    seed,
    steps,
    timeLimitSeconds: pipeline.spec.trainer.timeLimitSeconds,
    mainMetric: problem.mainMetric,
  });
  const wallStart = performance.now();
  const wallNow = (): number => wallOffset + (performance.now() - wallStart) / 1000;
  pipeline.trainer.on('step', (event) => {
    const row = rowFromEvent(event, wallNow());
    recorder.add(row);
    progress.step(row);
    context.onRow?.(row, recorder.rows.length - 1);
  });
  // After the recorder's listener, so the rows of a checkpoint's steps are on disk before it.
  const checkpointer = new Checkpointer(pipeline.trainer, {
    dir: ckptDir,
    every: context.checkpoint.every,
    keep: context.checkpoint.keep,
    extra: () => ({ wallSeconds: wallNow(), rows: recorder.rows.length }),
  });
  const onCheckpoint = context.onCheckpoint;
  const every = context.checkpoint.every ?? 0;
  if (onCheckpoint && every > 0) {
    // After the checkpointer's listener: the step's checkpoint is written.
    pipeline.trainer.on('step', (event) => {
      if (event.step % every !== 0) return;
      const newest = listCheckpoints(ckptDir).pop();
      if (newest) onCheckpoint(newest);
    });
  }

  let result: TrainResult | null = null;
  let failure: RunFailure | null = null;
  let fatal: unknown = null;
  try {
    result = await pipeline.trainer.run({ signal: context.signal });
  } catch (e) {
    // The trainer wraps unexpected errors of a step in a StepError that carries the step number.
    const cause = e instanceof StepError ? e.cause : e;
    if (isConfigLike(cause)) {
      fatal = cause;
    } else if (isStorageFailure(cause)) {
      // A full disk stops the experiment; the run keeps its checkpoints and is continued by `bilevel resume`.
      fatal = toStorageError(cause, ckptDir);
    } else {
      const lastStep = recorder.rows.length ? recorder.rows[recorder.rows.length - 1].step : 0;
      const step = e instanceof DivergenceError || e instanceof StepError ? e.step : lastStep + 1;
      const message = cause instanceof Error ? cause.message : String(cause);
      failure = new RunFailure(message, errorKind(cause), step);
    }
  }
  const wallSeconds = wallNow();
  const counts: OracleCounts = { ...pipeline.oracles.counts };
  recorder.close();
  if (result?.stoppedBy === 'interrupt' && context.checkpoint.onInterrupt) {
    try {
      const saved = checkpointer.save();
      if (saved) {
        progress.log(`checkpoint: ${path.relative(dir, saved)}`);
        onCheckpoint?.(saved);
      }
    } catch (e) {
      if (!isStorageFailure(e)) {
        pipeline.dispose();
        throw e;
      }
      // The older checkpoints stay; the run continues from the newest of them.
      fatal = toStorageError(e, ckptDir);
    }
  } else if ((result && result.stoppedBy !== 'interrupt') || failure) {
    if (result && !failure && context.checkpoint.final) {
      // The learned state of a completed run, kept apart from the resume checkpoints (which go below).
      try {
        const saved = writeCheckpoint(
          path.join(dir, finalStateDir(fileBase)),
          {
            trainer: pipeline.trainer.getState(),
            extra: { wallSeconds, rows: recorder.rows.length },
            savedAt: new Date().toISOString(),
          },
          { keep: 1 },
        );
        progress.log(`final state: ${path.relative(dir, saved)}`);
      } catch (e) {
        if (!isStorageFailure(e)) {
          pipeline.dispose();
          throw e;
        }
        fatal = toStorageError(e, path.join(dir, finalStateDir(fileBase)));
      }
    }
    // A finished run (completed, or failed while training) is never continued: its checkpoints go.
    fs.rmSync(ckptDir, { recursive: true, force: true });
    try {
      fs.rmdirSync(path.join(dir, 'checkpoints'));
    } catch {
      // other runs still have checkpoints (or there never were any)
    }
  }
  pipeline.dispose();

  const rows = recorder.rows;
  const lastRow = rows[rows.length - 1];
  const lastMetrics: Record<string, number> = {};
  for (const row of rows) Object.assign(lastMetrics, row.metrics);
  const base = {
    method: method.label,
    seed,
    steps: lastRow?.step ?? 0,
    trainSeconds: lastRow?.time ?? 0,
    wallSeconds,
    setupSeconds,
    oracleCalls: counts,
    oracleCallsTotal: totalCalls(counts),
    files,
  };
  if (fatal) {
    const summary: RunSummary = {
      ...base,
      status: 'failed',
      finalOuterLoss: lastRow?.outerLoss,
      finalMetrics: lastMetrics,
      error: { kind: errorKind(fatal), message: (fatal as Error).message, step: (lastRow?.step ?? 0) + 1 },
    };
    return { kind: 'ran', summary, rows, fatal, failureLine: null, problemInfo };
  }
  if (failure) {
    const diverged = failure.kind === 'DivergenceError';
    const line = `run ${diverged ? 'diverged' : 'failed'}: method '${method.label}', seed ${seed}, outer step ${failure.step}: ${failure.kind}: ${failure.message}`;
    progress.endRun(`✗ ${line}`);
    const summary: RunSummary = {
      ...base,
      status: diverged ? 'diverged' : 'failed',
      finalOuterLoss: lastRow?.outerLoss,
      finalMetrics: lastMetrics,
      error: { kind: failure.kind, message: failure.message, step: failure.step },
    };
    return { kind: 'ran', summary, rows, fatal: null, failureLine: line, problemInfo };
  }
  const done = result as TrainResult;
  const interrupted = done.stoppedBy === 'interrupt';
  const finalMetrics = interrupted ? lastMetrics : { ...done.finalMetrics };
  const summary: RunSummary = {
    ...base,
    status: interrupted ? 'interrupted' : 'completed',
    stoppedBy: done.stoppedBy,
    steps: done.steps,
    trainSeconds: done.elapsedSeconds,
    finalOuterLoss: done.finalOuterLoss,
    finalMetrics,
    // The trainer's final evaluation is not charged to the method.
    oracleCalls: { ...done.oracleCalls },
    oracleCallsTotal: totalCalls(done.oracleCalls),
  };
  const main = problem.mainMetric;
  const mainText =
    main && finalMetrics[main] !== undefined ? `, ${main} ${formatNumber(finalMetrics[main])}` : '';
  progress.endRun(
    `${interrupted ? '■ interrupted' : '✓ done'}: ${method.label} seed ${seed}: ${done.steps} steps (${done.stoppedBy}) in ${formatDuration(wallSeconds)}, outer loss ${formatNumber(done.finalOuterLoss)}${mainText}`,
  );
  return { kind: 'ran', summary, rows, fatal: null, failureLine: null, problemInfo };
}

/**
 * Runs an experiment: every method for every seed, one after another, writing into the results folder
 * config.resolved.json, runs/<method>-seed<k>.csv and .jsonl (per step, as they come), summary.json and
 * summary.md (after each run, so a killed experiment keeps what it finished), and at the end (also when
 * interrupted or stopped by an error) the plots and report.html.
 *
 * Each run also saves its whole state (x, y, random generator, optimizer and estimator state, oracle counts)
 * into checkpoints/<method>-seed<k>/ every `checkpoint.every` steps and when interrupted; the checkpoints of
 * a finished run are removed. With `resume` (a results folder), finished runs are kept and every other run
 * continues from its newest valid checkpoint, giving the same numbers as an uninterrupted run.
 *
 * The results folder is checked before any training (a special file system such as /proc, or a folder that
 * cannot be created or written, is a {@link ConfigError} on `output.dir`) and locked for the whole call (a
 * second command on the same folder gets a `ResultsLockedError` naming the holder). A full disk stops the
 * experiment with a {@link StorageError} (`disk full at <file>`): rows are written whole or not at all, no
 * checkpoint is lost, the summary says `failed`, and `bilevel resume` continues once there is room again.
 *
 * Config and data errors (ConfigError, DataError) are thrown — before any training when they come from
 * the config, the plugins' options or the problem's data. A run that fails while training (divergence…)
 * is recorded with its method, seed and step; the experiment goes on or stops per `onRunError`, and the
 * exit code is 1. An aborted `signal` ends the current run after its step and gives exit code 130.
 */
export async function runExperiment(
  plan: ExperimentPlan,
  options: RunExperimentOptions = {},
): Promise<ExperimentResult> {
  const held: FolderHold = {};
  try {
    return await runExperimentHeld(plan, options, held);
  } finally {
    held.freeReserve?.();
    held.lock?.release();
  }
}

/** What runExperiment holds in the results folder while it runs: the lock and a reserve of space. */
interface FolderHold {
  lock?: ResultsLock;
  freeReserve?: () => void;
}

/** The experiment as it will run: the sized plan, its results folder, and what a resumed folder already holds. */
interface OpenedExperiment {
  /** The plan, sized for the running backend (`slowBackend`). */
  readonly plan: ExperimentPlan;
  /** The running backend's name. */
  readonly backend: string;
  /** The results folder (locked, with a reserve of space). */
  readonly dir: string;
  /** Whether this continues the experiment of `dir`. */
  readonly resuming: boolean;
  /** The summary a resumed folder holds (null when new). */
  readonly previous: ExperimentSummary | null;
  /** When the experiment first started (ISO 8601). */
  readonly startedAt: string;
}

/**
 * The plan phase: starts the backend, sizes the plan for it, checks the plugins, opens and locks the results
 * folder (refusing one that cannot hold results), reads what a resumed folder holds and writes
 * config.resolved.json (a resumed experiment keeps the file of its first start).
 */
async function openExperiment(
  requested: ExperimentPlan,
  options: RunExperimentOptions,
  held: FolderHold,
  reg: PluginRegistry,
  progress: ProgressReporter,
): Promise<OpenedExperiment> {
  const running =
    options.initBackend === false
      ? currentBackend()
      : await startBackend(requested.config.backend, (line) => progress.log(line));
  const backend = running.name;
  // The config's smaller `slowBackend` settings on wasm and cpu (validated again), with a line that says why.
  const sized = sizeForBackend(requested.config, backend);
  const plan = sized.resized
    ? planExperiment(sized.config, { registry: reg, baseDir: requested.baseDir, source: requested.source })
    : { ...requested, config: sized.config };
  if (sized.note) progress.log(sized.note);
  const config = plan.config;
  precheckPlugins(plan, reg);
  const resuming = options.resume !== undefined;
  const dir = resuming ? path.resolve(options.resume as string) : resultsDir(plan, options);
  // Before anything is written or trained: a folder results can go to, and no other command in it.
  checkOutputFolder(
    dir,
    resuming ? 'resume' : plan.config.output.dir !== undefined ? 'output.dir (--out)' : 'results folder',
  );
  held.lock = acquireResultsLock(dir, {
    command: options.argv?.join(' '),
    onMessage: (line) => progress.log(`warning: ${line}`),
  });
  held.freeReserve = reserveSpace(dir);
  const previous = resuming ? readPreviousSummary(dir) : null;
  guardWrite(path.join(dir, 'runs'), () => fs.mkdirSync(path.join(dir, 'runs'), { recursive: true }));
  const startedAt = previous?.startedAt ?? new Date().toISOString();

  const resolved = {
    name: config.name,
    description: config.description,
    source: plan.source,
    command: options.argv ? [...options.argv] : undefined,
    startedAt,
    backend: { requested: config.backend ?? null, running: backend, reason: running.reason },
    versions: { node: process.version, tfjs: tf.version_core, cli: cliVersion() },
    seeds: config.seeds,
    plugins: config.plugins,
    onRunError: config.onRunError,
    output: config.output,
    progress: config.progress,
    problem: plan.methods[0].pipeline.problem,
    checkpoint: config.checkpoint,
    methods: plan.methods.map((m) => ({ label: m.label, color: m.color, ...m.pipeline, seed: undefined })),
    // What `bilevel resume` re-plans the experiment from: the validated config and where its plugin paths start.
    experiment: config,
    baseDir: plan.baseDir,
  };
  if (!resuming || !fs.existsSync(path.join(dir, 'config.resolved.json'))) {
    writeFileAtomic(path.join(dir, 'config.resolved.json'), jsonWithNonFinite(resolved, 2) + '\n');
  }
  return { plan, backend, dir, resuming, previous, startedAt };
}

/** Every (method, seed) run in order, each with its own file base (labels that slug alike get a number). */
function planTasks(plan: ExperimentPlan): RunTask[] {
  const total = plan.methods.length * plan.config.seeds.length;
  const tasks: RunTask[] = [];
  const usedFiles = new Set<string>();
  for (const method of plan.methods) {
    for (const seed of plan.config.seeds) {
      let fileBase = `${slug(method.label)}-seed${seed}`;
      for (let k = 2; usedFiles.has(fileBase); k++) fileBase = `${slug(method.label)}-${k}-seed${seed}`;
      usedFiles.add(fileBase);
      tasks.push({ method, seed, index: tasks.length + 1, total, fileBase });
    }
  }
  return tasks;
}

/** The summary entry of a run that did not run. */
function notRun(task: RunTask): RunSummary {
  return {
    method: task.method.label,
    seed: task.seed,
    status: 'not-run',
    steps: 0,
    trainSeconds: 0,
    wallSeconds: 0,
    setupSeconds: 0,
    finalMetrics: {},
    oracleCalls: zeroCounts(),
    oracleCallsTotal: 0,
  };
}

/**
 * The record phase: the experiment's runs as they end (one slot per task, whatever order runs end in), their
 * rows, the failure lines, and the files written from them — summary.json, summary.md, the plots and report.html.
 */
class ExperimentRecord {
  private readonly slots: (RunSummary | undefined)[] = [];
  /** Every run's rows so far, by `method\u0000seed`. */
  readonly rowsByRun = new Map<string, readonly MetricsRow[]>();
  /** One line per run that failed while training. */
  readonly errors: string[] = [];
  /** The problem's name and main metric (from the first run that reports them). */
  problemInfo: ExperimentSummary['problem'];

  constructor(
    private readonly opened: OpenedExperiment,
    private readonly progress: ProgressReporter,
  ) {
    const problemName = opened.plan.methods[0].pipeline.problem as { name: string };
    this.problemInfo = opened.previous?.problem ?? { name: problemName.name };
  }

  /** Records the summary entry of task `index` (1-based). */
  set(index: number, run: RunSummary): void {
    this.slots[index - 1] = run;
  }

  /** The runs recorded so far, in task order. */
  runs(): RunSummary[] {
    return this.slots.filter((r): r is RunSummary => r !== undefined);
  }

  /** The summary of the experiment with `status`. */
  summary(status: ExperimentStatus): ExperimentSummary {
    const { plan, backend, startedAt } = this.opened;
    const config = plan.config;
    const runs = this.runs();
    return {
      name: config.name,
      description: config.description,
      status,
      startedAt,
      updatedAt: new Date().toISOString(),
      backend,
      problem: this.problemInfo,
      seeds: config.seeds,
      methods: plan.methods.map((m) => summarizeMethod({ label: m.label, ...pluginNames(m) }, runs)),
      runs: [...runs],
    };
  }

  /**
   * Writes summary.json and summary.md, and with `figures` the plots and report.html (each when the config asks
   * for it).
   */
  async write(status: ExperimentStatus, figures: boolean): Promise<ExperimentSummary> {
    const { plan, dir } = this.opened;
    const config = plan.config;
    const runs = this.runs();
    const summary = this.summary(status);
    const rowsByRun = this.rowsByRun;
    writeFileAtomic(path.join(dir, 'summary.json'), jsonWithNonFinite(summary, 2) + '\n');
    writeFileAtomic(path.join(dir, 'summary.md'), summaryMarkdown(summary));
    if (figures) {
      await writeFiguresAndReport(
        dir,
        summary,
        {
          name: config.name,
          methods: plan.methods.map((m) => ({ label: m.label, color: m.color })),
          runs: runs
            .filter((r) => rowsByRun.has(`${r.method}\u0000${r.seed}`))
            .map((r) => ({
              method: r.method,
              seed: r.seed,
              rows: rowsByRun.get(`${r.method}\u0000${r.seed}`) ?? [],
            })),
          mainMetric: this.problemInfo.mainMetric,
          logScale: config.output.logScale,
          pixelRatio: config.output.pixelRatio,
          width: config.output.width,
          height: config.output.height,
          onNote: (line) => this.progress.log(`note: ${line}`),
        },
        { plots: config.output.plots, report: config.output.report },
      );
    }
    return summary;
  }
}

/** How the experiment stands while its runs go: a stop asked for, and the first error that ends it. */
interface ExperimentControl {
  /** 'interrupted' (signal) or 'stopped' (`onRunError: stop`): the remaining runs do not start. */
  stopReason: 'interrupted' | 'stopped' | null;
  /** A config, data or storage error: no further run is recorded, and it is thrown at the end. */
  fatal: unknown;
}

/**
 * The resume phase for one task: a run that a resumed folder already finished is kept as it is, with its
 * rows read back. Returns whether it was.
 */
/** The previous summary's runs by method and seed (the last entry of a run wins), built once per experiment. */
const previousRuns = new WeakMap<OpenedExperiment, Map<string, RunSummary>>();

function previousRun(opened: OpenedExperiment, method: string, seed: number): RunSummary | undefined {
  let byRun = previousRuns.get(opened);
  if (!byRun) {
    byRun = new Map((opened.previous?.runs ?? []).map((r) => [`${r.method}\u0000${r.seed}`, r]));
    previousRuns.set(opened, byRun);
  }
  return byRun.get(`${method}\u0000${seed}`);
}

function keepFinishedRun(
  task: RunTask,
  opened: OpenedExperiment,
  record: ExperimentRecord,
  progress: ProgressReporter,
): boolean {
  const before = previousRun(opened, task.method.label, task.seed);
  if (!before || !isFinishedRun(before)) return false;
  record.set(task.index, before);
  record.rowsByRun.set(
    `${task.method.label}\u0000${task.seed}`,
    readRunRows(path.join(opened.dir, runFiles(task.fileBase).jsonl)),
  );
  progress.log(
    `✓ run ${task.index}/${task.total}: ${task.method.label}, seed ${task.seed}: already ${before.status} (${before.steps} steps), kept`,
  );
  return true;
}

/**
 * The run-one phase: runs a task (unless the experiment stopped, or a resumed folder finished it) through
 * the executor, records how it ended, and rewrites the summary, so an experiment killed outright keeps its
 * finished runs.
 */
async function runOne(
  task: RunTask,
  opened: OpenedExperiment,
  record: ExperimentRecord,
  control: ExperimentControl,
  options: RunExperimentOptions,
  reg: PluginRegistry,
  progress: ProgressReporter,
): Promise<void> {
  const { dir, plan, resuming } = opened;
  const config = plan.config;
  // After a config or data error no further run is recorded (the error is thrown at the end).
  if (control.fatal) return;
  if (control.stopReason || options.signal?.aborted) {
    if (options.signal?.aborted) control.stopReason = 'interrupted';
    record.set(task.index, notRun(task));
    return;
  }
  if (keepFinishedRun(task, opened, record, progress)) return;
  const runKey = `${task.method.label}\u0000${task.seed}`;
  let outcome: RunOutcome;
  try {
    outcome = await (options.executor ?? executeRun)(task, {
      registry: reg,
      dir,
      checkpoint: config.checkpoint,
      resume: resuming,
      progress,
      signal: options.signal,
      onRows: (rows) => record.rowsByRun.set(runKey, rows),
      config,
    });
  } catch (e) {
    // A full disk while a run set up its files: the run was not started; `bilevel resume` starts it.
    if (!isStorageFailure(e)) throw e;
    control.fatal = control.fatal ?? toStorageError(e, dir);
    record.set(task.index, notRun(task));
    return;
  }
  if (outcome.kind === 'setup-failed') {
    control.fatal = control.fatal ?? outcome.error;
    record.set(task.index, notRun(task));
    return;
  }
  record.problemInfo = outcome.problemInfo;
  record.rowsByRun.set(runKey, outcome.rows);
  record.set(task.index, outcome.summary);
  if (outcome.fatal) {
    control.fatal = control.fatal ?? outcome.fatal;
    return;
  }
  if (outcome.failureLine) {
    record.errors.push(outcome.failureLine);
    if (config.onRunError === 'stop') control.stopReason = 'stopped';
  } else if (outcome.summary.status === 'interrupted') {
    control.stopReason = 'interrupted';
  }
  // The summary after every run, so an experiment killed outright keeps its finished runs.
  try {
    await record.write('running', false);
  } catch (e) {
    if (!isStorageFailure(e)) throw e;
    control.fatal = control.fatal ?? toStorageError(e, path.join(dir, 'summary.json'));
  }
}

async function runExperimentHeld(
  requested: ExperimentPlan,
  options: RunExperimentOptions,
  held: FolderHold,
): Promise<ExperimentResult> {
  const reg = options.registry ?? defaultRegistry;
  const stdout: OutputStream = options.stdout ?? process.stdout;
  const progress = new ProgressReporter(stdout, {
    tty: options.tty ?? Boolean(stdout.isTTY),
    quiet: options.quiet,
    intervalSeconds: requested.config.progress.intervalSeconds,
    everySteps: requested.config.progress.everySteps,
  });
  const opened = await openExperiment(requested, options, held, reg, progress);
  const { plan, dir, backend } = opened;
  const config = plan.config;
  const tasks = planTasks(plan);
  const record = new ExperimentRecord(opened, progress);
  const control: ExperimentControl = { stopReason: null, fatal: null };

  progress.log(
    `experiment ${config.name}: ${plan.methods.length} method(s) × ${config.seeds.length} seed(s) = ${tasks.length} run(s) on backend ${backend}`,
  );
  progress.log(`results: ${dir}`);

  // Runs start in order, at most `concurrency` at a time (one: each starts after the one before ended).
  const concurrency = Math.max(1, options.concurrency ?? 1);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < tasks.length) {
      const task = tasks[next];
      next += 1;
      await runOne(task, opened, record, control, options, reg, progress);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, tasks.length) }, lane));
  return finishExperiment(opened, record, control, held, options, progress);
}

/**
 * The last record: the experiment's status from how its runs ended, the final summary, plots and report.html (room made
 * for them after a full disk), the closing lines, and the result — or the error that ended it.
 */
async function finishExperiment(
  opened: OpenedExperiment,
  record: ExperimentRecord,
  control: ExperimentControl,
  held: FolderHold,
  options: RunExperimentOptions,
  progress: ProgressReporter,
): Promise<ExperimentResult> {
  const { dir } = opened;
  const { errors } = record;
  let fatal = control.fatal;
  const diverged = errors.length > 0 && record.runs().every((r) => r.status !== 'failed');
  const status: ExperimentStatus = fatal
    ? 'failed'
    : control.stopReason === 'interrupted'
      ? 'interrupted'
      : errors.length
        ? diverged
          ? 'diverged'
          : 'failed'
        : 'completed';
  // After a full disk, the reserve set aside at the start makes room for the final summary.
  if (fatal instanceof StorageError) held.freeReserve?.();
  let summary: ExperimentSummary;
  try {
    summary = await record.write(status, !(fatal instanceof StorageError));
  } catch (e) {
    if (!isStorageFailure(e)) throw e;
    held.freeReserve?.();
    fatal = fatal ?? toStorageError(e, dir);
    try {
      summary = await record.write('failed', false);
    } catch (again) {
      if (!isStorageFailure(again)) throw again;
      const err = toStorageError(again, dir);
      err.resultsDir = dir;
      throw err;
    }
  }
  if (fatal instanceof StorageError) fatal.resultsDir = dir;
  if (fatal) throw fatal;
  if (!options.quiet) {
    progress.log('');
    progress.log(summaryText(summary));
    progress.log('');
    if (errors.length) for (const e of errors) progress.log(e);
    if (status === 'interrupted')
      progress.log(`interrupted: partial results kept; continue with: bilevel resume ${dir}`);
    progress.log(`results: ${dir}`);
  }
  const exitCode = status === 'interrupted' ? EXIT.interrupted : errors.length ? EXIT.runError : EXIT.ok;
  return { dir, summary, exitCode, errors };
}
