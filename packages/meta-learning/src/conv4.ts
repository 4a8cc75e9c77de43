import * as tf from '@tensorflow/tfjs-core';
import { parseOptions, type Random, type TensorTree } from '@bilevel/core';
import { z } from 'zod';
import {
  addBatchNormBuffers,
  addBatchNormParameters,
  applyBatchNorm,
  applyConv,
  type Backbone,
  checkImages,
  type ForwardOptions,
  heNormalFilter,
} from './backbone';
import { maxPool2x2 } from './layers';

/** Options of the `conv4` backbone. */
export const Conv4OptionsSchema = z
  .object({
    filters: z.number().int().positive().default(64).describe('filters of every block (32 or 64 in the literature)'),
    imageSize: z.number().int().min(16).default(28).describe('height and width of the (square) input images'),
    channels: z.number().int().positive().default(1).describe('input channels (1 for Omniglot, 3 for miniImageNet)'),
    bias: z
      .boolean()
      .default(false)
      .describe('give each convolution a bias (redundant before batch norm, which has its own shift β)'),
    batchNormEpsilon: z.number().positive().default(1e-5).describe('ε in (x − μ)/√(σ² + ε)'),
  })
  .strict();
/** Validated options of {@link Conv4Backbone}. */
export type Conv4Options = z.output<typeof Conv4OptionsSchema>;

/** Side after four 2×2 max-poolings (floored). */
function pooledSize(s: number): number {
  let r = s;
  for (let i = 0; i < 4; i++) r = Math.floor(r / 2);
  return r;
}

/**
 * Conv-4 (Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016; the backbone of MAML,
 * Finn et al. 2017, and of ANIL, Raghu et al. 2020): four blocks of
 *
 *     3×3 convolution (F filters, 'same') → batch norm → ReLU → 2×2 max-pooling,
 *
 * then the feature map flattened: F features for 28×28 inputs (28 → 14 → 7 → 3 → 1), 25·F for 84×84.
 * Parameters: `block<i>.conv.filter` [3, 3, cᵢₙ, F] (and `.bias` [F] with `bias: true`),
 * `block<i>.bn.gamma`, `block<i>.bn.beta` [F]; buffers `block<i>.bn.runningMean`, `.runningVariance`.
 */
export class Conv4Backbone implements Backbone {
  readonly name = 'conv4';
  /** The validated options. */
  readonly options: Conv4Options;
  readonly inputShape: readonly [number, number, number];
  readonly featureDimension: number;

  constructor(options: z.input<typeof Conv4OptionsSchema> = {}) {
    this.options = parseOptions(Conv4OptionsSchema, options, 'backbone.options');
    const { imageSize: s, channels, filters } = this.options;
    this.inputShape = [s, s, channels];
    const p = pooledSize(s);
    this.featureDimension = filters * p * p;
  }

  initialParameters(rng: Random): TensorTree {
    const { filters: f, channels, bias } = this.options;
    const out: Record<string, tf.Tensor> = {};
    for (let i = 1; i <= 4; i++) {
      const cin = i === 1 ? channels : f;
      out[`block${i}.conv.filter`] = heNormalFilter(rng, 3, cin, f);
      if (bias) out[`block${i}.conv.bias`] = tf.zeros([f]);
      addBatchNormParameters(out, `block${i}.bn`, f);
    }
    return out;
  }

  initialBuffers(): TensorTree {
    const out: Record<string, tf.Tensor> = {};
    for (let i = 1; i <= 4; i++) addBatchNormBuffers(out, `block${i}.bn`, this.options.filters);
    return out;
  }

  forward(params: TensorTree, images: tf.Tensor4D, options: ForwardOptions): tf.Tensor2D {
    checkImages(this, images);
    const eps = this.options.batchNormEpsilon;
    let h = images;
    for (let i = 1; i <= 4; i++) {
      h = applyConv(h, params, `block${i}.conv`, 3, this.options.filters);
      h = applyBatchNorm(h, params, `block${i}.bn`, options, eps);
      h = maxPool2x2(tf.relu(h));
    }
    return tf.reshape(h, [h.shape[0], this.featureDimension]) as tf.Tensor2D;
  }

  parameterCount(): number {
    const { filters: f, channels, bias } = this.options;
    let n = 0;
    for (let i = 1; i <= 4; i++) n += 9 * (i === 1 ? channels : f) * f + (bias ? f : 0) + 2 * f;
    return n;
  }
}
