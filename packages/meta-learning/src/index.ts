/**
 * `@bilevel/meta-learning` — few-shot meta-learning as a bilevel problem: Conv-4 and ResNet-12 backbones as
 * functional models, few-shot episodes from class-indexed image sets (Omniglot, miniImageNet layouts,
 * synthetic), the Omniglot one-shot runs, and the ANIL-style 'few-shot' problem. Importing the package
 * registers the backbones 'conv4' and 'resnet12' and the problem 'few-shot' in core's registry.
 *
 * @module @bilevel/meta-learning
 */
import { registry } from '@bilevel/core';
import { Conv4Backbone, Conv4OptionsSchema } from './conv4';
import { createFewShotProblem, FewShotProblemOptionsSchema } from './few-shot-problem';
import { ResNet12Backbone, ResNet12OptionsSchema } from './resnet12';

export {
  setConvolutionGradientStrategy,
  setFusedBatchNorm,
  conv2d,
  conv2dPadded,
  leakyRelu,
  maxPool2x2,
  globalAveragePool,
  batchNorm,
  type ConvolutionGradientStrategy,
  type BatchNormArgs,
  type BatchNormResult,
} from './layers';
export { dropBlock, type DropBlockArgs } from './drop-block';
export {
  updateRunningStatistics,
  estimateRunningStatistics,
  createBackbone,
  type ForwardOptions,
  type Backbone,
} from './backbone';
export { Conv4OptionsSchema, type Conv4Options, Conv4Backbone } from './conv4';
export {
  DropBlockOptionsSchema,
  ResNet12OptionsSchema,
  type ResNet12Options,
  ResNet12Backbone,
} from './resnet12';
export { type ClassImageSetData, ClassImageSet } from './image-set';
// ./image-files: nothing public
export { syntheticImageSet, type SyntheticImageSetOptions } from './synthetic-images';
export {
  findOmniglot,
  loadOmniglot,
  findOneShotRuns,
  loadOneShotRuns,
  type OmniglotImageOptions,
  type OmniglotOptions,
  OMNIGLOT_HOW_TO_GET,
  type OneShotRun,
  type OneShotRunsOptions,
} from './omniglot';
export { loadImageFolderSplit, type ImageFolderSplitOptions } from './image-folder';
export {
  sampleEpisode,
  sampleEpisodes,
  makeTaskBatch,
  episodeBatch,
  type EpisodeShape,
  type Episode,
} from './episodes';
// ./head: nothing public
// ./feature-cache: nothing public
export {
  loadFewShotData,
  createFewShotProblem,
  FewShotSettingsSchema,
  type FewShotSettings,
  FewShotProblemOptionsSchema,
  type FewShotProblemOptions,
  type FewShotProblemConfig,
  FewShotProblem,
} from './few-shot-problem';
export { evaluateOneShotRuns } from './one-shot-runs';

const SOURCE = '@bilevel/meta-learning';

registry.register({
  kind: 'backbone',
  name: 'conv4',
  description: 'Conv-4: four blocks of 3×3 conv, batch norm, ReLU, 2×2 max-pooling (Vinyals et al., 2016)',
  options: Conv4OptionsSchema,
  create: (o) => new Conv4Backbone(o),
  source: SOURCE,
});
registry.register({
  kind: 'backbone',
  name: 'resnet12',
  description: 'ResNet-12 (64-160-320-640, LeakyReLU 0.1, optional DropBlock), 12,424,320 parameters',
  options: ResNet12OptionsSchema,
  create: (o) => new ResNet12Backbone(o),
  source: SOURCE,
});
registry.register({
  kind: 'problem',
  name: 'few-shot',
  description:
    'ANIL-style few-shot learning: linear heads inside, the backbone outside (Omniglot, miniImageNet)',
  options: FewShotProblemOptionsSchema,
  create: (o) => createFewShotProblem(o),
  source: SOURCE,
});
