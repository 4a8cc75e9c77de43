import {
  type Estimate,
  type EstimateContext,
  type HypergradientEstimator,
  type PluginState,
  parseOptions,
  z,
} from '@bilevel/core';
import { implicitEstimate } from './implicit';
import { fixedPointIteration } from './linear-solve';
import { WarmStart } from './warm-start';

/** Options of the `fixed-point` estimator (AID-FP). */
export const FixedPointEstimatorOptionsSchema = z
  .object({
    maxIterations: z
      .number()
      .int()
      .positive()
      .default(20)
      .describe('K: fixed-point steps per estimate (one Hessian-vector product each)'),
    stepSize: z
      .number()
      .positive()
      .default(0.1)
      .describe('η in u ← u − η(∇²_yy g·u − ∇_y f); needs η < 2/λ_max(∇²_yy g)'),
    tolerance: z
      .number()
      .min(0)
      .default(0)
      .describe('stop once ‖∇²_yy g·u − ∇_y f‖ ≤ tolerance·‖∇_y f‖ (0: always K steps)'),
    warmStart: z.boolean().default(true).describe("start from the previous outer step's solution u"),
  })
  .strict();
/** Validated options of {@link FixedPointEstimator}. */
export type FixedPointEstimatorOptions = z.output<typeof FixedPointEstimatorOptionsSchema>;

/**
 * AID-FP (Grazzi et al., 2020): fixed-point (Richardson) iteration on the linear system of the implicit
 * function theorem, warm-started from the previous outer step,
 *
 *     u ← u − η (∇²_yy g · u − ∇_y f)   (K steps),        ∇Φ ≈ ∇ₓf − ∇²_xy g · u.
 */
export class FixedPointEstimator implements HypergradientEstimator {
  readonly name = 'fixed-point';
  /** The validated options. */
  readonly options: FixedPointEstimatorOptions;
  private readonly warm = new WarmStart();

  constructor(options: z.input<typeof FixedPointEstimatorOptionsSchema> = {}) {
    this.options = parseOptions(FixedPointEstimatorOptionsSchema, options, 'estimator.options');
  }

  estimate(context: EstimateContext): Estimate {
    const { maxIterations, stepSize, tolerance, warmStart } = this.options;
    return implicitEstimate(
      context,
      (hessian, rhs, init) => fixedPointIteration(hessian, rhs, { init, maxIterations, stepSize, tolerance }),
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
