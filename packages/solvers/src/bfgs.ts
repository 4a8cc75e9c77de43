import { ConfigError, parseOptions, type TreeSpec } from '@bilevel/core';
import { DenseBfgsMemory, type InverseHessianOperator } from '@bilevel/linalg';
import { z } from 'zod';
import { quasiNewtonOptionShape, wolfeConstantsInOrder } from './options';
import { QuasiNewtonSolver } from './quasi-newton-solver';

/** Options of the `bfgs` inner solver: the quasi-Newton options plus `maxDimension` and `keepPairs`. */
export const BfgsSolverOptionsSchema = z
  .object({
    ...quasiNewtonOptionShape('strong-wolfe'),
    maxDimension: z
      .number()
      .int()
      .positive()
      .default(2000)
      .describe('largest inner dimension n accepted (H is a dense n × n matrix); use lbfgs above it'),
    keepPairs: z
      .number()
      .int()
      .min(0)
      .default(10)
      .describe('recent (s, r) pairs kept in the returned curvature for estimators that reuse pairs'),
  })
  .strict()
  .superRefine(wolfeConstantsInOrder);
/** Validated options of {@link BfgsSolver}. */
export type BfgsSolverOptions = z.output<typeof BfgsSolverOptionsSchema>;
/** Options as given (every field optional; defaults filled in). */
export type BfgsSolverInput = z.input<typeof BfgsSolverOptionsSchema>;

/**
 * BFGS (Broyden, Fletcher, Goldfarb, Shanno, 1970) with the dense inverse-Hessian update of
 * {@link DenseBfgsMemory}, for small inner dimensions (n ≤ `maxDimension`): every iteration costs O(n²).
 */
export class BfgsSolver extends QuasiNewtonSolver {
  readonly name = 'bfgs';
  protected readonly positiveDefinite = true;

  /** The validated options. */
  override readonly options: BfgsSolverOptions;

  /** Validates `options` (a ConfigError names a bad field) and fills in the defaults. */
  constructor(options: BfgsSolverInput = {}) {
    const parsed = parseOptions(BfgsSolverOptionsSchema, options, 'bfgs');
    super(parsed);
    this.options = parsed;
  }

  protected override checkDimension(spec: TreeSpec): void {
    const max = this.options.maxDimension;
    if (spec.total > max) {
      throw new ConfigError(
        `inner solver 'bfgs': the inner variable has ${spec.total} entries, above maxDimension ${max} ` +
          `(BFGS keeps a dense ${spec.total} × ${spec.total} inverse Hessian); use 'lbfgs', or raise maxDimension`,
        'maxDimension',
      );
    }
  }

  protected createMemory(spec: TreeSpec): InverseHessianOperator {
    const o = this.options;
    return new DenseBfgsMemory(spec, {
      initialScaling: o.initialScaling,
      curvatureEpsilon: o.curvatureEpsilon,
      keepPairs: o.keepPairs,
    });
  }
}
