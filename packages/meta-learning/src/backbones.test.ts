import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, Random, type TensorTree, treeDispose, treeFromTensors, treeNames, treeSize } from '@bilevel/core';
import {
  Conv4Backbone,
  createBackbone,
  estimateRunningStatistics,
  ResNet12Backbone,
  updateRunningStatistics,
} from './index';

function gradients(f: (p: TensorTree) => tf.Scalar, params: TensorTree): TensorTree {
  const names = treeNames(params);
  const grads = tf.grads((...ts: tf.Tensor[]) => f(treeFromTensors(names, ts)))(names.map((n) => params[n]));
  return treeFromTensors(names, grads);
}

describe('ResNet-12', () => {
  it('has exactly 12,424,320 trainable parameters and gives a 640-d feature for an 84×84×3 image', () => {
    const backbone = new ResNet12Backbone();
    expect(backbone.parameterCount()).toBe(12_424_320);
    const params = backbone.initialParameters(new Random(0));
    const buffers = backbone.initialBuffers();
    expect(treeSize(params)).toBe(12_424_320);
    expect(backbone.featureDimension).toBe(640);
    // 4 blocks × (3 convolutions + 1 shortcut) filters, 4 batch norms × (γ, β): 48 tensors, no biases.
    expect(treeNames(params)).toHaveLength(48);
    expect(treeNames(params).filter((n) => n.endsWith('.bias'))).toHaveLength(0);
    expect(params['block4.conv3.filter'].shape).toEqual([3, 3, 640, 640]);
    expect(params['block1.shortcut.filter'].shape).toEqual([1, 1, 3, 64]);
    const image = new Random(1).uniformTensor([1, 84, 84, 3]) as tf.Tensor4D;
    const t0 = performance.now();
    const features = tf.tidy(() => backbone.forward(params, image, { training: false, buffers }));
    const seconds = (performance.now() - t0) / 1000;
    console.log(`ResNet-12 forward, one 84×84×3 image, tfjs '${tf.getBackend()}' backend: ${seconds.toFixed(1)} s`);
    expect(features.shape).toEqual([1, 640]);
    const v = features.dataSync();
    expect(v.every(Number.isFinite)).toBe(true);
    // After the final LeakyReLU and average pooling some features are positive.
    expect(Math.max(...v)).toBeGreaterThan(0);
    tf.dispose([features, image]);
    treeDispose(params);
    treeDispose(buffers);
  });

  it('applies DropBlock in training mode only when enabled, with masks fixed by the seed', () => {
    tf.tidy(() => {
      const widths = [4, 4, 6, 8];
      const on = new ResNet12Backbone({ imageSize: 32, channels: 1, widths, dropBlock: { enabled: true, dropRate: 0.3 } });
      const off = new ResNet12Backbone({ imageSize: 32, channels: 1, widths });
      const params = on.initialParameters(new Random(2));
      const buffers = on.initialBuffers();
      const x = new Random(3).uniformTensor([4, 32, 32, 1]) as tf.Tensor4D;
      const diff = (a: tf.Tensor, b: tf.Tensor) => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0];
      const a = on.forward(params, x, { training: true, seed: 5 });
      const b = on.forward(params, x, { training: true, seed: 5 });
      const c = on.forward(params, x, { training: true, seed: 6 });
      const plain = off.forward(params, x, { training: true, seed: 5 });
      expect(diff(a, b)).toBe(0);
      expect(diff(a, c)).toBeGreaterThan(1e-4);
      expect(diff(a, plain)).toBeGreaterThan(1e-4);
      // Evaluation mode never drops.
      expect(diff(on.forward(params, x, { training: false, buffers }), off.forward(params, x, { training: false, buffers }))).toBe(0);
    });
  });

  it('counts parameters for other widths with the same formula as its tree', () => {
    const b = new ResNet12Backbone({ imageSize: 16, channels: 1, widths: [2, 3, 4, 5] });
    const p = b.initialParameters(new Random(0));
    expect(treeSize(p)).toBe(b.parameterCount());
    treeDispose(p);
  });
});

describe('Conv-4', () => {
  it('has the documented shapes, parameter count and feature size', () => {
    const b = new Conv4Backbone({ filters: 32 });
    const p = b.initialParameters(new Random(0));
    // 9·1·32 + 3·9·32·32 filters + 4·2·32 batch-norm parameters.
    expect(b.parameterCount()).toBe(9 * 32 + 3 * 9 * 32 * 32 + 8 * 32);
    expect(treeSize(p)).toBe(b.parameterCount());
    expect(b.featureDimension).toBe(32);
    expect(new Conv4Backbone({ imageSize: 84, channels: 3 }).featureDimension).toBe(64 * 5 * 5);
    const withBias = new Conv4Backbone({ filters: 8, bias: true });
    const pb = withBias.initialParameters(new Random(0));
    expect(treeSize(pb)).toBe(withBias.parameterCount());
    expect(pb['block3.conv.bias'].shape).toEqual([8]);
    treeDispose(p);
    treeDispose(pb);
  });

  it('passes a finite-difference gradient check in every parameter tensor', () => {
    const backbone = new Conv4Backbone({ filters: 3, imageSize: 16, channels: 2, bias: true });
    const rng = new Random(11);
    const params = backbone.initialParameters(rng);
    const images = rng.uniformTensor([4, 16, 16, 2]) as tf.Tensor4D;
    const r = rng.normalTensor([4, backbone.featureDimension]);
    const loss = (p: TensorTree): tf.Scalar =>
      tf.sum(tf.mul(backbone.forward(p, images, { training: true, groups: 2 }), r)) as tf.Scalar;
    const grad = gradients(loss, params);
    // Small steps along unit directions: ReLU and max-pooling kinks spoil larger ones (the error of the
    // central difference grows with the step here), while float32 rounding stays below 1e-2 relative.
    const eps = 2e-4;
    for (const name of treeNames(params)) {
      tf.tidy(() => {
        // Directional derivative along a random direction in this tensor only: ⟨∇L, v⟩ vs central differences.
        const u = rng.normalTensor(params[name].shape);
        const v = tf.div(u, tf.norm(u));
        const shifted = (s: number): number =>
          loss({ ...params, [name]: tf.add(params[name], tf.mul(v, s)) }).dataSync()[0];
        const fd = (shifted(eps) - shifted(-eps)) / (2 * eps);
        const ad = tf.sum(tf.mul(grad[name], v)).dataSync()[0];
        expect(Math.abs(ad - fd)).toBeLessThan(2e-2 * Math.abs(fd) + 1e-2);
      });
    }
    treeDispose(grad);
    treeDispose(params);
    tf.dispose([images, r]);
  });

  it('batch norm: training mode uses the statistics of the batch (of each group), evaluation mode the buffers', () => {
    const backbone = new Conv4Backbone({ filters: 4, imageSize: 16 });
    const rng = new Random(4);
    const params = backbone.initialParameters(rng);
    tf.tidy(() => {
      const a = rng.uniformTensor([3, 16, 16, 1]) as tf.Tensor4D;
      const b = tf.add(tf.mul(rng.uniformTensor([3, 16, 16, 1]), 5), 2) as tf.Tensor4D;
      const diff = (u: tf.Tensor, w: tf.Tensor) => tf.max(tf.abs(tf.sub(u, w))).dataSync()[0];
      const rows = (t: tf.Tensor, start: number, n: number) => tf.slice(t, [start, 0], [n, -1]);
      // Training: the features of a depend on the batch they are in ...
      const alone = backbone.forward(params, a, { training: true });
      const mixed = backbone.forward(params, tf.concat([a, b]) as tf.Tensor4D, { training: true });
      expect(diff(rows(mixed, 0, 3), alone)).toBeGreaterThan(1e-3);
      // ... unless the batch is split into groups with their own statistics.
      const grouped = backbone.forward(params, tf.concat([a, b]) as tf.Tensor4D, { training: true, groups: 2 });
      expect(diff(rows(grouped, 0, 3), alone)).toBeLessThan(1e-4);
      // Evaluation: each image's features are independent of the rest of the batch.
      const buffers = backbone.initialBuffers();
      const evalAlone = backbone.forward(params, a, { training: false, buffers });
      const evalMixed = backbone.forward(params, tf.concat([a, b]) as tf.Tensor4D, { training: false, buffers });
      expect(diff(rows(evalMixed, 0, 3), evalAlone)).toBeLessThan(1e-5);
      expect(diff(evalAlone, alone)).toBeGreaterThan(1e-3);
      // With buffers holding the batch's own statistics (biased variance), evaluation equals training.
      const stats = estimateRunningStatistics(backbone, params, [a]);
      const biased: Record<string, tf.Tensor> = {};
      for (const name of Object.keys(stats)) {
        const block = Number(/^block(\d)/.exec(name)?.[1]);
        const m = 3 * (16 / 2 ** (block - 1)) ** 2; // values per channel at that block's batch norm
        biased[name] = name.endsWith('runningVariance') ? tf.mul(stats[name], (m - 1) / m) : stats[name];
      }
      expect(diff(backbone.forward(params, a, { training: false, buffers: biased }), alone)).toBeLessThan(1e-3);
      // Running statistics: EMA with momentum m, and momentum 1 copies the batch statistics.
      const ema = updateRunningStatistics(buffers, stats, 0.1);
      const name = 'block2.bn.runningMean';
      const expected = tf.add(tf.mul(buffers[name], 0.9), tf.mul(stats[name], 0.1));
      expect(diff(ema[name], expected)).toBeLessThan(1e-6);
      expect(diff(updateRunningStatistics(buffers, stats, 1)[name], stats[name])).toBe(0);
      expect(() => backbone.forward(params, a, { training: false })).toThrow(/buffers/);
    });
    treeDispose(params);
  });

  it('rejects images of the wrong shape, naming both shapes', () => {
    const backbone = new Conv4Backbone({ filters: 4, imageSize: 16 });
    const params = backbone.initialParameters(new Random(0));
    tf.tidy(() => {
      expect(() => backbone.forward(params, tf.zeros([2, 28, 28, 1]) as tf.Tensor4D, { training: true })).toThrow(
        /\[n, 16, 16, 1\] \(got \[2, 28, 28, 1\]\)/,
      );
    });
    treeDispose(params);
  });
});

describe('backbone plugins', () => {
  it("are registered as 'conv4' and 'resnet12' with validated options", () => {
    expect(createBackbone('conv4', { filters: 32 }).featureDimension).toBe(32);
    expect(createBackbone('resnet12', { imageSize: 32 }).featureDimension).toBe(640);
    const bad = (name: string, options: unknown): ConfigError => {
      try {
        createBackbone(name, options);
      } catch (e) {
        return e as ConfigError;
      }
      throw new Error('expected a ConfigError');
    };
    expect(bad('conv4', { filters: 0 })).toBeInstanceOf(ConfigError);
    expect(bad('conv4', { filters: 0 }).path).toBe('backbone.options.filters');
    expect(bad('resnet12', { dropBlock: { blockSize: 'five' } }).path).toBe('backbone.options.dropBlock.blockSize');
    expect(bad('resnet12', { width: [1] }).message).toMatch(/unknown option\(s\) 'width'/);
    expect(bad('vgg', {}).message).toMatch(/unknown backbone 'vgg'.*conv4.*resnet12/);
  });
});
