import { type Batch, DataError, type FixedBatches, Random, softmaxCrossEntropy, z } from '@bilevel/core';
import {
  type ClassificationData,
  type CsrMatrix,
  csrSelectRows,
  MinibatchSampler,
  type MinibatchSamplerState,
  type SparseTensors,
  sparseDenseMatMul,
  sparseTensorsFromCsr,
} from '@bilevel/datasets';
import * as tf from '@tensorflow/tfjs-core';

/** A feature matrix held as tensors: dense rows, or a sparse matrix in coordinate form. */
export type FeatureMatrix =
  | {
      /** Dense features. */
      readonly kind: 'dense';
      /** Number of samples. */
      readonly rows: number;
      /** Number of features. */
      readonly cols: number;
      /** The [rows, cols] matrix. */
      readonly matrix: tf.Tensor2D;
    }
  | {
      /** Sparse features (LIBSVM data). */
      readonly kind: 'sparse';
      /** Number of samples. */
      readonly rows: number;
      /** Number of features. */
      readonly cols: number;
      /** The nonzeros in coordinate form. */
      readonly matrix: SparseTensors;
    };

/** A labeled data set as long-lived tensors (kept; released by {@link disposeLabeledSet}). */
export interface LabeledSet {
  /** Name of the set in messages (e.g. `training`, `validation`, `test`). */
  readonly name: string;
  /** The features, dense or sparse. */
  readonly features: FeatureMatrix;
  /** Labels on the JS side (for metrics). */
  readonly labels: Int32Array;
  /** One-hot labels [count, classes]. */
  readonly oneHot: tf.Tensor2D;
  /** Number of samples. */
  readonly count: number;
  /** Number of classes. */
  readonly classes: number;
  /** The CSR source of sparse features (minibatches are cut from it). */
  readonly csr?: CsrMatrix;
}

function checkLabels(name: string, labels: Int32Array, classes: number): void {
  for (let i = 0; i < labels.length; i++) {
    if (!(labels[i] >= 0 && labels[i] < classes)) {
      throw new DataError(
        `${name} set: label ${labels[i]} of sample ${i} is outside 0..${classes - 1}`,
        name,
      );
    }
  }
}

/**
 * Refuses NaN or ±Inf features, naming the first bad position. (`v − v` is 0 exactly for finite v; a
 * plain subtraction keeps this loop fast where `Number.isFinite` is a cross-realm call, as under jest.)
 */
function checkFinite(name: string, values: Float32Array): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v - v !== 0)
      throw new DataError(`${name} set: feature value ${v} at position ${i} is not finite`, name);
  }
}

function oneHot(labels: Int32Array, classes: number): tf.Tensor2D {
  return tf.tidy(() => tf.oneHot(tf.tensor1d(labels, 'int32'), classes).toFloat() as tf.Tensor2D);
}

/** Kept tensors of a dense classification set; refuses NaN/Inf features and labels out of range. */
export function denseLabeledSet(name: string, data: ClassificationData): LabeledSet {
  if (data.inputs.length !== data.count * data.dimension) {
    throw new DataError(
      `${name} set: ${data.inputs.length} feature values do not fill ${data.count} rows of ${data.dimension}`,
      name,
    );
  }
  if (data.labels.length !== data.count) {
    throw new DataError(`${name} set: ${data.labels.length} labels for ${data.count} samples`, name);
  }
  checkLabels(name, data.labels, data.classes);
  checkFinite(name, data.inputs);
  const matrix = tf.tensor2d(data.inputs, [data.count, data.dimension], 'float32');
  return {
    name,
    features: { kind: 'dense', rows: data.count, cols: data.dimension, matrix: tf.keep(matrix) },
    labels: Int32Array.from(data.labels),
    oneHot: tf.keep(oneHot(data.labels, data.classes)),
    count: data.count,
    classes: data.classes,
  };
}

/** Kept tensors of a sparse (CSR) classification set. */
export function sparseLabeledSet(
  name: string,
  csr: CsrMatrix,
  labels: Int32Array,
  classes: number,
): LabeledSet {
  if (labels.length !== csr.rows)
    throw new DataError(`${name} set: ${labels.length} labels for ${csr.rows} rows`, name);
  checkLabels(name, labels, classes);
  checkFinite(name, csr.values);
  const matrix = sparseTensorsFromCsr(csr);
  for (const t of [matrix.rowIds, matrix.colIds, matrix.values]) tf.keep(t);
  return {
    name,
    features: { kind: 'sparse', rows: csr.rows, cols: csr.cols, matrix },
    labels: Int32Array.from(labels),
    oneHot: tf.keep(oneHot(labels, classes)),
    count: csr.rows,
    classes,
    csr,
  };
}

/** Releases the set's tensors (nothing for undefined). */
export function disposeLabeledSet(set: LabeledSet | undefined): void {
  if (!set) return;
  set.oneHot.dispose();
  if (set.features.kind === 'dense') set.features.matrix.dispose();
  else
    for (const t of [set.features.matrix.rowIds, set.features.matrix.colIds, set.features.matrix.values])
      t.dispose();
}

/** A · W for the feature matrix A [rows, cols] and W [cols, k]. */
export function featureMatMul(features: FeatureMatrix, w: tf.Tensor2D): tf.Tensor2D {
  return features.kind === 'dense' ? tf.matMul(features.matrix, w) : sparseDenseMatMul(features.matrix, w);
}

/**
 * Minibatch of a labeled set: `indices` (int32, positions in the set), the gathered features (`inputs`
 * for dense data; `rowIds`/`colIds`/`values` for sparse data) and one-hot `targets`.
 */
export function batchFromIndices(set: LabeledSet, indices: Int32Array): Batch {
  return tf.tidy((): Record<string, tf.Tensor> => {
    const idx = tf.tensor1d(indices, 'int32');
    const targets = tf.gather(set.oneHot, idx);
    if (set.features.kind === 'dense')
      return { indices: idx, inputs: tf.gather(set.features.matrix, idx), targets };
    const sub = sparseTensorsFromCsr(csrSelectRows(set.csr as CsrMatrix, indices));
    return { indices: idx, rowIds: sub.rowIds, colIds: sub.colIds, values: sub.values, targets };
  });
}

/** The features, targets and sample positions a loss should use: the batch's when given, else the whole set. */
export function resolveBatch(
  set: LabeledSet,
  batch: Batch | undefined,
): {
  /** The features to use. */
  features: FeatureMatrix;
  /** One-hot targets [count, classes]. */
  targets: tf.Tensor2D;
  /** Positions of the batch in the set (absent for the whole set). */
  indices?: tf.Tensor1D;
  /** Number of samples. */
  count: number;
} {
  if (!batch) return { features: set.features, targets: set.oneHot, count: set.count };
  const indices = batch.indices as tf.Tensor1D | undefined;
  if (!indices) throw new Error(`${set.name} batch: missing 'indices'`);
  const count = indices.shape[0];
  const targets = (batch.targets as tf.Tensor2D | undefined) ?? tf.gather(set.oneHot, indices);
  if (set.features.kind === 'dense') {
    const inputs = (batch.inputs as tf.Tensor2D | undefined) ?? tf.gather(set.features.matrix, indices);
    return {
      features: { kind: 'dense', rows: count, cols: set.features.cols, matrix: inputs },
      targets,
      indices,
      count,
    };
  }
  if (!batch.rowIds || !batch.colIds || !batch.values) {
    throw new Error(
      `${set.name} batch of sparse data needs 'rowIds', 'colIds' and 'values' (see batchFromIndices)`,
    );
  }
  return {
    features: {
      kind: 'sparse',
      rows: count,
      cols: set.features.cols,
      matrix: {
        rows: count,
        cols: set.features.cols,
        rowIds: batch.rowIds as tf.Tensor1D,
        colIds: batch.colIds as tf.Tensor1D,
        values: batch.values as tf.Tensor1D,
      },
    },
    targets,
    indices,
    count,
  };
}

/** Logits A·W + b of a multinomial logistic regression. */
export function linearLogits(features: FeatureMatrix, w: tf.Tensor, b: tf.Tensor): tf.Tensor2D {
  return tf.add(featureMatMul(features, w as tf.Tensor2D), b) as tf.Tensor2D;
}

/**
 * Logits of B stacked models at once: W [B, cols, k], b [B, k] → [B, rows, k]. The B weight matrices are
 * laid side by side as one [cols, B·k] factor so the data is multiplied once.
 */
export function linearLogitsBatched(features: FeatureMatrix, w: tf.Tensor, b: tf.Tensor): tf.Tensor3D {
  const [members, cols, k] = w.shape;
  const side = tf.reshape(tf.transpose(w, [1, 0, 2]), [cols, members * k]) as tf.Tensor2D;
  const all = tf.reshape(featureMatMul(features, side), [features.rows, members, k]);
  return tf.add(tf.transpose(all, [1, 0, 2]), tf.reshape(b, [members, 1, k])) as tf.Tensor3D;
}

/**
 * Per-sample softmax cross-entropy of stacked logits [B, n, k] against one-hot targets [n, k]:
 * ce_bi = log Σ_c exp(z_bic) − Σ_c t_ic z_bic, shape [B, n]; with `weights` [B, n], w_bi·ce_bi. One fused op
 * (core's softmaxCrossEntropy, exact to any order); `scale` multiplies the result inside the op.
 */
export function crossEntropyBatched(
  logits: tf.Tensor3D,
  targets: tf.Tensor2D,
  options: { weights?: tf.Tensor2D; scale?: number } = {},
): tf.Tensor2D {
  return softmaxCrossEntropy(logits, targets, { ...options, reduction: 'none' }) as tf.Tensor2D;
}

/**
 * Per-sample softmax cross-entropies of B stacked linear models, rows first: [rows, B] for W [B, cols, k],
 * b [B, k] and one-hot targets [rows, k], optionally weighted per sample and member (`weights` [rows, B]) and
 * scaled. The data is multiplied once (the B weight matrices side by side) and the logits stay in the
 * product's [rows, B, k] layout, so nothing of the size of the logits is transposed, forward or backward;
 * one fused cross-entropy op (exact to any order).
 */
export function memberCrossEntropies(
  features: FeatureMatrix,
  targets: tf.Tensor2D,
  w: tf.Tensor,
  b: tf.Tensor,
  options: { weights?: tf.Tensor2D; scale?: number } = {},
): tf.Tensor2D {
  const [members, cols, k] = w.shape;
  const side = tf.reshape(tf.transpose(w, [1, 0, 2]), [cols, members * k]) as tf.Tensor2D;
  const logits = tf.add(tf.reshape(featureMatMul(features, side), [features.rows, members, k]), b);
  const labels = tf.reshape(targets, [features.rows, 1, k]);
  return softmaxCrossEntropy(logits, labels, { ...options, reduction: 'none' }) as tf.Tensor2D;
}

/** Mean cross-entropy of a linear model on a whole set (or batch). */
export function meanCrossEntropy(
  features: FeatureMatrix,
  targets: tf.Tensor2D,
  w: tf.Tensor,
  b: tf.Tensor,
): tf.Scalar {
  return softmaxCrossEntropy(linearLogits(features, w, b), targets) as tf.Scalar;
}

/** Fraction of samples whose largest logit is the true class (synchronous). */
export function accuracy(set: LabeledSet, w: tf.Tensor, b: tf.Tensor): number {
  const predicted = tf.tidy(() => tf.argMax(linearLogits(set.features, w, b), 1));
  const p = predicted.dataSync();
  predicted.dispose();
  let correct = 0;
  for (let i = 0; i < set.count; i++) if (p[i] === set.labels[i]) correct++;
  return set.count === 0 ? NaN : correct / set.count;
}

/** Seeded epoch-based minibatches of a labeled set; a new epoch's order comes from the caller's stream. */
export class SetSampler {
  private readonly sampler: MinibatchSampler;
  constructor(
    /** The set the batches are drawn from. */
    readonly set: LabeledSet,
    batchSize: number,
    seed: number,
  ) {
    if (batchSize > set.count) {
      throw new Error(`batch size ${batchSize} exceeds the ${set.count} samples of the ${set.name} set`);
    }
    this.sampler = new MinibatchSampler(set.count, batchSize, seed);
  }

  /** The next minibatch: indices into the set and the gathered features and one-hot targets. */
  next(rng?: Random): Batch {
    return batchFromIndices(this.set, this.sampler.next(rng));
  }

  /** Position and order of the epoch (for checkpoints: a resumed run draws the same batches). */
  getState(): MinibatchSamplerState {
    return this.sampler.getState();
  }

  /** Restores a state from {@link SetSampler.getState}. */
  setState(state: MinibatchSamplerState): void {
    this.sampler.setState(state);
  }
}

/**
 * A data set split once into fixed minibatches: the sample positions in one seeded random order, cut into
 * consecutive runs of `batchSize` (the last run holds the rest, so it may be smaller). Batch b is drawn by its
 * index, built by `gather` from its positions.
 */
export class FixedSplit {
  /** Sample positions of each batch. */
  readonly batches: readonly Int32Array[];
  constructor(
    /** The set's name (for error messages). */
    readonly name: string,
    /** Number of samples of the set. */
    readonly size: number,
    batchSize: number,
    seed: number,
    private readonly gather: (indices: Int32Array) => Batch,
  ) {
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > size) {
      throw new Error(`fixed batches: batch size must be an integer in 1..${size} for the ${name} set (got ${batchSize})`);
    }
    const order = new Random(seed).permutation(size);
    const out: Int32Array[] = [];
    for (let start = 0; start < size; start += batchSize) out.push(order.slice(start, start + batchSize));
    this.batches = out;
  }

  /** The split of a labeled set (batches as {@link batchFromIndices} builds them). */
  static ofSet(set: LabeledSet, batchSize: number, seed: number): FixedSplit {
    return new FixedSplit(set.name, set.count, batchSize, seed, (indices) => batchFromIndices(set, indices));
  }

  /** Number of batches, ⌈n / batchSize⌉. */
  get count(): number {
    return this.batches.length;
  }

  /** The share of the set's samples in batch b. */
  weight(index: number): number {
    return this.at(index).length / this.size;
  }

  /** Batch b (new tensors). */
  batch(index: number): Batch {
    return this.gather(this.at(index));
  }

  private at(index: number): Int32Array {
    const b = this.batches[index];
    if (!Number.isInteger(index) || b === undefined) {
      throw new RangeError(`fixed batches of the ${this.name} set: index ${index} is not in 0..${this.batches.length - 1}`);
    }
    return b;
  }
}

/** The {@link FixedBatches} of a problem from its inner and outer splits. */
export function fixedBatchesOf(inner: FixedSplit, outer: FixedSplit): FixedBatches {
  return {
    innerCount: inner.count,
    outerCount: outer.count,
    innerWeight: (b) => inner.weight(b),
    outerWeight: (b) => outer.weight(b),
    innerBatch: (b) => inner.batch(b),
    outerBatch: (b) => outer.batch(b),
  };
}

/** The minibatch options shared by the stochastic problems (spread into their option schemas). */
export const MinibatchOptionsShape = {
  batchSize: z
    .number()
    .int()
    .positive()
    .optional()
    .describe('inner minibatch size: enables the stochastic variant (ESJ-S); full batch when absent'),
  outerBatchSize: z
    .number()
    .int()
    .positive()
    .optional()
    .describe('outer minibatch size; defaults to batchSize'),
};

/** Checkpoint state of a problem's inner and outer minibatch samplers (null: that level has none). */
export interface SamplersState {
  /** State of the inner (training) sampler, or null. */
  readonly innerSampler: MinibatchSamplerState | null;
  /** State of the outer (validation) sampler, or null. */
  readonly outerSampler: MinibatchSamplerState | null;
}

/** The {@link SamplersState} of the samplers a problem holds (what {@link restoreSamplers} reads back). */
export function samplersState(samplers: {
  inner?: { getState(): MinibatchSamplerState };
  outer?: { getState(): MinibatchSamplerState };
}): SamplersState {
  return {
    innerSampler: samplers.inner?.getState() ?? null,
    outerSampler: samplers.outer?.getState() ?? null,
  };
}

/** Restores {@link SamplersState} into the samplers a problem holds, checking it was made for them. */
export function restoreSamplers(
  problem: string,
  state: unknown,
  samplers: {
    inner?: { setState(s: MinibatchSamplerState): void };
    outer?: { setState(s: MinibatchSamplerState): void };
  },
): void {
  const s = state as Partial<SamplersState> | null;
  if (!s || typeof s !== 'object' || !('innerSampler' in s) || !('outerSampler' in s)) {
    throw new Error(`${problem}: saved problem state must be { innerSampler, outerSampler }`);
  }
  for (const [level, saved, sampler] of [
    ['inner', s.innerSampler, samplers.inner],
    ['outer', s.outerSampler, samplers.outer],
  ] as const) {
    if ((saved == null) !== (sampler === undefined)) {
      throw new Error(
        `${problem}: saved problem state ${saved == null ? 'has no' : 'has an'} ${level} minibatch sampler, this problem ${sampler ? 'has one' : 'has none'} (batch sizes differ?)`,
      );
    }
    if (saved && sampler) sampler.setState(saved);
  }
}
