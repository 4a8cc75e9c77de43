import * as tf from '@tensorflow/tfjs-core';
import type { Batch, Random } from '@bilevel/core';
import type { ClassImageSet } from './image-set';

/** N-way K-shot episodes with Q query images per class. */
export interface EpisodeShape {
  /** N, classes per episode. */
  readonly ways: number;
  /** K, support images per class. */
  readonly shots: number;
  /** Query images per class. */
  readonly queries: number;
}

/**
 * One few-shot task drawn from a class-indexed set. Labels are remapped to 0 … N−1: label l stands for the
 * set's class `classes[l]`. Support and query images are distinct images of the set, ordered class by class.
 */
export interface Episode {
  /** The set's class of each episode label (N entries). */
  readonly classes: Int32Array;
  /** Image indices of the support set (N·K), class-major. */
  readonly support: Int32Array;
  /** Episode label (0 … N−1) of each support image. */
  readonly supportLabels: Int32Array;
  /** Image indices of the query set (N·Q), class-major. */
  readonly query: Int32Array;
  /** Episode label (0 … N−1) of each query image. */
  readonly queryLabels: Int32Array;
}

/** Names of a task batch's tensors (see {@link makeTaskBatch}). */
export const TASK_KEYS = {
  /** Support images [B·n_s, h, w, c], task after task. */
  supportImages: 'supportImages',
  /** One-hot support labels [B, n_s, N]. */
  supportLabels: 'supportLabels',
  /** Query images [B·n_q, h, w, c], task after task. */
  queryImages: 'queryImages',
  /** One-hot query labels [B, n_q, N]. */
  queryLabels: 'queryLabels',
} as const;

function checkShape(shape: EpisodeShape): void {
  for (const [k, v] of Object.entries(shape)) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`episode ${k} must be a positive integer (got ${v})`);
  }
}

/** Classes with at least shots + queries images. */
export function eligibleClasses(set: ClassImageSet, shape: EpisodeShape): number[] {
  const need = shape.shots + shape.queries;
  const out: number[] = [];
  set.byClass.forEach((m, c) => {
    if (m.length >= need) out.push(c);
  });
  return out;
}

/**
 * Samples an N-way K-shot episode: N distinct classes among those with at least K + Q images, then K + Q
 * distinct images of each class (the first K for the support set, the other Q for the query set), all drawn
 * with the seeded `rng`.
 */
export function sampleEpisode(set: ClassImageSet, shape: EpisodeShape, rng: Random, eligible?: number[]): Episode {
  checkShape(shape);
  const { ways, shots, queries } = shape;
  const pool = eligible ?? eligibleClasses(set, shape);
  if (pool.length < ways) {
    throw new Error(
      `cannot sample a ${ways}-way episode: only ${pool.length} of ${set.numClasses} classes have ` +
        `${shots + queries} images (${shots} shots + ${queries} queries)`,
    );
  }
  const picked = rng.sample(pool.length, ways);
  const classes = Int32Array.from(picked, (i) => pool[i]);
  const support = new Int32Array(ways * shots);
  const supportLabels = new Int32Array(ways * shots);
  const query = new Int32Array(ways * queries);
  const queryLabels = new Int32Array(ways * queries);
  classes.forEach((c, label) => {
    const members = set.byClass[c];
    const chosen = rng.sample(members.length, shots + queries);
    for (let k = 0; k < shots; k++) {
      support[label * shots + k] = members[chosen[k]];
      supportLabels[label * shots + k] = label;
    }
    for (let q = 0; q < queries; q++) {
      query[label * queries + q] = members[chosen[shots + q]];
      queryLabels[label * queries + q] = label;
    }
  });
  return { classes, support, supportLabels, query, queryLabels };
}

/** `count` independent episodes. */
export function sampleEpisodes(set: ClassImageSet, shape: EpisodeShape, count: number, rng: Random): Episode[] {
  const eligible = eligibleClasses(set, shape);
  return Array.from({ length: count }, () => sampleEpisode(set, shape, rng, eligible));
}

/** Pixels and labels of one task, before they become tensors. */
export interface TaskArrays {
  /** [n_support, h, w, c] */
  readonly supportImages: Float32Array;
  /** Episode labels of the support images. */
  readonly supportLabels: Int32Array;
  /** [n_query, h, w, c] */
  readonly queryImages: Float32Array;
  /** Episode labels of the query images. */
  readonly queryLabels: Int32Array;
}

/** Gathers an episode's pixels from its set. */
export function episodeArrays(set: ClassImageSet, episode: Episode): TaskArrays {
  const gather = (idx: Int32Array): Float32Array => {
    const p = set.pixelsPerImage;
    const out = new Float32Array(idx.length * p);
    idx.forEach((i, k) => out.set(set.image(i), k * p));
    return out;
  };
  return {
    supportImages: gather(episode.support),
    supportLabels: episode.supportLabels,
    queryImages: gather(episode.query),
    queryLabels: episode.queryLabels,
  };
}

function oneHot(tasks: readonly Int32Array[], ways: number): tf.Tensor3D {
  const n = tasks[0].length;
  const data = new Float32Array(tasks.length * n * ways);
  tasks.forEach((labels, b) => {
    if (labels.length !== n) throw new Error(`tasks of one batch need equal sizes (${labels.length} vs ${n})`);
    labels.forEach((l, i) => {
      if (!(l >= 0 && l < ways)) throw new Error(`label ${l} is outside 0 … ${ways - 1}`);
      data[(b * n + i) * ways + l] = 1;
    });
  });
  return tf.tensor3d(data, [tasks.length, n, ways]);
}

function stackImages(parts: readonly Float32Array[], count: number, imageShape: readonly number[]): tf.Tensor4D {
  const p = imageShape[0] * imageShape[1] * imageShape[2];
  const data = new Float32Array(parts.reduce((s, a) => s + a.length, 0));
  let offset = 0;
  for (const a of parts) {
    data.set(a, offset);
    offset += a.length;
  }
  if (data.length !== count * p) throw new Error(`images hold ${data.length} values, expected ${count}×${p}`);
  return tf.tensor4d(data, [count, imageShape[0], imageShape[1], imageShape[2]]);
}

/**
 * A meta-batch of B tasks of equal shape as one {@link Batch}:
 *
 * - `supportImages` [B·n_s, h, w, c] and `queryImages` [B·n_q, h, w, c], task after task (so one backbone
 *   pass serves every task, with batch-norm groups = B);
 * - `supportLabels` [B, n_s, N] and `queryLabels` [B, n_q, N], one-hot over the N remapped labels.
 */
export function makeTaskBatch(tasks: readonly TaskArrays[], ways: number, imageShape: readonly number[]): Batch {
  if (tasks.length === 0) throw new Error('makeTaskBatch: no tasks');
  const nS = tasks[0].supportLabels.length;
  const nQ = tasks[0].queryLabels.length;
  return {
    [TASK_KEYS.supportImages]: stackImages(
      tasks.map((t) => t.supportImages),
      tasks.length * nS,
      imageShape,
    ),
    [TASK_KEYS.supportLabels]: oneHot(
      tasks.map((t) => t.supportLabels),
      ways,
    ),
    [TASK_KEYS.queryImages]: stackImages(
      tasks.map((t) => t.queryImages),
      tasks.length * nQ,
      imageShape,
    ),
    [TASK_KEYS.queryLabels]: oneHot(
      tasks.map((t) => t.queryLabels),
      ways,
    ),
  };
}

/** The tensors of a meta-batch of episodes of one set (see {@link makeTaskBatch}). */
export function episodeBatch(set: ClassImageSet, episodes: readonly Episode[], ways?: number): Batch {
  const n = ways ?? episodes[0]?.classes.length ?? 0;
  return makeTaskBatch(
    episodes.map((e) => episodeArrays(set, e)),
    n,
    [set.height, set.width, set.channels],
  );
}
