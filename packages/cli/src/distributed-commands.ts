/**
 * The `worker` and `status` commands and the `run --queue` option (see distributed.ts), registered on the
 * `bilevel` program by one call from cli.ts.
 */
import { type Command, InvalidArgumentError } from 'commander';
import type { CliIo } from './cli';
import type { ExperimentPlan } from './config';
import { connectDistributed, runWorker, showStatus } from './distributed';
import { loadPluginModules } from './plugins';
import type { RunExperimentOptions } from './run-experiment';

function positiveInteger(value: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1) throw new InvalidArgumentError(`expected an integer >= 1 (got '${value}')`);
  return Number(value);
}

/** Adds `bilevel worker` and `bilevel status` to the program. */
export function registerDistributedCommands(program: Command, io: CliIo): void {
  program
    .command('worker')
    .description('take experiment runs from a queue (BullMQ on Redis) until stopped')
    .requiredOption('--queue <url>', 'the queue: redis://[:password@]host:port[/db][?queue=name], rediss:// for TLS')
    .option('--concurrency <n>', 'runs at once in this process (default 1)', positiveInteger)
    .option('--plugin <module...>', 'plugin module(s) to load (a worker never loads modules named in a job)')
    .option('--checkpoint-dir <dir>', 'a folder every worker can reach: a run taken over from a killed worker resumes from it')
    .option(
      '--redis-checkpoint-limit <bytes>',
      'without --checkpoint-dir: largest checkpoint (with its rows) copied to Redis for a worker that takes a run over (default 16777216)',
      positiveInteger,
    )
    .option('--name <name>', 'the worker\'s name in `bilevel status` (default host:pid)')
    .option('--lock-duration <ms>', 'a job\'s lock lifetime: a killed worker\'s job is taken over after it (default 30000)', positiveInteger)
    .option('--stalled-interval <ms>', 'milliseconds between checks for jobs of killed workers (default 30000)', positiveInteger)
    .addHelpText(
      'after',
      '\nCtrl-C (or SIGTERM): each running job stops after its current step, saves a checkpoint and goes back to the\n' +
        'queue for another worker; a second Ctrl-C quits at once (the job is then taken over once its lock expires).\n' +
        'Keep Redis off public interfaces (bind it to a private network, set a password); see docs/guide-distributed.md.',
    )
    .action(
      async (
        opts: {
          queue: string;
          concurrency?: number;
          plugin?: string[];
          checkpointDir?: string;
          redisCheckpointLimit?: number;
          name?: string;
          lockDuration?: number;
          stalledInterval?: number;
        },
        cmd: Command,
      ) => {
        const g = cmd.optsWithGlobals<{ backend?: string; quiet?: boolean }>();
        if (opts.plugin?.length) loadPluginModules(opts.plugin, process.cwd(), io.loadModule);
        await runWorker({
          queue: opts.queue,
          concurrency: opts.concurrency,
          checkpointDir: opts.checkpointDir,
          redisCheckpointLimit: opts.redisCheckpointLimit,
          name: opts.name,
          lockDuration: opts.lockDuration,
          stalledInterval: opts.stalledInterval,
          backend: g.backend,
          quiet: g.quiet,
          signal: io.signal,
          stdout: io.stdout,
          stderr: io.stderr,
        });
      },
    );

  program
    .command('status')
    .description('list the jobs, workers and failures of a queue and of its distributed-ES queue (<name>-es)')
    .requiredOption('--queue <url>', 'the queue (as given to `bilevel worker`)')
    .option('--json', 'print JSON')
    .action(async (opts: { queue: string; json?: boolean }) => {
      io.stdout.write((await showStatus(opts.queue, Boolean(opts.json))) + '\n');
    });
}

/**
 * `bilevel run --queue <url>`: runs `run` (a local experiment run given extra options) with every run sent to
 * the queue's workers, all enqueued at once; the connection is closed afterwards.
 */
export async function withQueue<T>(
  queue: string | undefined,
  plan: ExperimentPlan,
  io: CliIo & { quiet?: boolean },
  run: (extra: Pick<RunExperimentOptions, 'executor' | 'concurrency'>) => Promise<T>,
): Promise<T> {
  if (queue === undefined) return run({});
  const distributed = await connectDistributed(plan, { queue, stdout: io.stdout, quiet: io.quiet });
  try {
    return await run({ executor: distributed.executor, concurrency: plan.methods.length * plan.config.seeds.length });
  } finally {
    await distributed.close();
  }
}
