import * as fs from 'fs';
import * as path from 'path';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { ConfigError, DataError, MAX_INTEGER_OPTION, type PluginKind } from '@bilevel/core';
import { BACKEND_CHOICES, listBackends } from './backend';
import { compareTable, readSummary } from './compare';
import { type ConfigOverrides, loadExperiment, loadResumePlan } from './config';
import { registerDistributedCommands, withQueue } from './distributed-commands';
import { textTable } from './format';
import { METHOD_RECIPES } from '@bilevel/estimators';
import { LIST_TOPICS, listJson, listText } from './list';
import { loadPluginModules, type ModuleLoader } from './plugins';
import { reportFromFolder } from './report';
import type { OutputStream } from './progress';
import { ResultsLockedError, StorageError } from './results-folder';
import { EXIT, runExperiment } from './run-experiment';

/** Where the command reads its environment from (process streams, or a test's). */
export interface CliIo {
  /** Standard output. */
  readonly stdout: OutputStream;
  /** Standard error. */
  readonly stderr: OutputStream;
  /** Aborted on Ctrl-C: the current run stops after its step. */
  readonly signal?: AbortSignal;
  /** Overrides terminal detection of stdout (live bar vs plain lines). */
  readonly tty?: boolean;
  /** Loads plugin modules (default: Node's require relative to the config). */
  readonly loadModule?: ModuleLoader;
}

interface GlobalOptions {
  backend?: string;
  seed?: number[];
  out?: string;
  steps?: number;
  quiet?: boolean;
}

/** A whole number as typed: decimal digits only (no '1e3', '0x10', '1.0' or blanks read as something else). */
function parseWholeNumber(text: string): number | null {
  return /^\d+$/.test(text) ? Number(text) : null;
}

function parseSeeds(value: string): number[] {
  const parts = value.split(',').map((s) => s.trim());
  const seeds = parts.map(parseWholeNumber);
  if (seeds.some((s) => s === null || s > MAX_INTEGER_OPTION)) {
    throw new InvalidArgumentError(
      `expected integers from 0 to ${MAX_INTEGER_OPTION} (2^32 - 1) separated by commas (got '${value}')`,
    );
  }
  return seeds as number[];
}

function parsePositiveInteger(value: string): number {
  const n = parseWholeNumber(value.trim());
  if (n === null || n < 1 || n > MAX_INTEGER_OPTION) {
    throw new InvalidArgumentError(`expected an integer from 1 to ${MAX_INTEGER_OPTION} (2^32 - 1) (got '${value}')`);
  }
  return n;
}

function cliVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** Exit code and message for an error that reached the top. */
export function describeError(e: unknown): {
  /** The exit code (see {@link EXIT}). */
  code: number;
  /** The message to print. */
  message: string;
} {
  if (e instanceof ConfigError) return { code: EXIT.configError, message: `config error: ${e.message}` };
  if (e instanceof ResultsLockedError) return { code: EXIT.configError, message: e.message };
  if (e instanceof StorageError) {
    const resume = e.resultsDir ? `; free some space, then continue with: bilevel resume ${e.resultsDir}` : '';
    return { code: EXIT.runError, message: `${e.message}; what was written up to the last checkpoint is kept${resume}` };
  }
  if (e instanceof DataError) {
    return {
      code: EXIT.configError,
      message: `data error: ${e.message}${e.file && !e.message.includes(e.file) ? ` (${e.file})` : ''}`,
    };
  }
  return { code: EXIT.runError, message: `error: ${e instanceof Error ? e.message : String(e)}` };
}

/**
 * The `bilevel` command, runnable in-process: parses `argv` (the user's arguments, without node and the
 * script), runs the command and resolves to its exit code (0 ok, 1 run error, 2 config/usage error,
 * 130 interrupted). Nothing is thrown; errors are printed to `io.stderr` without a stack trace (set
 * BILEVEL_DEBUG=1 to see one).
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let exitCode: number = EXIT.ok;
  const print = (s: string): void => {
    io.stdout.write(s.endsWith('\n') ? s : s + '\n');
  };

  const program = new Command('bilevel')
    .description('Gradient-based bilevel optimization: run experiment configs, list plugins, compare results')
    .version(cliVersion(), '-V, --version')
    .option('--backend <name>', `tfjs backend: ${BACKEND_CHOICES.join(', ')} (overrides the config; see \`bilevel list backends\`)`)
    .option('--seed <seeds>', "seed or comma-separated seeds, e.g. 0,1,2 (overrides the config's seeds)", parseSeeds)
    .option('--out <dir>', 'results folder (default results/<name>-<timestamp>)')
    .option('--steps <n>', 'outer steps of every run (overrides trainer.steps; for quick runs)', parsePositiveInteger)
    .option('--quiet', 'no progress and no table; errors and the results folder only')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    });

  program
    .command('run')
    .description('run an experiment config (YAML or JSON): every method for every seed, then summary, plots and report.html')
    .argument('<config>', 'experiment config file (.yaml, .yml or .json)')
    .option('--dry-run', 'validate the config and every plugin option, print the plan, run nothing')
    .option('--force', 'write into an existing, non-empty results folder')
    .option('--plugin <module...>', 'extra plugin module(s) to load first (path or package name)')
    .option('--queue <url>', 'send every run to the workers of this queue (redis://host:port; see `bilevel worker`)')
    .addHelpText(
      'after',
      '\nExit codes: 0 done, 1 a run failed (e.g. diverged), 2 config or data error, 130 interrupted (Ctrl-C).\n' +
        'Ctrl-C (or SIGTERM) stops at the end of the current step, saves a checkpoint and keeps everything computed\n' +
        'so far. Each run is also checkpointed every `checkpoint.every` steps (default 100) into\n' +
        '<results>/checkpoints/; continue an interrupted or killed experiment with `bilevel resume <results>`.',
    )
    .action(async (configFile: string, cmdOptions: { dryRun?: boolean; force?: boolean; plugin?: string[]; queue?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const overrides: ConfigOverrides = { backend: g.backend, seeds: g.seed, steps: g.steps, out: g.out };
      if (cmdOptions.plugin?.length) loadPluginModules(cmdOptions.plugin, process.cwd(), io.loadModule);
      const plan = loadExperiment(configFile, {
        overrides,
        loadPlugins: (modules, baseDir) => loadPluginModules(modules, baseDir, io.loadModule),
      });
      if (cmdOptions.dryRun) {
        const rows = plan.methods.map((m) => {
          const n = (r: unknown): string => (typeof r === 'string' ? r : (r as { name: string }).name);
          return [m.label, n(m.pipeline.innerSolver), n(m.pipeline.estimator), n(m.pipeline.outerOptimizer), String(m.pipeline.trainer.steps)];
        });
        print(`config ${configFile}: OK`);
        print(`experiment ${plan.config.name}: problem '${(plan.methods[0].pipeline.problem as { name: string }).name}', seeds ${plan.config.seeds.join(', ')}, backend ${plan.config.backend ?? 'auto'}`);
        print(textTable(['method', 'inner solver', 'estimator', 'outer optimizer', 'steps'], rows));
        print('(dry run: nothing was run; data files are read only when a run starts)');
        return;
      }
      const result = await withQueue(cmdOptions.queue, plan, { ...io, quiet: g.quiet }, (distributed) =>
        runExperiment(plan, {
          stdout: io.stdout,
          tty: io.tty,
          quiet: g.quiet,
          signal: io.signal,
          force: cmdOptions.force,
          argv: ['bilevel', ...argv],
          ...distributed,
        }),
      );
      if (g.quiet) print(result.dir);
      if (result.errors.length && g.quiet) for (const e of result.errors) io.stderr.write(e + '\n');
      exitCode = result.exitCode;
    });

  program
    .command('resume')
    .description('continue an interrupted or killed experiment in its results folder, from each run\'s newest checkpoint')
    .argument('<results>', 'the results folder of `bilevel run` (it holds config.resolved.json)')
    .addHelpText(
      'after',
      '\nFinished runs (completed, or failed while training) are kept as they are. Every other run continues from its\n' +
        'newest valid checkpoint (a damaged newest file falls back to the one before; no checkpoint: the run starts\n' +
        'over), with the same numbers as an uninterrupted run on the same backend. Its metrics files keep the rows up\n' +
        'to the checkpoint and go on from there, no row twice; summary, plots and report.html are rewritten. The config is the one\n' +
        'stored in config.resolved.json; only --backend may be given (--seed, --steps and --out may not).\n' +
        'Exit codes as for `run`.',
    )
    .action(async (results: string, _cmdOptions: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      for (const [flag, value] of [
        ['--seed', g.seed],
        ['--steps', g.steps],
        ['--out', g.out],
      ] as const) {
        if (value !== undefined) {
          throw new ConfigError(`resume: ${flag} cannot be used; a resumed experiment keeps the settings it started with`, flag.slice(2));
        }
      }
      const plan = loadResumePlan(results, {
        overrides: { backend: g.backend },
        loadPlugins: (modules, baseDir) => loadPluginModules(modules, baseDir, io.loadModule),
      });
      const result = await runExperiment(plan, {
        stdout: io.stdout,
        tty: io.tty,
        quiet: g.quiet,
        signal: io.signal,
        resume: results,
        argv: ['bilevel', ...argv],
      });
      if (g.quiet) print(result.dir);
      if (result.errors.length && g.quiet) for (const e of result.errors) io.stderr.write(e + '\n');
      exitCode = result.exitCode;
    });

  program
    .command('list')
    .description('show every registered problem, inner solver, estimator, outer optimizer (with options) and backend')
    .argument('[what]', `only one kind: ${[...new Set(Object.keys(LIST_TOPICS).filter((k) => k.endsWith('s')))].join(', ')}`)
    .option('--json', 'print JSON')
    .option('--plugin <module...>', 'extra plugin module(s) to load first')
    .action((what: string | undefined, cmdOptions: { json?: boolean; plugin?: string[] }) => {
      if (cmdOptions.plugin?.length) loadPluginModules(cmdOptions.plugin, process.cwd(), io.loadModule);
      let kind: PluginKind | undefined;
      let onlyBackends = false;
      if (what !== undefined) {
        const topic = LIST_TOPICS[what.toLowerCase()];
        if (!topic) {
          throw new ConfigError(
            `list: unknown kind '${what}'; one of ${Object.keys(LIST_TOPICS).filter((k) => k.endsWith('s')).join(', ')}`,
            'what',
          );
        }
        if (topic === 'methods') {
          print(cmdOptions.json ? JSON.stringify({ methods: METHOD_RECIPES }, null, 2) : listText(null, { methodsOnly: true }));
          return;
        }
        if (topic === 'backend') onlyBackends = true;
        else kind = topic;
      }
      const backends = kind ? null : listBackends();
      if (onlyBackends) {
        print(cmdOptions.json ? JSON.stringify({ backends }, null, 2) : listText(backends, { backendsOnly: true }));
        return;
      }
      print(cmdOptions.json ? listJson(backends, { kind }) : listText(backends, { kind }));
    });

  program
    .command('compare')
    .description('print a comparison table from the summary.json of one or more results folders')
    .argument('<results...>', 'results folders (or their summary.json files)')
    .option('--markdown', 'print a Markdown table')
    .action((targets: string[], cmdOptions: { markdown?: boolean }) => {
      const summaries = targets.map(readSummary);
      print(compareTable(summaries, cmdOptions.markdown ? 'markdown' : 'text'));
    });

  program
    .command('report')
    .description('(re)write report.html and the SVG/PNG plots of a results folder from its summary and metrics files')
    .argument('<results>', 'the results folder of `bilevel run` (it holds summary.json)')
    .option('--no-plots', 'write report.html only')
    .addHelpText(
      'after',
      '\nreport.html is self-contained (tables of the methods and runs, interactive charts; works offline). `run` and\n' +
        '`resume` write it at the end; this command rewrites it, e.g. after an experiment was killed, or with a newer\n' +
        'version of the charts. The plots are written when the experiment\'s output.plots is on (unless --no-plots).',
    )
    .action(async (results: string, cmdOptions: { plots?: boolean }) => {
      const files = await reportFromFolder(results, {
        plots: cmdOptions.plots === false ? false : undefined,
        onNote: (line) => io.stderr.write(`note: ${line}\n`),
      });
      for (const f of files) print(f);
    });

  registerDistributedCommands(program, io);

  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') {
        return EXIT.ok;
      }
      if (e.code === 'commander.executeSubCommandAsync') return EXIT.ok;
      return EXIT.configError;
    }
    const { code, message } = describeError(e);
    io.stderr.write(`bilevel: ${message}\n`);
    if (process.env.BILEVEL_DEBUG && e instanceof Error && e.stack) io.stderr.write(e.stack + '\n');
    return code;
  }
}
