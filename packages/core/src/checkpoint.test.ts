import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  CheckpointError,
  listCheckpoints,
  loadLatestCheckpoint,
  readCheckpoint,
  writeCheckpoint,
  type CheckpointPayload,
} from './checkpoint';
import { zeroCounts } from './oracles';
import { QuadraticFixture } from './testing';
import type { TrainerState } from './trainer';
import { Float32Values, treeDispose, treeFromData, treeToData, type TreeData } from './tree';
import { SPECIAL_BITS, adamTrainer, fromBits } from './test-utils/checkpoint-fixtures';

function state(step: number): TrainerState {
  return {
    step,
    elapsedSeconds: step * 0.5,
    x: { x: { shape: [2], values: [step, -step] } },
    y: { y: { shape: [1], values: [0.25] } },
    rng: { s: [1, 2, 3, step], spare: null },
    oracleCalls: zeroCounts(),
  };
}

/** A state whose x is one tensor of `n` entries (i/7 − 3): enough to have a binary section. */
function bigState(step: number, n = 1000): TrainerState {
  const values = new Float32Values(n);
  for (let i = 0; i < n; i++) values[i] = i / 7 - 3;
  return { ...state(step), x: { w: { shape: [n], values } } };
}

/** The float32 bit patterns of an array, as unsigned integers. */
function bits(a: Float32Array | number[]): number[] {
  const f = a instanceof Float32Array ? a : Float32Array.from(a);
  return Array.from(new Uint32Array(f.buffer, f.byteOffset, f.length));
}

/** Entries of the tensors of a tree, read back. */
function treeBits(tree: TreeData): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const n of Object.keys(tree)) out[n] = bits(tree[n].values);
  return out;
}

/**
 * A version 2 file written by hand from the documented layout (header line, manifest line, raw little-endian
 * data), independently of the writer.
 */
function handWritten(file: string, manifest: unknown, data: Buffer, version = 2): void {
  const payload = Buffer.concat([Buffer.from(`${JSON.stringify(manifest)}\n`), data]);
  const sha256 = createHash('sha256').update(payload).digest('hex');
  const header = JSON.stringify({ format: 'bilevel-checkpoint', version, bytes: payload.length, sha256 });
  fs.writeFileSync(file, Buffer.concat([Buffer.from(`${header}\n`), payload]));
}

/** A version 2 checkpoint written by the version 2 writer (`writeCheckpoint` before version 3); see {@link v2FixturePayload}. */
const V2_FIXTURE = path.join(__dirname, '..', 'test', 'fixtures', 'checkpoint-00000003.ckpt');

/** Float32Values with entries f(0), …, f(n − 1). */
function f32(n: number, f: (i: number) => number): Float32Values {
  const v = new Float32Values(n);
  for (let i = 0; i < n; i++) v[i] = f(i);
  return v;
}

/** What {@link V2_FIXTURE} holds: a learned "backbone" x, y, Adam moments, a minibatch sampler's order. */
function v2FixturePayload(): CheckpointPayload {
  const kernel = (f: (i: number) => number) => ({ shape: [2, 2, 1, 3], values: f32(12, f) });
  return {
    trainer: {
      step: 3,
      elapsedSeconds: 1.5,
      x: {
        'backbone/conv1/kernel': kernel((i) => i / 7 - 1),
        'head/bias': { shape: [3], values: fromBits([0x80000000, 0x7fa00001, 0x00000001]) },
      },
      y: { w: { shape: [2, 3], values: f32(6, (i) => i * 0.25 - 0.5) } },
      rng: { s: [1, 2, 3, 4], spare: 0.125 },
      consecutiveSkips: 0,
      oracleCalls: zeroCounts(),
      optimizer: {
        t: 3,
        lrScale: 1,
        m: {
          'backbone/conv1/kernel': kernel((i) => -i / 3),
          'head/bias': { shape: [3], values: f32(3, (i) => i) },
        },
        v: {
          'backbone/conv1/kernel': kernel((i) => i * i),
          'head/bias': { shape: [3], values: f32(3, () => Infinity) },
        },
      },
      estimator: { warmStart: null },
      problem: {
        innerSampler: {
          epoch: 1,
          position: 5,
          order: Array.from({ length: 100 }, (_, i) => 99 - i),
          rng: { s: [5, 6, 7, 8], spare: null },
        },
        outerSampler: null,
      },
    },
    extra: { rows: 3, note: 'fixture' },
    savedAt: '2026-12-06T00:00:00.000Z',
  };
}

/**
 * A payload as comparable data: every typed array as its type name and its entries' bit patterns (so −0 and
 * NaN payloads count), plain arrays and objects as they are.
 */
function comparable(value: unknown): unknown {
  if (ArrayBuffer.isView(value)) {
    const a = value as unknown as {
      constructor: { name: string };
      buffer: ArrayBuffer;
      byteOffset: number;
      byteLength: number;
    };
    return { [a.constructor.name]: Array.from(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)) };
  }
  if (Array.isArray(value)) return value.map(comparable);
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : Number.isNaN(value) ? 'NaN' : value;
  if (value && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, comparable(v)]));
  return value;
}

/** A tensor entry of a safetensors header. */
interface SafetensorsInfo {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/**
 * A safetensors file taken apart by the published layout (8-byte little-endian header length N, N bytes of JSON
 * header, the byte buffer), independently of the writer.
 */
function parseSafetensors(bytes: Buffer): {
  n: number;
  headerText: string;
  meta: Record<string, string>;
  info: Record<string, SafetensorsInfo>;
  names: string[];
  dataStart: number;
} {
  const n = Number(bytes.readBigUInt64LE(0));
  const headerText = bytes.subarray(8, 8 + n).toString('utf8');
  const header = JSON.parse(headerText) as Record<string, unknown>;
  const { __metadata__: meta, ...info } = header;
  return {
    n,
    headerText,
    meta: meta as Record<string, string>,
    info: info as Record<string, SafetensorsInfo>,
    names: Object.keys(info),
    dataStart: 8 + n,
  };
}

/**
 * Rewrites a version 3 file's header (and data) with `change`, with both checksums recomputed from the
 * documented rules (data: SHA-256 of the byte buffer; header: SHA-256 of the header with its own digits as
 * zeros, then padded with spaces to a multiple of 8): a file that passes the checksums but breaks another rule.
 */
function rewriteSafetensors(
  file: string,
  change: (header: Record<string, unknown>, meta: Record<string, string>, data: Buffer) => Buffer | void,
): void {
  const bytes = fs.readFileSync(file);
  const { meta, dataStart, headerText } = parseSafetensors(bytes);
  const header = JSON.parse(headerText) as Record<string, unknown>;
  let data: Buffer = Buffer.from(bytes.subarray(dataStart));
  data = change(header, meta, data) ?? data;
  meta['bilevel.data_sha256'] = createHash('sha256').update(data).digest('hex');
  meta['bilevel.header_sha256'] = '0'.repeat(64);
  header.__metadata__ = meta;
  let text = JSON.stringify(header);
  text += ' '.repeat((8 - (Buffer.byteLength(text) % 8)) % 8);
  const sha = createHash('sha256').update(text).digest('hex');
  text = text.replace(`"bilevel.header_sha256":"${'0'.repeat(64)}"`, `"bilevel.header_sha256":"${sha}"`);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(text)));
  fs.writeFileSync(file, Buffer.concat([length, Buffer.from(text), data]));
}

describe('checkpoint files', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bilevel-ckpt-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('round-trips and keeps only the newest files', () => {
    for (const s of [5, 10, 15])
      writeCheckpoint(dir, { trainer: state(s), extra: { rows: s }, savedAt: 'now' });
    const files = listCheckpoints(dir).map((f) => path.basename(f));
    expect(files).toEqual(['checkpoint-00000010.safetensors', 'checkpoint-00000015.safetensors']);
    const p = readCheckpoint(path.join(dir, files[1]));
    expect(p.trainer.x.x.values).toEqual([15, -15]);
    expect(p.extra).toEqual({ rows: 15 });
    expect(fs.readdirSync(dir).some((f) => f.includes('.tmp'))).toBe(false);
  });

  it('detects a file cut short and falls back to the previous checkpoint', () => {
    writeCheckpoint(dir, { trainer: state(10), savedAt: 'a' });
    const last = writeCheckpoint(dir, { trainer: state(20), savedAt: 'b' });
    const full = fs.readFileSync(last);
    fs.writeFileSync(last, full.subarray(0, full.length - 7));
    expect(() => readCheckpoint(last)).toThrow(/cut short/);
    const seen: CheckpointError[] = [];
    const found = loadLatestCheckpoint(dir, { onInvalid: (e) => seen.push(e) });
    expect(found?.payload.trainer.step).toBe(10);
    expect(seen).toHaveLength(1);
    expect(seen[0].file).toBe(last);
  });

  it('detects corruption by checksum and a missing header', () => {
    const f = writeCheckpoint(dir, { trainer: state(3), savedAt: 'a' });
    // x = [3, -3] is the tensor outer/x: its first entry becomes 4.
    const bytes = fs.readFileSync(f);
    const { info, dataStart } = parseSafetensors(bytes);
    const at = dataStart + info['outer/x'].data_offsets[0];
    expect(bytes.readFloatLE(at)).toBe(3);
    bytes.writeFloatLE(4, at);
    fs.writeFileSync(f, bytes);
    expect(() => readCheckpoint(f)).toThrow(/checksum mismatch/);
    fs.writeFileSync(f, '{"trainer"');
    expect(() => readCheckpoint(f)).toThrow(/no header line/);
    expect(loadLatestCheckpoint(dir)).toBeNull();
  });

  it('stores tensor entries as raw float32 in the safetensors layout, with the rest and the checksums in its metadata', () => {
    const f = writeCheckpoint(dir, { trainer: bigState(4, 1000), savedAt: 'a' });
    expect(path.basename(f)).toBe('checkpoint-00000004.safetensors');
    const bytes = fs.readFileSync(f);
    const { n, headerText, meta, info, names, dataStart } = parseSafetensors(bytes);
    // The header starts with '{', is padded with spaces, and the byte buffer starts at a multiple of 8.
    expect(headerText[0]).toBe('{');
    expect((8 + n) % 8).toBe(0);
    expect(headerText.trimEnd()).toBe(JSON.stringify(JSON.parse(headerText)));
    expect(/^ *$/.test(headerText.slice(headerText.trimEnd().length))).toBe(true);
    // Metadata values are strings only (the specification's rule).
    expect(Object.values(meta).every((v) => typeof v === 'string')).toBe(true);
    expect(meta['bilevel.format']).toBe('bilevel-checkpoint');
    expect(meta['bilevel.version']).toBe('3');
    expect(names).toEqual(['outer/w', 'inner/y']);
    expect(info['outer/w']).toEqual({ dtype: 'F32', shape: [1000], data_offsets: [0, 4000] });
    expect(info['inner/y']).toEqual({ dtype: 'F32', shape: [1], data_offsets: [4000, 4004] });
    expect(JSON.parse(meta['bilevel.tensors'])).toEqual([
      { path: ['trainer', 'x', 'w', 'values'], name: 'outer/w', kind: 'tree' },
      { path: ['trainer', 'y', 'y', 'values'], name: 'inner/y', kind: 'array' },
    ]);
    const payload = JSON.parse(meta['bilevel.payload']);
    expect(payload.trainer.x.w).toEqual({ shape: [1000], values: null });
    expect(payload.trainer.rng).toEqual(state(4).rng);
    // The byte buffer is the entries, little-endian, and nothing else.
    const data = bytes.subarray(dataStart);
    expect(data.length).toBe(4004);
    for (const i of [0, 1, 500, 999]) expect(data.readFloatLE(4 * i)).toBe(Math.fround(i / 7 - 3));
    expect(data.readFloatLE(4000)).toBe(0.25);
    // The checksums: of the byte buffer, and of the header with the header checksum's digits as zeros.
    expect(meta['bilevel.data_sha256']).toBe(createHash('sha256').update(data).digest('hex'));
    const zeroed = headerText.replace(meta['bilevel.header_sha256'], '0'.repeat(64));
    expect(meta['bilevel.header_sha256']).toBe(createHash('sha256').update(zeroed).digest('hex'));
  });

  it('keeps the exact float32 bits of a trainer state with Adam moments (±0, subnormals, ±max, ±∞, NaNs)', () => {
    const tensors = tf.memory().numTensors;
    const problem = new QuadraticFixture({
      innerDimension: SPECIAL_BITS.length,
      conditionNumber: 4,
      seed: 2,
    });
    const a = adamTrainer(problem);
    const b = adamTrainer(problem);
    for (let i = 0; i < 3; i++) a.stepOnce();
    const real = a.getState();
    const opt = real.optimizer as { t: number; lrScale: number; m: TreeData; v: TreeData };
    expect(opt.t).toBe(3);
    const special = fromBits(SPECIAL_BITS);
    const reversed = fromBits([...SPECIAL_BITS].reverse());
    const saved: TrainerState = {
      ...real,
      x: { x: { shape: [SPECIAL_BITS.length], values: special } },
      optimizer: { ...opt, m: { x: { shape: [SPECIAL_BITS.length], values: reversed } } },
    };
    const file = writeCheckpoint(dir, { trainer: saved, extra: { note: 'adam' }, savedAt: 'a' });
    const back = readCheckpoint(file).trainer;
    expect(back.x.x.values).toBeInstanceOf(Float32Values);
    expect(bits(back.x.x.values)).toEqual(SPECIAL_BITS);
    const backOpt = back.optimizer as typeof opt;
    expect(bits(backOpt.m.x.values)).toEqual([...SPECIAL_BITS].reverse());
    // The real second moments and y, bit for bit; the rest as it was.
    expect(treeBits(backOpt.v)).toEqual(treeBits(opt.v));
    expect(treeBits(back.y)).toEqual(treeBits(real.y));
    expect({ ...backOpt, m: null, v: null }).toEqual({ ...opt, m: null, v: null });
    expect(back.rng).toEqual(real.rng);
    expect(back.oracleCalls).toEqual(real.oracleCalls);
    expect([back.step, back.elapsedSeconds]).toEqual([real.step, real.elapsedSeconds]);

    // Through the tensors of another trainer and back: still the same bits.
    b.setState(back);
    const again = b.getState();
    expect(bits(again.x.x.values)).toEqual(SPECIAL_BITS);
    expect(bits((again.optimizer as typeof opt).m.x.values)).toEqual([...SPECIAL_BITS].reverse());
    expect(treeBits((again.optimizer as typeof opt).v)).toEqual(treeBits(opt.v));
    a.dispose();
    b.dispose();
    problem.dispose();
    expect(tf.memory().numTensors).toBe(tensors);
  });

  it('resumes an Adam run from a checkpoint file exactly', () => {
    const tensors = tf.memory().numTensors;
    const problem = new QuadraticFixture({ innerDimension: 7, conditionNumber: 6, seed: 5 });
    const a = adamTrainer(problem);
    const b = adamTrainer(problem);
    for (let i = 0; i < 4; i++) a.stepOnce();
    writeCheckpoint(dir, { trainer: a.getState(), savedAt: 'a' });
    const found = loadLatestCheckpoint(dir);
    b.setState(found!.payload.trainer);
    for (let i = 0; i < 5; i++) {
      const ea = a.stepOnce();
      const eb = b.stepOnce();
      expect(eb.outerLoss).toBe(ea.outerLoss);
      expect(eb.hypergradientNorm).toBe(ea.hypergradientNorm);
    }
    expect(bits(b.x.x.dataSync() as Float32Array)).toEqual(bits(a.x.x.dataSync() as Float32Array));
    expect(b.getState().optimizer).toEqual(a.getState().optimizer);
    a.dispose();
    b.dispose();
    problem.dispose();
    expect(tf.memory().numTensors).toBe(tensors);
  });

  it('detects a cut or a flipped byte anywhere in a binary file and falls back to the previous one', () => {
    writeCheckpoint(dir, { trainer: bigState(10), savedAt: 'a' }, { keep: 5 });
    const last = writeCheckpoint(dir, { trainer: bigState(20), savedAt: 'b' }, { keep: 5 });
    const good = fs.readFileSync(last);
    const { dataStart, headerText } = parseSafetensors(good);
    // Where the header's checksum digits are, and the last byte of the header's JSON (before the padding).
    const digits = 8 + Buffer.from(headerText).indexOf('"bilevel.header_sha256":"') + 25;
    const jsonEnd = 8 + Buffer.byteLength(headerText.trimEnd()) - 1;
    const cases: [string, Buffer, RegExp][] = [
      [
        'cut in the data',
        good.subarray(0, good.length - 1),
        /payload has \d+ bytes, header says \d+ \(file cut short\?\)/,
      ],
      ['cut in the header', good.subarray(0, 8 + 20), /cut short/],
      ['cut in the header length', good.subarray(0, 5), /cut short/],
      ['empty', Buffer.alloc(0), /cut short/],
    ];
    for (const offset of [
      0,
      8 + 5,
      digits,
      digits + 63,
      jsonEnd - 2,
      dataStart,
      good.length - 1,
      Math.floor((dataStart + good.length) / 2),
    ]) {
      const flipped = Buffer.from(good);
      flipped[offset] ^= 0x10;
      cases.push([`byte ${offset} flipped`, flipped, /checksum mismatch \(file corrupted\)/]);
    }
    for (const [what, content, message] of cases) {
      fs.writeFileSync(last, content);
      let error: unknown = null;
      try {
        readCheckpoint(last);
      } catch (e) {
        error = e;
      }
      expect([what, error instanceof CheckpointError, String(error)]).toEqual([
        what,
        true,
        expect.stringMatching(message),
      ]);
      const seen: CheckpointError[] = [];
      const found = loadLatestCheckpoint(dir, { onInvalid: (e) => seen.push(e) });
      expect([what, found?.payload.trainer.step, seen.map((e) => e.file)]).toEqual([what, 10, [last]]);
      expect(seen[0].message).toContain(`checkpoint ${last}: `);
      expect(bits(found!.payload.trainer.x.w.values)).toEqual(bits(bigState(10).x.w.values));
    }
    // A flipped byte in the name of the header's checksum: no checksum to check against.
    const renamed = Buffer.from(good);
    renamed[digits - 5] ^= 0x01;
    fs.writeFileSync(last, renamed);
    expect(() => readCheckpoint(last)).toThrow(
      /has no bilevel.header_sha256 \(not a bilevel checkpoint, or corrupted\)/,
    );
    // A version 2 file whose header claims version 1.
    const v2 = fs.readFileSync(V2_FIXTURE);
    const nl1 = v2.indexOf(0x0a);
    const header = v2.subarray(0, nl1).toString('utf8');
    fs.writeFileSync(
      last,
      Buffer.concat([Buffer.from(header.replace('"version":2', '"version":1')), v2.subarray(nl1)]),
    );
    expect(() => readCheckpoint(last)).toThrow(new CheckpointError(last, 'payload is not valid JSON'));
  });

  it('writes a state of 10,000,000 float32 values in about 4 bytes each and reads every bit back', () => {
    const n = 10_000_000;
    const tensors = tf.memory().numTensors;
    // Arbitrary bit patterns (xorshift32): every kind of float32, NaNs with payloads included.
    const source = new Float32Array(n);
    const raw = new Uint32Array(source.buffer);
    let s = 0x9e3779b9;
    for (let i = 0; i < n; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      raw[i] = s >>> 0;
    }
    const t = tf.tensor(new Float32Array(source), [1000, 10_000], 'float32');
    const x = treeToData({ w: t });
    t.dispose();
    const file = writeCheckpoint(dir, { trainer: { ...state(1), x }, savedAt: 'big' });
    const size = fs.statSync(file).size;
    expect(size).toBeGreaterThanOrEqual(4 * n);
    expect(size).toBeLessThan(5 * n + 4096);
    // Nothing but the entries and a few hundred bytes of header and manifest.
    expect(size - 4 * n).toBeLessThan(1024);

    const back = readCheckpoint(file).trainer.x.w;
    expect(back.shape).toEqual([1000, 10_000]);
    const v = back.values as Float32Array;
    expect(v.length).toBe(n);
    const same = (a: Float32Array, b: Float32Array): boolean =>
      Buffer.compare(
        Buffer.from(a.buffer, a.byteOffset, a.byteLength),
        Buffer.from(b.buffer, b.byteOffset, b.byteLength),
      ) === 0;
    expect(same(v, source)).toBe(true);
    // And as a tensor again.
    const tree = treeFromData({ w: back });
    expect(same(tree.w.dataSync() as Float32Array, source)).toBe(true);
    treeDispose(tree);
    expect(tf.memory().numTensors).toBe(tensors);
  });

  it('stores long and non-JSON number arrays and typed arrays of any plugin state exactly, as they were', () => {
    const order = Array.from({ length: 1000 }, (_, i) => (i * 7919) % 1000);
    const doubles = Array.from({ length: 100 }, (_, i) => 0.1 * i);
    const floats = Array.from({ length: 100 }, (_, i) => Math.fround(i / 3));
    const extra = {
      sampler: { order, epoch: 2 },
      doubles,
      floats,
      short: [1, 2.5, 3],
      nonFinite: [NaN, -0, Infinity, -Infinity, 1],
      mixed: [1, 'two', null, [4, 5]],
      nested: [[...order], { deep: new Int32Array([-1, 2, 2147483647]) }],
      bytes: new Uint8Array([0, 255, 7]),
      f64: new Float64Array([Math.PI, -0, NaN]),
      when: new Date(0),
      empty: [],
      nothing: undefined,
    };
    const f = writeCheckpoint(dir, { trainer: state(1), extra, savedAt: 'a' });
    const { meta, info } = parseSafetensors(fs.readFileSync(f));
    const typeOf: Record<string, string> = { F32: 'float32', F64: 'float64', I32: 'int32', U8: 'uint8' };
    const dtypes = Object.fromEntries(
      (
        JSON.parse(meta['bilevel.tensors']) as {
          path: unknown[];
          name: string;
          kind: string;
          type?: string;
        }[]
      )
        .filter((e) => e.path[0] === 'extra')
        .map((e) => [e.path.slice(1).join('.'), `${e.kind}:${e.type ?? typeOf[info[e.name].dtype]}`]),
    );
    expect(dtypes).toEqual({
      'sampler.order': 'array:int32',
      doubles: 'array:float64',
      floats: 'array:float32',
      nonFinite: 'array:float32',
      'nested.0': 'array:int32',
      'nested.1.deep': 'typed:int32',
      bytes: 'typed:uint8',
      f64: 'typed:float64',
    });
    const back = readCheckpoint(f).extra as typeof extra;
    expect(Array.isArray(back.sampler.order)).toBe(true);
    expect(back.sampler).toEqual({ order, epoch: 2 });
    expect(back.doubles).toEqual(doubles);
    expect(back.floats).toEqual(floats);
    expect(back.short).toEqual([1, 2.5, 3]);
    expect(back.nonFinite.map((v) => (Object.is(v, -0) ? '-0' : String(v)))).toEqual([
      'NaN',
      '-0',
      'Infinity',
      '-Infinity',
      '1',
    ]);
    expect(back.mixed).toEqual([1, 'two', null, [4, 5]]);
    expect(back.nested[0]).toEqual(order);
    expect((back.nested[1] as { deep: Int32Array }).deep).toEqual(new Int32Array([-1, 2, 2147483647]));
    expect(back.bytes).toEqual(new Uint8Array([0, 255, 7]));
    expect(Array.from(back.f64).map(String)).toEqual([String(Math.PI), '0', 'NaN']);
    expect(Object.is(back.f64[1], -0)).toBe(true);
    expect(back.when).toBe('1970-01-01T00:00:00.000Z');
    expect(back.empty).toEqual([]);
    expect('nothing' in back).toBe(false);
  });

  it('tree data stays JSON-serializable', () => {
    const t = tf.tensor([1.5, -2, 0.1], [3]);
    const d = treeToData({ a: t });
    t.dispose();
    expect(d.a.values).toBeInstanceOf(Float32Values);
    expect(JSON.parse(JSON.stringify(d))).toEqual({ a: { shape: [3], values: [1.5, -2, Math.fround(0.1)] } });
  });

  it('reads version 1 (JSON) checkpoints and refuses newer versions by name', () => {
    // A version 1 file as the previous writer made it: the header line, then the payload as JSON.
    const body = JSON.stringify({ trainer: state(7), extra: { rows: 7 }, savedAt: 'old' });
    const sha256 = createHash('sha256').update(body).digest('hex');
    const v1 = path.join(dir, 'checkpoint-00000007.json');
    fs.writeFileSync(
      v1,
      `${JSON.stringify({ format: 'bilevel-checkpoint', version: 1, bytes: Buffer.byteLength(body), sha256 })}\n${body}`,
    );
    const p = readCheckpoint(v1);
    expect(p.trainer).toEqual(state(7));
    expect(p.extra).toEqual({ rows: 7 });
    // A newer checkpoint beside it is preferred; one of an unknown version is reported and skipped: a
    // safetensors file of version 4, and a header-line file claiming version 3 (a layout version 3 is not).
    const v9 = path.join(dir, 'checkpoint-00000009.safetensors');
    writeCheckpoint(dir, { trainer: state(9), savedAt: 'x' }, { keep: 5 });
    rewriteSafetensors(v9, (_header, meta) => {
      meta['bilevel.version'] = '4';
    });
    expect(() => readCheckpoint(v9)).toThrow(
      new CheckpointError(
        v9,
        'format version "4" is not supported (this @bilevel/core reads versions 1 to 3; a newer version wrote it?)',
      ),
    );
    const v10 = path.join(dir, 'checkpoint-00000010.ckpt');
    handWritten(
      v10,
      { payload: { trainer: state(10), savedAt: 'x' }, arrays: [], dataBytes: 0 },
      Buffer.alloc(0),
      3,
    );
    expect(() => readCheckpoint(v10)).toThrow(
      new CheckpointError(
        v10,
        'format version 3 is not supported (this @bilevel/core reads versions 1 to 3; a newer version wrote it?)',
      ),
    );
    const seen: string[] = [];
    expect(loadLatestCheckpoint(dir, { onInvalid: (e) => seen.push(e.message) })?.payload.trainer.step).toBe(
      7,
    );
    expect(seen).toEqual([
      expect.stringContaining(`checkpoint ${v10}: format version 3`),
      expect.stringContaining(`checkpoint ${v9}: format version "4"`),
    ]);
    // Writing goes on in version 3 beside the old files.
    writeCheckpoint(dir, { trainer: state(8), savedAt: 'new' }, { keep: 4 });
    expect(listCheckpoints(dir).map((f) => path.basename(f))).toEqual([
      'checkpoint-00000007.json',
      'checkpoint-00000008.safetensors',
      'checkpoint-00000009.safetensors',
      'checkpoint-00000010.ckpt',
    ]);
  });

  it('reads a file written by hand from the documented layout, and refuses manifests that place arrays oddly', () => {
    const data = Buffer.alloc(4 * 3 + 4 * 2);
    [0.5, -1, 3].forEach((v, i) => data.writeFloatLE(v, 4 * i));
    [7, -9].forEach((v, i) => data.writeInt32LE(v, 12 + 4 * i));
    const trainer = { ...state(2), x: { x: { shape: [3], values: null } } };
    const f = path.join(dir, 'checkpoint-00000002.ckpt');
    handWritten(
      f,
      {
        payload: { trainer, extra: { ids: null }, savedAt: 'hand' },
        arrays: [
          { path: ['trainer', 'x', 'x', 'values'], dtype: 'float32', kind: 'tree', offset: 0, length: 3 },
          { path: ['extra', 'ids'], dtype: 'int32', kind: 'array', offset: 12, length: 2 },
        ],
        dataBytes: 20,
      },
      data,
    );
    const p = readCheckpoint(f);
    expect(Array.from(p.trainer.x.x.values)).toEqual([0.5, -1, 3]);
    expect(p.extra).toEqual({ ids: [7, -9] });

    const bad = (arrays: unknown[], dataBytes = 4): void => {
      handWritten(
        f,
        { payload: { trainer: state(2), savedAt: 'x' }, arrays, dataBytes },
        Buffer.alloc(dataBytes),
      );
    };
    bad([{ path: ['__proto__', 'polluted'], dtype: 'float32', kind: 'tree', offset: 0, length: 1 }]);
    expect(() => readCheckpoint(f)).toThrow(/manifest: no place for an array at '__proto__.polluted'/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    bad([{ path: ['savedAt'], dtype: 'float128', kind: 'typed', offset: 0, length: 1 }]);
    expect(() => readCheckpoint(f)).toThrow(/manifest: bad array entry at 'savedAt'/);
    bad([{ path: ['savedAt'], dtype: 'float32', kind: 'typed', offset: 0, length: 2 }]);
    expect(() => readCheckpoint(f)).toThrow(/manifest: bad array entry/);
    bad([], 4);
    expect(() => readCheckpoint(f)).toThrow(/arrays cover 0 of 4 data bytes/);
  });

  it('leaves no temporary file when the write fails, and refuses circular payloads', () => {
    // The target name is taken by a folder: the rename fails.
    fs.mkdirSync(path.join(dir, 'checkpoint-00000004.safetensors'));
    expect(() => writeCheckpoint(dir, { trainer: bigState(4), savedAt: 'a' })).toThrow();
    expect(fs.readdirSync(dir)).toEqual(['checkpoint-00000004.safetensors']);
    const loop: Record<string, unknown> = { a: 1 };
    loop.self = loop;
    expect(() =>
      writeCheckpoint(dir, { trainer: state(5), extra: loop, savedAt: 'a' } as CheckpointPayload),
    ).toThrow(/circular reference at 'extra.self'/);
  });
  it('reads the version 2 file of the previous writer (a fixture) bit for bit, and saves it again readably', () => {
    const expected = v2FixturePayload();
    const back = readCheckpoint(V2_FIXTURE);
    expect(back.trainer.x['backbone/conv1/kernel'].values).toBeInstanceOf(Float32Values);
    expect(comparable(back)).toEqual(comparable(expected));
    expect(bits(back.trainer.x['head/bias'].values)).toEqual([0x80000000, 0x7fa00001, 0x00000001]);

    // Saved in version 3: the tensors under the names of their place, with their shapes.
    const f = writeCheckpoint(dir, back);
    const { info, names } = parseSafetensors(fs.readFileSync(f));
    expect(names).toEqual([
      'outer/backbone/conv1/kernel',
      'outer/head/bias',
      'inner/w',
      'optimizer/m/backbone/conv1/kernel',
      'optimizer/m/head/bias',
      'optimizer/v/backbone/conv1/kernel',
      'optimizer/v/head/bias',
      'problem/innerSampler/order',
    ]);
    expect(names.map((n) => [info[n].dtype, info[n].shape])).toEqual([
      ['F32', [2, 2, 1, 3]],
      ['F32', [3]],
      ['F32', [2, 3]],
      ['F32', [2, 2, 1, 3]],
      ['F32', [3]],
      ['F32', [2, 2, 1, 3]],
      ['F32', [3]],
      ['I32', [100]],
    ]);
    expect(comparable(readCheckpoint(f))).toEqual(comparable(expected));
  });

  it('stores every typed-array type with its safetensors dtype, wider types first (aligned), empty and 0-d tensors too', () => {
    const extra = {
      bytes: new Uint8Array([0, 255, 7]),
      clamped: new Uint8ClampedArray([1, 254]),
      i8: new Int8Array([-128, 127, 0]),
      u16: new Uint16Array([65535, 1, 2]),
      i16: new Int16Array([-32768]),
      u32: new Uint32Array([4294967295, 0]),
      i32: new Int32Array([-2147483648, 5]),
      f64: new Float64Array([Math.PI, -0, NaN, -Infinity, Number.MIN_VALUE]),
      i64: new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 0n]),
      u64: new BigUint64Array([2n ** 64n - 1n]),
      emptyTyped: new Float64Array(0),
      emptyTree: { shape: [0, 3], values: new Float32Values(0) },
      scalar: { shape: [], values: f32(1, () => -0.5) },
      treeNumbers: { shape: [2], values: [0.1, 2] },
    };
    const f = writeCheckpoint(dir, { trainer: state(1), extra, savedAt: 'a' });
    const { info, names, dataStart, n } = parseSafetensors(fs.readFileSync(f));
    const size: Record<string, number> = {
      F64: 8,
      I64: 8,
      U64: 8,
      F32: 4,
      I32: 4,
      U32: 4,
      I16: 2,
      U16: 2,
      I8: 1,
      U8: 1,
    };
    expect(Object.fromEntries(names.map((k) => [k, [info[k].dtype, info[k].shape]]))).toEqual({
      'outer/x': ['F32', [2]],
      'inner/y': ['F32', [1]],
      'extra/bytes': ['U8', [3]],
      'extra/clamped': ['U8', [2]],
      'extra/i8': ['I8', [3]],
      'extra/u16': ['U16', [3]],
      'extra/i16': ['I16', [1]],
      'extra/u32': ['U32', [2]],
      'extra/i32': ['I32', [2]],
      'extra/f64': ['F64', [5]],
      'extra/i64': ['I64', [3]],
      'extra/u64': ['U64', [1]],
      'extra/emptyTyped': ['F64', [0]],
      'extra/emptyTree': ['F32', [0, 3]],
      'extra/scalar': ['F32', []],
      // 0.1 is not a float32 value: the entries of a tree tensor given as plain numbers stay float64.
      'extra/treeNumbers': ['F64', [2]],
    });
    // In file order: element sizes never grow, every tensor starts at a multiple of its element size (the
    // buffer itself at a multiple of 8), and each starts where the one before ends.
    const inFileOrder = names
      .slice()
      .sort(
        (a, b) =>
          info[a].data_offsets[0] - info[b].data_offsets[0] ||
          info[a].data_offsets[1] - info[b].data_offsets[1],
      );
    expect(dataStart % 8).toBe(0);
    expect((8 + n) % 8).toBe(0);
    let end = 0;
    let width = 8;
    for (const k of inFileOrder) {
      const [b, e] = info[k].data_offsets;
      expect([k, b]).toEqual([k, end]);
      expect([k, b % size[info[k].dtype]]).toEqual([k, 0]);
      expect(size[info[k].dtype]).toBeLessThanOrEqual(width);
      width = size[info[k].dtype];
      end = e;
    }
    const back = readCheckpoint(f).extra as typeof extra;
    expect(comparable(back)).toEqual(comparable(extra));
    expect(back.clamped).toBeInstanceOf(Uint8ClampedArray);
    expect(back.i64[1]).toBe(2n ** 63n - 1n);
    expect(back.u64[0]).toBe(2n ** 64n - 1n);
    expect(Array.isArray(back.treeNumbers.values)).toBe(true);
  });

  it('refuses a file that breaks a rule of the layout, naming what is wrong, even with checksums that fit', () => {
    const expectRefused = (change: Parameters<typeof rewriteSafetensors>[1], message: RegExp): string => {
      const f = writeCheckpoint(dir, {
        trainer: bigState(6, 10),
        extra: { ids: new Int32Array([1, 2]) },
        savedAt: 'a',
      });
      rewriteSafetensors(f, change);
      let error: unknown = null;
      try {
        readCheckpoint(f);
      } catch (e) {
        error = e;
      }
      expect([error instanceof CheckpointError, String(error)]).toEqual([
        true,
        expect.stringMatching(message),
      ]);
      fs.rmSync(f);
      return String(error);
    };
    const tensor = (header: Record<string, unknown>, name: string) => header[name] as SafetensorsInfo;
    // Untouched, the rewritten file reads (so each refusal below is for the one change made).
    const f = writeCheckpoint(dir, { trainer: bigState(6, 10), savedAt: 'a' });
    rewriteSafetensors(f, () => undefined);
    expect(bits(readCheckpoint(f).trainer.x.w.values)).toEqual(bits(bigState(6, 10).x.w.values));
    fs.rmSync(f);

    expectRefused((h) => {
      tensor(h, 'inner/y').data_offsets = [44, 48];
    }, /tensor 'inner\/y' starts at byte 44, not 40 \(a gap or an overlap\)/);
    expectRefused((h) => {
      tensor(h, 'outer/w').shape = [11];
    }, /tensor 'outer\/w': data_offsets span 40 bytes, shape and dtype need 44/);
    expectRefused((h) => {
      tensor(h, 'outer/w').dtype = 'F16';
    }, /tensor 'outer\/w': dtype "F16" is not one this library writes/);
    expectRefused((h, _m, data) => {
      h.stray = { dtype: 'U8', shape: [2], data_offsets: [data.length, data.length + 2] };
      return Buffer.concat([data, Buffer.from([1, 2])]);
    }, /metadata: tensor 'stray' has no place in the payload/);
    const trailing = expectRefused(
      (_h, _m, data) => Buffer.concat([data, Buffer.alloc(3)]),
      /payload has \d+ bytes, header says \d+ \(bytes after the last tensor\)/,
    );
    const [has, says] = (trailing.match(/\d+/g) ?? []).slice(-2).map(Number);
    expect(has - says).toBe(3);
    expectRefused((_h, m) => {
      m['bilevel.tensors'] = m['bilevel.tensors'].replace('"name":"extra/ids"', '"name":"extra/none"');
    }, /metadata: bad tensor entry at 'extra.ids'/);
    expectRefused((_h, m) => {
      m['bilevel.tensors'] = m['bilevel.tensors'].replace(
        '"path":["extra","ids"]',
        '"path":["__proto__","polluted"]',
      );
    }, /no place for an array at '__proto__.polluted'/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expectRefused((_h, m) => {
      m['bilevel.payload'] = '{"trainer":';
    }, /metadata: bilevel.payload is not a JSON string/);
    expectRefused((_h, m) => {
      m['bilevel.format'] = 'something-else';
    }, /not a bilevel-checkpoint file/);

    // A header length beyond the specification's limit.
    const huge = path.join(dir, 'checkpoint-00000001.safetensors');
    const length = Buffer.alloc(16, 0x20);
    length.writeBigUInt64LE(2n ** 40n);
    fs.writeFileSync(huge, length);
    expect(() => readCheckpoint(huge)).toThrow(/header length 1099511627776 is over 100000000 bytes/);
  });
});
