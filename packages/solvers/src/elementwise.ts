import * as tf from '@tensorflow/tfjs-core';
import {
  type Batch,
  type InnerResult,
  type InnerSolveRequest,
  type TensorTree,
  tidy,
  type UpdateRule,
  treeClone,
  treeDispose,
  treeTensors,
} from '@bilevel/core';
import { SolverDivergenceError } from './errors';

/** Why a solve ended. */
export type StopReason = 'tolerance' | 'budget' | 'stalled' | 'observer';

/** {@link InnerResult} plus why the solver stopped. */
export interface SolverResult extends InnerResult {
  /**
   * Why the solver stopped: `tolerance` reached, iteration `budget` spent, `stalled` (a quasi-Newton solver
   * found no acceptable step, even along steepest descent), or stopped by the `observer`.
   */
  readonly stoppedBy: StopReason;
}

/** Stop rules of the elementwise solvers. */
export interface ElementwiseStopOptions {
  /** Iteration budget. */
  readonly maxIterations: number;
  /** Stop once ‖∇_y g‖ ≤ tolerance (0: run the whole budget). */
  readonly tolerance: number;
  /** Read ‖∇_y g‖ every k iterations (each read is a device sync). */
  readonly checkEvery: number;
}

/**
 * ‖g‖ for a tree, or — for a batched solve, whose tensors carry a leading axis of B members — the largest
 * member norm maxᵦ ‖gᵦ‖ (every member must meet the tolerance).
 */
function gradientNorm(g: TensorTree, batched: boolean): tf.Scalar {
  return tf.tidy(() => {
    const tensors = treeTensors(g);
    if (!batched) {
      const parts = tensors.map((t) => tf.sum(tf.square(t)));
      return tf.sqrt(parts.length === 1 ? parts[0] : tf.addN(parts)) as tf.Scalar;
    }
    const parts = tensors.map((t) => tf.sum(tf.reshape(tf.square(t), [t.shape[0], -1]), 1));
    return tf.max(tf.sqrt(parts.length === 1 ? parts[0] : tf.addN(parts))) as tf.Scalar;
  });
}

/**
 * The loop of the elementwise solvers (GD, momentum, Adam): each iteration draws batch k, computes ∇_y g
 * and applies the update rule (core's `UpdateRule`, shared with the outer optimizers) inside `tf.tidy`. The gradient norm is read (one sync) every `checkEvery`
 * iterations and at the last one, for the tolerance and divergence checks. `y0` is never disposed.
 */
export function runElementwise(
  solver: string,
  request: InnerSolveRequest,
  options: ElementwiseStopOptions,
  rule: UpdateRule,
  batched: boolean,
): SolverResult {
  const { oracles, x, y0 } = request;
  if (batched && !oracles.supportsBatchedX) {
    throw new Error(
      `inner solver '${solver}': solveBatched needs a problem with innerLossBatched ('${oracles.problem.name}' has none)`,
    );
  }
  const budget = request.maxIterations ?? options.maxIterations;
  if (!(Number.isInteger(budget) && budget >= 0)) {
    throw new Error(`inner solver '${solver}': maxIterations must be an integer >= 0 (got ${budget})`);
  }
  const grad = (y: TensorTree, batch: Batch | undefined): TensorTree =>
    batched ? oracles.innerGradYBatched(x, y, batch) : oracles.innerGradY(x, y, batch);

  let y = y0;
  let state = tidy(() => rule.init(y0));
  let norm = NaN;
  let stoppedBy: StopReason = 'budget';
  let k = 0;
  const release = (t: TensorTree) => {
    if (t !== y0) treeDispose(t);
  };
  try {
    for (; k < budget; k++) {
      const check = k % options.checkEvery === 0 || k === budget - 1;
      const iteration = k;
      const out = tidy(() => {
        const g = grad(y, request.batches?.(iteration));
        if (check) {
          norm = gradientNorm(g, batched).dataSync()[0];
          if (!Number.isFinite(norm))
            throw new SolverDivergenceError(solver, iteration, 'gradient norm', norm);
          if (norm <= options.tolerance) return null;
        }
        const next = rule.update(y, g, state, iteration);
        return { y: next.params, state: next.state };
      });
      if (!out) {
        stoppedBy = 'tolerance';
        break;
      }
      release(y);
      treeDispose(state);
      y = out.y;
      state = out.state;
    }
  } catch (e) {
    release(y);
    treeDispose(state);
    throw e;
  }
  treeDispose(state);
  const result = y === y0 ? treeClone(y0) : y;
  return {
    y: result,
    iterations: k,
    gradientNorm: norm,
    converged: stoppedBy === 'tolerance',
    stoppedBy,
  };
}
