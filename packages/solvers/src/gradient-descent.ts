import {
  type InnerSolver,
  type InnerSolveRequest,
  momentumRule,
  parseOptions,
  type UpdateRule,
} from '@bilevel/core';
import { z } from 'zod';
import { runElementwise, type SolverResult } from './elementwise';
import { checkEveryShape, stopOptionShape } from './options';

/** Options of the `gd` inner solver. */
export const GradientDescentSolverOptionsSchema = z
  .object({
    stepSize: z.number().positive().default(0.1).describe('step size α in y ← y − α∇_y g'),
    momentum: z.number().min(0).lt(1).default(0).describe('heavy-ball β in v ← βv + ∇_y g (0: plain GD)'),
    nesterov: z.boolean().default(false).describe("Nesterov's look-ahead: y ← y − α(∇_y g + βv)"),
    ...stopOptionShape,
    ...checkEveryShape,
  })
  .strict();
/** Validated options of {@link GradientDescentSolver}. */
export type GradientDescentSolverOptions = z.output<typeof GradientDescentSolverOptionsSchema>;
/** Options as given (every field optional; defaults filled in). */
export type GradientDescentSolverInput = z.input<typeof GradientDescentSolverOptionsSchema>;

/**
 * Gradient descent on the inner problem, y ← y − α∇_y g(x, y), optionally with heavy-ball momentum
 * (Polyak, 1964): v ← βv + ∇_y g, y ← y − αv, or Nesterov's variant y ← y − α(∇_y g + βv) (the form of
 * Sutskever et al., 2013). The inner solver of ESJ (Sow, Ji & Liang, NeurIPS 2022) and of the AID/ITD
 * baselines. The update is core's `momentumRule`, the same as the outer `gd` / `momentum` optimizers'. Elementwise, so stacked problems are solved together by {@link GradientDescentSolver.solveBatched}.
 */
export class GradientDescentSolver implements InnerSolver {
  readonly name = 'gd';
  readonly elementwise = true;

  /** The validated options. */
  readonly options: GradientDescentSolverOptions;

  /** Validates `options` (a ConfigError names a bad field) and fills in the defaults. */
  constructor(options: GradientDescentSolverInput = {}) {
    this.options = parseOptions(GradientDescentSolverOptionsSchema, options, 'gd');
  }

  get maxIterations(): number {
    return this.options.maxIterations;
  }

  private rule(): UpdateRule {
    const { stepSize, momentum, nesterov } = this.options;
    return momentumRule({ learningRate: stepSize, momentum, nesterov });
  }

  solve(request: InnerSolveRequest): SolverResult {
    return runElementwise(this.name, request, this.options, this.rule(), false);
  }

  solveBatched(request: InnerSolveRequest): SolverResult {
    return runElementwise(this.name, request, this.options, this.rule(), true);
  }
}
