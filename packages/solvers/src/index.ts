/**
 * Inner solvers of Bilevel: `gd`, `adam`, `bfgs`, `lbfgs` and `sr1`, with strong Wolfe, Armijo and
 * fixed-step line searches. Importing the package registers them by name in core's registry.
 *
 * @module @bilevel/solvers
 */
import { registerInnerSolver } from '@bilevel/core';
import { AdamSolver, type AdamSolverOptions, AdamSolverOptionsSchema } from './adam';
import { BfgsSolver, type BfgsSolverOptions, BfgsSolverOptionsSchema } from './bfgs';
import {
  GradientDescentSolver,
  type GradientDescentSolverOptions,
  GradientDescentSolverOptionsSchema,
} from './gradient-descent';
import { LbfgsSolver, type LbfgsSolverOptions, LbfgsSolverOptionsSchema } from './lbfgs';
import { Sr1Solver, type Sr1SolverOptions, Sr1SolverOptionsSchema } from './sr1';

export { SolverDivergenceError } from './errors';
export { type LineSearchKind, type QuasiNewtonOptions } from './options';
export {
  backtrackingArmijo,
  strongWolfe,
  type TrialPoint,
  type Trial,
  type LineSearchStart,
  type ArmijoOptions,
  type WolfeOptions,
} from './line-search';
export { type StopReason } from './elementwise';
export {
  GradientDescentSolverOptionsSchema,
  type GradientDescentSolverOptions,
  type GradientDescentSolverInput,
  GradientDescentSolver,
} from './gradient-descent';
export { AdamSolverOptionsSchema, type AdamSolverOptions, type AdamSolverInput, AdamSolver } from './adam';
export {
  type QuasiNewtonResult,
  type IterationEvent,
  type IterationObserver,
  type ObservedSolveRequest,
  QuasiNewtonSolver,
} from './quasi-newton-solver';
export { BfgsSolverOptionsSchema, type BfgsSolverOptions, type BfgsSolverInput, BfgsSolver } from './bfgs';
export {
  LbfgsSolverOptionsSchema,
  type LbfgsSolverOptions,
  type LbfgsSolverInput,
  LbfgsSolver,
} from './lbfgs';
export { Sr1SolverOptionsSchema, type Sr1SolverOptions, type Sr1SolverInput, Sr1Solver } from './sr1';

registerInnerSolver(
  'gd',
  (o: GradientDescentSolverOptions) => new GradientDescentSolver(o),
  GradientDescentSolverOptionsSchema,
  'gradient descent, optional momentum / Nesterov (batched)',
);
registerInnerSolver(
  'adam',
  (o: AdamSolverOptions) => new AdamSolver(o),
  AdamSolverOptionsSchema,
  'Adam with bias correction (batched)',
);
registerInnerSolver(
  'bfgs',
  (o: BfgsSolverOptions) => new BfgsSolver(o),
  BfgsSolverOptionsSchema,
  'BFGS with a dense inverse Hessian (small n)',
);
registerInnerSolver(
  'lbfgs',
  (o: LbfgsSolverOptions) => new LbfgsSolver(o),
  LbfgsSolverOptionsSchema,
  'limited-memory BFGS, two-loop recursion',
);
registerInnerSolver(
  'sr1',
  (o: Sr1SolverOptions) => new Sr1Solver(o),
  Sr1SolverOptionsSchema,
  'limited-memory SR1 with skip rule and curvature test',
);
