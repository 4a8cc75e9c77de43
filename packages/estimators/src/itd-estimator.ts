import * as tf from '@tensorflow/tfjs-core';
import {
  type Estimate,
  type EstimateContext,
  type HypergradientEstimator,
  type TensorTree,
  parseOptions,
  tidy,
  treeDispose,
  treeNorm,
  treeZip,
  z,
} from '@bilevel/core';
import { OracleCallMeter } from './oracle-calls';

/** Options of the `itd` estimator. */
export const ItdEstimatorOptionsSchema = z
  .object({
    steps: z.number().int().positive().default(20).describe('K: unrolled gradient steps on the inner loss'),
    stepSize: z
      .number()
      .positive()
      .default(0.1)
      .describe('α in y_{k+1} = y_k − α∇_y g(x, y_k); needs α < 2/λ_max(∇²_yy g)'),
  })
  .strict();
/** Validated options of {@link ItdEstimator}. */
export type ItdEstimatorOptions = z.output<typeof ItdEstimatorOptionsSchema>;

/**
 * ITD — iterative (reverse-mode) differentiation through K unrolled inner steps (Maclaurin, Duvenaud &
 * Adams, 2015; Franceschi et al., 2017; Ji, Yang & Liang, 2021). It unrolls its **own** gradient-descent
 * steps from the warm start y0 of the context,
 *
 *     y_{k+1} = y_k − α ∇_y g(x, y_k),   k = 0 … K−1   (inner minibatch k on stochastic problems),
 *
 * and differentiates Φ_K(x) = f(x, y_K(x)) exactly by the backward recursion
 *
 *     v_K = ∇_y f(x, y_K),   ∇Φ_K = ∇ₓf(x, y_K) − α Σ_{k=0}^{K−1} ∇²_xy g(x, y_k) v_{k+1},
 *     v_k = (I − α ∇²_yy g(x, y_k)) v_{k+1},
 *
 * with Hessian- and mixed-vector products from the oracles. It declares `usesBaseSolve: false`: the trainer
 * makes no base solve for it, and y_K is the step's inner solution (reported, and the next step's warm
 * start), so the result does not depend on the pipeline's inner solver; it is ∇Φ only in the limit
 * K → ∞. Storing the K iterates costs K copies of y. Cost: K gradients, K − 1 Hessian-vector and K mixed
 * products, one outer gradient.
 */
export class ItdEstimator implements HypergradientEstimator {
  readonly name = 'itd';
  /** ITD unrolls its own steps: the trainer makes no base solve, and y_K is the step's inner solution. */
  readonly usesBaseSolve = false;
  /** The validated options. */
  readonly options: ItdEstimatorOptions;

  constructor(options: z.input<typeof ItdEstimatorOptionsSchema> = {}) {
    this.options = parseOptions(ItdEstimatorOptionsSchema, options, 'estimator.options');
  }

  /** The K unrolled steps read inner minibatches 0 … K − 1. */
  innerBatchCount(): number {
    return this.options.steps;
  }

  estimate(context: Omit<EstimateContext, 'inner'>): Estimate {
    const meter = new OracleCallMeter(context.oracles);
    const { oracles, x } = context;
    const { steps: K, stepSize: alpha } = this.options;
    const { hypergradient, diagnostics, yK } = tidy(() => {
      const batchAt = (k: number) => context.innerBatches?.(k);
      // Forward: the K iterates (each step's temporaries released; the iterates kept until the end).
      const iterates: TensorTree[] = [context.y0];
      let lastGradNorm = NaN;
      for (let k = 0; k < K; k++) {
        const yk = iterates[k];
        const next = tidy(() => {
          const g = oracles.innerGradY(x, yk, batchAt(k));
          const yNext = treeZip(yk, g, (y, gi) => tf.sub(y, tf.mul(gi, alpha)));
          return { yNext, gNorm: k === K - 1 ? treeNorm(g).dataSync()[0] : NaN };
        });
        iterates.push(next.yNext);
        lastGradNorm = next.gNorm;
      }
      const yK = iterates[K];
      const { value, gradX, gradY } = oracles.outerGrads(x, yK, context.outerBatch);
      value.dispose();
      // Backward: v_k and the accumulated x-gradient, one step at a time.
      let v = gradY;
      let acc = gradX;
      for (let k = K - 1; k >= 0; k--) {
        const yk = iterates[k];
        const batch = batchAt(k);
        const vk = v;
        const accK = acc;
        const out = tidy(() => {
          const mixed = oracles.mixedVectorProduct(x, yk, vk, batch);
          const acc2 = treeZip(accK, mixed, (a, m) => tf.sub(a, tf.mul(m, alpha)));
          if (k === 0) return { acc2, v2: null };
          const hv = oracles.hessianVectorProduct(x, yk, vk, batch);
          return { acc2, v2: treeZip(vk, hv, (a, h) => tf.sub(a, tf.mul(h, alpha))) };
        });
        treeDispose(accK);
        acc = out.acc2;
        if (out.v2) {
          treeDispose(vk);
          v = out.v2;
        }
      }
      return {
        hypergradient: acc,
        diagnostics: { unrolledSteps: K, lastInnerGradientNorm: lastGradNorm },
        yK,
      };
    });
    const lastInnerGradientNorm = diagnostics.lastInnerGradientNorm;
    return {
      hypergradient,
      diagnostics: { ...diagnostics, ...meter.diagnostics() },
      inner: { y: yK, iterations: K, gradientNorm: lastInnerGradientNorm, converged: false },
    };
  }
}
