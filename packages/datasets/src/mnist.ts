import { DataError } from '@bilevel/core';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DATA_PATH_ENV, dataSearchPaths, type DataSearchPath } from './data-path';
import { readIdx } from './idx';

/** Images with class labels, row-major, one image per row. */
export interface ImageClassificationData {
  /** count × (rows·cols) pixel intensities scaled to [0, 1]. */
  readonly images: Float32Array;
  /** count labels in 0..classes−1. */
  readonly labels: Int32Array;
  /** Number of images. */
  readonly count: number;
  /** Image height. */
  readonly rows: number;
  /** Image width. */
  readonly cols: number;
  /** Number of classes. */
  readonly classes: number;
}

/** A split of an MNIST-layout data set: 60,000 training or 10,000 test images (for (Fashion-)MNIST). */
export type MnistSplit = 'train' | 'test';

/** Options of {@link loadFashionMnist} and {@link loadMnist}. */
export interface MnistLoadOptions {
  /** Which split to load. */
  readonly split: MnistSplit;
  /** Keep only the first `limit` samples. */
  readonly limit?: number;
  /** Keep only these samples, in this order (instead of `limit`). */
  readonly indices?: ArrayLike<number>;
  /** Explicit folder holding the four IDX files (overrides the search order of `resolveDataPath`). */
  readonly path?: string;
}

/** How to obtain an MNIST-layout data set, for error messages. */
export interface MnistLayoutInfo {
  /** Folder name under a data root, e.g. `fashion-mnist`. */
  readonly name: string;
  /** Human name, e.g. `Fashion-MNIST`. */
  readonly title: string;
  /** Number of classes. */
  readonly classes: number;
  /** How to install it, one sentence. */
  readonly install?: string;
}

/** Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 10 classes of clothing, in the folder `fashion-mnist`. */
export const FASHION_MNIST: MnistLayoutInfo = {
  name: 'fashion-mnist',
  title: 'Fashion-MNIST',
  classes: 10,
  install:
    'install the Debian package with `apt-get install dataset-fashion-mnist` (it puts the files in /usr/share/datasets/fashion-mnist)',
};

/** MNIST: 10 digit classes, in the folder `mnist`. */
export const MNIST: MnistLayoutInfo = { name: 'mnist', title: 'MNIST', classes: 10 };

/** The two files of a split in the standard layout (`train-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte`, …). */
function candidates(split: MnistSplit, kind: 'images' | 'labels'): string[] {
  const prefix = split === 'train' ? 'train' : 't10k';
  const rank = kind === 'images' ? 3 : 1;
  const bases = [`${prefix}-${kind}-idx${rank}-ubyte`, `${prefix}-${kind}.idx${rank}-ubyte`];
  return bases.flatMap((b) => [`${b}.gz`, b]);
}

/** The file of `split`/`kind` inside `folder`, or null. */
export function findMnistFile(folder: string, split: MnistSplit, kind: 'images' | 'labels'): string | null {
  for (const c of candidates(split, kind)) {
    const f = join(folder, c);
    if (existsSync(f)) return f;
  }
  return null;
}

/** The standard names of the files of `splits` that `folder` lacks (empty: it has them all). */
function lacking(folder: string, splits: readonly MnistSplit[]): string[] {
  return splits.flatMap((s) =>
    (['images', 'labels'] as const).filter((k) => findMnistFile(folder, s, k) === null).map((k) => candidates(s, k)[0]),
  );
}

const sourceName = (c: DataSearchPath): string =>
  c.source === 'env' ? `from ${DATA_PATH_ENV}` : c.source === 'explicit' ? 'the path option' : c.source;

/** Where an MNIST-layout data set was looked for, and what each place lacked. */
export interface MnistSearch {
  /** The folder to read `split` from (see `locateMnistLayout`), or null. */
  readonly folder: string | null;
  /** One line per folder searched before it (or every folder, when `folder` is null): what it lacks. */
  readonly searched: readonly string[];
}

/**
 * Where to read an MNIST-layout data set from, in the search order of `dataSearchPaths` (explicit path,
 * `BILEVEL_DATA_PATH`, `~/.cache/bilevel`, `/usr/share/datasets`): the first folder that holds all four IDX files,
 * so that an incomplete copy early in the path does not hide a complete one further down. With `split` and no
 * complete folder: the first folder that holds that split's two files. `searched` says what each folder passed
 * over lacked (for the split asked for, or for the whole set).
 */
export function locateMnistLayout(info: MnistLayoutInfo, path?: string, split?: MnistSplit): MnistSearch {
  const searched: string[] = [];
  let partial: string | null = null;
  for (const c of dataSearchPaths(info.name, path)) {
    if (!existsSync(c.path)) {
      searched.push(`${c.path} (${sourceName(c)}) does not exist`);
      continue;
    }
    if (lacking(c.path, ['train', 'test']).length === 0) return { folder: c.path, searched };
    const missing = lacking(c.path, split ? [split] : ['train', 'test']);
    if (split && missing.length === 0) partial ??= c.path;
    else searched.push(`${c.path} (${sourceName(c)}) has no ${missing.join(' and ')}`);
  }
  return { folder: partial, searched };
}

/**
 * The folder of an MNIST-layout data set that holds all four IDX files, the first in the order of
 * `dataSearchPaths` (explicit path, `BILEVEL_DATA_PATH`, `~/.cache/bilevel`, `/usr/share/datasets`), or null.
 */
export function findMnistLayout(info: MnistLayoutInfo, path?: string): string | null {
  return locateMnistLayout(info, path).folder;
}

/** The Fashion-MNIST folder, or null when it is not installed (tests skip on null). */
export function findFashionMnist(path?: string): string | null {
  return findMnistLayout(FASHION_MNIST, path);
}

function missingMessage(info: MnistLayoutInfo, split: MnistSplit, searched: readonly string[]): string {
  const how = [
    info.install,
    `set ${DATA_PATH_ENV} to a ':'-separated list of folders one of which holds ${info.name}/ with the IDX files`,
    `put them in ~/.cache/bilevel/${info.name}/`,
    'or pass the `path` option',
  ]
    .filter(Boolean)
    .join('; ');
  return `${info.title} not found (no folder holds the ${split} files); searched: ${searched.join('; ')}. To get it: ${how}.`;
}

/**
 * Loads one split of an MNIST-layout data set (IDX image and label files, gzip or raw). Pixels are scaled
 * from 0..255 to [0, 1]. Missing files, mismatched counts, wrong shapes and labels outside 0..classes−1
 * raise a {@link DataError} that says which file and what is wrong.
 */
export function loadMnistLayout(info: MnistLayoutInfo, options: MnistLoadOptions): ImageClassificationData {
  const { folder, searched } = locateMnistLayout(info, options.path, options.split);
  if (!folder) throw new DataError(missingMessage(info, options.split, searched), options.path ?? info.name);
  const imageFile = findMnistFile(folder, options.split, 'images') as string;
  const labelFile = findMnistFile(folder, options.split, 'labels') as string;
  const images = readIdx(imageFile);
  const labels = readIdx(labelFile);
  if (images.dtype !== 'uint8' || images.dims.length !== 3) {
    throw new DataError(
      `${imageFile}: expected uint8 images of shape count×rows×cols, found ${images.dtype} of shape ${images.dims.join('×')}`,
      imageFile,
    );
  }
  if (labels.dtype !== 'uint8' || labels.dims.length !== 1) {
    throw new DataError(
      `${labelFile}: expected a uint8 label vector, found ${labels.dtype} of shape ${labels.dims.join('×')}`,
      labelFile,
    );
  }
  const [total, rows, cols] = images.dims;
  if (labels.dims[0] !== total) {
    throw new DataError(
      `${labelFile}: holds ${labels.dims[0]} labels but ${imageFile} holds ${total} images; the counts must agree`,
      labelFile,
    );
  }
  let pick: ArrayLike<number>;
  if (options.indices) {
    if (options.limit !== undefined)
      throw new Error('loadMnistLayout: give either `limit` or `indices`, not both');
    pick = options.indices;
    for (let i = 0; i < pick.length; i++) {
      const k = pick[i];
      if (!Number.isInteger(k) || k < 0 || k >= total) {
        // The indices come from the data set's documented size: a file with fewer samples is a data problem.
        throw new DataError(
          `${imageFile}: sample index ${k} (position ${i}) is outside 0..${total - 1}: the file holds only ${total} images (is it complete?)`,
          imageFile,
        );
      }
    }
  } else {
    const limit = options.limit ?? total;
    if (!Number.isInteger(limit) || limit < 0)
      throw new RangeError(`loadMnistLayout: limit must be an integer >= 0 (got ${limit})`);
    pick = Int32Array.from({ length: Math.min(limit, total) }, (_, i) => i);
  }
  const size = rows * cols;
  const count = pick.length;
  const out = new Float32Array(count * size);
  const outLabels = new Int32Array(count);
  const src = images.data as Uint8Array;
  const lab = labels.data as Uint8Array;
  for (let i = 0; i < count; i++) {
    const k = pick[i];
    const label = lab[k];
    if (label >= info.classes) {
      throw new DataError(
        `${labelFile}: label ${label} of sample ${k} is outside 0..${info.classes - 1} (${info.title} has ${info.classes} classes)`,
        labelFile,
      );
    }
    outLabels[i] = label;
    const base = k * size;
    const o = i * size;
    for (let j = 0; j < size; j++) out[o + j] = src[base + j] / 255;
  }
  return { images: out, labels: outLabels, count, rows, cols, classes: info.classes };
}

/**
 * Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 28×28 grayscale images of 10 clothing classes, 60,000
 * training and 10,000 test images. Found through `locateMnistLayout` (the first complete copy in the data-path order).
 */
export function loadFashionMnist(options: MnistLoadOptions): ImageClassificationData {
  return loadMnistLayout(FASHION_MNIST, options);
}

/** MNIST digits in the same layout (`mnist/` under a data root). */
export function loadMnist(options: MnistLoadOptions): ImageClassificationData {
  return loadMnistLayout(MNIST, options);
}
