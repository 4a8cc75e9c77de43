import { layoutLineChart, type PolylinePrimitive } from './line-chart';
import { renderSvg } from './render-svg';
import { findAll, parseXml } from './test-utils/xml';

describe('renderSvg', () => {
  const series = [
    { label: 'ESJ <fast> & "sure"', color: '#1f77b4', points: [[1, 0.9], [2, 0.5], [3, 0.2]] as [number, number][] },
    { label: "qNBO (BFGS) 'x'", color: '#ff7f0e', points: [[1, 0.8], [2, 0.3], [3, 0.1]] as [number, number][] },
  ];
  const layout = layoutLineChart(series, { title: 'loss & more', xLabel: 'outer step', yLabel: 'outer loss' });
  const svg = renderSvg(layout);

  it('is well-formed XML with an <svg> root of the chart size', () => {
    const root = parseXml(svg);
    expect(root.name).toBe('svg');
    expect(root.attributes.xmlns).toBe('http://www.w3.org/2000/svg');
    expect(Number(root.attributes.width)).toBe(layout.width);
    expect(Number(root.attributes.height)).toBe(layout.height);
    expect(root.attributes.viewBox).toBe(`0 0 ${layout.width} ${layout.height}`);
  });

  it('draws one polyline per series with the layout coordinates', () => {
    const root = parseXml(svg);
    const lines = findAll(root, 'polyline').filter((e) => e.attributes.class === 'series');
    expect(lines.map((l) => l.attributes['data-series'])).toEqual(series.map((s) => s.label));
    const expected = layout.primitives.filter((p): p is PolylinePrimitive => p.kind === 'polyline' && p.role === 'series');
    lines.forEach((line, i) => {
      const pts = line.attributes.points.split(' ').map((p) => p.split(',').map(Number));
      expect(pts).toHaveLength(expected[i].points.length);
      pts.forEach(([x, y], k) => {
        expect(x).toBeCloseTo(expected[i].points[k][0], 1);
        expect(y).toBeCloseTo(expected[i].points[k][1], 1);
      });
      expect(line.attributes.stroke).toBe(series[i].color);
    });
  });

  it('keeps labels with XML special characters intact', () => {
    const texts = findAll(parseXml(svg), 'text').map((t) => t.text);
    expect(texts).toEqual(expect.arrayContaining([series[0].label, series[1].label, 'loss & more', 'outer step', 'outer loss']));
  });

  it('the test parser rejects malformed XML', () => {
    expect(() => parseXml('<svg><g></svg>')).toThrow(/does not close/);
    expect(() => parseXml('<svg a="1" a="2"/>')).toThrow(/duplicate/);
    expect(() => parseXml('<svg><text>a & b</text></svg>')).toThrow(/&/);
    expect(() => parseXml('<svg/><svg/>')).toThrow(/second root/);
  });
});
