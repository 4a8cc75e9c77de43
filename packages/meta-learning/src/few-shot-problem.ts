import * as tf from '@tensorflow/tfjs-core';
import {
  type Batch,
  type BilevelProblem,
  ConfigError,
  parseOptions,
  Random,
  registry,
  type TensorTree,
  tidy,
} from '@bilevel/core';
import { z } from 'zod';
import { type Backbone, createBackbone, estimateRunningStatistics } from './backbone';
import {
  type Episode,
  episodeArrays,
  episodeBatch,
  type EpisodeShape,
  makeTaskBatch,
  sampleEpisodes,
  TASK_KEYS,
  type TaskArrays,
} from './episodes';
import { FeatureCache } from './feature-cache';
import {
  checkHeads,
  fitHeads,
  headInnerLoss,
  headLogits,
  meanTaskCrossEntropy,
  prototypeAccuracies,
  taskAccuracies,
  taskCrossEntropies,
  zeroHeads,
} from './head';
import { loadImageFolderSplit } from './image-folder';
import type { ClassImageSet } from './image-set';
import { loadOmniglot } from './omniglot';
import { syntheticImageSet } from './synthetic-images';

/** Episode and algorithm settings of the few-shot problem (everything but the data source). */
export const FewShotSettingsShape = {
  ways: z.number().int().min(2).default(5).describe('N: classes per task'),
  shots: z.number().int().positive().default(1).describe('K: support images per class'),
  queries: z.number().int().positive().default(15).describe('query images per class'),
  metaBatchSize: z.number().int().positive().default(4).describe('tasks per outer step'),
  headWeightDecay: z.number().min(0).default(0.01).describe('λ of the inner penalty (λ/2)‖W‖² on the head weights'),
  evalEpisodes: z.number().int().positive().default(100).describe('held-out episodes of evaluate()'),
  evalWays: z.number().int().min(2).optional().describe('N of the evaluation episodes (default: ways)'),
  evalShots: z.number().int().positive().optional().describe('K of the evaluation episodes (default: shots)'),
  evalQueries: z.number().int().positive().optional().describe('queries per class in evaluation (default: queries)'),
  evalInnerSteps: z.number().int().positive().default(100).describe('gradient steps fitting each evaluation head'),
  evalStepSize: z
    .number()
    .positive()
    .optional()
    .describe('step size of the evaluation head fit (default 1/L from a bound on the gradient Lipschitz constant)'),
  evalBatchSize: z.number().int().positive().default(10).describe('evaluation episodes per backbone pass'),
  evalBatchNorm: z
    .enum(['batch', 'running'])
    .default('batch')
    .describe(
      "'batch': each evaluation set normalized with its own statistics (transductive, as in MAML/ANIL); " +
        "'running': population statistics re-estimated at x from training episodes (precise BN)",
    ),
  batchNormCalibrationEpisodes: z
    .number()
    .int()
    .positive()
    .default(10)
    .describe("training episodes used to estimate the running statistics when evalBatchNorm is 'running'"),
  cacheFeatures: z
    .boolean()
    .default(true)
    .describe('reuse the backbone features at the same x and images (gradients with respect to x are unchanged)'),
  seed: z.number().int().min(0).default(0).describe('seed of the class split, evaluation episodes and default task'),
};

/** The problem settings (`FewShotSettingsShape`) as a strict schema. */
export const FewShotSettingsSchema = z.object(FewShotSettingsShape).strict();
/** Validated problem settings. */
export type FewShotSettings = z.output<typeof FewShotSettingsSchema>;

/** A backbone chosen by name, with its options. */
export const BackboneRefSchema = z
  .object({
    name: z.string().min(1).default('conv4').describe("registered backbone: 'conv4', 'resnet12', …"),
    options: z.record(z.unknown()).default({}).describe("the backbone's options (image size and channels come from the data)"),
  })
  .strict();

/** Options of the `few-shot` problem: the data, the backbone and the settings. */
export const FewShotProblemOptionsSchema = z
  .object({
    dataset: z
      .enum(['omniglot', 'image-folder', 'synthetic'])
      .default('omniglot')
      .describe("'omniglot' (zips or folders), 'image-folder' (miniImageNet layouts, PNG), 'synthetic'"),
    path: z.string().optional().describe('data folder (else BILEVEL_DATA_PATH, ~/.cache/bilevel, /usr/share/datasets)'),
    imageSize: z.number().int().min(16).optional().describe('image side after resizing (28 for Omniglot, 84 otherwise)'),
    omniglotSets: z.array(z.string()).optional().describe('Omniglot sets to load (default every images_background*)'),
    testAlphabets: z
      .array(z.string())
      .optional()
      .describe('Omniglot alphabets held out for evaluation (default: a random testFraction of the characters)'),
    testFraction: z
      .number()
      .gt(0)
      .lt(1)
      .default(0.25)
      .describe('fraction of classes held out for evaluation when no other split is given'),
    rotations: z.boolean().default(false).describe('add the 90°/180°/270° rotations of training classes as new classes'),
    trainSplit: z.string().default('train').describe("image-folder: training split ('<split>.csv' or '<split>/')"),
    testSplit: z.string().default('test').describe('image-folder: evaluation split'),
    channels: z.union([z.literal(1), z.literal(3)]).optional().describe('image-folder: 3 (RGB, default) or 1'),
    syntheticClasses: z.number().int().min(4).default(40).describe('synthetic: number of classes'),
    syntheticImagesPerClass: z.number().int().min(2).default(20).describe('synthetic: images per class'),
    /** The backbone φ_x by name, with its options (default `conv4`). */
    backbone: BackboneRefSchema.default({}),
    ...FewShotSettingsShape,
  })
  .strict()
  .superRefine((o, ctx) => {
    // The backbone's own options are checked here too, so a config is fully validated before data is read.
    try {
      registry.validate('backbone', o.backbone.name, o.backbone.options, 'backbone');
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      for (const line of e.message.split('\n')) {
        const m = /^([\w.]+): (.*)$/.exec(line);
        const path = (m ? m[1] : e.path).split('.').filter((p) => p !== '');
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          path: path.length > 1 ? path : ['backbone', 'name'],
          message: (m ? m[2] : line).replace(/ \(got .*\)$/, ''),
        });
      }
    }
  });
/** Validated options of the `few-shot` problem. */
export type FewShotProblemOptions = z.output<typeof FewShotProblemOptionsSchema>;

/** What a {@link FewShotProblem} is built from. */
export interface FewShotProblemConfig {
  /** The backbone (the outer variable is its parameters). */
  readonly backbone: Backbone;
  /** Meta-training classes. */
  readonly train: ClassImageSet;
  /** Held-out classes for evaluate(). */
  readonly test: ClassImageSet;
  /** Episode, evaluation and head settings (defaults filled in). */
  readonly settings?: z.input<typeof FewShotSettingsSchema>;
}

/** Features [B, n, D] from the flat [B·n, D] features of a meta-batch. */
function perTask(features: tf.Tensor2D, tasks: number): tf.Tensor3D {
  const [rows, d] = features.shape;
  return tf.reshape(features, [tasks, rows / tasks, d]) as tf.Tensor3D;
}

/**
 * Few-shot learning as a bilevel problem, ANIL-style (Raghu et al., ICLR 2020), as in the meta-learning
 * experiments of ESJ (Sow, Ji & Liang, NeurIPS 2022). For a meta-batch of B tasks τ_b (support S_b, query
 * Q_b, N ways), with φ_x the backbone of parameters x and a linear head y_b = (W_b, c_b) per task:
 *
 *     inner:  y*(x) = argmin_y Σ_b [ CE(φ_x(S_b) W_bᵀ + c_b, Y_b^S) + (λ/2)‖W_b‖² ]
 *     outer:  min_x f(x, y*(x)) = (1/B) Σ_b CE(φ_x(Q_b) W*_bᵀ + c*_b, Y_b^Q)
 *
 * The heads of the B tasks are stacked along a leading axis (y = {weight [B, N, D], bias [B, N]}), so one
 * computation serves the whole meta-batch. Each outer step draws its meta-batch once through `sampleTask`;
 * the trainer gives it to both levels (support for g, query for f), so the inner and outer losses of a step,
 * and every perturbed ES solve, see the same episodes. Batch norm runs in training mode with one group per
 * task (each task normalized with its own statistics).
 *
 * Second-order products are taken with respect to the head only (core's softmaxCrossEntropy is exact under
 * double backprop); the mixed product ∇²_xy g·v backpropagates once through the backbone.
 *
 * Because every step brings new tasks, the inner variable of one step is no warm start for the next: run the
 * trainer with `warmStart: false`, so each step starts from the zero heads of `initialY`.
 */
export class FewShotProblem implements BilevelProblem {
  readonly name = 'few-shot';
  readonly mainMetric = 'testAccuracy';
  readonly mainMetricHigherIsBetter = true;
  /** The backbone φ_x. */
  readonly backbone: Backbone;
  /** Meta-training classes. */
  readonly train: ClassImageSet;
  /** Held-out classes for {@link FewShotProblem.evaluate}. */
  readonly test: ClassImageSet;
  /** The validated settings. */
  readonly settings: FewShotSettings;
  private readonly cache: FeatureCache | null;
  private readonly trainShape: EpisodeShape;
  private readonly evalShape: EpisodeShape;
  private readonly evalEpisodes: Episode[];
  private readonly calibrationEpisodes: Episode[];
  private defaultTaskBatch: Batch | null = null;
  private readonly seeds = new WeakMap<tf.Tensor, number>();

  constructor(config: FewShotProblemConfig) {
    this.settings = parseOptions(FewShotSettingsSchema, config.settings ?? {}, 'problem.options');
    this.backbone = config.backbone;
    this.train = config.train;
    this.test = config.test;
    const [h, w, c] = this.backbone.inputShape;
    for (const [which, set] of [
      ['train', config.train],
      ['test', config.test],
    ] as const) {
      if (set.height !== h || set.width !== w || set.channels !== c) {
        throw new ConfigError(
          `${which} images are ${set.height}×${set.width}×${set.channels}, the backbone '${this.backbone.name}' ` +
            `takes ${h}×${w}×${c}`,
          'problem.options.backbone',
        );
      }
    }
    const s = this.settings;
    this.trainShape = { ways: s.ways, shots: s.shots, queries: s.queries };
    this.evalShape = { ways: s.evalWays ?? s.ways, shots: s.evalShots ?? s.shots, queries: s.evalQueries ?? s.queries };
    const rng = new Random(s.seed);
    // Fixed held-out episodes: every evaluation of a run (and of runs with the same seed) uses the same ones.
    this.evalEpisodes = sampleEpisodes(this.test, this.evalShape, s.evalEpisodes, rng.fork('eval-episodes'));
    this.calibrationEpisodes =
      s.evalBatchNorm === 'running'
        ? sampleEpisodes(this.train, this.trainShape, s.batchNormCalibrationEpisodes, rng.fork('calibration'))
        : [];
    // Validates that training tasks can be drawn at all (enough classes and images).
    sampleEpisodes(this.train, this.trainShape, 1, rng.fork('check'));
    this.cache = s.cacheFeatures ? new FeatureCache(this.backbone, 8) : null;
  }

  /** D, the backbone's feature dimension (the heads' input size). */
  get featureDimension(): number {
    return this.backbone.featureDimension;
  }

  initialX(rng: Random): TensorTree {
    return this.backbone.initialParameters(rng);
  }

  /** Zero heads for the meta-batch (ANIL's zero initialization). */
  initialY(_rng: Random, _x?: TensorTree): TensorTree {
    return zeroHeads(this.settings.metaBatchSize, this.settings.ways, this.backbone.featureDimension);
  }

  /** A meta-batch of `metaBatchSize` training episodes (see {@link episodeBatch} for the tensors). */
  sampleTask(rng: Random): Batch {
    this.cache?.clear();
    const episodes = sampleEpisodes(this.train, this.trainShape, this.settings.metaBatchSize, rng);
    const batch = episodeBatch(this.train, episodes, this.settings.ways);
    const seed = rng.nextUint32() % 2147483647;
    this.seeds.set(batch[TASK_KEYS.supportImages], seed);
    this.seeds.set(batch[TASK_KEYS.queryImages], seed + 1);
    return batch;
  }

  /** The task used when a loss is called without a batch (a fixed meta-batch drawn with the problem's seed). */
  defaultTask(): Batch {
    if (!this.defaultTaskBatch) {
      const b = tf.tidy(() => this.sampleTask(new Random(this.settings.seed).fork('default-task')));
      for (const k of Object.keys(b)) tf.keep(b[k]);
      this.defaultTaskBatch = b;
    }
    return this.defaultTaskBatch;
  }

  /**
   * Training-mode features [B, n, D] of one side (support or query) of a task batch. `recordOnMiss`: the
   * features are differentiated with respect to x at their first use (see the feature cache's request).
   */
  taskFeatures(x: TensorTree, images: tf.Tensor, tasks: number, recordOnMiss = false): tf.Tensor3D {
    const img = images as tf.Tensor4D;
    if (img.shape[0] % tasks !== 0) {
      throw new Error(`a batch of ${img.shape[0]} images cannot hold ${tasks} tasks of equal size`);
    }
    const opts = { groups: tasks, seed: this.seeds.get(images) ?? 0 };
    if (this.cache) {
      // The cached op gives the per-task shape itself (no reshape op on the tape at every inner step).
      const shape = [tasks, img.shape[0] / tasks, this.backbone.featureDimension];
      return this.cache.features(x, img, opts, { shape, recordOnMiss }) as tf.Tensor3D;
    }
    return perTask(this.backbone.forward(x, img, { training: true, ...opts }), tasks);
  }

  private batchParts(batch: Batch | undefined, side: 'support' | 'query'): { images: tf.Tensor; labels: tf.Tensor3D } {
    const b = batch ?? this.defaultTask();
    const images = b[side === 'support' ? TASK_KEYS.supportImages : TASK_KEYS.queryImages];
    const labels = b[side === 'support' ? TASK_KEYS.supportLabels : TASK_KEYS.queryLabels] as tf.Tensor3D | undefined;
    if (!images || !labels) {
      throw new Error(
        `few-shot: the batch needs '${side}Images' and '${side}Labels' (got ${Object.keys(b).join(', ') || 'nothing'})`,
      );
    }
    return { images, labels };
  }

  /** g(x, y) = Σ_b CE(support_b) + (λ/2)‖W_b‖². */
  innerLoss(x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar {
    const { images, labels } = this.batchParts(batch, 'support');
    const [B, , N] = labels.shape;
    checkHeads(y, B, N, this.backbone.featureDimension);
    const features = this.taskFeatures(x, images, B);
    return headInnerLoss(features, labels, y, this.settings.headWeightDecay);
  }

  /** f(x, y) = (1/B) Σ_b CE(query_b). */
  outerLoss(x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar {
    const { images, labels } = this.batchParts(batch, 'query');
    const [B, , N] = labels.shape;
    checkHeads(y, B, N, this.backbone.featureDimension);
    // The query features are first met in ∇ₓf (the outer gradients), which differentiates them.
    const features = this.taskFeatures(x, images, B, true);
    return meanTaskCrossEntropy(headLogits(features, y), labels);
  }

  /**
   * Query accuracy on the fixed held-out episodes at x: features of each episode's support and query sets,
   * a fresh head fitted on the support features (`evalInnerSteps` gradient steps from zero), query accuracy,
   * its 95% confidence half-width over episodes, the query loss, and the nearest-prototype accuracy. The
   * inner variable y (heads of the last training tasks) is not used.
   */
  evaluate(x: TensorTree, _y?: TensorTree): Record<string, number> {
    return this.evaluateEpisodes(x, this.test, this.evalEpisodes, this.evalShape.ways);
  }

  /** The metrics of {@link evaluate} on any episodes of any set with the backbone's image shape. */
  evaluateEpisodes(x: TensorTree, set: ClassImageSet, episodes: readonly Episode[], ways: number): Record<string, number> {
    return this.evaluateTasks(x, episodes.length, ways, (start, end) =>
      episodes.slice(start, end).map((e) => episodeArrays(set, e)),
    );
  }

  /**
   * The metrics of {@link evaluate} on `count` tasks of N = `ways` classes whose pixels `tasks(start, end)`
   * gives chunk by chunk (tasks of one chunk must have equal sizes), e.g. the Omniglot one-shot runs.
   */
  evaluateTasks(
    x: TensorTree,
    count: number,
    ways: number,
    tasks: (start: number, end: number) => readonly TaskArrays[],
  ): Record<string, number> {
    const s = this.settings;
    const buffers = s.evalBatchNorm === 'running' ? this.runningStatistics(x) : null;
    const acc: number[] = [];
    const proto: number[] = [];
    let lossSum = 0;
    for (let start = 0; start < count; start += s.evalBatchSize) {
      const chunk = tasks(start, Math.min(count, start + s.evalBatchSize));
      const r = tidy(() => {
        const batch = makeTaskBatch(chunk, ways, this.backbone.inputShape);
        const B = chunk.length;
        const forward = (images: tf.Tensor): tf.Tensor3D => {
          const img = images as tf.Tensor4D;
          const f = buffers
            ? this.backbone.forward(x, img, { training: false, buffers })
            : this.backbone.forward(x, img, { training: true, groups: B });
          return perTask(f, B);
        };
        const fs = forward(batch[TASK_KEYS.supportImages]);
        const fq = forward(batch[TASK_KEYS.queryImages]);
        const ys = batch[TASK_KEYS.supportLabels] as tf.Tensor3D;
        const yq = batch[TASK_KEYS.queryLabels] as tf.Tensor3D;
        const heads = fitHeads(fs, ys, { lambda: s.headWeightDecay, steps: s.evalInnerSteps, stepSize: s.evalStepSize });
        const logits = headLogits(fq, heads);
        return {
          accuracy: taskAccuracies(logits, yq),
          loss: tf.sum(taskCrossEntropies(logits, yq)).dataSync()[0],
          prototype: prototypeAccuracies(fs, ys, fq, yq),
        };
      });
      acc.push(...r.accuracy);
      proto.push(...r.prototype);
      lossSum += r.loss;
    }
    if (buffers) tf.dispose(Object.values(buffers));
    const n = acc.length;
    const mean = acc.reduce((a, b) => a + b, 0) / n;
    const sd = Math.sqrt(acc.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, n - 1));
    return {
      testAccuracy: mean,
      testAccuracyCi95: (1.96 * sd) / Math.sqrt(n),
      testLoss: lossSum / n,
      testPrototypeAccuracy: proto.reduce((a, b) => a + b, 0) / n,
    };
  }

  /** Running batch-norm statistics at x, estimated from the calibration episodes (precise BN). */
  runningStatistics(x: TensorTree): TensorTree {
    return tidy(() => {
      const batches: tf.Tensor4D[] = [];
      for (const e of this.calibrationEpisodes) {
        const b = episodeBatch(this.train, [e], this.trainShape.ways);
        batches.push(b[TASK_KEYS.supportImages] as tf.Tensor4D, b[TASK_KEYS.queryImages] as tf.Tensor4D);
      }
      return estimateRunningStatistics(this.backbone, x, batches);
    });
  }

  dispose(): void {
    this.cache?.dispose();
    if (this.defaultTaskBatch) tf.dispose(Object.values(this.defaultTaskBatch));
    this.defaultTaskBatch = null;
  }
}

/** Loads the data named by the options and splits it into meta-training and held-out classes. */
export function loadFewShotData(options: FewShotProblemOptions): {
  /** Meta-training classes. */
  train: ClassImageSet;
  /** Held-out classes. */
  test: ClassImageSet;
} {
  const o = options;
  const split = (set: ClassImageSet): { train: ClassImageSet; test: ClassImageSet } =>
    o.testAlphabets ? set.splitByGroups(o.testAlphabets) : set.splitRandomly(o.testFraction, o.seed);
  let parts: { train: ClassImageSet; test: ClassImageSet };
  if (o.dataset === 'omniglot') {
    parts = split(loadOmniglot({ path: o.path, sets: o.omniglotSets, imageSize: o.imageSize ?? 28 }));
  } else if (o.dataset === 'image-folder') {
    const common = { path: o.path, imageSize: o.imageSize ?? 84, channels: o.channels ?? 3 };
    parts = {
      train: loadImageFolderSplit({ ...common, split: o.trainSplit }),
      test: loadImageFolderSplit({ ...common, split: o.testSplit }),
    };
  } else {
    const set = syntheticImageSet({
      classes: o.syntheticClasses,
      imagesPerClass: o.syntheticImagesPerClass,
      imageSize: o.imageSize ?? 28,
      channels: o.channels ?? 1,
      seed: o.seed,
    });
    parts = split(set);
  }
  return o.rotations ? { train: parts.train.withRotations(), test: parts.test } : parts;
}

/** Backbone options with the data's image size and channels filled in (a conflicting value is a ConfigError). */
function backboneOptionsFor(options: FewShotProblemOptions, data: ClassImageSet): Record<string, unknown> {
  const given = options.backbone.options;
  const out: Record<string, unknown> = { ...given };
  for (const [key, value] of [
    ['imageSize', data.height],
    ['channels', data.channels],
  ] as const) {
    if (given[key] !== undefined && given[key] !== value) {
      throw new ConfigError(
        `problem.options.backbone.options.${key}: ${String(given[key])} does not match the data (${value})`,
        `problem.options.backbone.options.${key}`,
      );
    }
    out[key] = value;
  }
  return out;
}

/** Builds the 'few-shot' problem from validated options: loads data, creates the backbone. */
export function createFewShotProblem(input: z.input<typeof FewShotProblemOptionsSchema> = {}): FewShotProblem {
  const options = parseOptions(FewShotProblemOptionsSchema, input, 'problem.options');
  const { train, test } = loadFewShotData(options);
  const backbone = createBackbone(
    options.backbone.name,
    backboneOptionsFor(options, train),
    'problem.options.backbone',
  );
  const settings: Record<string, unknown> = {};
  for (const key of Object.keys(FewShotSettingsShape)) settings[key] = (options as Record<string, unknown>)[key];
  return new FewShotProblem({ backbone, train, test, settings });
}
