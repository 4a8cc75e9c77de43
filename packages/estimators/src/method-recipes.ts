import type { ResolvedPluginRef } from '@bilevel/core';

/** A published bilevel method written as a combination of this library's plugins. */
export interface MethodRecipe {
  /** Short name, e.g. `soba`. */
  readonly name: string;
  /** The method and its paper. */
  readonly method: string;
  /** The inner solver (null: the estimator moves y itself and no inner solve is made). */
  readonly innerSolver: ResolvedPluginRef | null;
  /** The hypergradient estimator. */
  readonly estimator: ResolvedPluginRef;
  /** The outer optimizer. */
  readonly outerOptimizer: ResolvedPluginRef;
  /** What to know when using it (which problems, which settings matter). */
  readonly note: string;
}

/**
 * The field's methods as plugin combinations (the settings of `docs/algorithms.md`), shown by
 * `bilevel list methods`; copy one into a config's `methods` entry. Step sizes are placeholders to tune per
 * problem. The stochastic methods need a problem with minibatch samplers (e.g. `hyper-cleaning` with
 * `batchSize`).
 */
export const METHOD_RECIPES: readonly MethodRecipe[] = [
  {
    name: 'soba',
    method: 'SOBA (Dagréou, Ablin, Vaiter & Moreau, NeurIPS 2022)',
    innerSolver: { name: 'gd', options: { maxIterations: 1, stepSize: 0.1 } },
    estimator: { name: 'fixed-point', options: { maxIterations: 1, stepSize: 0.1, warmStart: true, systemBatches: 'fresh' } },
    outerOptimizer: { name: 'gd', options: { learningRate: 0.01 } },
    note: 'one stochastic step each on y, on the linear system u and on x; run in sequence here, SOBA updates all three at once',
  },
  {
    name: 'saba',
    method: 'SABA (Dagréou, Ablin, Vaiter & Moreau, NeurIPS 2022)',
    innerSolver: null,
    estimator: { name: 'saba', options: { stepSize: 0.1 } },
    outerOptimizer: { name: 'gd', options: { learningRate: 0.01 } },
    note: 'SOBA with SAGA memories over fixed minibatches (problem fixedBatches: e.g. hyper-cleaning with batchSize); moves y and v itself, one step each per outer step; memory (n/batchSize) × (2·dim y + dim x) floats',
  },
  {
    name: 'amigo',
    method: 'AmIGO (Arbel & Mairal, ICLR 2022)',
    innerSolver: { name: 'gd', options: { maxIterations: 10, stepSize: 0.1 } },
    estimator: { name: 'fixed-point', options: { maxIterations: 10, stepSize: 0.1, warmStart: true, systemBatches: 'fresh' } },
    outerOptimizer: { name: 'gd', options: { learningRate: 0.01 } },
    note: 'stochastic inner and linear-system solves, both warm-started across outer steps',
  },
  {
    name: 'stocbio',
    method: 'StocBiO (Ji, Yang & Liang, ICML 2021)',
    innerSolver: { name: 'gd', options: { maxIterations: 10, stepSize: 0.1 } },
    estimator: { name: 'neumann', options: { terms: 10, stepSize: 0.1, systemBatches: 'fresh' } },
    outerOptimizer: { name: 'gd', options: { learningRate: 0.01 } },
    note: 'stochastic Neumann series, each term on its own minibatch',
  },
  {
    name: 'f2sa',
    method: 'F2SA (Kwon, Kwon, Wright & Nowak, ICML 2023)',
    innerSolver: { name: 'gd', options: { maxIterations: 10, stepSize: 0.1 } },
    estimator: { name: 'f2sa', options: { multiplier: 10, multiplierGrowth: 1, steps: 10, stepSize: 0.1 } },
    outerOptimizer: { name: 'gd', options: { learningRate: 0.01 } },
    note: 'first-order only; bias O(1/λ), λ grows over outer steps',
  },
  {
    name: 'bome',
    method: 'BOME (Liu, Ye, Wright, Stone & Liu, NeurIPS 2022)',
    innerSolver: null,
    estimator: { name: 'bome', options: { steps: 10, stepSize: 0.1, eta: 0.5, yStepSize: 0.05 } },
    outerOptimizer: { name: 'gd', options: { learningRate: 0.05 } },
    note: 'first-order; moves y itself (no inner solve: any innerSolver entry is unused); outer learningRate = yStepSize ξ; small ξ, or the iterates cycle',
  },
  {
    name: 'esj',
    method: 'ESJ / ESJ-S, also PZOBO (Sow, Ji & Liang, NeurIPS 2022)',
    innerSolver: { name: 'gd', options: { maxIterations: 50, stepSize: 0.1 } },
    estimator: { name: 'es', options: { directions: 10, smoothing: 0.01 } },
    outerOptimizer: { name: 'gd', options: { learningRate: 0.01 } },
    note: 'Hessian-free; ESJ-S on a problem with minibatch samplers',
  },
  {
    name: 'qnbo',
    method: 'qNBO (Fang et al., ICLR 2025)',
    innerSolver: { name: 'lbfgs', options: { maxIterations: 20 } },
    estimator: { name: 'qnbo', options: { update: 'bfgs' } },
    outerOptimizer: { name: 'gd', options: { learningRate: 0.01 } },
    note: "quasi-Newton inner solve and subroutine B; mode 'reuse-inner' reuses the solver's pairs",
  },
  {
    name: 'aid-cg',
    method: 'AID-CG (Pedregosa, ICML 2016; Grazzi et al., ICML 2020)',
    innerSolver: { name: 'gd', options: { maxIterations: 50, stepSize: 0.1 } },
    estimator: { name: 'cg', options: { maxIterations: 10 } },
    outerOptimizer: { name: 'gd', options: { learningRate: 0.01 } },
    note: 'implicit differentiation, conjugate gradient, warm-started',
  },
];
