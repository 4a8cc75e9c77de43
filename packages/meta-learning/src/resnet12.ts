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
import { dropBlock } from './drop-block';
import { globalAveragePool, leakyRelu, maxPool2x2 } from './layers';

/** Options of DropBlock in the last two residual blocks. */
export const DropBlockOptionsSchema = z
  .object({
    enabled: z.boolean().default(false).describe('apply DropBlock in the last two residual blocks (training mode)'),
    blockSize: z.number().int().positive().default(5).describe('side b of the dropped b×b blocks'),
    dropRate: z.number().min(0).lt(1).default(0.1).describe('target fraction of dropped activations'),
  })
  .strict();

/** Options of the `resnet12` backbone. */
export const ResNet12OptionsSchema = z
  .object({
    imageSize: z.number().int().min(16).default(84).describe('height and width of the (square) input images'),
    channels: z.number().int().positive().default(3).describe('input channels'),
    widths: z
      .array(z.number().int().positive())
      .length(4)
      .default([64, 160, 320, 640])
      .describe('output channels of the four residual blocks'),
    leakySlope: z.number().min(0).max(1).default(0.1).describe('negative slope α of LeakyReLU'),
    dropBlock: DropBlockOptionsSchema.default({}).describe('DropBlock in blocks 3 and 4 (off by default)'),
    batchNormEpsilon: z.number().positive().default(1e-5).describe('ε in (x − μ)/√(σ² + ε)'),
  })
  .strict();
/** Validated options of {@link ResNet12Backbone}. */
export type ResNet12Options = z.output<typeof ResNet12OptionsSchema>;

/**
 * ResNet-12, the few-shot backbone of TADAM (Oreshkin et al., 2018) and MetaOptNet (Lee et al., CVPR 2019),
 * used by the ESJ paper (Sow, Ji & Liang, NeurIPS 2022) for miniImageNet. Four residual blocks of widths
 * 64, 160, 320, 640; block i with input x:
 *
 *     h = BN₃(conv₃(σ(BN₂(conv₂(σ(BN₁(conv₁ x)))))))        3×3 convolutions without bias
 *     s = BN_s(conv_s x)                                     1×1 convolution shortcut
 *     out = DropBlock(maxPool₂ₓ₂(σ(h + s)))                  σ = LeakyReLU(0.1); DropBlock in blocks 3, 4
 *
 * then global average pooling: a 640-d feature (84 → 42 → 21 → 10 → 5 spatially for 84×84 inputs).
 * With γ and β per batch-norm channel it has exactly 12,424,320 trainable parameters.
 * Parameters: `block<i>.conv<j>.filter` (j = 1, 2, 3), `block<i>.shortcut.filter`, and `.gamma`/`.beta` of
 * `block<i>.bn<j>` and `block<i>.shortcutBn`; buffers `<bn>.runningMean`, `<bn>.runningVariance`.
 */
export class ResNet12Backbone implements Backbone {
  readonly name = 'resnet12';
  /** The validated options. */
  readonly options: ResNet12Options;
  readonly inputShape: readonly [number, number, number];
  readonly featureDimension: number;

  constructor(options: z.input<typeof ResNet12OptionsSchema> = {}) {
    this.options = parseOptions(ResNet12OptionsSchema, options, 'backbone.options');
    const { imageSize: s, channels, widths } = this.options;
    this.inputShape = [s, s, channels];
    this.featureDimension = widths[3];
  }

  private blockInputs(): number[] {
    const { channels, widths } = this.options;
    return [channels, widths[0], widths[1], widths[2]];
  }

  private batchNormLayers(): { layer: string; channels: number }[] {
    const out: { layer: string; channels: number }[] = [];
    this.options.widths.forEach((w, b) => {
      for (const l of ['bn1', 'bn2', 'bn3', 'shortcutBn']) out.push({ layer: `block${b + 1}.${l}`, channels: w });
    });
    return out;
  }

  initialParameters(rng: Random): TensorTree {
    const out: Record<string, tf.Tensor> = {};
    const inputs = this.blockInputs();
    this.options.widths.forEach((w, b) => {
      const p = `block${b + 1}`;
      out[`${p}.conv1.filter`] = heNormalFilter(rng, 3, inputs[b], w);
      out[`${p}.conv2.filter`] = heNormalFilter(rng, 3, w, w);
      out[`${p}.conv3.filter`] = heNormalFilter(rng, 3, w, w);
      out[`${p}.shortcut.filter`] = heNormalFilter(rng, 1, inputs[b], w);
    });
    for (const { layer, channels } of this.batchNormLayers()) addBatchNormParameters(out, layer, channels);
    return out;
  }

  initialBuffers(): TensorTree {
    const out: Record<string, tf.Tensor> = {};
    for (const { layer, channels } of this.batchNormLayers()) addBatchNormBuffers(out, layer, channels);
    return out;
  }

  forward(params: TensorTree, images: tf.Tensor4D, options: ForwardOptions): tf.Tensor2D {
    checkImages(this, images);
    const { widths, leakySlope: a, batchNormEpsilon: eps, dropBlock: db } = this.options;
    let x = images;
    widths.forEach((w, b) => {
      const p = `block${b + 1}`;
      let h = applyConv(x, params, `${p}.conv1`, 3, w);
      h = leakyRelu(applyBatchNorm(h, params, `${p}.bn1`, options, eps), a);
      h = applyConv(h, params, `${p}.conv2`, 3, w);
      h = leakyRelu(applyBatchNorm(h, params, `${p}.bn2`, options, eps), a);
      h = applyConv(h, params, `${p}.conv3`, 3, w);
      h = applyBatchNorm(h, params, `${p}.bn3`, options, eps);
      const s = applyBatchNorm(applyConv(x, params, `${p}.shortcut`, 1, w), params, `${p}.shortcutBn`, options, eps);
      let out = maxPool2x2(leakyRelu(tf.add(h, s) as tf.Tensor4D, a));
      if (db.enabled && options.training && b >= 2) {
        out = dropBlock(out, { blockSize: db.blockSize, dropRate: db.dropRate, seed: (options.seed ?? 0) * 4 + b });
      }
      x = out;
    });
    return globalAveragePool(x);
  }

  parameterCount(): number {
    const inputs = this.blockInputs();
    return this.options.widths.reduce(
      (n, w, b) => n + 9 * inputs[b] * w + 2 * 9 * w * w + inputs[b] * w + 4 * 2 * w,
      0,
    );
  }
}
