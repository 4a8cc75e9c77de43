/**
 * report.html: one self-contained page per results folder — the experiment, a table of its methods and one of
 * its runs (method × seed: status, steps, final metrics, time, oracle calls), and interactive charts (the
 * Vega specs of the plots, drawn in the browser by the `vega` bundle inlined into the page). It works offline:
 * nothing is fetched.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ConfigError, DataError } from '@bilevel/core';
import { compileChart, findChartFont } from './charts';
import { readSummary } from './compare';
import { formatMeanSd, formatNumber, slug } from './format';
import { type PlotFigure, type PlotOptions, plotFigures, REPORT_MAX_POINTS, writePlots } from './plots';
import { acquireResultsLock, isStorageFailure, toStorageError, writeFileAtomic } from './results-folder';
import { type MetricsRow, readRunRows } from './run-recorder';
import type { ExperimentSummary, RunSummary } from './summary';

/** The file name of the report in a results folder. */
export const REPORT_FILE = 'report.html';

/** Escapes text for HTML content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

let bundle: string | undefined;

/** The browser build of vega (minified, about 0.5 MB), made safe to inline in a `<script>` element. */
export function vegaBrowserBundle(): string {
  if (bundle === undefined) {
    const text = fs.readFileSync(require.resolve('vega/build/vega.min.js'), 'utf8');
    // An inline script ends at the first `</script`, and `<!--` changes how it is parsed; both can only sit in
    // strings, regular expressions or comments of the bundle, where the escaped forms mean the same.
    bundle = text.replace(/<\/(script)/gi, '<\\/$1').replace(/<!--/g, '<\\!--');
  }
  return bundle;
}

/** JSON for inlining in an HTML `<script>`: `<` only occurs in strings, where `\u003c` means the same. */
function inlineJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c');
}

function table(header: readonly string[], rows: readonly (readonly string[])[], numeric: (j: number) => boolean): string {
  const th = header.map((h, j) => `<th${numeric(j) ? ' class="num"' : ''}>${escapeHtml(h)}</th>`).join('');
  const body = rows
    .map((r) => `<tr>${r.map((c, j) => `<td${numeric(j) ? ' class="num"' : ''}>${escapeHtml(c)}</td>`).join('')}</tr>`)
    .join('\n');
  return `<table>\n<thead><tr>${th}</tr></thead>\n<tbody>\n${body}\n</tbody>\n</table>`;
}

/** Every final metric name of the runs, the main metric first. */
function metricNames(summary: ExperimentSummary): string[] {
  const names = new Set<string>();
  if (summary.problem.mainMetric) names.add(summary.problem.mainMetric);
  for (const r of summary.runs) for (const k of Object.keys(r.finalMetrics ?? {})) names.add(k);
  return [...names];
}

function runStatus(r: RunSummary): string {
  if (r.status === 'completed') return r.stoppedBy ? `completed (${r.stoppedBy})` : 'completed';
  if (r.error) return `${r.status}: ${r.error.kind}${r.error.step !== undefined ? ` at step ${r.error.step}` : ''}`;
  return r.status;
}

/** What {@link reportHtml} shows. */
export interface ReportInput {
  /** The experiment's summary (summary.json). */
  readonly summary: ExperimentSummary;
  /** The figures drawn as interactive charts (none when plots are off). */
  readonly figures: readonly PlotFigure[];
  /** Who wrote the page, e.g. `@bilevel/cli 0.2.0`. */
  readonly generator?: string;
}

/**
 * The report page: header, methods table (mean ± sd over completed runs), runs table (one row per method and
 * seed) and the charts, with the vega bundle and the compiled chart specs inlined. The page marks
 * `data-charts` on `<body>` as `ready` once every chart is drawn (`failed` when one could not be).
 */
export function reportHtml(input: ReportInput): string {
  const s = input.summary;
  const main = s.problem.mainMetric;
  const metrics = metricNames(s);
  const methodRows = s.methods.map((m) => {
    const st = m.stats ?? {};
    return [
      m.label,
      `${m.innerSolver} / ${m.estimator} / ${m.outerOptimizer}`,
      `${m.completed}/${m.runs}${m.failed ? ` (${m.failed} failed)` : ''}${m.partial ? ' (interrupted)' : ''}`,
      formatMeanSd(st.finalOuterLoss),
      ...(main ? [formatMeanSd(st[`metric.${main}`])] : []),
      formatMeanSd(st.trainSeconds),
      formatMeanSd(st.steps),
      formatMeanSd(st.oracleCallsTotal),
    ];
  });
  const methodHeader = [
    'method',
    'inner solver / estimator / outer optimizer',
    'completed',
    'final outer loss',
    ...(main ? [`final ${main}`] : []),
    'train time (s)',
    'steps',
    'oracle calls',
  ];
  const runHeader = ['method', 'seed', 'status', 'steps', 'final outer loss', ...metrics.map((k) => `final ${k}`), 'train time (s)', 'wall time (s)', 'oracle calls'];
  const runRows = s.runs.map((r) => [
    r.method,
    String(r.seed),
    runStatus(r),
    String(r.steps),
    formatNumber(r.finalOuterLoss),
    ...metrics.map((k) => formatNumber(r.finalMetrics?.[k])),
    formatNumber(r.trainSeconds),
    formatNumber(r.wallSeconds),
    formatNumber(r.oracleCallsTotal),
  ]);
  const textColumns = new Set(['method', 'inner solver / estimator / outer optimizer', 'completed', 'status']);
  const errors = s.runs.filter((r) => r.error).map((r) => `${r.method}, seed ${r.seed}: ${r.error?.kind}: ${r.error?.message}`);
  const specs = input.figures.map((f) => compileChart(f.spec(true)));
  const charts = input.figures
    .map((f, i) => `<figure><div class="chart" id="chart-${i}" data-key="${escapeHtml(f.key)}"></div></figure>`)
    .join('\n');
  const meta = [
    ['status', s.status],
    ['problem', s.problem.name + (main ? ` (main metric: ${main}${s.problem.mainMetricHigherIsBetter ? ', higher is better' : ''})` : '')],
    ['seeds', s.seeds.join(', ')],
    ['backend', s.backend],
    ['started', s.startedAt],
    ['updated', s.updatedAt],
  ]
    .map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`)
    .join('');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(s.name)} — bilevel report</title>
<style>
body { font-family: 'DejaVu Sans', 'Liberation Sans', Arial, Helvetica, sans-serif; margin: 1.5em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { color: #666; } dd { margin: 0; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
thead th { border-bottom: 2px solid #888; }
figure { margin: 0 0 1.5em; }
.chart { min-height: 100px; }
.hint, footer { color: #666; font-size: 0.85em; }
.errors { color: #a00; }
#tooltip { position: fixed; display: none; pointer-events: none; background: #fff; border: 1px solid #888; padding: 0.3em 0.5em; font-size: 0.85em; box-shadow: 0 1px 4px rgba(0,0,0,0.2); z-index: 10; }
#tooltip td { border: 0; padding: 0 0.4em 0 0; }
</style>
</head>
<body data-charts="pending">
<h1>${escapeHtml(s.name)}</h1>
${s.description ? `<p>${escapeHtml(s.description)}</p>\n` : ''}<dl>${meta}</dl>
<h2>Methods</h2>
<p class="hint">Mean ± sample standard deviation over the completed runs of each method.</p>
${table(methodHeader, methodRows, (j) => !textColumns.has(methodHeader[j]))}
<h2>Runs</h2>
${table(runHeader, runRows, (j) => !textColumns.has(runHeader[j]))}
${errors.length ? `<ul class="errors">${errors.map((e) => `<li>${escapeHtml(e)}</li>`).join('')}</ul>\n` : ''}<h2>Charts</h2>
${
  specs.length
    ? '<p class="hint">Hover a line for its values; drag to pan, mouse wheel to zoom, double-click to reset; click a legend entry to show only that method, shift-click to add more, click the background of the legend to show all. Lines longer than ' + REPORT_MAX_POINTS + ' points show every k-th step; the metrics files in runs/ have them all.</p>'
    : '<p class="hint">No charts (plots are off, or no run recorded a step).</p>'
}
<noscript><p class="errors">The charts need JavaScript; the SVG and PNG files beside this page show the same figures.</p></noscript>
${charts}
<div id="tooltip"></div>
<footer>Written ${escapeHtml(new Date().toISOString())}${input.generator ? ` by ${escapeHtml(input.generator)}` : ''}; charts drawn by vega ${escapeHtml(vegaVersion())}.</footer>
<script type="application/json" id="chart-specs">${inlineJson(specs)}</script>
<script>${vegaBrowserBundle()}</script>
<script>${BOOT_SCRIPT}</script>
</body>
</html>
`;
}

function vegaVersion(): string {
  return (JSON.parse(fs.readFileSync(require.resolve('vega/package.json'), 'utf8')) as { version: string }).version;
}

/** Draws every chart with vega (SVG renderer) and shows tooltips in a positioned box. */
const BOOT_SCRIPT = `
(function () {
  var specs = JSON.parse(document.getElementById('chart-specs').textContent);
  var box = document.getElementById('tooltip');
  function tooltip(handler, event, item, value) {
    if (value === undefined || value === null || value === '') { box.style.display = 'none'; return; }
    while (box.firstChild) box.removeChild(box.firstChild);
    var table = document.createElement('table');
    var entries = typeof value === 'object' ? Object.keys(value).map(function (k) { return [k, value[k]]; }) : [['', value]];
    entries.forEach(function (e) {
      var tr = table.insertRow();
      tr.insertCell().textContent = e[0];
      tr.insertCell().textContent = String(e[1]);
    });
    box.appendChild(table);
    box.style.display = 'block';
    box.style.left = Math.min(event.clientX + 12, window.innerWidth - box.offsetWidth - 4) + 'px';
    box.style.top = (event.clientY + 12) + 'px';
  }
  var drawn = specs.map(function (spec, i) {
    try {
      var view = new vega.View(vega.parse(spec), { renderer: 'svg', container: '#chart-' + i, hover: true });
      view.tooltip(tooltip);
      return view.runAsync();
    } catch (e) {
      return Promise.reject(e);
    }
  });
  Promise.all(drawn).then(
    function () { document.body.setAttribute('data-charts', 'ready'); },
    function (e) { document.body.setAttribute('data-charts', 'failed'); console.error('chart failed: ' + (e && e.message)); }
  );
})();
`;

/** The version of this package (`unknown` when its package.json cannot be read). */
export function cliVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * Writes the figures of a results folder: the SVG and PNG plots (when `plots`) and report.html (when
 * `report`, with the same figures as interactive charts). A full disk becomes a StorageError naming the
 * folder. Returns the files written.
 */
export async function writeFiguresAndReport(
  dir: string,
  summary: ExperimentSummary,
  plot: PlotOptions,
  what: {
    /** Write the SVG and PNG files. */
    readonly plots: boolean;
    /** Write report.html. */
    readonly report: boolean;
  },
): Promise<string[]> {
  try {
    const written: string[] = [];
    if (what.plots) written.push(...(await writePlots(dir, { ...plot, font: plot.font ?? findChartFont() })));
    if (what.report) {
      const file = path.join(dir, REPORT_FILE);
      writeFileAtomic(file, reportHtml({ summary, figures: plotFigures(plot), generator: `@bilevel/cli ${cliVersion()}` }));
      written.push(file);
    }
    return written;
  } catch (e) {
    if (isStorageFailure(e)) throw toStorageError(e, dir);
    throw e;
  }
}

interface ResolvedConfigFile {
  name?: string;
  methods?: { label?: string; color?: string }[];
  output?: Partial<Pick<PlotOptions, 'logScale' | 'pixelRatio' | 'width' | 'height'>> & { plots?: boolean };
}

/**
 * (Re)writes the plots and report.html of a results folder from its files — summary.json, config.resolved.json
 * (method colours, output settings) and the runs' metrics (runs/*.jsonl) — as the end of a run would. The
 * folder is locked meanwhile (an experiment still running in it is a ResultsLockedError). Returns the files
 * written.
 */
export async function reportFromFolder(
  folder: string,
  options: {
    /** Also write the SVG and PNG plots (default: as the experiment's `output.plots` says). */
    readonly plots?: boolean;
    /** Told notes such as a missing font. */
    readonly onNote?: (line: string) => void;
  } = {},
): Promise<string[]> {
  const dir = path.resolve(folder);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new ConfigError(`report: '${folder}' is not a results folder (no such folder)`, 'results');
  }
  const { summary } = readSummary(dir);
  const configFile = path.join(dir, 'config.resolved.json');
  let resolved: ResolvedConfigFile = {};
  if (fs.existsSync(configFile)) {
    try {
      resolved = JSON.parse(fs.readFileSync(configFile, 'utf8')) as ResolvedConfigFile;
    } catch (e) {
      throw new DataError(`report: ${configFile} is not valid JSON: ${(e as Error).message}`, configFile);
    }
  }
  const colors = new Map((resolved.methods ?? []).map((m) => [m.label, m.color]));
  const runs: { method: string; seed: number; rows: readonly MetricsRow[] }[] = [];
  for (const r of summary.runs ?? []) {
    if (r.status === 'not-run') continue;
    const jsonl = path.join(dir, r.files?.jsonl ?? `runs/${slug(r.method)}-seed${r.seed}.jsonl`);
    const rows = readRunRows(jsonl);
    if (rows.length > 0) runs.push({ method: r.method, seed: r.seed, rows });
  }
  const out = resolved.output ?? {};
  const lock = acquireResultsLock(dir, { command: 'bilevel report', onMessage: (line) => options.onNote?.(line) });
  try {
    return await writeFiguresAndReport(
      dir,
      summary,
      {
        name: summary.name,
        methods: summary.methods.map((m) => ({ label: m.label, color: colors.get(m.label) })),
        runs,
        mainMetric: summary.problem.mainMetric,
        logScale: out.logScale,
        pixelRatio: out.pixelRatio,
        width: out.width,
        height: out.height,
        onNote: options.onNote,
      },
      { plots: options.plots ?? out.plots !== false, report: true },
    );
  } finally {
    lock.release();
  }
}
