/**
 * Line charts as Vega-Lite specs: {@link lineChartSpec} describes the chart (series, axes, legend, optional
 * interactivity), `vega` renders it to SVG headlessly ({@link chartSvg}) and `@resvg/resvg-js` turns the
 * SVG into a PNG with a real font ({@link svgToPng}). The same spec drives the interactive charts of
 * report.html.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/** Scale of an axis. */
export type AxisScale = 'linear' | 'log';

/** The default line colours, in method order. */
export const PALETTE: readonly string[] = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
];

/** One line of a chart. */
export interface ChartSeries {
  /** The series' name (legend label, tooltip). */
  readonly label: string;
  /** `#rrggbb`. */
  readonly color: string;
  /** (x, y) pairs; non-finite values (and values ≤ 0 on a log axis) break the line. */
  readonly points: readonly (readonly [number, number])[];
  /** Line width in chart units (default 2). */
  readonly width?: number;
  /** Opacity in [0, 1] (default 1). */
  readonly opacity?: number;
  /** Whether the series gets a legend entry (default true). */
  readonly legend?: boolean;
  /**
   * The legend entry the series belongs to (default its label): the series of one group share the group's
   * colour (the first series' colour), and toggling the entry in report.html shows or hides them together.
   */
  readonly group?: string;
  /**
   * A filled band drawn under the line in the series' colour, e.g. the 20 %–80 % quantiles around a median:
   * (x, low, high) triples. A triple with a non-finite value (or a value ≤ 0 on a log y axis) breaks the band.
   */
  readonly band?: readonly (readonly [number, number, number])[];
  /** Opacity of the band's fill in [0, 1] (default 0.2). */
  readonly bandOpacity?: number;
}

/** Titles, scales, size and behaviour of a chart. */
export interface LineChartOptions {
  /** Title above the plot. */
  readonly title: string;
  /** Label of the x axis. */
  readonly xLabel: string;
  /** Label of the y axis. */
  readonly yLabel: string;
  /** Scale of the x axis (default linear). */
  readonly xScale?: AxisScale;
  /** Scale of the y axis (default linear). */
  readonly yScale?: AxisScale;
  /** Width of the whole chart in SVG units (default 800). */
  readonly width?: number;
  /** Height of the whole chart in SVG units (default 500). */
  readonly height?: number;
  /**
   * Interactive chart (for a browser): tooltips at the nearest point, zoom and pan with the mouse wheel and
   * drag (double-click resets), a click on a legend entry shows only that group (shift-click adds more).
   */
  readonly interactive?: boolean;
  /** At most about this many points per series (every k-th point kept, gaps and the last point always). */
  readonly maxPoints?: number;
}

/** The font list written into the SVG; the PNG uses the first one found on the machine. */
export const CHART_FONT_FAMILY = 'DejaVu Sans, Liberation Sans, Noto Sans, Arial, Helvetica, sans-serif';

interface Row {
  /** Series label. */
  s: string;
  /** Legend group. */
  g: string;
  /** Segment of the series (a new one after each gap). */
  k: number;
  x: number;
  y: number;
  /** Line width and opacity. */
  w: number;
  o: number;
}

/**
 * Chart rows of the series: finite points (positive on log axes), each gap starting a new segment. With
 * `maxPoints`, a longer series keeps every k-th point (k = ⌈n / maxPoints⌉), its last point, and the points
 * next to a gap (so no gap is lost).
 */
function chartRows(series: readonly ChartSeries[], xLog: boolean, yLog: boolean, maxPoints?: number): Row[] {
  const rows: Row[] = [];
  for (const s of series) {
    const n = s.points.length;
    const ok = s.points.map(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!xLog || x > 0) && (!yLog || y > 0));
    const stride = maxPoints !== undefined && n > maxPoints ? Math.ceil(n / maxPoints) : 1;
    let k = 0;
    let gap = false;
    for (let i = 0; i < n; i++) {
      const [x, y] = s.points[i];
      const kept = stride === 1 || i % stride === 0 || i === n - 1 || !ok[i] || (i > 0 && !ok[i - 1]) || (i < n - 1 && !ok[i + 1]);
      if (!kept) continue;
      if (!ok[i]) {
        gap = true;
        continue;
      }
      if (gap) k += 1;
      gap = false;
      rows.push({ s: s.label, g: s.group ?? s.label, k, x, y, w: s.width ?? 2, o: s.opacity ?? 1 });
    }
  }
  return rows;
}

interface BandRow {
  /** Series label, legend group, segment (a new one after each gap). */
  s: string;
  g: string;
  k: number;
  x: number;
  /** Low and high edge of the band. */
  lo: number;
  hi: number;
  /** Fill opacity. */
  o: number;
}

/** Band rows of the series that have one: finite triples (positive edges on a log y axis), each gap a new segment. */
function bandRows(series: readonly ChartSeries[], xLog: boolean, yLog: boolean): BandRow[] {
  const rows: BandRow[] = [];
  for (const s of series) {
    if (!s.band) continue;
    let k = 0;
    let gap = false;
    for (const [x, lo, hi] of s.band) {
      const ok = [x, lo, hi].every(Number.isFinite) && (!xLog || x > 0) && (!yLog || (lo > 0 && hi > 0));
      if (!ok) {
        gap = true;
        continue;
      }
      if (gap) k += 1;
      gap = false;
      rows.push({ s: s.label, g: s.group ?? s.label, k, x, lo, hi, o: s.bandOpacity ?? 0.2 });
    }
  }
  return rows;
}

/**
 * The Vega-Lite spec of a line chart: every series one line in its colour, width and opacity (over its `band`,
 * if any, filled faintly in the same colour), a legend of
 * the groups (series with `legend: false` get none unless their group has one), white background, the
 * given size for the whole chart (legend and titles included). With `interactive`, tooltips, zoom and legend
 * toggling as described at {@link LineChartOptions.interactive}.
 */
export function lineChartSpec(series: readonly ChartSeries[], options: LineChartOptions): TopLevelSpec {
  const width = options.width ?? 800;
  const height = options.height ?? 500;
  for (const [name, v] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (!Number.isFinite(v) || v < 100) throw new RangeError(`lineChartSpec: ${name} must be a number ≥ 100, got ${v}`);
  }
  const xLog = options.xScale === 'log';
  const yLog = options.yScale === 'log';
  const rows = chartRows(series, xLog, yLog, options.maxPoints);
  const groups: string[] = [];
  const colors: string[] = [];
  const inLegend = new Set<string>();
  for (const s of series) {
    const g = s.group ?? s.label;
    if (!groups.includes(g)) {
      groups.push(g);
      colors.push(s.color);
    }
    if (s.legend !== false) inLegend.add(g);
  }
  const legendValues = groups.filter((g) => inLegend.has(g));
  // A legend below the plot, as many columns as the longest label lets fit (about 7 units a character).
  const longest = Math.max(1, ...legendValues.map((g) => g.length));
  const columns = Math.max(1, Math.min(legendValues.length, Math.floor((width - 40) / (longest * 7 + 40))));
  const x = { field: 'x', type: 'quantitative' as const, title: options.xLabel, scale: xLog ? { type: 'log' as const } : { zero: false } };
  // The y title never runs past the plot's height (it would push the chart's title off the top): longer ones end in '…'.
  const y = {
    field: 'y',
    type: 'quantitative' as const,
    title: options.yLabel,
    scale: yLog ? { type: 'log' as const } : { zero: false },
    axis: { titleLimit: { expr: 'height' } },
  };
  const color = {
    field: 'g',
    type: 'nominal' as const,
    scale: { domain: groups, range: colors },
    legend:
      legendValues.length === 0
        ? null
        : { title: null, orient: 'bottom' as const, direction: 'horizontal' as const, columns, values: legendValues, labelLimit: 0 },
  };
  const line = {
    mark: { type: 'line' as const, strokeJoin: 'round' as const, strokeCap: 'round' as const, clip: true },
    encoding: {
      x,
      y,
      color,
      detail: [{ field: 's' }, { field: 'k' }],
      strokeWidth: { field: 'w', type: 'quantitative' as const, scale: null, legend: null },
      opacity: options.interactive
        ? { condition: { param: 'pick', field: 'o', type: 'quantitative' as const, scale: null, legend: null }, value: 0.04 }
        : { field: 'o', type: 'quantitative' as const, scale: null, legend: null },
    },
    ...(options.interactive
      ? {
          params: [
            { name: 'zoom', select: { type: 'interval' as const, encodings: ['x' as const, 'y' as const] }, bind: 'scales' as const },
            { name: 'pick', select: { type: 'point' as const, fields: ['g'] }, bind: 'legend' as const },
          ],
        }
      : {}),
  };
  const bands = bandRows(series, xLog, yLog);
  // Bands first, so that every line is drawn over them; their own data, the same x, y and colour scales.
  const layer: unknown[] =
    bands.length === 0
      ? [line]
      : [
          {
            data: { values: bands },
            mark: { type: 'area' as const, clip: true, interpolate: 'linear' as const },
            encoding: {
              x,
              y: { ...y, field: 'lo' },
              y2: { field: 'hi' },
              color,
              detail: [{ field: 's' }, { field: 'k' }],
              opacity: options.interactive
                ? { condition: { param: 'pick', field: 'o', type: 'quantitative' as const, scale: null, legend: null }, value: 0.02 }
                : { field: 'o', type: 'quantitative' as const, scale: null, legend: null },
            },
          },
          line,
        ];
  if (options.interactive) {
    layer.push({
      mark: { type: 'point', filled: true, size: 50, clip: true },
      params: [{ name: 'hover', select: { type: 'point', on: 'pointerover', nearest: true, clear: 'pointerout' } }],
      encoding: {
        x: { field: 'x', type: 'quantitative' },
        y: { field: 'y', type: 'quantitative' },
        color: { field: 'g', type: 'nominal' },
        opacity: { condition: { param: 'hover', empty: false, value: 1 }, value: 0 },
        tooltip: [
          { field: 's', type: 'nominal', title: 'series' },
          { field: 'x', type: 'quantitative', title: options.xLabel, format: '.5~g' },
          { field: 'y', type: 'quantitative', title: options.yLabel, format: '.5~g' },
        ],
      },
    });
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    // Centred over the plot area (not over its axes, whose titles may reach beyond it on a small chart).
    title: { text: options.title, frame: 'group' },
    width,
    height,
    autosize: { type: 'fit', contains: 'padding' },
    background: 'white',
    padding: 8,
    data: { values: rows },
    config: {
      font: CHART_FONT_FAMILY,
      view: { stroke: '#888888' },
      axis: { gridColor: '#e4e4e4', domainColor: '#555555', tickColor: '#555555', labelFontSize: 11, titleFontSize: 12, titleFontWeight: 'normal' },
      legend: { labelFontSize: 11, symbolType: 'stroke', symbolStrokeWidth: 3, symbolOpacity: 1 },
      title: { fontSize: 14 },
    },
    layer,
  } as TopLevelSpec;
}

/** Compiles a Vega-Lite spec to a Vega spec (what the browser's `vega` runs in report.html). */
export function compileChart(spec: TopLevelSpec): vega.Spec {
  return compile(spec).spec;
}

/** What vega measures text with (`vega.textMetrics`, documented as replaceable: without a canvas it guesses). */
interface TextMetrics {
  width: (item: { fontSize?: number; fontWeight?: string | number; limit?: number }, text?: string) => number;
}
const textMetrics = (vega as unknown as { textMetrics: TextMetrics }).textMetrics;
const measurers = new Map<string, TextMetrics['width']>();
let measuring = 0;
let vegaEstimate: TextMetrics['width'] | undefined;

/** Escapes text for XML content and attribute values. */
function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] as string);
}

/**
 * Text widths as resvg draws them in the chart font (the ink width of the string, measured once per string and
 * size): without a canvas, vega would guess 0.8 em a character, about a third too wide for DejaVu Sans, and
 * cut or push aside titles that fit.
 */
function fontMeasurer(font: ChartFont): TextMetrics['width'] {
  const key = font.files.join('\n');
  const known = measurers.get(key);
  if (known) return known;
  const cache = new Map<string, number>();
  const measure: TextMetrics['width'] = (item, text) => {
    const t = text === undefined || text === null ? '' : String(text).trim();
    if (!t) return 0;
    const size = item.fontSize !== undefined && item.fontSize !== null ? Number(item.fontSize) || 0 : 11;
    const bold = item.fontWeight === 'bold' || Number(item.fontWeight) >= 600;
    const id = `${size}|${bold ? 'b' : ''}|${t}`;
    let width = cache.get(id);
    if (width === undefined) {
      const svg =
        `<svg xmlns="http://www.w3.org/2000/svg" width="${Math.ceil(size * t.length + 20)}" height="${Math.ceil(size * 3)}">` +
        `<text x="1" y="${size * 2}" font-family="${font.family}" font-size="${size}"${bold ? ' font-weight="bold"' : ''}>${escapeXml(t)}</text></svg>`;
      const box = new Resvg(svg, { font: { fontFiles: [...font.files], loadSystemFonts: false, defaultFontFamily: font.family } }).getBBox();
      // Ink width plus a pixel for the side bearings.
      width = box ? box.width + 1 : 0.6 * size * t.length;
      cache.set(id, width);
    }
    return item.limit !== undefined && item.limit > 0 ? Math.min(width, item.limit) : width;
  };
  measurers.set(key, measure);
  return measure;
}

/**
 * Renders a Vega-Lite spec to a standalone SVG document with `vega`, headlessly. Text is laid out with the
 * widths of `font` (default `findChartFont`'s) when it has files, else with vega's estimate.
 */
export async function chartSvg(spec: TopLevelSpec, font: ChartFont = findChartFont()): Promise<string> {
  // vega's text metrics are one shared object: the first render in flight installs the font's widths, the last one
  // to finish puts vega's own estimate back.
  const installed = font.family !== undefined && font.files.length > 0;
  if (installed) {
    if (measuring === 0) {
      vegaEstimate = textMetrics.width;
      textMetrics.width = fontMeasurer(font);
    }
    measuring += 1;
  }
  let view: vega.View | undefined;
  try {
    view = new vega.View(vega.parse(compileChart(spec)), { renderer: 'none' });
    const svg = await view.toSVG();
    return `<?xml version="1.0" encoding="UTF-8"?>\n${svg}\n`;
  } finally {
    view?.finalize();
    if (installed) {
      measuring -= 1;
      if (measuring === 0 && vegaEstimate) textMetrics.width = vegaEstimate;
    }
  }
}

/** A font for the PNG figures: its family name and files, or why there is none. */
export interface ChartFont {
  /** The family name, e.g. `DejaVu Sans`; absent when no known font file was found. */
  readonly family?: string;
  /** The font files resvg loads (regular and bold when present). */
  readonly files: readonly string[];
  /** What happens to the PNG's text when no known font file was found. */
  readonly note?: string;
}

/** Where common sans-serif fonts live (Debian/Ubuntu first, then other Linux layouts, macOS, Windows). */
const FONT_CANDIDATES: readonly { family: string; regular: string[]; bold: string[] }[] = [
  {
    family: 'DejaVu Sans',
    regular: [
      '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf',
      '/usr/share/fonts/TTF/DejaVuSans.ttf',
      '/usr/share/fonts/dejavu/DejaVuSans.ttf',
      '/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf',
    ],
    bold: [
      '/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf',
      '/usr/share/fonts/TTF/DejaVuSans-Bold.ttf',
      '/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf',
      '/usr/share/fonts/dejavu-sans-fonts/DejaVuSans-Bold.ttf',
    ],
  },
  {
    family: 'Liberation Sans',
    regular: ['/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf', '/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf'],
    bold: ['/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf', '/usr/share/fonts/liberation-sans/LiberationSans-Bold.ttf'],
  },
  {
    family: 'Noto Sans',
    regular: ['/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf', '/usr/share/fonts/noto/NotoSans-Regular.ttf'],
    bold: ['/usr/share/fonts/truetype/noto/NotoSans-Bold.ttf', '/usr/share/fonts/noto/NotoSans-Bold.ttf'],
  },
  {
    family: 'Arial',
    regular: ['/System/Library/Fonts/Supplemental/Arial.ttf', '/Library/Fonts/Arial.ttf', 'C:\\Windows\\Fonts\\arial.ttf'],
    bold: ['/System/Library/Fonts/Supplemental/Arial Bold.ttf', '/Library/Fonts/Arial Bold.ttf', 'C:\\Windows\\Fonts\\arialbd.ttf'],
  },
];

/**
 * The font for PNG text: the first of DejaVu Sans (Debian's `fonts-dejavu-core`), Liberation Sans, Noto Sans
 * or Arial found at its usual path. When none is, the result has no files and a note: resvg then loads the
 * system's fonts and uses whatever sans-serif font it finds; on a machine without fonts the PNGs are drawn
 * without their text (lines, axes and grid only), while the SVGs keep it.
 */
export function findChartFont(candidates = FONT_CANDIDATES): ChartFont {
  const exists = (f: string): boolean => {
    try {
      return fs.statSync(f).isFile();
    } catch {
      return false;
    }
  };
  for (const c of candidates) {
    const regular = c.regular.find(exists);
    if (!regular) continue;
    const bold = c.bold.find(exists);
    return { family: c.family, files: bold ? [regular, bold] : [regular] };
  }
  return {
    files: [],
    note:
      'no DejaVu Sans, Liberation Sans, Noto Sans or Arial font file found (on Debian: apt-get install fonts-dejavu-core); ' +
      'the PNG figures use whatever system font resvg finds, and have no text when there is none (the SVG files keep their text)',
  };
}

/** How {@link svgToPng} rasterises. */
export interface PngOptions {
  /** PNG pixels per SVG unit (default 2). */
  readonly pixelRatio?: number;
  /** The font (default `findChartFont`'s). */
  readonly font?: ChartFont;
  /** Whether resvg also loads the system's fonts (default: only when `font` has no files). */
  readonly loadSystemFonts?: boolean;
}

/** Rasterises an SVG document to PNG bytes with resvg. */
export function svgToPng(svg: string, options: PngOptions = {}): Buffer {
  const ratio = options.pixelRatio ?? 2;
  if (!Number.isFinite(ratio) || ratio <= 0) throw new RangeError(`svgToPng: pixelRatio must be a positive number, got ${ratio}`);
  const font = options.font ?? findChartFont();
  const resvg = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: ratio },
    background: 'white',
    font: {
      fontFiles: [...font.files],
      loadSystemFonts: options.loadSystemFonts ?? font.files.length === 0,
      ...(font.family ? { defaultFontFamily: font.family, sansSerifFamily: font.family } : {}),
    },
  });
  return resvg.render().asPng();
}

/** What {@link writeChart} writes. */
export interface WriteChartOptions extends PngOptions {
  /** Whether to write the PNG beside the SVG (default true). */
  readonly png?: boolean;
}

/** Writes `<base>.svg` (and `<base>.png`) of a chart spec; returns the files written. */
export async function writeChart(base: string, spec: TopLevelSpec, options: WriteChartOptions = {}): Promise<string[]> {
  const font = options.font ?? findChartFont();
  const svg = await chartSvg(spec, font);
  fs.mkdirSync(path.dirname(base), { recursive: true });
  fs.writeFileSync(`${base}.svg`, svg);
  if (options.png === false) return [`${base}.svg`];
  fs.writeFileSync(`${base}.png`, svgToPng(svg, { ...options, font }));
  return [`${base}.svg`, `${base}.png`];
}
