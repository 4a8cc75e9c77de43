import { bandAt, bandSeries, chooseSteps, epochs, valueAt } from './benchopt';
import { quantile } from './stats';
import type { EvalPoint, RunResult } from './results';
import { type SectionSetting, suiteSettings } from './settings';

const ev = (time: number, testError: number, outerLoss = 1): EvalPoint => ({ iterate: 0, time, outerLoss, metrics: { testError } });
const run = (key: string, evals: EvalPoint[], status: RunResult['status'] = 'completed'): RunResult => ({
  section: 'benchopt',
  key,
  label: key.slice(key.indexOf('/') + 1),
  protocol: key.slice(0, key.indexOf('/')),
  status,
  steps: 3,
  trainSeconds: 1,
  wallSeconds: 1,
  setupSeconds: 0,
  curve: [],
  evals,
});

describe('benchopt section statistics', () => {
  it('quantiles interpolate between order statistics', () => {
    expect(quantile([5, 1, 3, 2, 4], 0.5)).toBe(3);
    expect(quantile([1, 2, 3, 4, 5], 0.2)).toBeCloseTo(1.8, 12);
    expect(quantile([1, 2, 3, 4, 5], 0.8)).toBeCloseTo(4.2, 12);
    expect(quantile([], 0.5)).toBeNaN();
  });

  it('a run at time t is its last evaluation by then; the final one counts at the budget', () => {
    const r = run('seed0/SOBA', [ev(0, 0.9), ev(1, 0.5), ev(2.3, 0.2)]);
    expect(valueAt(r, 'testError', 0.5)).toBe(0.9);
    expect(valueAt(r, 'testError', 1.5)).toBe(0.5);
    expect(valueAt(r, 'testError', 2, 2)).toBe(0.2);
    expect(valueAt(r, 'testError', 2)).toBe(0.5);
    const band = bandAt([r, run('seed1/SOBA', [ev(0, 0.7), ev(2.1, 0.4)])], 'testError', 2, 2);
    expect(band.n).toBe(2);
    expect(band.median).toBeCloseTo(0.3, 12);
    expect(band.q20).toBeCloseTo(0.24, 12);
    expect(band.q80).toBeCloseTo(0.36, 12);
  });

  it('the grid winner is the completed run with the lowest final validation loss', () => {
    const section = suiteSettings({ quick: false }).find((s) => s.id === 'benchopt')!;
    const grid = section.methods.filter((m) => m.grid && m.label === 'SOBA');
    expect(grid).toHaveLength(8);
    const key = (m: (typeof grid)[number]) => `${m.protocol}/${m.label}`;
    const runs = [
      run(key(grid[0]), [ev(0, 0.9, 2), ev(4, 0.3, 0.8)]),
      run(key(grid[1]), [ev(0, 0.9, 2), ev(4, 0.2, 0.5)]),
      run(key(grid[2]), [ev(0, 0.9, 2), ev(4, 0.1, 0.1)], 'diverged'),
    ];
    const chosen = chooseSteps(section, runs).get('SOBA')!;
    expect(chosen.validationLoss).toBe(0.5);
    expect(chosen.steps).toEqual({ innerStep: grid[1].grid!.innerStep, outerStep: grid[1].grid!.outerStep });
    expect(chooseSteps(section, runs).has('SABA')).toBe(false);
  });

  it('epochs: minibatch methods count batch × calls / n, full-batch ones one per call, also from settings read back from JSON', () => {
    const section = suiteSettings({ quick: false }).find((s) => s.id === 'benchopt')!;
    const reloaded = JSON.parse(JSON.stringify(section)) as SectionSetting;
    const soba = section.methods.find((m) => m.label === 'SOBA' && !m.grid)!;
    const qnbo = section.methods.find((m) => m.label === 'qNBO' && !m.grid)!;
    expect(qnbo.fullBatch).toBe(true);
    const { batchSize, trainSamples } = section.problem.options as { batchSize: number; trainSamples: number };
    const withCalls = (m: typeof soba, calls: number): RunResult => ({
      ...run(`${m.protocol}/${m.label}`, []),
      oracleCalls: { innerGradY: calls } as RunResult['oracleCalls'],
    });
    for (const settings of [section, reloaded]) {
      expect(epochs(settings, withCalls(soba, 1000))).toBeCloseTo((1000 * batchSize) / trainSamples, 12);
      expect(epochs(settings, withCalls(qnbo, 40))).toBe(40);
    }
  });

  it('the figure has one series per method: the median line over a band from the 20 % to the 80 % quantile', () => {
    const section = suiteSettings({ quick: false }).find((s) => s.id === 'benchopt')!;
    const runs = [0.5, 0.3, 0.2, 0.4, 0.1].map((v, k) => run(`seed${k}/SOBA`, [ev(0, 0.9), ev(1, v)]));
    const series = bandSeries(section, new Map([['SOBA', runs]]), 2);
    expect(series).toHaveLength(1);
    const [s] = series;
    expect(s.label).toBe('SOBA');
    expect(s.points).toHaveLength(61);
    expect(s.band).toHaveLength(61);
    // at t = 0 every run is at 0.9; from t = 1 on at its own value: median 0.3, quantiles 0.18 and 0.42
    expect(s.band![0]).toEqual([0, 0.9, 0.9]);
    const at = s.band!.find(([t]) => t === 1)!;
    expect(at[1]).toBeCloseTo(0.18, 12);
    expect(at[2]).toBeCloseTo(0.42, 12);
    expect(s.points.find(([t]) => t === 1)![1]).toBeCloseTo(0.3, 12);
  });
});
