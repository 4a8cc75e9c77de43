/**
 * Arrays handed from a Bilevel worker to its PyTorch twin: a folder with `index.json` (name, dtype, shape and
 * file of each array) and one raw little-endian file per array. `torch/common.py` reads it.
 */
import * as fs from 'fs';
import * as path from 'path';

export interface ArrayEntry {
  readonly name: string;
  readonly dtype: 'float32' | 'float64' | 'int32';
  readonly shape: readonly number[];
  readonly data: Float32Array | Float64Array | Int32Array;
}

export interface ArrayIndexEntry {
  readonly name: string;
  readonly dtype: ArrayEntry['dtype'];
  readonly shape: readonly number[];
  readonly file: string;
}

/** Writes the arrays into `dir` (created), with their index. */
export function writeArrays(dir: string, arrays: readonly ArrayEntry[]): void {
  fs.mkdirSync(dir, { recursive: true });
  const index: ArrayIndexEntry[] = arrays.map((a, i) => {
    const size = a.shape.reduce((p, d) => p * d, 1);
    if (size !== a.data.length) throw new Error(`array '${a.name}': shape [${a.shape.join(', ')}] but ${a.data.length} values`);
    const file = `${i}.bin`;
    fs.writeFileSync(path.join(dir, file), Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength));
    return { name: a.name, dtype: a.dtype, shape: [...a.shape], file };
  });
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({ littleEndian: true, arrays: index }));
}
