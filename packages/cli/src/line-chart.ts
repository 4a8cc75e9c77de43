/**
 * Line-chart layout: axes with "nice" ticks (linear or log scale), grid, legend and series, turned into a
 * list of drawing primitives in chart units. The SVG writer and the PNG rasterizer both render this same
 * list, so the two files of a plot always show the same chart.
 */

/** Scale of an axis. */
export type AxisScale = 'linear' | 'log';

/** One line of a chart. */
export interface ChartSeries {
  /** Legend label. */
  readonly label: string;
  /** `#rrggbb`. */
  readonly color: string;
  /** (x, y) pairs; non-finite values (and values ≤ 0 on a log axis) break the line. */
  readonly points: readonly (readonly [number, number])[];
  /** Line width in chart units. */
  readonly width?: number;
  /** Opacity in [0, 1]. */
  readonly opacity?: number;
  /** Whether the series gets a legend entry (default true). */
  readonly legend?: boolean;
}

/** Titles, scales and size of a chart. */
export interface ChartOptions {
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
  /** Size in chart units (SVG user units; PNG pixels before its pixel ratio). */
  readonly width?: number;
  /** Height in chart units. */
  readonly height?: number;
}

/** A rectangle (background, plot frame, legend box). */
export interface RectPrimitive {
  /** Primitive type. */
  readonly kind: 'rect';
  /** Left edge. */
  readonly x: number;
  /** Top edge. */
  readonly y: number;
  /** Width. */
  readonly width: number;
  /** Height. */
  readonly height: number;
  /** Fill colour, none when absent. */
  readonly fill?: string;
  /** Stroke colour, none when absent. */
  readonly stroke?: string;
  /** Stroke width. */
  readonly strokeWidth?: number;
}

/** A polyline (a series, a grid line, an axis, a tick). */
export interface PolylinePrimitive {
  /** Primitive type. */
  readonly kind: 'polyline';
  /** Vertices in chart units. */
  readonly points: readonly (readonly [number, number])[];
  /** Line colour. */
  readonly color: string;
  /** Line width. */
  readonly width: number;
  /** Opacity in [0, 1]. */
  readonly opacity: number;
  /** Which part of the chart it draws (tests and renderers may care). */
  readonly role: 'grid' | 'axis' | 'tick' | 'series' | 'legend';
  /** Series label, for role 'series' and 'legend'. */
  readonly series?: string;
}

/** A text label. */
export interface TextPrimitive {
  /** Primitive type. */
  readonly kind: 'text';
  /** Anchor point; `y` is the vertical middle of the capital letters. */
  readonly x: number;
  /** Vertical anchor. */
  readonly y: number;
  /** The text. */
  readonly text: string;
  /** Font size in chart units. */
  readonly size: number;
  /** Horizontal alignment at the anchor point. */
  readonly anchor: 'start' | 'middle' | 'end';
  /** Text colour. */
  readonly color: string;
  /** Text rotated by −90° (reading bottom to top) around the anchor point. */
  readonly vertical?: boolean;
  /** Bold text. */
  readonly bold?: boolean;
}

/** Anything a chart is drawn from. */
export type Primitive = RectPrimitive | PolylinePrimitive | TextPrimitive;

/** A tick of an axis. */
export interface Tick {
  /** Data value. */
  readonly value: number;
  /** Label shown. */
  readonly label: string;
}

/** An axis: its scale, range, ticks and mapping to chart coordinates. */
export interface Axis {
  /** Linear or log. */
  readonly scale: AxisScale;
  /** Data range shown (after rounding out to ticks). */
  readonly min: number;
  /** Upper end of the data range shown. */
  readonly max: number;
  /** The ticks, ascending. */
  readonly ticks: readonly Tick[];
  /** Data value → chart coordinate. */
  toChart(value: number): number;
}

/** A laid-out chart: its size, plot area, axes and drawing primitives. */
export interface ChartLayout {
  /** Width in chart units. */
  readonly width: number;
  /** Height in chart units. */
  readonly height: number;
  /** The plot area inside the axes, in chart units. */
  readonly plot: {
    /** Left edge. */
    readonly x: number;
    /** Top edge. */
    readonly y: number;
    /** Width. */
    readonly width: number;
    /** Height. */
    readonly height: number;
  };
  /** The x axis. */
  readonly xAxis: Axis;
  /** The y axis. */
  readonly yAxis: Axis;
  /** What to draw, back to front. */
  readonly primitives: readonly Primitive[];
}

/** A categorical palette with good contrast on white (Tableau 10). */
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

const TEXT_COLOR = '#222222';
const AXIS_COLOR = '#333333';
const GRID_COLOR = '#e3e3e3';
const TICK_SIZE = 11;
const LABEL_SIZE = 12;
const TITLE_SIZE = 15;

/** Estimated width of a text in chart units (both renderers stay close to 0.6 em per character). */
export function estimateTextWidth(text: string, size: number): number {
  return [...text].length * size * 0.6;
}

/** The "nice" step 1, 2 or 5 × 10^k closest above `raw`. */
export function niceStep(raw: number): number {
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const exponent = Math.floor(Math.log10(raw));
  const base = Math.pow(10, exponent);
  const fraction = raw / base;
  const nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10;
  return nice * base;
}

/** Tick label for a linear axis whose ticks are `step` apart. */
export function formatTick(value: number, step: number): string {
  if (Math.abs(value) < step * 1e-9) return '0';
  const abs = Math.max(Math.abs(value), step);
  if (abs >= 1e5 || step < 1e-4) {
    const digits = Math.max(0, Math.min(6, Math.ceil(Math.log10(abs / step) - 1e-9)));
    const [m, e] = value.toExponential(digits).split('e');
    const mantissa = m.includes('.') ? m.replace(/0+$/, '').replace(/\.$/, '') : m;
    return `${mantissa}e${e.replace(/^\+/, '')}`;
  }
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return value.toFixed(decimals);
}

function formatPowerOfTen(value: number): string {
  const e = Math.round(Math.log10(value));
  if (e >= -3 && e <= 4) return String(Number(value.toPrecision(6)));
  const mantissa = value / Math.pow(10, e);
  const m = Math.abs(mantissa - 1) < 1e-9 ? '1' : String(Number(mantissa.toPrecision(3)));
  return `${m}e${e}`;
}

/** Ticks and range of a linear axis covering [lo, hi] with about `target` intervals. */
export function linearTicks(
  lo: number,
  hi: number,
  target = 5,
): {
  /** Lower end of the axis (a tick, at or below lo). */
  min: number;
  /** Upper end of the axis (a tick, at or above hi). */
  max: number;
  /** The ticks from min to max. */
  ticks: Tick[];
} {
  let a = lo;
  let b = hi;
  if (!(b > a)) {
    const pad = a === 0 ? 1 : Math.abs(a) * 0.1;
    a -= pad;
    b += pad;
  }
  const step = niceStep((b - a) / target);
  const min = Math.floor(a / step + 1e-9) * step;
  const max = Math.ceil(b / step - 1e-9) * step;
  const ticks: Tick[] = [];
  const count = Math.round((max - min) / step);
  for (let i = 0; i <= count; i++) {
    const v = min + i * step;
    ticks.push({ value: v, label: formatTick(v, step) });
  }
  return { min, max, ticks };
}

/** Ticks and range of a log axis covering [lo, hi] (both > 0): decades, with 2 and 5 inside narrow ranges. */
export function logTicks(
  lo: number,
  hi: number,
): {
  /** Lower end of the axis (a power of ten at or below lo). */
  min: number;
  /** Upper end of the axis (a power of ten at or above hi). */
  max: number;
  /** The ticks from min to max. */
  ticks: Tick[];
} {
  let e0 = Math.floor(Math.log10(lo) + 1e-9);
  let e1 = Math.ceil(Math.log10(hi) - 1e-9);
  if (e1 <= e0) e1 = e0 + 1;
  const decades = e1 - e0;
  const ticks: Tick[] = [];
  if (decades <= 2) {
    for (let e = e0; e <= e1; e++) {
      for (const m of [1, 2, 5]) {
        const v = m * Math.pow(10, e);
        if (e === e1 && m > 1) break;
        ticks.push({ value: v, label: formatPowerOfTen(v) });
      }
    }
  } else {
    const every = Math.max(1, Math.ceil(decades / 8));
    e0 = Math.floor(e0 / every) * every;
    e1 = Math.ceil(e1 / every) * every;
    for (let e = e0; e <= e1; e += every) {
      const v = Math.pow(10, e);
      ticks.push({ value: v, label: formatPowerOfTen(v) });
    }
  }
  return { min: Math.pow(10, e0), max: Math.pow(10, e1), ticks };
}

function usable(v: number, scale: AxisScale): boolean {
  return Number.isFinite(v) && (scale === 'linear' || v > 0);
}

function makeAxis(
  values: number[],
  scale: AxisScale,
  from: number,
  to: number,
): Axis {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (!usable(v, scale)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo > hi) {
    lo = scale === 'log' ? 1 : 0;
    hi = scale === 'log' ? 10 : 1;
  }
  const { min, max, ticks } = scale === 'log' ? logTicks(lo, hi) : linearTicks(lo, hi);
  const t = scale === 'log' ? Math.log10 : (v: number) => v;
  const tMin = t(min);
  const tMax = t(max);
  const span = tMax - tMin || 1;
  return {
    scale,
    min,
    max,
    ticks,
    toChart: (v: number) => from + ((t(v) - tMin) / span) * (to - from),
  };
}

/** Splits a series into runs of consecutive usable points. */
function segments(
  points: readonly (readonly [number, number])[],
  xScale: AxisScale,
  yScale: AxisScale,
): [number, number][][] {
  const out: [number, number][][] = [];
  let cur: [number, number][] = [];
  for (const [x, y] of points) {
    if (usable(x, xScale) && usable(y, yScale)) {
      cur.push([x, y]);
    } else if (cur.length) {
      out.push(cur);
      cur = [];
    }
  }
  if (cur.length) out.push(cur);
  return out;
}

/** Lays out a line chart: every series on shared axes, a legend on the right. */
export function layoutLineChart(series: readonly ChartSeries[], options: ChartOptions): ChartLayout {
  const width = options.width ?? 800;
  const height = options.height ?? 500;
  const xScale = options.xScale ?? 'linear';
  const yScale = options.yScale ?? 'linear';
  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of series) {
    for (const [x, y] of s.points) {
      if (usable(x, xScale) && usable(y, yScale)) {
        xs.push(x);
        ys.push(y);
      }
    }
  }

  // Horizontal space: y tick labels on the left, legend on the right.
  const provisionalY = makeAxis(ys, yScale, 0, 1);
  const yTickWidth = Math.max(...provisionalY.ticks.map((t) => estimateTextWidth(t.label, TICK_SIZE)), 10);
  const legendEntries = series.filter((s) => s.legend !== false);
  const legendTextWidth = Math.max(0, ...legendEntries.map((s) => estimateTextWidth(s.label, LABEL_SIZE)));
  const legendWidth = legendEntries.length ? Math.min(legendTextWidth + 44, width * 0.35) : 0;
  const left = Math.round(yTickWidth + 40);
  const right = Math.round(legendWidth + 20);
  const top = 40;
  const bottom = 56;
  const plot = { x: left, y: top, width: Math.max(50, width - left - right), height: Math.max(50, height - top - bottom) };

  const xAxis = makeAxis(xs, xScale, plot.x, plot.x + plot.width);
  const yAxis = makeAxis(ys, yScale, plot.y + plot.height, plot.y);
  const prims: Primitive[] = [];
  prims.push({ kind: 'rect', x: 0, y: 0, width, height, fill: '#ffffff' });

  // Grid and ticks.
  const bottomY = plot.y + plot.height;
  for (const t of xAxis.ticks) {
    const px = xAxis.toChart(t.value);
    prims.push({ kind: 'polyline', points: [[px, plot.y], [px, bottomY]], color: GRID_COLOR, width: 1, opacity: 1, role: 'grid' });
    prims.push({ kind: 'polyline', points: [[px, bottomY], [px, bottomY + 5]], color: AXIS_COLOR, width: 1, opacity: 1, role: 'tick' });
    prims.push({ kind: 'text', x: px, y: bottomY + 15, text: t.label, size: TICK_SIZE, anchor: 'middle', color: TEXT_COLOR });
  }
  for (const t of yAxis.ticks) {
    const py = yAxis.toChart(t.value);
    prims.push({ kind: 'polyline', points: [[plot.x, py], [plot.x + plot.width, py]], color: GRID_COLOR, width: 1, opacity: 1, role: 'grid' });
    prims.push({ kind: 'polyline', points: [[plot.x - 5, py], [plot.x, py]], color: AXIS_COLOR, width: 1, opacity: 1, role: 'tick' });
    prims.push({ kind: 'text', x: plot.x - 8, y: py, text: t.label, size: TICK_SIZE, anchor: 'end', color: TEXT_COLOR });
  }
  prims.push({ kind: 'rect', x: plot.x, y: plot.y, width: plot.width, height: plot.height, stroke: AXIS_COLOR, strokeWidth: 1 });

  // Series, drawn in order (later on top).
  for (const s of series) {
    for (const seg of segments(s.points, xScale, yScale)) {
      prims.push({
        kind: 'polyline',
        points: seg.map(([x, y]) => [xAxis.toChart(x), yAxis.toChart(y)] as const),
        color: s.color,
        width: s.width ?? 2,
        opacity: s.opacity ?? 1,
        role: 'series',
        series: s.label,
      });
    }
  }

  // Titles.
  prims.push({ kind: 'text', x: plot.x + plot.width / 2, y: 20, text: options.title, size: TITLE_SIZE, anchor: 'middle', color: TEXT_COLOR, bold: true });
  prims.push({ kind: 'text', x: plot.x + plot.width / 2, y: height - 16, text: options.xLabel, size: LABEL_SIZE, anchor: 'middle', color: TEXT_COLOR });
  prims.push({ kind: 'text', x: 16, y: plot.y + plot.height / 2, text: options.yLabel, size: LABEL_SIZE, anchor: 'middle', color: TEXT_COLOR, vertical: true });

  // Legend.
  if (legendEntries.length) {
    const lx = plot.x + plot.width + 14;
    const rowHeight = 20;
    const boxHeight = legendEntries.length * rowHeight + 10;
    prims.push({ kind: 'rect', x: lx, y: plot.y, width: legendWidth, height: boxHeight, fill: '#ffffff', stroke: '#bbbbbb', strokeWidth: 1 });
    legendEntries.forEach((s, i) => {
      const cy = plot.y + 15 + i * rowHeight;
      prims.push({ kind: 'polyline', points: [[lx + 8, cy], [lx + 30, cy]], color: s.color, width: 3, opacity: 1, role: 'legend', series: s.label });
      prims.push({ kind: 'text', x: lx + 36, y: cy, text: s.label, size: LABEL_SIZE, anchor: 'start', color: TEXT_COLOR });
    });
  }
  return { width, height, plot, xAxis, yAxis, primitives: prims };
}
