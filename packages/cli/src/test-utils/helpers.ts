import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { OutputStream } from '../progress';

/** A fresh temporary folder, removed by the returned cleanup. */
export function makeTempDir(prefix = 'bilevel-cli-'): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** An output stream that keeps what is written; `onWrite` sees each chunk. */
export class CaptureStream implements OutputStream {
  text = '';
  constructor(
    readonly isTTY = false,
    private readonly onWrite?: (chunk: string) => void,
  ) {}

  write(chunk: string): boolean {
    this.text += chunk;
    this.onWrite?.(chunk);
    return true;
  }
}

/** Parses a CSV written by the recorder (no quoted cells in numeric files). */
export function readCsv(file: string): { header: string[]; rows: Record<string, string>[] } {
  const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
  const header = lines[0].split(',');
  const rows = lines.slice(1).map((line) => {
    const cells = line.split(',');
    const row: Record<string, string> = {};
    header.forEach((h, i) => {
      row[h] = cells[i] ?? '';
    });
    return row;
  });
  return { header, rows };
}

export function readJsonl(file: string): Record<string, unknown>[] {
  return fs
    .readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .filter((l) => l)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** A small experiment on the test plugins (see test-plugins.ts). */
export function tinyConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'tiny',
    problem: { name: 'test-quadratic', options: { dimension: 5 } },
    methods: [
      { label: 'exact', innerSolver: 'test-gd', estimator: 'test-closed-form', outerOptimizer: { name: 'gd', options: { learningRate: 0.2 } } },
      {
        label: 'half <step>',
        innerSolver: { name: 'test-gd', options: { iterations: 10 } },
        estimator: { name: 'test-closed-form', options: { scale: 0.5 } },
        outerOptimizer: { name: 'gd', options: { learningRate: 0.2 } },
      },
    ],
    trainer: { steps: 12, evalEvery: 4 },
    seeds: [0],
    // Small charts: pngjs is slow inside jest's sandbox.
    output: { pixelRatio: 1, width: 400, height: 250 },
    ...overrides,
  };
}
