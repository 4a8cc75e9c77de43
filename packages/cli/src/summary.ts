import { ORACLE_KINDS, type OracleCounts, type StopReason } from '@bilevel/core';
import { formatMeanSd, formatNumber, markdownTable, textTable } from './format';

/**
 * How a run ended: `completed`, `interrupted` (Ctrl-C), `diverged` (its outer loss, x or a gradient became
 * NaN/Inf or passed `trainer.divergenceBound`; `error.step` names the step), `failed` (another error, e.g.
 * a full disk), or `not-run` (skipped: the experiment stopped before it, after Ctrl-C or a failed run with
 * `onRunError: stop`).
 */
export type RunStatus = 'completed' | 'interrupted' | 'diverged' | 'failed' | 'not-run';
/**
 * The state of a whole experiment: `running` until every run ended, then `completed`, `interrupted`,
 * `diverged` (some run diverged, none failed otherwise) or `failed`.
 */
export type ExperimentStatus = 'running' | 'completed' | 'interrupted' | 'diverged' | 'failed';

/** The outcome of one (method, seed) run. */
export interface RunSummary {
  /** The method's label. */
  readonly method: string;
  /** The seed of the run. */
  readonly seed: number;
  /** How the run ended. */
  readonly status: RunStatus;
  /** Which stop rule ended a completed run. */
  readonly stoppedBy?: StopReason;
  /** Outer steps done. */
  readonly steps: number;
  /** Training seconds (evaluation excluded). */
  readonly trainSeconds: number;
  /** Wall-clock seconds of the run (problem set-up excluded). */
  readonly wallSeconds: number;
  /** Seconds spent building the pipeline (loading data, creating plugins). */
  readonly setupSeconds: number;
  /** Outer loss after a last inner solve at the final x (the last step's, when interrupted). */
  readonly finalOuterLoss?: number;
  /** Problem metrics at the final x (the last evaluated ones, when interrupted). */
  readonly finalMetrics: Readonly<Record<string, number>>;
  /** Oracle calls by kind. */
  readonly oracleCalls: Readonly<OracleCounts>;
  /** Oracle calls in total. */
  readonly oracleCallsTotal: number;
  /** Why a failed run failed. */
  readonly error?: {
    /** The error class, e.g. `DivergenceError`. */
    readonly kind: string;
    /** Its message. */
    readonly message: string;
    /** The outer step where it happened, when known. */
    readonly step?: number;
  };
  /** Metrics files, relative to the results folder. */
  readonly files?: {
    /** The CSV file. */
    readonly csv: string;
    /** The JSON-lines file. */
    readonly jsonl: string;
  };
}

/** Mean, sample standard deviation (n − 1), range and count. */
export interface Stat {
  /** Mean. */
  readonly mean: number;
  /** Sample standard deviation (divided by n − 1; 0 for a single value). */
  readonly sd: number;
  /** Smallest value. */
  readonly min: number;
  /** Largest value. */
  readonly max: number;
  /** Number of finite values. */
  readonly n: number;
}

/** The runs of one method, with statistics over its seeds. */
export interface MethodSummary {
  /** The method's label. */
  readonly label: string;
  /** Name of its inner solver. */
  readonly innerSolver: string;
  /** Name of its estimator. */
  readonly estimator: string;
  /** Name of its outer optimizer. */
  readonly outerOptimizer: string;
  /** Runs of the method (one per seed). */
  readonly runs: number;
  /** Runs that completed. */
  readonly completed: number;
  /** Runs that failed or diverged. */
  readonly failed: number;
  /** Of those, the runs that diverged. */
  readonly diverged: number;
  /** True when no run completed and the statistics come from interrupted runs. */
  readonly partial: boolean;
  /** Over the completed runs: finalOuterLoss, trainSeconds, wallSeconds, steps, oracleCallsTotal, oracle.<kind>, metric.<name>. */
  readonly stats: Readonly<Record<string, Stat>>;
}

/** What summary.json holds: the experiment, its problem and every method and run. */
export interface ExperimentSummary {
  /** The experiment's name. */
  readonly name: string;
  /** The config's description. */
  readonly description?: string;
  /** Where the experiment stands. */
  readonly status: ExperimentStatus;
  /** Start time (ISO 8601). */
  readonly startedAt: string;
  /** Time of the last update (ISO 8601). */
  readonly updatedAt: string;
  /** The tfjs backend the runs used. */
  readonly backend: string;
  /** The problem and its main metric. */
  readonly problem: {
    /** The problem's name. */
    readonly name: string;
    /** Its main metric, shown first in tables and plots. */
    readonly mainMetric?: string;
    /** Whether larger values of the main metric are better. */
    readonly mainMetricHigherIsBetter?: boolean;
  };
  /** The seeds, in order. */
  readonly seeds: readonly number[];
  /** One summary per method, in config order. */
  readonly methods: readonly MethodSummary[];
  /** One summary per run. */
  readonly runs: readonly RunSummary[];
}

/** Mean, sample sd, min, max of the finite values (NaN entries when there are none). */
export function describeValues(values: readonly number[]): Stat {
  const v = values.filter((x) => Number.isFinite(x));
  const n = v.length;
  if (n === 0) return { mean: NaN, sd: NaN, min: NaN, max: NaN, n: 0 };
  const mean = v.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, sd, min: Math.min(...v), max: Math.max(...v), n };
}

/** Per-method statistics over seeds. */
export function summarizeMethod(
  method: { label: string; innerSolver: string; estimator: string; outerOptimizer: string },
  runs: readonly RunSummary[],
): MethodSummary {
  const mine = runs.filter((r) => r.method === method.label);
  const completed = mine.filter((r) => r.status === 'completed');
  const interrupted = mine.filter((r) => r.status === 'interrupted' && r.steps > 0);
  const used = completed.length ? completed : interrupted;
  const stats: Record<string, Stat> = {};
  if (used.length) {
    const put = (key: string, pick: (r: RunSummary) => number | undefined): void => {
      const vals = used.map(pick).filter((x): x is number => x !== undefined);
      if (vals.length) stats[key] = describeValues(vals);
    };
    put('finalOuterLoss', (r) => r.finalOuterLoss);
    put('steps', (r) => r.steps);
    put('trainSeconds', (r) => r.trainSeconds);
    put('wallSeconds', (r) => r.wallSeconds);
    put('oracleCallsTotal', (r) => r.oracleCallsTotal);
    for (const k of ORACLE_KINDS) put(`oracle.${k}`, (r) => r.oracleCalls[k]);
    const metricNames = [...new Set(used.flatMap((r) => Object.keys(r.finalMetrics)))];
    for (const m of metricNames) put(`metric.${m}`, (r) => r.finalMetrics[m]);
  }
  return {
    ...method,
    runs: mine.length,
    completed: completed.length,
    failed: mine.filter((r) => r.status === 'failed' || r.status === 'diverged').length,
    diverged: mine.filter((r) => r.status === 'diverged').length,
    partial: completed.length === 0 && interrupted.length > 0,
    stats,
  };
}

function statusNote(m: MethodSummary): string {
  const notes: string[] = [];
  if (m.diverged) notes.push(`${m.diverged} diverged`);
  if (m.failed > m.diverged) notes.push(`${m.failed - m.diverged} failed`);
  if (m.partial) notes.push('interrupted');
  else if (m.completed < m.runs && !m.failed) notes.push(`${m.runs - m.completed} not completed`);
  return notes.length ? ` (${notes.join(', ')})` : '';
}

/** Rows of the main comparison table: method, runs, steps, time, outer loss, main metric, oracle calls. */
export function comparisonRows(summary: ExperimentSummary): {
  /** Column titles. */
  header: string[];
  /** One row of cells per method. */
  rows: string[][];
} {
  const main = summary.problem.mainMetric;
  const header = ['method', 'runs', 'steps', 'train time (s)', 'outer loss'];
  if (main) header.push(main);
  header.push('oracle calls');
  const rows = summary.methods.map((m) => {
    const row = [
      m.label + statusNote(m),
      `${m.completed}/${m.runs}`,
      formatMeanSd(m.stats.steps),
      formatMeanSd(m.stats.trainSeconds),
      formatMeanSd(m.stats.finalOuterLoss),
    ];
    if (main) row.push(formatMeanSd(m.stats[`metric.${main}`]));
    row.push(formatMeanSd(m.stats.oracleCallsTotal));
    return row;
  });
  return { header, rows };
}

/** The summary as a terminal table. */
export function summaryText(summary: ExperimentSummary): string {
  const { header, rows } = comparisonRows(summary);
  return textTable(header, rows);
}

/** The summary as Markdown: comparison table, every run, oracle calls by kind. */
export function summaryMarkdown(summary: ExperimentSummary): string {
  const main = summary.problem.mainMetric;
  const lines: string[] = [`# ${summary.name}`, ''];
  if (summary.description) lines.push(summary.description.trim(), '');
  const dir = summary.problem.mainMetricHigherIsBetter === undefined ? '' : summary.problem.mainMetricHigherIsBetter ? ' (higher is better)' : ' (lower is better)';
  lines.push(
    `- status: **${summary.status}**`,
    `- problem: \`${summary.problem.name}\`${main ? `, main metric \`${main}\`${dir}` : ''}`,
    `- backend: \`${summary.backend}\``,
    `- seeds: ${summary.seeds.join(', ')}`,
    `- started ${summary.startedAt}, updated ${summary.updatedAt}`,
    '',
    '## Final results (mean ± sd over seeds)',
    '',
  );
  const { header, rows } = comparisonRows(summary);
  lines.push(markdownTable(header, rows), '');
  lines.push(
    'Final values are measured after a last inner solve at the final outer variable; for interrupted runs they are the last recorded step. Train time excludes evaluation.',
    '',
    '## Runs',
    '',
  );
  const runHeader = ['method', 'seed', 'status', 'steps', 'stopped by', 'train time (s)', 'outer loss'];
  if (main) runHeader.push(main);
  runHeader.push('oracle calls', 'note');
  const runRows = summary.runs.map((r) => {
    const row = [
      r.method,
      String(r.seed),
      r.status,
      String(r.steps),
      r.stoppedBy ?? '—',
      formatNumber(r.trainSeconds),
      formatNumber(r.finalOuterLoss),
    ];
    if (main) row.push(formatNumber(r.finalMetrics[main]));
    row.push(String(r.oracleCallsTotal), r.error ? `${r.error.kind} at step ${r.error.step ?? '?'}: ${r.error.message}` : '');
    return row;
  });
  lines.push(markdownTable(runHeader, runRows), '');
  lines.push('## Oracle calls by kind (mean per run)', '');
  const kindHeader = ['method', ...ORACLE_KINDS, 'total'];
  const kindRows = summary.methods.map((m) => [
    m.label,
    ...ORACLE_KINDS.map((k) => formatNumber(m.stats[`oracle.${k}`]?.mean)),
    formatNumber(m.stats.oracleCallsTotal?.mean),
  ]);
  lines.push(markdownTable(kindHeader, kindRows), '');
  const metricNames = [
    ...new Set(summary.methods.flatMap((m) => Object.keys(m.stats).filter((k) => k.startsWith('metric.')))),
  ];
  if (metricNames.length) {
    lines.push('## All final metrics (mean ± sd)', '');
    lines.push(
      markdownTable(
        ['method', ...metricNames.map((k) => k.slice('metric.'.length))],
        summary.methods.map((m) => [m.label, ...metricNames.map((k) => formatMeanSd(m.stats[k]))]),
      ),
      '',
    );
  }
  return lines.join('\n');
}
