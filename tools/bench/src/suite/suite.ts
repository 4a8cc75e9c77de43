/**
 * Runs the suite: each method of each section in its own worker process (one after another, so the methods
 * do not compete for the cores and each one's memory is its own), then writes the report.
 */
import { fork } from 'child_process';
import * as os from 'os';
import { describeSearch, findFashionMnist, resolveDataPath } from '@bilevel/datasets';
import { type SectionOutcome, type SuiteReport, writeReport } from './report';
import type { RunResult, WorkerTask } from './results';
import { LIBSVM_HOWTO, type LibsvmFiles, type SectionSetting, type StepChoice, methodKey, suiteSettings } from './settings';
import { chooseSteps } from './benchopt';
import { type LibsvmSummary, readLibsvmSummary } from './benchopt-ho';
import type { SuiteSectionId } from '../args';
import { speedEnvironment, speedTable } from './speed/report';
import { type SpeedOutcome, runSpeedSection } from './speed/section';

export interface SuiteOptions {
  readonly quick: boolean;
  /** Where benchmarks.md goes; undefined: nothing is written (the speed table is printed). */
  readonly outDir: string | undefined;
  readonly backend: string;
  readonly sections: readonly SuiteSectionId[];
  /** Speed section: timed steps of every workload. */
  readonly speedSteps?: number;
  /** Speed section: never interleave the two sides. */
  readonly speedSequential?: boolean;
  /** Speed section: the workloads to run (ids or families). */
  readonly workloads?: readonly string[];
  readonly png: boolean;
  readonly json: boolean;
  /** The LIBSVM files of the benchopt-ho section (skipped without them). */
  readonly libsvm?: LibsvmFiles;
  readonly command: string;
  /** The script a worker runs (dist/run.js), started with the argument `__worker`. */
  readonly workerScript: string;
  /** Runs one method (default {@link runInWorker}: its own process); tests may run them in-process. */
  readonly runMethod?: typeof runInWorker;
  readonly log: (line: string) => void;
}

/** Why a section cannot run here (its real data is missing), or null. */
export function missingData(section: SectionSetting): string | null {
  if (section.data === 'fashion-mnist') {
    return findFashionMnist()
      ? null
      : `Fashion-MNIST not found (searched: ${describeSearch('fashion-mnist')}). Install it with ` +
          '`apt-get install dataset-fashion-mnist` or set BILEVEL_DATA_PATH to a folder holding fashion-mnist/.';
  }
  if (section.data === 'libsvm') {
    return (section.problem.options as { libsvm?: unknown }).libsvm === undefined ? LIBSVM_HOWTO : null;
  }
  if (section.data === 'omniglot') {
    return resolveDataPath('omniglot')
      ? null
      : `Omniglot not found (searched: ${describeSearch('omniglot')}). Set BILEVEL_DATA_PATH to a folder holding ` +
          'omniglot/ (the images_background*.zip files).';
  }
  return null;
}

function failedRun(section: SectionSetting, key: string, label: string, status: RunResult['status'], error: string, wallSeconds: number): RunResult {
  const protocol = key.includes('/') ? key.slice(0, key.indexOf('/')) : undefined;
  return { section: section.id, key, label, ...(protocol ? { protocol } : {}), status, error, steps: 0, trainSeconds: 0, wallSeconds, setupSeconds: 0, curve: [], evals: [] };
}

/** The task a worker gets for one method. */
export function workerTask(section: SectionSetting, key: string, options: SuiteOptions, steps?: StepChoice): WorkerTask {
  return {
    kind: 'bench-task',
    quick: options.quick,
    section: section.id,
    key,
    backend: options.backend,
    ...(steps ? { stepSizes: steps } : {}),
    ...(options.libsvm ? { libsvm: options.libsvm } : {}),
  };
}

/** Runs one method in a worker process; never throws. */
export function runInWorker(
  section: SectionSetting,
  key: string,
  label: string,
  options: SuiteOptions,
  steps?: StepChoice,
): Promise<RunResult> {
  const task = workerTask(section, key, options, steps);
  const start = performance.now();
  const elapsed = () => (performance.now() - start) / 1000;
  return new Promise((resolve) => {
    let settled = false;
    const child = fork(options.workerScript, ['__worker'], {
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const finish = (r: RunResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(failedRun(section, key, label, 'timeout', `worker killed after ${section.workerTimeoutSeconds} s`, elapsed()));
    }, section.workerTimeoutSeconds * 1000);
    child.on('message', (m: unknown) => finish(m as RunResult));
    child.on('error', (e) => finish(failedRun(section, key, label, 'failed', `worker: ${e.message}`, elapsed())));
    // 'close' comes after the process ended and its channels closed; the short delay lets a last message in.
    child.on('close', (code, signal) =>
      setTimeout(
        () =>
          finish(
            failedRun(section, key, label, 'failed', `worker exited (${signal ? `signal ${signal}` : `code ${code}`}) without a result`, elapsed()),
          ),
        200,
      ),
    );
    child.send(task);
  });
}

function summary(section: SectionSetting, r: RunResult): string {
  const last = r.evals.length ? r.evals[r.evals.length - 1] : undefined;
  const metric = last?.metrics[section.mainMetric];
  const head = `[${section.id}] ${r.protocol ? `${r.protocol}/` : ''}${r.label}: ${r.status}`;
  if (r.status === 'skipped' || (r.steps === 0 && r.status !== 'completed')) return `${head} — ${r.error ?? ''}`;
  return (
    `${head}, ${r.steps} steps, ${r.trainSeconds.toFixed(1)} s training, ${r.wallSeconds.toFixed(1)} s wall` +
    (metric !== undefined ? `, ${section.mainMetric} ${metric.toPrecision(4)}` : '') +
    (last ? `, outer loss ${last.outerLoss.toPrecision(4)}` : '') +
    (r.error ? ` — ${r.error}` : '') +
    ` (load average ${os.loadavg().map((v) => v.toFixed(2)).join(' / ')})`
  );
}

/** Runs the selected sections and writes the report. Returns the exit code: 1 when a run failed or timed out. */
export async function runSuite(options: SuiteOptions): Promise<number> {
  const startedAt = new Date();
  const t0 = performance.now();
  const loadAverageStart = os.loadavg();
  const outcomes: SectionOutcome[] = [];
  let unusableData = 0;
  for (const section of suiteSettings({ quick: options.quick, ...(options.libsvm ? { libsvm: options.libsvm } : {}) })) {
    if (!options.sections.includes(section.id)) continue;
    const missing = missingData(section);
    if (missing) {
      options.log(`[${section.id}] skipped: ${missing}`);
      outcomes.push({ setting: section, skipped: missing, runs: [] });
      continue;
    }
    // Files given on the command line are read once here: a malformed one stops the section with the file and line.
    let libsvm: LibsvmSummary | undefined;
    if (section.data === 'libsvm' && options.libsvm) {
      try {
        libsvm = readLibsvmSummary(options.libsvm);
      } catch (e) {
        const message = `the LIBSVM data cannot be used: ${e instanceof Error ? e.message : String(e)}`;
        options.log(`[${section.id}] failed: ${message}`);
        outcomes.push({ setting: section, skipped: message, failed: true, runs: [] });
        unusableData += 1;
        continue;
      }
      options.log(
        `[${section.id}] ${options.libsvm.train}: ${libsvm.trainSamples} training / ${libsvm.validationSamples} validation samples` +
          `${libsvm.testSamples !== undefined ? ` / ${libsvm.testSamples} test samples` : ''}, ${libsvm.features} features, ${libsvm.classes} classes`,
      );
    }
    const runs: RunResult[] = [];
    let skipped: string | undefined;
    for (const m of section.methods) {
      let steps: StepChoice | undefined;
      if (m.tuned) {
        // the step sizes the grid runs (listed before the tuned ones) chose for this method
        const choice = chooseSteps(section, runs).get(m.label);
        if (!choice) {
          const r = failedRun(section, methodKey(m), m.label, 'failed', `no step-size grid run of ${m.label} completed`, 0);
          options.log(summary(section, r));
          runs.push(r);
          continue;
        }
        steps = choice.steps;
      }
      const r = await (options.runMethod ?? runInWorker)(section, methodKey(m), m.label, options, steps);
      options.log(summary(section, r));
      if (r.status === 'skipped') {
        skipped = r.error;
        break;
      }
      runs.push(r);
    }
    outcomes.push(skipped ? { setting: section, skipped, runs: [] } : { setting: section, runs, ...(libsvm ? { libsvm } : {}) });
  }
  let speed: SpeedOutcome | undefined;
  if (options.sections.includes('speed')) {
    speed = await runSpeedSection({
      quick: options.quick,
      ...(options.speedSteps !== undefined ? { steps: options.speedSteps } : {}),
      ...(options.speedSequential ? { sequential: true } : {}),
      ...(options.workloads !== undefined ? { workloads: options.workloads } : {}),
      backend: options.backend,
      workerScript: options.workerScript,
      log: options.log,
    });
    options.log('');
    options.log(speedEnvironment(speed));
    options.log('');
    options.log(speedTable(speed));
    options.log('');
  }
  const report: SuiteReport = {
    quick: options.quick,
    startedAt,
    totalSeconds: (performance.now() - t0) / 1000,
    command: options.command,
    backendChoice: options.backend,
    loadAverageStart,
    loadAverageEnd: os.loadavg(),
    sections: outcomes,
    ...(speed ? { speed } : {}),
  };
  if (options.outDir === undefined) {
    options.log('no report written (a part of the speed section without --out)');
  } else {
    const files = await writeReport(report, { outDir: options.outDir, png: options.png, json: options.json });
    options.log(
      files.length === 1
        ? `wrote ${files[0]}`
        : `wrote ${files.length} files: ${files[0]} and ${files.length - 1} more in ${files[1].replace(/[^/]+$/, '')}`,
    );
  }
  options.log(`suite time ${report.totalSeconds.toFixed(1)} s`);
  const bad = outcomes.flatMap((o) => o.runs).filter((r) => r.status === 'failed' || r.status === 'timeout');
  const speedBad = (speed?.rows ?? []).flatMap((r) => [r.bilevel, r.torch]).filter((r) => r && (r.status === 'failed' || r.status === 'timeout'));
  return bad.length + speedBad.length + unusableData > 0 ? 1 : 0;
}
