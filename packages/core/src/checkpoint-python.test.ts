/**
 * Checkpoints read outside this library: a checkpoint written by `writeCheckpoint` is read, tensor for tensor,
 * by test/read_safetensors.py — a reader written from the published safetensors format with only the Python
 * standard library and numpy, sharing no code with the writer. Skipped (with a message) when python3 or numpy
 * is missing, unless BILEVEL_REQUIRE_NUMPY=1 (CI installs python3-numpy), where that is a failure.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { writeCheckpoint } from './checkpoint';
import { QuadraticFixture } from './testing';
import { Float32Values, type TreeData } from './tree';
import { SPECIAL_BITS, adamTrainer, fromBits } from './test-utils/checkpoint-fixtures';

const READER = path.join(__dirname, '..', 'test', 'read_safetensors.py');

/** Why the Python reader cannot run here (null: it can). Throws under BILEVEL_REQUIRE_NUMPY=1 instead. */
function numpySkipReason(): string | null {
  const probe = spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' });
  if (probe.status === 0) return null;
  const why = (probe.error?.message ?? probe.stderr ?? '').trim();
  const reason = `python3 with numpy is not available (apt-get install python3-numpy): the Python reader tests are skipped (${why})`;
  if (process.env.BILEVEL_REQUIRE_NUMPY === '1') throw new Error(`BILEVEL_REQUIRE_NUMPY=1 but ${reason}`);
  return reason;
}

const skipReason = numpySkipReason();
if (skipReason) console.warn(skipReason);

/** What the reader prints for one tensor. */
interface PythonTensor {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
  values: unknown[];
  bits?: unknown[];
}

/** What the reader prints for a file. */
interface PythonResult {
  header_bytes: number;
  metadata: Record<string, string>;
  data_sha256: string;
  header_sha256: string;
  tensors: Record<string, PythonTensor>;
}

/** Runs the reader on a file: its JSON, or its exit status and message. */
function readInPython(file: string): { status: number | null; result?: PythonResult; stderr: string } {
  const run = spawnSync('python3', [READER, file], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (run.error) throw run.error;
  return {
    status: run.status,
    result: run.status === 0 ? (JSON.parse(run.stdout) as PythonResult) : undefined,
    stderr: run.stderr,
  };
}

/** A float as the reader writes it: a number, or "NaN", "Infinity", "-Infinity", "-0". */
function floatJson(v: number): number | string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return 'Infinity';
  if (v === -Infinity) return '-Infinity';
  if (Object.is(v, -0)) return '-0';
  return v;
}

type Source =
  | Float32Array
  | Float64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

/** What the reader should print for a tensor of `dtype` and `shape` holding `data` (from the TypeScript side). */
function expected(dtype: string, shape: number[], data: Source): Omit<PythonTensor, 'data_offsets'> {
  if (dtype === 'F32') {
    const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
    return { dtype, shape, values: Array.from(data as Float32Array, floatJson), bits: Array.from(bits) };
  }
  if (dtype === 'F64') {
    const bits = new BigUint64Array(data.buffer, data.byteOffset, data.length);
    return {
      dtype,
      shape,
      values: Array.from(data as Float64Array, floatJson),
      bits: Array.from(bits, String),
    };
  }
  if (dtype === 'I64' || dtype === 'U64')
    return { dtype, shape, values: Array.from(data as BigInt64Array, String) };
  return { dtype, shape, values: Array.from(data as Int32Array) };
}

/** An 8-byte little-endian length, the header text, the data: a file made by hand from the format. */
function handMade(file: string, header: string, data: Buffer): void {
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(header)));
  fs.writeFileSync(file, Buffer.concat([length, Buffer.from(header), data]));
}

(skipReason ? describe.skip : describe)('checkpoints read by a numpy-only safetensors reader', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bilevel-ckpt-py-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('the reader follows the format: a file made by hand is read, and broken rules are refused', () => {
    const f = path.join(dir, 'hand.safetensors');
    // Two I32 entries rows of 2, then one F32 scalar: data_offsets relative to the byte buffer.
    const data = Buffer.alloc(20);
    [1, -2, 3, 2147483647].forEach((v, i) => data.writeInt32LE(v, 4 * i));
    data.writeFloatLE(-0.5, 16);
    handMade(
      f,
      '{"__metadata__":{"k":"v"},"s":{"dtype":"F32","shape":[],"data_offsets":[16,20]},"m":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}   ',
      data,
    );
    const ok = readInPython(f);
    expect(ok.stderr).toBe('');
    expect(ok.result?.metadata).toEqual({ k: 'v' });
    expect(ok.result?.tensors).toEqual({
      m: { dtype: 'I32', shape: [2, 2], data_offsets: [0, 16], values: [1, -2, 3, 2147483647] },
      s: { dtype: 'F32', shape: [], data_offsets: [16, 20], values: [-0.5], bits: [0xbf000000] },
    });

    const refused: [string, string, Buffer, RegExp][] = [
      [
        'a gap',
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
        Buffer.alloc(8),
        /gap or an overlap/,
      ],
      [
        'a trailing byte',
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        Buffer.alloc(5),
        /cover 4 of the 5 bytes/,
      ],
      [
        'a wrong span',
        '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}',
        Buffer.alloc(4),
        /4 bytes for 2 entries/,
      ],
      [
        'a duplicate key',
        '{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}',
        Buffer.alloc(0),
        /duplicate key/,
      ],
      ['a number in the metadata', '{"__metadata__":{"k":1}}', Buffer.alloc(0), /not a string/],
      ['a header not starting with {', ' {}', Buffer.alloc(0), /does not begin with/],
    ];
    for (const [what, header, bytes, message] of refused) {
      handMade(f, header, bytes);
      const run = readInPython(f);
      expect([what, run.status, run.stderr]).toEqual([what, 2, expect.stringMatching(message)]);
    }
  });

  it('reads every tensor of a checkpoint (a trainer with Adam, many dtypes, odd shapes, empty, NaN/±∞/−0) as written', () => {
    const tensors = tf.memory().numTensors;
    const problem = new QuadraticFixture({ innerDimension: 6, conditionNumber: 4, seed: 2 });
    const trainer = adamTrainer(problem);
    for (let i = 0; i < 3; i++) trainer.stepOnce();
    const real = trainer.getState();
    const opt = real.optimizer as { m: TreeData; v: TreeData };
    // A learned "backbone" beside the problem's x, with every special float32.
    const kernel = fromBits(SPECIAL_BITS);
    const f64 = new Float64Array([
      Math.PI,
      -0,
      NaN,
      Infinity,
      -Infinity,
      Number.MIN_VALUE,
      -Number.MAX_VALUE,
      0.1,
    ]);
    const extra = {
      rows: 3,
      f64,
      i8: new Int8Array([-128, 127, 0, -1, 5]),
      u8: new Uint8Array([0, 255, 7]),
      i16: new Int16Array([-32768, 32767, 3]),
      u16: new Uint16Array([65535, 0]),
      i32: new Int32Array([-2147483648, 2147483647, -7]),
      u32: new Uint32Array([4294967295, 1, 2]),
      i64: new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 2n ** 53n + 1n]),
      u64: new BigUint64Array([2n ** 64n - 1n, 0n]),
      order: Array.from({ length: 100 }, (_, i) => (i * 37) % 100),
      empty: { shape: [2, 0, 3], values: new Float32Values(0) },
      scalar: { shape: [], values: fromBits([0xffc00123]) },
      odd: {
        shape: [1, 3, 1, 5, 1],
        values: Float32Values.from(Array.from({ length: 15 }, (_, i) => Math.fround(i / 3 - 2))),
      },
    };
    const state = {
      ...real,
      x: { ...real.x, 'backbone/conv1/kernel': { shape: [3, 1, 2, 2], values: kernel } },
    };
    const file = writeCheckpoint(dir, { trainer: state, extra, savedAt: 'now' });
    expect(file).toBe(path.join(dir, 'checkpoint-00000003.safetensors'));

    const run = readInPython(file);
    expect(run.stderr).toBe('');
    const py = run.result!;
    const x = real.x.x;
    const y = real.y.y;
    const want: Record<string, Omit<PythonTensor, 'data_offsets'>> = {
      'outer/x': expected('F32', x.shape, x.values as Float32Array),
      'outer/backbone/conv1/kernel': expected('F32', [3, 1, 2, 2], kernel),
      'inner/y': expected('F32', y.shape, y.values as Float32Array),
      'optimizer/m/x': expected('F32', x.shape, opt.m.x.values as Float32Array),
      'optimizer/v/x': expected('F32', x.shape, opt.v.x.values as Float32Array),
      'extra/f64': expected('F64', [8], f64),
      'extra/i8': expected('I8', [5], extra.i8),
      'extra/u8': expected('U8', [3], extra.u8),
      'extra/i16': expected('I16', [3], extra.i16),
      'extra/u16': expected('U16', [2], extra.u16),
      'extra/i32': expected('I32', [3], extra.i32),
      'extra/u32': expected('U32', [3], extra.u32),
      'extra/i64': expected('I64', [3], extra.i64),
      'extra/u64': expected('U64', [2], extra.u64),
      'extra/order': expected('I32', [100], Int32Array.from(extra.order)),
      'extra/empty': expected('F32', [2, 0, 3], extra.empty.values),
      'extra/scalar': expected('F32', [], extra.scalar.values),
      'extra/odd': expected('F32', [1, 3, 1, 5, 1], extra.odd.values),
    };
    expect(Object.keys(py.tensors).sort()).toEqual(Object.keys(want).sort());
    for (const name of Object.keys(want)) {
      const { data_offsets: _offsets, ...got } = py.tensors[name];
      expect([name, got]).toEqual([name, want[name]]);
    }
    // Spot checks of the comparison itself: the special float32s and 64-bit integers as numpy sees them.
    expect(py.tensors['outer/backbone/conv1/kernel'].values.slice(0, 2)).toEqual([0, '-0']);
    expect(py.tensors['outer/backbone/conv1/kernel'].values.slice(6, 10)).toEqual([
      'Infinity',
      '-Infinity',
      'NaN',
      'NaN',
    ]);
    expect(py.tensors['outer/backbone/conv1/kernel'].bits?.[9]).toBe(0x7fa00001);
    expect(py.tensors['extra/i64'].values).toEqual([
      '-9223372036854775808',
      '9223372036854775807',
      '9007199254740993',
    ]);

    // The metadata: the rest of the state, and checksums Python recomputes from their documented definition.
    expect(py.metadata['bilevel.format']).toBe('bilevel-checkpoint');
    expect(py.metadata['bilevel.version']).toBe('3');
    expect(py.data_sha256).toBe(py.metadata['bilevel.data_sha256']);
    expect(py.header_sha256).toBe(py.metadata['bilevel.header_sha256']);
    const payload = JSON.parse(py.metadata['bilevel.payload']);
    expect(payload.trainer.step).toBe(3);
    expect(payload.trainer.rng).toEqual(real.rng);
    expect(payload.extra.rows).toBe(3);
    expect(py.header_bytes % 8).toBe(0);

    trainer.dispose();
    problem.dispose();
    expect(tf.memory().numTensors).toBe(tensors);
  });
});
