import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, type Random, registry, type TensorTree } from '@bilevel/core';
import { batchNorm, conv2d } from './layers';

/** How a backbone's forward pass runs. */
export interface ForwardOptions {
  /**
   * Training mode: batch normalization with the statistics of the batch (of each group), stochastic layers
   * (DropBlock) active. Evaluation mode: the running statistics of `buffers`, no DropBlock.
   */
  readonly training: boolean;
  /** Running statistics of the batch-norm layers (required in evaluation mode), see {@link Backbone.initialBuffers}. */
  readonly buffers?: TensorTree;
  /**
   * Number of consecutive equal-size groups of the batch normalized independently in training mode — one per
   * few-shot task when a meta-batch of tasks runs as one batch. Default 1.
   */
  readonly groups?: number;
  /** Seed of stochastic layers (DropBlock masks); the same seed gives the same masks. Default 0. */
  readonly seed?: number;
  /**
   * When given (training mode), each batch-norm layer writes its batch statistics here under the names of
   * its buffers: `<layer>.runningMean` (mean) and `<layer>.runningVariance` (unbiased variance).
   */
  readonly statistics?: Record<string, tf.Tensor>;
}

/**
 * A feature extractor φ_x as a functional model: its trainable parameters are an explicit tensor tree x
 * (the outer variable of the few-shot bilevel problem), and batch-norm running statistics are separate
 * buffers, so `forward(params, images, options)` is a pure function of its arguments.
 */
export interface Backbone {
  /** The backbone's registered name, e.g. `conv4`. */
  readonly name: string;
  /** [height, width, channels] of the images it takes. */
  readonly inputShape: readonly [number, number, number];
  /** Length of the feature vector per image. */
  readonly featureDimension: number;
  /** Initial parameters (He-normal convolutions, γ = 1, β = 0). */
  initialParameters(rng: Random): TensorTree;
  /** Initial running statistics: mean 0 and variance 1 for every batch-norm layer. */
  initialBuffers(): TensorTree;
  /** Features [n, featureDimension] of images [n, h, w, c]. */
  forward(params: TensorTree, images: tf.Tensor4D, options: ForwardOptions): tf.Tensor2D;
  /** Number of trainable parameters (scalars). */
  parameterCount(): number;
}

/** Checks that images fit the backbone; the error names the expected and the given shape. */
export function checkImages(backbone: Backbone, images: tf.Tensor): void {
  const [h, w, c] = backbone.inputShape;
  const s = images.shape;
  if (s.length !== 4 || s[1] !== h || s[2] !== w || s[3] !== c) {
    throw new Error(
      `${backbone.name}: images must have shape [n, ${h}, ${w}, ${c}] (got [${s.join(', ')}])`,
    );
  }
}

/** Checks that a parameter tree holds every tensor a backbone reads, with the right shape. */
export function expectParameter(params: TensorTree, name: string, shape: readonly number[]): tf.Tensor {
  const t = params[name];
  if (!t) throw new Error(`backbone parameter '${name}' is missing`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`backbone parameter '${name}' has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
  }
  return t;
}

/** He-normal (Kaiming) filter for ReLU-family layers, fan-out mode: N(0, 2/(k²·cₒᵤₜ)). */
export function heNormalFilter(rng: Random, k: number, cin: number, cout: number): tf.Tensor4D {
  return rng.normalTensor([k, k, cin, cout], 0, Math.sqrt(2 / (k * k * cout))) as tf.Tensor4D;
}

/** Adds the γ (ones) and β (zeros) of a batch-norm layer to a parameter record. */
export function addBatchNormParameters(out: Record<string, tf.Tensor>, layer: string, channels: number): void {
  out[`${layer}.gamma`] = tf.ones([channels]);
  out[`${layer}.beta`] = tf.zeros([channels]);
}

/** Adds the running mean (zeros) and variance (ones) of a batch-norm layer to a buffer record. */
export function addBatchNormBuffers(out: Record<string, tf.Tensor>, layer: string, channels: number): void {
  out[`${layer}.runningMean`] = tf.zeros([channels]);
  out[`${layer}.runningVariance`] = tf.ones([channels]);
}

/** Applies the batch-norm layer `layer` of a backbone, in the mode of `options`. */
export function applyBatchNorm(
  x: tf.Tensor4D,
  params: TensorTree,
  layer: string,
  options: ForwardOptions,
  epsilon: number,
): tf.Tensor4D {
  const c = x.shape[3];
  const gamma = expectParameter(params, `${layer}.gamma`, [c]) as tf.Tensor1D;
  const beta = expectParameter(params, `${layer}.beta`, [c]) as tf.Tensor1D;
  if (!options.training) {
    const buffers = options.buffers;
    if (!buffers) throw new Error('evaluation mode (training: false) needs the batch-norm buffers');
    const runningMean = buffers[`${layer}.runningMean`] as tf.Tensor1D | undefined;
    const runningVariance = buffers[`${layer}.runningVariance`] as tf.Tensor1D | undefined;
    if (!runningMean || !runningVariance) throw new Error(`batch-norm buffers of layer '${layer}' are missing`);
    return batchNorm(x, { gamma, beta, epsilon, training: false, runningMean, runningVariance }).y;
  }
  const r = batchNorm(x, { gamma, beta, epsilon, training: true, groups: options.groups, statistics: !!options.statistics });
  if (options.statistics && r.mean && r.variance && r.count !== undefined) {
    const m = r.count;
    options.statistics[`${layer}.runningMean`] = r.mean;
    options.statistics[`${layer}.runningVariance`] = m > 1 ? tf.mul(r.variance, m / (m - 1)) : r.variance;
  }
  return r.y;
}

/** A convolution from the parameter tree: filter `<layer>.filter` and optional bias `<layer>.bias`. */
export function applyConv(x: tf.Tensor4D, params: TensorTree, layer: string, k: number, cout: number): tf.Tensor4D {
  const filter = expectParameter(params, `${layer}.filter`, [k, k, x.shape[3], cout]) as tf.Tensor4D;
  const y = conv2d(x, filter);
  const bias = params[`${layer}.bias`];
  return bias ? (tf.add(y, bias) as tf.Tensor4D) : y;
}

/**
 * Exponential moving average of running statistics, as in PyTorch:
 * running ← (1 − momentum)·running + momentum·batch.
 */
export function updateRunningStatistics(
  buffers: TensorTree,
  statistics: TensorTree,
  momentum: number,
): TensorTree {
  if (!(momentum >= 0 && momentum <= 1)) throw new Error(`momentum must be in [0, 1] (got ${momentum})`);
  const out: Record<string, tf.Tensor> = {};
  for (const name of Object.keys(buffers)) {
    const s = statistics[name];
    out[name] = s ? tf.add(tf.mul(buffers[name], 1 - momentum), tf.mul(s, momentum)) : tf.clone(buffers[name]);
  }
  return out;
}

/**
 * Population statistics of the batch-norm layers at parameters `params` ("precise BN"): the average of the
 * batch statistics of `batches`, each forwarded in training mode (with `groups` groups). A side-effect-free
 * way to obtain evaluation-mode buffers for the current parameters.
 */
export function estimateRunningStatistics(
  backbone: Backbone,
  params: TensorTree,
  batches: readonly tf.Tensor4D[],
  groups = 1,
): TensorTree {
  if (batches.length === 0) throw new Error('estimateRunningStatistics: no batches');
  return tf.tidy(() => {
    const sums: Record<string, tf.Tensor> = {};
    for (const images of batches) {
      const stats: Record<string, tf.Tensor> = {};
      backbone.forward(params, images, { training: true, groups, statistics: stats });
      for (const name of Object.keys(stats)) sums[name] = sums[name] ? tf.add(sums[name], stats[name]) : stats[name];
    }
    const out: Record<string, tf.Tensor> = {};
    for (const name of Object.keys(sums)) out[name] = tf.div(sums[name], batches.length);
    return out;
  });
}

/** Creates a registered backbone by name (`conv4`, `resnet12`, or a user's own), options validated. */
export function createBackbone(name: string, options: unknown = {}, path = 'backbone'): Backbone {
  const created = registry.create('backbone', name, options, path);
  if (!isBackbone(created)) throw new ConfigError(`${path}: plugin '${name}' is not a backbone`, path);
  return created;
}

function isBackbone(v: unknown): v is Backbone {
  const b = v as Partial<Backbone> | null;
  return !!b && typeof b.forward === 'function' && typeof b.initialParameters === 'function';
}
