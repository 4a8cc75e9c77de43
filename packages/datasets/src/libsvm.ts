import { DataError } from '@bilevel/core';
import { existsSync, readFileSync } from 'node:fs';
import { gunzip, isGzip } from './idx';

/**
 * A sparse matrix in compressed sparse row (CSR) form: the nonzeros of row r are
 * `values[indptr[r] .. indptr[r+1])` at columns `indices[...]` (0-based, ascending within a row).
 */
export interface CsrMatrix {
  /** Number of rows. */
  readonly rows: number;
  /** Number of columns. */
  readonly cols: number;
  /** Row r's nonzeros are entries indptr[r] … indptr[r+1] − 1 (rows + 1 entries). */
  readonly indptr: Int32Array;
  /** Column of each nonzero (0-based). */
  readonly indices: Int32Array;
  /** Value of each nonzero. */
  readonly values: Float32Array;
}

/** A LIBSVM data set: a CSR feature matrix and one numeric label per row. */
export interface LibsvmData {
  /** The file it was read from. */
  readonly file: string;
  /** The features, one row per sample. */
  readonly features: CsrMatrix;
  /** The labels as written (e.g. −1/+1, 1..k, or real targets). */
  readonly labels: Float64Array;
}

/** Options of {@link readLibsvm} and {@link parseLibsvm}. */
export interface LibsvmReadOptions {
  /**
   * Number of feature columns. Defaults to the largest index seen; give it to align several files
   * (train / validation / test) whose largest indices differ. An index beyond it is an error.
   */
  readonly features?: number;
}

/**
 * Parses LIBSVM text: one sample per line, `label index:value index:value ...`, indices 1-based;
 * blank lines and `#` comments are skipped, `qid:` tokens are ignored. Indices of a line may come in any
 * order but not twice. Any malformed token raises a {@link DataError} with the line and column.
 */
export function parseLibsvm(text: string, file = '(text)', options: LibsvmReadOptions = {}): LibsvmData {
  const labels: number[] = [];
  const indptr: number[] = [0];
  const indices: number[] = [];
  const values: number[] = [];
  let maxIndex = 0;
  const lines = text.split('\n');
  const fail = (line: number, col: number, what: string): never => {
    throw new DataError(`${file}: line ${line}, column ${col}: ${what}`, file);
  };
  for (let li = 0; li < lines.length; li++) {
    let line = lines[li];
    if (line.endsWith('\r')) line = line.slice(0, -1);
    const hash = line.indexOf('#');
    if (hash >= 0) line = line.slice(0, hash);
    // Tokens with their 1-based starting columns.
    const tokens: { text: string; col: number }[] = [];
    const re = /\S+/g;
    let m: RegExpExecArray | null;
    while ((m = re.exec(line)) !== null) tokens.push({ text: m[0], col: m.index + 1 });
    if (tokens.length === 0) continue;
    const lineNo = li + 1;
    const label = Number(tokens[0].text);
    if (!Number.isFinite(label) || tokens[0].text.includes(':')) {
      fail(lineNo, tokens[0].col, `expected a numeric label, found '${tokens[0].text}'`);
    }
    const row: { index: number; value: number; col: number }[] = [];
    for (let t = 1; t < tokens.length; t++) {
      const { text: tok, col } = tokens[t];
      const colon = tok.indexOf(':');
      if (colon <= 0 || colon === tok.length - 1) fail(lineNo, col, `expected 'index:value', found '${tok}'`);
      const key = tok.slice(0, colon);
      const valText = tok.slice(colon + 1);
      if (key === 'qid') continue;
      if (!/^\d+$/.test(key))
        fail(lineNo, col, `feature index '${key}' is not a positive integer (in '${tok}')`);
      const index = Number(key);
      if (index < 1) fail(lineNo, col, `feature index ${index} is not >= 1 (LIBSVM indices are 1-based)`);
      const value = Number(valText);
      if (valText.trim() === '' || !Number.isFinite(value)) {
        fail(lineNo, col + colon + 1, `feature value '${valText}' is not a finite number (in '${tok}')`);
      }
      if (options.features !== undefined && index > options.features) {
        fail(lineNo, col, `feature index ${index} exceeds the declared ${options.features} features`);
      }
      row.push({ index, value, col });
    }
    row.sort((a, b) => a.index - b.index);
    for (let k = 1; k < row.length; k++) {
      if (row[k].index === row[k - 1].index) {
        fail(lineNo, Math.max(row[k].col, row[k - 1].col), `feature index ${row[k].index} appears twice`);
      }
    }
    for (const e of row) {
      if (e.value === 0) continue;
      indices.push(e.index - 1);
      values.push(e.value);
      if (e.index > maxIndex) maxIndex = e.index;
    }
    labels.push(label);
    indptr.push(indices.length);
  }
  const cols = options.features ?? maxIndex;
  return {
    file,
    labels: Float64Array.from(labels),
    features: {
      rows: labels.length,
      cols,
      indptr: Int32Array.from(indptr),
      indices: Int32Array.from(indices),
      values: Float32Array.from(values),
    },
  };
}

/** Reads a LIBSVM file (plain text or gzip); see {@link parseLibsvm}. */
export function readLibsvm(file: string, options: LibsvmReadOptions = {}): LibsvmData {
  if (!existsSync(file)) throw new DataError(`${file}: LIBSVM file not found`, file);
  let bytes: Uint8Array = new Uint8Array(readFileSync(file));
  if (isGzip(bytes)) {
    const z = gunzip(bytes, file);
    if (!z.complete) throw new DataError(`${file}: gzip stream is truncated`, file);
    bytes = z.bytes;
  }
  return parseLibsvm(new TextDecoder('utf-8').decode(bytes), file, options);
}

/**
 * Maps written labels to class indices 0..k−1 in ascending label order (−1/+1 → 0/1; 1..k → 0..k−1).
 * Labels are collected from all the given sets, so train and validation share one mapping.
 */
export function labelsToClasses(...sets: readonly ArrayLike<number>[]): {
  /** Number of distinct labels k. */
  classes: number;
  /** The distinct labels, ascending (class i is values[i]). */
  values: readonly number[];
  /** Maps labels to class indices 0..k−1. */
  map: (labels: ArrayLike<number>) => Int32Array;
} {
  const distinct = new Set<number>();
  for (const s of sets) for (let i = 0; i < s.length; i++) distinct.add(s[i]);
  const values = [...distinct].sort((a, b) => a - b);
  const lookup = new Map(values.map((v, i) => [v, i]));
  return {
    classes: values.length,
    values,
    map: (labels) => Int32Array.from({ length: labels.length }, (_, i) => lookup.get(labels[i]) ?? -1),
  };
}

/** The rows `rows` of a CSR matrix, in that order, as a new CSR matrix. */
export function csrSelectRows(m: CsrMatrix, rows: ArrayLike<number>): CsrMatrix {
  let nnz = 0;
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    if (r < 0 || r >= m.rows) throw new RangeError(`csrSelectRows: row ${r} is outside 0..${m.rows - 1}`);
    nnz += m.indptr[r + 1] - m.indptr[r];
  }
  const indptr = new Int32Array(rows.length + 1);
  const indices = new Int32Array(nnz);
  const values = new Float32Array(nnz);
  let o = 0;
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    const a = m.indptr[r];
    const b = m.indptr[r + 1];
    indices.set(m.indices.subarray(a, b), o);
    values.set(m.values.subarray(a, b), o);
    o += b - a;
    indptr[i + 1] = o;
  }
  return { rows: rows.length, cols: m.cols, indptr, indices, values };
}

/** A dense row-major copy (for tests and small data). */
export function csrToDense(m: CsrMatrix): Float32Array {
  const out = new Float32Array(m.rows * m.cols);
  for (let r = 0; r < m.rows; r++) {
    for (let k = m.indptr[r]; k < m.indptr[r + 1]; k++) out[r * m.cols + m.indices[k]] = m.values[k];
  }
  return out;
}

/** The CSR form of a dense row-major matrix (zeros dropped). */
export function denseToCsr(data: ArrayLike<number>, rows: number, cols: number): CsrMatrix {
  const indptr = new Int32Array(rows + 1);
  const indices: number[] = [];
  const values: number[] = [];
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = data[r * cols + c];
      if (v !== 0) {
        indices.push(c);
        values.push(v);
      }
    }
    indptr[r + 1] = indices.length;
  }
  return { rows, cols, indptr, indices: Int32Array.from(indices), values: Float32Array.from(values) };
}
