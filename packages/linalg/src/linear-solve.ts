import * as tf from '@tensorflow/tfjs-core';
import { type TensorTree, type TreeSpec, treeFlatten, treeSpec, treeUnflatten } from '@bilevel/core';

/**
 * A linear operator on tensor trees, v ↦ A·v. In the estimators A is the inner Hessian ∇²_yy g(x, y),
 * applied through the oracles' Hessian-vector product.
 */
export type MatVec = (v: TensorTree) => TensorTree;

/** Result of every linear solver (the JAXopt-style shared signature `solve(matvec, b, options)`). */
export interface LinearSolveResult {
  /** The approximate solution of A·x = b (b-shaped). */
  readonly x: TensorTree;
  /** Iterations (CG steps, Neumann terms, fixed-point steps; for the dense solve, the matvecs used). */
  readonly iterations: number;
  /** ‖b − A·x‖ (for CG the recursively updated residual, exact up to rounding). */
  readonly residual: number;
  /** ‖b − A·x‖ / ‖b‖ (0 when b = 0). */
  readonly relativeResidual: number;
  /** Whether the tolerance was reached (or, for the direct solve, the factorization succeeded). */
  readonly converged: boolean;
}

/** A linear solver: every solver of this folder has this shape, so estimators can take one as an argument. */
export type LinearSolver<O> = (matvec: MatVec, b: TensorTree, options?: O) => LinearSolveResult;

/** A tree operator seen as an operator on flat vectors (all tensors of the tree concatenated). */
export interface FlatOperator {
  /** Names and shapes of the tree the flat vectors stand for. */
  readonly spec: TreeSpec;
  /** The operator on a flat vector. */
  apply(v: tf.Tensor1D): tf.Tensor1D;
}

/** Wraps `matvec` so that solvers can do their vector algebra on one flat vector. */
export function flatOperator(matvec: MatVec, like: TensorTree): FlatOperator {
  const spec = treeSpec(like);
  return {
    spec,
    apply(v: tf.Tensor1D): tf.Tensor1D {
      return tf.tidy(() => treeFlatten(matvec(treeUnflatten(v, spec))));
    },
  };
}

/**
 * √Σv² (over `axis`, or all of v), as a tensor: `tf.norm`'s Euclidean norm goes through Abs and Pow, the second a
 * slow broadcasting JS kernel on the host backends.
 */
export function euclideanNorm(v: tf.Tensor, axis?: number, keepDims = false): tf.Tensor {
  return tf.sqrt(tf.sum(tf.square(v), axis, keepDims));
}

/** Euclidean norm of a flat vector, read synchronously. */
export function vectorNorm(v: tf.Tensor): number {
  const n = tf.tidy(() => euclideanNorm(v));
  const value = n.dataSync()[0];
  n.dispose();
  return value;
}

/** Dot product of two flat vectors as a scalar tensor. */
export function vectorDot(a: tf.Tensor, b: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.sum(tf.mul(a, b)) as tf.Scalar);
}

/** Throws when `init` does not have the structure of `b` (warm starts of another shape). */
export function checkInit(init: TensorTree | undefined, b: TensorTree, solver: string): void {
  if (!init) return;
  const sb = treeSpec(b);
  const si = treeSpec(init);
  const same =
    sb.names.length === si.names.length &&
    sb.names.every((n, i) => n === si.names[i] && sb.shapes[i].join(',') === si.shapes[i].join(','));
  if (!same) {
    throw new Error(
      `${solver}: the initial guess has names/shapes ${describe(si)}, the right-hand side b has ${describe(sb)}`,
    );
  }
}

function describe(s: TreeSpec): string {
  return `{${s.names.map((n, i) => `${n}: [${s.shapes[i].join(', ')}]`).join(', ')}}`;
}

/** Throws a clear error when b (the right-hand side) holds NaN or ±Inf. */
export function checkFinite(v: tf.Tensor, what: string): void {
  const bad = tf.tidy(() => tf.sum(tf.cast(tf.logicalNot(tf.isFinite(v)), 'int32')));
  const count = bad.dataSync()[0];
  bad.dispose();
  if (count > 0)
    throw new Error(`${what} has ${count} non-finite entr${count === 1 ? 'y' : 'ies'} (NaN or ±Inf)`);
}
