import { parseOptions, type TreeSpec } from '@bilevel/core';
import { type InverseHessianOperator, linalgOptions, Sr1Memory } from '@bilevel/linalg';
import { z } from 'zod';
import { quasiNewtonOptionShape, wolfeConstantsInOrder } from './options';
import { QuasiNewtonSolver } from './quasi-newton-solver';

/**
 * Options of the `sr1` inner solver: the quasi-Newton options (backtracking Armijo by default) plus `memory`
 * and `skipThreshold`.
 */
export const Sr1SolverOptionsSchema = z
  .object({
    ...quasiNewtonOptionShape('armijo'),
    memory: linalgOptions.memory(10).describe('curvature pairs kept (m ≥ 1)'),
    skipThreshold: linalgOptions
      .sr1SkipThreshold()
      .describe('skip rule: update only when |sᵀ(r − Bs)| ≥ c‖s‖‖r − Bs‖ (and its dual for H)'),
  })
  .strict()
  .superRefine(wolfeConstantsInOrder);
/** Validated options of {@link Sr1Solver}. */
export type Sr1SolverOptions = z.output<typeof Sr1SolverOptionsSchema>;
/** Options as given (every field optional; defaults filled in). */
export type Sr1SolverInput = z.input<typeof Sr1SolverOptionsSchema>;

/**
 * Limited-memory symmetric rank-one quasi-Newton (Conn, Gould & Toint, 1991; Nocedal & Wright §6.2) on the
 * inner problem: d = −H∇g with H the SR1 recursion over the last m pairs (linalg's {@link Sr1Memory}), with
 * the skip rule and qNBO's curvature test sᵀr > ε. On a strongly convex quadratic with unit steps it
 * reaches the exact minimizer in d + 1 steps (H_d = A⁻¹). H may be indefinite: line searches fall back to
 * steepest descent when −H∇g is not a descent direction.
 */
export class Sr1Solver extends QuasiNewtonSolver {
  readonly name = 'sr1';
  protected readonly positiveDefinite = false;

  /** The validated options. */
  override readonly options: Sr1SolverOptions;

  /** Validates `options` (a ConfigError names a bad field) and fills in the defaults. */
  constructor(options: Sr1SolverInput = {}) {
    const parsed = parseOptions(Sr1SolverOptionsSchema, options, 'sr1');
    super(parsed);
    this.options = parsed;
  }

  protected createMemory(spec: TreeSpec): InverseHessianOperator {
    const o = this.options;
    return new Sr1Memory(spec, {
      memory: o.memory,
      initialScaling: o.initialScaling,
      curvatureEpsilon: o.curvatureEpsilon,
      sr1SkipThreshold: o.skipThreshold,
    });
  }
}
