import * as tf from '@tensorflow/tfjs-core';
import { matVec, matTVec, randomOrthogonal, spectralMatrix } from '../float64';
import type { BilevelProblem } from '../problem';
import { Random } from '../random';
import type { TensorTree } from '../tree';

/** Options of {@link QuadraticFixture}. */
export interface QuadraticFixtureOptions {
  /** Inner dimension. */
  readonly innerDimension: number;
  /** Outer dimension (defaults to the inner one). */
  readonly outerDimension?: number;
  /** Condition number κ of A; eigenvalues log-spaced on [1, κ]. */
  readonly conditionNumber?: number;
  /** Seed of A's eigenvectors, B, z and t (default 0). */
  readonly seed?: number;
}

/**
 * A general quadratic bilevel problem with exact float64 references, for testing solvers, oracles and
 * estimators against closed forms:
 *
 *     g(x, y) = ½ yᵀAy − yᵀBx,       f(x, y) = ½‖x − z‖² + ½‖y − t‖²
 *     y*(x) = A⁻¹Bx,                  ∇Φ(x) = (x − z) + BᵀA⁻¹(y*(x) − t)
 *     ∇²_yy g = A,                    ∇²_xy g · v = −Bᵀv
 */
export class QuadraticFixture implements BilevelProblem {
  readonly name = 'quadratic-fixture';
  /** Inner dimension (size of y). */
  readonly dy: number;
  /** Outer dimension (size of x). */
  readonly dx: number;
  /** Dense float64 references (row-major). */
  readonly a: Float64Array;
  /** A⁻¹. */
  readonly aInv: Float64Array;
  /** B (inner dimension × outer dimension). */
  readonly b: Float64Array;
  /** The outer target z of x. */
  readonly z: Float64Array;
  /** The outer target t of y. */
  readonly t: Float64Array;
  private readonly aT: tf.Tensor2D;
  private readonly bT: tf.Tensor2D;
  private readonly zT: tf.Tensor1D;
  private readonly tT: tf.Tensor1D;

  constructor(options: QuadraticFixtureOptions) {
    const rng = new Random(options.seed ?? 0);
    this.dy = options.innerDimension;
    this.dx = options.outerDimension ?? options.innerDimension;
    const kappa = options.conditionNumber ?? 10;
    const q = randomOrthogonal(this.dy, rng);
    const eig = Array.from({ length: this.dy }, (_, i) =>
      Math.pow(kappa, this.dy === 1 ? 0 : i / (this.dy - 1)),
    );
    this.a = spectralMatrix(q, eig);
    this.aInv = spectralMatrix(
      q,
      eig.map((l) => 1 / l),
    );
    this.b = Float64Array.from({ length: this.dy * this.dx }, () => rng.normal() / Math.sqrt(this.dx));
    this.z = Float64Array.from({ length: this.dx }, () => rng.normal());
    this.t = Float64Array.from({ length: this.dy }, () => rng.normal());
    this.aT = tf.keep(tf.tensor2d(Float32Array.from(this.a), [this.dy, this.dy]));
    this.bT = tf.keep(tf.tensor2d(Float32Array.from(this.b), [this.dy, this.dx]));
    this.zT = tf.keep(tf.tensor1d(Float32Array.from(this.z)));
    this.tT = tf.keep(tf.tensor1d(Float32Array.from(this.t)));
  }

  initialX(): TensorTree {
    return { x: tf.zeros([this.dx]) };
  }

  initialY(): TensorTree {
    return { y: tf.zeros([this.dy]) };
  }

  innerLoss(x: TensorTree, y: TensorTree): tf.Scalar {
    return tf.tidy(() => {
      const yv = y.y.reshape([this.dy, 1]);
      const ay = tf.matMul(this.aT, yv);
      const bx = tf.matMul(this.bT, x.x.reshape([this.dx, 1]));
      return tf.sub(tf.mul(0.5, tf.sum(tf.mul(yv, ay))), tf.sum(tf.mul(yv, bx))) as tf.Scalar;
    });
  }

  outerLoss(x: TensorTree, y: TensorTree): tf.Scalar {
    return tf.tidy(
      () =>
        tf.mul(
          0.5,
          tf.add(tf.sum(tf.square(tf.sub(x.x, this.zT))), tf.sum(tf.square(tf.sub(y.y, this.tT)))),
        ) as tf.Scalar,
    );
  }

  innerLossBatched(xs: TensorTree, ys: TensorTree): tf.Tensor1D {
    return tf.tidy(() => {
      const ay = tf.matMul(ys.y, this.aT);
      const bx = tf.matMul(xs.x, this.bT, false, true);
      return tf.sub(tf.mul(0.5, tf.sum(tf.mul(ys.y, ay), 1)), tf.sum(tf.mul(ys.y, bx), 1)) as tf.Tensor1D;
    });
  }

  /** y*(x) = A⁻¹Bx in float64. */
  innerSolutionArray(x: ArrayLike<number>): Float64Array {
    return matVec(this.aInv, this.dy, this.dy, matVec(this.b, this.dy, this.dx, x));
  }

  /** ∇Φ(x) in float64. */
  hypergradientArray(x: ArrayLike<number>): Float64Array {
    const ys = this.innerSolutionArray(x);
    const r = ys.map((v, i) => v - this.t[i]);
    const w = matTVec(this.b, this.dy, this.dx, matVec(this.aInv, this.dy, this.dy, r));
    return Float64Array.from({ length: this.dx }, (_, i) => x[i] - this.z[i] + w[i]);
  }

  innerSolution(x: TensorTree): TensorTree {
    return { y: tf.tensor1d(Float32Array.from(this.innerSolutionArray(x.x.dataSync()))) };
  }

  hypergradient(x: TensorTree): TensorTree {
    return { x: tf.tensor1d(Float32Array.from(this.hypergradientArray(x.x.dataSync()))) };
  }

  dispose(): void {
    this.aT.dispose();
    this.bT.dispose();
    this.zT.dispose();
    this.tT.dispose();
  }
}
