import type { RunResult } from './results';
import { seedComparison } from './report';
import { FEW_SHOT_EXTRA_SEEDS, type SectionSetting, methodKey, suiteSettings } from './settings';

const fewShot = suiteSettings({ quick: false }).find((s) => s.id === 'few-shot') as SectionSetting;

function run(label: string, seed: number, accuracy: number): RunResult {
  return {
    section: 'few-shot',
    key: seed === 0 ? label : `seed${seed}/${label}`,
    label,
    ...(seed === 0 ? {} : { protocol: `seed${seed}` }),
    status: 'completed',
    steps: 10,
    trainSeconds: 90,
    wallSeconds: 100,
    setupSeconds: 1,
    curve: [],
    evals: [{ iterate: 10, time: 90, outerLoss: 1, metrics: { testAccuracy: accuracy } }],
  };
}

describe('few-shot over seeds', () => {
  it('runs every method on seeds 0, 1 and 2 (full size), each key unique', () => {
    const labels = ['ESJ', 'ESJ (unbiased)', '∇ₓf only (reference)', 'AID-CG'];
    expect(FEW_SHOT_EXTRA_SEEDS).toEqual([1, 2]);
    expect(fewShot.methods.map(methodKey)).toEqual([
      ...labels,
      ...labels.map((l) => `seed1/${l}`),
      ...labels.map((l) => `seed2/${l}`),
    ]);
    expect(new Set(fewShot.methods.map(methodKey)).size).toBe(fewShot.methods.length);
    const quick = suiteSettings({ quick: true }).find((s) => s.id === 'few-shot') as SectionSetting;
    expect(quick.methods.map(methodKey)).toEqual(labels);
  });

  it('reports mean ± 95 % t-interval per method and paired t-tests between methods', () => {
    // AID-CG beats ∇ₓf-only by exactly 0.05 on every seed (p = 0); ESJ differs from ∇ₓf-only by +0.01, −0.01, +0.02.
    const acc: Record<string, number[]> = {
      ESJ: [0.81, 0.79, 0.82],
      'ESJ (unbiased)': [0.5, 0.6, 0.4],
      '∇ₓf only (reference)': [0.8, 0.8, 0.8],
      'AID-CG': [0.85, 0.85, 0.85],
    };
    const runs = Object.entries(acc).flatMap(([label, vs]) => vs.map((v, seed) => run(label, seed, v)));
    const text = seedComparison(fewShot, runs);
    // ESJ: mean 0.8067, sd 0.01528, half-width 4.303·0.01528/√3 = 0.03795
    expect(text).toContain('| ESJ | 81.0 % | 79.0 % | 82.0 % | 80.7 % ± 3.8 % | 3 |');
    expect(text).toMatch(/\| ∇ₓf only \(reference\) − AID-CG \| −5\.0 % \| ± 0\.0 % \| 0 \| 3 \| \*\*yes\*\* \|/);
    expect(text).toMatch(/\| ESJ − ∇ₓf only \(reference\) \| \+0\.7 % \| [^|]+ \| 0\.[0-9]+ \| 3 \| no \|/);
    expect(text).toMatch(/Significant at 5 %: .*∇ₓf only \(reference\) − AID-CG.*Not significant:/);
    // one seed only: no comparison at all
    expect(seedComparison(fewShot, runs.filter((r) => r.protocol === undefined))).toBe('');
  });
});
