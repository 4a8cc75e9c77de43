import * as tf from '@tensorflow/tfjs-core';
import type { Batch, BilevelProblem, TensorTree } from '@bilevel/core';

/**
 * The extended Rosenbrock function as an inner loss, with the outer variable as its shift a:
 *
 *     g(a, y) = Σᵢ 100(yᵢ₊₁ − yᵢ²)² + (a − yᵢ)²,      minimizer y* = (a, a², …) = 1 for a = 1,
 *
 * started from the standard point (−1.2, 1, −1.2, 1, …).
 */
export class RosenbrockProblem implements BilevelProblem {
  readonly name = 'rosenbrock';
  constructor(readonly n: number) {}

  initialX(): TensorTree {
    return { a: tf.scalar(1) };
  }

  initialY(): TensorTree {
    return { y: tf.tensor1d(Array.from({ length: this.n }, (_, i) => (i % 2 === 0 ? -1.2 : 1))) };
  }

  innerLoss(x: TensorTree, y: TensorTree): tf.Scalar {
    return tf.tidy(() => {
      const v = y.y;
      const head = tf.slice(v, [0], [this.n - 1]);
      const tail = tf.slice(v, [1], [this.n - 1]);
      const valley = tf.mul(100, tf.sum(tf.square(tf.sub(tail, tf.square(head)))));
      return tf.add(valley, tf.sum(tf.square(tf.sub(x.a, head)))) as tf.Scalar;
    });
  }

  outerLoss(_x: TensorTree, y: TensorTree): tf.Scalar {
    return tf.sum(tf.square(y.y)) as tf.Scalar;
  }
}

/**
 * g(y; batch) = ½‖y − t‖² with the target t of the batch (½‖y‖² without one). Records which batch every
 * loss evaluation saw, to check that iteration k is given batch k.
 */
export class TargetProblem implements BilevelProblem {
  readonly name = 'target';
  readonly seen: (number | null)[] = [];
  private readonly ids = new Map<Batch, number>();
  readonly batches: Batch[];

  constructor(targets: number[][]) {
    this.batches = targets.map((t, i) => {
      const b = { t: tf.tensor1d(t) };
      this.ids.set(b, i);
      return b;
    });
  }

  initialX(): TensorTree {
    return { x: tf.zeros([1]) };
  }

  initialY(): TensorTree {
    return { y: tf.zeros([this.batches[0].t.size]) };
  }

  innerLoss(_x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar {
    this.seen.push(batch ? (this.ids.get(batch) ?? -1) : null);
    return tf.tidy(() => tf.mul(0.5, tf.sum(tf.square(batch ? tf.sub(y.y, batch.t) : y.y))) as tf.Scalar);
  }

  outerLoss(_x: TensorTree, y: TensorTree): tf.Scalar {
    return tf.sum(y.y) as tf.Scalar;
  }

  dispose(): void {
    for (const b of this.batches) b.t.dispose();
  }
}

/** g(y) = Σ −log(yᵢ) + ½‖y‖²·c: NaN once a step leaves y > 0 (a divergence to report). */
export class LogBarrierProblem implements BilevelProblem {
  readonly name = 'log-barrier';
  initialX(): TensorTree {
    return { x: tf.zeros([1]) };
  }

  initialY(): TensorTree {
    return { y: tf.fill([3], 0.5) };
  }

  innerLoss(_x: TensorTree, y: TensorTree): tf.Scalar {
    return tf.tidy(() => tf.sub(tf.mul(0.5, tf.sum(tf.square(y.y))), tf.sum(tf.log(y.y))) as tf.Scalar);
  }

  outerLoss(_x: TensorTree, y: TensorTree): tf.Scalar {
    return tf.sum(y.y) as tf.Scalar;
  }
}

/** Float64 helpers for references. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-300));
}

export function norm(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}
