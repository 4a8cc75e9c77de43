/**
 * `@bilevel/estimators` — hypergradient estimators ∇Φ(x) = ∇ₓf + (∂y*(x)/∂x)ᵀ∇_y f for any registered
 * problem: evolution strategies (ESJ / ESJ-S), quasi-Newton (qNBO), conjugate gradient, Neumann series,
 * fixed point, iterative differentiation and an exact dense solve (their linear solvers are in
 * `@bilevel/linalg`). Importing the package registers every estimator by name in core's registry.
 *
 * @module @bilevel/estimators
 */
import { type HypergradientEstimator, registry, resolvePerturbedSolveExecutor, type z } from '@bilevel/core';
import {
  ConjugateGradientEstimator,
  ConjugateGradientEstimatorOptionsSchema,
} from './conjugate-gradient-estimator';
import {
  EvolutionStrategiesEstimator,
  EvolutionStrategiesEstimatorOptionsSchema,
} from './evolution-strategies-estimator';
import { ExactEstimator, ExactEstimatorOptionsSchema } from './exact-estimator';
import { BomeEstimator, BomeEstimatorOptionsSchema } from './bome-estimator';
import { F2saEstimator, F2saEstimatorOptionsSchema } from './f2sa-estimator';
import { FixedPointEstimator, FixedPointEstimatorOptionsSchema } from './fixed-point-estimator';
import { ItdEstimator, ItdEstimatorOptionsSchema } from './itd-estimator';
import { NeumannEstimator, NeumannEstimatorOptionsSchema } from './neumann-estimator';
import { QnboEstimator, QnboEstimatorOptionsSchema } from './qnbo-estimator';
import { SabaEstimator, SabaEstimatorOptionsSchema } from './saba-estimator';

export { OracleCallMeter } from './oracle-calls';
export {
  linearSystemBatch,
  innerHessian,
  outerGradients,
  implicitHypergradient,
  type SystemBatches,
  type ImplicitLinearSolver,
} from './implicit';
// ./warm-start: nothing public
export {
  ConjugateGradientEstimatorOptionsSchema,
  type ConjugateGradientEstimatorOptions,
  ConjugateGradientEstimator,
} from './conjugate-gradient-estimator';
export {
  NeumannEstimatorOptionsSchema,
  type NeumannEstimatorOptions,
  NeumannEstimator,
} from './neumann-estimator';
export {
  FixedPointEstimatorOptionsSchema,
  type FixedPointEstimatorOptions,
  FixedPointEstimator,
} from './fixed-point-estimator';
export { ExactEstimatorOptionsSchema, type ExactEstimatorOptions, ExactEstimator } from './exact-estimator';
export { ItdEstimatorOptionsSchema, type ItdEstimatorOptions, ItdEstimator } from './itd-estimator';
// ./jacobian-memory: nothing public
export {
  type DirectionDistribution,
  EvolutionStrategiesEstimatorOptionsSchema,
  type EvolutionStrategiesEstimatorOptions,
  EvolutionStrategiesEstimator,
  perturbedSolveBlock,
  type PerturbedBlockResult,
} from './evolution-strategies-estimator';
export { QnboEstimatorOptionsSchema, type QnboEstimatorOptions, QnboEstimator } from './qnbo-estimator';
export {
  F2saEstimatorOptionsSchema,
  type F2saEstimatorOptions,
  type F2saState,
  F2saEstimator,
} from './f2sa-estimator';
export { BomeEstimatorOptionsSchema, type BomeEstimatorOptions, BomeEstimator } from './bome-estimator';
export {
  SabaEstimatorOptionsSchema,
  type SabaEstimatorOptions,
  type SabaState,
  type SabaTableState,
  SabaEstimator,
} from './saba-estimator';
export { type MethodRecipe, METHOD_RECIPES } from './method-recipes';

const SOURCE = '@bilevel/estimators';

/** Registers an estimator by name with its option schema; the factory receives the validated options. */
function register<O>(
  name: string,
  create: (options: O) => HypergradientEstimator,
  options: z.ZodType<O, z.ZodTypeDef, unknown>,
  description: string,
): void {
  registry.register({ kind: 'estimator', name, description, options, create, source: SOURCE });
}

// ES finds the executor of its `workers` option in the container it is created in (registered by the CLI).
registry.register({
  kind: 'estimator',
  name: 'es',
  description:
    'ESJ / ESJ-S: evolution-strategies Jacobian (Sow, Ji & Liang, 2022), Hessian-free; perturbed solves optionally on workers',
  options: EvolutionStrategiesEstimatorOptionsSchema,
  create: (o, container) =>
    new EvolutionStrategiesEstimator(o, (pool) =>
      resolvePerturbedSolveExecutor(container, pool, 'estimator.options.workers'),
    ),
  source: SOURCE,
});
register(
  'qnbo',
  (o) => new QnboEstimator(o),
  QnboEstimatorOptionsSchema,
  'qNBO subroutine B (Fang et al., 2025): BFGS or SR1 pairs built along ∇_y f, or the inner solver’s pairs reused',
);
register(
  'cg',
  (o) => new ConjugateGradientEstimator(o),
  ConjugateGradientEstimatorOptionsSchema,
  'AID-CG: implicit differentiation, conjugate gradient, warm-started',
);
register(
  'neumann',
  (o) => new NeumannEstimator(o),
  NeumannEstimatorOptionsSchema,
  'AID-NS: implicit differentiation, truncated Neumann series',
);
register(
  'fixed-point',
  (o) => new FixedPointEstimator(o),
  FixedPointEstimatorOptionsSchema,
  'AID-FP: implicit differentiation, fixed-point iteration, warm-started',
);
register(
  'itd',
  (o) => new ItdEstimator(o),
  ItdEstimatorOptionsSchema,
  'ITD: reverse-mode differentiation through K unrolled gradient steps',
);
register(
  'exact',
  (o) => new ExactEstimator(o),
  ExactEstimatorOptionsSchema,
  'implicit differentiation with a dense Hessian and an exact float64 solve (small problems)',
);
register(
  'f2sa',
  (o) => new F2saEstimator(o),
  F2saEstimatorOptionsSchema,
  'F2SA (Kwon et al., 2023): fully first-order penalty method, ∇ₓf + λ(∇ₓg(x, w) − ∇ₓg(x, y)), no second-order products',
);
register(
  'bome',
  (o) => new BomeEstimator(o),
  BomeEstimatorOptionsSchema,
  'BOME (Liu et al., 2022): first-order value-function method, x and y moved together along ∇f + λ∇q̂',
);
register(
  'saba',
  (o) => new SabaEstimator(o),
  SabaEstimatorOptionsSchema,
  'SABA (Dagréou et al., 2022): SOBA with SAGA variance reduction of its three directions over fixed minibatches',
);
