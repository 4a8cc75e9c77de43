/**
 * The shared numerics of Bilevel, below the solvers and the estimators: the limited-memory L-BFGS and SR1
 * pair memories and dense BFGS (inverse-Hessian operators H ≈ [∇²g]⁻¹), float64 Cholesky and dense solves,
 * and the linear solvers `solve(matvec, b, options)` — conjugate gradient, Neumann series, fixed-point
 * iteration, a dense direct solve, and qNBO's subroutine B — with one options schema ({@link linalgOptions})
 * that the plugins pick their fields from.
 *
 * @module @bilevel/linalg
 */
export {
  linalgOptions,
  type QuasiNewtonMemoryOptions,
  QuasiNewtonMemoryOptionsSchema,
  DEFAULT_QUASI_NEWTON_MEMORY_OPTIONS,
} from './options';
export type { InverseHessianOperator } from './inverse-hessian';
export { PairStore } from './pair-memory';
export { LbfgsMemory, lbfgsMiddleMatrix } from './lbfgs-memory';
export { Sr1Memory, SR1_AUTO_SCALING_FACTOR } from './sr1-memory';
export { type PairMemoryKind, createPairMemory } from './pair-memories';
export { DenseBfgsMemory, type DenseBfgsOptions } from './dense-bfgs';
export { choleskyFactor, choleskySolve } from './cholesky';
export {
  type MatVec,
  type LinearSolveResult,
  type LinearSolver,
  type FlatOperator,
  flatOperator,
  euclideanNorm,
  vectorNorm,
  vectorDot,
  checkInit,
  checkFinite,
} from './linear-solve';
export {
  type FlatVectors,
  HOST_BACKENDS,
  setFlatVectorPlacement,
  onHostBackend,
  flatVectors,
  fromTree,
  residualOf,
} from './flat-vectors';
export { type ConjugateGradientOptions, conjugateGradient } from './conjugate-gradient';
export { type NeumannOptions, neumannSeries } from './neumann';
export { type FixedPointOptions, fixedPointIteration } from './fixed-point';
export {
  type DenseFactorization,
  type DenseSolveOptions,
  type DenseSolveResult,
  DimensionLimitError,
  luSolve,
  symmetricEigen,
  pseudoInverseSolve,
  solveDenseSystem,
  denseMatrix,
  denseSolve,
} from './dense';
export {
  type QuasiNewtonSolveOptions,
  type QuasiNewtonSolveResult,
  quasiNewtonSolve,
} from './quasi-newton-solve';
