import { Random } from './random';

describe('Random', () => {
  it('gives the same stream for the same seed and a different one for another seed', () => {
    const a = new Random(42);
    const b = new Random(42);
    const c = new Random(43);
    const sa = Array.from({ length: 10 }, () => a.uniform());
    const sb = Array.from({ length: 10 }, () => b.uniform());
    const sc = Array.from({ length: 10 }, () => c.uniform());
    expect(sa).toEqual(sb);
    expect(sa).not.toEqual(sc);
  });

  it('draws normals with mean 0 and variance 1', () => {
    const r = new Random(1);
    const n = 200000;
    const xs = r.normalArray(n);
    let m = 0;
    for (const x of xs) m += x;
    m /= n;
    let v = 0;
    for (const x of xs) v += (x - m) * (x - m);
    v /= n;
    expect(Math.abs(m)).toBeLessThan(0.01);
    expect(Math.abs(v - 1)).toBeLessThan(0.02);
  });

  it('saves and restores its state exactly', () => {
    const r = new Random(7);
    r.normal();
    const st = r.getState();
    const next = [r.normal(), r.uniform(), r.normal()];
    r.setState(st);
    expect([r.normal(), r.uniform(), r.normal()]).toEqual(next);
  });

  it('forks independent, reproducible streams', () => {
    const f1 = new Random(3).fork('a');
    const f2 = new Random(3).fork('a');
    const f3 = new Random(3).fork('b');
    expect(f1.uniform()).toBe(f2.uniform());
    expect(new Random(3).fork('a').uniform()).not.toBe(f3.uniform());
  });

  it('makes permutations of 0..n-1', () => {
    const p = Array.from(new Random(5).permutation(50)).sort((a, b) => a - b);
    expect(p).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('honours every safe integer seed in full (2^32 is not seed 0) and refuses the others', () => {
    for (const bad of [NaN, Infinity, -1, 0.5, 2 ** 53, 2 ** 53 + 2]) {
      expect(() => new Random(bad)).toThrow(/seed must be an integer in \[0, 2\^53\)/);
    }
    const first = (seed: number): number[] => {
      const r = new Random(seed);
      return [r.nextUint32(), r.nextUint32(), r.nextUint32()];
    };
    // Seeds that differ only above bit 32 (which used to be dropped) give different streams.
    expect(first(2 ** 32)).not.toEqual(first(0));
    expect(first(2 ** 32 + 5)).not.toEqual(first(5));
    expect(first(2 ** 52 + 1)).not.toEqual(first(1));
    expect(first(2 ** 32 - 1)).not.toEqual(first(0));
    expect(first(2 ** 40)).toEqual(first(2 ** 40));
  });
});
