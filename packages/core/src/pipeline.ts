import { z } from 'zod';
import type { HypergradientEstimator } from './estimator';
import type { OuterOptimizer } from './optimizer';
import { createOracles, type Oracles } from './oracles';
import { MAX_INTEGER_OPTION, parseOptions } from './options';
import { PIPELINE_REPLICA, type PipelineReplica } from './perturbed-solves';
import type { BilevelProblem } from './problem';
import { registry as defaultRegistry, type PluginRegistry } from './registry';
import type { InnerSolver } from './solver';
import { Trainer, TrainerOptionsSchema } from './trainer';

/** A plugin chosen by name, with options, as written: `"cg"` or `{ name: "cg", options: { maxIterations: 20 } }`. */
export type PluginRef =
  | string
  | {
      /** The registered plugin name. */
      readonly name: string;
      /** The plugin's options (validated against its schema). */
      readonly options?: Record<string, unknown>;
    };
/** A validated plugin choice: always `{ name, options }`. */
export interface ResolvedPluginRef {
  /** The registered plugin name. */
  name: string;
  /** The plugin's options (validated against its schema when the plugin is created). */
  options: Record<string, unknown>;
}

/**
 * A plugin chosen by name (the one schema of this concept, used by pipelines and the CLI's configs): a string
 * is read as `{ name }`, so a wrong key in the object form is reported by name (not as "invalid union").
 */
export const PluginRefSchema = z.preprocess(
  (v) => (typeof v === 'string' ? { name: v } : v),
  z
    .object({
      name: z.string().min(1).describe('registered plugin name'),
      options: z.record(z.unknown()).default({}).describe("the plugin's options (see `bilevel list`)"),
    })
    .strict(),
) as unknown as z.ZodType<ResolvedPluginRef, z.ZodTypeDef, PluginRef>;

/** How the pipeline's oracles form second-order products. */
export const OracleSpecSchema = z
  .object({
    /** `autodiff` (double backprop, exact) or `finite-difference` (central differences of gradients). */
    secondOrder: z.enum(['autodiff', 'finite-difference']).default('autodiff'),
    /** Relative step h of the finite differences (each coordinate of y moves by about h·(1 + rms(y))). */
    finiteDifferenceStep: z.number().positive().max(1).default(1e-3),
  })
  .strict();

/** A whole pipeline described by names and options. */
export const PipelineSpecSchema = z
  .object({
    /** The bilevel problem. */
    problem: PluginRefSchema,
    /** The inner solver. */
    innerSolver: PluginRefSchema,
    /** The hypergradient estimator. */
    estimator: PluginRefSchema,
    /** The outer optimizer (default `gd`). */
    outerOptimizer: PluginRefSchema.default('gd'),
    /** How the oracles form second-order products. */
    oracles: OracleSpecSchema.default({}),
    /** Stop rules, guards and evaluation of the trainer. */
    trainer: TrainerOptionsSchema.default({}),
    /** Seed of the trainer's random source (directions, minibatches). */
    seed: z.number().int().min(0).max(MAX_INTEGER_OPTION).default(0).describe('integer in [0, 2^32)'),
  })
  .strict();
/** A pipeline as written by a user: plugin choices by name, every option optional where it has a default. */
export type PipelineSpec = z.input<typeof PipelineSpecSchema>;
/** A validated pipeline spec: every plugin as `{ name, options }` with defaults filled in. */
export type ResolvedPipelineSpec = z.output<typeof PipelineSpecSchema>;

/** A runnable pipeline built by {@link createPipeline}. */
export interface Pipeline {
  /** The resolved spec, every default filled in (worth saving next to results). */
  readonly spec: ResolvedPipelineSpec;
  /** The problem instance. */
  readonly problem: BilevelProblem;
  /** The counted oracles shared by the solver, the estimator and the trainer. */
  readonly oracles: Oracles;
  /** The inner solver. */
  readonly solver: InnerSolver;
  /** The hypergradient estimator. */
  readonly estimator: HypergradientEstimator;
  /** The outer optimizer. */
  readonly optimizer: OuterOptimizer;
  /** The trainer that runs the steps (`run`, `stepOnce`, events). */
  readonly trainer: Trainer;
  /** Releases every tensor the pipeline holds (trainer state, plugin state, problem data). */
  dispose(): void;
}

/**
 * Validates a spec (throwing a `ConfigError` that names the field) and builds a runnable trainer from the
 * registered plugins. Every option of every plugin is validated before anything is created.
 */
export function createPipeline(input: PipelineSpec, registry: PluginRegistry = defaultRegistry): Pipeline {
  const spec = parseOptions(PipelineSpecSchema, input, '');
  const refs = {
    problem: spec.problem,
    innerSolver: spec.innerSolver,
    estimator: spec.estimator,
    outerOptimizer: spec.outerOptimizer,
  };
  const validated = {
    problem: registry.validate('problem', refs.problem.name, refs.problem.options, 'problem'),
    innerSolver: registry.validate(
      'innerSolver',
      refs.innerSolver.name,
      refs.innerSolver.options,
      'innerSolver',
    ),
    estimator: registry.validate('estimator', refs.estimator.name, refs.estimator.options, 'estimator'),
    outerOptimizer: registry.validate(
      'outerOptimizer',
      refs.outerOptimizer.name,
      refs.outerOptimizer.options,
      'outerOptimizer',
    ),
  };
  const resolved: ResolvedPipelineSpec = {
    ...spec,
    problem: { name: refs.problem.name, options: validated.problem as Record<string, unknown> },
    innerSolver: { name: refs.innerSolver.name, options: validated.innerSolver as Record<string, unknown> },
    estimator: { name: refs.estimator.name, options: validated.estimator as Record<string, unknown> },
    outerOptimizer: {
      name: refs.outerOptimizer.name,
      options: validated.outerOptimizer as Record<string, unknown>,
    },
  };
  const problem = registry.create('problem', refs.problem.name, refs.problem.options, 'problem');
  const solver = registry.create(
    'innerSolver',
    refs.innerSolver.name,
    refs.innerSolver.options,
    'innerSolver',
  );
  // The estimator may hand perturbed solves to remote replicas of this problem, solver and oracles.
  const replica: PipelineReplica = {
    problem: resolved.problem,
    innerSolver: resolved.innerSolver,
    oracles: spec.oracles as Record<string, unknown>,
  };
  const estimator = registry.create('estimator', refs.estimator.name, refs.estimator.options, 'estimator', [
    [PIPELINE_REPLICA, replica],
  ]);
  const optimizer = registry.create(
    'outerOptimizer',
    refs.outerOptimizer.name,
    refs.outerOptimizer.options,
    'outerOptimizer',
  );
  const oracles = createOracles(problem, spec.oracles);
  const trainer = new Trainer({
    problem,
    oracles,
    solver,
    estimator,
    optimizer,
    seed: spec.seed,
    options: spec.trainer,
  });
  return {
    spec: resolved,
    problem,
    oracles,
    solver,
    estimator,
    optimizer,
    trainer,
    dispose() {
      trainer.dispose();
      problem.dispose?.();
    },
  };
}
