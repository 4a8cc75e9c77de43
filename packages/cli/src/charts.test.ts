import { PNG } from 'pngjs';
import * as vega from 'vega';
import { chartSvg, findChartFont, lineChartSpec, type ChartSeries, svgToPng } from './charts';
import { findAll, linePaths, parseXml } from './test-utils/xml';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** CRC-32 (the PNG/zlib polynomial), bit by bit. */
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** Width and height from the PNG's IHDR chunk, read by hand (after the signature: length, 'IHDR', w, h). */
function ihdr(png: Buffer): { width: number; height: number } {
  expect(png.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
  expect(png.toString('latin1', 12, 16)).toBe('IHDR');
  // The chunk's CRC covers its type and data.
  expect(png.readUInt32BE(29)).toBe(crc32(png.subarray(12, 29)));
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

/** Pixels darker than mid-grey in rows [y0, y1) of a decoded PNG. */
function darkPixels(png: PNG, y0: number, y1: number): number {
  let n = 0;
  for (let y = y0; y < y1; y++) {
    for (let x = 0; x < png.width; x++) {
      const i = (y * png.width + x) * 4;
      if (png.data[i] + png.data[i + 1] + png.data[i + 2] < 3 * 110) n++;
    }
  }
  return n;
}

const series: ChartSeries[] = [
  { label: 'A (seed 0)', color: '#1f77b4', points: [[1, 4], [2, 2], [3, 1]], width: 1, opacity: 0.3, legend: false, group: 'A' },
  { label: 'A', color: '#1f77b4', points: [[1, 3], [2, NaN], [3, 0.5], [4, 0.25]] },
  { label: 'B <&>', color: '#ff7f0e', points: [[1, 5], [2, -1], [3, 4], [4, 3]] },
];

describe('lineChartSpec', () => {
  it('puts every finite point in the data, starting a new segment after each gap (and at values ≤ 0 on a log axis)', () => {
    const rows = (spec: ReturnType<typeof lineChartSpec>): { s: string; k: number; y: number }[] =>
      (spec as unknown as { data: { values: { s: string; k: number; y: number }[] } }).data.values;
    const linear = rows(lineChartSpec(series, { title: 't', xLabel: 'x', yLabel: 'y' }));
    expect(linear.filter((r) => r.s === 'A').map((r) => [r.y, r.k])).toEqual([
      [3, 0],
      [0.5, 1],
      [0.25, 1],
    ]);
    expect(linear.filter((r) => r.s === 'B <&>').map((r) => r.k)).toEqual([0, 0, 0, 0]);
    const log = rows(lineChartSpec(series, { title: 't', xLabel: 'x', yLabel: 'y', yScale: 'log' }));
    expect(log.filter((r) => r.s === 'B <&>').map((r) => [r.y, r.k])).toEqual([
      [5, 0],
      [4, 1],
      [3, 1],
    ]);
  });

  it('thins a long series to about maxPoints, keeping its last point and both sides of every gap', () => {
    const points = Array.from({ length: 10 }, (_, i) => [i, i === 5 ? NaN : 10 - i] as const);
    const spec = lineChartSpec([{ label: 'L', color: '#000000', points }], { title: 't', xLabel: 'x', yLabel: 'y', maxPoints: 3 });
    const rows = (spec as unknown as { data: { values: { x: number; k: number }[] } }).data.values;
    // Every 4th point (0, 4, 8), the last (9), and 4 and 6 beside the gap at 5.
    expect(rows.map((r) => [r.x, r.k])).toEqual([
      [0, 0],
      [4, 0],
      [6, 1],
      [8, 1],
      [9, 1],
    ]);
  });

  it('refuses a chart smaller than 100 units', () => {
    expect(() => lineChartSpec(series, { title: 't', xLabel: 'x', yLabel: 'y', width: 50 })).toThrow(/width must be a number ≥ 100, got 50/);
  });
});

describe('chartSvg and svgToPng', () => {
  let svg: string;
  beforeAll(async () => {
    svg = await chartSvg(lineChartSpec(series, { title: 'losses', xLabel: 'outer step', yLabel: 'loss (log scale)', yScale: 'log', width: 420, height: 260 }));
  });

  it('renders an SVG document with one path per series segment, the titles and a legend of the groups', () => {
    const root = parseXml(svg);
    expect(root.name).toBe('svg');
    expect([root.attributes.width, root.attributes.height]).toEqual(['420', '260']);
    // A (seed 0): 1 segment; A: 2 (the NaN breaks it); B: 2 (−1 is off the log axis).
    expect(linePaths(root)).toHaveLength(5);
    const strokes = linePaths(root).map((p) => p.attributes.stroke);
    expect(strokes.filter((c) => c === '#1f77b4')).toHaveLength(3);
    expect(strokes.filter((c) => c === '#ff7f0e')).toHaveLength(2);
    const texts = findAll(root, 'text').map((t) => t.text);
    expect(texts).toEqual(expect.arrayContaining(['losses', 'outer step', 'loss (log scale)', 'A', 'B <&>']));
    // The faint seed line has no legend entry of its own.
    expect(texts).not.toContain('A (seed 0)');
  });

  it("lays text out with the font's widths while rendering, and gives vega its own estimate back after", async () => {
    const metrics = (vega as unknown as { textMetrics: { width: unknown; estimateWidth: unknown } }).textMetrics;
    expect(metrics.width).toBe(metrics.estimateWidth);
    const font = findChartFont();
    const a = chartSvg(lineChartSpec(series, { title: 'a', xLabel: 'x', yLabel: 'y' }), font);
    const b = chartSvg(lineChartSpec(series, { title: 'b', xLabel: 'x', yLabel: 'y' }), font);
    if (font.family) expect(metrics.width).not.toBe(metrics.estimateWidth);
    await Promise.all([a, b]);
    expect(metrics.width).toBe(metrics.estimateWidth);
  });

  it('rasterises the SVG to a PNG of the SVG size × pixel ratio that decodes', () => {
    const png = svgToPng(svg, { pixelRatio: 2 });
    expect(ihdr(png)).toEqual({ width: 840, height: 520 });
    const decoded = PNG.sync.read(png);
    expect([decoded.width, decoded.height]).toEqual([840, 520]);
  });

  it('draws the text with the font found, and still renders (without text) when there is no font', () => {
    const font = findChartFont();
    if (!font.family) {
      // The font test needs one (CI installs fonts-dejavu-core); say so rather than pass silently.
      console.warn(`no chart font here: ${font.note}`);
    }
    const withFont = PNG.sync.read(svgToPng(svg, { pixelRatio: 1, font }));
    const noFont = PNG.sync.read(svgToPng(svg, { pixelRatio: 1, font: { files: [] }, loadSystemFonts: false }));
    expect([noFont.width, noFont.height]).toEqual([420, 260]);
    // The title band (top 24 rows) holds only the title's glyphs.
    expect(darkPixels(noFont, 0, 24)).toBe(0);
    if (font.family) expect(darkPixels(withFont, 0, 24)).toBeGreaterThan(50);
  });

  it('says what happens when none of the known fonts is found', () => {
    const none = findChartFont([{ family: 'Nowhere Sans', regular: ['/nonexistent/NowhereSans.ttf'], bold: [] }]);
    expect(none.files).toEqual([]);
    expect(none.note).toMatch(/fonts-dejavu-core.*no text when there is none \(the SVG files keep their text\)/);
  });

  it('refuses a pixel ratio that is not positive', () => {
    expect(() => svgToPng(svg, { pixelRatio: 0 })).toThrow(/pixelRatio must be a positive number, got 0/);
  });
});

describe('bands', () => {
  /** The y coordinates of a path's points (vega writes absolute M/L commands as `x,y` pairs). */
  const ys = (d: string): number[] => [...d.matchAll(/[ML]\s*(-?[\d.]+)[ ,](-?[\d.]+)/g)].map((m) => Number(m[2]));
  const banded: ChartSeries[] = [
    // A band from 1 to 3 around a line at 2; its fourth triple is not finite, so the band has two parts.
    {
      label: 'median A',
      color: '#1f77b4',
      points: [[0, 2], [1, 2], [2, 2], [3, 2], [4, 2], [5, 2]],
      band: [[0, 1, 3], [1, 1, 3], [2, 1, 3], [3, NaN, 3], [4, 1, 3], [5, 1, 3]],
      bandOpacity: 0.25,
    },
    { label: 'B', color: '#ff7f0e', points: [[0, 0], [5, 4]] },
  ];

  it('puts the band triples in an area layer under the lines, each gap starting a new segment', () => {
    const spec = lineChartSpec(banded, { title: 't', xLabel: 'x', yLabel: 'y' }) as unknown as {
      layer: { mark: { type: string }; data?: { values: { s: string; k: number; lo: number; hi: number; o: number }[] } }[];
    };
    expect(spec.layer.map((l) => l.mark.type)).toEqual(['area', 'line']);
    const rows = spec.layer[0].data!.values;
    expect(rows.map((r) => [r.k, r.lo, r.hi])).toEqual([
      [0, 1, 3],
      [0, 1, 3],
      [0, 1, 3],
      [1, 1, 3],
      [1, 1, 3],
    ]);
    expect(new Set(rows.map((r) => r.o))).toEqual(new Set([0.25]));
    // No band: no area layer at all.
    const plain = lineChartSpec(series, { title: 't', xLabel: 'x', yLabel: 'y' }) as unknown as { layer: { mark: { type: string } }[] };
    expect(plain.layer.map((l) => l.mark.type)).toEqual(['line']);
  });

  it('renders the band as filled areas in the series colour, below the line and centred on it', async () => {
    const root = parseXml(await chartSvg(lineChartSpec(banded, { title: 'bands', xLabel: 'x', yLabel: 'y', width: 420, height: 260 })));
    const groups = findAll(root, 'g').filter((g) => (g.attributes.class ?? '').split(/\s+/).includes('role-mark'));
    const kinds = groups.map((g) => (g.attributes.class ?? '').split(/\s+/).find((c) => c.startsWith('mark-')));
    // the area marks come first in the document, so the lines are painted over them
    expect(kinds.indexOf('mark-area')).toBeGreaterThanOrEqual(0);
    expect(kinds.indexOf('mark-area')).toBeLessThan(kinds.indexOf('mark-line'));
    const areas = groups.filter((_, i) => kinds[i] === 'mark-area').flatMap((g) => g.children.filter((c) => c.name === 'path'));
    expect(areas).toHaveLength(2);
    for (const a of areas) {
      expect(a.attributes.fill).toBe('#1f77b4');
      expect(Number(a.attributes['fill-opacity'] ?? a.attributes.opacity)).toBeCloseTo(0.25, 6);
    }
    // The line at y = 2 runs halfway between the band's edges at 1 and 3 (a linear axis).
    const lineA = linePaths(root).find((p) => p.attributes.stroke === '#1f77b4')!;
    const lineY = ys(lineA.attributes.d)[0];
    const edges = ys(areas[0].attributes.d);
    const [top, bottom] = [Math.min(...edges), Math.max(...edges)];
    expect(bottom - top).toBeGreaterThan(10);
    expect(lineY).toBeCloseTo((top + bottom) / 2, 1);
  });
});
