import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DataError } from '@bilevel/core';
import { describeSearch, resolveDataPath } from '@bilevel/datasets';
import { assertPng, decodePng, isImagePath } from './image-files';
import { ClassImageSet, resizeArea } from './image-set';

/** Options of {@link loadImageFolderSplit}. */
export interface ImageFolderSplitOptions {
  /**
   * Data set folder. Resolved in the documented order under the name `dataset` (default `mini-imagenet`):
   * this path, `<root>/mini-imagenet` for each root of BILEVEL_DATA_PATH, `~/.cache/bilevel/mini-imagenet`,
   * `/usr/share/datasets/mini-imagenet`.
   */
  readonly path?: string;
  /** Folder name used by the search (default `mini-imagenet`). */
  readonly dataset?: string;
  /** Split name: `train`, `val` or `test` (default `train`). */
  readonly split?: string;
  /** Side of the square images after area-average resizing (default 84). */
  readonly imageSize?: number;
  /** 3 for RGB (default), 1 for grayscale. */
  readonly channels?: 1 | 3;
}

/** The first CSV field list of a line (no quoting beyond stripping surrounding double quotes). */
function csvFields(line: string): string[] {
  return line.split(',').map((f) => f.trim().replace(/^"(.*)"$/, '$1'));
}

/**
 * Loads one split of an image-classification set in either of the usual miniImageNet layouts
 * (Vinyals et al., 2016; split of Ravi & Larochelle, 2017):
 *
 * - a CSV split file `<root>/<split>.csv` with lines `filename,label` (a header line `filename,label` is
 *   skipped) and the images in `<root>/images/<filename>`;
 * - a folder per class, `<root>/<split>/<class>/<image>`.
 *
 * Only PNG images can be decoded (no JPEG decoder is installed): other formats raise a DataError that says
 * so. Images are resized to `imageSize`² by area averaging; classes are sorted by name.
 */
export function loadImageFolderSplit(options: ImageFolderSplitOptions = {}): ClassImageSet {
  const dataset = options.dataset ?? 'mini-imagenet';
  const root = resolveDataPath(dataset, options.path);
  if (!root) throw new DataError(`${dataset} not found; searched ${describeSearch(dataset, options.path)}`, dataset);
  const split = options.split ?? 'train';
  const size = options.imageSize ?? 84;
  const channels = options.channels ?? 3;
  const items: { file: string; label: string }[] = [];
  const csv = join(root, `${split}.csv`);
  const folder = join(root, split);
  if (existsSync(csv)) {
    const lines = readFileSync(csv, 'utf8').split(/\r?\n/).filter((l) => l.trim() !== '');
    lines.forEach((line, i) => {
      const fields = csvFields(line);
      if (i === 0 && fields[0].toLowerCase() === 'filename') return;
      if (fields.length < 2 || !fields[0] || !fields[1]) {
        throw new DataError(`${csv}:${i + 1}: expected 'filename,label' (got '${line}')`, csv);
      }
      const inImages = join(root, 'images', fields[0]);
      items.push({ file: existsSync(inImages) ? inImages : join(root, fields[0]), label: fields[1] });
    });
  } else if (existsSync(folder) && statSync(folder).isDirectory()) {
    for (const cls of readdirSync(folder).sort()) {
      const dir = join(folder, cls);
      if (!statSync(dir).isDirectory()) continue;
      for (const f of readdirSync(dir).sort()) if (isImagePath(f)) items.push({ file: join(dir, f), label: cls });
    }
  } else {
    throw new DataError(`${root}: neither a split file ${split}.csv nor a folder ${split}/ of class folders`, root);
  }
  if (items.length === 0) throw new DataError(`${root}: split '${split}' lists no images`, root);
  const classNames = [...new Set(items.map((it) => it.label))].sort();
  const classIndex = new Map(classNames.map((n, i) => [n, i]));
  items.sort((a, b) => (classIndex.get(a.label) ?? 0) - (classIndex.get(b.label) ?? 0) || (a.file < b.file ? -1 : 1));
  const pixels = size * size * channels;
  const images = new Float32Array(items.length * pixels);
  const labels = new Int32Array(items.length);
  items.forEach((it, i) => {
    assertPng(it.file, root);
    if (!existsSync(it.file)) throw new DataError(`${it.file}: listed in split '${split}' but missing`, it.file);
    const img = decodePng(readFileSync(it.file), it.file, channels);
    images.set(resizeArea(img.pixels, img.height, img.width, channels, size, size), i * pixels);
    labels[i] = classIndex.get(it.label) ?? -1;
  });
  return new ClassImageSet({ images, height: size, width: size, channels, labels, classNames });
}
