import { DataError } from '@bilevel/core';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  DATA_PATH_ENV,
  encodeIdx,
  FASHION_MNIST,
  findFashionMnist,
  loadFashionMnist,
  loadMnistLayout,
} from './index';
import { locateMnistLayout } from './mnist';
import { TemporaryFolders } from '@bilevel/core/testing';

const temps = new TemporaryFolders();
afterAll(() => temps.removeAll());

/** A tiny MNIST-layout folder: 5 training and 3 test images of 2×3 pixels. */
function makeFolder(options: { trainLabels?: number[]; gzip?: boolean } = {}): string {
  const dir = temps.make('bilevel-mnist-');
  const z = (b: Uint8Array) => (options.gzip === false ? b : gzipSync(b));
  const ext = options.gzip === false ? '' : '.gz';
  const trainPixels = Array.from({ length: 5 * 6 }, (_, i) => (i * 17) % 256);
  const testPixels = Array.from({ length: 3 * 6 }, (_, i) => 255 - i);
  writeFileSync(join(dir, `train-images-idx3-ubyte${ext}`), z(encodeIdx('uint8', [5, 2, 3], trainPixels)));
  writeFileSync(
    join(dir, `train-labels-idx1-ubyte${ext}`),
    z(encodeIdx('uint8', [options.trainLabels?.length ?? 5], options.trainLabels ?? [3, 1, 4, 1, 5])),
  );
  writeFileSync(join(dir, `t10k-images-idx3-ubyte${ext}`), z(encodeIdx('uint8', [3, 2, 3], testPixels)));
  writeFileSync(join(dir, `t10k-labels-idx1-ubyte${ext}`), z(encodeIdx('uint8', [3], [9, 2, 6])));
  return dir;
}

describe('loadMnistLayout', () => {
  it('loads images scaled to [0, 1] and labels, gzip or raw', () => {
    for (const gzip of [true, false]) {
      const dir = makeFolder({ gzip });
      const train = loadFashionMnist({ split: 'train', path: dir });
      expect([train.count, train.rows, train.cols, train.classes]).toEqual([5, 2, 3, 10]);
      expect(Array.from(train.labels)).toEqual([3, 1, 4, 1, 5]);
      expect(train.images.length).toBe(30);
      for (let i = 0; i < 30; i++) expect(train.images[i]).toBeCloseTo(((i * 17) % 256) / 255, 6);
      const test = loadFashionMnist({ split: 'test', path: dir });
      expect(Array.from(test.labels)).toEqual([9, 2, 6]);
      expect(test.images[0]).toBeCloseTo(1, 6);
    }
  });

  it('keeps the first `limit` samples or the chosen `indices`', () => {
    const dir = makeFolder();
    const first = loadFashionMnist({ split: 'train', path: dir, limit: 2 });
    expect(first.count).toBe(2);
    expect(Array.from(first.labels)).toEqual([3, 1]);
    const picked = loadFashionMnist({ split: 'train', path: dir, indices: [4, 0] });
    expect(Array.from(picked.labels)).toEqual([5, 3]);
    expect(picked.images[0]).toBeCloseTo(((24 * 17) % 256) / 255, 6);
    expect(() => loadFashionMnist({ split: 'train', path: dir, indices: [5] })).toThrow(
      /index 5 .* outside 0\.\.4/,
    );
    // A file with fewer images than the indices ask for is a data problem that names the file.
    expect(() => loadFashionMnist({ split: 'train', path: dir, indices: [5] })).toThrow(DataError);
    expect(() => loadFashionMnist({ split: 'train', path: dir, indices: [5] })).toThrow(
      /train-images-idx3-ubyte\.gz: .* holds only 5 images/,
    );
  });

  it('finds the folder through BILEVEL_DATA_PATH', () => {
    const dir = makeFolder();
    const root = temps.make('bilevel-root-');
    mkdirSync(join(root, 'fashion-mnist'));
    for (const f of [
      'train-images-idx3-ubyte.gz',
      'train-labels-idx1-ubyte.gz',
      't10k-images-idx3-ubyte.gz',
      't10k-labels-idx1-ubyte.gz',
    ]) {
      writeFileSync(join(root, 'fashion-mnist', f), readFileSync(join(dir, f)));
    }
    const saved = process.env[DATA_PATH_ENV];
    process.env[DATA_PATH_ENV] = `/nonexistent-root:${root}`;
    try {
      expect(findFashionMnist()).toBe(join(root, 'fashion-mnist'));
      expect(loadFashionMnist({ split: 'test' }).count).toBe(3);
    } finally {
      if (saved === undefined) delete process.env[DATA_PATH_ENV];
      else process.env[DATA_PATH_ENV] = saved;
    }
  });

  it('passes over a copy that lacks a file for a complete one further down the data path', () => {
    const complete = makeFolder();
    const rootA = temps.make('bilevel-incomplete-');
    const rootB = temps.make('bilevel-complete-');
    mkdirSync(join(rootA, 'fashion-mnist'));
    mkdirSync(join(rootB, 'fashion-mnist'));
    const files = [
      'train-images-idx3-ubyte.gz',
      'train-labels-idx1-ubyte.gz',
      't10k-images-idx3-ubyte.gz',
      't10k-labels-idx1-ubyte.gz',
    ];
    // The first copy lacks the test labels; the second is complete.
    for (const f of files.slice(0, 3))
      writeFileSync(join(rootA, 'fashion-mnist', f), readFileSync(join(complete, f)));
    for (const f of files) writeFileSync(join(rootB, 'fashion-mnist', f), readFileSync(join(complete, f)));
    const saved = process.env[DATA_PATH_ENV];
    process.env[DATA_PATH_ENV] = `${rootA}:${rootB}`;
    try {
      expect(findFashionMnist()).toBe(join(rootB, 'fashion-mnist'));
      const search = locateMnistLayout(FASHION_MNIST, undefined, 'test');
      expect(search.folder).toBe(join(rootB, 'fashion-mnist'));
      expect(search.searched).toEqual([
        `${join(rootA, 'fashion-mnist')} (from ${DATA_PATH_ENV}) has no t10k-labels-idx1-ubyte.gz`,
      ]);
      // Both splits come from the complete copy.
      expect(loadFashionMnist({ split: 'test' }).count).toBe(3);
      expect(loadFashionMnist({ split: 'train' }).count).toBe(5);

      // Without the complete copy: every folder searched is named with what it lacks, in order. (The system
      // folder may hold a complete copy on this machine, so the search may still end there.)
      process.env[DATA_PATH_ENV] = `${rootA}:/nonexistent-root`;
      const without = locateMnistLayout(FASHION_MNIST, undefined, 'test');
      expect(without.searched.slice(0, 2)).toEqual([
        `${join(rootA, 'fashion-mnist')} (from ${DATA_PATH_ENV}) has no t10k-labels-idx1-ubyte.gz`,
        `/nonexistent-root/fashion-mnist (from ${DATA_PATH_ENV}) does not exist`,
      ]);
      // The training split is whole in the first copy: with no complete copy anywhere it loads from there.
      expect(locateMnistLayout(FASHION_MNIST, join(rootA, 'fashion-mnist'), 'train').folder).toBe(
        join(rootA, 'fashion-mnist'),
      );
      // An error names the missing file, the folder and how to get the data.
      let message = '';
      try {
        loadFashionMnist({ split: 'test', path: join(rootA, 'fashion-mnist') });
      } catch (e) {
        expect(e).toBeInstanceOf(DataError);
        message = (e as Error).message;
      }
      expect(message).toBe(
        `Fashion-MNIST not found (no folder holds the test files); searched: ${join(rootA, 'fashion-mnist')} (the path option) has no t10k-labels-idx1-ubyte.gz. ` +
          'To get it: install the Debian package with `apt-get install dataset-fashion-mnist` (it puts the files in ' +
          `/usr/share/datasets/fashion-mnist); set ${DATA_PATH_ENV} to a ':'-separated list of folders one of which holds ` +
          'fashion-mnist/ with the IDX files; put them in ~/.cache/bilevel/fashion-mnist/; or pass the `path` option.',
      );
    } finally {
      if (saved === undefined) delete process.env[DATA_PATH_ENV];
      else process.env[DATA_PATH_ENV] = saved;
    }
  });

  it('says how to get the data when it is missing', () => {
    const missing = join(tmpdir(), 'bilevel-no-such-folder');
    expect(() => loadFashionMnist({ split: 'train', path: missing })).toThrow(DataError);
    expect(() => loadFashionMnist({ split: 'train', path: missing })).toThrow(
      /Fashion-MNIST not found .*apt-get install dataset-fashion-mnist.*BILEVEL_DATA_PATH/,
    );
    const empty = temps.make('bilevel-empty-');
    expect(() => loadFashionMnist({ split: 'test', path: empty })).toThrow(
      /has no t10k-images-idx3-ubyte\.gz and t10k-labels-idx1-ubyte\.gz/,
    );
  });

  it('refuses label counts that disagree with the image count', () => {
    const dir = makeFolder({ trainLabels: [1, 2, 3, 4] });
    expect(() => loadFashionMnist({ split: 'train', path: dir })).toThrow(
      /holds 4 labels but .* holds 5 images/,
    );
  });

  it('refuses labels outside the classes', () => {
    const dir = makeFolder({ trainLabels: [1, 2, 12, 4, 5] });
    expect(() => loadFashionMnist({ split: 'train', path: dir })).toThrow(
      /label 12 of sample 2 is outside 0\.\.9/,
    );
    expect(() =>
      loadMnistLayout({ ...FASHION_MNIST, classes: 3 }, { split: 'train', path: makeFolder() }),
    ).toThrow(/label 3 of sample 0/);
  });

  it('refuses image files of the wrong shape', () => {
    const dir = makeFolder();
    writeFileSync(
      join(dir, 'train-images-idx3-ubyte.gz'),
      gzipSync(encodeIdx('uint8', [5, 6], new Uint8Array(30))),
    );
    expect(() => loadFashionMnist({ split: 'train', path: dir })).toThrow(
      /expected uint8 images of shape count×rows×cols, found uint8 of shape 5×6/,
    );
  });
});

const real = findFashionMnist();
if (!real) {
  console.warn(
    'SKIPPED: real Fashion-MNIST test — data not found (apt-get install dataset-fashion-mnist, or set BILEVEL_DATA_PATH)',
  );
}
(real ? describe : describe.skip)('Fashion-MNIST (real data)', () => {
  it('loads the test split with its documented sizes and balanced classes', () => {
    const test = loadFashionMnist({ split: 'test' });
    expect([test.count, test.rows, test.cols, test.classes]).toEqual([10000, 28, 28, 10]);
    const perClass = new Array(10).fill(0);
    for (const l of test.labels) perClass[l]++;
    expect(perClass).toEqual(new Array(10).fill(1000));
    let min = Infinity;
    let max = -Infinity;
    for (const v of test.images) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
    expect(min).toBe(0);
    expect(max).toBe(1);
  });

  it('loads a limited part of the training split', () => {
    const train = loadFashionMnist({ split: 'train', limit: 1000 });
    expect(train.count).toBe(1000);
    expect(train.images.length).toBe(1000 * 784);
  });
});
