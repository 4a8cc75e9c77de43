import * as tf from '@tensorflow/tfjs-core';
import { type Batch, type BilevelProblem, type FixedBatches, Random, type TensorTree } from '@bilevel/core';
import { luSolve } from '@bilevel/linalg';

/**
 * A finite-sum quadratic bilevel problem with fixed batches (for SABA):
 *
 *     g(x, y) = (1/n) Σ_i ½ yᵀA_i y − (C_i x)ᵀy,    A_i = I + u_i u_iᵀ / 2,  C_i ~ N(0, 1/d)
 *     f(x, y) = (1/m) Σ_j ½‖x − z_j‖² + ½‖y − t_j‖²
 *
 * With A, C, z̄, t̄ the means: y*(x) = Mx with M = A⁻¹C, Φ(x) = ½‖x − z̄‖² + ½‖Mx − t̄‖² + const and
 * x* = (I + MᵀM)⁻¹(z̄ + Mᵀt̄). Batches of `batchSize` consecutive samples (equal sizes: n and m multiples of it);
 * a batch loss is the mean over its samples.
 */
export class FiniteSumQuadratic implements BilevelProblem {
  readonly name = 'finite-sum-quadratic';
  /** A_i, n × dy × dy. */
  readonly a: Float64Array;
  /** C_i, n × dy × dx. */
  readonly c: Float64Array;
  /** z_j, m × dx. */
  readonly z: Float64Array;
  /** t_j, m × dy. */
  readonly t: Float64Array;
  private readonly aT: tf.Tensor3D;
  private readonly cT: tf.Tensor3D;
  private readonly zT: tf.Tensor2D;
  private readonly tT: tf.Tensor2D;

  constructor(
    readonly dx: number,
    readonly dy: number,
    readonly n: number,
    readonly m: number,
    readonly batchSize: number,
    readonly x0: readonly number[],
    readonly y0: readonly number[],
    seed = 0,
  ) {
    const rng = new Random(seed);
    this.a = new Float64Array(n * dy * dy);
    for (let i = 0; i < n; i++) {
      const u = Array.from({ length: dy }, () => rng.normal());
      for (let p = 0; p < dy; p++) for (let q = 0; q < dy; q++) this.a[i * dy * dy + p * dy + q] = (p === q ? 1 : 0) + (u[p] * u[q]) / 2;
    }
    this.c = Float64Array.from({ length: n * dy * dx }, () => rng.normal() / Math.sqrt(dx));
    this.z = Float64Array.from({ length: m * dx }, () => rng.normal());
    this.t = Float64Array.from({ length: m * dy }, () => rng.normal());
    this.aT = tf.keep(tf.tensor3d(Float32Array.from(this.a), [n, dy, dy]));
    this.cT = tf.keep(tf.tensor3d(Float32Array.from(this.c), [n, dy, dx]));
    this.zT = tf.keep(tf.tensor2d(Float32Array.from(this.z), [m, dx]));
    this.tT = tf.keep(tf.tensor2d(Float32Array.from(this.t), [m, dy]));
  }

  initialX(): TensorTree {
    return { x: tf.tensor1d(this.x0.slice()) };
  }

  initialY(): TensorTree {
    return { y: tf.tensor1d(this.y0.slice()) };
  }

  private rows(batch: Batch | undefined, all: number): tf.Tensor1D {
    return (batch?.indices as tf.Tensor1D | undefined) ?? tf.range(0, all, 1, 'int32');
  }

  innerLoss(x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar {
    return tf.tidy(() => {
      const idx = this.rows(batch, this.n);
      const a = tf.mean(tf.gather(this.aT, idx), 0) as tf.Tensor2D;
      const c = tf.mean(tf.gather(this.cT, idx), 0) as tf.Tensor2D;
      const yc = tf.reshape(y.y, [this.dy, 1]);
      const quad = tf.mul(0.5, tf.sum(tf.mul(yc, tf.matMul(a, yc))));
      const lin = tf.sum(tf.mul(yc, tf.matMul(c, tf.reshape(x.x, [this.dx, 1]))));
      return tf.sub(quad, lin) as tf.Scalar;
    });
  }

  outerLoss(x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar {
    return tf.tidy(() => {
      const idx = this.rows(batch, this.m);
      const z = tf.gather(this.zT, idx);
      const t = tf.gather(this.tT, idx);
      const fx = tf.mean(tf.sum(tf.square(tf.sub(x.x, z)), 1));
      const fy = tf.mean(tf.sum(tf.square(tf.sub(y.y, t)), 1));
      return tf.mul(0.5, tf.add(fx, fy)) as tf.Scalar;
    });
  }

  fixedBatches(): FixedBatches {
    const b = this.batchSize;
    const batch = (k: number): Batch => ({ indices: tf.range(k * b, (k + 1) * b, 1, 'int32') });
    return {
      innerCount: this.n / b,
      outerCount: this.m / b,
      innerWeight: () => b / this.n,
      outerWeight: () => b / this.m,
      innerBatch: batch,
      outerBatch: batch,
    };
  }

  /** Mean of rows [from, to) of a stacked float64 array of `size`-entry blocks. */
  meanOf(values: Float64Array, size: number, from: number, to: number): Float64Array {
    const out = new Float64Array(size);
    for (let r = from; r < to; r++) for (let k = 0; k < size; k++) out[k] += values[r * size + k] / (to - from);
    return out;
  }

  /** x* = (I + MᵀM)⁻¹(z̄ + Mᵀt̄), M = A⁻¹C, in float64. */
  optimalXArray(): Float64Array {
    const { dx, dy } = this;
    const a = this.meanOf(this.a, dy * dy, 0, this.n);
    const c = this.meanOf(this.c, dy * dx, 0, this.n);
    const zBar = this.meanOf(this.z, dx, 0, this.m);
    const tBar = this.meanOf(this.t, dy, 0, this.m);
    const mat = new Float64Array(dy * dx);
    for (let j = 0; j < dx; j++) {
      const col = luSolve(a, dy, Float64Array.from({ length: dy }, (_, p) => c[p * dx + j]));
      for (let p = 0; p < dy; p++) mat[p * dx + j] = col[p];
    }
    const lhs = new Float64Array(dx * dx);
    const rhs = Float64Array.from(zBar);
    for (let i = 0; i < dx; i++) {
      lhs[i * dx + i] += 1;
      for (let p = 0; p < dy; p++) {
        rhs[i] += mat[p * dx + i] * tBar[p];
        for (let j = 0; j < dx; j++) lhs[i * dx + j] += mat[p * dx + i] * mat[p * dx + j];
      }
    }
    return luSolve(lhs, dx, rhs);
  }

  dispose(): void {
    [this.aT, this.cT, this.zT, this.tT].forEach((t) => t.dispose());
  }
}
