import * as tf from '@tensorflow/tfjs-core';

/**
 * Ops whose derivatives of every order tfjs can take. Several built-ins (exp, sigmoid, softmax,
 * logSoftmax, max, the softmax cross-entropy loss) throw or are wrong under nested gradients. Here the
 * transcendental pieces are custom-gradient ops that save their *input* and express their derivative with
 * the same op again, so double (and deeper) backprop stays exact. Use these in any loss that second-order
 * estimators (CG, Neumann, quasi-Newton, ITD with autodiff) will differentiate twice.
 */

/**
 * A unary op with a custom derivative: `forward(a)` gives the value, `derivative(dy, a)` the vector-Jacobian
 * product from the saved *input* a. When `derivative` is itself written with such ops, derivatives of any
 * order stay exact.
 */
export function unaryCustomOp(
  forward: (a: tf.Tensor) => tf.Tensor,
  derivative: (dy: tf.Tensor, a: tf.Tensor) => tf.Tensor,
): (x: tf.Tensor) => tf.Tensor {
  const f = tf.customGrad(((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const a = args[0] as tf.Tensor;
    const save = args[1] as tf.GradSaveFunc;
    save([a]);
    return {
      value: forward(a),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => derivative(dy as tf.Tensor, saved[0]),
    };
  }) as Parameters<typeof tf.customGrad>[0]);
  return (x: tf.Tensor) => f(x);
}

/** Identity in value, zero derivative (of every order). */
const stopGradientOp = unaryCustomOp(
  (a) => tf.clone(a),
  (dy) => tf.zerosLike(dy),
);
/** `t` in value, with a zero derivative of every order: blocks gradients through `t`. */
export function stopGradient<T extends tf.Tensor>(t: T): T {
  return stopGradientOp(t) as T;
}

/** max along `axis` (kept dims), with zero derivative: only for numerical shifts. */
function maxNoGradient(x: tf.Tensor, axis: number): tf.Tensor {
  return unaryCustomOp(
    (a) => tf.max(a, axis, true),
    (_dy, a) => tf.zerosLike(a),
  )(x);
}

const expOp: (x: tf.Tensor) => tf.Tensor = unaryCustomOp(
  (a) => tf.exp(a),
  (dy, a) => tf.mul(dy, expOp(a)),
);

/** eˣ, differentiable to any order in tfjs. */
export function exp<T extends tf.Tensor>(x: T): T {
  return expOp(x) as T;
}

/** log Σ exp(x) along `axis` (kept as a size-1 axis when `keepDims`), with a max shift for stability. */
export function logSumExp(x: tf.Tensor, axis = -1, keepDims = false): tf.Tensor {
  return tf.tidy(() => {
    const m = maxNoGradient(x, axis);
    const s = tf.log(tf.sum(exp(tf.sub(x, m)), axis, true));
    const out = tf.add(s, m);
    return keepDims ? out : tf.squeeze(out, [axis < 0 ? x.rank + axis : axis]);
  });
}

/** log softmax(x) along the last axis. */
export function logSoftmax(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.sub(x, logSumExp(x, -1, true)));
}

/** softmax(x) along the last axis. */
export function softmax(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => exp(logSoftmax(x)));
}

/**
 * Mean (or per-row, with `reduction: 'none'`) softmax cross-entropy between `logits` [n, k] and one-hot
 * (or soft) `labels` [n, k]; optional per-row `weights` [n] give Σ wᵢ·ceᵢ / n.
 */
export function softmaxCrossEntropy(
  logits: tf.Tensor2D,
  labels: tf.Tensor2D,
  options: { weights?: tf.Tensor1D; reduction?: 'mean' | 'sum' | 'none' } = {},
): tf.Tensor {
  return tf.tidy(() => {
    const ce = tf.sub(logSumExp(logits, 1), tf.sum(tf.mul(logits, labels), 1));
    const weighted = options.weights ? tf.mul(ce, options.weights) : ce;
    const reduction = options.reduction ?? 'mean';
    if (reduction === 'none') return weighted;
    return reduction === 'sum' ? tf.sum(weighted) : tf.mean(weighted);
  });
}

const sigmoidOp: (x: tf.Tensor) => tf.Tensor = unaryCustomOp(
  (a) => tf.sigmoid(a),
  (dy, a) => {
    const s = sigmoidOp(a);
    return tf.mul(dy, tf.mul(s, tf.sub(1, s)));
  },
);

/** σ(x) = 1 / (1 + e⁻ˣ), differentiable to any order in tfjs. */
export function sigmoid<T extends tf.Tensor>(x: T): T {
  return sigmoidOp(x) as T;
}

// log σ(a) = min(a, 0) − log(1 + e^{−|a|}), stable for large |a|; derivative σ(−a).
const logSigmoidOp: (x: tf.Tensor) => tf.Tensor = unaryCustomOp(
  (a) => tf.sub(tf.minimum(a, 0), tf.log1p(tf.exp(tf.neg(tf.abs(a))))),
  (dy, a) => tf.mul(dy, sigmoidOp(tf.neg(a))),
);

/** log σ(x) = −softplus(−x), stable for large |x| and differentiable to any order. */
export function logSigmoid<T extends tf.Tensor>(x: T): T {
  return logSigmoidOp(x) as T;
}

/** Binary cross-entropy with logits: mean of −[t log σ(z) + (1 − t) log σ(−z)]. */
export function sigmoidCrossEntropy(logits: tf.Tensor, targets: tf.Tensor): tf.Scalar {
  return tf.tidy(
    () =>
      tf.neg(
        tf.mean(
          tf.add(tf.mul(targets, logSigmoid(logits)), tf.mul(tf.sub(1, targets), logSigmoid(tf.neg(logits)))),
        ),
      ) as tf.Scalar,
  );
}
