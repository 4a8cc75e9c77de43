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

// The public API, module by module; internals (preflight's shape checks, the zod message formatter, the custom-op
// builder) stay private. Test helpers are the `@bilevel/core/testing` entry.
export {
  assertSameStructure,
  Float32Values,
  tidy,
  treeAdd,
  treeAxpy,
  treeClone,
  treeDispose,
  treeDot,
  treeFlatten,
  treeFromData,
  treeFromTensors,
  treeIsFinite,
  treeKeep,
  treeMap,
  treeNames,
  treeNeg,
  treeNorm,
  treeNormSquared,
  treeReplace,
  treeScale,
  treeSize,
  treeSlice0,
  treeSpec,
  treeStack,
  treeSub,
  treeTensors,
  treeToData,
  treeUnflatten,
  treeUnstack,
  treeZerosLike,
  treeZip,
  type TensorTree,
  type TreeData,
  type TreeSpec,
} from './tree';
export {
  exp,
  halfSquaredNorm,
  logSigmoid,
  logSoftmax,
  logSumExp,
  sigmoid,
  sigmoidCrossEntropy,
  softmax,
  softmaxCrossEntropy,
  stopGradient,
  type SoftmaxCrossEntropyOptions,
} from './ops';
export { quadraticForm, quadraticMinusLinear } from './quadratic-form';
export { matTVec, matVec, randomOrthogonal, spectralMatrix } from './float64';
export { Random, type RandomState } from './random';
export { ConfigError, DataError, DivergenceError } from './errors';
export type { Batch, BilevelProblem, FixedBatches } from './problem';
export {
  createOracles,
  ORACLE_KINDS,
  SECOND_ORDER_STRATEGIES,
  zeroCounts,
  type OracleCounts,
  type OracleOptions,
  type Oracles,
  type SecondOrderStrategy,
} from './oracles';
export type {
  BatchSchedule,
  CurvatureMemory,
  CurvaturePair,
  InnerResult,
  InnerSolveRequest,
  InnerSolver,
} from './solver';
export type { Estimate, EstimateContext, HypergradientEstimator, InnerBatchSource, PluginState } from './estimator';
export {
  adamRule,
  momentumRule,
  type AdamRuleSettings,
  type MomentumRuleSettings,
  type UpdateRule,
} from './update-rule';
export {
  AdamOptimizer,
  AdamOptimizerOptionsSchema,
  GradientDescentOptimizerOptionsSchema,
  GradientDescentOptimizer,
  MomentumOptimizer,
  MomentumOptimizerOptionsSchema,
  RuleOptimizer,
  type AdamOptimizerOptions,
  type GradientDescentOptimizerOptions,
  type MomentumOptimizerOptions,
  type OuterOptimizer,
} from './optimizer';
export { MAX_INTEGER_OPTION, parseOptions, z, type OptionDoc } from './options';
export {
  loadedCoreCopies,
  PLUGIN_KINDS,
  PLUGIN_OPTIONS,
  PluginRegistry,
  registerBackbone,
  registerDataset,
  registerEstimator,
  registerInnerSolver,
  registerOuterOptimizer,
  registerProblem,
  registry,
  type PluginClass,
  type PluginDefinition,
  type PluginKind,
  type PluginKinds,
} from './registry';
export { inject, injectable } from './inject';
export {
  DEFAULT_DIVERGENCE_BOUND,
  StepError,
  Trainer,
  TrainerOptionsSchema,
  type StepEvent,
  type StopReason,
  type TrainerEvents,
  type TrainerOptions,
  type TrainerParts,
  type TrainerState,
  type TrainResult,
} from './trainer';
export {
  createPipeline,
  OracleSpecSchema,
  PipelineSpecSchema,
  PluginRefSchema,
  type Pipeline,
  type PipelineSpec,
  type PluginRef,
  type ResolvedPipelineSpec,
  type ResolvedPluginRef,
} from './pipeline';
export {
  CHECKPOINT_FORMAT_VERSION,
  CheckpointError,
  Checkpointer,
  listCheckpoints,
  loadLatestCheckpoint,
  readCheckpoint,
  writeCheckpoint,
  type CheckpointerOptions,
  type CheckpointPayload,
} from './checkpoint';
export { preflightProblem, type PreflightOptions } from './preflight';
export {
  PERTURBED_SOLVE_EXECUTORS,
  PIPELINE_REPLICA,
  replayInnerBatches,
  resolvePerturbedSolveExecutor,
  type DirectionSettings,
  type FlatTreeSpec,
  type PerturbedSolveExecutor,
  type PerturbedSolveExecutorFactory,
  type PerturbedSolveReply,
  type PerturbedSolveRequest,
  type PipelineReplica,
  type ReplayedBatches,
  type TransferredBytes,
  type WorkerPoolOptions,
} from './perturbed-solves';
