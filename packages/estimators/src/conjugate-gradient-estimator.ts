import {
  type Estimate,
  type EstimateContext,
  type HypergradientEstimator,
  type PluginState,
  parseOptions,
  z,
} from '@bilevel/core';
import { conjugateGradient, linalgOptions } from '@bilevel/linalg';
import { implicitEstimate } from './implicit';
import { WarmStart } from './warm-start';

/** Options of the `cg` estimator (AID-CG). */
export const ConjugateGradientEstimatorOptionsSchema = z
  .object({
    maxIterations: linalgOptions
      .maxIterations(20)
      .describe('K: most CG steps per estimate (one Hessian-vector product each)'),
    tolerance: linalgOptions
      .tolerance(1e-6)
      .describe('stop once ‖∇²_yy g·u − ∇_y f‖ ≤ tolerance·‖∇_y f‖ (0: always K steps)'),
    warmStart: z.boolean().default(true).describe("start CG from the previous outer step's solution u"),
  })
  .strict();
/** Validated options of {@link ConjugateGradientEstimator}. */
export type ConjugateGradientEstimatorOptions = z.output<typeof ConjugateGradientEstimatorOptionsSchema>;

/**
 * AID-CG (Pedregosa, 2016; Grazzi et al., 2020; Ji, Yang & Liang, 2021): solve the linear system
 *
 *     ∇²_yy g(x, y_N) · u = ∇_y f(x, y_N)
 *
 * with K conjugate-gradient steps, warm-started from the previous outer step's u, then
 * ∇Φ ≈ ∇ₓf − ∇²_xy g · u. Cost per estimate: ≤ K (+1 with a warm start) Hessian-vector products, one mixed
 * product, one outer gradient.
 */
export class ConjugateGradientEstimator implements HypergradientEstimator {
  readonly name = 'cg';
  /** The validated options. */
  readonly options: ConjugateGradientEstimatorOptions;
  private readonly warm = new WarmStart();

  constructor(options: z.input<typeof ConjugateGradientEstimatorOptionsSchema> = {}) {
    this.options = parseOptions(ConjugateGradientEstimatorOptionsSchema, options, 'estimator.options');
  }

  estimate(context: EstimateContext): Estimate {
    const { maxIterations, tolerance, warmStart } = this.options;
    return implicitEstimate(
      context,
      (hessian, rhs, init) => conjugateGradient(hessian, rhs, { init, maxIterations, tolerance }),
      { memory: this.warm, enabled: warmStart },
    );
  }

  getState(): PluginState {
    return this.warm.getState();
  }

  setState(state: PluginState): void {
    this.warm.setState(state);
  }

  dispose(): void {
    this.warm.dispose();
  }
}
