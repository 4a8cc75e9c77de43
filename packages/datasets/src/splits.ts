import { Random } from '@bilevel/core';
import type { ClassificationData } from './synthetic';

/** Rows `indices` (in that order) of a row-major matrix with `width` columns. */
export function selectRows<T extends Float32Array | Int32Array>(
  data: T,
  width: number,
  indices: ArrayLike<number>,
): T {
  const rows = data.length / width;
  const out = new (data.constructor as new (n: number) => T)(indices.length * width);
  for (let i = 0; i < indices.length; i++) {
    const r = indices[i];
    if (!Number.isInteger(r) || r < 0 || r >= rows)
      throw new RangeError(`selectRows: row ${r} is outside 0..${rows - 1}`);
    out.set(data.subarray(r * width, (r + 1) * width), i * width);
  }
  return out;
}

/** The samples `indices` of a classification set. */
export function subsetClassification(
  data: ClassificationData,
  indices: ArrayLike<number>,
): ClassificationData {
  return {
    inputs: selectRows(data.inputs, data.dimension, indices),
    labels: selectRows(data.labels, 1, indices),
    count: indices.length,
    dimension: data.dimension,
    classes: data.classes,
  };
}

/**
 * Splits 0..n−1 into disjoint parts of the given sizes after a seeded shuffle (or in order with
 * `shuffle: false`). Sizes may sum to less than n; the rest is left out.
 */
export function splitIndices(
  n: number,
  sizes: readonly number[],
  options: { seed?: number; shuffle?: boolean } = {},
): Int32Array[] {
  const total = sizes.reduce((a, b) => a + b, 0);
  for (const s of sizes) {
    if (!Number.isInteger(s) || s < 0)
      throw new RangeError(`splitIndices: part sizes must be integers >= 0 (got ${s})`);
  }
  if (total > n)
    throw new RangeError(
      `splitIndices: parts of ${sizes.join(' + ')} = ${total} samples exceed the ${n} available`,
    );
  const order =
    options.shuffle === false
      ? Int32Array.from({ length: n }, (_, i) => i)
      : new Random(options.seed ?? 0).permutation(n);
  const parts: Int32Array[] = [];
  let o = 0;
  for (const s of sizes) {
    parts.push(order.slice(o, o + s));
    o += s;
  }
  return parts;
}

/** Part sizes from fractions of n (rounded down; the first part takes what rounding leaves). */
export function sizesFromFractions(n: number, fractions: readonly number[]): number[] {
  const sum = fractions.reduce((a, b) => a + b, 0);
  if (fractions.some((f) => !(f >= 0)) || sum > 1 + 1e-12) {
    throw new RangeError(`fractions must be >= 0 and sum to at most 1 (got ${fractions.join(', ')})`);
  }
  const sizes = fractions.map((f) => Math.floor(f * n));
  if (Math.abs(sum - 1) < 1e-12) sizes[0] += n - sizes.reduce((a, b) => a + b, 0);
  return sizes;
}

/** A seeded train / validation / test split of a classification set, by sample counts. */
export function trainValidationTestSplit(
  data: ClassificationData,
  sizes: { train: number; validation: number; test: number },
  seed = 0,
): {
  /** The training samples. */
  train: ClassificationData;
  /** The validation samples. */
  validation: ClassificationData;
  /** The test samples. */
  test: ClassificationData;
} {
  const [tr, va, te] = splitIndices(data.count, [sizes.train, sizes.validation, sizes.test], { seed });
  return {
    train: subsetClassification(data, tr),
    validation: subsetClassification(data, va),
    test: subsetClassification(data, te),
  };
}
