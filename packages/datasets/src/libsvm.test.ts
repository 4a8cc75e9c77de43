import { DataError } from '@bilevel/core';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { csrSelectRows, csrToDense, denseToCsr, labelsToClasses, parseLibsvm, readLibsvm } from './index';
import { TemporaryFolders } from '@bilevel/core/testing';

const temps = new TemporaryFolders();
afterAll(() => temps.removeAll());

const dir = temps.make('bilevel-libsvm-');

describe('LIBSVM reader', () => {
  const text = [
    '+1 1:0.5 3:2',
    '# a comment line',
    '',
    '-1 2:1.25 4:-3 # trailing comment',
    '+1 qid:7 4:1 1:1',
    '-1',
  ].join('\n');

  it('parses labels and 1-based features into CSR form', () => {
    const d = parseLibsvm(text);
    expect(Array.from(d.labels)).toEqual([1, -1, 1, -1]);
    const m = d.features;
    expect([m.rows, m.cols]).toEqual([4, 4]);
    expect(Array.from(m.indptr)).toEqual([0, 2, 4, 6, 6]);
    expect(Array.from(m.indices)).toEqual([0, 2, 1, 3, 0, 3]);
    expect(Array.from(m.values)).toEqual([0.5, 2, 1.25, -3, 1, 1]);
    expect(Array.from(csrToDense(m))).toEqual([0.5, 0, 2, 0, 0, 1.25, 0, -3, 1, 0, 0, 1, 0, 0, 0, 0]);
  });

  it('reads plain and gzip files and honours a declared feature count', () => {
    const f = join(dir, 'a.txt');
    writeFileSync(f, text);
    writeFileSync(`${f}.gz`, gzipSync(Buffer.from(text)));
    expect(readLibsvm(f, { features: 10 }).features.cols).toBe(10);
    expect(Array.from(readLibsvm(`${f}.gz`).features.values)).toEqual([0.5, 2, 1.25, -3, 1, 1]);
    expect(() => readLibsvm(f, { features: 3 })).toThrow(
      /line 4, column 11: feature index 4 exceeds the declared 3 features/,
    );
  });

  it('names the line and column of a malformed token', () => {
    const cases: [string, RegExp][] = [
      ['1 1:1\n2 3:x', /line 2, column 5: feature value 'x' is not a finite number/],
      ['1 1:1\n1 1:1 abc', /line 2, column 7: expected 'index:value', found 'abc'/],
      ['1 0:1', /line 1, column 3: feature index 0 is not >= 1 \(LIBSVM indices are 1-based\)/],
      ['1 a:1', /line 1, column 3: feature index 'a' is not a positive integer/],
      ['x 1:1', /line 1, column 1: expected a numeric label, found 'x'/],
      ['  1 2:1 2:3', /line 1, column 9: feature index 2 appears twice/],
      ['1 1:', /line 1, column 3: expected 'index:value', found '1:'/],
    ];
    for (const [src, re] of cases) {
      expect(() => parseLibsvm(src, 'bad.svm')).toThrow(DataError);
      expect(() => parseLibsvm(src, 'bad.svm')).toThrow(re);
    }
    expect(() => parseLibsvm('1 1:1\n2 3:x', 'bad.svm')).toThrow(/^bad\.svm: line 2/);
  });

  it('maps written labels to classes shared by several sets', () => {
    const { classes, values, map } = labelsToClasses([3, -1], [7, 3]);
    expect(classes).toBe(3);
    expect(values).toEqual([-1, 3, 7]);
    expect(Array.from(map([7, -1, 3]))).toEqual([2, 0, 1]);
  });

  it('selects rows and converts dense matrices', () => {
    const dense = [0, 1, 0, 2, 0, 0, 3, 4, 0];
    const m = denseToCsr(dense, 3, 3);
    expect(Array.from(csrToDense(m))).toEqual(dense);
    const sub = csrSelectRows(m, [2, 0]);
    expect(Array.from(csrToDense(sub))).toEqual([3, 4, 0, 0, 1, 0]);
    expect(() => csrSelectRows(m, [3])).toThrow(/row 3 is outside 0\.\.2/);
  });

  it('reports a missing file', () => {
    expect(() => readLibsvm(join(dir, 'none.svm'))).toThrow(/none\.svm: LIBSVM file not found/);
  });
});
