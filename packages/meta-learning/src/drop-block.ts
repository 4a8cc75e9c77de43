import * as tf from '@tensorflow/tfjs-core';

/** Arguments of {@link dropBlock}. */
export interface DropBlockArgs {
  /** Side of the dropped square blocks (5 in the ResNet-12 of MetaOptNet). */
  readonly blockSize: number;
  /** Target fraction of dropped activations, 1 − keep probability. */
  readonly dropRate: number;
  /** Seed of the Bernoulli block centres, so a recomputed forward pass drops the same blocks. */
  readonly seed: number;
}

/**
 * DropBlock (Ghiasi, Lin & Le, NeurIPS 2018): drops contiguous b×b regions of each feature map. Block
 * centres are Bernoulli(γ) on the (h − b + 1)×(w − b + 1) positions where a whole block fits, with
 *
 *     γ = dropRate / b² · h·w / ((h − b + 1)(w − b + 1)),
 *
 * each centre is grown to its b×b block (a max-pooling of the centre mask), and the kept activations are
 * rescaled by (number of units) / (number kept). The block size is clipped to the feature map's size. The
 * mask does not depend on x, so the layer is linear in x with a constant mask (differentiable to any order).
 */
export function dropBlock(x: tf.Tensor4D, args: DropBlockArgs): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  if (args.dropRate <= 0) return x;
  const b = Math.max(1, Math.min(args.blockSize, h, w));
  const gamma = ((args.dropRate / (b * b)) * (h * w)) / ((h - b + 1) * (w - b + 1));
  const mask = tf.tidy(() => {
    const centres = tf.cast(
      tf.less(tf.randomUniform([n, h - b + 1, w - b + 1, c], 0, 1, 'float32', args.seed), gamma),
      'float32',
    ) as tf.Tensor4D;
    // Pad so that a centre at (i, j) covers rows i … i+b−1 after a b×b stride-1 max-pooling.
    const padded = tf.pad(centres, [
      [0, 0],
      [b - 1, b - 1],
      [b - 1, b - 1],
      [0, 0],
    ]);
    const blocks = b > 1 ? tf.maxPool(padded as tf.Tensor4D, b, 1, 'valid') : padded;
    const keep = tf.sub(1, blocks) as tf.Tensor4D;
    const kept = tf.sum(keep).dataSync()[0];
    const total = n * h * w * c;
    return tf.mul(keep, kept > 0 ? total / kept : 0) as tf.Tensor4D;
  });
  return tf.mul(x, mask) as tf.Tensor4D;
}
