import { formatTick, layoutLineChart, linearTicks, logTicks, niceStep, type PolylinePrimitive } from './line-chart';

const isNice = (step: number): boolean => {
  const m = step / Math.pow(10, Math.floor(Math.log10(step) + 1e-12));
  return [1, 2, 5, 10].some((n) => Math.abs(m - n) < 1e-9);
};

describe('niceStep', () => {
  it('returns the smallest 1, 2 or 5 × 10^k that is ≥ the raw step', () => {
    for (const raw of [0.00037, 0.013, 0.23, 0.9, 1, 1.3, 3.7, 7.2, 42, 9999, 123456]) {
      const step = niceStep(raw);
      expect(isNice(step)).toBe(true);
      expect(step).toBeGreaterThanOrEqual(raw * (1 - 1e-12));
      // The next smaller nice value would be below raw: candidates are 1, 2, 5 per decade.
      const e = Math.floor(Math.log10(raw));
      const smaller = [1, 2, 5, 10]
        .flatMap((m) => [m * Math.pow(10, e - 1), m * Math.pow(10, e)])
        .filter((c) => c < step * (1 - 1e-9));
      expect(Math.max(...smaller)).toBeLessThan(raw);
    }
  });
});

describe('linearTicks', () => {
  it.each([
    [0, 1],
    [0.37, 0.41],
    [-3.2, 17.9],
    [1234, 98765],
    [5, 5],
  ])('covers [%p, %p] with evenly spaced nice ticks', (lo, hi) => {
    const { min, max, ticks } = linearTicks(lo, hi);
    expect(min).toBeLessThanOrEqual(lo);
    expect(max).toBeGreaterThanOrEqual(hi);
    expect(ticks.length).toBeGreaterThanOrEqual(3);
    expect(ticks.length).toBeLessThanOrEqual(12);
    const step = ticks[1].value - ticks[0].value;
    expect(isNice(step)).toBe(true);
    for (let i = 1; i < ticks.length; i++) expect(ticks[i].value - ticks[i - 1].value).toBeCloseTo(step, 9);
    expect(ticks[0].value).toBeCloseTo(min, 9);
    expect(ticks[ticks.length - 1].value).toBeCloseTo(max, 9);
    // Labels read back to the tick values (to the precision the step needs).
    for (const t of ticks) expect(Math.abs(Number(t.label) - t.value)).toBeLessThan(step / 100);
  });
});

describe('logTicks', () => {
  it('puts ticks on powers of ten covering a wide range', () => {
    const { min, max, ticks } = logTicks(3e-5, 42);
    expect(min).toBeLessThanOrEqual(3e-5);
    expect(max).toBeGreaterThanOrEqual(42);
    for (const t of ticks) {
      const e = Math.log10(t.value);
      expect(Math.abs(e - Math.round(e))).toBeLessThan(1e-9);
      expect(Number(t.label)).toBeCloseTo(t.value, 12);
    }
    expect(ticks.length).toBeLessThanOrEqual(10);
  });

  it('adds 2 and 5 inside a narrow range', () => {
    const { ticks } = logTicks(0.15, 0.8);
    expect(ticks.map((t) => t.value)).toEqual([0.1, 0.2, 0.5, 1].map((v) => expect.closeTo(v, 12) as unknown as number));
  });
});

describe('formatTick', () => {
  it('uses as many decimals as the step needs, exponents for extreme magnitudes', () => {
    expect(formatTick(0.5, 0.1)).toBe('0.5');
    expect(formatTick(2, 0.5)).toBe('2.0');
    expect(formatTick(1500, 500)).toBe('1500');
    expect(formatTick(3e-7, 1e-7)).toBe('3e-7');
    expect(formatTick(2.5e6, 5e5)).toBe('2.5e6');
    expect(formatTick(1e-17, 0.2)).toBe('0');
  });
});

describe('layoutLineChart', () => {
  const series = [
    { label: 'a', color: '#ff0000', points: [[0, 1], [1, 3], [2, 2]] as [number, number][] },
    { label: 'b', color: '#0000ff', points: [[0, 2], [1, NaN], [2, 4], [3, 5]] as [number, number][] },
  ];

  it('maps the data range onto the plot area', () => {
    const layout = layoutLineChart(series, { title: 't', xLabel: 'x', yLabel: 'y' });
    const { plot, xAxis, yAxis } = layout;
    expect(xAxis.toChart(xAxis.min)).toBeCloseTo(plot.x, 9);
    expect(xAxis.toChart(xAxis.max)).toBeCloseTo(plot.x + plot.width, 9);
    expect(yAxis.toChart(yAxis.min)).toBeCloseTo(plot.y + plot.height, 9);
    expect(yAxis.toChart(yAxis.max)).toBeCloseTo(plot.y, 9);
    expect(xAxis.min).toBeLessThanOrEqual(0);
    expect(xAxis.max).toBeGreaterThanOrEqual(3);
    expect(yAxis.min).toBeLessThanOrEqual(1);
    expect(yAxis.max).toBeGreaterThanOrEqual(5);
  });

  it('breaks a line at non-finite values and draws each point at its mapped position', () => {
    const layout = layoutLineChart(series, { title: 't', xLabel: 'x', yLabel: 'y' });
    const lines = layout.primitives.filter((p): p is PolylinePrimitive => p.kind === 'polyline' && p.role === 'series');
    expect(lines.map((l) => [l.series, l.points.length])).toEqual([
      ['a', 3],
      ['b', 1],
      ['b', 2],
    ]);
    expect(lines[2].points[1][0]).toBeCloseTo(layout.xAxis.toChart(3), 9);
    expect(lines[2].points[1][1]).toBeCloseTo(layout.yAxis.toChart(5), 9);
  });

  it('on a log axis drops values ≤ 0 and places the geometric middle at the middle', () => {
    const layout = layoutLineChart([{ label: 'l', color: '#000000', points: [[0, 100], [1, 0], [2, 1e-2], [3, 1]] }], {
      title: 't',
      xLabel: 'x',
      yLabel: 'y',
      yScale: 'log',
    });
    const { yAxis, plot } = layout;
    expect(yAxis.min).toBeCloseTo(1e-2, 12);
    expect(yAxis.max).toBeCloseTo(100, 9);
    expect(yAxis.toChart(1)).toBeCloseTo(plot.y + plot.height / 2, 6);
    const lines = layout.primitives.filter((p): p is PolylinePrimitive => p.kind === 'polyline' && p.role === 'series');
    expect(lines.map((l) => l.points.length)).toEqual([1, 2]);
  });

  it('lists only legend series in the legend', () => {
    const layout = layoutLineChart(
      [
        { label: 'shown', color: '#123456', points: [[0, 0], [1, 1]] },
        { label: 'hidden', color: '#654321', points: [[0, 1], [1, 0]], legend: false },
      ],
      { title: 't', xLabel: 'x', yLabel: 'y' },
    );
    const legend = layout.primitives.filter((p) => p.kind === 'polyline' && p.role === 'legend');
    expect(legend).toHaveLength(1);
    const texts = layout.primitives.filter((p) => p.kind === 'text').map((p) => (p.kind === 'text' ? p.text : ''));
    expect(texts).toContain('shown');
    expect(texts).not.toContain('hidden');
  });
});
