import * as fs from 'fs';
import { ORACLE_KINDS, type OracleCounts, type StepEvent } from '@bilevel/core';
import { guardWrite, writeFileAtomic } from './results-folder';

/** One row of a run's per-step metrics. */
export interface MetricsRow {
  /** Outer steps done (1 after the first). */
  readonly step: number;
  /** Training seconds so far (evaluation excluded) — the time axis of the plots. */
  readonly time: number;
  /** Wall-clock seconds since the run started (evaluation and logging included). */
  readonly wallTime: number;
  /** Outer loss f(x, y_N) on the whole outer data. */
  readonly outerLoss: number;
  /** ‖∇Φ‖ of the estimate. */
  readonly hypergradientNorm: number;
  /** Inner iterations of the step's solve. */
  readonly innerIterations: number;
  /** ‖∇_y g‖ at the end of the inner solve. */
  readonly innerGradientNorm: number;
  /** Whether the update was skipped (non-finite estimate with `onNonFinite: skip`). */
  readonly skipped: boolean;
  /** Problem metrics (on evaluation steps). */
  readonly metrics: Readonly<Record<string, number>>;
  /** Estimator diagnostics of the step. */
  readonly diagnostics: Readonly<Record<string, number>>;
  /** Cumulative oracle calls by kind. */
  readonly oracleCalls: Readonly<OracleCounts>;
  /** Cumulative oracle calls in total. */
  readonly oracleCallsTotal: number;
}

/** The sum of every oracle count. */
export function totalCalls(counts: Readonly<OracleCounts>): number {
  return ORACLE_KINDS.reduce((s, k) => s + (counts[k] ?? 0), 0);
}

/** A metrics row from a trainer step event. */
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

const NON_FINITE = new Set(['NaN', 'Infinity', '-Infinity']);

/**
 * The rows of a run's `.jsonl` file (non-finite numbers written as strings read back as numbers). A last
 * line cut short by a kill is ignored; a missing file gives no rows.
 */
export function readRunRows(jsonlPath: string): MetricsRow[] {
  let text: string;
  try {
    text = fs.readFileSync(jsonlPath, 'utf8');
  } catch {
    return [];
  }
  const rows: MetricsRow[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      rows.push(
        JSON.parse(line, (_k, v: unknown) => (typeof v === 'string' && NON_FINITE.has(v) ? Number(v) : v)) as MetricsRow,
      );
    } catch {
      // A line cut short (the process was killed while writing it).
    }
  }
  return rows;
}

/** Appends all of `data` at the end of an open file, or throws (the caller cuts the file back). */
function appendAll(fd: number, data: Buffer, position: number): void {
  for (let done = 0; done < data.length;) {
    done += fs.writeSync(fd, data, done, data.length - done, position + done);
  }
}

/**
 * Writes a run's rows as they come: one JSON object per line (`.jsonl`) and a CSV file whose columns are
 * the base quantities, `metric.*`, `diagnostic.*` and `oracle.*` (cumulative calls by kind and in total).
 * When a later row brings a new metric, the CSV is rewritten with the wider header. A resumed run starts
 * from the rows it already had (`previous`, those up to its checkpoint): both files are rewritten with them
 * (atomically; this also repairs a last line cut short by a kill), and new rows are appended after them.
 *
 * A row is written whole or not at all: when a write fails (a full disk), both files are cut back to where
 * they were before the row and a {@link StorageError} naming the file is thrown; the row is not kept.
 */
export class RunRecorder {
  /** Every row so far, in order. */
  readonly rows: MetricsRow[] = [];
  private metricKeys: string[] = [];
  private diagnosticKeys: string[] = [];
  private jsonlFd: number | null = null;
  private csvFd: number | null = null;
  private jsonlSize = 0;
  private csvSize = 0;

  constructor(
    /** Path of the CSV file. */
    readonly csvPath: string,
    /** Path of the JSON-lines file. */
    readonly jsonlPath: string,
    previous: readonly MetricsRow[] = [],
  ) {
    for (const row of previous) {
      this.rows.push(row);
      this.addKeys(row);
    }
    const jsonl = Buffer.from(this.rows.map((r) => jsonWithNonFinite(r) + '\n').join(''), 'utf8');
    writeFileAtomic(jsonlPath, jsonl);
    this.jsonlSize = jsonl.length;
    this.jsonlFd = guardWrite(jsonlPath, () => fs.openSync(jsonlPath, 'r+'));
    this.rewriteCsv();
  }

  /** Adds the row's new metric and diagnostic names to the columns; true when there were any. */
  private addKeys(row: MetricsRow): boolean {
    const newMetrics = Object.keys(row.metrics).filter((k) => !this.metricKeys.includes(k));
    const newDiagnostics = Object.keys(row.diagnostics).filter((k) => !this.diagnosticKeys.includes(k));
    this.metricKeys.push(...newMetrics);
    this.diagnosticKeys.push(...newDiagnostics);
    return newMetrics.length > 0 || newDiagnostics.length > 0;
  }

  private rewriteCsv(): void {
    const text = Buffer.from([this.header(), ...this.rows.map((r) => this.csvLine(r))].join('\n') + '\n', 'utf8');
    writeFileAtomic(this.csvPath, text);
    this.csvSize = text.length;
    if (this.csvFd !== null) fs.closeSync(this.csvFd);
    this.csvFd = null;
    this.csvFd = guardWrite(this.csvPath, () => fs.openSync(this.csvPath, 'r+'));
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

  /**
   * Appends a row to both files (rewriting the CSV when the row brings a new column), whole or not at all:
   * on a failed write both files are cut back and the error (a {@link StorageError} for a full disk) is thrown.
   */
  add(row: MetricsRow): void {
    if (this.jsonlFd === null || this.csvFd === null) throw new Error(`RunRecorder: ${this.jsonlPath} is closed`);
    const keysBefore = [this.metricKeys.length, this.diagnosticKeys.length];
    const jsonlFd = this.jsonlFd;
    const jsonlLine = Buffer.from(jsonWithNonFinite(row) + '\n', 'utf8');
    const cutBack = (): void => {
      try {
        fs.ftruncateSync(jsonlFd, this.jsonlSize);
        if (this.csvFd !== null) fs.ftruncateSync(this.csvFd, this.csvSize);
      } catch {
        // a failing disk: resume cuts both files back to the checkpoint's rows anyway
      }
    };
    guardWrite(this.jsonlPath, () => {
      try {
        appendAll(jsonlFd, jsonlLine, this.jsonlSize);
      } catch (e) {
        cutBack();
        throw e;
      }
    });
    this.rows.push(row);
    try {
      if (this.addKeys(row)) {
        this.rewriteCsv();
      } else {
        const line = Buffer.from(this.csvLine(row) + '\n', 'utf8');
        const csvFd = this.csvFd;
        guardWrite(this.csvPath, () => appendAll(csvFd, line, this.csvSize));
        this.csvSize += line.length;
      }
    } catch (e) {
      this.rows.pop();
      this.metricKeys.length = keysBefore[0];
      this.diagnosticKeys.length = keysBefore[1];
      cutBack();
      throw e;
    }
    this.jsonlSize += jsonlLine.length;
  }

  /** The last value of a problem metric over the rows (metrics are only present on evaluation steps). */
  lastMetric(name: string): number | undefined {
    for (let i = this.rows.length - 1; i >= 0; i--) {
      const v = this.rows[i].metrics[name];
      if (v !== undefined) return v;
    }
    return undefined;
  }

  /** Closes both files. */
  close(): void {
    for (const fd of [this.jsonlFd, this.csvFd]) if (fd !== null) fs.closeSync(fd);
    this.jsonlFd = null;
    this.csvFd = null;
  }
}
