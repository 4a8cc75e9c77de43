import * as tf from '@tensorflow/tfjs-core';
import { type TensorTree, treeDispose, treeNames } from '../tree';

/** Relative error ‖a − b‖ / max(‖b‖, tiny) between two trees (synchronous; for tests and diagnostics). */
export function treeRelativeError(a: TensorTree, b: TensorTree): number {
  return tf.tidy(() => {
    let num = 0;
    let den = 0;
    for (const n of treeNames(b)) {
      num += tf.sum(tf.square(tf.sub(a[n], b[n]))).dataSync()[0];
      den += tf.sum(tf.square(b[n])).dataSync()[0];
    }
    return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
  });
}

/**
 * Runs `fn` `iterations` times and returns how many tensors were alive after each call compared with
 * before the first: a flat series (all zeros after warm-up) means nothing leaks.
 */
export function tensorCountGrowth(fn: (i: number) => void, iterations: number): number[] {
  const base = tf.memory().numTensors;
  const growth: number[] = [];
  for (let i = 0; i < iterations; i++) {
    fn(i);
    growth.push(tf.memory().numTensors - base);
  }
  return growth;
}

/** Same as {@link treeDispose}; re-exported so tests need only this module. */
export const disposeTree = treeDispose;
