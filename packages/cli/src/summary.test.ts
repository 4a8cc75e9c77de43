import { zeroCounts } from '@bilevel/core';
import { formatDuration, formatMeanSd, formatNumber, markdownTable, slug, textTable } from './format';
import { describeValues, summarizeMethod, summaryMarkdown, type ExperimentSummary, type RunSummary } from './summary';

function run(method: string, seed: number, status: RunSummary['status'], loss: number, acc: number, calls: number): RunSummary {
  return {
    method,
    seed,
    status,
    steps: status === 'not-run' ? 0 : 10,
    trainSeconds: 1 + seed,
    wallSeconds: 2 + seed,
    setupSeconds: 0.1,
    finalOuterLoss: loss,
    finalMetrics: { testAccuracy: acc },
    oracleCalls: { ...zeroCounts(), innerGradY: calls },
    oracleCallsTotal: calls,
  };
}

describe('describeValues', () => {
  it('gives the mean and the sample standard deviation (n − 1), ignoring non-finite values', () => {
    const v = [0.81, 0.79, 0.84, NaN];
    const s = describeValues(v);
    // Reference by hand: mean 0.8133…, Σ(x − m)² = 0.0012666…, / 2.
    const m = (0.81 + 0.79 + 0.84) / 3;
    const ss = (0.81 - m) ** 2 + (0.79 - m) ** 2 + (0.84 - m) ** 2;
    expect(s.n).toBe(3);
    expect(s.mean).toBeCloseTo(m, 14);
    expect(s.sd).toBeCloseTo(Math.sqrt(ss / 2), 14);
    expect([s.min, s.max]).toEqual([0.79, 0.84]);
    expect(describeValues([5]).sd).toBe(0);
    expect(describeValues([NaN]).n).toBe(0);
  });
});

describe('summarizeMethod', () => {
  const methodInfo = { label: 'qNBO', innerSolver: 'bfgs', estimator: 'qnbo', outerOptimizer: 'adam' };

  it('uses the completed runs only', () => {
    const runs = [run('qNBO', 0, 'completed', 0.5, 0.8, 100), run('qNBO', 1, 'completed', 0.7, 0.82, 120), run('qNBO', 2, 'failed', 9, 0.1, 5), run('other', 0, 'completed', 1, 1, 1)];
    const m = summarizeMethod(methodInfo, runs);
    expect([m.runs, m.completed, m.failed, m.partial]).toEqual([3, 2, 1, false]);
    expect(m.stats.finalOuterLoss.mean).toBeCloseTo(0.6, 14);
    expect(m.stats.finalOuterLoss.sd).toBeCloseTo(Math.sqrt(0.02), 14);
    expect(m.stats['metric.testAccuracy'].mean).toBeCloseTo(0.81, 14);
    expect(m.stats['oracle.innerGradY'].mean).toBe(110);
    expect(m.stats.oracleCallsTotal.n).toBe(2);
  });

  it('falls back to interrupted runs and says so', () => {
    const m = summarizeMethod(methodInfo, [run('qNBO', 0, 'interrupted', 0.9, 0.5, 10), run('qNBO', 1, 'not-run', 0, 0, 0)]);
    expect(m.partial).toBe(true);
    expect(m.stats.finalOuterLoss.n).toBe(1);
  });
});

describe('summaryMarkdown', () => {
  it('holds the comparison table, every run and the oracle calls by kind', () => {
    const runs = [run('ESJ', 0, 'completed', 0.5, 0.8, 100), run('ESJ', 1, 'completed', 0.7, 0.9, 100), run('AID-CG', 0, 'failed', 1, 0.2, 3)];
    const summary: ExperimentSummary = {
      name: 'exp',
      status: 'failed',
      startedAt: 'a',
      updatedAt: 'b',
      backend: 'cpu',
      problem: { name: 'hyper-cleaning', mainMetric: 'testAccuracy', mainMetricHigherIsBetter: true },
      seeds: [0, 1],
      methods: [
        summarizeMethod({ label: 'ESJ', innerSolver: 'gd', estimator: 'es', outerOptimizer: 'gd' }, runs),
        summarizeMethod({ label: 'AID-CG', innerSolver: 'gd', estimator: 'cg', outerOptimizer: 'gd' }, runs),
      ],
      runs: [...runs.slice(0, 2), { ...runs[2], error: { kind: 'DivergenceError', message: 'outer loss became NaN', step: 4 } }],
    };
    const md = summaryMarkdown(summary);
    expect(md).toMatch(/main metric `testAccuracy` \(higher is better\)/);
    expect(md).toMatch(/\| ESJ \| 2\/2 \| 10 ± 0 \| 1\.5 ± 0\.71 \| 0\.6 ± 0\.14 \| 0\.85 ± 0\.071 \| 100 ± 0 \|/);
    expect(md).toMatch(/\| AID-CG \(1 failed\) \| 0\/1 \| — \|/);
    expect(md).toMatch(/DivergenceError at step 4: outer loss became NaN/);
    expect(md).toMatch(/\| method \| innerValue \| innerGradY \|/);
  });
});

describe('format', () => {
  it('formats numbers, durations, mean ± sd and slugs', () => {
    expect(formatNumber(0.123456)).toBe('0.1235');
    expect(formatNumber(12)).toBe('12');
    expect(formatNumber(1.5e-5)).toBe('1.5e-5');
    expect(formatNumber(123456.7)).toBe('1.235e5');
    expect(formatNumber(NaN)).toBe('NaN');
    expect(formatNumber(-Infinity)).toBe('-Inf');
    expect(formatNumber(undefined)).toBe('—');
    expect(formatDuration(59.6)).toBe('1:00');
    expect(formatDuration(3723)).toBe('1:02:03');
    expect(formatDuration(NaN)).toBe('--:--');
    expect(formatMeanSd({ mean: 0.5, sd: 0.01234, n: 3 })).toBe('0.5 ± 0.012');
    expect(formatMeanSd({ mean: 0.5, sd: 0, n: 1 })).toBe('0.5');
    expect(slug('qNBO (BFGS)')).toBe('qnbo-bfgs');
    expect(slug('***')).toBe('method');
  });

  it('aligns text tables (numbers to the right) and escapes Markdown pipes', () => {
    const t = textTable(['name', 'value'], [['a', '1.5'], ['longer', '10']]).split('\n');
    expect(t).toEqual(['name    value', '------  -----', 'a         1.5', 'longer     10']);
    expect(markdownTable(['a|b'], [['c']])).toBe('| a\\|b |\n| --- |\n| c |');
  });
});
