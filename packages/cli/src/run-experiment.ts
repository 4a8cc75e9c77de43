import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  createPipeline,
  DataError,
  DivergenceError,
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
import { jsonWithNonFinite, rowFromEvent, RunRecorder, totalCalls, type MetricsRow } from './run-recorder';
import {
  type ExperimentStatus,
  type ExperimentSummary,
  type RunSummary,
  summarizeMethod,
  summaryMarkdown,
  summaryText,
} from './summary';

/** Exit codes of the `bilevel` command. */
export const EXIT = { ok: 0, runError: 1, configError: 2, interrupted: 130 } as const;

export interface RunExperimentOptions {
  readonly registry?: PluginRegistry;
  /** Progress and messages (default process.stdout). */
  readonly stdout?: OutputStream;
  /** Live bar (true) or plain lines (false); default: whether `stdout` is a terminal. */
  readonly tty?: boolean;
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
}

export interface ExperimentResult {
  readonly dir: string;
  readonly summary: ExperimentSummary;
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
 * Config and data errors (ConfigError, DataError) are thrown — before any training when they come from
 * the config, the plugins' options or the problem's data. A run that fails while training (divergence…)
 * is recorded with its method, seed and step; the experiment goes on or stops per `onRunError`, and the
 * exit code is 1. An aborted `signal` ends the current run after its step and gives exit code 130.
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
  const dir = resultsDir(plan, options);
  fs.mkdirSync(path.join(dir, 'runs'), { recursive: true });
  const startedAt = new Date().toISOString();

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
    methods: plan.methods.map((m) => ({ label: m.label, color: m.color, ...m.pipeline, seed: undefined })),
  };
  fs.writeFileSync(path.join(dir, 'config.resolved.json'), jsonWithNonFinite(resolved, 2) + '\n');

  const problemName = plan.methods[0].pipeline.problem as { name: string };
  let problemInfo: ExperimentSummary['problem'] = { name: problemName.name };
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
      const recorder = new RunRecorder(path.join(dir, files.csv), path.join(dir, files.jsonl));
      rowsByRun.set(`${method.label}\u0000${seed}`, recorder.rows);
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
      pipeline.trainer.on('step', (event) => {
        const row = rowFromEvent(event, (performance.now() - wallStart) / 1000);
        recorder.add(row);
        progress.step(row);
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
      const wallSeconds = (performance.now() - wallStart) / 1000;
      const counts: OracleCounts = { ...pipeline.oracles.counts };
      recorder.close();
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
    if (status === 'interrupted') progress.log('interrupted: partial results kept');
    progress.log(`results: ${dir}`);
  }
  const exitCode = status === 'interrupted' ? EXIT.interrupted : errors.length ? EXIT.runError : EXIT.ok;
  return { dir, summary, exitCode, errors };
}
