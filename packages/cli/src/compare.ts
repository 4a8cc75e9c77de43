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
    throw new ConfigError(`compare: no summary.json at '${target}' (give a results folder or its summary.json)`, 'results');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new DataError(`compare: ${file} is not valid JSON: ${(e as Error).message}`, file);
  }
  const s = parsed as Partial<ExperimentSummary>;
  if (!s || typeof s !== 'object' || typeof s.name !== 'string' || !Array.isArray(s.methods) || !s.problem) {
    throw new DataError(`compare: ${file} is not a bilevel summary (needs name, problem and methods)`, file);
  }
  return { file, summary: s as ExperimentSummary };
}

/** A comparison table over several experiments: one row per (experiment, method). */
export function compareTable(
  summaries: readonly { file: string; summary: ExperimentSummary }[],
  format: 'text' | 'markdown' = 'text',
): string {
  const mainMetrics = [...new Set(summaries.map((s) => s.summary.problem.mainMetric).filter((m): m is string => !!m))];
  const header = ['experiment', 'problem', 'method', 'status', 'runs', 'steps', 'train time (s)', 'outer loss', ...mainMetrics, 'oracle calls'];
  const rows: string[][] = [];
  for (const { summary } of summaries) {
    for (const m of summary.methods as MethodSummary[]) {
      const stats = m.stats ?? {};
      rows.push([
        summary.name,
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
