import {
  makeClassification,
  makeRegression,
  splitIndices,
  subsetClassification,
  trainValidationTestSplit,
} from './index';
import { selectRows, sizesFromFractions } from './splits';

describe('synthetic generators', () => {
  it('makeClassification is seeded, balanced and separable when the means are far apart', () => {
    const a = makeClassification({
      samples: 300,
      features: 8,
      classes: 3,
      seed: 5,
      separation: 12,
      noise: 1,
    });
    const b = makeClassification({
      samples: 300,
      features: 8,
      classes: 3,
      seed: 5,
      separation: 12,
      noise: 1,
    });
    const c = makeClassification({
      samples: 300,
      features: 8,
      classes: 3,
      seed: 6,
      separation: 12,
      noise: 1,
    });
    expect(Array.from(a.inputs)).toEqual(Array.from(b.inputs));
    expect(Array.from(a.inputs)).not.toEqual(Array.from(c.inputs));
    const counts = [0, 0, 0];
    for (const l of a.labels) counts[l]++;
    expect(counts).toEqual([100, 100, 100]);
    // Nearest class mean (estimated from the data) recovers almost every label.
    const d = a.dimension;
    const means = new Float64Array(3 * d);
    for (let i = 0; i < a.count; i++)
      for (let j = 0; j < d; j++) means[a.labels[i] * d + j] += a.inputs[i * d + j] / 100;
    let correct = 0;
    for (let i = 0; i < a.count; i++) {
      let best = -1;
      let bestDist = Infinity;
      for (let c2 = 0; c2 < 3; c2++) {
        let s = 0;
        for (let j = 0; j < d; j++) s += (a.inputs[i * d + j] - means[c2 * d + j]) ** 2;
        if (s < bestDist) [best, bestDist] = [c2, s];
      }
      if (best === a.labels[i]) correct++;
    }
    expect(correct / a.count).toBeGreaterThan(0.97);
  });

  it('makeRegression gives targets Wᵀa + noise with the returned weights', () => {
    const r = makeRegression({ samples: 50, features: 4, outputs: 2, noise: 0, seed: 1 });
    for (let i = 0; i < 50; i++) {
      for (let o = 0; o < 2; o++) {
        let s = 0;
        for (let j = 0; j < 4; j++) s += r.inputs[i * 4 + j] * r.weights[j * 2 + o];
        expect(r.targets[i * 2 + o]).toBeCloseTo(s, 5);
      }
    }
    const noisy = makeRegression({ samples: 2000, features: 4, noise: 0.5, seed: 1, weights: [1, 2, 3, 4] });
    let res = 0;
    for (let i = 0; i < 2000; i++) {
      let s = 0;
      for (let j = 0; j < 4; j++) s += noisy.inputs[i * 4 + j] * (j + 1);
      res += (noisy.targets[i] - s) ** 2;
    }
    expect(Math.sqrt(res / 2000)).toBeCloseTo(0.5, 1);
    expect(() => makeRegression({ samples: 2, features: 2, weights: [1] })).toThrow(/features × outputs = 2/);
  });

  it('rejects bad sizes', () => {
    expect(() => makeClassification({ samples: 0, features: 2, classes: 2 })).toThrow(
      /samples must be an integer >= 1/,
    );
    expect(() => makeClassification({ samples: 5, features: 2, classes: 1 })).toThrow(
      /classes must be an integer >= 2/,
    );
  });
});

describe('splits', () => {
  it('splitIndices gives disjoint seeded parts of the requested sizes', () => {
    const [a, b, c] = splitIndices(20, [10, 5, 3], { seed: 2 });
    expect([a.length, b.length, c.length]).toEqual([10, 5, 3]);
    const all = new Set([...a, ...b, ...c]);
    expect(all.size).toBe(18);
    for (const i of all) expect(i >= 0 && i < 20).toBe(true);
    expect(Array.from(splitIndices(20, [10], { seed: 2 })[0])).toEqual(Array.from(a));
    expect(Array.from(splitIndices(5, [2, 3], { shuffle: false })[1])).toEqual([2, 3, 4]);
    expect(() => splitIndices(5, [3, 3])).toThrow(/exceed the 5 available/);
  });

  it('sizesFromFractions rounds down and gives the rest to the first part', () => {
    expect(sizesFromFractions(10, [0.7, 0.3])).toEqual([7, 3]);
    expect(sizesFromFractions(11, [0.5, 0.25, 0.25])).toEqual([7, 2, 2]);
    expect(sizesFromFractions(10, [0.5, 0.2])).toEqual([5, 2]);
    expect(() => sizesFromFractions(10, [0.8, 0.3])).toThrow(/sum to at most 1/);
  });

  it('selectRows and trainValidationTestSplit keep rows with their labels', () => {
    expect(Array.from(selectRows(Float32Array.from([1, 2, 3, 4, 5, 6]), 2, [2, 0]))).toEqual([5, 6, 1, 2]);
    const data = makeClassification({ samples: 30, features: 2, classes: 3, seed: 0 });
    const { train, validation, test } = trainValidationTestSplit(
      data,
      { train: 10, validation: 10, test: 10 },
      4,
    );
    expect([train.count, validation.count, test.count]).toEqual([10, 10, 10]);
    // Every sample of the parts appears in the original with the same label.
    const key = (x: number, y: number) => `${x},${y}`;
    const original = new Map<string, number>();
    for (let i = 0; i < 30; i++)
      original.set(key(data.inputs[2 * i], data.inputs[2 * i + 1]), data.labels[i]);
    for (const part of [train, validation, test]) {
      for (let i = 0; i < part.count; i++)
        expect(original.get(key(part.inputs[2 * i], part.inputs[2 * i + 1]))).toBe(part.labels[i]);
    }
    expect(subsetClassification(data, [3]).labels[0]).toBe(data.labels[3]);
  });
});
