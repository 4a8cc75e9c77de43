import * as path from 'path';
import { slug } from './format';
import type { TopLevelSpec } from 'vega-lite';
import { type AxisScale, type ChartFont, type ChartSeries, findChartFont, lineChartSpec, PALETTE, writeChart } from './charts';
import type { MetricsRow } from './run-recorder';

/** The rows of one run, for the plots. */
export interface PlotRun {
  /** The method's label. */
  readonly method: string;
  /** The seed. */
  readonly seed: number;
  /** The run's per-step metrics. */
  readonly rows: readonly MetricsRow[];
}

/** What {@link writePlots} draws and how. */
export interface PlotOptions {
  /** The experiment's name (figure titles). */
  readonly name: string;
  /** The methods in legend order, with optional colours. */
  readonly methods: readonly {
    /** The method's label. */
    readonly label: string;
    /** Its line colour, `#rrggbb` (else the palette's). */
    readonly color?: string;
  }[];
  /** The runs to draw. */
  readonly runs: readonly PlotRun[];
  /** The problem's main metric (plotted against steps and time besides the outer loss). */
  readonly mainMetric?: string;
  /** Log y axis: `auto` when the values are positive and span more than 1.5 decades, `always` or `never`. */
  readonly logScale?: 'auto' | 'always' | 'never';
  /** PNG pixels per chart unit. */
  readonly pixelRatio?: number;
  /** Chart size in SVG units (default 800×500). */
  readonly width?: number;
  /** Chart height in SVG units. */
  readonly height?: number;
  /** The font of the PNG text (default `findChartFont`'s). */
  readonly font?: ChartFont;
  /** Told once when no known font was found (what happens to the PNG's text). */
  readonly onNote?: (line: string) => void;
}

type Quantity = { key: string; title: string; pick: (r: MetricsRow) => number | undefined; log: boolean };
type Axis = { key: 'step' | 'time'; label: string; pick: (r: MetricsRow) => number };

/** Whether a log axis suits these values: all positive and spanning more than 1.5 decades. */
export function wantsLogScale(values: readonly number[]): boolean {
  const v = values.filter((x) => Number.isFinite(x));
  if (v.length < 2 || v.some((x) => x <= 0)) return false;
  return Math.log10(Math.max(...v) / Math.min(...v)) > 1.5;
}

/**
 * The mean curve of several runs: at each step that every run reached and that has a value, the mean of
 * x and y over the runs.
 */
export function meanCurve(
  runs: readonly (readonly MetricsRow[])[],
  x: (r: MetricsRow) => number,
  y: (r: MetricsRow) => number | undefined,
): [number, number][] {
  const byStep = runs.map((rows) => new Map(rows.map((r) => [r.step, r] as const)));
  const steps = [...byStep[0].keys()].filter((s) => byStep.every((m) => m.has(s))).sort((a, b) => a - b);
  const out: [number, number][] = [];
  for (const s of steps) {
    const rows = byStep.map((m) => m.get(s) as MetricsRow);
    const ys = rows.map(y);
    if (ys.some((v) => v === undefined)) continue;
    const n = rows.length;
    out.push([rows.reduce((a, r) => a + x(r), 0) / n, (ys as number[]).reduce((a, v) => a + v, 0) / n]);
  }
  return out;
}

/** Series of one figure: per method a line (the mean over seeds, with each seed drawn faintly). */
export function figureSeries(options: PlotOptions, xAxis: Axis, quantity: Quantity): ChartSeries[] {
  const series: ChartSeries[] = [];
  options.methods.forEach((m, i) => {
    const color = m.color ?? PALETTE[i % PALETTE.length];
    const runs = options.runs.filter((r) => r.method === m.label && r.rows.length > 0);
    if (runs.length === 0) return;
    const curve = (rows: readonly MetricsRow[]): [number, number][] =>
      rows.flatMap((r) => {
        const v = quantity.pick(r);
        return v === undefined ? [] : [[xAxis.pick(r), v] as [number, number]];
      });
    if (runs.length === 1) {
      series.push({ label: m.label, color, points: curve(runs[0].rows) });
      return;
    }
    const group = `${m.label} (mean of ${runs.length})`;
    for (const r of runs) {
      series.push({ label: `${m.label} (seed ${r.seed})`, color, points: curve(r.rows), width: 1, opacity: 0.3, legend: false, group });
    }
    series.push({
      label: group,
      color,
      points: meanCurve(
        runs.map((r) => r.rows),
        xAxis.pick,
        quantity.pick,
      ),
    });
  });
  return series;
}

/** Points per line in report.html's charts (longer runs are thinned; the metrics files have every step). */
export const REPORT_MAX_POINTS = 500;

/** One figure of an experiment: its file name (without extension), title and chart. */
export interface PlotFigure {
  /** File name without extension, e.g. `outer-loss-vs-step`. */
  readonly key: string;
  /** The figure's title. */
  readonly title: string;
  /**
   * Its Vega-Lite spec; `interactive` adds tooltips, zoom and legend toggling (for report.html) and keeps at most
   * about {@link REPORT_MAX_POINTS} points per line.
   */
  spec(interactive: boolean): TopLevelSpec;
}

/**
 * The figures of an experiment — outer loss and (when the problem names one) its main metric, each against
 * outer steps and against training time; a figure without any point is left out. A figure gets a log y axis
 * when `logScale` is 'always', or 'auto' and its values are positive and span more than 1.5 decades (a
 * relative error falling to 1e-6, a loss falling a hundredfold).
 */
export function plotFigures(options: PlotOptions): PlotFigure[] {
  const useLog = (pick: (r: MetricsRow) => number | undefined): boolean => {
    if (options.logScale === 'always') return true;
    if (options.logScale === 'never') return false;
    const values = options.runs.flatMap((r) => r.rows.map(pick)).filter((v): v is number => v !== undefined);
    return wantsLogScale(values);
  };
  const lossPick = (r: MetricsRow): number => r.outerLoss;
  const quantities: Quantity[] = [{ key: 'outer-loss', title: 'outer loss', pick: lossPick, log: useLog(lossPick) }];
  if (options.mainMetric) {
    const name = options.mainMetric;
    const pick = (r: MetricsRow): number | undefined => r.metrics[name];
    quantities.push({ key: slug(name), title: name, pick, log: useLog(pick) });
  }
  const axes: Axis[] = [
    { key: 'step', label: 'outer step', pick: (r) => r.step },
    { key: 'time', label: 'training time (s)', pick: (r) => r.time },
  ];
  const figures: PlotFigure[] = [];
  for (const q of quantities) {
    for (const a of axes) {
      const series = figureSeries(options, a, q);
      if (series.every((s) => s.points.length === 0)) continue;
      const yScale: AxisScale = q.log ? 'log' : 'linear';
      const title = `${options.name}: ${q.title} vs ${a.key === 'step' ? 'outer steps' : 'training time'}`;
      figures.push({
        key: `${q.key}-vs-${a.key}`,
        title,
        spec: (interactive) =>
          lineChartSpec(series, {
            title,
            xLabel: a.label,
            yLabel: q.log ? `${q.title} (log scale)` : q.title,
            yScale,
            width: options.width,
            height: options.height,
            interactive,
            // The browser draws (and finds the nearest of) every point: at most about REPORT_MAX_POINTS per line there.
            maxPoints: interactive ? REPORT_MAX_POINTS : undefined,
          }),
      });
    }
  }
  return figures;
}

/**
 * Writes the figures of `plotFigures` as SVG (rendered by vega) and PNG (rasterised from the SVG by
 * resvg, `pixelRatio` pixels per SVG unit). Returns the files written.
 */
export async function writePlots(dir: string, options: PlotOptions): Promise<string[]> {
  const figures = plotFigures(options);
  if (figures.length === 0) return [];
  const font = options.font ?? findChartFont();
  if (font.note) options.onNote?.(font.note);
  const written: string[] = [];
  for (const f of figures) {
    written.push(...(await writeChart(path.join(dir, f.key), f.spec(false), { pixelRatio: options.pixelRatio ?? 2, font })));
  }
  return written;
}
