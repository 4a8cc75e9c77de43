import {
  type Estimate,
  type EstimateContext,
  type HypergradientEstimator,
  parseOptions,
  tidy,
  z,
} from '@bilevel/core';
import {
  implicitHypergradient,
  innerHessian,
  linearSystemBatch,
  outerGradients,
  solveDiagnostics,
} from './implicit';
import { neumannSeries } from './linear-solve';
import { OracleCallMeter } from './oracle-calls';

/** Options of the `neumann` estimator (AID-NS). */
export const NeumannEstimatorOptionsSchema = z
  .object({
    terms: z
      .number()
      .int()
      .positive()
      .default(20)
      .describe('K: terms of the truncated series (one Hessian-vector product each)'),
    stepSize: z
      .number()
      .positive()
      .default(0.1)
      .describe('η in u = η Σ_{k<K} (I − η∇²_yy g)^k ∇_y f; needs η < 2/λ_max(∇²_yy g)'),
  })
  .strict();
/** Validated options of {@link NeumannEstimator}. */
export type NeumannEstimatorOptions = z.output<typeof NeumannEstimatorOptionsSchema>;

/**
 * AID-NS (Lorraine, Vicol & Duvenaud, 2020; Ji, Yang & Liang, 2021): the inverse Hessian-vector product
 * from a truncated Neumann series,
 *
 *     u = η Σ_{k=0}^{K−1} (I − η∇²_yy g)^k ∇_y f,        ∇Φ ≈ ∇ₓf − ∇²_xy g · u.
 *
 * The reported residual ‖∇²_yy g·u − ∇_y f‖ = ‖(I − η∇²_yy g)^K ∇_y f‖ comes from the K-th product.
 */
export class NeumannEstimator implements HypergradientEstimator {
  readonly name = 'neumann';
  /** The validated options. */
  readonly options: NeumannEstimatorOptions;

  constructor(options: z.input<typeof NeumannEstimatorOptionsSchema> = {}) {
    this.options = parseOptions(NeumannEstimatorOptionsSchema, options, 'estimator.options');
  }

  estimate(context: EstimateContext): Estimate {
    const meter = new OracleCallMeter(context.oracles);
    const { hypergradient, diagnostics } = tidy(() => {
      const batch = linearSystemBatch(context);
      const { gradX, gradY } = outerGradients(context);
      const solution = neumannSeries(innerHessian(context, batch), gradY, {
        terms: this.options.terms,
        stepSize: this.options.stepSize,
      });
      return {
        hypergradient: implicitHypergradient(context, gradX, solution.x, batch),
        diagnostics: solveDiagnostics(solution),
      };
    });
    return { hypergradient, diagnostics: { ...diagnostics, ...meter.diagnostics() } };
  }
}
