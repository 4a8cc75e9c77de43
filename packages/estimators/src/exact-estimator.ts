import {
  ConfigError,
  type Estimate,
  type EstimateContext,
  type HypergradientEstimator,
  parseOptions,
  treeSize,
  z,
} from '@bilevel/core';
import { denseSolve, linalgOptions } from '@bilevel/linalg';
import { implicitEstimate } from './implicit';

/** Options of the `exact` estimator. */
export const ExactEstimatorOptionsSchema = z
  .object({
    maxDimension: linalgOptions
      .maxDimension(1000)
      .describe('refuse inner variables with more entries (d Hessian-vector products, O(d³) float64 solve)'),
    symmetrize: z
      .boolean()
      .default(true)
      .describe('solve with ½(H + Hᵀ), removing the rounding asymmetry of H'),
    rcond: linalgOptions
      .rcond(1e-6)
      .describe(
        'singular H: eigenvalues with |λ| ≤ rcond·max|λ| count as zero (minimum-norm solution H⁺∇_y f)',
      ),
  })
  .strict();
/** Validated options of {@link ExactEstimator}. */
export type ExactEstimatorOptions = z.output<typeof ExactEstimatorOptionsSchema>;

/**
 * The implicit-function-theorem hypergradient with an exact linear solve, for small inner problems and as
 * a reference for the other estimators:
 *
 *     H = ∇²_yy g(x, y_N) assembled from d Hessian-vector products H e_j,
 *     u = H⁻¹ ∇_y f (float64 Cholesky; when H is singular or indefinite, the minimum-norm solution H⁺∇_y f
 *         from its eigendecomposition — e.g. a softmax bias is unpenalized, and its null direction would
 *         otherwise absorb rounding noise amplified by 1/λ ≈ 1e8),
 *     ∇Φ ≈ ∇ₓf − ∇²_xy g · u.
 *
 * It is exact up to the inner solve's error and the second-order strategy's error.
 */
export class ExactEstimator implements HypergradientEstimator {
  readonly name = 'exact';
  /** The validated options. */
  readonly options: ExactEstimatorOptions;

  constructor(options: z.input<typeof ExactEstimatorOptionsSchema> = {}) {
    this.options = parseOptions(ExactEstimatorOptionsSchema, options, 'estimator.options');
  }

  estimate(context: EstimateContext): Estimate {
    const d = treeSize(context.inner.y);
    if (d > this.options.maxDimension) {
      throw new ConfigError(
        `estimator 'exact': the inner variable of problem '${context.problem.name}' has ${d} entries, above ` +
          `estimator.options.maxDimension = ${this.options.maxDimension} (it needs ${d} Hessian-vector products ` +
          `and an O(d³) dense solve); raise maxDimension or use 'cg'`,
        'estimator.options.maxDimension',
      );
    }
    let factorization = { cholesky: 0, rank: 0 };
    const estimate = implicitEstimate(context, (hessian, rhs) => {
      const solution = denseSolve(hessian, rhs, {
        maxDimension: this.options.maxDimension,
        symmetrize: this.options.symmetrize,
        rcond: this.options.rcond,
        sizeOptionName: 'estimator.options.maxDimension',
      });
      factorization = { cholesky: solution.factorization === 'cholesky' ? 1 : 0, rank: solution.rank };
      return solution;
    });
    return {
      hypergradient: estimate.hypergradient,
      diagnostics: { ...estimate.diagnostics, ...factorization },
    };
  }
}
