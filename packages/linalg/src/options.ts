import { z } from '@bilevel/core';

/**
 * The one options schema of the shared numerics. Every option a plugin passes on to this package is defined
 * here once — its type, range and meaning — and a plugin builds its own schema by picking fields:
 *
 * ```ts
 * z.object({ memory: linalgOptions.memory(20), curvatureEpsilon: linalgOptions.curvatureEpsilon() })
 * ```
 *
 * A field builder takes the plugin's default (where plugins differ) and returns a fresh zod schema, to which
 * the plugin may give a more specific `.describe()` text; the range checks stay the ones below. The pair
 * memories validate their own options with {@link QuasiNewtonMemoryOptionsSchema}, made of the same fields.
 */
export const linalgOptions = {
  /** Curvature pairs kept by a limited-memory operator (an integer m ≥ 1). */
  memory: (defaultValue = 10) =>
    z.number().int().min(1).default(defaultValue).describe('curvature pairs kept (m ≥ 1)'),
  /** H₀ = γI: `'auto'` (γ from the newest pair) or a positive number. */
  initialScaling: () =>
    z
      .union([z.literal('auto'), z.number().positive().finite()])
      .default('auto' as 'auto' | number)
      .describe("H₀ = γI: 'auto' takes γ = sᵀr / rᵀr of the newest pair, a number c gives H₀ = c·I"),
  /** Curvature test: a pair (s, r) is used only when sᵀr > ε (ε ≥ 0, finite). */
  curvatureEpsilon: () =>
    z.number().min(0).finite().default(1e-10).describe('curvature test: a pair is kept only when sᵀr > ε'),
  /** SR1 skip rule constant c in [0, 1). */
  sr1SkipThreshold: () =>
    z
      .number()
      .min(0)
      .lt(1)
      .default(1e-8)
      .describe('SR1 skip rule: update only when |sᵀ(r − Bs)| ≥ c‖s‖‖r − Bs‖'),
  /** Iteration budget of an iterative solver (an integer ≥ 1). */
  maxIterations: (defaultValue: number) =>
    z
      .number()
      .int()
      .positive()
      .default(defaultValue)
      .describe('most iterations (one matrix-vector product each)'),
  /** Relative residual tolerance ‖b − Ax‖ ≤ tolerance·‖b‖ (0: run the whole budget). */
  tolerance: (defaultValue: number) =>
    z
      .number()
      .min(0)
      .default(defaultValue)
      .describe('stop once ‖b − A·x‖ ≤ tolerance·‖b‖ (0: the whole budget)'),
  /** Step η of the Neumann series and the fixed-point iteration (η > 0; they converge for η < 2/λ_max). */
  stepSize: (defaultValue: number) =>
    z.number().positive().default(defaultValue).describe('step η; converges for 0 < η < 2/λ_max(A)'),
  /** Terms K of a truncated Neumann series (an integer ≥ 1). */
  terms: (defaultValue: number) =>
    z.number().int().positive().default(defaultValue).describe('K: terms of the truncated series'),
  /** Largest number of unknowns of a dense solve (an integer ≥ 1). */
  maxDimension: (defaultValue: number) =>
    z.number().int().positive().default(defaultValue).describe('refuse systems with more unknowns'),
  /** Relative eigenvalue cutoff of a dense symmetric solve, in [0, 1). */
  rcond: (defaultValue: number) =>
    z
      .number()
      .min(0)
      .lt(1)
      .default(defaultValue)
      .describe('eigenvalues with |λ| ≤ rcond·max|λ| count as zero'),
};

/** Options of the limited-memory pair operators ({@link LbfgsMemory}, {@link Sr1Memory}). */
export interface QuasiNewtonMemoryOptions {
  /** Pairs kept (m ≥ 1); the oldest is dropped when a new one is accepted into a full memory. */
  memory: number;
  /** 'auto': H₀ = γI with γ = sᵀr / rᵀr of the newest pair; a number c: H₀ = c·I. */
  initialScaling: 'auto' | number;
  /** Keep a pair only when sᵀr > ε (qNBO's curvature test). */
  curvatureEpsilon: number;
  /** SR1 skip rule |sᵀ(r − Bs)| ≥ c‖s‖‖r − Bs‖ (c default 1e-8); ignored by L-BFGS. */
  sr1SkipThreshold?: number;
}

/** Options of the pair memories, as a schema: the fields of {@link linalgOptions} they read. */
export const QuasiNewtonMemoryOptionsSchema = z
  .object({
    memory: linalgOptions.memory(),
    initialScaling: linalgOptions.initialScaling(),
    curvatureEpsilon: linalgOptions.curvatureEpsilon(),
    sr1SkipThreshold: linalgOptions.sr1SkipThreshold(),
  })
  .strict();

/**
 * The defaults of {@link QuasiNewtonMemoryOptions}, read off {@link QuasiNewtonMemoryOptionsSchema}: 10 pairs,
 * `'auto'` scaling, ε = 1e-10, SR1 skip threshold 1e-8.
 */
export const DEFAULT_QUASI_NEWTON_MEMORY_OPTIONS: Required<QuasiNewtonMemoryOptions> =
  QuasiNewtonMemoryOptionsSchema.parse({});
