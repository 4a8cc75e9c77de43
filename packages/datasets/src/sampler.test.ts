import { Random } from '@bilevel/core';
import { MinibatchSampler } from './index';

describe('MinibatchSampler', () => {
  it('covers every sample once per epoch when the batch size divides n', () => {
    const s = new MinibatchSampler(12, 4, 3);
    for (let epoch = 0; epoch < 3; epoch++) {
      const seen: number[] = [];
      for (let b = 0; b < 3; b++) seen.push(...s.next());
      expect(seen.slice().sort((a, b) => a - b)).toEqual(Array.from({ length: 12 }, (_, i) => i));
    }
  });

  it('keeps batches duplicate-free across epoch boundaries and every epoch a permutation', () => {
    const n = 10;
    const s = new MinibatchSampler(n, 4, 1);
    const stream: number[] = [];
    for (let b = 0; b < 25; b++) {
      const batch = Array.from(s.next());
      expect(new Set(batch).size).toBe(4);
      stream.push(...batch);
    }
    for (let e = 0; e + n <= stream.length; e += n) {
      expect(stream.slice(e, e + n).sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
    }
    expect(s.epoch).toBe(9);
  });

  it('is seeded, can use a caller stream, and restores its state', () => {
    const a = new MinibatchSampler(20, 6, 5);
    const b = new MinibatchSampler(20, 6, 5);
    expect(Array.from(a.next())).toEqual(Array.from(b.next()));
    const state = a.getState();
    const next = [a.next(), a.next(), a.next(), a.next()].map((x) => Array.from(x));
    b.setState(JSON.parse(JSON.stringify(state)));
    expect([b.next(), b.next(), b.next(), b.next()].map((x) => Array.from(x))).toEqual(next);
    const c = new MinibatchSampler(20, 6, new Random(9));
    const d = new MinibatchSampler(20, 6, new Random(9));
    for (let i = 0; i < 3; i++) c.next(new Random(100));
    for (let i = 0; i < 3; i++) d.next(new Random(100));
    expect(Array.from(c.next(new Random(100)))).toEqual(Array.from(d.next(new Random(100))));
  });

  it('rejects bad sizes', () => {
    expect(() => new MinibatchSampler(5, 6)).toThrow(/batch size must be an integer in 1\.\.5/);
    expect(() => new MinibatchSampler(0, 1)).toThrow(/data size must be an integer >= 1/);
  });
});
