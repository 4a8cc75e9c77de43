import { ConfigError, registry } from '@bilevel/core';
import './index';
import type { ClassificationData } from './index';

describe('dataset plugins', () => {
  it('registers the loaders by name with validated options', () => {
    expect(registry.names('dataset')).toEqual(
      expect.arrayContaining([
        'fashion-mnist',
        'mnist',
        'libsvm',
        'synthetic-classification',
        'synthetic-regression',
      ]),
    );
    const d = registry.create('dataset', 'synthetic-classification', {
      samples: 12,
      features: 3,
      classes: 4,
    }) as ClassificationData;
    expect([d.count, d.dimension, d.classes]).toEqual([12, 3, 4]);
    expect(() => registry.create('dataset', 'synthetic-classification', { classes: 1 })).toThrow(ConfigError);
    expect(() => registry.create('dataset', 'synthetic-classification', { classes: 1 })).toThrow(
      /dataset\.options\.classes/,
    );
    expect(() => registry.create('dataset', 'fashion-mnist', { split: 'valid' })).toThrow(
      /split: must be one of 'train', 'test'/,
    );
    expect(() => registry.create('dataset', 'libsvm', { file: 'x', extra: 1 })).toThrow(
      /unknown option\(s\) 'extra'/,
    );
  });
});
