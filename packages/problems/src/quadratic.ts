import {
  type BilevelProblem,
  matTVec,
  matVec,
  Random,
  randomOrthogonal,
  spectralMatrix,
  quadraticForm,
  quadraticMinusLinear,
  type TensorTree,
  z,
} from '@bilevel/core';
import * as tf from '@tensorflow/tfjs-core';

/** Options of the `quadratic` problem. */
export const QuadraticOptionsSchema = z
  .object({
    dimension: z.number().int().positive().max(2000).default(100).describe('n, the size of x and of y'),
    seed: z.number().int().min(0).default(0).describe('seed of Q, of the spectrum and of z₀'),
  })
  .strict();
/** Validated options of the `quadratic` problem. */
export type QuadraticOptions = z.output<typeof QuadraticOptionsSchema>;

/**
 * The quadratic toy problem of qNBO (Fang et al., "qNBO: quasi-Newton Meets Bilevel Optimization",
 * ICLR 2025):
 *
 *     A = Qᵀ diag(1 + u) Q,   Q random orthogonal, u ~ U[0, 1]ⁿ   (so the spectrum of A lies in [1, 2])
 *     f(x, y) = ½‖x − z₀‖² + ½ yᵀAy,       g(x, y) = ½ yᵀAy − xᵀy
 *
 * with closed forms y*(x) = A⁻¹x, Φ(x) = ½‖x − z₀‖² + ½ xᵀA⁻¹x, ∇Φ(x) = x − z₀ + A⁻¹x and
 * x* = (A⁻¹ + I)⁻¹ z₀. z₀ has i.i.d. N(0, 1) entries. All references are kept in float64.
 */
export class QuadraticProblem implements BilevelProblem {
  readonly name = 'quadratic';
  readonly mainMetric = 'xRelativeError';
  readonly mainMetricHigherIsBetter = false;
  /** n, the size of x and of y. */
  readonly dimension: number;
  /** A, row-major float64. */
  readonly a: Float64Array;
  /** z₀, the outer target. */
  readonly z0: Float64Array;
  /** Eigenvalues 1 + u_k of A. */
  readonly eigenvalues: Float64Array;
  private readonly xStarArray: Float64Array;
  /** Q (row-major float64): A⁻¹v and x* are computed through it, without forming A⁻¹. */
  private readonly q: Float64Array;
  private aInverseCache: Float64Array | undefined;
  private readonly aTensor: tf.Tensor2D;
  private readonly z0Tensor: tf.Tensor1D;
  /** ½ yᵀAy as one op (gradient A y from the forward product; see core's quadraticForm). */
  private readonly halfQuadraticOp: (y: tf.Tensor) => tf.Tensor;
  /** g = ½ yᵀAy − xᵀy as one op (see core's quadraticMinusLinear). */
  private readonly innerOp: (y: tf.Tensor, x: tf.Tensor) => tf.Scalar;

  constructor(options: Partial<QuadraticOptions> = {}) {
    const n = options.dimension ?? 100;
    const rng = new Random(options.seed ?? 0);
    this.dimension = n;
    const q = randomOrthogonal(n, rng);
    this.eigenvalues = Float64Array.from({ length: n }, () => 1 + rng.uniform());
    this.z0 = Float64Array.from({ length: n }, () => rng.normal());
    this.q = q;
    this.a = spectralMatrix(q, this.eigenvalues);
    // x* = (A⁻¹ + I)⁻¹ z₀ = Qᵀ diag(λ / (1 + λ)) Q z₀: two products instead of a third n×n matrix.
    this.xStarArray = this.spectralProduct(
      this.eigenvalues.map((l) => l / (1 + l)),
      this.z0,
    );
    this.aTensor = tf.keep(tf.tensor2d(Float32Array.from(this.a), [n, n]));
    this.z0Tensor = tf.keep(tf.tensor1d(Float32Array.from(this.z0)));
    this.halfQuadraticOp = quadraticForm(this.aTensor);
    this.innerOp = quadraticMinusLinear(this.aTensor);
  }

  initialX(): TensorTree {
    return { x: tf.zeros([this.dimension]) };
  }

  initialY(): TensorTree {
    return { y: tf.zeros([this.dimension]) };
  }

  /** ½ yᵀAy as a scalar. */
  private halfQuadratic(y: tf.Tensor): tf.Scalar {
    return this.halfQuadraticOp(y) as tf.Scalar;
  }

  innerLoss(x: TensorTree, y: TensorTree): tf.Scalar {
    return this.innerOp(y.y, x.x);
  }

  outerLoss(x: TensorTree, y: TensorTree): tf.Scalar {
    return tf.tidy(
      () =>
        tf.add(
          tf.mul(0.5, tf.sum(tf.square(tf.sub(x.x, this.z0Tensor)))),
          this.halfQuadratic(y.y),
        ) as tf.Scalar,
    );
  }

  /** g for B stacked pairs: xs.x, ys.y of shape [B, n] → [B]. */
  innerLossBatched(xs: TensorTree, ys: TensorTree): tf.Tensor1D {
    return tf.tidy(() => tf.sub(this.halfQuadraticOp(ys.y), tf.sum(tf.mul(xs.x, ys.y), 1)) as tf.Tensor1D);
  }

  /** A⁻¹, row-major float64: formed (n³ work) on first use and kept. */
  get aInverse(): Float64Array {
    this.aInverseCache ??= spectralMatrix(
      this.q,
      this.eigenvalues.map((l) => 1 / l),
    );
    return this.aInverseCache;
  }

  /** Qᵀ diag(μ) Q v in float64 (two products with Q). */
  private spectralProduct(mu: ArrayLike<number>, v: ArrayLike<number>): Float64Array {
    const n = this.dimension;
    const w = matVec(this.q, n, n, v);
    for (let i = 0; i < n; i++) w[i] *= mu[i];
    return matTVec(this.q, n, n, w);
  }

  /** y*(x) = A⁻¹x = Qᵀ diag(1/λ) Q x in float64. */
  innerSolutionArray(x: ArrayLike<number>): Float64Array {
    return this.spectralProduct(
      this.eigenvalues.map((l) => 1 / l),
      x,
    );
  }

  /** ∇Φ(x) = x − z₀ + A⁻¹x in float64. */
  hypergradientArray(x: ArrayLike<number>): Float64Array {
    const ys = this.innerSolutionArray(x);
    return Float64Array.from({ length: this.dimension }, (_, i) => x[i] - this.z0[i] + ys[i]);
  }

  /** Φ(x) = ½‖x − z₀‖² + ½ xᵀA⁻¹x in float64. */
  objectiveArray(x: ArrayLike<number>): number {
    const ys = this.innerSolutionArray(x);
    let s = 0;
    for (let i = 0; i < this.dimension; i++) s += 0.5 * (x[i] - this.z0[i]) ** 2 + 0.5 * x[i] * ys[i];
    return s;
  }

  /** x* = (A⁻¹ + I)⁻¹ z₀ in float64 (a copy). */
  optimalXArray(): Float64Array {
    return Float64Array.from(this.xStarArray);
  }

  innerSolution(x: TensorTree): TensorTree {
    return { y: tf.tensor1d(Float32Array.from(this.innerSolutionArray(x.x.dataSync()))) };
  }

  hypergradient(x: TensorTree): TensorTree {
    return { x: tf.tensor1d(Float32Array.from(this.hypergradientArray(x.x.dataSync()))) };
  }

  optimalX(): TensorTree {
    return { x: tf.tensor1d(Float32Array.from(this.xStarArray)) };
  }

  /**
   * xRelativeError = ‖x − x*‖/‖x*‖ (the main metric), yRelativeError = ‖y − y*(x)‖/‖y*(x)‖,
   * suboptimality Φ(x) − Φ(x*) and the closed-form hypergradient norm ‖∇Φ(x)‖.
   */
  evaluate(x: TensorTree, y: TensorTree): Record<string, number> {
    const xv = x.x.dataSync();
    const yv = y.y.dataSync();
    const ys = this.innerSolutionArray(xv);
    const grad = this.hypergradientArray(xv);
    let dx = 0;
    let nx = 0;
    let dy = 0;
    let ny = 0;
    let ng = 0;
    for (let i = 0; i < this.dimension; i++) {
      dx += (xv[i] - this.xStarArray[i]) ** 2;
      nx += this.xStarArray[i] ** 2;
      dy += (yv[i] - ys[i]) ** 2;
      ny += ys[i] ** 2;
      ng += grad[i] ** 2;
    }
    return {
      xRelativeError: Math.sqrt(dx) / Math.max(Math.sqrt(nx), 1e-30),
      yRelativeError: Math.sqrt(dy) / Math.max(Math.sqrt(ny), 1e-30),
      suboptimality: this.objectiveArray(xv) - this.objectiveArray(this.xStarArray),
      hypergradientNorm: Math.sqrt(ng),
    };
  }

  dispose(): void {
    this.aTensor.dispose();
    this.z0Tensor.dispose();
  }
}
