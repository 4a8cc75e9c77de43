// The chained tensor methods' types (t.reshape(…), …), for this package and its users; the methods
// themselves are registered by ./tfjs-registrations.
/// <reference types="@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops" preserve="true" />
/**
 * The contracts and the engine of Bilevel: tensor-tree algebra, the `BilevelProblem`, `Oracles`,
 * `InnerSolver`, `HypergradientEstimator` and `OuterOptimizer` contracts, counting oracles, second-order-safe
 * ops, the `Trainer`, checkpoints, seeded randomness, and the plugin registry with `createPipeline`.
 *
 * @module @bilevel/core
 */
import 'reflect-metadata';
import '@tensorflow/tfjs-core';
// The pure-JavaScript CPU backend: always there, the fallback of every backend choice.
import '@tensorflow/tfjs-backend-cpu';
// Every op's gradient and the chained tensor methods, which tfjs-core's CommonJS entry does not register
// (a bundle made at build time from tfjs-core's own registration modules; see tfjs-registrations.ts).
import './tfjs-registrations';

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
