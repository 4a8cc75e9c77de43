import {
  type Estimate,
  type EstimateContext,
  type HypergradientEstimator,
  type PluginState,
  parseOptions,
  z,
} from '@bilevel/core';
import { fixedPointIteration, linalgOptions } from '@bilevel/linalg';
import { implicitEstimate } from './implicit';
import { WarmStart } from './warm-start';

/** Options of the `fixed-point` estimator (AID-FP). */
export const FixedPointEstimatorOptionsSchema = z
  .object({
    maxIterations: linalgOptions
      .maxIterations(20)
      .describe('K: fixed-point steps per estimate (one Hessian-vector product each)'),
    stepSize: linalgOptions
      .stepSize(0.1)
      .describe('η in u ← u − η(∇²_yy g·u − ∇_y f); needs η < 2/λ_max(∇²_yy g)'),
    tolerance: linalgOptions
      .tolerance(0)
      .describe('stop once ‖∇²_yy g·u − ∇_y f‖ ≤ tolerance·‖∇_y f‖ (0: always K steps)'),
    warmStart: z.boolean().default(true).describe("start from the previous outer step's solution u"),
    systemBatches: z
      .enum(['shared', 'fresh'])
      .default('shared')
      .describe(
        "stochastic problems: 'shared' forms every Hessian-vector product on one inner minibatch; 'fresh' draws " +
          'a new one per step, u ← u − η(∇²_yy g(·; B_k)·u − ∇_y f) (SOBA with K = 1, AmIGO)',
      ),
  })
  .strict();
/** Validated options of {@link FixedPointEstimator}. */
export type FixedPointEstimatorOptions = z.output<typeof FixedPointEstimatorOptionsSchema>;

/**
 * AID-FP (Grazzi et al., 2020): fixed-point (Richardson) iteration on the linear system of the implicit
 * function theorem, warm-started from the previous outer step,
 *
 *     u ← u − η (∇²_yy g · u − ∇_y f)   (K steps),        ∇Φ ≈ ∇ₓf − ∇²_xy g · u.
 *
 * With `systemBatches: 'fresh'` each step forms its product on a new inner minibatch; with K = 1, a one-step
 * inner solver and minibatches this is SOBA (Dagréou, Ablin, Vaiter & Moreau, NeurIPS 2022) in its sequential
 * form (y, then v, then x), and with K, N > 1 and warm starts AmIGO (Arbel & Mairal, ICLR 2022).
 */
export class FixedPointEstimator implements HypergradientEstimator {
  readonly name = 'fixed-point';
  /** The validated options. */
  readonly options: FixedPointEstimatorOptions;
  private readonly warm = new WarmStart();

  constructor(options: z.input<typeof FixedPointEstimatorOptionsSchema> = {}) {
    this.options = parseOptions(FixedPointEstimatorOptionsSchema, options, 'estimator.options');
  }

  /** The solve's N and the system's batch; with fresh system batches, one more per iteration. */
  innerBatchCount(budget: number): number {
    const { systemBatches, maxIterations } = this.options;
    return budget + 1 + (systemBatches === 'fresh' ? Math.max(maxIterations, 1) : 0);
  }

  estimate(context: EstimateContext): Estimate {
    const { maxIterations, stepSize, tolerance, warmStart, systemBatches } = this.options;
    const fresh = systemBatches === 'fresh';
    return implicitEstimate(
      context,
      (hessian, rhs, init) =>
        fixedPointIteration(hessian, rhs, {
          init,
          maxIterations,
          stepSize,
          tolerance,
          operatorVaries: fresh,
        }),
      { memory: this.warm, enabled: warmStart },
      { fresh, products: maxIterations },
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
