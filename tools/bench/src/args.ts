/** Command line of `node tools/bench/dist/run.js`: parsing and validation (no side effects). */
import { type LibsvmFiles, SECTION_IDS, type SectionId } from './suite/settings';
import { SPEED_FAMILIES, speedSelectors } from './suite/speed/workloads';

/** The suite's sections: the training settings, then `speed` (Bilevel against PyTorch twins). */
export type SuiteSectionId = SectionId | 'speed';
export const SUITE_SECTION_IDS: readonly SuiteSectionId[] = [...SECTION_IDS, 'speed'];

export const COMMANDS = ['suite', 'kernels', 'solvers', 'estimators', 'esj', 'distributed-es'] as const;
export type Command = (typeof COMMANDS)[number];

export const BACKEND_CHOICES = ['auto', 'tensorflow', 'cpu-blas', 'wasm', 'cpu'] as const;

export interface SuiteArgs {
  readonly quick: boolean;
  /** As given (resolved by the caller); undefined: the repository's docs/. */
  readonly out?: string;
  readonly backend: string;
  readonly sections: readonly SuiteSectionId[];
  readonly png: boolean;
  readonly json: boolean;
  /** Timed steps of every speed workload, instead of each one's own. */
  readonly speedSteps?: number;
  /** Speed section: each workload's two sides one after the other, never interleaved. */
  readonly speedSequential?: boolean;
  /** The speed workloads to run (ids or families); all when absent. */
  readonly workloads?: readonly string[];
  /** The benchopt-ho section's LIBSVM files (as given; resolved by the caller). */
  readonly libsvm?: LibsvmFiles;
}

export type ParsedArgs =
  | { readonly kind: 'help' }
  | { readonly kind: 'command'; readonly command: Exclude<Command, 'suite' | 'esj'> }
  | { readonly kind: 'esj'; readonly quick: boolean; readonly out?: string }
  | { readonly kind: 'suite'; readonly args: SuiteArgs };

/** A bad command line; the message says what is wrong. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export const USAGE = `Usage: node tools/bench/dist/run.js [command] [options]

Commands:
  suite (default)  the papers' settings: writes <out>/benchmarks.md and the figures in <out>/benchmarks/
  kernels          GFLOP/s of matmul and Conv-4 / ResNet-12 convolutions on every tfjs backend
  solvers          inner solvers on the hyper-cleaning inner problem (gradient evaluations, seconds)
  estimators       evolution-strategies estimator: batched against one-by-one perturbed solves
  distributed-es   ES steps with perturbed solves on 1, 2 and 4 local \`bilevel worker\` processes (a private
                   redis-server), against local steps: ms per step, bytes per step and the cost model
  esj              ESJ variants' accuracy against exact hypergradients, by perturbed solves and time:
                   writes <out>/esj-measurements.md and <out>/esj/ (options --quick, --out only)

Options of the suite:
  --quick               smaller problems and budgets, the same code paths (a smoke test, about 2 minutes)
  --out <dir>           folder of benchmarks.md and benchmarks/ (default: the repository's docs/)
  --backend <name>      ${BACKEND_CHOICES.join(', ')} (default: auto, or BILEVEL_BACKEND)
  --only <sections>     comma-separated subset of ${SUITE_SECTION_IDS.join(', ')}
  --workloads <names>   speed section: comma-separated families (${SPEED_FAMILIES.join(', ')}) or
                        workloads (e.g. quadratic/aid-cg); without --only it implies --only speed, and
                        without --out it only prints the table (docs/ is left alone)
  --speed-steps <n>     speed section: timed steps of every workload (default: each workload's own)
  --speed-sequential    speed section: time each workload's Bilevel side, then its twin (default: the two
                        alternate blocks of steps, except few-shot)
  --libsvm-train <file>       benchopt-ho section: the LIBSVM training file (plain or gzip); without it that
                              section is skipped
  --libsvm-validation <file>  benchopt-ho: the validation file (default: 25 % of the training file, a fresh
                              split per seed), e.g. ijcnn1.tr with ijcnn1.t as benchopt does
  --libsvm-test <file>        benchopt-ho: a test file (test error in the table)
  --png                 also write a PNG of every figure
  --json                also write <out>/benchmarks/results.json (every curve and measurement)
  -h, --help            this text

Real data are found through BILEVEL_DATA_PATH (Fashion-MNIST, Omniglot); a section whose data is missing is
reported as skipped. A LIBSVM file that cannot be read (missing, malformed: the message names the file and line)
stops the benchopt-ho section and makes the exit code 1. Exit codes: 0 done (a diverged method is a result), 1 a method failed or timed out,
2 bad command line.`;

function valueOf(argv: readonly string[], i: number, flag: string, inline: string | undefined): { value: string; next: number } {
  if (inline !== undefined) {
    if (inline === '') throw new UsageError(`option '${flag}' needs a value`);
    return { value: inline, next: i };
  }
  const v = argv[i + 1];
  if (v === undefined || v.startsWith('-')) throw new UsageError(`option '${flag}' needs a value`);
  return { value: v, next: i + 1 };
}

/** Parses the arguments after `run.js`. Throws a {@link UsageError}. */
export function parseArgs(argv: readonly string[]): ParsedArgs {
  let command: Command | undefined;
  let quick = false;
  let png = false;
  let json = false;
  let out: string | undefined;
  let backend = 'auto';
  let sections: SuiteSectionId[] = [...SUITE_SECTION_IDS];
  let only = false;
  let speedSteps: number | undefined;
  let speedSequential = false;
  let workloads: string[] | undefined;
  const libsvm: { train?: string; validation?: string; test?: string } = {};
  const seen = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') return { kind: 'help' };
    if (!arg.startsWith('-')) {
      if (command !== undefined) throw new UsageError(`unexpected argument '${arg}' (the command is already '${command}')`);
      if (!(COMMANDS as readonly string[]).includes(arg)) {
        throw new UsageError(`unknown command '${arg}' (expected one of: ${COMMANDS.join(', ')})`);
      }
      command = arg as Command;
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = eq >= 0 ? arg.slice(0, eq) : arg;
    const inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
    if (seen.has(flag)) throw new UsageError(`option '${flag}' given twice`);
    seen.add(flag);
    switch (flag) {
      case '--quick':
      case '--png':
      case '--json':
      case '--speed-sequential':
        if (inline !== undefined) throw new UsageError(`option '${flag}' takes no value`);
        if (flag === '--quick') quick = true;
        else if (flag === '--png') png = true;
        else if (flag === '--speed-sequential') speedSequential = true;
        else json = true;
        break;
      case '--out': {
        const r = valueOf(argv, i, flag, inline);
        out = r.value;
        i = r.next;
        break;
      }
      case '--backend': {
        const r = valueOf(argv, i, flag, inline);
        if (!(BACKEND_CHOICES as readonly string[]).includes(r.value)) {
          throw new UsageError(`option '--backend': '${r.value}' is not one of ${BACKEND_CHOICES.join(', ')}`);
        }
        backend = r.value;
        i = r.next;
        break;
      }
      case '--only': {
        const r = valueOf(argv, i, flag, inline);
        const names = r.value.split(',').map((s) => s.trim()).filter((s) => s !== '');
        const bad = names.filter((n) => !(SUITE_SECTION_IDS as readonly string[]).includes(n));
        if (names.length === 0 || bad.length > 0) {
          throw new UsageError(`option '--only': unknown section ${bad.map((b) => `'${b}'`).join(', ') || "''"} (expected: ${SUITE_SECTION_IDS.join(', ')})`);
        }
        sections = SUITE_SECTION_IDS.filter((s) => names.includes(s));
        only = true;
        i = r.next;
        break;
      }
      case '--workloads': {
        const r = valueOf(argv, i, flag, inline);
        const names = r.value.split(',').map((s) => s.trim()).filter((s) => s !== '');
        const known = speedSelectors();
        const bad = names.filter((n) => !known.includes(n));
        if (names.length === 0 || bad.length > 0) {
          throw new UsageError(`option '--workloads': unknown workload ${bad.map((b) => `'${b}'`).join(', ') || "''"} (expected: ${known.join(', ')})`);
        }
        workloads = [...new Set(names)];
        i = r.next;
        break;
      }
      case '--speed-steps': {
        const r = valueOf(argv, i, flag, inline);
        const n = Number(r.value);
        if (!/^\d+$/.test(r.value) || !Number.isSafeInteger(n) || n < 1) {
          throw new UsageError(`option '--speed-steps': expected a positive integer (got '${r.value}')`);
        }
        speedSteps = n;
        i = r.next;
        break;
      }
      case '--libsvm-train':
      case '--libsvm-validation':
      case '--libsvm-test': {
        const r = valueOf(argv, i, flag, inline);
        libsvm[flag.slice('--libsvm-'.length) as 'train' | 'validation' | 'test'] = r.value;
        i = r.next;
        break;
      }
      default:
        throw new UsageError(`unknown option '${flag}' (see --help)`);
    }
  }
  const cmd = command ?? 'suite';
  if (cmd === 'esj') {
    const bad = [...seen].filter((f) => f !== '--quick' && f !== '--out');
    if (bad.length > 0) throw new UsageError(`command 'esj' takes only --quick and --out (got ${bad.join(', ')})`);
    return { kind: 'esj', quick, ...(out !== undefined ? { out } : {}) };
  }
  if (cmd !== 'suite') {
    if (seen.size > 0) throw new UsageError(`command '${cmd}' takes no options (got ${[...seen].join(', ')})`);
    return { kind: 'command', command: cmd };
  }
  if (workloads !== undefined) {
    if (!only) sections = ['speed'];
    else if (!sections.includes('speed')) throw new UsageError("option '--workloads' selects speed workloads, but '--only' leaves out the speed section");
  }
  const libsvmGiven = libsvm.train !== undefined || libsvm.validation !== undefined || libsvm.test !== undefined;
  if (libsvmGiven && libsvm.train === undefined) {
    throw new UsageError("options '--libsvm-validation' and '--libsvm-test' need '--libsvm-train' (the training file)");
  }
  if (libsvmGiven && !sections.includes('benchopt-ho')) {
    throw new UsageError("the '--libsvm-*' options apply to the benchopt-ho section, which '--only' leaves out");
  }
  if (speedSteps !== undefined && !sections.includes('speed')) {
    throw new UsageError("option '--speed-steps' applies to the speed section, which '--only' leaves out");
  }
  if (speedSequential && !sections.includes('speed')) {
    throw new UsageError("option '--speed-sequential' applies to the speed section, which '--only' leaves out");
  }
  return {
    kind: 'suite',
    args: {
      quick,
      png,
      json,
      backend,
      sections,
      ...(out !== undefined ? { out } : {}),
      ...(speedSteps !== undefined ? { speedSteps } : {}),
      ...(speedSequential ? { speedSequential } : {}),
      ...(workloads !== undefined ? { workloads } : {}),
      ...(libsvm.train !== undefined
        ? {
            libsvm: {
              train: libsvm.train,
              ...(libsvm.validation !== undefined ? { validation: libsvm.validation } : {}),
              ...(libsvm.test !== undefined ? { test: libsvm.test } : {}),
            },
          }
        : {}),
    },
  };
}
