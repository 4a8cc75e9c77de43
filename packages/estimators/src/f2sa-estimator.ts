import {
  type Estimate,
  type EstimateContext,
  type HypergradientEstimator,
  type PluginState,
  type TensorTree,
  parseOptions,
  tidy,
  treeAdd,
  treeAxpy,
  treeClone,
  treeDispose,
  treeNormSquared,
  treeScale,
  treeSub,
  z,
} from '@bilevel/core';
import { freshInnerBatches, linearSystemBatch } from './implicit';
import { OracleCallMeter } from './oracle-calls';
import { WarmStart } from './warm-start';

/** Options of the `f2sa` estimator (fully first-order penalty method). */
export const F2saEstimatorOptionsSchema = z
  .object({
    multiplier: z
      .number()
      .positive()
      .default(10)
      .describe('λ₀: penalty multiplier at outer step 0 (the estimate is biased by O(1/λ))'),
    multiplierGrowth: z
      .number()
      .min(0)
      .default(0)
      .describe('δ: λ grows by δ every outer step, λ_k = min(λ₀ + δk, λ_max)'),
    maxMultiplier: z.number().positive().default(1e4).describe('λ_max: upper bound of the multiplier'),
    steps: z
      .number()
      .int()
      .positive()
      .default(10)
      .describe('T: gradient steps on the penalized variable per estimate (first-order oracles only)'),
    stepSize: z
      .number()
      .positive()
      .default(0.1)
      .describe(
        'α in w ← w − α(∇_y f(x, w)/λ + ∇_y g(x, w)); needs α < 2/L with L the smoothness of g in y (plus 1/λ of f)',
      ),
    warmStart: z
      .boolean()
      .default(true)
      .describe("start the penalized variable from the previous outer step's (else from the inner solution y_N)"),
  })
  .strict();
/** Validated options of {@link F2saEstimator}. */
export type F2saEstimatorOptions = z.output<typeof F2saEstimatorOptionsSchema>;

/** Checkpoint form of the `f2sa` estimator: the kept penalized variable. */
export interface F2saState {
  /** The penalized variable w of the previous outer step, or null. */
  readonly warmStart: ReturnType<WarmStart['getState']>['warmStart'];
}

/**
 * F2SA (Kwon, Kwon, Wright & Nowak, "A Fully First-Order Method for Stochastic Bilevel Optimization",
 * ICML 2023): the hypergradient from first-order oracles only, through the penalty (Lagrangian) form
 *
 *     L_λ(x, w, y) = f(x, w) + λ (g(x, w) − g(x, y)),      y ≈ y*(x) (the inner solver's y_N),
 *
 * whose minimiser in w is w*_λ(x) = argmin_w f(x, w)/λ + g(x, w). Per outer step this estimator takes T
 * gradient steps on w (warm-started across outer steps),
 *
 *     w ← w − α (∇_y f(x, w)/λ + ∇_y g(x, w)),
 *
 * and returns ∇ₓL_λ = ∇ₓf(x, w) + λ (∇ₓg(x, w) − ∇ₓg(x, y_N)), which tends to ∇Φ(x) with an error of
 * O(1/λ) as w → w*_λ and y_N → y*(x) (Kwon et al., Lemma 3.1); the multiplier grows over outer steps,
 * λ_k = min(λ₀ + δk, λ_max), as in the paper's schedule. No Hessian- or Jacobian-vector product is formed.
 * On problems with batch samplers (F2SA proper, stochastic): the T steps on w take fresh inner minibatches
 * (N + 1 + t, after the inner solve's N), as the steps on y do; both ∇ₓg terms use minibatch N; f is taken on
 * the step's outer minibatch.
 */
export class F2saEstimator implements HypergradientEstimator {
  readonly name = 'f2sa';
  /** The validated options. */
  readonly options: F2saEstimatorOptions;
  private readonly warm = new WarmStart();

  constructor(options: z.input<typeof F2saEstimatorOptionsSchema> = {}) {
    this.options = parseOptions(F2saEstimatorOptionsSchema, options, 'estimator.options');
    if (this.options.maxMultiplier < this.options.multiplier) {
      throw new Error(
        `estimator.options.maxMultiplier (${this.options.maxMultiplier}) must be at least multiplier (${this.options.multiplier})`,
      );
    }
  }

  /** λ_k = min(λ₀ + δk, λ_max) at outer step k. */
  multiplierAt(step: number): number {
    const { multiplier, multiplierGrowth, maxMultiplier } = this.options;
    return Math.min(multiplier + multiplierGrowth * step, maxMultiplier);
  }

  /** The solve's N, the shared batch N and one fresh batch per step on w. */
  innerBatchCount(budget: number): number {
    return budget + 1 + Math.max(this.options.steps, 1);
  }

  estimate(context: EstimateContext): Estimate {
    const { steps, stepSize, warmStart } = this.options;
    const { x, oracles, inner } = context;
    const lambda = this.multiplierAt(context.step);
    const meter = new OracleCallMeter(oracles);
    // The T steps on w see fresh inner minibatches, as the inner solver's steps on y do, so that both track
    // their full-data minimisers; the two ∇ₓg terms share minibatch N.
    const stepBatches = freshInnerBatches(context, steps);
    const gBatch = linearSystemBatch(context);
    const fBatch = context.outerBatch;
    const { hypergradient, gap } = tidy(() => {
      const start = warmStart ? this.warm.get(inner.y) : null;
      let w: TensorTree = treeClone(start ?? inner.y);
      for (let t = 0; t < steps; t++) {
        const next = tidy(() => {
          const { value, gradX, gradY } = oracles.outerGrads(x, w, fBatch);
          value.dispose();
          treeDispose(gradX);
          const batch = stepBatches ? stepBatches[t] : gBatch;
          const direction = treeAxpy(1 / lambda, gradY, oracles.innerGradY(x, w, batch));
          return treeAxpy(-stepSize, direction, w);
        });
        treeDispose(w);
        w = next;
      }
      if (warmStart) this.warm.set(w);
      const { value, gradX: fx } = oracles.outerGrads(x, w, fBatch);
      value.dispose();
      const penalty = treeSub(oracles.innerGradX(x, w, gBatch), oracles.innerGradX(x, inner.y, gBatch));
      const gapSquared = treeNormSquared(treeSub(w, inner.y)).dataSync()[0];
      return { hypergradient: treeAdd(fx, treeScale(penalty, lambda)), gap: Math.sqrt(gapSquared) };
    });
    return {
      hypergradient,
      diagnostics: { multiplier: lambda, penalizedGap: gap, ...meter.diagnostics() },
    };
  }

  getState(): PluginState {
    return this.warm.getState() satisfies F2saState;
  }

  setState(state: PluginState): void {
    this.warm.setState(state);
  }

  dispose(): void {
    this.warm.dispose();
  }
}
