import type * as tf from '@tensorflow/tfjs-core';
import type { CurvatureMemory } from '@bilevel/core';

/**
 * A quasi-Newton operator H ≈ [∇²g]⁻¹ that is built pair by pair (L-BFGS, SR1, dense BFGS): core's
 * `CurvatureMemory` contract plus the operations a quasi-Newton iteration needs. Whoever creates one owns it
 * and disposes it; an inner solver hands the memory of a solve over to the result (`InnerResult.curvature`).
 */
export interface InverseHessianOperator extends CurvatureMemory {
  /** Offers a pair (s, r); returns whether it was used. Copies are kept. */
  push(s: tf.Tensor1D, r: tf.Tensor1D): boolean;
  /** H·v on flat vectors. */
  applyFlat(v: tf.Tensor1D): tf.Tensor1D;
  /** Drops every pair (H back to H₀). */
  clear(): void;
  /** Number of pairs held (for dense BFGS, the updates applied). */
  readonly size: number;
}
