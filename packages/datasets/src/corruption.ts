import { Random } from '@bilevel/core';

/** Labels after corruption, with a record of what changed. */
export interface CorruptedLabels {
  /** The noisy labels. */
  readonly labels: Int32Array;
  /** 1 where the label was changed, else 0. */
  readonly corrupted: Uint8Array;
  /** Indices of the changed samples, ascending. */
  readonly corruptedIndices: Int32Array;
  /** The true labels (a copy). */
  readonly original: Int32Array;
}

/** Options of {@link corruptLabels}. */
export interface CorruptionOptions {
  /** Fraction of samples whose label is replaced; exactly round(rate·n) samples are changed. */
  readonly rate: number;
  /** Seed of the choice of samples and of their new labels (default 0). */
  readonly seed?: number;
}

/**
 * Uniform label noise as in data hyper-cleaning (Franceschi et al., 2017): round(rate·n) samples drawn
 * without replacement get a label drawn uniformly from the *other* k−1 classes, so every corrupted label
 * differs from the true one. Seeded; records which labels changed.
 */
export function corruptLabels(
  labels: ArrayLike<number>,
  classes: number,
  options: CorruptionOptions,
): CorruptedLabels {
  const { rate } = options;
  if (!(rate >= 0 && rate <= 1)) throw new RangeError(`corruption rate must be in [0, 1] (got ${rate})`);
  if (!Number.isInteger(classes) || classes < 2) {
    throw new RangeError(`label corruption needs at least 2 classes (got ${classes})`);
  }
  const n = labels.length;
  const original = Int32Array.from(labels);
  for (let i = 0; i < n; i++) {
    if (!Number.isInteger(original[i]) || original[i] < 0 || original[i] >= classes) {
      throw new RangeError(`label ${labels[i]} of sample ${i} is outside 0..${classes - 1}`);
    }
  }
  const rng = new Random(options.seed ?? 0);
  const count = Math.round(rate * n);
  const chosen = rng.sample(n, count).sort();
  const noisy = Int32Array.from(original);
  const corrupted = new Uint8Array(n);
  for (const i of chosen) {
    noisy[i] = (original[i] + 1 + rng.int(classes - 1)) % classes;
    corrupted[i] = 1;
  }
  return { labels: noisy, corrupted, corruptedIndices: chosen, original };
}
