import {
  type Estimate,
  type EstimateContext,
  type HypergradientEstimator,
  parseOptions,
  z,
} from '@bilevel/core';
import { neumannSeries, linalgOptions } from '@bilevel/linalg';
import { implicitEstimate } from './implicit';

/** Options of the `neumann` estimator (AID-NS). */
export const NeumannEstimatorOptionsSchema = z
  .object({
    terms: linalgOptions
      .terms(20)
      .describe('K: terms of the truncated series (one Hessian-vector product each)'),
    stepSize: linalgOptions
      .stepSize(0.1)
      .describe('η in u = η Σ_{k<K} (I − η∇²_yy g)^k ∇_y f; needs η < 2/λ_max(∇²_yy g)'),
    systemBatches: z
      .enum(['shared', 'fresh'])
      .default('shared')
      .describe(
        "stochastic problems: 'shared' forms every product on one inner minibatch; 'fresh' a new one per term, " +
          'u = η Σ_k Π_{j<k} (I − η∇²_yy g(·; B_j)) ∇_y f (StocBiO)',
      ),
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
 * With `systemBatches: 'fresh'` each term's product is on a new inner minibatch — the stochastic Neumann
 * series of StocBiO (Ji, Yang & Liang, ICML 2021), whose reported residual is then that of the sampled
 * product chain.
 */
export class NeumannEstimator implements HypergradientEstimator {
  readonly name = 'neumann';
  /** The validated options. */
  readonly options: NeumannEstimatorOptions;

  constructor(options: z.input<typeof NeumannEstimatorOptionsSchema> = {}) {
    this.options = parseOptions(NeumannEstimatorOptionsSchema, options, 'estimator.options');
  }

  /** The solve's N and the system's batch; with fresh system batches, one more per term. */
  innerBatchCount(budget: number): number {
    const { systemBatches, terms } = this.options;
    return budget + 1 + (systemBatches === 'fresh' ? Math.max(terms, 1) : 0);
  }

  estimate(context: EstimateContext): Estimate {
    const { terms, stepSize, systemBatches } = this.options;
    return implicitEstimate(
      context,
      (hessian, rhs) => neumannSeries(hessian, rhs, { terms, stepSize }),
      undefined,
      { fresh: systemBatches === 'fresh', products: terms },
    );
  }
}
