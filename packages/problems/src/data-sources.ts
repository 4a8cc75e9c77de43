import { ConfigError, z } from '@bilevel/core';
import {
  type ClassificationData,
  loadFashionMnist,
  makeClassification,
  splitIndices,
  subsetClassification,
} from '@bilevel/datasets';

/** Options of the seeded Gaussian-mixture data used by tests and quick runs. */
export const SyntheticDataOptionsSchema = z
  .object({
    features: z.number().int().positive().default(20).describe('input dimension of the synthetic data'),
    classes: z.number().int().min(2).default(3).describe('number of classes of the synthetic data'),
    separation: z.number().positive().default(3).describe('norm of the Gaussian class means'),
    noise: z.number().min(0).default(1).describe('within-class standard deviation'),
  })
  .strict();
/** Validated options of the synthetic data. */
export type SyntheticDataOptions = z.output<typeof SyntheticDataOptionsSchema>;

/** Train / validation / test parts of a dense classification data set. */
export interface ClassificationSplits {
  /** The training set. */
  readonly train: ClassificationData;
  /** The validation set. */
  readonly validation: ClassificationData;
  /** The test set, when one was asked for. */
  readonly test?: ClassificationData;
  /** Where the data came from, for reports. */
  readonly source: string;
}

/** Which data to load and how to split it (the problems' shared data options). */
export interface DenseSplitRequest {
  /** `fashion-mnist` (real data) or `synthetic`. */
  readonly dataset: 'fashion-mnist' | 'synthetic';
  /** Explicit data folder (else the documented search order). */
  readonly path?: string;
  /** Samples of the training set. */
  readonly trainSamples: number;
  /** Samples of the validation set. */
  readonly validationSamples: number;
  /** Samples of the test set (0: none). */
  readonly testSamples: number;
  /** Seed of the split (and of the synthetic data). */
  readonly seed: number;
  /** Options of the synthetic data. */
  readonly synthetic: SyntheticDataOptions;
  /** Option path for error messages, e.g. `problem.options`. */
  readonly where?: string;
}

const FASHION_TRAIN = 60000;
const FASHION_TEST = 10000;

/**
 * Disjoint seeded train / validation / test sets. Fashion-MNIST: training and validation samples are
 * drawn without overlap from the 60,000 training images, test samples from the 10,000 test images (all
 * of them by default). Synthetic: one Gaussian-mixture set split three ways.
 */
export function loadDenseSplits(req: DenseSplitRequest): ClassificationSplits {
  const where = req.where ?? 'problem.options';
  if (req.dataset === 'synthetic') {
    const total = req.trainSamples + req.validationSamples + req.testSamples;
    const all = makeClassification({
      samples: total,
      features: req.synthetic.features,
      classes: req.synthetic.classes,
      separation: req.synthetic.separation,
      noise: req.synthetic.noise,
      seed: req.seed,
    });
    const [tr, va, te] = splitIndices(total, [req.trainSamples, req.validationSamples, req.testSamples], {
      seed: req.seed + 1,
    });
    return {
      train: subsetClassification(all, tr),
      validation: subsetClassification(all, va),
      test: req.testSamples > 0 ? subsetClassification(all, te) : undefined,
      source: `synthetic (${req.synthetic.features} features, ${req.synthetic.classes} classes)`,
    };
  }
  if (req.trainSamples + req.validationSamples > FASHION_TRAIN) {
    throw new ConfigError(
      `${where}.trainSamples + validationSamples = ${req.trainSamples + req.validationSamples} exceeds the ` +
        `${FASHION_TRAIN} Fashion-MNIST training images`,
      `${where}.trainSamples`,
    );
  }
  if (req.testSamples > FASHION_TEST) {
    throw new ConfigError(
      `${where}.testSamples = ${req.testSamples} exceeds the ${FASHION_TEST} Fashion-MNIST test images`,
      `${where}.testSamples`,
    );
  }
  const [tr, va] = splitIndices(FASHION_TRAIN, [req.trainSamples, req.validationSamples], { seed: req.seed });
  const both = loadFashionMnist({ split: 'train', path: req.path, indices: Int32Array.from([...tr, ...va]) });
  const asData = (images: Float32Array, labels: Int32Array, count: number): ClassificationData => ({
    inputs: images,
    labels,
    count,
    dimension: both.rows * both.cols,
    classes: both.classes,
  });
  const all = asData(both.images, both.labels, both.count);
  const trainPart = Int32Array.from({ length: req.trainSamples }, (_, i) => i);
  const validationPart = Int32Array.from({ length: req.validationSamples }, (_, i) => req.trainSamples + i);
  let test: ClassificationData | undefined;
  if (req.testSamples > 0) {
    const pick =
      req.testSamples === FASHION_TEST
        ? undefined
        : splitIndices(FASHION_TEST, [req.testSamples], { seed: req.seed })[0];
    const t = loadFashionMnist({ split: 'test', path: req.path, ...(pick ? { indices: pick } : {}) });
    test = asData(t.images, t.labels, t.count);
  }
  return {
    train: subsetClassification(all, trainPart),
    validation: subsetClassification(all, validationPart),
    test,
    source: 'Fashion-MNIST',
  };
}
