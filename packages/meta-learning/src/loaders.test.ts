import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataError, Random } from '@bilevel/core';
import { zipSync } from 'fflate';
import { PNG } from 'pngjs';
import {
  findOmniglot,
  findOneShotRuns,
  loadImageFolderSplit,
  loadOmniglot,
  loadOneShotRuns,
  OMNIGLOT_HOW_TO_GET,
  sampleEpisodes,
} from './index';

/** An 8-bit RGBA PNG of a w×h image whose pixel (i, j) has gray value value(i, j) ∈ [0, 255]. */
function png(w: number, h: number, value: (i: number, j: number) => number, rgb?: (i: number, j: number) => number[]): Buffer {
  const img = new PNG({ width: w, height: h });
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const k = 4 * (i * w + j);
      const [r, g, b] = rgb ? rgb(i, j) : [value(i, j), value(i, j), value(i, j)];
      img.data[k] = r;
      img.data[k + 1] = g;
      img.data[k + 2] = b;
      img.data[k + 3] = 255;
    }
  }
  return PNG.sync.write(img);
}

/** A white 8×8 image with a black square at (r, c) of side 4 (an Omniglot-like stroke). */
function stroke(r: number, c: number): Buffer {
  return png(8, 8, (i, j) => (i >= r && i < r + 4 && j >= c && j < c + 4 ? 0 : 255));
}

describe('Omniglot loader (generated archives in the standard layout)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'omniglot-test-'));
    const root = join(dir, 'omniglot');
    mkdirSync(root);
    // Two background subsets sharing the alphabet 'Greek' (identical files, as in the real small1/small2).
    const shared = { 'Greek/character01/0394_01.png': stroke(0, 0), 'Greek/character01/0394_02.png': stroke(0, 1) };
    const files1: Record<string, Uint8Array> = {};
    const files2: Record<string, Uint8Array> = {};
    for (const [p, b] of Object.entries(shared)) {
      files1[`images_background_small1/${p}`] = b;
      files2[`images_background_small2/${p}`] = b;
    }
    files1['images_background_small1/Latin/character01/0500_01.png'] = stroke(4, 4);
    files1['images_background_small1/Latin/character01/0500_02.png'] = stroke(4, 3);
    files1['images_background_small1/Latin/character01/0500_03.png'] = stroke(3, 4);
    files2['images_background_small2/Tagalog/character02/0900_01.png'] = stroke(2, 2);
    files2['images_background_small2/Tagalog/character02/0900_02.png'] = stroke(2, 1);
    writeFileSync(join(root, 'images_background_small1.zip'), zipSync(files1));
    writeFileSync(join(root, 'images_background_small2.zip'), zipSync(files2));
    // An extracted evaluation set as a folder.
    mkdirSync(join(root, 'images_evaluation', 'Atlantean', 'character01'), { recursive: true });
    writeFileSync(join(root, 'images_evaluation', 'Atlantean', 'character01', '1000_01.png'), stroke(1, 1));
    // One-shot runs: two runs of 3 classes.
    const runs: Record<string, Uint8Array> = {};
    for (const run of ['run01', 'run02']) {
      const lines: string[] = [];
      for (let k = 1; k <= 3; k++) {
        runs[`${run}/training/class0${k}.png`] = stroke(k, 0);
        // Query item k belongs to class (k mod 3) + 1.
        const c = (k % 3) + 1;
        runs[`${run}/test/item0${k}.png`] = stroke(c, 1);
        lines.push(`${run}/test/item0${k}.png ${run}/training/class0${c}.png`);
      }
      runs[`${run}/class_labels.txt`] = new TextEncoder().encode(lines.join('\n') + '\n');
    }
    writeFileSync(join(root, 'all_runs.zip'), zipSync(runs));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('loads every background set: one class per character, duplicates kept once, inverted and resized', () => {
    const set = loadOmniglot({ path: join(dir, 'omniglot'), imageSize: 4 });
    expect(set.classNames).toEqual(['Greek/character01', 'Latin/character01', 'Tagalog/character02']);
    expect(set.classGroups).toEqual(['Greek', 'Latin', 'Tagalog']);
    expect(set.byClass.map((m) => m.length)).toEqual([2, 3, 2]);
    expect([set.height, set.width, set.channels]).toEqual([4, 4, 1]);
    // Greek 0394_01: black 4×4 square at the top-left of an 8×8 white image → after inversion and 2×2 area
    // averaging, ones in the top-left 2×2 block of the 4×4 image, zeros elsewhere.
    const img = Array.from(set.image(0));
    expect(img).toEqual([1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    // Shifted by one column: half-covered cells average to 0.5.
    expect(Array.from(set.image(1)).slice(0, 4)).toEqual([0.5, 1, 0.5, 0]);
  });

  it('loads chosen sets and alphabets, and a folder set', () => {
    expect(loadOmniglot({ path: join(dir, 'omniglot'), sets: ['images_background_small2'], imageSize: 4 }).classNames).toEqual([
      'Greek/character01',
      'Tagalog/character02',
    ]);
    expect(loadOmniglot({ path: join(dir, 'omniglot'), alphabets: ['Latin'], imageSize: 4 }).count).toBe(3);
    expect(loadOmniglot({ path: join(dir, 'omniglot'), sets: ['images_evaluation'], imageSize: 4 }).classNames).toEqual([
      'Atlantean/character01',
    ]);
    expect(() => loadOmniglot({ path: join(dir, 'omniglot'), sets: ['images_nothing'] })).toThrow(
      /set 'images_nothing' not found .*found: all_runs, images_background_small1/,
    );
    expect(() => loadOmniglot({ path: join(dir, 'nowhere') })).toThrow(DataError);
    // The error says where the data comes from and where to put it.
    expect(() => loadOmniglot({ path: join(dir, 'nowhere') })).toThrow(
      `Omniglot not found; searched ${join(dir, 'nowhere')} (explicit). ${OMNIGLOT_HOW_TO_GET}`,
    );
    expect(OMNIGLOT_HOW_TO_GET).toMatch(/https:\/\/github\.com\/brendenlake\/omniglot .*images_background\.zip.*all_runs\.zip.*BILEVEL_DATA_PATH/);
    expect(() => loadOneShotRuns({ path: join(dir, 'nowhere') })).toThrow(OMNIGLOT_HOW_TO_GET);
  });

  it('loads the one-shot runs with their class labels', () => {
    const runs = loadOneShotRuns({ path: join(dir, 'omniglot'), imageSize: 8 });
    expect(runs.map((r) => r.name)).toEqual(['run01', 'run02']);
    expect(runs[0].classes).toBe(3);
    expect(Array.from(runs[0].queryLabels)).toEqual([1, 2, 0]);
    // Query 1 (item01) shows class 2's stroke position (row 2) — the label file says class02.
    const q = runs[0].query.subarray(0, 64);
    expect(q[2 * 8 + 1]).toBe(1);
    expect(q[0]).toBe(0);
  });
});

describe('image-folder loader (miniImageNet layouts, generated PNGs)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'mini-test-'));
    const colour = (k: number) => () => [k * 60, 255 - k * 60, 30];
    for (const [cls, k] of [
      ['n01', 1],
      ['n02', 2],
    ] as const) {
      mkdirSync(join(dir, 'test', cls), { recursive: true });
      for (let i = 0; i < 3; i++) writeFileSync(join(dir, 'test', cls, `${cls}_${i}.png`), png(6, 6, () => 0, colour(k)));
    }
    mkdirSync(join(dir, 'images'));
    const lines = ['filename,label'];
    for (let i = 0; i < 4; i++) {
      const name = `img${i}.png`;
      writeFileSync(join(dir, 'images', name), png(12, 12, (r) => (r < 6 ? 255 : 0)));
      lines.push(`${name},${i % 2 ? 'n05' : 'n04'}`);
    }
    writeFileSync(join(dir, 'train.csv'), lines.join('\n'));
    writeFileSync(join(dir, 'val.csv'), 'filename,label\nphoto.jpg,n09\n');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a folder per class and a CSV split file, resizing to the requested size', () => {
    const test = loadImageFolderSplit({ path: dir, split: 'test', imageSize: 3 });
    expect(test.classNames).toEqual(['n01', 'n02']);
    expect(test.count).toBe(6);
    expect(test.channels).toBe(3);
    expect(test.image(0)[0]).toBeCloseTo(60 / 255, 5);
    expect(test.image(0)[1]).toBeCloseTo(195 / 255, 5);
    expect(test.image(5)[0]).toBeCloseTo(120 / 255, 5);
    const train = loadImageFolderSplit({ path: dir, split: 'train', imageSize: 2, channels: 1 });
    expect(train.classNames).toEqual(['n04', 'n05']);
    expect(Array.from(train.byClass[0])).toEqual([0, 1]);
    // Top half white, bottom half black.
    expect(Array.from(train.image(0)).map((v) => Math.round(v * 1000) / 1000)).toEqual([1, 1, 0, 0]);
    // Episodes work on it like on any class-indexed set.
    expect(sampleEpisodes(train, { ways: 2, shots: 1, queries: 1 }, 2, new Random(0))).toHaveLength(2);
  });

  it('says plainly that only PNG is supported, and names missing splits', () => {
    expect(() => loadImageFolderSplit({ path: dir, split: 'val' })).toThrow(/photo\.jpg' is not a PNG; only PNG images can be decoded \(no JPEG decoder/);
    expect(() => loadImageFolderSplit({ path: dir, split: 'nope' })).toThrow(/neither a split file nope.csv nor a folder nope\//);
  });
});

// Real Omniglot: resolved through the documented order (CI sets BILEVEL_DATA_PATH=<repo>/../shared/data:…).
const omniglot = findOmniglot();
const runsPath = findOneShotRuns();
if (!omniglot) {
  console.warn('Skipping the real-Omniglot tests: no omniglot/ folder in BILEVEL_DATA_PATH, ~/.cache/bilevel or /usr/share/datasets.');
} else if (!runsPath) {
  console.warn(`Skipping the one-shot-runs test: no all_runs.zip or all_runs/ in ${omniglot}.`);
}
(omniglot ? describe : describe.skip)('real Omniglot', () => {
  it('samples valid episodes from the Greek characters of both background subsets (one class each)', () => {
    // One alphabet keeps this test quick (PNG decoding is slow under jest); Greek is in both subsets.
    const set = loadOmniglot({ alphabets: ['Greek'] });
    expect(set.numClasses).toBe(24);
    expect(set.byClass.every((m) => m.length === 20)).toBe(true);
    expect([set.height, set.width, set.channels]).toEqual([28, 28, 1]);
    // Inverted: strokes are 1 on a 0 background, so most of the area is near 0.
    const mean = set.images.reduce((a, b) => a + b, 0) / set.images.length;
    expect(mean).toBeGreaterThan(0.02);
    expect(mean).toBeLessThan(0.3);
    const rng = new Random(0);
    for (const e of sampleEpisodes(set, { ways: 5, shots: 1, queries: 5 }, 20, rng)) {
      expect(new Set(e.classes).size).toBe(5);
      const all = [...e.support, ...e.query];
      expect(new Set(all).size).toBe(all.length);
      e.support.forEach((img, j) => expect(set.labels[img]).toBe(e.classes[e.supportLabels[j]]));
      e.query.forEach((img, j) => expect(set.labels[img]).toBe(e.classes[e.queryLabels[j]]));
    }
    const rotated = set.withRotations();
    expect(rotated.numClasses).toBe(96);
  });

  (runsPath ? it : it.skip)('loads the 20 one-shot runs: 20 classes and 20 queries each, one query per class', () => {
    const runs = loadOneShotRuns();
    expect(runs).toHaveLength(20);
    for (const r of runs) {
      expect(r.classes).toBe(20);
      expect(r.query).toHaveLength(20 * 28 * 28);
      expect([...r.queryLabels].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    }
  });
});
