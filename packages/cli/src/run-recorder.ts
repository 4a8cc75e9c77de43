import * as fs from 'fs';
import { ORACLE_KINDS, type OracleCounts, type StepEvent } from '@bilevel/core';

/** One row of a run's per-step metrics. */
export interface MetricsRow {
  readonly step: number;
  /** Training seconds so far (evaluation excluded) — the time axis of the plots. */
  readonly time: number;
  /** Wall-clock seconds since the run started (evaluation and logging included). */
  readonly wallTime: number;
  readonly outerLoss: number;
  readonly hypergradientNorm: number;
  readonly innerIterations: number;
  readonly innerGradientNorm: number;
  readonly skipped: boolean;
  readonly metrics: Readonly<Record<string, number>>;
  readonly diagnostics: Readonly<Record<string, number>>;
  /** Cumulative oracle calls by kind. */
  readonly oracleCalls: Readonly<OracleCounts>;
  readonly oracleCallsTotal: number;
}

export function totalCalls(counts: Readonly<OracleCounts>): number {
  return ORACLE_KINDS.reduce((s, k) => s + (counts[k] ?? 0), 0);
}

export function rowFromEvent(event: StepEvent, wallTime: number): MetricsRow {
  return {
    step: event.step,
    time: event.elapsedSeconds,
    wallTime,
    outerLoss: event.outerLoss,
    hypergradientNorm: event.hypergradientNorm,
    innerIterations: event.innerIterations,
    innerGradientNorm: event.innerGradientNorm,
    skipped: event.skipped,
    metrics: { ...event.metrics },
    diagnostics: { ...event.diagnostics },
    oracleCalls: { ...event.oracleCalls },
    oracleCallsTotal: totalCalls(event.oracleCalls),
  };
}

const BASE_COLUMNS = [
  'step',
  'time',
  'wallTime',
  'outerLoss',
  'hypergradientNorm',
  'innerIterations',
  'innerGradientNorm',
  'skipped',
] as const;

function csvCell(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : String(v);
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** JSON with non-finite numbers written as the strings "NaN", "Infinity", "-Infinity" (not null). */
export function jsonWithNonFinite(value: unknown, indent?: number): string {
  return JSON.stringify(
    value,
    (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v),
    indent,
  );
}

/**
 * Writes a run's rows as they come: one JSON object per line (`.jsonl`) and a CSV file whose columns are
 * the base quantities, `metric.*`, `diagnostic.*` and `oracle.*` (cumulative calls by kind and in total).
 * When a later row brings a new metric, the CSV is rewritten with the wider header.
 */
export class RunRecorder {
  readonly rows: MetricsRow[] = [];
  private metricKeys: string[] = [];
  private diagnosticKeys: string[] = [];
  private jsonlFd: number | null;

  constructor(
    readonly csvPath: string,
    readonly jsonlPath: string,
  ) {
    this.jsonlFd = fs.openSync(jsonlPath, 'w');
    fs.writeFileSync(csvPath, this.header() + '\n');
  }

  private columns(): string[] {
    return [
      ...BASE_COLUMNS,
      ...this.metricKeys.map((k) => `metric.${k}`),
      ...this.diagnosticKeys.map((k) => `diagnostic.${k}`),
      ...ORACLE_KINDS.map((k) => `oracle.${k}`),
      'oracle.total',
    ];
  }

  private header(): string {
    return this.columns().map(csvCell).join(',');
  }

  private csvLine(row: MetricsRow): string {
    const cells: unknown[] = [
      row.step,
      row.time,
      row.wallTime,
      row.outerLoss,
      row.hypergradientNorm,
      row.innerIterations,
      row.innerGradientNorm,
      row.skipped ? 1 : 0,
      ...this.metricKeys.map((k) => row.metrics[k]),
      ...this.diagnosticKeys.map((k) => row.diagnostics[k]),
      ...ORACLE_KINDS.map((k) => row.oracleCalls[k]),
      row.oracleCallsTotal,
    ];
    return cells.map(csvCell).join(',');
  }

  add(row: MetricsRow): void {
    this.rows.push(row);
    if (this.jsonlFd !== null) fs.writeSync(this.jsonlFd, jsonWithNonFinite(row) + '\n');
    const newMetrics = Object.keys(row.metrics).filter((k) => !this.metricKeys.includes(k));
    const newDiagnostics = Object.keys(row.diagnostics).filter((k) => !this.diagnosticKeys.includes(k));
    if (newMetrics.length || newDiagnostics.length) {
      this.metricKeys.push(...newMetrics);
      this.diagnosticKeys.push(...newDiagnostics);
      fs.writeFileSync(this.csvPath, [this.header(), ...this.rows.map((r) => this.csvLine(r))].join('\n') + '\n');
    } else {
      fs.appendFileSync(this.csvPath, this.csvLine(row) + '\n');
    }
  }

  /** The last value of a problem metric over the rows (metrics are only present on evaluation steps). */
  lastMetric(name: string): number | undefined {
    for (let i = this.rows.length - 1; i >= 0; i--) {
      const v = this.rows[i].metrics[name];
      if (v !== undefined) return v;
    }
    return undefined;
  }

  close(): void {
    if (this.jsonlFd !== null) {
      fs.closeSync(this.jsonlFd);
      this.jsonlFd = null;
    }
  }
}
