import * as fs from 'fs';
import * as path from 'path';
import {
  ConfigError,
  MAX_INTEGER_OPTION,
  OracleSpecSchema,
  parseOptions,
  PipelineSpecSchema,
  PluginRefSchema,
  registry as defaultRegistry,
  type ResolvedPluginRef,
  TrainerOptionsSchema,
  type PluginKind,
  type PluginRegistry,
  type ResolvedPipelineSpec,
  z,
} from '@bilevel/core';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { METHOD_RECIPES } from '@bilevel/estimators';
import { BACKEND_CHOICES, BackendChoiceSchema } from '@bilevel/backend';
import { expandSweep, sweepError } from './sweep';
import { SlowBackendSchema } from './slow-backend';

/** Trainer and oracle settings given at the top of a config or per method; unset fields fall through. */
export const TrainerOverridesSchema = TrainerOptionsSchema.partial();
/** Oracle settings given at the top of a config or per method; unset fields fall through. */
export const OracleOverridesSchema = OracleSpecSchema.partial();

/** One method of an experiment: inner solver, estimator and outer optimizer, with optional overrides. */
export const MethodSchema = z
  .object({
    recipe: z
      .string()
      .optional()
      .describe(
        'a published method from `bilevel list methods` (e.g. soba): its inner solver, estimator and outer optimizer, ' +
          'which the entry\'s own fields override (same plugin: options merged; another plugin: replaced); label defaults to the recipe name',
      ),
    label: z
      .string()
      .min(1)
      .max(60)
      .describe('name shown in progress, tables and plot legends (unique within the config)'),
    innerSolver: PluginRefSchema.describe('inner solver (e.g. gd, bfgs)'),
    estimator: PluginRefSchema.describe('hypergradient estimator (e.g. es, qnbo, cg)'),
    outerOptimizer: PluginRefSchema.default('gd').describe('outer optimizer (gd, momentum, adam)'),
    oracles: OracleOverridesSchema.optional().describe(
      'oracle settings for this method (override the top level)',
    ),
    trainer: TrainerOverridesSchema.optional().describe(
      'trainer settings for this method (override the top level)',
    ),
    color: z
      .string()
      .regex(/^#[0-9a-fA-F]{6}$/, 'must be a colour #rrggbb')
      .optional()
      .describe('plot colour (#rrggbb); a palette colour when absent'),
  })
  .strict();
/** A validated method. */
export type MethodConfig = z.output<typeof MethodSchema>;

/** Where and how the results are written. */
export const OutputSchema = z
  .object({
    dir: z.string().min(1).optional().describe('results folder (default results/<name>-<timestamp>)'),
    plots: z.boolean().default(true).describe('write SVG and PNG plots'),
    report: z
      .boolean()
      .default(true)
      .describe('write report.html (tables and interactive charts, works offline)'),
    logScale: z
      .enum(['auto', 'always', 'never'])
      .default('auto')
      .describe(
        'log y axis (outer loss and main metric): auto = when positive and spanning more than 1.5 decades',
      ),
    width: z
      .number()
      .int()
      .min(300)
      .max(4000)
      .default(800)
      .describe('chart width (SVG units; PNG pixels ÷ pixelRatio)'),
    height: z.number().int().min(200).max(4000).default(500).describe('chart height'),
    pixelRatio: z.number().int().min(1).max(4).default(2).describe('PNG pixels per chart unit'),
  })
  .strict();

/** Progress output off a terminal. */
export const ProgressSchema = z
  .object({
    intervalSeconds: z
      .number()
      .positive()
      .default(2)
      .describe('plain log lines (output not a terminal): a line after at least this many seconds …'),
    everySteps: z
      .number()
      .int()
      .positive()
      .optional()
      .describe('… or after this many steps (default: a twentieth of the steps)'),
  })
  .strict();

/** Checkpoints of every run, so that an interrupted experiment can be resumed. */
export const CheckpointSchema = z
  .object({
    every: z
      .number()
      .int()
      .min(0)
      .default(100)
      .describe("save each run's whole state every this many outer steps (0: only when interrupted)"),
    keep: z
      .number()
      .int()
      .min(1)
      .default(2)
      .describe('checkpoints kept per run; an older one is used when the newest is damaged'),
    onInterrupt: z.boolean().default(true).describe('also save when interrupted (Ctrl-C, SIGTERM)'),
    final: z
      .boolean()
      .default(false)
      .describe(
        'keep the final state of every completed run in final/<method>-seed<k>/ (safetensors; e.g. a learned backbone for Python)',
      ),
  })
  .strict();

/** An experiment: one problem, one or more methods, one or more seeds. */
export const ExperimentConfigSchema = z
  .object({
    name: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must be letters, digits, . _ - (it names the results folder)')
      .max(80)
      .describe('experiment name; the results folder is results/<name>-<timestamp>'),
    description: z.string().optional().describe('free text, copied to the summary'),
    /** The tfjs backend (`auto` by default; `--backend` or `BILEVEL_BACKEND` override it). */
    backend: BackendChoiceSchema.optional(),
    /** Settings that replace the config's on the backends without native kernels (wasm, cpu), with the reason. */
    slowBackend: SlowBackendSchema.optional(),
    plugins: z
      .array(z.string().min(1))
      .default([])
      .describe('extra modules to load before running (paths relative to the config file, or package names)'),
    problem: PluginRefSchema.describe('the bilevel problem, shared by every method'),
    methods: z.array(MethodSchema).min(1).describe('the methods to compare'),
    trainer: TrainerOverridesSchema.default({}).describe('trainer settings for every method'),
    oracles: OracleOverridesSchema.default({}).describe('oracle settings for every method'),
    seeds: z
      .array(z.number().int().min(0).max(MAX_INTEGER_OPTION))
      .min(1)
      .max(10000)
      .default([0])
      .describe('one run per method per seed; integers in [0, 2^32)'),
    onRunError: z
      .enum(['continue', 'stop'])
      .default('continue')
      .describe('after a run fails (divergence…): go on with the other runs, or stop'),
    /** Where and how the results are written. */
    output: OutputSchema.default({}),
    /** Progress output off a terminal. */
    progress: ProgressSchema.default({}),
    checkpoint: CheckpointSchema.default({}).describe(
      'checkpoints in <results>/checkpoints/, for `bilevel resume <results>`',
    ),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    const seen = new Map<string, number>();
    cfg.methods.forEach((m, i) => {
      const prev = seen.get(m.label);
      if (prev !== undefined) {
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          path: ['methods', i, 'label'],
          message: `duplicate label (also methods.${prev}.label)`,
        });
      }
      seen.set(m.label, i);
    });
    if (new Set(cfg.seeds).size !== cfg.seeds.length) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['seeds'], message: 'seeds must be distinct' });
    }
  });
/** An experiment config as written (fields with defaults may be left out). */
export type ExperimentConfigInput = z.input<typeof ExperimentConfigSchema>;
/** A validated experiment config, every default filled in. */
export type ExperimentConfig = z.output<typeof ExperimentConfigSchema>;

/** Command-line overrides (`--backend`, `--seed`, `--steps`, `--out`). */
export interface ConfigOverrides {
  /** `--backend`: the tfjs backend. */
  readonly backend?: string;
  /** `--seed`: the seeds, replacing the config's. */
  readonly seeds?: readonly number[];
  /** `--steps`: outer steps of every method. */
  readonly steps?: number;
  /** `--out`: the results folder. */
  readonly out?: string;
}

/** One method, fully resolved: every plugin option validated and defaulted. */
export interface ResolvedMethod {
  /** The method's label. */
  readonly label: string;
  /** Its plot colour, when the config gives one. */
  readonly color?: string;
  /** The pipeline spec (seed 0; each run sets its own seed). */
  readonly pipeline: ResolvedPipelineSpec;
}

/** A validated experiment ready to run: the config and every method's resolved pipeline. */
export interface ExperimentPlan {
  /** The validated config. */
  readonly config: ExperimentConfig;
  /** The methods, in config order. */
  readonly methods: readonly ResolvedMethod[];
  /** Folder of the config file (plugin paths are relative to it); cwd for in-memory configs. */
  readonly baseDir: string;
  /** Where the config came from, when read from a file. */
  readonly source?: string;
}

/** Reads a YAML or JSON config file (by extension; YAML otherwise), with errors that say where. */
export function readConfigFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError(
      code === 'ENOENT'
        ? `config file not found: ${file}`
        : `cannot read config file ${file}: ${(e as Error).message}`,
      'config',
    );
  }
  const ext = path.extname(file).toLowerCase();
  if (ext === '.json') {
    try {
      return JSON.parse(text) as unknown;
    } catch (e) {
      throw new ConfigError(`${file}: bad JSON: ${(e as Error).message}`, 'config');
    }
  }
  try {
    return parseYaml(text, { prettyErrors: true }) as unknown;
  } catch (e) {
    if (e instanceof YAMLParseError) {
      const where = e.linePos?.[0] ? ` at line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '';
      const first = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
      throw new ConfigError(`${file}: bad YAML${where}: ${first}`, 'config');
    }
    throw new ConfigError(`${file}: bad YAML: ${(e as Error).message}`, 'config');
  }
}

/** Validates a plugin choice against the registry, naming the config field on failure. */
function validatePlugin(
  reg: PluginRegistry,
  kind: PluginKind,
  choice: ResolvedPluginRef,
  where: string,
): Record<string, unknown> {
  if (!reg.has(kind, choice.name)) {
    const known = reg.names(kind);
    throw new ConfigError(
      `${where}.name: unknown ${kind} '${choice.name}'; registered: ${known.length ? known.join(', ') : '(none)'}`,
      `${where}.name`,
    );
  }
  return reg.validate(kind, choice.name, choice.options, where) as Record<string, unknown>;
}

/** Applies the command-line overrides to a parsed config. */
export function applyOverrides(config: ExperimentConfig, overrides: ConfigOverrides = {}): ExperimentConfig {
  const out: ExperimentConfig = { ...config };
  if (overrides.backend !== undefined) {
    const choice = BACKEND_CHOICES.find((c) => c === overrides.backend);
    if (!choice) {
      throw new ConfigError(
        `--backend: must be one of ${BACKEND_CHOICES.map((c) => `'${c}'`).join(', ')} (got '${overrides.backend}')`,
        'backend',
      );
    }
    out.backend = choice;
  }
  if (overrides.seeds !== undefined) {
    if (
      overrides.seeds.length === 0 ||
      overrides.seeds.some((s) => !Number.isInteger(s) || s < 0 || s > MAX_INTEGER_OPTION)
    ) {
      throw new ConfigError(
        `--seed: seeds must be integers from 0 to ${MAX_INTEGER_OPTION} (got ${overrides.seeds.join(',')})`,
        'seeds',
      );
    }
    out.seeds = [...new Set(overrides.seeds)];
  }
  if (overrides.steps !== undefined) {
    if (!Number.isInteger(overrides.steps) || overrides.steps < 1 || overrides.steps > MAX_INTEGER_OPTION) {
      throw new ConfigError(
        `--steps: must be an integer from 1 to ${MAX_INTEGER_OPTION} (got ${overrides.steps})`,
        'trainer.steps',
      );
    }
    out.trainer = { ...config.trainer, steps: overrides.steps };
    out.methods = config.methods.map((m) =>
      m.trainer?.steps !== undefined ? { ...m, trainer: { ...m.trainer, steps: overrides.steps } } : m,
    );
    // --steps also wins over the steps of the smaller settings for wasm and cpu.
    if (config.slowBackend?.trainer.steps !== undefined) {
      out.slowBackend = {
        ...config.slowBackend,
        trainer: { ...config.slowBackend.trainer, steps: overrides.steps },
      };
    }
  }
  if (overrides.out !== undefined) out.output = { ...config.output, dir: overrides.out };
  return out;
}

/**
 * Parses and validates a whole experiment: the config's own fields, then every method's full pipeline
 * spec and every plugin's options against the registry — all before anything runs. Throws a
 * {@link ConfigError} naming the field (e.g. `methods.1.estimator.options.maxIterations`).
 */
export function planExperiment(
  input: unknown,
  options: {
    overrides?: ConfigOverrides;
    registry?: PluginRegistry;
    baseDir?: string;
    source?: string;
    /** Loads the config's `plugins` modules (after the config's own fields are checked, before plugin names are). */
    loadPlugins?: (modules: readonly string[], baseDir: string) => void;
  } = {},
): ExperimentPlan {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new ConfigError(
      `the config must be a mapping of fields (got ${Array.isArray(input) ? 'a list' : String(input)})`,
      '',
    );
  }
  // A `sweep:` grid becomes methods first; errors about them name the method as written and the grid point.
  const expansion = expandSweep(input as Record<string, unknown>);
  try {
    return planMethods(expansion.input, options);
  } catch (e) {
    throw e instanceof ConfigError ? sweepError(e, expansion) : e;
  }
}

/** The plugin ref a recipe gives when a method moves y itself (no inner solve): used only by evaluations. */
const NO_INNER_SOLVE: ResolvedPluginRef = { name: 'gd', options: { maxIterations: 1 } };

/** A plugin ref of a method entry over the recipe's: the same plugin (or no name) merges options, another replaces. */
function overRecipe(base: ResolvedPluginRef, given: unknown, where: string): unknown {
  if (given === undefined) return { name: base.name, options: { ...base.options } };
  if (typeof given === 'string') return given === base.name ? { name: base.name, options: { ...base.options } } : given;
  if (given === null || typeof given !== 'object' || Array.isArray(given)) return given; // the schema names the error
  const g = given as { name?: unknown; options?: unknown };
  if (g.name !== undefined && g.name !== base.name) return given;
  if (g.options !== undefined && (g.options === null || typeof g.options !== 'object' || Array.isArray(g.options))) {
    throw new ConfigError(`${where}.options: expected a mapping of options (got ${JSON.stringify(g.options)})`, `${where}.options`);
  }
  return { ...g, name: base.name, options: { ...base.options, ...((g.options as Record<string, unknown> | undefined) ?? {}) } };
}

/**
 * Expands `recipe:` entries of `methods` into their plugins (METHOD_RECIPES), with the entry's own fields on top.
 * An unknown recipe name is a {@link ConfigError} listing the known ones.
 */
function expandRecipes(input: Record<string, unknown>): Record<string, unknown> {
  const methods = input.methods;
  if (!Array.isArray(methods)) return input;
  const known = METHOD_RECIPES.map((r) => r.name);
  return {
    ...input,
    methods: methods.map((m: unknown, i) => {
      if (m === null || typeof m !== 'object' || Array.isArray(m) || !('recipe' in m)) return m;
      const entry = m as Record<string, unknown>;
      const where = `methods.${i}`;
      const name = entry.recipe;
      if (typeof name !== 'string') {
        throw new ConfigError(`${where}.recipe: expected a recipe name (one of ${known.join(', ')}); got ${JSON.stringify(name)}`, `${where}.recipe`);
      }
      const recipe = METHOD_RECIPES.find((r) => r.name === name);
      if (!recipe) {
        throw new ConfigError(`${where}.recipe: unknown recipe '${name}' (known: ${known.join(', ')})`, `${where}.recipe`);
      }
      return {
        ...entry,
        label: entry.label ?? recipe.name,
        innerSolver: overRecipe(recipe.innerSolver ?? NO_INNER_SOLVE, entry.innerSolver, `${where}.innerSolver`),
        estimator: overRecipe(recipe.estimator, entry.estimator, `${where}.estimator`),
        outerOptimizer: overRecipe(recipe.outerOptimizer, entry.outerOptimizer, `${where}.outerOptimizer`),
      };
    }),
  };
}

function planMethods(
  input: Record<string, unknown>,
  options: Parameters<typeof planExperiment>[1] = {},
): ExperimentPlan {
  const reg = options.registry ?? defaultRegistry;
  const config = applyOverrides(parseOptions(ExperimentConfigSchema, expandRecipes(input), ''), options.overrides);
  const baseDir = options.baseDir ?? process.cwd();
  if (config.plugins.length) options.loadPlugins?.(config.plugins, baseDir);
  const problemOptions = validatePlugin(reg, 'problem', config.problem, 'problem');
  const methods = config.methods.map((m, i): ResolvedMethod => {
    const where = `methods.${i}`;
    const innerSolver = validatePlugin(reg, 'innerSolver', m.innerSolver, `${where}.innerSolver`);
    const estimator = validatePlugin(reg, 'estimator', m.estimator, `${where}.estimator`);
    const outerOptimizer = validatePlugin(reg, 'outerOptimizer', m.outerOptimizer, `${where}.outerOptimizer`);
    const spec = parseOptions(
      PipelineSpecSchema,
      {
        problem: { name: config.problem.name, options: problemOptions },
        innerSolver: { name: m.innerSolver.name, options: innerSolver },
        estimator: { name: m.estimator.name, options: estimator },
        outerOptimizer: { name: m.outerOptimizer.name, options: outerOptimizer },
        oracles: { ...config.oracles, ...m.oracles },
        trainer: { ...config.trainer, ...m.trainer },
        seed: 0,
      },
      where,
    );
    return { label: m.label, color: m.color, pipeline: spec };
  });
  return { config, methods, baseDir, source: options.source };
}

/**
 * The plan of the experiment in a results folder, for `bilevel resume`: re-validated from the config that
 * `bilevel run` stored in its config.resolved.json (every default filled in, command-line overrides applied),
 * with plugin modules loaded from where the original config was. Only the backend may be overridden.
 */
export function loadResumePlan(
  dir: string,
  options: {
    overrides?: Pick<ConfigOverrides, 'backend'>;
    registry?: PluginRegistry;
    loadPlugins?: (modules: readonly string[], baseDir: string) => void;
  } = {},
): ExperimentPlan {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new ConfigError(`resume: results folder not found: ${dir}`, 'resume');
  }
  const file = path.join(dir, 'config.resolved.json');
  if (!fs.existsSync(file)) {
    throw new ConfigError(
      `resume: ${dir} has no config.resolved.json; is it a results folder written by \`bilevel run\`?`,
      'resume',
    );
  }
  let stored: { experiment?: unknown; baseDir?: string; source?: string };
  try {
    stored = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof stored;
  } catch (e) {
    throw new ConfigError(`resume: ${file} is not valid JSON (${(e as Error).message})`, 'resume');
  }
  if (stored.experiment === undefined) {
    throw new ConfigError(
      `resume: ${file} has no 'experiment' field (written by an older bilevel); run the config again`,
      'resume',
    );
  }
  return planExperiment(stored.experiment, {
    overrides: options.overrides,
    registry: options.registry,
    loadPlugins: options.loadPlugins,
    baseDir: stored.baseDir ?? path.resolve(dir),
    source: stored.source,
  });
}

/** Reads, parses and validates a config file. */
export function loadExperiment(
  file: string,
  options: {
    overrides?: ConfigOverrides;
    registry?: PluginRegistry;
    loadPlugins?: (modules: readonly string[], baseDir: string) => void;
  } = {},
): ExperimentPlan {
  const raw = readConfigFile(file);
  const baseDir = path.dirname(path.resolve(file));
  return planExperiment(raw, { ...options, baseDir, source: path.resolve(file) });
}
