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

export * from './layers';
export * from './drop-block';
export * from './backbone';
export * from './conv4';
export * from './resnet12';
export * from './image-set';
export * from './image-files';
export * from './synthetic-images';
export * from './omniglot';
export * from './image-folder';
export * from './episodes';
export * from './head';
export * from './feature-cache';
export * from './few-shot-problem';
export * from './one-shot-runs';

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
  description: 'ANIL-style few-shot learning: linear heads inside, the backbone outside (Omniglot, miniImageNet)',
  options: FewShotProblemOptionsSchema,
  create: (o) => createFewShotProblem(o),
  source: SOURCE,
});
