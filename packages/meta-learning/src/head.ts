import * as tf from '@tensorflow/tfjs-core';
import { halfSquaredNorm, softmax, softmaxCrossEntropy, type TensorTree } from '@bilevel/core';

/**
 * The linear classification head of ANIL-style few-shot learning (Raghu et al., "Rapid Learning or Feature
 * Reuse?", ICLR 2020), one per task of a meta-batch of B tasks, stacked along a leading axis:
 * `weight` [B, N, D] and `bias` [B, N], with logits_b = F_b W_bᵀ + b_b for the features F_b [n, D] of task b.
 */
export const HEAD_WEIGHT = 'weight';
/** Name of the head's bias tensor in the inner variable y. */
export const HEAD_BIAS = 'bias';

/** Zero heads for B tasks of N ways on D features (the usual zero initialization of ANIL heads). */
export function zeroHeads(tasks: number, ways: number, features: number): TensorTree {
  return { [HEAD_WEIGHT]: tf.zeros([tasks, ways, features]), [HEAD_BIAS]: tf.zeros([tasks, ways]) };
}

/** Checks a head tree against [B, N, D]; the error names the tensor and both shapes. */
export function checkHeads(head: TensorTree, tasks: number, ways: number, features: number): void {
  const w = head[HEAD_WEIGHT];
  const b = head[HEAD_BIAS];
  if (!w || !b) throw new Error(`the head needs tensors '${HEAD_WEIGHT}' and '${HEAD_BIAS}'`);
  const ok = (t: tf.Tensor, s: number[]) => t.shape.length === s.length && t.shape.every((d, i) => d === s[i]);
  if (!ok(w, [tasks, ways, features])) {
    throw new Error(`head '${HEAD_WEIGHT}' has shape [${w.shape.join(', ')}], expected [${tasks}, ${ways}, ${features}]`);
  }
  if (!ok(b, [tasks, ways])) {
    throw new Error(`head '${HEAD_BIAS}' has shape [${b.shape.join(', ')}], expected [${tasks}, ${ways}]`);
  }
}

/** Logits [B, n, N] of features [B, n, D] under heads W [B, N, D], b [B, N]: F Wᵀ + b. */
export function headLogits(features: tf.Tensor3D, head: TensorTree): tf.Tensor3D {
  const w = head[HEAD_WEIGHT] as tf.Tensor3D;
  const b = head[HEAD_BIAS] as tf.Tensor2D;
  const [B, N] = w.shape;
  return tf.add(tf.matMul(features, w, false, true), tf.reshape(b, [B, 1, N])) as tf.Tensor3D;
}

/**
 * Mean softmax cross-entropy of each task, [B], from logits and one-hot labels [B, n, N]. Uses core's fused
 * `softmaxCrossEntropy`, whose derivatives of every order are exact (second-order products in the head).
 */
export function taskCrossEntropies(logits: tf.Tensor3D, labels: tf.Tensor3D): tf.Tensor1D {
  return tf.mean(softmaxCrossEntropy(logits, labels, { reduction: 'none' }), 1) as tf.Tensor1D;
}

/** (1/B) Σ_b of the tasks' mean cross-entropies, as one op (every task has the same number of rows). */
export function meanTaskCrossEntropy(logits: tf.Tensor3D, labels: tf.Tensor3D): tf.Scalar {
  return softmaxCrossEntropy(logits, labels) as tf.Scalar;
}

/**
 * Inner objective of the few-shot problem summed over the B tasks (the tasks are independent, so the sum
 * keeps each task's conditioning independent of B):
 *
 *     g = Σ_b [ CE(F_b W_bᵀ + b_b, Y_b) + (λ/2)‖W_b‖² ]
 *
 * Σ_b of the task means is the sum over all B·n rows divided by n: one fused cross-entropy op, and one op for
 * the penalty.
 */
export function headInnerLoss(features: tf.Tensor3D, labels: tf.Tensor3D, head: TensorTree, lambda: number): tf.Scalar {
  const n = labels.shape[1];
  const ce = softmaxCrossEntropy(headLogits(features, head), labels, { reduction: 'sum', scale: 1 / n }) as tf.Scalar;
  if (lambda === 0) return ce;
  return tf.add(ce, halfSquaredNorm(head[HEAD_WEIGHT], lambda)) as tf.Scalar;
}

/** Fraction of rows whose largest logit is at the label, per task: [B] as numbers. */
export function taskAccuracies(logits: tf.Tensor3D, labels: tf.Tensor3D): number[] {
  return tf.tidy(() => {
    const hit = tf.cast(tf.equal(tf.argMax(logits, 2), tf.argMax(labels, 2)), 'float32');
    return Array.from(tf.mean(hit, 1).dataSync());
  });
}

/** Options of {@link fitHeads}. */
export interface FitHeadOptions {
  /** λ of the (λ/2)‖W‖² penalty. */
  readonly lambda: number;
  /** Gradient steps from zero heads. */
  readonly steps: number;
  /**
   * Step size; default 1/L_b per task with L_b = ½·mean_i(‖f_i‖² + 1) + λ, an upper bound on the Lipschitz
   * constant of the task's gradient (the softmax cross-entropy Hessian is at most ½ of the feature Gram
   * matrix), so the steps converge whatever the scale of the features.
   */
  readonly stepSize?: number;
}

/**
 * Fits the heads of B tasks on support features [B, n, D] with one-hot labels [B, n, N] by gradient descent
 * on Σ_b CE_b + (λ/2)‖W_b‖², from zero, with the closed-form gradient
 * ∇_W = (P − Y)ᵀF/n + λW, ∇_b = 1ᵀ(P − Y)/n (P the softmax probabilities). Not differentiable (evaluation).
 */
export function fitHeads(features: tf.Tensor3D, labels: tf.Tensor3D, options: FitHeadOptions): TensorTree {
  const [B, n, D] = features.shape;
  const N = labels.shape[2];
  const { lambda, steps } = options;
  // Per task: the step η and, folded out of the loop, W ← (1 − ηλ)·W − (η/n)·(P − Y)ᵀF and b ← b − (η/n)·1ᵀ(P − Y).
  const [decay, rate] = tf.tidy(() => {
    let step: tf.Tensor;
    if (options.stepSize !== undefined) step = tf.fill([B, 1, 1], options.stepSize);
    else {
      const meanSq = tf.mean(tf.sum(tf.square(features), 2), 1);
      const L = tf.add(tf.mul(tf.add(meanSq, 1), 0.5), lambda);
      step = tf.reshape(tf.div(1, L), [B, 1, 1]);
    }
    return [tf.sub(1, tf.mul(step, lambda)), tf.div(step, n)];
  });
  let w: tf.Tensor3D = tf.zeros([B, N, D]);
  let b: tf.Tensor3D = tf.zeros([B, 1, N]);
  for (let k = 0; k < steps; k++) {
    const next = tf.tidy(() => {
      // core's softmax: tf.softmax's JS kernel broadcasts element by element and is many times slower.
      const residual = tf.sub(softmax(tf.add(tf.matMul(features, w, false, true), b)), labels) as tf.Tensor3D;
      const gw = tf.matMul(residual, features, true, false);
      const gb = tf.sum(residual, 1, true);
      return [tf.sub(tf.mul(w, decay), tf.mul(gw, rate)) as tf.Tensor3D, tf.sub(b, tf.mul(gb, rate)) as tf.Tensor3D];
    });
    w.dispose();
    b.dispose();
    [w, b] = next;
  }
  decay.dispose();
  rate.dispose();
  const bias = tf.reshape(b, [B, N]);
  b.dispose();
  return { [HEAD_WEIGHT]: w, [HEAD_BIAS]: bias };
}

/**
 * Nearest-prototype accuracy per task (Snell et al., "Prototypical Networks", NeurIPS 2017): each query is
 * assigned the class whose mean support feature is closest in Euclidean distance. A head-free probe of the
 * features.
 */
export function prototypeAccuracies(
  support: tf.Tensor3D,
  supportLabels: tf.Tensor3D,
  query: tf.Tensor3D,
  queryLabels: tf.Tensor3D,
): number[] {
  return tf.tidy(() => {
    const counts = tf.sum(supportLabels, 1); // [B, N]
    const protos = tf.div(tf.matMul(supportLabels, support, true, false), tf.expandDims(counts, 2)); // [B, N, D]
    // −‖q − p‖² = 2 q·p − ‖p‖² − ‖q‖²; the last term does not change the argmax.
    const scores = tf.sub(
      tf.mul(tf.matMul(query, protos, false, true), 2),
      tf.expandDims(tf.sum(tf.square(protos), 2), 1),
    ) as tf.Tensor3D;
    return taskAccuracies(scores, queryLabels);
  });
}
