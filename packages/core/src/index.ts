/**
 * The contracts and the engine of Bilevel: tensor-tree algebra, the `BilevelProblem`, `Oracles`,
 * `InnerSolver`, `HypergradientEstimator` and `OuterOptimizer` contracts, counting oracles, second-order-safe
 * ops, the `Trainer`, checkpoints, seeded randomness, and the plugin registry with `createPipeline`.
 *
 * @module @bilevel/core
 */
import 'reflect-metadata';
// The full tfjs package registers every op's gradient and the chained tensor methods (tfjs-core alone
// has neither); it shares tfjs-core's global engine, so ops imported from tfjs-core see them.
import '@tensorflow/tfjs';

export * from './tree';
export * from './ops';
export * from './quadratic-form';
export * from './random';
export * from './errors';
export * from './problem';
export * from './oracles';
export * from './solver';
export * from './estimator';
export * from './update-rule';
export * from './optimizer';
export * from './options';
export * from './registry';
export * from './inject';
export * from './trainer';
export * from './pipeline';
export * from './checkpoint';
export * from './preflight';
export * from './testing';
export * from './quadratic-fixture';
export * from './quasi-newton';
export * from './cholesky';
