/**
 * Data for Bilevel: data-path resolution, IDX (MNIST, Fashion-MNIST) and LIBSVM readers, sparse
 * products, synthetic data, splits, label corruption and minibatch samplers. Importing the package registers
 * the `dataset` plugins in core's registry.
 *
 * @module @bilevel/datasets
 */
export {
  dataCacheRoot,
  dataSearchPaths,
  resolveDataPath,
  describeSearch,
  DATA_PATH_ENV,
  SYSTEM_DATA_ROOT,
  type DataSearchPath,
} from './data-path';
export { parseIdx, readIdx, encodeIdx, type IdxDtype, type IdxData, type IdxArray } from './idx';
export {
  findMnistLayout,
  findFashionMnist,
  loadMnistLayout,
  loadFashionMnist,
  loadMnist,
  type ImageClassificationData,
  type MnistSplit,
  type MnistLoadOptions,
  type MnistLayoutInfo,
  FASHION_MNIST,
  MNIST,
  type MnistSearch,
} from './mnist';
export {
  parseLibsvm,
  readLibsvm,
  labelsToClasses,
  csrSelectRows,
  csrToDense,
  denseToCsr,
  type CsrMatrix,
  type LibsvmData,
  type LibsvmReadOptions,
} from './libsvm';
export { sparseTensorsFromCsr, gatherRows, sparseDenseMatMul, type SparseTensors } from './sparse';
export {
  makeClassification,
  makeRegression,
  type ClassificationData,
  type RegressionData,
  type ClassificationOptions,
  type RegressionOptions,
} from './synthetic';
export { subsetClassification, splitIndices, trainValidationTestSplit } from './splits';
export { corruptLabels, type CorruptedLabels, type CorruptionOptions } from './corruption';
export { type MinibatchSamplerState, MinibatchSampler } from './sampler';
export {
  MnistDatasetOptionsSchema,
  LibsvmDatasetOptionsSchema,
  SyntheticClassificationOptionsSchema,
  SyntheticRegressionOptionsSchema,
} from './plugins';
