import * as tf from '@tensorflow/tfjs-core';
import {
  type Estimate,
  type EstimateContext,
  type HypergradientEstimator,
  parseOptions,
  tidy,
  treeAxpy,
  treeDot,
  treeNormSquared,
  treeSub,
  treeZip,
  z,
} from '@bilevel/core';
import { OracleCallMeter } from './oracle-calls';

/** Options of the `bome` estimator. */
export const BomeEstimatorOptionsSchema = z
  .object({
    steps: z
      .number()
      .int()
      .positive()
      .default(10)
      .describe('T: gradient steps θ ← θ − α∇_θ g(x, θ) from the current y, the value-function estimate'),
    stepSize: z
      .number()
      .positive()
      .default(0.1)
      .describe('α of the T steps on θ; needs α < 2/L with L the smoothness of g in y'),
    eta: z
      .number()
      .positive()
      .default(0.5)
      .describe('η in the control barrier φ = η‖∇q̂‖² that sets the multiplier λ'),
    yStepSize: z
      .number()
      .positive()
      .default(0.1)
      .describe('ξ in y ← y − ξ(∇_y f + λ∇_y q̂); give the outer optimizer the same step (gd, learningRate ξ) for BOME as published'),
  })
  .strict();
/** Validated options of {@link BomeEstimator}. */
export type BomeEstimatorOptions = z.output<typeof BomeEstimatorOptionsSchema>;

/**
 * BOME (Liu, Ye, Wright, Stone & Liu, "BOME! Bilevel Optimization Made Easy: A Simple First-Order
 * Approach", NeurIPS 2022): a fully first-order method on the value-function form
 * min_{x,y} f(x, y) s.t. q(x, y) = g(x, y) − min_θ g(x, θ) ≤ 0. At each outer step, from the current (x, y):
 *
 *     θ₀ = y,  θ_{t+1} = θ_t − α ∇_θ g(x, θ_t)  (t < T),     q̂(x, y) = g(x, y) − g(x, θ_T),
 *     ∇q̂ = (∇ₓg(x, y) − ∇ₓg(x, θ_T),  ∇_y g(x, y)),            φ = η ‖∇q̂‖²,
 *     λ = max((φ − ⟨∇f, ∇q̂⟩) / ‖∇q̂‖², 0),                     (x, y) ← (x, y) − ξ (∇f + λ ∇q̂),
 *
 * with ∇f = (∇ₓf, ∇_y f) at (x, y) and θ_T held fixed. BOME moves x and y together, so this estimator
 * declares `usesBaseSolve: false`: it starts from the step's warm start y (the previous y), returns the
 * x-block ∇ₓf + λ∇ₓq̂ as the hypergradient — for the outer optimizer, whose step plays ξ on x — and its own
 * y-update as the step's inner solution. No Hessian- or Jacobian-vector product is formed. On problems with
 * batch samplers the T steps on θ take inner minibatches 0 … T − 1 and both g terms of ∇q̂ minibatch T; f is
 * taken on the step's outer minibatch.
 */
export class BomeEstimator implements HypergradientEstimator {
  readonly name = 'bome';
  /** BOME updates y itself; the trainer makes no base inner solve for it. */
  readonly usesBaseSolve = false;
  /** The validated options. */
  readonly options: BomeEstimatorOptions;

  constructor(options: z.input<typeof BomeEstimatorOptionsSchema> = {}) {
    this.options = parseOptions(BomeEstimatorOptionsSchema, options, 'estimator.options');
  }

  /** The T steps on θ and the batch of ∇q̂. */
  innerBatchCount(): number {
    return this.options.steps + 1;
  }

  estimate(context: Omit<EstimateContext, 'inner'>): Estimate {
    const { steps: T, stepSize: alpha, eta, yStepSize: xi } = this.options;
    const { oracles, x } = context;
    const y = context.y0;
    const meter = new OracleCallMeter(oracles);
    const out = tidy(() => {
      // The value-function estimate: T gradient steps on θ from y (each step's temporaries released).
      let theta = y;
      for (let t = 0; t < T; t++) {
        const prev = theta;
        theta = tidy(() =>
          treeZip(prev, oracles.innerGradY(x, prev, context.innerBatches?.(t)), (a, g) => tf.sub(a, tf.mul(g, alpha))),
        );
        if (prev !== y) for (const tensor of Object.values(prev)) tensor.dispose();
      }
      const batch = context.innerBatches?.(T);
      const qx = treeSub(oracles.innerGradX(x, y, batch), oracles.innerGradX(x, theta, batch));
      const qy = oracles.innerGradY(x, y, batch);
      const { value, gradX: fx, gradY: fy } = oracles.outerGrads(x, y, context.outerBatch);
      value.dispose();
      // λ from the control barrier, on the joint (x, y) vectors; λ = 0 where ∇q̂ vanishes (y is optimal).
      // ‖∇q̂‖², ⟨∇f, ∇q̂⟩ and ‖∇_y q̂‖² in one read.
      const qyy = treeNormSquared(qy);
      const [qq, fq, qySquared] = tf
        .stack([tf.add(treeNormSquared(qx), qyy), tf.add(treeDot(fx, qx), treeDot(fy, qy)), qyy])
        .dataSync();
      const lambda = qq > 0 ? Math.max((eta * qq - fq) / qq, 0) : 0;
      const hypergradient = treeAxpy(lambda, qx, fx);
      const direction = treeAxpy(lambda, qy, fy);
      const yNext = treeAxpy(-xi, direction, y);
      const innerGradientNorm = Math.sqrt(qySquared);
      return { hypergradient, yNext, lambda, qq, innerGradientNorm };
    });
    return {
      hypergradient: out.hypergradient,
      diagnostics: {
        multiplier: out.lambda,
        valueGapGradientNorm: Math.sqrt(out.qq),
        ...meter.diagnostics(),
      },
      inner: { y: out.yNext, iterations: T, gradientNorm: out.innerGradientNorm, converged: false },
    };
  }
}
