import { Random } from '@bilevel/core';
import { ClassImageSet } from './image-set';

/** Options of {@link syntheticImageSet}. */
export interface SyntheticImageSetOptions {
  /** Number of classes. */
  readonly classes: number;
  /** Images per class. */
  readonly imagesPerClass: number;
  /** Side of the (square) images. */
  readonly imageSize: number;
  /** Default 1. */
  readonly channels?: number;
  /** Standard deviation of the per-image pixel noise (default 0.1). */
  readonly noise?: number;
  /** Largest random shift of an image, in pixels (default 1). */
  readonly maxShift?: number;
  /** Gaussian strokes per class prototype (default 3). */
  readonly blobs?: number;
  /** Seed (default 0). */
  readonly seed?: number;
  /** Number of class groups (classes are assigned round-robin to `group0`, `group1`, …; default 1). */
  readonly groups?: number;
}

/**
 * A class-indexed set of synthetic images for tests and quick demonstrations: each class has a prototype made
 * of a few Gaussian blobs at random places and channels; each image is its class prototype shifted by up to
 * `maxShift` pixels plus N(0, noise²) pixel noise. Deterministic for a seed.
 */
export function syntheticImageSet(options: SyntheticImageSetOptions): ClassImageSet {
  const { classes, imagesPerClass, imageSize: s } = options;
  const channels = options.channels ?? 1;
  const noise = options.noise ?? 0.1;
  const maxShift = options.maxShift ?? 1;
  const blobs = options.blobs ?? 3;
  const groups = options.groups ?? 1;
  const rng = new Random(options.seed ?? 0);
  const p = s * s * channels;
  const images = new Float32Array(classes * imagesPerClass * p);
  const labels = new Int32Array(classes * imagesPerClass);
  for (let c = 0; c < classes; c++) {
    const proto = new Float32Array(p);
    for (let b = 0; b < blobs; b++) {
      const cy = rng.uniform() * s;
      const cx = rng.uniform() * s;
      const sigma = s * (0.06 + 0.1 * rng.uniform());
      const ch = rng.int(channels);
      for (let i = 0; i < s; i++) {
        for (let j = 0; j < s; j++) {
          proto[(i * s + j) * channels + ch] += Math.exp(-((i - cy) ** 2 + (j - cx) ** 2) / (2 * sigma * sigma));
        }
      }
    }
    for (let k = 0; k < imagesPerClass; k++) {
      const n = c * imagesPerClass + k;
      const dy = maxShift > 0 ? rng.int(2 * maxShift + 1) - maxShift : 0;
      const dx = maxShift > 0 ? rng.int(2 * maxShift + 1) - maxShift : 0;
      for (let i = 0; i < s; i++) {
        for (let j = 0; j < s; j++) {
          const si = Math.min(s - 1, Math.max(0, i - dy));
          const sj = Math.min(s - 1, Math.max(0, j - dx));
          for (let ch = 0; ch < channels; ch++) {
            images[n * p + (i * s + j) * channels + ch] = proto[(si * s + sj) * channels + ch] + noise * rng.normal();
          }
        }
      }
      labels[n] = c;
    }
  }
  return new ClassImageSet({
    images,
    height: s,
    width: s,
    channels,
    labels,
    classNames: Array.from({ length: classes }, (_, c) => `class${String(c).padStart(3, '0')}`),
    classGroups: Array.from({ length: classes }, (_, c) => `group${c % groups}`),
  });
}
