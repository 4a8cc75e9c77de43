import { corruptLabels } from './index';

describe('corruptLabels', () => {
  const labels = Int32Array.from({ length: 1000 }, (_, i) => i % 10);

  it('changes exactly round(rate·n) labels, each to a different class, and records them', () => {
    const r = corruptLabels(labels, 10, { rate: 0.5, seed: 1 });
    let changed = 0;
    for (let i = 0; i < labels.length; i++) {
      const differs = r.labels[i] !== labels[i];
      expect(differs).toBe(r.corrupted[i] === 1);
      if (differs) changed++;
      expect(r.labels[i] >= 0 && r.labels[i] < 10).toBe(true);
    }
    expect(changed).toBe(500);
    expect(r.corruptedIndices.length).toBe(500);
    for (let k = 1; k < 500; k++) expect(r.corruptedIndices[k]).toBeGreaterThan(r.corruptedIndices[k - 1]);
    for (const i of r.corruptedIndices) expect(r.corrupted[i]).toBe(1);
    expect(Array.from(r.original)).toEqual(Array.from(labels));
  });

  it('draws the new label uniformly among the other classes', () => {
    const r = corruptLabels(new Int32Array(9000), 4, { rate: 1, seed: 2 });
    const counts = [0, 0, 0, 0];
    for (const l of r.labels) counts[l]++;
    expect(counts[0]).toBe(0);
    for (const c of counts.slice(1)) expect(Math.abs(c - 3000)).toBeLessThan(200); // ≈ 5 standard deviations
  });

  it('is seeded', () => {
    const a = corruptLabels(labels, 10, { rate: 0.3, seed: 7 });
    const b = corruptLabels(labels, 10, { rate: 0.3, seed: 7 });
    const c = corruptLabels(labels, 10, { rate: 0.3, seed: 8 });
    expect(Array.from(a.labels)).toEqual(Array.from(b.labels));
    expect(Array.from(a.corruptedIndices)).not.toEqual(Array.from(c.corruptedIndices));
  });

  it('rejects bad rates, too few classes and labels out of range', () => {
    expect(() => corruptLabels(labels, 10, { rate: 1.5 })).toThrow(/rate must be in \[0, 1\]/);
    expect(() => corruptLabels([0, 0], 1, { rate: 0.5 })).toThrow(/at least 2 classes/);
    expect(() => corruptLabels([0, 3], 3, { rate: 0.5 })).toThrow(/label 3 of sample 1 is outside 0\.\.2/);
  });
});
