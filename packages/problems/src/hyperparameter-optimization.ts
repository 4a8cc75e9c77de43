import {
  type Batch,
  type FixedBatches,
  type BilevelProblem,
  ConfigError,
  exp,
  type Random,
  softmaxCrossEntropy,
  type TensorTree,
  z,
} from '@bilevel/core';
import {
  type ClassificationData,
  type CsrMatrix,
  csrSelectRows,
  labelsToClasses,
  type LibsvmData,
  readLibsvm,
  splitIndices,
} from '@bilevel/datasets';
import * as tf from '@tensorflow/tfjs-core';
import {
  accuracy,
  denseLabeledSet,
  disposeLabeledSet,
  type LabeledSet,
  linearLogits,
  memberCrossEntropies,
  MinibatchOptionsShape,
  resolveBatch,
  restoreSamplers,
  samplersState,
  type SamplersState,
  SetSampler,
  fixedBatchesOf,
  FixedSplit,
  sparseLabeledSet,
} from './classification-data';
import { loadDenseSplits, SyntheticDataOptionsSchema } from './data-sources';

const LibsvmFilesSchema = z
  .object({
    train: z.string().min(1).describe('LIBSVM file of the training set'),
    validation: z
      .string()
      .min(1)
      .optional()
      .describe('LIBSVM file of the validation set; when absent, validationFraction of the training file'),
    test: z.string().min(1).optional().describe('LIBSVM file of the test set (for testAccuracy)'),
    validationFraction: z
      .number()
      .gt(0)
      .lt(1)
      .default(0.5)
      .describe('share of the training file held out for validation when no validation file is given'),
  })
  .strict();

/** Options of the `hyperparameter-optimization` problem. */
export const HyperparameterOptimizationOptionsSchema = z
  .object({
    dataset: z
      .enum(['synthetic', 'fashion-mnist', 'libsvm'])
      .default('synthetic')
      .describe(
        "'synthetic' Gaussian mixtures, 'fashion-mnist' (dense, 784 features) or sparse 'libsvm' files",
      ),
    path: z.string().min(1).optional().describe('Fashion-MNIST folder (default: the data search order)'),
    libsvm: LibsvmFilesSchema.optional().describe("files of the 'libsvm' dataset"),
    trainSamples: z.number().int().positive().default(1000).describe('training samples (dense datasets)'),
    validationSamples: z
      .number()
      .int()
      .positive()
      .default(1000)
      .describe('validation samples (dense datasets)'),
    testSamples: z.number().int().min(0).default(1000).describe('test samples (dense datasets; 0: none)'),
    initialLogPenalty: z
      .number()
      .default(-2)
      .describe('starting x_j; the penalty of feature j is exp(x_j)/2 · ‖W_j‖²'),
    ...MinibatchOptionsShape,
    seed: z.number().int().min(0).default(0).describe('seed of the data split and the minibatches'),
    synthetic: SyntheticDataOptionsSchema.default({}).describe(
      "shape of the data when dataset is 'synthetic'",
    ),
  })
  .strict()
  .superRefine((o, ctx) => {
    if (o.dataset === 'libsvm' && !o.libsvm) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['libsvm'],
        message: "dataset 'libsvm' needs libsvm.train",
      });
    }
  });
/** Validated options of the `hyperparameter-optimization` problem. */
export type HyperparameterOptimizationOptions = z.output<typeof HyperparameterOptimizationOptionsSchema>;

/** The sets of a hyperparameter-optimization instance, already as kept tensors. */
export interface HyperparameterData {
  /** The training set (the inner loss). */
  readonly train: LabeledSet;
  /** The validation set (the outer loss). */
  readonly validation: LabeledSet;
  /** The test set, when there is one. */
  readonly test?: LabeledSet;
}

/** Settings of a {@link HyperparameterOptimizationProblem} built from data directly. */
export interface HyperparameterSettings {
  /** Starting x_j (default −2: penalties exp(−2)/2). */
  readonly initialLogPenalty?: number;
  /** Inner minibatch size (the stochastic variant); full batches when absent. */
  readonly batchSize?: number;
  /** Outer minibatch size; defaults to `batchSize`. */
  readonly outerBatchSize?: number;
  /** Seed of the minibatches (default 0). */
  readonly seed?: number;
}

/** Dense classification sets as problem data. */
export function denseHyperparameterData(sets: {
  train: ClassificationData;
  validation: ClassificationData;
  test?: ClassificationData;
}): HyperparameterData {
  return {
    train: denseLabeledSet('training', sets.train),
    validation: denseLabeledSet('validation', sets.validation),
    test: sets.test ? denseLabeledSet('test', sets.test) : undefined,
  };
}

/**
 * Sparse sets from LIBSVM files: labels map to classes 0..k−1 in ascending order over all files; the
 * feature count is the largest index of any file.
 */
export function libsvmHyperparameterData(
  files: z.output<typeof LibsvmFilesSchema>,
  seed = 0,
): HyperparameterData {
  const read = (f: string | undefined): LibsvmData | undefined => (f ? readLibsvm(f) : undefined);
  const train = read(files.train) as LibsvmData;
  const validation = read(files.validation);
  const test = read(files.test);
  const cols = Math.max(train.features.cols, validation?.features.cols ?? 0, test?.features.cols ?? 0);
  const widen = (m: CsrMatrix): CsrMatrix => ({ ...m, cols });
  const classes = labelsToClasses(train.labels, validation?.labels ?? [], test?.labels ?? []);
  if (classes.classes < 2) {
    throw new ConfigError(
      `${files.train}: LIBSVM data needs at least 2 distinct labels (found ${classes.classes})`,
      'problem.options.libsvm.train',
    );
  }
  let trainCsr = widen(train.features);
  let trainLabels = classes.map(train.labels);
  let validationCsr: CsrMatrix;
  let validationLabels: Int32Array;
  if (validation) {
    validationCsr = widen(validation.features);
    validationLabels = classes.map(validation.labels);
  } else {
    const nVal = Math.round(files.validationFraction * train.features.rows);
    if (nVal < 1 || nVal >= train.features.rows) {
      throw new ConfigError(
        `${files.train}: cannot hold out ${nVal} of ${train.features.rows} samples for validation`,
        'problem.options.libsvm.validationFraction',
      );
    }
    const [va, tr] = splitIndices(train.features.rows, [nVal, train.features.rows - nVal], { seed });
    validationCsr = csrSelectRows(trainCsr, va);
    validationLabels = Int32Array.from(va, (i) => trainLabels[i]);
    trainCsr = csrSelectRows(trainCsr, tr);
    trainLabels = Int32Array.from(tr, (i) => trainLabels[i]);
  }
  return {
    train: sparseLabeledSet('training', trainCsr, trainLabels, classes.classes),
    validation: sparseLabeledSet('validation', validationCsr, validationLabels, classes.classes),
    test: test
      ? sparseLabeledSet('test', widen(test.features), classes.map(test.labels), classes.classes)
      : undefined,
  };
}

/**
 * Hyperparameter optimization of a multinomial logistic regression with one L2 penalty per feature
 * (the 20 Newsgroups experiment of Grazzi et al. 2020 and Ji, Yang & Liang, "Bilevel Optimization:
 * Convergence Analysis and Enhanced Design", ICML 2021, also run by ESJ and qNBO). The outer variable x
 * holds one log-penalty per feature; the inner variable y = (W, b):
 *
 *     g(x, y) = (1/n) Σ_i CE(W a_i + b, y_i) + ½ Σ_j exp(x_j) ‖W_j‖²     (W_j: row j of W)
 *     f(x, y) = (1/m) Σ_k CE(W a'_k + b, y'_k)                             (validation set)
 *
 * Features may be dense or sparse (LIBSVM, multiplied with a gather / segment-sum product). exp is
 * core's second-order-safe op, so Hessian- and mixed-vector products come from double backprop.
 */
export class HyperparameterOptimizationProblem implements BilevelProblem {
  readonly name = 'hyperparameter-optimization';
  readonly mainMetric: string;
  readonly mainMetricHigherIsBetter = true;
  /** Number of features (the size of x). */
  readonly features: number;
  /** Number of classes. */
  readonly classes: number;
  /** Starting value of every x_j. */
  readonly initialLogPenalty: number;
  private readonly data: HyperparameterData;
  private readonly innerSampler?: SetSampler;
  private readonly outerSampler?: SetSampler;
  sampleInnerBatch?: (rng: Random) => Batch;
  sampleOuterBatch?: (rng: Random) => Batch;

  constructor(data: HyperparameterData, settings: HyperparameterSettings = {}) {
    const { train, validation, test } = data;
    for (const part of [validation, test]) {
      if (part && (part.features.cols !== train.features.cols || part.classes !== train.classes)) {
        throw new Error(
          `hyperparameter-optimization: ${part.name} set has ${part.features.cols} features and ${part.classes} ` +
            `classes, the training set ${train.features.cols} and ${train.classes}`,
        );
      }
    }
    this.data = data;
    this.features = train.features.cols;
    this.classes = train.classes;
    this.initialLogPenalty = settings.initialLogPenalty ?? -2;
    this.mainMetric = test ? 'testAccuracy' : 'validationAccuracy';
    const seed = settings.seed ?? 0;
    const outer = settings.outerBatchSize ?? settings.batchSize;
    if (settings.batchSize !== undefined)
      this.innerSampler = new SetSampler(train, settings.batchSize, seed + 11);
    if (outer !== undefined) this.outerSampler = new SetSampler(validation, outer, seed + 12);
    if (this.innerSampler)
      this.sampleInnerBatch = (rng: Random) => (this.innerSampler as SetSampler).next(rng);
    if (this.outerSampler)
      this.sampleOuterBatch = (rng: Random) => (this.outerSampler as SetSampler).next(rng);
    if (settings.batchSize !== undefined) {
      const sizes = { inner: settings.batchSize, outer: outer ?? settings.batchSize };
      let split: FixedBatches | undefined;
      this.fixedBatches = () =>
        (split ??= fixedBatchesOf(
          FixedSplit.ofSet(train, sizes.inner, seed + 13),
          FixedSplit.ofSet(validation, sizes.outer, seed + 14),
        ));
    }
  }

  /**
   * With `batchSize`: the training and validation sets each split once into fixed batches of `batchSize` and
   * `outerBatchSize` (seeded by `seed`; the last batch of each holds the rest). Absent without `batchSize`.
   */
  fixedBatches?: () => FixedBatches;

  /**
   * Loads the data described by the options (synthetic, Fashion-MNIST or LIBSVM) and builds the problem on
   * it.
   */
  static fromOptions(options: HyperparameterOptimizationOptions): HyperparameterOptimizationProblem {
    let data: HyperparameterData;
    if (options.dataset === 'libsvm') {
      data = libsvmHyperparameterData(options.libsvm as z.output<typeof LibsvmFilesSchema>, options.seed);
    } else {
      data = denseHyperparameterData(
        loadDenseSplits({ ...options, dataset: options.dataset, where: 'problem.options' }),
      );
    }
    const tooLarge = (
      [
        ['batchSize', options.batchSize, data.train],
        ['outerBatchSize', options.outerBatchSize ?? options.batchSize, data.validation],
      ] as const
    ).find(([, size, set]) => size !== undefined && size > set.count);
    if (tooLarge) {
      for (const set of [data.train, data.validation, data.test]) disposeLabeledSet(set);
      const [field, size, set] = tooLarge;
      throw new ConfigError(
        `problem.options.${field} = ${size} exceeds the ${set.count} samples of the ${set.name} set`,
        `problem.options.${field}`,
      );
    }
    return new HyperparameterOptimizationProblem(data, options);
  }

  initialX(): TensorTree {
    return { logPenalty: tf.fill([this.features], this.initialLogPenalty) };
  }

  initialY(): TensorTree {
    return { weights: tf.zeros([this.features, this.classes]), bias: tf.zeros([this.classes]) };
  }

  innerLoss(x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar {
    return tf.tidy(() => {
      const { features, targets } = resolveBatch(this.data.train, batch);
      const ce = softmaxCrossEntropy(linearLogits(features, y.weights, y.bias), targets);
      const penalty = tf.sum(tf.mul(exp(x.logPenalty), tf.sum(tf.square(y.weights), 1)));
      return tf.add(ce, tf.mul(0.5, penalty)) as tf.Scalar;
    });
  }

  outerLoss(_x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar {
    return tf.tidy(() => {
      const { features, targets } = resolveBatch(this.data.validation, batch);
      return softmaxCrossEntropy(linearLogits(features, y.weights, y.bias), targets) as tf.Scalar;
    });
  }

  innerLossBatched(xs: TensorTree, ys: TensorTree, batch?: Batch): tf.Tensor1D {
    return tf.tidy(() => {
      const { features, targets, count } = resolveBatch(this.data.train, batch);
      // Rows first ([n, B]): the members' logits are not transposed; the 1/n of the mean is inside the op.
      const ce = tf.sum(
        memberCrossEntropies(features, targets, ys.weights, ys.bias, { scale: 1 / count }),
        0,
      );
      const penalty = tf.sum(tf.mul(exp(xs.logPenalty), tf.sum(tf.square(ys.weights), 2)), 1);
      return tf.add(ce, tf.mul(0.5, penalty)) as tf.Tensor1D;
    });
  }

  evaluate(x: TensorTree, y: TensorTree): Record<string, number> {
    const out: Record<string, number> = {
      validationAccuracy: accuracy(this.data.validation, y.weights, y.bias),
      meanLogPenalty: tf.tidy(() => tf.mean(x.logPenalty).dataSync()[0]),
    };
    if (this.data.test) out.testAccuracy = accuracy(this.data.test, y.weights, y.bias);
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
    disposeLabeledSet(this.data.train);
    disposeLabeledSet(this.data.validation);
    disposeLabeledSet(this.data.test);
  }
}
