import { adamRule, type InnerSolver, type InnerSolveRequest, parseOptions, type UpdateRule } from '@bilevel/core';
import { z } from 'zod';
import { runElementwise, type SolverResult } from './elementwise';
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
 * starts with fresh moments. The update is core's `adamRule`, the same as the outer `adam` optimizer's. Elementwise, so stacked problems are solved together by `solveBatched`.
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

  private rule(): UpdateRule {
    return adamRule(this.options);
  }

  solve(request: InnerSolveRequest): SolverResult {
    return runElementwise(this.name, request, this.options, this.rule(), false);
  }

  solveBatched(request: InnerSolveRequest): SolverResult {
    return runElementwise(this.name, request, this.options, this.rule(), true);
  }
}
