import * as tf from '@tensorflow/tfjs-core';
import {
  type Batch,
  type BatchSchedule,
  type BilevelProblem,
  Random,
  type TensorTree,
  matTVec,
  matVec,
} from '@bilevel/core';
import { QuadraticFixture } from '@bilevel/core/testing';

/**
 * A bilevel problem whose inner response is nonlinear in x (for the antithetic-sampling test):
 *
 *     g(x, y) = ½‖y − ½(Bx)²‖²,   f(x, y) = ½‖x − z‖² + ½‖y − t‖²
 *     y*(x) = ½(Bx)²,             ∇Φ(x) = (x − z) + Bᵀ((Bx) ⊙ (y*(x) − t))
 */
export class NonlinearResponseProblem implements BilevelProblem {
  readonly name = 'nonlinear-response';
  readonly b: Float64Array;
  readonly z: Float64Array;
  readonly t: Float64Array;
  private readonly bT: tf.Tensor2D;
  private readonly zT: tf.Tensor1D;
  private readonly tT: tf.Tensor1D;

  constructor(
    readonly dx: number,
    readonly dy: number,
    seed = 0,
  ) {
    const rng = new Random(seed);
    this.b = Float64Array.from({ length: dy * dx }, () => rng.normal() / Math.sqrt(dx));
    this.z = Float64Array.from({ length: dx }, () => rng.normal());
    this.t = Float64Array.from({ length: dy }, () => rng.normal());
    this.bT = tf.keep(tf.tensor2d(Float32Array.from(this.b), [dy, dx]));
    this.zT = tf.keep(tf.tensor1d(Float32Array.from(this.z)));
    this.tT = tf.keep(tf.tensor1d(Float32Array.from(this.t)));
  }

  initialX(): TensorTree {
    return { x: tf.zeros([this.dx]) };
  }

  initialY(): TensorTree {
    return { y: tf.zeros([this.dy]) };
  }

  /** ½(Bx)² for x of shape [dx] or [B, dx]. */
  response(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const s = tf.matMul(tf.reshape(x, [-1, this.dx]), this.bT, false, true);
      return tf.reshape(tf.mul(0.5, tf.square(s)), x.rank === 1 ? [this.dy] : [-1, this.dy]);
    });
  }

  innerLoss(x: TensorTree, y: TensorTree): tf.Scalar {
    return tf.tidy(() => tf.mul(0.5, tf.sum(tf.square(tf.sub(y.y, this.response(x.x))))) as tf.Scalar);
  }

  innerLossBatched(xs: TensorTree, ys: TensorTree): tf.Tensor1D {
    return tf.tidy(() => tf.mul(0.5, tf.sum(tf.square(tf.sub(ys.y, this.response(xs.x))), 1)) as tf.Tensor1D);
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

  innerSolution(x: TensorTree): TensorTree {
    return { y: this.response(x.x) };
  }

  hypergradientArray(x: ArrayLike<number>): Float64Array {
    const s = matVec(this.b, this.dy, this.dx, x);
    const w = s.map((si, i) => si * (0.5 * si * si - this.t[i]));
    const jt = matTVec(this.b, this.dy, this.dx, w);
    return Float64Array.from({ length: this.dx }, (_, i) => x[i] - this.z[i] + jt[i]);
  }

  dispose(): void {
    this.bT.dispose();
    this.zT.dispose();
    this.tT.dispose();
  }
}

/**
 * The quadratic fixture with a minibatch-dependent shift (a stochastic problem for ESJ-S):
 *
 *     g(x, y; c) = ½yᵀAy − yᵀBx − yᵀc,    f(x, y; e) = ½‖x − z‖² + ½‖y − t‖² − yᵀe
 *     y*(x; c) = A⁻¹(Bx + c)
 *
 * Inner batches carry `shift` (c), outer batches `outerShift` (e). Without a batch the fixed shifts given to
 * the constructor are used, which makes the deterministic twin of a stochastic step.
 */
export class ShiftedQuadraticProblem implements BilevelProblem {
  readonly name = 'shifted-quadratic';
  private readonly cT: tf.Tensor1D;
  private readonly eT: tf.Tensor1D;

  constructor(
    readonly fixture: QuadraticFixture,
    fixedShift: ArrayLike<number> | null = null,
    fixedOuterShift: ArrayLike<number> | null = null,
    readonly shiftScale = 3,
  ) {
    this.cT = tf.keep(fixedShift ? tf.tensor1d(Float32Array.from(fixedShift)) : tf.zeros([fixture.dy]));
    this.eT = tf.keep(
      fixedOuterShift ? tf.tensor1d(Float32Array.from(fixedOuterShift)) : tf.zeros([fixture.dy]),
    );
  }

  initialX(): TensorTree {
    return this.fixture.initialX();
  }

  initialY(): TensorTree {
    return this.fixture.initialY();
  }

  sampleInnerBatch(rng: Random): Batch {
    return { shift: rng.normalTensor([this.fixture.dy], 0, this.shiftScale) };
  }

  sampleOuterBatch(rng: Random): Batch {
    return { outerShift: rng.normalTensor([this.fixture.dy], 0, this.shiftScale) };
  }

  innerLoss(x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar {
    return tf.tidy(
      () => tf.sub(this.fixture.innerLoss(x, y), tf.sum(tf.mul(y.y, batch?.shift ?? this.cT))) as tf.Scalar,
    );
  }

  innerLossBatched(xs: TensorTree, ys: TensorTree, batch?: Batch): tf.Tensor1D {
    return tf.tidy(
      () =>
        tf.sub(
          this.fixture.innerLossBatched(xs, ys),
          tf.sum(tf.mul(ys.y, tf.expandDims(batch?.shift ?? this.cT, 0)), 1),
        ) as tf.Tensor1D,
    );
  }

  outerLoss(x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar {
    return tf.tidy(
      () =>
        tf.sub(this.fixture.outerLoss(x, y), tf.sum(tf.mul(y.y, batch?.outerShift ?? this.eT))) as tf.Scalar,
    );
  }

  /** y*(x; c) with c from the first batch of the schedule, else the fixed shift (float64 solve). */
  solution(x: TensorTree, batches?: BatchSchedule): TensorTree {
    const c = batches?.(0)?.shift ?? this.cT;
    const cData = c.dataSync();
    const bx = matVec(this.fixture.b, this.fixture.dy, this.fixture.dx, x.x.dataSync());
    const y = matVec(
      this.fixture.aInv,
      this.fixture.dy,
      this.fixture.dy,
      bx.map((v, i) => v + cData[i]),
    );
    return { y: tf.tensor1d(Float32Array.from(y)) };
  }

  dispose(): void {
    this.cT.dispose();
    this.eT.dispose();
  }
}
