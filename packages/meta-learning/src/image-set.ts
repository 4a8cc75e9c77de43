import { Random } from '@bilevel/core';

/** Fields of a class-indexed image set. */
export interface ClassImageSetData {
  /** Pixels [count, height, width, channels], row-major, values usually in [0, 1]. */
  readonly images: Float32Array;
  /** Image height. */
  readonly height: number;
  /** Image width. */
  readonly width: number;
  /** Channels per pixel. */
  readonly channels: number;
  /** Class index of every image, in 0 … classNames.length − 1. */
  readonly labels: Int32Array;
  /** Name of every class (e.g. `Greek/character01`). */
  readonly classNames: readonly string[];
  /** Optional group of every class (e.g. the Omniglot alphabet), used for class splits. */
  readonly classGroups?: readonly string[];
}

/**
 * Images indexed by class: the source of few-shot episodes (Omniglot characters, miniImageNet classes,
 * synthetic classes). Immutable; subsets and augmentations return new sets.
 */
export class ClassImageSet implements ClassImageSetData {
  readonly images: Float32Array;
  /** Image height. */
  readonly height: number;
  /** Image width. */
  readonly width: number;
  /** Channels per pixel. */
  readonly channels: number;
  readonly labels: Int32Array;
  readonly classNames: readonly string[];
  readonly classGroups?: readonly string[];
  /** Image indices of every class, ascending. */
  readonly byClass: readonly Int32Array[];

  constructor(data: ClassImageSetData) {
    const { images, height, width, channels, labels, classNames, classGroups } = data;
    for (const [k, v] of Object.entries({ height, width, channels })) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`ClassImageSet: ${k} must be a positive integer (got ${v})`);
    }
    const pixels = height * width * channels;
    if (images.length !== labels.length * pixels) {
      throw new Error(
        `ClassImageSet: ${labels.length} labels need ${labels.length * pixels} pixel values ` +
          `(${height}×${width}×${channels} each), got ${images.length}`,
      );
    }
    if (classGroups && classGroups.length !== classNames.length) {
      throw new Error(`ClassImageSet: ${classGroups.length} class groups for ${classNames.length} classes`);
    }
    const members: number[][] = classNames.map(() => []);
    labels.forEach((c, i) => {
      if (!(c >= 0 && c < classNames.length)) {
        throw new Error(`ClassImageSet: image ${i} has label ${c}, outside 0 … ${classNames.length - 1}`);
      }
      members[c].push(i);
    });
    this.images = images;
    this.height = height;
    this.width = width;
    this.channels = channels;
    this.labels = labels;
    this.classNames = classNames;
    this.classGroups = classGroups;
    this.byClass = members.map((m) => Int32Array.from(m));
  }

  /** Number of images. */
  get count(): number {
    return this.labels.length;
  }

  /** Number of classes. */
  get numClasses(): number {
    return this.classNames.length;
  }

  /** Values per image (height·width·channels). */
  get pixelsPerImage(): number {
    return this.height * this.width * this.channels;
  }

  /** A view of image i's pixels. */
  image(i: number): Float32Array {
    const p = this.pixelsPerImage;
    return this.images.subarray(i * p, (i + 1) * p);
  }

  /** The set restricted to the given classes (renumbered 0 … k−1 in the given order). */
  subsetClasses(classes: readonly number[]): ClassImageSet {
    const p = this.pixelsPerImage;
    const total = classes.reduce((s, c) => s + this.members(c).length, 0);
    const images = new Float32Array(total * p);
    const labels = new Int32Array(total);
    let k = 0;
    classes.forEach((c, newClass) => {
      for (const i of this.members(c)) {
        images.set(this.image(i), k * p);
        labels[k++] = newClass;
      }
    });
    return new ClassImageSet({
      images,
      height: this.height,
      width: this.width,
      channels: this.channels,
      labels,
      classNames: classes.map((c) => this.classNames[c]),
      classGroups: this.classGroups ? classes.map((c) => this.classGroups?.[c] ?? '') : undefined,
    });
  }

  /** Splits the classes by group name: classes of `testGroups` go to `test`, the others to `train`. */
  splitByGroups(testGroups: readonly string[]): {
    /** The classes kept for meta-training. */
    train: ClassImageSet;
    /** The held-out classes. */
    test: ClassImageSet;
  } {
    const groups = this.classGroups;
    if (!groups) throw new Error('ClassImageSet.splitByGroups: the set has no class groups');
    const known = new Set(groups);
    const missing = testGroups.filter((g) => !known.has(g));
    if (missing.length) {
      throw new Error(
        `unknown group(s) ${missing.map((g) => `'${g}'`).join(', ')}; the set has ${[...known].sort().join(', ')}`,
      );
    }
    const wanted = new Set(testGroups);
    const train: number[] = [];
    const test: number[] = [];
    groups.forEach((g, c) => (wanted.has(g) ? test : train).push(c));
    return { train: this.subsetClasses(train), test: this.subsetClasses(test) };
  }

  /** Splits the classes at random (seeded): a fraction `testFraction` of them to `test`. */
  splitRandomly(testFraction: number, seed: number): {
    /** The classes kept for meta-training. */
    train: ClassImageSet;
    /** The held-out classes. */
    test: ClassImageSet;
  } {
    if (!(testFraction > 0 && testFraction < 1)) throw new Error(`testFraction must be in (0, 1) (got ${testFraction})`);
    const perm = new Random(seed).permutation(this.numClasses);
    const nTest = Math.max(1, Math.round(testFraction * this.numClasses));
    const test = Array.from(perm.slice(0, nTest)).sort((a, b) => a - b);
    const train = Array.from(perm.slice(nTest)).sort((a, b) => a - b);
    return { train: this.subsetClasses(train), test: this.subsetClasses(test) };
  }

  /**
   * Rotation augmentation of Omniglot few-shot learning (Santoro et al., 2016; Finn et al., 2017): every
   * class also appears rotated by 90°, 180° and 270° (counter-clockwise), each rotation a new class named
   * `<name>@<angle>`. Square images only.
   */
  withRotations(angles: readonly (90 | 180 | 270)[] = [90, 180, 270]): ClassImageSet {
    if (this.height !== this.width) {
      throw new Error(`rotation classes need square images (got ${this.height}×${this.width})`);
    }
    const p = this.pixelsPerImage;
    const copies = 1 + angles.length;
    const images = new Float32Array(this.images.length * copies);
    const labels = new Int32Array(this.count * copies);
    images.set(this.images);
    labels.set(this.labels);
    const classNames = [...this.classNames];
    const classGroups = this.classGroups ? [...this.classGroups] : undefined;
    angles.forEach((angle, a) => {
      const offset = (a + 1) * this.count;
      for (let i = 0; i < this.count; i++) {
        images.set(rotateImage(this.image(i), this.height, this.channels, angle / 90), (offset + i) * p);
        labels[offset + i] = this.labels[i] + (a + 1) * this.numClasses;
      }
      for (let c = 0; c < this.numClasses; c++) {
        classNames.push(`${this.classNames[c]}@${angle}`);
        classGroups?.push(this.classGroups?.[c] ?? '');
      }
    });
    return new ClassImageSet({
      images,
      height: this.height,
      width: this.width,
      channels: this.channels,
      labels,
      classNames,
      classGroups,
    });
  }

  private members(c: number): Int32Array {
    const m = this.byClass[c];
    if (!m) throw new Error(`class ${c} does not exist (the set has ${this.numClasses})`);
    return m;
  }
}

/** Rotates a square [s, s, c] image by quarterTurns·90° counter-clockwise. */
export function rotateImage(src: Float32Array, size: number, channels: number, quarterTurns: number): Float32Array {
  const q = ((quarterTurns % 4) + 4) % 4;
  const out = new Float32Array(src.length);
  for (let i = 0; i < size; i++) {
    for (let j = 0; j < size; j++) {
      // Destination (i, j) takes source (si, sj).
      let si = i;
      let sj = j;
      if (q === 1) {
        si = j;
        sj = size - 1 - i;
      } else if (q === 2) {
        si = size - 1 - i;
        sj = size - 1 - j;
      } else if (q === 3) {
        si = size - 1 - j;
        sj = i;
      }
      for (let c = 0; c < channels; c++) out[(i * size + j) * channels + c] = src[(si * size + sj) * channels + c];
    }
  }
  return out;
}

/**
 * Area-average resampling of an [h, w, c] image to [th, tw, c]: each target pixel is the mean of the source
 * area it covers (fractional overlaps weighted), the usual way to shrink binary Omniglot strokes without
 * aliasing. Separable: rows first, then columns.
 */
export function resizeArea(
  src: ArrayLike<number>,
  h: number,
  w: number,
  c: number,
  th: number,
  tw: number,
): Float32Array {
  if (h === th && w === tw) return Float32Array.from(src);
  const wx = areaWeights(w, tw);
  const wy = areaWeights(h, th);
  const tmp = new Float64Array(h * tw * c);
  for (let y = 0; y < h; y++) {
    for (const { target, source, weight } of wx) {
      for (let k = 0; k < c; k++) tmp[(y * tw + target) * c + k] += weight * src[(y * w + source) * c + k];
    }
  }
  const out = new Float32Array(th * tw * c);
  for (const { target, source, weight } of wy) {
    for (let x = 0; x < tw; x++) {
      for (let k = 0; k < c; k++) out[(target * tw + x) * c + k] += weight * tmp[(source * tw + x) * c + k];
    }
  }
  return out;
}

/** Overlap weights of source cells [s, s+1) with target cells scaled to [t·n/m, (t+1)·n/m). */
function areaWeights(n: number, m: number): { target: number; source: number; weight: number }[] {
  const scale = n / m;
  const out: { target: number; source: number; weight: number }[] = [];
  for (let t = 0; t < m; t++) {
    const lo = t * scale;
    const hi = (t + 1) * scale;
    for (let s = Math.floor(lo); s < Math.min(n, Math.ceil(hi)); s++) {
      const overlap = Math.min(hi, s + 1) - Math.max(lo, s);
      if (overlap > 1e-12) out.push({ target: t, source: s, weight: overlap / scale });
    }
  }
  return out;
}
