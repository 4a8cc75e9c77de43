import {
  type Batch,
  type BilevelProblem,
  ConfigError,
  type FixedBatches,
  halfSquaredNorm,
  type Random,
  sigmoid,
  softmaxCrossEntropy,
  type TensorTree,
  z,
} from '@bilevel/core';
import { type ClassificationData, corruptLabels, gatherRows } from '@bilevel/datasets';
import * as tf from '@tensorflow/tfjs-core';
import {
  accuracy,
  denseLabeledSet,
  disposeLabeledSet,
  fixedBatchesOf,
  FixedSplit,
  type LabeledSet,
  linearLogits,
  memberCrossEntropies,
  MinibatchOptionsShape,
  resolveBatch,
  restoreSamplers,
  samplersState,
  type SamplersState,
  SetSampler,
} from './classification-data';
import { loadDenseSplits, SyntheticDataOptionsSchema } from './data-sources';

/** Options of the `hyper-cleaning` problem. */
export const HyperCleaningOptionsSchema = z
  .object({
    dataset: z
      .enum(['fashion-mnist', 'synthetic'])
      .default('fashion-mnist')
      .describe("'fashion-mnist' (real data, see @bilevel/datasets) or 'synthetic' Gaussian mixtures"),
    path: z
      .string()
      .min(1)
      .optional()
      .describe('Fashion-MNIST folder; default: BILEVEL_DATA_PATH, ~/.cache/bilevel, /usr/share/datasets'),
    trainSamples: z
      .number()
      .int()
      .positive()
      .default(5000)
      .describe('training samples (their labels get corrupted)'),
    validationSamples: z
      .number()
      .int()
      .positive()
      .default(5000)
      .describe('clean validation samples (outer loss)'),
    testSamples: z.number().int().min(0).default(10000).describe('test samples for testAccuracy (0: none)'),
    corruptionRate: z
      .number()
      .min(0)
      .max(1)
      .default(0.5)
      .describe('fraction of training labels replaced by a different class, uniformly'),
    innerL2: z.number().min(0).default(0.001).describe('λ of the inner penalty (λ/2)‖W‖²'),
    initialLogit: z.number().default(0).describe('starting x_i (sample weight σ(x_i); 0 gives 0.5)'),
    ...MinibatchOptionsShape,
    seed: z
      .number()
      .int()
      .min(0)
      .default(0)
      .describe('seed of the data split, the corruption and the minibatches'),
    synthetic: SyntheticDataOptionsSchema.default({}).describe(
      "shape of the data when dataset is 'synthetic'",
    ),
  })
  .strict();
/** Validated options of the `hyper-cleaning` problem. */
export type HyperCleaningOptions = z.output<typeof HyperCleaningOptionsSchema>;

/** The data of a hyper-cleaning instance: a training set with noisy labels and the record of the noise. */
export interface HyperCleaningData {
  /** Training set with the *corrupted* labels. */
  readonly train: ClassificationData;
  /** 1 where the training label was corrupted. */
  readonly corrupted: Uint8Array;
  /** The clean validation set (the outer data). */
  readonly validation: ClassificationData;
  /** The test set, when there is one. */
  readonly test?: ClassificationData;
}

/** Settings of a {@link HyperCleaningProblem} built from data directly. */
export interface HyperCleaningSettings {
  /** λ of (λ/2)‖W‖². */
  readonly innerL2: number;
  /** Starting x_i (default 0: weights σ(x_i) = 0.5). */
  readonly initialLogit?: number;
  /** Inner minibatch size (the stochastic variant); full batches when absent. */
  readonly batchSize?: number;
  /** Outer minibatch size; defaults to `batchSize`. */
  readonly outerBatchSize?: number;
  /** Seed of the minibatches (default 0). */
  readonly seed?: number;
}

/** Precision, recall and F1 of a set of flags against the truth. */
export interface FlagScores {
  /** Flagged samples that are truly in the set: tp / (tp + fp). */
  readonly precision: number;
  /** Samples of the set that are flagged: tp / (tp + fn). */
  readonly recall: number;
  /** Harmonic mean of precision and recall. */
  readonly f1: number;
}

function scores(flagged: ArrayLike<boolean>, truth: ArrayLike<boolean>): FlagScores {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < truth.length; i++) {
    if (flagged[i] && truth[i]) tp++;
    else if (flagged[i]) fp++;
    else if (truth[i]) fn++;
  }
  const precision = tp + fp === 0 ? 0 : tp / (tp + fp);
  const recall = tp + fn === 0 ? 0 : tp / (tp + fn);
  const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
  return { precision, recall, f1 };
}

/**
 * How well the sample weights σ(x_i) separate clean from corrupted samples: a sample is flagged *clean*
 * when σ(x_i) > 0.5 (x_i > 0) and *corrupted* otherwise; precision, recall and F1 of both flag sets are
 * computed against the recorded corruption.
 */
export function cleaningFlagScores(
  logits: ArrayLike<number>,
  corrupted: ArrayLike<number>,
): {
  /** Scores of the samples flagged clean (σ(x_i) > 0.5) against the truly clean ones. */
  clean: FlagScores;
  /** Scores of the samples flagged corrupted against the truly corrupted ones. */
  corrupted: FlagScores;
} {
  if (logits.length !== corrupted.length) {
    throw new Error(`cleaningFlagScores: ${logits.length} weights for ${corrupted.length} samples`);
  }
  const n = logits.length;
  const flaggedClean = Array.from({ length: n }, (_, i) => logits[i] > 0);
  const isClean = Array.from({ length: n }, (_, i) => corrupted[i] === 0);
  return {
    clean: scores(flaggedClean, isClean),
    corrupted: scores(
      flaggedClean.map((f) => !f),
      isClean.map((c) => !c),
    ),
  };
}

/**
 * Data hyper-cleaning (Franceschi et al., "Forward and Reverse Gradient-Based Hyperparameter
 * Optimization", ICML 2017; the benchmark of ESJ — Sow, Ji & Liang, 2022 — and qNBO — Fang et al., ICLR
 * 2025). One weight σ(x_i) per training sample of a training set whose labels are partly corrupted; a
 * multinomial logistic regression y = (W, b) is trained on the weighted loss, and the weights are tuned
 * so that the model does well on clean validation data:
 *
 *     g(x, y) = (1/n) Σ_i σ(x_i) · CE(W a_i + b, ỹ_i) + (λ/2)‖W‖²
 *     f(x, y) = (1/m) Σ_j CE(W a'_j + b, y'_j)            (validation set)
 *
 * With `batchSize`, both losses take minibatches (indices into the training / validation set) and the
 * sum runs over the batch, divided by its size (the stochastic variant for ESJ-S).
 */
export class HyperCleaningProblem implements BilevelProblem {
  readonly name = 'hyper-cleaning';
  readonly mainMetric: string;
  readonly mainMetricHigherIsBetter = true;
  /** λ of (λ/2)‖W‖². */
  readonly innerL2: number;
  /** Starting value of every x_i. */
  readonly initialLogit: number;
  /** 1 where the training label was corrupted (the truth the flag scores are measured against). */
  readonly corrupted: Uint8Array;
  /** Number of features. */
  readonly dimension: number;
  /** Number of classes. */
  readonly classes: number;
  private readonly train: LabeledSet;
  private readonly validation: LabeledSet;
  private readonly test?: LabeledSet;
  private readonly innerSampler?: SetSampler;
  private readonly outerSampler?: SetSampler;
  private readonly batchSizes?: { readonly inner: number; readonly outer: number; readonly seed: number };
  private split?: FixedBatches;

  constructor(data: HyperCleaningData, settings: HyperCleaningSettings) {
    if (data.corrupted.length !== data.train.count) {
      throw new Error(
        `hyper-cleaning: corruption record has ${data.corrupted.length} entries for ${data.train.count} samples`,
      );
    }
    for (const [name, part] of [
      ['validation', data.validation],
      ['test', data.test],
    ] as const) {
      if (part && (part.dimension !== data.train.dimension || part.classes !== data.train.classes)) {
        throw new Error(
          `hyper-cleaning: ${name} set has ${part.dimension} features and ${part.classes} classes, ` +
            `the training set ${data.train.dimension} and ${data.train.classes}`,
        );
      }
    }
    if (!(settings.innerL2 >= 0))
      throw new Error(`hyper-cleaning: innerL2 must be >= 0 (got ${settings.innerL2})`);
    this.innerL2 = settings.innerL2;
    this.initialLogit = settings.initialLogit ?? 0;
    this.corrupted = Uint8Array.from(data.corrupted);
    this.dimension = data.train.dimension;
    this.classes = data.train.classes;
    this.train = denseLabeledSet('training', data.train);
    this.validation = denseLabeledSet('validation', data.validation);
    this.test = data.test ? denseLabeledSet('test', data.test) : undefined;
    this.mainMetric = this.test ? 'testAccuracy' : 'validationAccuracy';
    const seed = settings.seed ?? 0;
    if (settings.batchSize !== undefined) {
      this.innerSampler = new SetSampler(this.train, settings.batchSize, seed + 11);
      this.outerSampler = new SetSampler(
        this.validation,
        settings.outerBatchSize ?? settings.batchSize,
        seed + 12,
      );
    } else if (settings.outerBatchSize !== undefined) {
      this.outerSampler = new SetSampler(this.validation, settings.outerBatchSize, seed + 12);
    }
    if (this.innerSampler)
      this.sampleInnerBatch = (rng: Random) => (this.innerSampler as SetSampler).next(rng);
    if (this.outerSampler)
      this.sampleOuterBatch = (rng: Random) => (this.outerSampler as SetSampler).next(rng);
    if (settings.batchSize !== undefined) {
      this.batchSizes = { inner: settings.batchSize, outer: settings.outerBatchSize ?? settings.batchSize, seed };
      this.fixedBatches = () => this.fixedSplit();
    }
  }

  /**
   * With `batchSize`: the training and validation sets each split once into fixed batches of `batchSize` and
   * `outerBatchSize` (seeded by `seed`; the last batch of each holds the rest). Absent without `batchSize`.
   */
  fixedBatches?: () => FixedBatches;

  private fixedSplit(): FixedBatches {
    const sizes = this.batchSizes as { inner: number; outer: number; seed: number };
    this.split ??= fixedBatchesOf(
      FixedSplit.ofSet(this.train, sizes.inner, sizes.seed + 13),
      FixedSplit.ofSet(this.validation, sizes.outer, sizes.seed + 14),
    );
    return this.split;
  }

  /** Loads (or generates) the data, corrupts the training labels and builds the problem. */
  static fromOptions(options: HyperCleaningOptions): HyperCleaningProblem {
    if (options.batchSize !== undefined && options.batchSize > options.trainSamples) {
      throw new ConfigError(
        `problem.options.batchSize = ${options.batchSize} exceeds trainSamples = ${options.trainSamples}`,
        'problem.options.batchSize',
      );
    }
    const outer = options.outerBatchSize ?? options.batchSize;
    if (outer !== undefined && outer > options.validationSamples) {
      throw new ConfigError(
        `problem.options.outerBatchSize = ${outer} exceeds validationSamples = ${options.validationSamples}`,
        'problem.options.outerBatchSize',
      );
    }
    const splits = loadDenseSplits({ ...options, where: 'problem.options' });
    const noisy = corruptLabels(splits.train.labels, splits.train.classes, {
      rate: options.corruptionRate,
      seed: options.seed + 7,
    });
    return new HyperCleaningProblem(
      {
        train: { ...splits.train, labels: noisy.labels },
        corrupted: noisy.corrupted,
        validation: splits.validation,
        test: splits.test,
      },
      options,
    );
  }

  sampleInnerBatch?: (rng: Random) => Batch;
  sampleOuterBatch?: (rng: Random) => Batch;

  /** Number of training samples (the size of x). */
  get trainSamples(): number {
    return this.train.count;
  }

  initialX(): TensorTree {
    return { sampleLogits: tf.fill([this.train.count], this.initialLogit) };
  }

  initialY(): TensorTree {
    return { weights: tf.zeros([this.dimension, this.classes]), bias: tf.zeros([this.classes]) };
  }

  innerLoss(x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar {
    return tf.tidy(() => {
      const { features, targets, indices } = resolveBatch(this.train, batch);
      // gatherRows: its gradient (a scatter-add) is fast, unlike the CPU kernel behind tf.gather's gradient.
      const logits = indices ? gatherRows(x.sampleLogits, indices) : x.sampleLogits;
      const ce = softmaxCrossEntropy(linearLogits(features, y.weights, y.bias), targets, {
        weights: sigmoid(logits),
      }) as tf.Scalar;
      return this.innerL2 === 0 ? ce : (tf.add(ce, halfSquaredNorm(y.weights, this.innerL2)) as tf.Scalar);
    });
  }

  outerLoss(_x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar {
    return tf.tidy(() => {
      const { features, targets } = resolveBatch(this.validation, batch);
      return softmaxCrossEntropy(linearLogits(features, y.weights, y.bias), targets) as tf.Scalar;
    });
  }

  innerLossBatched(xs: TensorTree, ys: TensorTree, batch?: Batch): tf.Tensor1D {
    return tf.tidy(() => {
      const { features, targets, indices, count } = resolveBatch(this.train, batch);
      // Rows first ([n, B]), the layout of the members' logits.
      const byRow = tf.transpose(xs.sampleLogits);
      const logits = indices ? gatherRows(byRow, indices) : byRow;
      const ce = memberCrossEntropies(features, targets, ys.weights, ys.bias, {
        weights: sigmoid(logits) as tf.Tensor2D,
        scale: 1 / count,
      });
      const data = tf.sum(ce, 0);
      if (this.innerL2 === 0) return data as tf.Tensor1D;
      return tf.add(data, halfSquaredNorm(ys.weights, this.innerL2, [1, 2])) as tf.Tensor1D;
    });
  }

  evaluate(x: TensorTree, y: TensorTree): Record<string, number> {
    const logits = x.sampleLogits.dataSync();
    const flags = cleaningFlagScores(logits, this.corrupted);
    let cleanSum = 0;
    let cleanCount = 0;
    let dirtySum = 0;
    for (let i = 0; i < logits.length; i++) {
      const w = 1 / (1 + Math.exp(-logits[i]));
      if (this.corrupted[i]) dirtySum += w;
      else {
        cleanSum += w;
        cleanCount++;
      }
    }
    const dirtyCount = logits.length - cleanCount;
    const out: Record<string, number> = {
      validationAccuracy: accuracy(this.validation, y.weights, y.bias),
      cleanPrecision: flags.clean.precision,
      cleanRecall: flags.clean.recall,
      cleanF1: flags.clean.f1,
      corruptedPrecision: flags.corrupted.precision,
      corruptedRecall: flags.corrupted.recall,
      corruptedF1: flags.corrupted.f1,
      meanWeightClean: cleanCount ? cleanSum / cleanCount : NaN,
      meanWeightCorrupted: dirtyCount ? dirtySum / dirtyCount : NaN,
    };
    if (this.test) out.testAccuracy = accuracy(this.test, y.weights, y.bias);
    return out;
  }

  /** The minibatch samplers' positions (checkpoints: a resumed run draws the same batches). */
  getState(): SamplersState {
    return samplersState({ inner: this.innerSampler, outer: this.outerSampler });
  }

  setState(state: unknown): void {
    restoreSamplers(this.name, state, { inner: this.innerSampler, outer: this.outerSampler });
  }

  dispose(): void {
    disposeLabeledSet(this.train);
    disposeLabeledSet(this.validation);
    disposeLabeledSet(this.test);
  }
}
