/**
 * Inner solvers of Bilevel: `gd`, `adam`, `bfgs`, `lbfgs` and `sr1`, with strong Wolfe, Armijo and
 * fixed-step line searches. Importing the package registers them by name in core's registry.
 *
 * @module @bilevel/solvers
 */
import { registerInnerSolver } from '@bilevel/core';
import { AdamSolver, type AdamSolverOptions, AdamSolverOptionsSchema } from './adam';
import { BfgsSolver, type BfgsSolverOptions, BfgsSolverOptionsSchema } from './bfgs';
import { GdSolver, type GdSolverOptions, GdSolverOptionsSchema } from './gradient-descent';
import { LbfgsSolver, type LbfgsSolverOptions, LbfgsSolverOptionsSchema } from './lbfgs';
import { Sr1Solver, type Sr1SolverOptions, Sr1SolverOptionsSchema } from './sr1';

export * from './errors';
export * from './options';
export * from './line-search';
export * from './elementwise';
export * from './gradient-descent';
export * from './adam';
export * from './quasi-newton-solver';
export * from './bfgs';
export * from './lbfgs';
export * from './sr1';

registerInnerSolver(
  'gd',
  (o: GdSolverOptions) => new GdSolver(o),
  GdSolverOptionsSchema,
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
