import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { DataError } from '@bilevel/core';
import { describeSearch, resolveDataPath } from '@bilevel/datasets';
import { ClassImageSet, resizeArea } from './image-set';
import { decodePng, type FileTree, openFileTree } from './image-files';

/** How Omniglot images are turned into network inputs. */
export interface OmniglotImageOptions {
  /** Side of the square images after area-average resizing from 105×105 (default 28). */
  readonly imageSize?: number;
  /** Map strokes to 1 and background to 0 (default true; the PNGs are black strokes on white). */
  readonly invert?: boolean;
}

export interface OmniglotOptions extends OmniglotImageOptions {
  /**
   * A folder holding the Omniglot zips or extracted folders (`images_background.zip`, `all_runs.zip`, …), or
   * one set's zip or folder. Resolved in the documented order: this path, then `omniglot/` under each root of
   * BILEVEL_DATA_PATH, then `~/.cache/bilevel/omniglot`, then `/usr/share/datasets/omniglot`.
   */
  readonly path?: string;
  /**
   * Names of the sets to load (zip or folder names without `.zip`); default every `images_background*`
   * set found. Characters present in several sets (the small subsets share Greek and Latin) are one class,
   * and identical image files are kept once.
   */
  readonly sets?: readonly string[];
  /** Load only these alphabets (default all): a quick way to a smaller set. */
  readonly alphabets?: readonly string[];
}

/** The Omniglot folder found by the documented search order, or null. */
export function findOmniglot(explicit?: string): string | null {
  return resolveDataPath('omniglot', explicit);
}

/**
 * How to get Omniglot, for the errors of a missing data set: where the files come from and where to put them
 * (nothing is downloaded at run time).
 */
export const OMNIGLOT_HOW_TO_GET =
  'To get it: download the image sets of the Omniglot data set (Lake, Salakhutdinov & Tenenbaum, Science 2015; MIT ' +
  'License) from https://github.com/brendenlake/omniglot — python/images_background.zip and ' +
  'python/images_evaluation.zip, or the smaller python/images_background_small1.zip and ' +
  'images_background_small2.zip, and python/one-shot-classification/all_runs.zip for the one-shot runs — and put ' +
  'them, as zips or unpacked, in <dir>/omniglot/ with BILEVEL_DATA_PATH=<dir>, or in ~/.cache/bilevel/omniglot/, ' +
  'or pass the `path` option. Nothing is downloaded at run time.';

function requireOmniglot(explicit?: string): string {
  const root = findOmniglot(explicit);
  if (!root) {
    throw new DataError(
      `Omniglot not found; searched ${describeSearch('omniglot', explicit)}. ${OMNIGLOT_HOW_TO_GET}`,
      explicit ?? 'omniglot',
    );
  }
  return root;
}

/** Set name → zip or folder path, for the sets in an Omniglot folder whose name passes `accept`. */
function listSets(root: string, accept: (name: string) => boolean): Map<string, string> {
  const out = new Map<string, string>();
  for (const entry of readdirSync(root).sort()) {
    const full = join(root, entry);
    const name = entry.replace(/\.zip$/i, '');
    if (!accept(name)) continue;
    const isDir = statSync(full).isDirectory();
    if (!isDir && !/\.zip$/i.test(entry)) continue;
    // An extracted folder wins over a zip of the same name.
    if (!out.has(name) || isDir) out.set(name, full);
  }
  return out;
}

/** Sources of the requested sets: a single zip/folder given directly, or sets inside the Omniglot folder. */
function setSources(options: OmniglotOptions): string[] {
  const root = requireOmniglot(options.path);
  if (!statSync(root).isDirectory()) return [root];
  const all = listSets(root, () => true);
  if (options.sets) {
    return options.sets.map((s) => {
      const p = all.get(s);
      if (!p) {
        throw new DataError(
          `Omniglot set '${s}' not found in ${root} (found: ${[...all.keys()].join(', ') || 'nothing'})`,
          root,
        );
      }
      return p;
    });
  }
  const background = [...all.entries()].filter(([n]) => n.startsWith('images_background')).map(([, p]) => p);
  if (background.length) return background;
  // The folder may itself be one extracted set (`<Alphabet>/<character>/<file>.png`).
  return [root];
}

/** Converts one PNG of a tree to the network's input format. */
function omniglotPixels(tree: FileTree, path: string, options: OmniglotImageOptions): Float32Array {
  const img = decodePng(tree.read(path), `${tree.source}:${path}`, 1);
  const size = options.imageSize ?? 28;
  const invert = options.invert ?? true;
  const px = invert ? img.pixels.map((v) => 1 - v) : img.pixels;
  return resizeArea(px, img.height, img.width, 1, size, size);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Loads Omniglot characters (Lake, Salakhutdinov & Tenenbaum, Science 2015) in the standard layout
 * `<set>/<Alphabet>/<characterNN>/<id>_<drawer>.png`, from zips or extracted folders: one class per
 * character (`<Alphabet>/<characterNN>`), grouped by alphabet, images resized to `imageSize`² and inverted
 * (strokes 1). Classes are sorted by name, images by file name, so the result does not depend on the order
 * of the archives.
 */
export function loadOmniglot(options: OmniglotOptions = {}): ClassImageSet {
  const size = options.imageSize ?? 28;
  if (!Number.isInteger(size) || size < 1) throw new Error(`imageSize must be a positive integer (got ${size})`);
  const classes = new Map<string, { alphabet: string; files: Map<string, Uint8Array[]> }>();
  const trees: FileTree[] = [];
  const wanted = options.alphabets ? new Set(options.alphabets) : null;
  const entries: { tree: FileTree; path: string; key: string; file: string }[] = [];
  for (const source of setSources(options)) {
    const tree = openFileTree(source, (p) => /\.png$/i.test(p));
    trees.push(tree);
    for (const path of tree.paths) {
      const parts = path.split('/');
      if (parts.length < 3) continue;
      const [alphabet, character, file] = parts.slice(-3);
      if (wanted && !wanted.has(alphabet)) continue;
      const key = `${alphabet}/${character}`;
      let cls = classes.get(key);
      if (!cls) {
        cls = { alphabet, files: new Map() };
        classes.set(key, cls);
      }
      const bytes = tree.read(path);
      const seen = cls.files.get(file) ?? [];
      if (seen.some((b) => sameBytes(b, bytes))) continue;
      seen.push(bytes);
      cls.files.set(file, seen);
      entries.push({ tree, path, key, file: `${file}#${seen.length}` });
    }
  }
  if (entries.length === 0) {
    throw new DataError(`no Omniglot images (<Alphabet>/<character>/<file>.png) in ${trees.map((t) => t.source).join(', ')}`);
  }
  const classNames = [...classes.keys()].sort();
  const classIndex = new Map(classNames.map((n, i) => [n, i]));
  entries.sort((a, b) =>
    a.key === b.key ? (a.file < b.file ? -1 : a.file > b.file ? 1 : 0) : (classIndex.get(a.key) ?? 0) - (classIndex.get(b.key) ?? 0),
  );
  const pixels = size * size;
  const images = new Float32Array(entries.length * pixels);
  const labels = new Int32Array(entries.length);
  entries.forEach((e, i) => {
    images.set(omniglotPixels(e.tree, e.path, options), i * pixels);
    labels[i] = classIndex.get(e.key) ?? -1;
  });
  return new ClassImageSet({
    images,
    height: size,
    width: size,
    channels: 1,
    labels,
    classNames,
    classGroups: classNames.map((n) => classes.get(n)?.alphabet ?? ''),
  });
}

/** One of the 20 one-shot classification runs of Lake et al. (2015). */
export interface OneShotRun {
  /** Name of the run, e.g. `run01`. */
  readonly name: string;
  /** One image per class [classes, size, size, 1], classes in file order (class01 … class20). */
  readonly support: Float32Array;
  /** Query images [queries, size, size, 1], in file order (item01 … item20). */
  readonly query: Float32Array;
  /** For each query, the index of its class in `support`. */
  readonly queryLabels: Int32Array;
  /** Side of the (square) images. */
  readonly imageSize: number;
  /** Number of classes (and of support images). */
  readonly classes: number;
}

export interface OneShotRunsOptions extends OmniglotImageOptions {
  /** The Omniglot folder (holding `all_runs.zip` or `all_runs/`), or the zip/folder itself. */
  readonly path?: string;
}

/** Path of `all_runs.zip` / `all_runs/`, or null when absent. */
export function findOneShotRuns(explicit?: string): string | null {
  const root = findOmniglot(explicit);
  if (!root) return null;
  if (!statSync(root).isDirectory() || /all_runs/.test(basename(root))) return root;
  for (const name of ['all_runs', 'all_runs.zip']) if (existsSync(join(root, name))) return join(root, name);
  return null;
}

/**
 * Loads the 20 one-shot runs (`runNN/training/classKK.png`, `runNN/test/itemKK.png`,
 * `runNN/class_labels.txt` with lines `runNN/test/itemKK.png runNN/training/classJJ.png`) from
 * `all_runs.zip` or an extracted `all_runs/` folder.
 */
export function loadOneShotRuns(options: OneShotRunsOptions = {}): OneShotRun[] {
  const source = findOneShotRuns(options.path);
  if (!source) {
    throw new DataError(
      `Omniglot one-shot runs (all_runs.zip or all_runs/) not found; searched ${describeSearch('omniglot', options.path)}. ${OMNIGLOT_HOW_TO_GET}`,
      options.path ?? 'omniglot',
    );
  }
  const tree = openFileTree(source, (p) => /\.(png|txt)$/i.test(p));
  const runs = new Map<string, { training: string[]; test: string[]; labels?: string }>();
  for (const path of tree.paths) {
    const m = /(?:^|\/)(run\d+)\/(training\/class\d+\.png|test\/item\d+\.png|class_labels\.txt)$/i.exec(path);
    if (!m) continue;
    const run = runs.get(m[1]) ?? { training: [], test: [] };
    runs.set(m[1], run);
    if (m[2].startsWith('training/')) run.training.push(path);
    else if (m[2].startsWith('test/')) run.test.push(path);
    else run.labels = path;
  }
  if (runs.size === 0) throw new DataError(`${source}: no runNN/ folders with one-shot runs`, source);
  const size = options.imageSize ?? 28;
  const out: OneShotRun[] = [];
  for (const name of [...runs.keys()].sort()) {
    const run = runs.get(name);
    if (!run?.labels) throw new DataError(`${source}: ${name} has no class_labels.txt`, source);
    run.training.sort();
    run.test.sort();
    const trainIndex = new Map(run.training.map((p, i) => [p.split('/').slice(-2).join('/'), i]));
    const testIndex = new Map(run.test.map((p, i) => [p.split('/').slice(-2).join('/'), i]));
    const queryLabels = new Int32Array(run.test.length).fill(-1);
    const text = Buffer.from(tree.read(run.labels)).toString('utf8');
    for (const line of text.split(/\r?\n/)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 2) continue;
      const q = testIndex.get(fields[0].split('/').slice(-2).join('/'));
      const c = trainIndex.get(fields[1].split('/').slice(-2).join('/'));
      if (q === undefined || c === undefined) {
        throw new DataError(`${source}: ${run.labels}: line '${line.trim()}' names files that do not exist`, source);
      }
      queryLabels[q] = c;
    }
    const missing = Array.from(queryLabels).findIndex((l) => l < 0);
    if (missing >= 0) throw new DataError(`${source}: ${name}: no label for ${run.test[missing]}`, source);
    const pixels = size * size;
    const support = new Float32Array(run.training.length * pixels);
    run.training.forEach((p, i) => support.set(omniglotPixels(tree, p, options), i * pixels));
    const query = new Float32Array(run.test.length * pixels);
    run.test.forEach((p, i) => query.set(omniglotPixels(tree, p, options), i * pixels));
    out.push({ name, support, query, queryLabels, imageSize: size, classes: run.training.length });
  }
  return out;
}
