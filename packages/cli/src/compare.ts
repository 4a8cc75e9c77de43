import * as fs from 'fs';
import * as path from 'path';
import { ConfigError, DataError } from '@bilevel/core';
import { formatMeanSd, markdownTable, textTable } from './format';
import type { ExperimentSummary, MethodSummary } from './summary';

/** Reads summary.json from a results folder (or the file itself). */
export function readSummary(target: string): {
  /** The summary.json that was read. */
  file: string;
  /** Its content. */
  summary: ExperimentSummary;
} {
  let file = path.resolve(target);
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'summary.json');
  if (!fs.existsSync(file)) {
    // A results folder whose experiment was stopped before its first run ended has config.resolved.json only.
    if (fs.existsSync(path.join(path.dirname(file), 'config.resolved.json'))) {
      throw new ConfigError(
        `compare: '${target}' is a results folder without a summary yet: no run of its experiment ended (stopped or killed ` +
          `during its first run?); finish it with \`bilevel resume ${target}\`, then compare`,
        'results',
      );
    }
    throw new ConfigError(`compare: no summary.json at '${target}' (give a results folder or its summary.json)`, 'results');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new DataError(`compare: ${file} is not valid JSON: ${(e as Error).message}`, file);
  }
  const s = parsed as Partial<ExperimentSummary>;
  const methodOk = (m: unknown): boolean => {
    const x = m as Partial<MethodSummary> | null;
    return !!x && typeof x === 'object' && typeof x.label === 'string' && typeof x.runs === 'number' && !!x.stats && typeof x.stats === 'object';
  };
  if (
    !s ||
    typeof s !== 'object' ||
    typeof s.name !== 'string' ||
    typeof s.status !== 'string' ||
    !Array.isArray(s.methods) ||
    !s.methods.every(methodOk) ||
    !s.problem ||
    typeof s.problem !== 'object'
  ) {
    // E.g. an experiment config given instead of its results (it has a name, a problem and methods too).
    throw new DataError(
      `compare: ${file} is not a bilevel summary (needs name, status, problem and methods with label, runs and stats; is it a config rather than a results folder?)`,
      file,
    );
  }
  return { file, summary: s as ExperimentSummary };
}

/**
 * How each summary's results folder is named in the table: the folder's name, or — when two compared folders
 * have the same name — its path relative to the working folder (absolute when that is shorter).
 */
export function resultsLabels(files: readonly string[], cwd: string = process.cwd()): string[] {
  const dirs = files.map((f) => path.dirname(path.resolve(f)));
  const names = dirs.map((d) => path.basename(d));
  return dirs.map((d, i) => {
    if (names.filter((n) => n === names[i]).length === 1) return names[i];
    const rel = path.relative(cwd, d) || '.';
    return rel.length <= d.length ? rel : d;
  });
}

/**
 * A comparison table over several experiments: one row per (results folder, method). The results folder and the
 * seeds come first, so that two runs of one config (same experiment name) are told apart.
 */
export function compareTable(
  summaries: readonly { file: string; summary: ExperimentSummary }[],
  format: 'text' | 'markdown' = 'text',
): string {
  const mainMetrics = [...new Set(summaries.map((s) => s.summary.problem.mainMetric).filter((m): m is string => !!m))];
  const header = [
    'results',
    'experiment',
    'seeds',
    'problem',
    'method',
    'status',
    'runs',
    'steps',
    'train time (s)',
    'outer loss',
    ...mainMetrics,
    'oracle calls',
  ];
  const labels = resultsLabels(summaries.map((s) => s.file));
  const rows: string[][] = [];
  for (const [i, { summary }] of summaries.entries()) {
    for (const m of summary.methods as MethodSummary[]) {
      const stats = m.stats ?? {};
      rows.push([
        labels[i],
        summary.name,
        Array.isArray(summary.seeds) ? summary.seeds.join(',') : '',
        summary.problem.name,
        m.label,
        m.partial ? 'interrupted' : m.failed ? `${m.failed} failed` : summary.status,
        `${m.completed}/${m.runs}`,
        formatMeanSd(stats.steps),
        formatMeanSd(stats.trainSeconds),
        formatMeanSd(stats.finalOuterLoss),
        ...mainMetrics.map((k) => formatMeanSd(stats[`metric.${k}`])),
        formatMeanSd(stats.oracleCallsTotal),
      ]);
    }
  }
  return format === 'markdown' ? markdownTable(header, rows) : textTable(header, rows);
}
