import { registerDataset, z } from '@bilevel/core';
import { readLibsvm } from './libsvm';
import { loadFashionMnist, loadMnist } from './mnist';
import { makeClassification, makeRegression } from './synthetic';

/** Options of the `fashion-mnist` and `mnist` dataset plugins. */
export const MnistDatasetOptionsSchema = z
  .object({
    split: z
      .enum(['train', 'test'])
      .default('train')
      .describe('which split: 60,000 training or 10,000 test images'),
    limit: z.number().int().min(0).optional().describe('keep only the first `limit` samples'),
    path: z
      .string()
      .min(1)
      .optional()
      .describe(
        'folder holding the four IDX files; default: search BILEVEL_DATA_PATH, ~/.cache/bilevel, /usr/share/datasets',
      ),
  })
  .strict();

/** Options of the `libsvm` dataset plugin. */
export const LibsvmDatasetOptionsSchema = z
  .object({
    file: z.string().min(1).describe('LIBSVM text file (plain or gzip)'),
    features: z
      .number()
      .int()
      .positive()
      .optional()
      .describe('number of feature columns (default: the largest index)'),
  })
  .strict();

/** Options of the `synthetic-classification` dataset plugin. */
export const SyntheticClassificationOptionsSchema = z
  .object({
    samples: z.number().int().positive().default(1000).describe('number of samples'),
    features: z.number().int().positive().default(20).describe('input dimension'),
    classes: z.number().int().min(2).default(3).describe('number of classes'),
    separation: z.number().positive().default(3).describe('norm of the Gaussian class means'),
    noise: z.number().min(0).default(1).describe('within-class standard deviation'),
    seed: z.number().int().min(0).default(0).describe('random seed'),
  })
  .strict();

/** Options of the `synthetic-regression` dataset plugin. */
export const SyntheticRegressionOptionsSchema = z
  .object({
    samples: z.number().int().positive().default(1000).describe('number of samples'),
    features: z.number().int().positive().default(20).describe('input dimension'),
    outputs: z.number().int().positive().default(1).describe('number of targets per sample'),
    noise: z.number().min(0).default(0.1).describe('standard deviation of the target noise'),
    seed: z.number().int().min(0).default(0).describe('random seed'),
  })
  .strict();

registerDataset(
  'fashion-mnist',
  (o: z.output<typeof MnistDatasetOptionsSchema>) => loadFashionMnist(o),
  MnistDatasetOptionsSchema,
  'Fashion-MNIST images and labels (IDX files)',
);
registerDataset(
  'mnist',
  (o: z.output<typeof MnistDatasetOptionsSchema>) => loadMnist(o),
  MnistDatasetOptionsSchema,
  'MNIST digits (IDX files, mnist/ under a data root)',
);
registerDataset(
  'libsvm',
  (o: z.output<typeof LibsvmDatasetOptionsSchema>) => readLibsvm(o.file, { features: o.features }),
  LibsvmDatasetOptionsSchema,
  'a sparse LIBSVM file as a CSR matrix and labels',
);
registerDataset(
  'synthetic-classification',
  (o: z.output<typeof SyntheticClassificationOptionsSchema>) => makeClassification(o),
  SyntheticClassificationOptionsSchema,
  'seeded Gaussian-mixture classification data',
);
registerDataset(
  'synthetic-regression',
  (o: z.output<typeof SyntheticRegressionOptionsSchema>) => makeRegression(o),
  SyntheticRegressionOptionsSchema,
  'seeded linear regression data',
);
