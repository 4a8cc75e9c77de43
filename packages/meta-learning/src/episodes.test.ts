import * as tf from '@tensorflow/tfjs-core';
import { Random } from '@bilevel/core';
import {
  ClassImageSet,
  episodeBatch,
  sampleEpisode,
  sampleEpisodes,
  syntheticImageSet,
  type Episode,
} from './index';
import { resizeArea, rotateImage } from './image-set';
import { TASK_KEYS } from './episodes';

/** Checks everything an episode promises about its set; returns nothing, fails loudly. */
function checkEpisode(set: ClassImageSet, e: Episode, ways: number, shots: number, queries: number): void {
  expect(new Set(e.classes).size).toBe(ways);
  expect(e.support).toHaveLength(ways * shots);
  expect(e.query).toHaveLength(ways * queries);
  // Support and query are disjoint, and no image appears twice.
  const all = [...e.support, ...e.query];
  expect(new Set(all).size).toBe(all.length);
  // Labels are 0 … N−1 and label l stands for the set's class classes[l].
  e.support.forEach((img, j) => expect(set.labels[img]).toBe(e.classes[e.supportLabels[j]]));
  e.query.forEach((img, j) => expect(set.labels[img]).toBe(e.classes[e.queryLabels[j]]));
  for (let l = 0; l < ways; l++) {
    expect(Array.from(e.supportLabels).filter((v) => v === l)).toHaveLength(shots);
    expect(Array.from(e.queryLabels).filter((v) => v === l)).toHaveLength(queries);
  }
}

describe('episode sampling (synthetic images)', () => {
  const set = syntheticImageSet({ classes: 12, imagesPerClass: 7, imageSize: 8, channels: 2, seed: 1 });

  it('draws N distinct classes, disjoint support and query sets, labels remapped to 0 … N−1', () => {
    const rng = new Random(3);
    for (let i = 0; i < 50; i++)
      checkEpisode(set, sampleEpisode(set, { ways: 5, shots: 2, queries: 3 }, rng), 5, 2, 3);
    // Over many episodes every class is used, at every label position.
    const used = new Set<number>();
    for (const e of sampleEpisodes(set, { ways: 5, shots: 1, queries: 1 }, 100, rng))
      e.classes.forEach((c) => used.add(c));
    expect(used.size).toBe(12);
  });

  it('is reproducible from the seed', () => {
    const a = sampleEpisodes(set, { ways: 3, shots: 1, queries: 2 }, 4, new Random(9));
    const b = sampleEpisodes(set, { ways: 3, shots: 1, queries: 2 }, 4, new Random(9));
    const c = sampleEpisodes(set, { ways: 3, shots: 1, queries: 2 }, 4, new Random(10));
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
  });

  it('turns a meta-batch into tensors: images task after task, one-hot labels per task', () => {
    const episodes = sampleEpisodes(set, { ways: 4, shots: 2, queries: 3 }, 3, new Random(5));
    tf.tidy(() => {
      const batch = episodeBatch(set, episodes);
      expect(batch[TASK_KEYS.supportImages].shape).toEqual([3 * 8, 8, 8, 2]);
      expect(batch[TASK_KEYS.queryImages].shape).toEqual([3 * 12, 8, 8, 2]);
      expect(batch[TASK_KEYS.supportLabels].shape).toEqual([3, 8, 4]);
      expect(batch[TASK_KEYS.queryLabels].shape).toEqual([3, 12, 4]);
      const sImg = batch[TASK_KEYS.supportImages].dataSync();
      const sLab = batch[TASK_KEYS.supportLabels].arraySync() as number[][][];
      const qImg = batch[TASK_KEYS.queryImages].dataSync();
      const p = set.pixelsPerImage;
      episodes.forEach((e, b) => {
        e.support.forEach((img, j) => {
          expect(Array.from(sImg.subarray((b * 8 + j) * p, (b * 8 + j + 1) * p))).toEqual(
            Array.from(set.image(img)),
          );
          expect(sLab[b][j]).toEqual([0, 1, 2, 3].map((l) => (l === e.supportLabels[j] ? 1 : 0)));
        });
        e.query.forEach((img, j) => {
          expect(Array.from(qImg.subarray((b * 12 + j) * p, (b * 12 + j + 1) * p))).toEqual(
            Array.from(set.image(img)),
          );
        });
      });
    });
  });

  it('names the problem when a set cannot provide the episode', () => {
    expect(() => sampleEpisode(set, { ways: 13, shots: 1, queries: 1 }, new Random(0))).toThrow(
      /13-way episode: only 12 of 12 classes have 2 images/,
    );
    expect(() => sampleEpisode(set, { ways: 2, shots: 4, queries: 4 }, new Random(0))).toThrow(
      /only 0 of 12 classes have 8/,
    );
    expect(() => sampleEpisode(set, { ways: 2, shots: 0, queries: 4 }, new Random(0))).toThrow(
      /shots must be a positive integer/,
    );
  });
});

describe('ClassImageSet', () => {
  const tiny = new ClassImageSet({
    images: Float32Array.from({ length: 5 * 4 }, (_, i) => i),
    height: 2,
    width: 2,
    channels: 1,
    labels: Int32Array.from([1, 0, 2, 1, 2]),
    classNames: ['a', 'b', 'c'],
    classGroups: ['g1', 'g2', 'g1'],
  });

  it('indexes images by class and subsets / splits by class', () => {
    expect(tiny.byClass.map((m) => Array.from(m))).toEqual([[1], [0, 3], [2, 4]]);
    const sub = tiny.subsetClasses([2, 0]);
    expect(sub.classNames).toEqual(['c', 'a']);
    expect(Array.from(sub.labels)).toEqual([0, 0, 1]);
    expect(Array.from(sub.images)).toEqual([8, 9, 10, 11, 16, 17, 18, 19, 4, 5, 6, 7]);
    const { train, test } = tiny.splitByGroups(['g2']);
    expect(train.classNames).toEqual(['a', 'c']);
    expect(test.classNames).toEqual(['b']);
    expect(() => tiny.splitByGroups(['g9'])).toThrow(/unknown group\(s\) 'g9'; the set has g1, g2/);
    const r = tiny.splitRandomly(0.34, 1);
    expect(r.train.numClasses + r.test.numClasses).toBe(3);
    expect(new Set([...r.train.classNames, ...r.test.classNames]).size).toBe(3);
  });

  it('validates its fields', () => {
    expect(
      () =>
        new ClassImageSet({
          images: new Float32Array(7),
          height: 2,
          width: 2,
          channels: 1,
          labels: new Int32Array(2),
          classNames: ['a'],
        }),
    ).toThrow(/2 labels need 8 pixel values/);
    expect(
      () =>
        new ClassImageSet({
          images: new Float32Array(4),
          height: 2,
          width: 2,
          channels: 1,
          labels: Int32Array.from([3]),
          classNames: ['a'],
        }),
    ).toThrow(/label 3, outside 0 … 0/);
  });

  it('adds rotation classes: each rotated copy is a new class, rotated counter-clockwise', () => {
    const rot = tiny.withRotations();
    expect(rot.numClasses).toBe(12);
    expect(rot.count).toBe(20);
    expect(rot.classNames.slice(3, 6)).toEqual(['a@90', 'b@90', 'c@90']);
    // Image 0 = [[0, 1], [2, 3]]; rotated 90° counter-clockwise: [[1, 3], [0, 2]].
    expect(Array.from(rot.image(5))).toEqual([1, 3, 0, 2]);
    expect(rot.labels[5]).toBe(tiny.labels[0] + 3);
    expect(Array.from(rot.image(10))).toEqual([3, 2, 1, 0]);
    expect(Array.from(rot.image(15))).toEqual([2, 0, 3, 1]);
    // Four quarter turns are the identity.
    const img = Float32Array.from({ length: 9 * 2 }, (_, i) => i * 0.5);
    let r: Float32Array = img;
    for (let k = 0; k < 4; k++) r = rotateImage(r, 3, 2, 1);
    expect(Array.from(r)).toEqual(Array.from(img));
  });
});

describe('resizeArea', () => {
  it('averages blocks for integer factors and preserves the mean for fractional ones', () => {
    const rng = new Random(2);
    const src = rng.uniformArray(6 * 6 * 2);
    const out = resizeArea(src, 6, 6, 2, 3, 2);
    // Target (i, j) averages rows 2i, 2i+1 and columns 3j … 3j+2.
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 2; j++) {
        for (let c = 0; c < 2; c++) {
          let s = 0;
          for (let di = 0; di < 2; di++)
            for (let dj = 0; dj < 3; dj++) s += src[((2 * i + di) * 6 + 3 * j + dj) * 2 + c];
          expect(out[(i * 2 + j) * 2 + c]).toBeCloseTo(s / 6, 5);
        }
      }
    }
    const big = rng.uniformArray(105 * 105);
    const small = resizeArea(big, 105, 105, 1, 28, 28);
    const mean = (a: ArrayLike<number>) => Array.from(a).reduce((x, y) => x + y, 0) / a.length;
    expect(mean(small)).toBeCloseTo(mean(big), 5);
    expect(Math.min(...small)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...small)).toBeLessThanOrEqual(1);
  });
});
