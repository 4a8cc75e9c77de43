import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import {
  Checkpointer,
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
} from '@bilevel/core';
import type { ExperimentPlan, ResolvedMethod } from './config';
import { currentBackend, initBackend as startBackend } from './backend';
import { formatDuration, formatNumber, slug } from './format';
import { writePlots } from './plots';
import { type OutputStream, ProgressReporter } from './progress';
import { jsonWithNonFinite, readRunRows, rowFromEvent, RunRecorder, totalCalls, type MetricsRow } from './run-recorder';
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

function packageVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function pluginNames(m: ResolvedMethod): { innerSolver: string; estimator: string; outerOptimizer: string } {
  const name = (ref: unknown): string => (typeof ref === 'string' ? ref : String((ref as { name: string }).name));
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

/**
 * Runs an experiment: every method for every seed, one after another, writing into the results folder
 * config.resolved.json, runs/<method>-seed<k>.csv and .jsonl (per step, as they come), summary.json and
 * summary.md (after each run, so a killed experiment keeps what it finished), and at the end (also when
 * interrupted or stopped by an error) the plots.
 *
 * Each run also saves its whole state (x, y, random generator, optimizer and estimator state, oracle counts)
 * into checkpoints/<method>-seed<k>/ every `checkpoint.every` steps and when interrupted; the checkpoints of
 * a finished run are removed. With `resume` (a results folder), finished runs are kept and every other run
 * continues from its newest valid checkpoint, giving the same numbers as an uninterrupted run.
 *
 * Config and data errors (ConfigError, DataError) are thrown — before any training when they come from
 * the config, the plugins' options or the problem's data. A run that fails while training (divergence…)
 * is recorded with its method, seed and step; the experiment goes on or stops per `onRunError`, and the
 * exit code is 1. An aborted `signal` ends the current run after its step and gives exit code 130.
 */
/** Where a run's checkpoints go, relative to the results folder. */
export function checkpointDir(fileBase: string): string {
  return path.join('checkpoints', fileBase);
}

/**
 * Whether a run recorded in a previous summary is done and is kept as it is on resume: completed runs and
 * runs that failed while training (re-running them would fail the same way). Runs stopped by a config or
 * data error, interrupted runs and runs not run yet are continued.
 */
export function isFinishedRun(run: RunSummary): boolean {
  if (run.status === 'completed') return true;
  return run.status === 'failed' && run.error !== undefined && !['ConfigError', 'DataError'].includes(run.error.kind);
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

/**
 * Runs every method and seed of a plan one after another, writing metrics, summaries and plots into the
 * results folder; resolves when all runs ended (or the signal stopped them).
 */
export async function runExperiment(plan: ExperimentPlan, options: RunExperimentOptions = {}): Promise<ExperimentResult> {
  const reg = options.registry ?? defaultRegistry;
  const stdout: OutputStream = options.stdout ?? process.stdout;
  const config = plan.config;
  const progress = new ProgressReporter(stdout, {
    tty: options.tty ?? Boolean(stdout.isTTY),
    quiet: options.quiet,
    intervalSeconds: config.progress.intervalSeconds,
    everySteps: config.progress.everySteps,
  });

  const running =
    options.initBackend === false ? currentBackend() : await startBackend(config.backend, (line) => progress.log(line));
  const backend = running.name;
  precheckPlugins(plan, reg);
  const resuming = options.resume !== undefined;
  const dir = resuming ? path.resolve(options.resume as string) : resultsDir(plan, options);
  const previous = resuming ? readPreviousSummary(dir) : null;
  const previousRuns = new Map((previous?.runs ?? []).map((r) => [`${r.method}\u0000${r.seed}`, r]));
  fs.mkdirSync(path.join(dir, 'runs'), { recursive: true });
  const startedAt = previous?.startedAt ?? new Date().toISOString();

  const resolved = {
    name: config.name,
    description: config.description,
    source: plan.source,
    command: options.argv ? [...options.argv] : undefined,
    startedAt,
    backend: { requested: config.backend ?? null, running: backend, reason: running.reason },
    versions: { node: process.version, tfjs: tf.version_core, cli: packageVersion() },
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
  // A resumed experiment keeps the file of its first start.
  if (!resuming || !fs.existsSync(path.join(dir, 'config.resolved.json'))) {
    fs.writeFileSync(path.join(dir, 'config.resolved.json'), jsonWithNonFinite(resolved, 2) + '\n');
  }

  const problemName = plan.methods[0].pipeline.problem as { name: string };
  let problemInfo: ExperimentSummary['problem'] = previous?.problem ?? { name: problemName.name };
  const runs: RunSummary[] = [];
  const rowsByRun = new Map<string, readonly MetricsRow[]>();
  const errors: string[] = [];
  const usedFiles = new Set<string>();
  const total = plan.methods.length * config.seeds.length;

  const summaryNow = (status: ExperimentStatus): ExperimentSummary => ({
    name: config.name,
    description: config.description,
    status,
    startedAt,
    updatedAt: new Date().toISOString(),
    backend,
    problem: problemInfo,
    seeds: config.seeds,
    methods: plan.methods.map((m) => summarizeMethod({ label: m.label, ...pluginNames(m) }, runs)),
    runs: [...runs],
  });
  const writeResults = (status: ExperimentStatus, plots: boolean): ExperimentSummary => {
    const summary = summaryNow(status);
    fs.writeFileSync(path.join(dir, 'summary.json'), jsonWithNonFinite(summary, 2) + '\n');
    fs.writeFileSync(path.join(dir, 'summary.md'), summaryMarkdown(summary));
    if (plots && config.output.plots) {
      writePlots(dir, {
        name: config.name,
        methods: plan.methods.map((m) => ({ label: m.label, color: m.color })),
        runs: runs
          .filter((r) => rowsByRun.has(`${r.method}\u0000${r.seed}`))
          .map((r) => ({ method: r.method, seed: r.seed, rows: rowsByRun.get(`${r.method}\u0000${r.seed}`) ?? [] })),
        mainMetric: problemInfo.mainMetric,
        logScale: config.output.logScale,
        pixelRatio: config.output.pixelRatio,
        width: config.output.width,
        height: config.output.height,
      });
    }
    return summary;
  };

  progress.log(
    `experiment ${config.name}: ${plan.methods.length} method(s) × ${config.seeds.length} seed(s) = ${total} run(s) on backend ${backend}`,
  );
  progress.log(`results: ${dir}`);

  let index = 0;
  let stopReason: 'interrupted' | 'stopped' | null = null;
  let fatal: unknown = null;
  outer: for (const method of plan.methods) {
    for (const seed of config.seeds) {
      index += 1;
      const names = pluginNames(method);
      const notRun = (): RunSummary => ({
        method: method.label,
        seed,
        status: 'not-run',
        steps: 0,
        trainSeconds: 0,
        wallSeconds: 0,
        setupSeconds: 0,
        finalMetrics: {},
        oracleCalls: zeroCounts(),
        oracleCallsTotal: 0,
      });
      if (stopReason || options.signal?.aborted) {
        if (options.signal?.aborted) stopReason = 'interrupted';
        runs.push(notRun());
        continue;
      }
      let fileBase = `${slug(method.label)}-seed${seed}`;
      for (let k = 2; usedFiles.has(fileBase); k++) fileBase = `${slug(method.label)}-${k}-seed${seed}`;
      usedFiles.add(fileBase);
      const files = { csv: `runs/${fileBase}.csv`, jsonl: `runs/${fileBase}.jsonl` };
      const ckptDir = path.join(dir, checkpointDir(fileBase));
      const runKey = `${method.label}\u0000${seed}`;
      const before = previousRuns.get(runKey);
      if (before && isFinishedRun(before)) {
        runs.push(before);
        rowsByRun.set(runKey, readRunRows(path.join(dir, files.jsonl)));
        progress.log(`✓ run ${index}/${total}: ${method.label}, seed ${seed}: already ${before.status} (${before.steps} steps), kept`);
        continue;
      }

      progress.log(
        `▶ run ${index}/${total}: ${method.label} (${names.innerSolver} + ${names.estimator}, outer ${names.outerOptimizer}), seed ${seed}`,
      );
      const setupStart = performance.now();
      let pipeline: Pipeline;
      try {
        pipeline = createPipeline({ ...method.pipeline, seed }, reg);
      } catch (e) {
        fatal = isConfigLike(e)
          ? e
          : new Error(`setting up method '${method.label}', seed ${seed} failed: ${e instanceof Error ? e.message : String(e)}`);
        runs.push(notRun());
        break outer;
      }
      const setupSeconds = (performance.now() - setupStart) / 1000;
      const problem = pipeline.problem;
      problemInfo = {
        name: problemName.name,
        mainMetric: problem.mainMetric,
        mainMetricHigherIsBetter: problem.mainMetricHigherIsBetter,
      };
      // Resume: the newest valid checkpoint (a damaged newest file falls back to the one before), and the rows
      // written up to it; rows after it were computed again from there.
      let keptRows: MetricsRow[] = [];
      let wallOffset = 0;
      let found: ReturnType<typeof loadLatestCheckpoint> = null;
      if (resuming) {
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
          fatal = isConfigLike(e) ? e : new ConfigError(`resume: ${e instanceof Error ? e.message : String(e)}`, 'checkpoint');
          runs.push(notRun());
          break outer;
        }
        if (found) {
          const step = found.payload.trainer.step;
          keptRows = readRunRows(path.join(dir, files.jsonl)).filter((r) => r.step <= step);
          const extra = found.payload.extra as { wallSeconds?: number } | undefined;
          wallOffset = extra?.wallSeconds ?? keptRows[keptRows.length - 1]?.wallTime ?? 0;
          progress.log(`  continuing from step ${step} (${path.relative(dir, found.file)})`);
          if (keptRows.length !== step) {
            progress.log(`warning: ${files.jsonl} holds ${keptRows.length} rows up to step ${step}; the missing ones stay missing`);
          }
        } else {
          progress.log('  no checkpoint: starting over');
        }
      }
      // A run that starts over must not leave older checkpoints (e.g. of an earlier experiment in a --force'd
      // folder) beside its own: a later resume would take the newest step number.
      if (!found) fs.rmSync(ckptDir, { recursive: true, force: true });
      const recorder = new RunRecorder(path.join(dir, files.csv), path.join(dir, files.jsonl), keptRows);
      rowsByRun.set(runKey, recorder.rows);
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
      });
      // After the recorder's listener, so the rows of a checkpoint's steps are on disk before it.
      const checkpointer = new Checkpointer(pipeline.trainer, {
        dir: ckptDir,
        every: config.checkpoint.every,
        keep: config.checkpoint.keep,
        extra: () => ({ wallSeconds: wallNow(), rows: recorder.rows.length }),
      });

      let result: TrainResult | null = null;
      let failure: RunFailure | null = null;
      try {
        result = await pipeline.trainer.run({ signal: options.signal });
      } catch (e) {
        // The trainer wraps unexpected errors of a step in a StepError that carries the step number.
        const cause = e instanceof StepError ? e.cause : e;
        if (isConfigLike(cause)) {
          fatal = cause;
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
      if (result?.stoppedBy === 'interrupt' && config.checkpoint.onInterrupt) {
        const saved = checkpointer.save();
        if (saved) progress.log(`checkpoint: ${path.relative(dir, saved)}`);
      } else if ((result && result.stoppedBy !== 'interrupt') || failure) {
        // A finished run (completed, or failed while training) is never continued: its checkpoints go.
        fs.rmSync(ckptDir, { recursive: true, force: true });
        try {
          fs.rmdirSync(path.join(dir, 'checkpoints'));
        } catch {
          // other runs still have checkpoints (or there never were any)
        }
      }
      pipeline.dispose();

      const lastRow = recorder.rows[recorder.rows.length - 1];
      const lastMetrics: Record<string, number> = {};
      for (const row of recorder.rows) Object.assign(lastMetrics, row.metrics);
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
        runs.push({
          ...base,
          status: 'failed',
          finalOuterLoss: lastRow?.outerLoss,
          finalMetrics: lastMetrics,
          error: { kind: errorKind(fatal), message: (fatal as Error).message, step: (lastRow?.step ?? 0) + 1 },
        });
        break outer;
      }
      if (failure) {
        const line = `run failed: method '${method.label}', seed ${seed}, outer step ${failure.step}: ${failure.kind}: ${failure.message}`;
        errors.push(line);
        runs.push({
          ...base,
          status: 'failed',
          finalOuterLoss: lastRow?.outerLoss,
          finalMetrics: lastMetrics,
          error: { kind: failure.kind, message: failure.message, step: failure.step },
        });
        progress.endRun(`✗ ${line}`);
        if (config.onRunError === 'stop') stopReason = 'stopped';
      } else if (result) {
        const interrupted = result.stoppedBy === 'interrupt';
        const finalMetrics = interrupted ? lastMetrics : { ...result.finalMetrics };
        runs.push({
          ...base,
          status: interrupted ? 'interrupted' : 'completed',
          stoppedBy: result.stoppedBy,
          steps: result.steps,
          trainSeconds: result.elapsedSeconds,
          finalOuterLoss: result.finalOuterLoss,
          finalMetrics,
          // The trainer's final evaluation is not charged to the method.
          oracleCalls: { ...result.oracleCalls },
          oracleCallsTotal: totalCalls(result.oracleCalls),
        });
        const main = problem.mainMetric;
        const mainText = main && finalMetrics[main] !== undefined ? `, ${main} ${formatNumber(finalMetrics[main])}` : '';
        progress.endRun(
          `${interrupted ? '■ interrupted' : '✓ done'}: ${method.label} seed ${seed}: ${result.steps} steps (${result.stoppedBy}) in ${formatDuration(wallSeconds)}, outer loss ${formatNumber(result.finalOuterLoss)}${mainText}`,
        );
        if (interrupted) stopReason = 'interrupted';
      }
      // The summary after every run, so an experiment killed outright keeps its finished runs.
      writeResults('running', false);
    }
  }

  const status: ExperimentStatus = fatal
    ? 'failed'
    : stopReason === 'interrupted'
      ? 'interrupted'
      : errors.length
        ? 'failed'
        : 'completed';
  const summary = writeResults(status, true);
  if (fatal) throw fatal;
  if (!options.quiet) {
    progress.log('');
    progress.log(summaryText(summary));
    progress.log('');
    if (errors.length) for (const e of errors) progress.log(e);
    if (status === 'interrupted') progress.log(`interrupted: partial results kept; continue with: bilevel resume ${dir}`);
    progress.log(`results: ${dir}`);
  }
  const exitCode = status === 'interrupted' ? EXIT.interrupted : errors.length ? EXIT.runError : EXIT.ok;
  return { dir, summary, exitCode, errors };
}
