import { DataError } from '@bilevel/core';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { encodeIdx, parseIdx, readIdx, type IdxDtype } from './index';
import { TemporaryFolders } from '@bilevel/core/testing';

const temps = new TemporaryFolders();
afterAll(() => temps.removeAll());

const dir = temps.make('bilevel-idx-');
function write(name: string, bytes: Uint8Array): string {
  const f = join(dir, name);
  writeFileSync(f, bytes);
  return f;
}

/** Hand-written big-endian header, independent of encodeIdx. */
function header(code: number, dims: number[]): number[] {
  const out = [0, 0, code, dims.length];
  for (const d of dims) out.push((d >>> 24) & 255, (d >>> 16) & 255, (d >>> 8) & 255, d & 255);
  return out;
}

describe('readIdx', () => {
  it('reads a hand-built uint8 file, raw and gzip-compressed', () => {
    const bytes = Uint8Array.from([
      ...header(0x08, [2, 2, 3]),
      ...[0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255],
    ]);
    for (const f of [
      write('a.idx', bytes),
      write('a.idx.gz', gzipSync(bytes)),
      write('noext', gzipSync(bytes)),
    ]) {
      const r = readIdx(f);
      expect(r.dtype).toBe('uint8');
      expect(r.dims).toEqual([2, 2, 3]);
      expect(Array.from(r.data)).toEqual([0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255]);
    }
  });

  it('decodes big-endian int32 and float64 values', () => {
    // 0x00000102 = 258 and 0xFFFFFFFE = -2; 1.5 as float64 is 3F F8 00 ... 00.
    const ints = Uint8Array.from([...header(0x0c, [2]), 0, 0, 1, 2, 255, 255, 255, 254]);
    expect(Array.from(parseIdx(ints).data)).toEqual([258, -2]);
    const dbl = Uint8Array.from([...header(0x0e, [1]), 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]);
    expect(Array.from(parseIdx(dbl).data)).toEqual([1.5]);
  });

  it('round-trips every element type through encodeIdx', () => {
    const cases: [IdxDtype, number[]][] = [
      ['uint8', [0, 7, 255]],
      ['int8', [-128, 0, 127]],
      ['int16', [-30000, 1, 30000]],
      ['int32', [-2e9, 5, 2e9]],
      ['float32', [0.5, -2.25, 1024]],
      ['float64', [Math.PI, -1e-300, 1e300]],
    ];
    for (const [dtype, values] of cases) {
      const r = parseIdx(encodeIdx(dtype, [3], values));
      expect(r.dtype).toBe(dtype);
      expect(Array.from(r.data)).toEqual(values);
    }
  });

  it('reports a truncated file with the expected and the found byte counts', () => {
    const full = encodeIdx('uint8', [10, 28, 28], new Uint8Array(7840));
    const f = write('trunc.idx', full.subarray(0, 1000));
    expect(() => readIdx(f)).toThrow(DataError);
    expect(() => readIdx(f)).toThrow(
      `${f}: truncated IDX file: header declares 10×28×28 uint8, so expected 7856 bytes (16 header + 7840 data), found 1000`,
    );
    const g = write('trunc.idx.gz', gzipSync(full.subarray(0, 1000)));
    expect(() => readIdx(g)).toThrow(/expected 7856 bytes .* found 1000/);
  });

  it('reports a gzip stream cut short', () => {
    const full = encodeIdx(
      'uint8',
      [100, 28, 28],
      Uint8Array.from({ length: 78400 }, (_, i) => (i * 7919) % 251),
    );
    const z = gzipSync(full);
    const f = write('cut.gz', z.subarray(0, Math.floor(z.length / 2)));
    expect(() => readIdx(f)).toThrow(
      /expected 78416 bytes .*found \d+ after decompressing \(the gzip stream itself ends early\)/,
    );
    const g = write('notail.gz', z.subarray(0, z.length - 4));
    expect(() => readIdx(g)).toThrow(/gzip stream is truncated/);
  });

  it('reports a wrong magic number, an unknown type code, a missing header and trailing bytes', () => {
    expect(() => readIdx(write('magic', Uint8Array.from([1, 2, 8, 1, 0, 0, 0, 0])))).toThrow(
      /magic number 0x01020801 does not start with 0x0000/,
    );
    expect(() => readIdx(write('code', Uint8Array.from([0, 0, 0x0a, 1, 0, 0, 0, 0])))).toThrow(
      /unknown type code 0x0a/,
    );
    expect(() => readIdx(write('short', Uint8Array.from([0, 0])))).toThrow(/only 2 byte\(s\)/);
    expect(() => readIdx(write('hdr', Uint8Array.from([0, 0, 8, 3, 0, 0, 0, 1])))).toThrow(
      /3 dimension\(s\) need 16 header bytes, found 8/,
    );
    const extra = Uint8Array.from([...header(0x08, [2]), 1, 2, 3]);
    expect(() => readIdx(write('extra', extra))).toThrow(
      /trailing bytes: .*expected 10 bytes \(8 header \+ 2 data\), found 11/,
    );
  });

  it('reports corrupt gzip data and a missing file', () => {
    const z = gzipSync(encodeIdx('uint8', [4], [1, 2, 3, 4]));
    const bad = Uint8Array.from(z);
    for (let i = 10; i < bad.length - 8; i++) bad[i] ^= 0xa5;
    expect(() => readIdx(write('bad.gz', bad))).toThrow(DataError);
    expect(() => readIdx(join(dir, 'nope.idx'))).toThrow(/nope\.idx: file not found/);
  });
});
