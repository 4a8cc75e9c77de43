import { parseOptions, type TreeSpec } from '@bilevel/core';
import { type InverseHessianOperator, linalgOptions, LbfgsMemory } from '@bilevel/linalg';
import { z } from 'zod';
import { quasiNewtonOptionShape, wolfeConstantsInOrder } from './options';
import { QuasiNewtonSolver } from './quasi-newton-solver';

/** Options of the `lbfgs` inner solver: the quasi-Newton options plus `memory`. */
export const LbfgsSolverOptionsSchema = z
  .object({
    ...quasiNewtonOptionShape('strong-wolfe'),
    memory: linalgOptions.memory(10).describe('curvature pairs kept (m ≥ 1)'),
  })
  .strict()
  .superRefine(wolfeConstantsInOrder);
/** Validated options of {@link LbfgsSolver}. */
export type LbfgsSolverOptions = z.output<typeof LbfgsSolverOptionsSchema>;
/** Options as given (every field optional; defaults filled in). */
export type LbfgsSolverInput = z.input<typeof LbfgsSolverOptionsSchema>;

/**
 * Limited-memory BFGS (Liu & Nocedal, Math. Prog. 1989) on the inner problem: d = −H∇g with H the two-loop
 * recursion over the last m pairs (linalg's {@link LbfgsMemory}; H₀ = γI, γ = sᵀr / rᵀr or fixed). The
 * quasi-Newton inner solver of qNBO (Fang et al., ICLR 2025) with `lineSearch: 'fixed'` and `warmupSteps`.
 */
export class LbfgsSolver extends QuasiNewtonSolver {
  readonly name = 'lbfgs';
  protected readonly positiveDefinite = true;

  /** The validated options. */
  override readonly options: LbfgsSolverOptions;

  /** Validates `options` (a ConfigError names a bad field) and fills in the defaults. */
  constructor(options: LbfgsSolverInput = {}) {
    const parsed = parseOptions(LbfgsSolverOptionsSchema, options, 'lbfgs');
    super(parsed);
    this.options = parsed;
  }

  protected createMemory(spec: TreeSpec): InverseHessianOperator {
    const o = this.options;
    return new LbfgsMemory(spec, {
      memory: o.memory,
      initialScaling: o.initialScaling,
      curvatureEpsilon: o.curvatureEpsilon,
    });
  }
}
