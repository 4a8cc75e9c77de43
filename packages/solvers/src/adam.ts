import * as tf from '@tensorflow/tfjs-core';
import {
  type InnerSolver,
  type InnerSolveRequest,
  parseOptions,
  type TensorTree,
  treeNames,
} from '@bilevel/core';
import { z } from 'zod';
import { type ElementwiseRule, runElementwise, type SolverResult } from './elementwise';
import { checkEveryShape, stopOptionShape } from './options';

/** Options of the `adam` inner solver. */
export const AdamSolverOptionsSchema = z
  .object({
    learningRate: z.number().positive().default(0.001).describe('step size α'),
    beta1: z.number().min(0).lt(1).default(0.9).describe('decay β₁ of the first-moment estimate'),
    beta2: z.number().min(0).lt(1).default(0.999).describe('decay β₂ of the second-moment estimate'),
    epsilon: z.number().positive().default(1e-8).describe('ε added to √v̂'),
    ...stopOptionShape,
    ...checkEveryShape,
  })
  .strict();
/** Validated options of {@link AdamSolver}. */
export type AdamSolverOptions = z.output<typeof AdamSolverOptionsSchema>;
/** Options as given (every field optional; defaults filled in). */
export type AdamSolverInput = z.input<typeof AdamSolverOptionsSchema>;

/**
 * Adam (Kingma & Ba, ICLR 2015) on the inner problem, with bias correction:
 *
 *     m ← β₁m + (1 − β₁)∇,   v ← β₂v + (1 − β₂)∇²,   y ← y − α m̂ / (√v̂ + ε),
 *     m̂ = m / (1 − β₁ᵏ),     v̂ = v / (1 − β₂ᵏ).
 *
 * The ESJ code solves its stochastic inner problems with it (Sow, Ji & Liang, NeurIPS 2022). Each solve
 * starts with fresh moments. Elementwise, so stacked problems are solved together by `solveBatched`.
 */
export class AdamSolver implements InnerSolver {
  readonly name = 'adam';
  readonly elementwise = true;

  /** The validated options. */
  readonly options: AdamSolverOptions;

  /** Validates `options` (a ConfigError names a bad field) and fills in the defaults. */
  constructor(options: AdamSolverInput = {}) {
    this.options = parseOptions(AdamSolverOptionsSchema, options, 'adam');
  }

  get maxIterations(): number {
    return this.options.maxIterations;
  }

  private rule(): ElementwiseRule {
    const { learningRate: lr, beta1: b1, beta2: b2, epsilon } = this.options;
    return {
      init: (y) => {
        const s: Record<string, tf.Tensor> = {};
        for (const n of treeNames(y)) {
          s[`m/${n}`] = tf.zerosLike(y[n]);
          s[`v/${n}`] = tf.zerosLike(y[n]);
        }
        return s;
      },
      step: (y, g, state, k) => {
        const c1 = 1 - Math.pow(b1, k + 1);
        const c2 = 1 - Math.pow(b2, k + 1);
        const next: Record<string, tf.Tensor> = {};
        const yNext: Record<string, tf.Tensor> = {};
        for (const n of treeNames(y)) {
          const m = tf.add(tf.mul(state[`m/${n}`], b1), tf.mul(g[n], 1 - b1));
          const v = tf.add(tf.mul(state[`v/${n}`], b2), tf.mul(tf.square(g[n]), 1 - b2));
          next[`m/${n}`] = m;
          next[`v/${n}`] = v;
          const update = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), epsilon));
          yNext[n] = tf.sub(y[n], tf.mul(update, lr));
        }
        return { y: yNext as TensorTree, state: next };
      },
    };
  }

  solve(request: InnerSolveRequest): SolverResult {
    return runElementwise(this.name, request, this.options, this.rule(), false);
  }

  solveBatched(request: InnerSolveRequest): SolverResult {
    return runElementwise(this.name, request, this.options, this.rule(), true);
  }
}
