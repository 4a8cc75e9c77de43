/**
 * Entry point of the benchmarks: `npm run bench` (= `nx run bench:bench` = `node dist/run.js`) runs the
 * papers' settings and writes docs/benchmarks.md with its figures; `node dist/run.js kernels|solvers|estimators`
 * runs the older micro-benchmarks. `--help` lists the options.
 */
import * as path from 'path';
import { USAGE, UsageError, parseArgs } from './args';

/** The repository root (this file is tools/bench/dist/run.js). */
const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

async function runCommand(command: 'kernels' | 'solvers' | 'estimators' | 'distributed-es'): Promise<number> {
  switch (command) {
    case 'kernels': {
      const { runKernelBench } = await import('./kernels');
      await runKernelBench();
      return 0;
    }
    case 'solvers': {
      const { initBackend } = await import('@bilevel/backend');
      await initBackend();
      const { formatSolversTable, runSolversBench } = await import('./solvers');
      console.log(formatSolversTable(runSolversBench()));
      return 0;
    }
    case 'estimators': {
      const { initBackend } = await import('@bilevel/backend');
      await initBackend();
      const { runEsBatchingBench } = await import('./estimators');
      for (const r of runEsBatchingBench()) {
        console.log(
          `d=${r.dimension} Q=${r.directions} N=${r.innerIterations}: batched ${r.batchedMs.toFixed(1)} ms, ` +
            `one by one ${r.oneByOneMs.toFixed(1)} ms, ratio ${r.speedup.toFixed(2)}`,
        );
      }
      return 0;
    }
    case 'distributed-es': {
      const { formatDistributedEsTable, runDistributedEsBench } = await import('./distributed-es');
      console.log(formatDistributedEsTable(await runDistributedEsBench()));
      return 0;
    }
  }
}

/** A worker process of the suite: runs the task the parent sends, sends back the result, exits. */
async function worker(): Promise<void> {
  const send = process.send?.bind(process);
  if (!send) {
    console.error('run.js __worker is started by the suite itself (it needs an IPC channel)');
    process.exit(2);
  }
  const { isWorkerTask } = await import('./suite/results');
  const { isSpeedTask } = await import('./suite/speed/results');
  process.once('message', (m: unknown) => {
    void (async () => {
      if (isSpeedTask(m)) {
        const { runSpeedTask } = await import('./suite/speed/bilevel');
        const { ipcPace } = await import('./suite/speed/pace');
        const r = await runSpeedTask(m, m.interleave ? ipcPace(send) : undefined);
        send(r, () => process.exit(0));
        return;
      }
      if (!isWorkerTask(m)) {
        console.error('bench worker: unexpected message');
        process.exit(2);
      }
      const { runWorkerTask } = await import('./suite/worker');
      let result: unknown;
      try {
        result = await runWorkerTask(m);
      } catch (e) {
        result = {
          section: m.section,
          key: m.key,
          label: m.key,
          status: 'failed',
          error: e instanceof Error ? e.message : String(e),
          steps: 0,
          trainSeconds: 0,
          wallSeconds: 0,
          setupSeconds: 0,
          curve: [],
          evals: [],
        };
      }
      send(result, () => process.exit(0));
    })();
  });
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv[0] === '__worker') {
    await worker();
    return -1; // the worker exits by itself
  }
  let parsed;
  try {
    parsed = parseArgs(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`run.js: ${e.message}`);
      console.error('Try --help.');
      return 2;
    }
    throw e;
  }
  if (parsed.kind === 'help') {
    console.log(USAGE);
    return 0;
  }
  if (parsed.kind === 'command') return runCommand(parsed.command);
  if (parsed.kind === 'esj') {
    const { runEsjCommand } = await import('./esj');
    const script = path.relative(REPO_ROOT, __filename) || __filename;
    await runEsjCommand({
      quick: parsed.quick,
      outDir: parsed.out !== undefined ? path.resolve(parsed.out) : path.join(REPO_ROOT, 'docs'),
      command: ['node', script, ...argv].join(' '),
    });
    return 0;
  }
  const a = parsed.args;
  const { runSuite } = await import('./suite/suite');
  const script = path.relative(REPO_ROOT, __filename) || __filename;
  return runSuite({
    quick: a.quick,
    // A part of the speed section (--workloads) does not replace the repository's report unless --out says where.
    outDir: a.out !== undefined ? path.resolve(a.out) : a.workloads !== undefined ? undefined : path.join(REPO_ROOT, 'docs'),
    backend: a.backend,
    sections: a.sections,
    ...(a.speedSteps !== undefined ? { speedSteps: a.speedSteps } : {}),
    ...(a.speedSequential ? { speedSequential: true } : {}),
    ...(a.workloads !== undefined ? { workloads: a.workloads } : {}),
    png: a.png,
    json: a.json,
    ...(a.libsvm
      ? {
          libsvm: {
            train: path.resolve(a.libsvm.train),
            ...(a.libsvm.validation !== undefined ? { validation: path.resolve(a.libsvm.validation) } : {}),
            ...(a.libsvm.test !== undefined ? { test: path.resolve(a.libsvm.test) } : {}),
          },
        }
      : {}),
    command: ['node', script, ...argv].join(' '),
    workerScript: __filename,
    log: (line) => console.log(line),
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  },
);
