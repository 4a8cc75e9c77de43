import * as fs from 'fs';
import * as path from 'path';
import { zeroCounts } from '@bilevel/core';
import { figureSeries, meanCurve, wantsLogScale, writePlots } from './plots';
import { estimateRemaining, ProgressReporter } from './progress';
import type { MetricsRow } from './run-recorder';
import { RunRecorder } from './run-recorder';
import { CaptureStream, makeTempDir, readCsv, readJsonl } from './test-utils/helpers';
import { findAll, parseXml } from './test-utils/xml';

function row(step: number, time: number, loss: number, metrics: Record<string, number> = {}): MetricsRow {
  return {
    step,
    time,
    wallTime: time * 1.1,
    outerLoss: loss,
    hypergradientNorm: 1 / step,
    innerIterations: 5,
    innerGradientNorm: 0.1,
    skipped: false,
    metrics,
    diagnostics: {},
    oracleCalls: { ...zeroCounts(), innerGradY: 5 * step },
    oracleCallsTotal: 5 * step,
  };
}

const tmp = makeTempDir();
afterAll(() => tmp.cleanup());

describe('meanCurve', () => {
  it('averages x and y over runs at the steps every run reached', () => {
    const a = [row(1, 0.1, 4), row(2, 0.2, 2), row(3, 0.3, 1)];
    const b = [row(1, 0.3, 2), row(2, 0.4, 1)];
    expect(meanCurve([a, b], (r) => r.time, (r) => r.outerLoss)).toEqual([
      [0.2, 3],
      [expect.closeTo(0.3, 12), 1.5],
    ]);
    // Steps where a metric is missing in any run are left out.
    const c = [row(1, 0, 1, { acc: 0.5 }), row(2, 0, 1)];
    const d = [row(1, 0, 1, { acc: 0.7 }), row(2, 0, 1, { acc: 0.9 })];
    expect(meanCurve([c, d], (r) => r.step, (r) => r.metrics.acc)).toEqual([[1, expect.closeTo(0.6, 12)]]);
  });
});

describe('wantsLogScale', () => {
  it('asks for a log axis only for positive values spanning more than 1.5 decades', () => {
    expect(wantsLogScale([1, 0.5, 0.02])).toBe(true);
    expect(wantsLogScale([1, 0.5, 0.04])).toBe(false);
    expect(wantsLogScale([1, -0.5, 1e-6])).toBe(false);
    expect(wantsLogScale([1, NaN, 1e-3])).toBe(true);
  });
});

describe('figureSeries and writePlots', () => {
  const runs = [
    { method: 'A', seed: 0, rows: [row(1, 0.1, 10), row(2, 0.2, 1, { acc: 0.6 }), row(3, 0.3, 0.1)] },
    { method: 'A', seed: 1, rows: [row(1, 0.1, 8), row(2, 0.25, 2, { acc: 0.7 }), row(3, 0.3, 0.2)] },
    { method: 'B', seed: 0, rows: [row(1, 0.2, 5), row(2, 0.4, 4, { acc: 0.5 })] },
  ];
  const options = { name: 'exp', methods: [{ label: 'A' }, { label: 'B', color: '#123456' }], runs, mainMetric: 'acc' };

  it('draws each seed faintly and the mean boldly when there are several seeds', () => {
    const series = figureSeries(options, { key: 'step', label: 'step', pick: (r) => r.step }, { key: 'loss', title: 'loss', pick: (r) => r.outerLoss, log: true });
    expect(series.map((s) => [s.label, s.legend !== false, s.points.length])).toEqual([
      ['A (seed 0)', false, 3],
      ['A (seed 1)', false, 3],
      ['A (mean of 2)', true, 3],
      ['B', true, 2],
    ]);
    expect(series[3].color).toBe('#123456');
  });

  it('writes four figures in both formats, with a log axis for a loss spanning decades', async () => {
    const dir = path.join(tmp.dir, 'plots');
    fs.mkdirSync(dir);
    const files = (await writePlots(dir, { ...options, pixelRatio: 1, width: 400, height: 250 })).map((f) => path.basename(f));
    expect(files.sort()).toEqual(
      ['acc-vs-step', 'acc-vs-time', 'outer-loss-vs-step', 'outer-loss-vs-time'].flatMap((n) => [`${n}.png`, `${n}.svg`]).sort(),
    );
    const svg = parseXml(fs.readFileSync(path.join(dir, 'outer-loss-vs-step.svg'), 'utf8'));
    const texts = findAll(svg, 'text').map((t) => t.text);
    expect(texts).toContain('outer loss (log scale)');
    expect(texts).toEqual(expect.arrayContaining(['0.1', '1', '10']));
  });
});

describe('RunRecorder', () => {
  it('widens the CSV when a new metric appears and keeps JSON lines in step', () => {
    const csvPath = path.join(tmp.dir, 'r.csv');
    const jsonlPath = path.join(tmp.dir, 'r.jsonl');
    const rec = new RunRecorder(csvPath, jsonlPath);
    rec.add(row(1, 0.1, 3));
    rec.add(row(2, 0.2, 2, { acc: 0.5 }));
    rec.add({ ...row(3, 0.3, NaN), diagnostics: { residual: 1e-3 } });
    rec.close();
    const csv = readCsv(csvPath);
    expect(csv.header.slice(0, 9)).toEqual(['step', 'time', 'wallTime', 'outerLoss', 'hypergradientNorm', 'innerIterations', 'innerGradientNorm', 'skipped', 'metric.acc']);
    expect(csv.header).toContain('diagnostic.residual');
    expect(csv.rows.map((r) => [r.step, r['metric.acc'], r['diagnostic.residual'], r.outerLoss])).toEqual([
      ['1', '', '', '3'],
      ['2', '0.5', '', '2'],
      ['3', '', '0.001', 'NaN'],
    ]);
    const lines = readJsonl(jsonlPath);
    expect(lines.map((l) => l.outerLoss)).toEqual([3, 2, 'NaN']);
    expect(rec.lastMetric('acc')).toBe(0.5);
  });
});

describe('ProgressReporter', () => {
  it('prints plain lines at the first and last step, every N steps and after the interval', () => {
    let now = 0;
    const out = new CaptureStream(false);
    const p = new ProgressReporter(out, { tty: false, intervalSeconds: 2, everySteps: 4, now: () => now });
    p.startRun({ index: 1, total: 1, label: 'm', seed: 0, steps: 10, mainMetric: 'acc' });
    for (let s = 1; s <= 10; s++) {
      now = s === 6 ? 10 : now + 0.01;
      p.step(row(s, s, 1 / s, s === 2 ? { acc: 0.25 } : {}));
    }
    const steps = out.text.trim().split('\n').map((l) => Number(/step (\d+)\/10/.exec(l)?.[1]));
    expect(steps).toEqual([1, 5, 6, 10]);
    expect(out.text).toMatch(/acc 0\.25/);
  });

  it('estimates the time left from the wall time per step, capped by a time limit', () => {
    expect(estimateRemaining(10, 100, 5, 4)).toBeCloseTo(45, 12);
    expect(estimateRemaining(10, 100, 5, 4, 6)).toBeCloseTo(2.5, 12);
    expect(estimateRemaining(0, 100, 0, 0)).toBeUndefined();
  });

  it('is silent when quiet', () => {
    const out = new CaptureStream(true);
    const p = new ProgressReporter(out, { tty: true, quiet: true });
    p.log('x');
    p.startRun({ index: 1, total: 1, label: 'm', seed: 0, steps: 2 });
    p.step(row(1, 1, 1));
    p.endRun('done');
    expect(out.text).toBe('');
  });
});
