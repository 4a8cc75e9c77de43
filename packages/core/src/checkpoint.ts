import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Trainer, TrainerState } from './trainer';
import { Float32Values } from './tree';

/** What a checkpoint file holds: the trainer's whole state plus caller data (e.g. metric rows written). */
export interface CheckpointPayload {
  /** The trainer's state. */
  readonly trainer: TrainerState;
  /** Caller data (e.g. the metric rows written so far). */
  readonly extra?: unknown;
  /** When it was saved (ISO 8601). */
  readonly savedAt: string;
}

/** A checkpoint file that cannot be used, with the reason. */
export class CheckpointError extends Error {
  constructor(
    /** The checkpoint file. */
    readonly file: string,
    /** Why it cannot be used (cut short, checksum mismatch, …). */
    readonly reason: string,
  ) {
    super(`checkpoint ${file}: ${reason}`);
    this.name = 'CheckpointError';
  }
}

/*
 * File format, version 3 (what writeCheckpoint writes): a safetensors file (the Hugging Face layout: 8-byte
 * little-endian header length N, an N-byte UTF-8 JSON header, then the byte buffer), so any safetensors
 * reader (Python's `safetensors`, a few lines of numpy) loads the tensors:
 *
 *   8 bytes  N, unsigned 64-bit little-endian
 *   N bytes  {"__metadata__":{…},"outer/w":{"dtype":"F32","shape":[3,4],"data_offsets":[0,48]},…}
 *            starting with '{' and padded with spaces so that 8 + N is a multiple of 8
 *   rest     the byte buffer: every tensor's entries, raw little-endian, row-major, one after another with no
 *            gap, the wider element types first (8, 4, 2 then 1 bytes an entry), so each tensor starts at a
 *            multiple of its element size; `data_offsets` count from the buffer's first byte.
 *
 * Tensors: every typed array of the payload (the Float32Values of tree data: x, y, optimizer moments, warm
 * starts; typed arrays of plugin states) and every plain number array that is long (more than INLINE_MAX
 * entries), that JSON would not write exactly (NaN, ±Infinity, −0), or that holds a tree tensor's entries.
 * A tree tensor (an object { shape, values } whose shape's product is the number of values) keeps its shape;
 * other arrays are one-dimensional. Names are the array's place in the payload joined by '/', with the
 * trainer's x and y as `outer` and `inner` and the trailing `values` of tree tensors left out:
 * `outer/backbone/conv1/kernel`, `inner/w`, `optimizer/m/<x name>`, `estimator/warmStart/<y name>`,
 * `problem/innerSampler/order`, `extra/…` ('#2', '#3', … is appended to a name already taken).
 *
 * `__metadata__` (string values only, as the specification requires):
 *   bilevel.format          "bilevel-checkpoint"
 *   bilevel.version         "3"
 *   bilevel.payload         the checkpoint payload as JSON, with null where each tensor goes
 *   bilevel.tensors         JSON list, one entry a tensor in payload order: { path, name, kind, type? }: the keys
 *                           (object) and indices (array) from the payload's root, the tensor's name, what is
 *                           rebuilt ('tree' a Float32Values, 'typed' a typed array, 'array' a plain number
 *                           array) and, only where the dtype does not say it, the typed-array type
 *                           ('uint8clamped', stored as U8)
 *   bilevel.data_sha256     SHA-256 (hex) of the byte buffer
 *   bilevel.header_sha256   SHA-256 (hex) of the N header bytes with these 64 hex digits written as '0's
 *
 * Version 2 (still read; files `checkpoint-<step>.ckpt`):
 *
 *   line 1   header:   {"format":"bilevel-checkpoint","version":2,"bytes":N,"sha256":"…"}\n
 *   then the payload, N bytes, whose SHA-256 is in the header:
 *   line 2   manifest: {"payload":…,"arrays":[{"path":[…],"dtype":"float32","kind":"tree","offset":0,"length":n},…],"dataBytes":D}\n
 *   then     data:     D bytes, the arrays' entries as raw little-endian binary, one after another.
 *
 * `payload` is the checkpoint payload as JSON with `null` where each array of `arrays` goes (the same arrays
 * as version 3 minus the short tree tensors, which stayed in the JSON); `offset` is in bytes from the start of
 * the data section. Version 1 (files `checkpoint-<step>.json`) was the header line followed by the payload as
 * JSON.
 */
const FORMAT = 'bilevel-checkpoint';
/** The version this module writes. */
export const CHECKPOINT_FORMAT_VERSION = 3;
/**
 * Checkpoint files: `.safetensors` (version 3); `.ckpt` (version 2) and `.json` (version 1) are still listed.
 * Of one step, the `.safetensors` file sorts last, so it is the one tried first.
 */
const PATTERN = /^checkpoint-(\d{8})\.(safetensors|ckpt|json)$/;
/** Plain number arrays up to this length stay in the JSON payload (when JSON writes them exactly). */
const INLINE_MAX = 64;
/** Reads and writes go through the file system in pieces of at most this many bytes. */
const CHUNK = 16 * 1024 * 1024;
/** The largest safetensors header read (the reference implementation's limit). */
const MAX_HEADER_BYTES = 100_000_000;
const LITTLE_ENDIAN = os.endianness() === 'LE';
/** The metadata entry of the header checksum, as it appears in the header bytes (before its 64 hex digits). */
const HEADER_SHA_KEY = Buffer.from('"bilevel.header_sha256":"', 'utf8');
const ZERO_SHA = '0'.repeat(64);

const DTYPES = {
  float32: Float32Array,
  float64: Float64Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  uint8: Uint8Array,
  uint16: Uint16Array,
  uint32: Uint32Array,
  uint8clamped: Uint8ClampedArray,
  int64: BigInt64Array,
  uint64: BigUint64Array,
} as const;
type DType = keyof typeof DTYPES;
type NumericArray = InstanceType<(typeof DTYPES)[DType]>;
type ArrayKind = 'tree' | 'typed' | 'array';

/** The safetensors dtype of each typed-array type. */
const SAFETENSORS_DTYPE: Readonly<Record<DType, string>> = {
  float32: 'F32',
  float64: 'F64',
  int8: 'I8',
  int16: 'I16',
  int32: 'I32',
  uint8: 'U8',
  uint16: 'U16',
  uint32: 'U32',
  uint8clamped: 'U8',
  int64: 'I64',
  uint64: 'U64',
};

/** The typed-array type a safetensors dtype is read into (unless a tensor entry of the metadata names another). */
const TYPE_OF_DTYPE: Readonly<Record<string, DType>> = {
  F32: 'float32',
  F64: 'float64',
  I8: 'int8',
  I16: 'int16',
  I32: 'int32',
  U8: 'uint8',
  U16: 'uint16',
  U32: 'uint32',
  I64: 'int64',
  U64: 'uint64',
};

/** Bytes an entry, by safetensors dtype (the dtypes this module writes). */
const SAFETENSORS_SIZE: Readonly<Record<string, number>> = {
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

/** Where an array of a version 2 data section goes in the payload, and how it is stored. */
interface ArrayEntry {
  /** Keys (object) and indices (array) from the payload's root to the array. */
  readonly path: (string | number)[];
  /** Element type in the data section. */
  readonly dtype: DType;
  /** What is rebuilt: a Float32Values, a typed array of `dtype`, or a plain number array. */
  readonly kind: ArrayKind;
  /** Byte offset from the start of the data section. */
  readonly offset: number;
  /** Number of entries. */
  readonly length: number;
}

/** The manifest line of a version 2 file. */
interface Manifest {
  readonly payload: unknown;
  readonly arrays: ArrayEntry[];
  readonly dataBytes: number;
}

function fileFor(dir: string, step: number): string {
  return path.join(dir, `checkpoint-${String(step).padStart(8, '0')}.safetensors`);
}

function dtypeOf(a: ArrayBufferView): DType | null {
  for (const [name, ctor] of Object.entries(DTYPES)) {
    if (a instanceof ctor) return name as DType;
  }
  return null;
}

/** `n` entries of a typed-array type. */
function allocate(dtype: DType, n: number): NumericArray {
  return new DTYPES[dtype](n);
}

/**
 * The narrowest exact storage of a plain number array, or null when it stays in the JSON payload. A tree
 * tensor's entries (`tree`) always go to the data section, as float32 when every entry is a float32 value and
 * as float64 otherwise.
 */
function packNumbers(a: readonly unknown[], tree: boolean): { dtype: DType; data: NumericArray } | null {
  const n = a.length;
  if (n === 0 && !tree) return null;
  let int32 = !tree;
  let float32 = true;
  let jsonExact = true;
  for (let i = 0; i < n; i++) {
    const v = a[i];
    if (typeof v !== 'number') return null; // also holes
    const negativeZero = v === 0 && 1 / v < 0;
    if (negativeZero || !Number.isFinite(v)) jsonExact = false;
    if (int32 && ((v | 0) !== v || negativeZero)) int32 = false;
    if (float32 && Math.fround(v) !== v && v === v) float32 = false;
  }
  if (!tree && n <= INLINE_MAX && jsonExact) return null;
  const dtype: DType = int32 ? 'int32' : float32 ? 'float32' : 'float64';
  const data = allocate(dtype, n);
  const entries = data as unknown as number[];
  for (let i = 0; i < n; i++) entries[i] = a[i] as number;
  return { dtype, data };
}

/** Reverses the bytes of every `size`-byte element, in place (for big-endian hosts). */
function swapBytes(b: Uint8Array, size: number): void {
  if (size === 1) return;
  for (let i = 0; i < b.length; i += size) {
    for (let j = 0, k = size - 1; j < k; j++, k--) {
      const t = b[i + j];
      b[i + j] = b[i + k];
      b[i + k] = t;
    }
  }
}

/** The array's entries as little-endian bytes: a view of its memory on little-endian hosts. */
function littleEndianBytes(a: NumericArray): Uint8Array {
  const view = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  if (LITTLE_ENDIAN || a.BYTES_PER_ELEMENT === 1) return view;
  const copy = new Uint8Array(view);
  swapBytes(copy, a.BYTES_PER_ELEMENT);
  return copy;
}

/** The shape of a tree tensor `{ shape, values }` whose shape's product is the number of values, or null. */
function treeShape(entry: object, values: unknown): number[] | null {
  const shape = (entry as { shape?: unknown }).shape;
  if (!Array.isArray(shape) || !Object.prototype.hasOwnProperty.call(entry, 'shape')) return null;
  let size = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) return null;
    size *= d;
  }
  const n = ArrayBuffer.isView(values)
    ? (values as NumericArray).length
    : Array.isArray(values)
      ? values.length
      : -1;
  return n === size ? shape.slice() : null;
}

/** An array of the payload that goes to the data section. */
interface Piece {
  /** Keys (object) and indices (array) from the payload's root to the array. */
  readonly path: (string | number)[];
  /** Typed-array type of the stored entries. */
  readonly type: DType;
  /** What is rebuilt: a Float32Values, a typed array of `type`, or a plain number array. */
  readonly kind: ArrayKind;
  /** The entries. */
  readonly data: NumericArray;
  /** A tree tensor's shape (null: one-dimensional). */
  readonly shape: number[] | null;
}

/**
 * Splits a payload into its JSON part (with null where arrays go) and the arrays of the data section. Follows
 * JSON.stringify: objects with a `toJSON` method are left to it, other objects by their own enumerable keys.
 */
function splitPayload(payload: unknown): { json: unknown; pieces: Piece[] } {
  const pieces: Piece[] = [];
  const at: (string | number)[] = [];
  const ancestors = new Set<object>();
  const take = (data: NumericArray, type: DType, kind: ArrayKind, shape: number[] | null): null => {
    pieces.push({ path: at.slice(), type, kind, data, shape });
    return null;
  };
  const visit = (value: unknown, shape: number[] | null): unknown => {
    if (value === null || typeof value !== 'object') return value;
    if (ArrayBuffer.isView(value)) {
      const dtype = dtypeOf(value);
      if (dtype === null) return value; // DataView: left to JSON, as before
      return take(value as NumericArray, dtype, value instanceof Float32Values ? 'tree' : 'typed', shape);
    }
    if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return value;
    if (ancestors.has(value))
      throw new TypeError(`checkpoint payload: circular reference at '${at.join('.')}'`);
    ancestors.add(value);
    try {
      if (Array.isArray(value)) {
        const packed = packNumbers(value, shape !== null);
        if (packed) return take(packed.data, packed.dtype, 'array', shape);
        const out: unknown[] = new Array(value.length);
        for (let i = 0; i < value.length; i++) {
          at.push(i);
          out[i] = visit(value[i], null);
          at.pop();
        }
        return out;
      }
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(value)) {
        at.push(key);
        const child = (value as Record<string, unknown>)[key];
        const v = visit(child, key === 'values' ? treeShape(value, child) : null);
        // An own '__proto__' key (JSON.parse makes those) stays a key.
        if (key === '__proto__')
          Object.defineProperty(out, key, { value: v, enumerable: true, writable: true });
        else out[key] = v;
        at.pop();
      }
      return out;
    } finally {
      ancestors.delete(value);
    }
  };
  const json = visit(payload, null);
  return { json, pieces };
}

/** The readable name of an array of the payload, from its place (see the format description). */
function tensorName(piece: Piece): string {
  let parts = piece.path.map(String);
  if (piece.shape !== null && parts[parts.length - 1] === 'values') parts = parts.slice(0, -1);
  if (parts[0] === 'trainer' && parts.length > 1) {
    const root = parts[1] === 'x' ? 'outer' : parts[1] === 'y' ? 'inner' : parts[1];
    parts = [root, ...parts.slice(2)];
  }
  return parts.join('/');
}

/** An encoded version 3 file: the 8 length bytes and the header, then the tensors' bytes in file order. */
function encodeSafetensors(payload: CheckpointPayload): { head: Buffer; chunks: Uint8Array[] } {
  const { json, pieces } = splitPayload(payload);
  const names: string[] = [];
  const taken = new Set<string>(['__metadata__']);
  for (const piece of pieces) {
    const base = tensorName(piece);
    let name = base;
    for (let k = 2; taken.has(name); k++) name = `${base}#${k}`;
    taken.add(name);
    names.push(name);
  }
  // Wider element types first (stable: payload order within a width), so every tensor is aligned.
  const order = pieces
    .map((_, i) => i)
    .sort((a, b) => pieces[b].data.BYTES_PER_ELEMENT - pieces[a].data.BYTES_PER_ELEMENT || a - b);
  const chunks: Uint8Array[] = [];
  const entries: string[] = [];
  const hash = createHash('sha256');
  let offset = 0;
  for (const i of order) {
    const { data, type, shape } = pieces[i];
    const bytes = littleEndianBytes(data);
    hashAll(hash, bytes);
    chunks.push(bytes);
    const info = {
      dtype: SAFETENSORS_DTYPE[type],
      shape: shape ?? [data.length],
      data_offsets: [offset, offset + bytes.byteLength],
    };
    entries.push(`${JSON.stringify(names[i])}:${JSON.stringify(info)}`);
    offset += bytes.byteLength;
  }
  const metadata = {
    'bilevel.format': FORMAT,
    'bilevel.version': String(CHECKPOINT_FORMAT_VERSION),
    'bilevel.payload': JSON.stringify(json),
    'bilevel.tensors': JSON.stringify(
      pieces.map((p, i) => {
        const entry = { path: p.path, name: names[i], kind: p.kind };
        // The typed-array type only where the dtype does not say it (uint8clamped, stored as U8).
        return TYPE_OF_DTYPE[SAFETENSORS_DTYPE[p.type]] === p.type ? entry : { ...entry, type: p.type };
      }),
    ),
    'bilevel.data_sha256': hash.digest('hex'),
    'bilevel.header_sha256': ZERO_SHA,
  };
  // Built as text: tensor names are keys in file order, whatever they look like ('__proto__', '12', …).
  const text = `{"__metadata__":${JSON.stringify(metadata)}${entries.map((e) => `,${e}`).join('')}}`;
  const utf8 = Buffer.from(text, 'utf8');
  const n = Math.ceil(utf8.length / 8) * 8;
  if (n > MAX_HEADER_BYTES) {
    // Readers refuse such headers (the safetensors limit); long number arrays are tensors, so only a payload
    // with a great many short arrays or strings gets here.
    throw new RangeError(
      `checkpoint payload: the JSON part (${n} bytes) is over the ${MAX_HEADER_BYTES}-byte header limit of safetensors`,
    );
  }
  const head = Buffer.alloc(8 + n, 0x20);
  head.writeBigUInt64LE(BigInt(n), 0);
  utf8.copy(head, 8);
  const header = head.subarray(8);
  const at = header.indexOf(HEADER_SHA_KEY) + HEADER_SHA_KEY.length;
  header.write(createHash('sha256').update(header).digest('hex'), at, 'latin1');
  return { head, chunks };
}

function writeAll(fd: number, data: Uint8Array): void {
  for (let done = 0; done < data.byteLength;) {
    done += fs.writeSync(fd, data, done, Math.min(CHUNK, data.byteLength - done));
  }
}

function hashAll(hash: Hash, data: Uint8Array): void {
  for (let done = 0; done < data.byteLength; done += CHUNK) {
    hash.update(data.subarray(done, Math.min(data.byteLength, done + CHUNK)));
  }
}

/**
 * Writes a checkpoint atomically into a temporary file that is flushed to disk and renamed into place:
 * `checkpoint-<step>.safetensors`, a safetensors file (format version 3) whose tensors are every tensor and
 * typed array of the payload (and every long number array) as raw little-endian binary under a readable name
 * (`outer/<x name>`, `inner/<y name>`, `optimizer/m/<x name>`, …), and whose `__metadata__` holds the rest of
 * the payload as JSON and the SHA-256 of the data and of the header — about 4 bytes a float32 entry, with no
 * large string ever built. Keeps the newest `keep` checkpoints of the folder. Returns the file written.
 */
export function writeCheckpoint(
  dir: string,
  payload: CheckpointPayload,
  options: { keep?: number } = {},
): string {
  fs.mkdirSync(dir, { recursive: true });
  const { head, chunks } = encodeSafetensors(payload);
  const target = fileFor(dir, payload.trainer.step);
  const tmp = `${target}.tmp-${process.pid}`;
  try {
    const fd = fs.openSync(tmp, 'w');
    try {
      writeAll(fd, head);
      for (const c of chunks) writeAll(fd, c);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, target);
  } catch (e) {
    // E.g. a full disk: no half-written temporary file is left behind, the older checkpoints stay, and the
    // error names the file (a write through a descriptor says only ENOSPC).
    fs.rmSync(tmp, { force: true });
    const err = e as NodeJS.ErrnoException;
    if (err && typeof err === 'object' && typeof err.code === 'string' && err.path === undefined) err.path = target;
    throw e;
  }
  try {
    const dfd = fs.openSync(dir, 'r');
    fs.fsyncSync(dfd);
    fs.closeSync(dfd);
  } catch {
    // Some file systems do not allow fsync on folders; the rename is still atomic.
  }
  const keep = options.keep ?? 2;
  const all = listCheckpoints(dir);
  for (const old of all.slice(0, Math.max(0, all.length - keep))) fs.rmSync(old, { force: true });
  return target;
}

/** Checkpoint files of a folder, oldest first. */
export function listCheckpoints(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => PATTERN.test(f))
    .sort()
    .map((f) => path.join(dir, f));
}

/** Reads exactly `target.byteLength` bytes at `position`, or throws (the file is shorter than it said). */
function readExactly(fd: number, file: string, target: Uint8Array, position: number): void {
  for (let done = 0; done < target.byteLength;) {
    const n = fs.readSync(fd, target, done, Math.min(CHUNK, target.byteLength - done), position + done);
    if (n === 0) throw new CheckpointError(file, 'file ended early (file cut short?)');
    done += n;
  }
}

/** SHA-256 (hex) of `length` bytes of the file from `start`, read piece by piece. */
function hashFile(fd: number, file: string, start: number, length: number): string {
  const hash = createHash('sha256');
  const piece = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(1, length)));
  for (let done = 0; done < length;) {
    const n = Math.min(piece.length, length - done);
    readExactly(fd, file, piece.subarray(0, n), start + done);
    hash.update(piece.subarray(0, n));
    done += n;
  }
  return hash.digest('hex');
}

/** The header line, and where the payload starts. */
function readHeader(
  fd: number,
  file: string,
  size: number,
): { header: { format?: unknown; version?: unknown; bytes?: unknown; sha256?: unknown }; start: number } {
  const head = Buffer.alloc(Math.min(size, 4096));
  readExactly(fd, file, head, 0);
  const nl = head.indexOf(0x0a);
  if (nl < 0) throw new CheckpointError(file, 'no header line (file cut short?)');
  let header: { format?: unknown; version?: unknown; bytes?: unknown; sha256?: unknown };
  try {
    header = JSON.parse(head.subarray(0, nl).toString('utf8'));
  } catch {
    throw new CheckpointError(file, 'header is not valid JSON');
  }
  if (header === null || typeof header !== 'object' || header.format !== FORMAT) {
    throw new CheckpointError(file, `not a ${FORMAT} file`);
  }
  return { header, start: nl + 1 };
}

/** The manifest line of a version 2 payload starting at `start`, and where the data section starts. */
function readManifest(
  fd: number,
  file: string,
  start: number,
  end: number,
): { manifest: Manifest; dataStart: number } {
  const parts: Buffer[] = [];
  let position = start;
  let nl = -1;
  while (nl < 0) {
    if (position >= end) throw new CheckpointError(file, 'manifest line has no end');
    const piece = Buffer.alloc(Math.min(1024 * 1024, end - position));
    readExactly(fd, file, piece, position);
    nl = piece.indexOf(0x0a);
    parts.push(nl < 0 ? piece : piece.subarray(0, nl));
    position += nl < 0 ? piece.length : nl + 1;
  }
  let manifest: Manifest;
  try {
    manifest = JSON.parse(Buffer.concat(parts).toString('utf8')) as Manifest;
  } catch {
    throw new CheckpointError(file, 'manifest is not valid JSON');
  }
  if (manifest === null || typeof manifest !== 'object' || !Array.isArray(manifest.arrays)) {
    throw new CheckpointError(file, 'manifest has no list of arrays');
  }
  if (manifest.dataBytes !== end - position) {
    throw new CheckpointError(
      file,
      `data section has ${end - position} bytes, manifest says ${String(manifest.dataBytes)}`,
    );
  }
  return { manifest, dataStart: position };
}

/** Puts `value` at `at` (keys and indices from the root) of `root`; returns the new root. */
function placeAt(file: string, root: unknown, at: readonly (string | number)[], value: unknown): unknown {
  if (at.length === 0) return value;
  let parent = root;
  for (let i = 0; i < at.length; i++) {
    const key = at[i];
    // Only places the JSON part holds (never a prototype).
    if (parent === null || typeof parent !== 'object' || !Object.prototype.hasOwnProperty.call(parent, key)) {
      throw new CheckpointError(file, `manifest: no place for an array at '${at.join('.')}'`);
    }
    if (i === at.length - 1) (parent as Record<string | number, unknown>)[key] = value;
    else parent = (parent as Record<string | number, unknown>)[key];
  }
  return root;
}

/** The payload of a version 2 file whose length and checksum were checked. */
function readVersion2(fd: number, file: string, start: number, end: number): CheckpointPayload {
  const { manifest, dataStart } = readManifest(fd, file, start, end);
  let root: unknown = manifest.payload;
  let offset = 0;
  for (const entry of manifest.arrays) {
    // The typed-array types version 2 wrote (not the 64-bit integers).
    const ctor =
      Object.prototype.hasOwnProperty.call(DTYPES, entry?.dtype) &&
      entry.dtype !== 'int64' &&
      entry.dtype !== 'uint64'
        ? DTYPES[entry.dtype]
        : undefined;
    const where = Array.isArray(entry?.path) ? entry.path.join('.') : '?';
    if (
      !ctor ||
      !Array.isArray(entry.path) ||
      !['tree', 'typed', 'array'].includes(entry.kind) ||
      (entry.kind === 'tree' && entry.dtype !== 'float32') ||
      !Number.isSafeInteger(entry.length) ||
      entry.length < 0 ||
      entry.offset !== offset ||
      offset + entry.length * ctor.BYTES_PER_ELEMENT > manifest.dataBytes
    ) {
      throw new CheckpointError(file, `manifest: bad array entry at '${where}'`);
    }
    const data: NumericArray =
      entry.kind === 'tree' ? new Float32Values(entry.length) : new ctor(entry.length);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    readExactly(fd, file, bytes, dataStart + offset);
    if (!LITTLE_ENDIAN) swapBytes(bytes, data.BYTES_PER_ELEMENT);
    offset += data.byteLength;
    root = placeAt(file, root, entry.path, entry.kind === 'array' ? Array.from(data) : data);
  }
  if (offset !== manifest.dataBytes) {
    throw new CheckpointError(file, `manifest: arrays cover ${offset} of ${manifest.dataBytes} data bytes`);
  }
  return root as CheckpointPayload;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function unsupportedVersion(file: string, version: unknown): CheckpointError {
  return new CheckpointError(
    file,
    `format version ${JSON.stringify(version)} is not supported (this @bilevel/core reads versions 1 to ${CHECKPOINT_FORMAT_VERSION}; a newer version wrote it?)`,
  );
}

/** A tensor of a safetensors header, checked against the specification's rules. */
interface TensorInfo {
  readonly name: string;
  readonly dtype: string;
  readonly count: number;
  readonly begin: number;
  readonly end: number;
}

/** The tensors of a safetensors header, by name, and the byte buffer's length they cover (without gaps). */
function tensorTable(
  file: string,
  header: Record<string, unknown>,
): { byName: Map<string, TensorInfo>; dataEnd: number } {
  const byName = new Map<string, TensorInfo>();
  for (const name of Object.keys(header)) {
    if (name === '__metadata__') continue;
    const info = header[name] as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const size = isRecord(info) && typeof info.dtype === 'string' ? SAFETENSORS_SIZE[info.dtype] : undefined;
    const shape = isRecord(info) ? info.shape : undefined;
    const offsets = isRecord(info) ? info.data_offsets : undefined;
    const bad = (why: string): CheckpointError =>
      new CheckpointError(file, `header: tensor '${name}': ${why}`);
    if (size === undefined || !Object.prototype.hasOwnProperty.call(SAFETENSORS_SIZE, info.dtype as string))
      throw bad(`dtype ${JSON.stringify(isRecord(info) ? info.dtype : info)} is not one this library writes`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw bad('shape is not a list of non-negative integers');
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[1] < offsets[0]
    )
      throw bad('data_offsets is not [begin, end]');
    const count = (shape as number[]).reduce((a, d) => a * d, 1);
    if (offsets[1] - offsets[0] !== count * size)
      throw bad(`data_offsets span ${offsets[1] - offsets[0]} bytes, shape and dtype need ${count * size}`);
    byName.set(name, { name, dtype: info.dtype as string, count, begin: offsets[0], end: offsets[1] });
  }
  // The specification: the byte buffer is entirely indexed, without holes or overlaps.
  let dataEnd = 0;
  for (const t of [...byName.values()].sort((a, b) => a.begin - b.begin || a.end - b.end)) {
    if (t.begin !== dataEnd)
      throw new CheckpointError(
        file,
        `header: tensor '${t.name}' starts at byte ${t.begin}, not ${dataEnd} (a gap or an overlap)`,
      );
    dataEnd = t.end;
  }
  return { byName, dataEnd };
}

/** A JSON-encoded metadata entry. */
function metadataJson(file: string, meta: Record<string, unknown>, key: string): unknown {
  try {
    if (typeof meta[key] !== 'string') throw new Error();
    return JSON.parse(meta[key] as string);
  } catch {
    throw new CheckpointError(file, `metadata: ${key} is not a JSON string`);
  }
}

/** The payload of a version 3 (safetensors) file, after checking its header and data checksums. */
function readVersion3(fd: number, file: string, size: number): CheckpointPayload {
  if (size < 8) throw new CheckpointError(file, 'file ended early (file cut short?)');
  const lengthField = Buffer.alloc(8);
  readExactly(fd, file, lengthField, 0);
  const length = lengthField.readBigUInt64LE(0);
  if (length > BigInt(MAX_HEADER_BYTES)) {
    throw new CheckpointError(
      file,
      `header length ${length} is over ${MAX_HEADER_BYTES} bytes (not a checkpoint, or corrupted)`,
    );
  }
  const n = Number(length);
  // "payload": everything after the 8-byte length field, as in the header-line versions.
  if (8 + n > size) {
    throw new CheckpointError(
      file,
      `payload has ${size - 8} bytes, header says at least ${n} (file cut short?)`,
    );
  }
  const header = Buffer.alloc(n);
  readExactly(fd, file, header, 8);

  // The header's checksum: over the header with its own 64 hex digits as zeros.
  const key = header.indexOf(HEADER_SHA_KEY);
  if (key < 0 || header.indexOf(HEADER_SHA_KEY, key + 1) >= 0) {
    throw new CheckpointError(
      file,
      'header has no bilevel.header_sha256 (not a bilevel checkpoint, or corrupted)',
    );
  }
  const digits = key + HEADER_SHA_KEY.length;
  const claimed = header.toString('latin1', digits, Math.min(n, digits + 64));
  header.write(ZERO_SHA, digits, 'latin1');
  if (createHash('sha256').update(header).digest('hex') !== claimed) {
    throw new CheckpointError(file, 'checksum mismatch (file corrupted)');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(header.toString('utf8'));
  } catch {
    throw new CheckpointError(file, 'header is not valid JSON');
  }
  const meta = isRecord(parsed) ? parsed.__metadata__ : undefined;
  if (!isRecord(parsed) || !isRecord(meta) || meta['bilevel.format'] !== FORMAT) {
    throw new CheckpointError(file, `not a ${FORMAT} file`);
  }
  if (meta['bilevel.version'] !== String(CHECKPOINT_FORMAT_VERSION))
    throw unsupportedVersion(file, meta['bilevel.version']);

  const { byName, dataEnd } = tensorTable(file, parsed);
  const dataStart = 8 + n;
  const dataBytes = size - dataStart;
  if (dataBytes !== dataEnd) {
    throw new CheckpointError(
      file,
      `payload has ${size - 8} bytes, header says ${n + dataEnd} ${dataBytes < dataEnd ? '(file cut short?)' : '(bytes after the last tensor)'}`,
    );
  }
  if (hashFile(fd, file, dataStart, dataBytes) !== meta['bilevel.data_sha256']) {
    throw new CheckpointError(file, 'checksum mismatch (file corrupted)');
  }

  let root = metadataJson(file, meta, 'bilevel.payload');
  const list = metadataJson(file, meta, 'bilevel.tensors');
  if (!Array.isArray(list)) throw new CheckpointError(file, 'metadata: bilevel.tensors is not a list');
  const placed = new Set<string>();
  for (const entry of list as { path?: unknown; name?: unknown; kind?: unknown; type?: unknown }[]) {
    const where = isRecord(entry) && Array.isArray(entry.path) ? entry.path.join('.') : '?';
    const info = isRecord(entry) && typeof entry.name === 'string' ? byName.get(entry.name) : undefined;
    const named = isRecord(entry) ? (entry.type ?? (info && TYPE_OF_DTYPE[info.dtype])) : undefined;
    const type = Object.prototype.hasOwnProperty.call(DTYPES, named as string) ? (named as DType) : null;
    if (
      type === null ||
      info === undefined ||
      placed.has(info.name) ||
      !Array.isArray(entry.path) ||
      SAFETENSORS_DTYPE[type] !== info.dtype ||
      !(
        (entry.kind === 'tree' && type === 'float32') ||
        entry.kind === 'typed' ||
        (entry.kind === 'array' && (type === 'int32' || type === 'float32' || type === 'float64'))
      )
    ) {
      throw new CheckpointError(file, `metadata: bad tensor entry at '${where}'`);
    }
    placed.add(info.name);
    const data = entry.kind === 'tree' ? new Float32Values(info.count) : allocate(type, info.count);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    readExactly(fd, file, bytes, dataStart + info.begin);
    if (!LITTLE_ENDIAN) swapBytes(bytes, data.BYTES_PER_ELEMENT);
    root = placeAt(
      file,
      root,
      entry.path as (string | number)[],
      entry.kind === 'array' ? Array.from(data as Float64Array) : data,
    );
  }
  for (const name of byName.keys()) {
    if (!placed.has(name))
      throw new CheckpointError(file, `metadata: tensor '${name}' has no place in the payload`);
  }
  return root as CheckpointPayload;
}

/**
 * Reads and verifies one checkpoint file (lengths and checksums), or throws a {@link CheckpointError}. Reads
 * the current format (version 3, safetensors), the binary files of version 2 and the JSON files of version 1
 * (told apart by their first bytes, not by their names); a file of a newer version is refused with a message
 * naming it. The tensors' entries come back as {@link Float32Values} with the bits that were saved.
 */
export function readCheckpoint(file: string): CheckpointPayload {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    // Versions 1 and 2 start with their JSON header line; a version 3 file with its header length, which this
    // writer makes a multiple of 8 (so never '{', 123).
    const first = Buffer.alloc(Math.min(size, 1));
    readExactly(fd, file, first, 0);
    if (first[0] !== 0x7b) return readVersion3(fd, file, size);
    const { header, start } = readHeader(fd, file, size);
    if (header.version !== 1 && header.version !== 2) throw unsupportedVersion(file, header.version);
    const bytes = size - start;
    if (bytes !== header.bytes) {
      throw new CheckpointError(
        file,
        `payload has ${bytes} bytes, header says ${String(header.bytes)} (file cut short?)`,
      );
    }
    if (hashFile(fd, file, start, bytes) !== header.sha256) {
      throw new CheckpointError(file, 'checksum mismatch (file corrupted)');
    }
    if (header.version === 1) {
      const body = Buffer.alloc(bytes);
      readExactly(fd, file, body, start);
      try {
        return JSON.parse(body.toString('utf8')) as CheckpointPayload;
      } catch {
        throw new CheckpointError(file, 'payload is not valid JSON');
      }
    }
    return readVersion2(fd, file, start, size);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The newest valid checkpoint of a folder. Invalid files (cut short, corrupted) are reported through
 * `onInvalid` and the previous one is tried. Null when there is none.
 */
export function loadLatestCheckpoint(
  dir: string,
  options: { onInvalid?: (error: CheckpointError) => void } = {},
): {
  /** The checkpoint file that was loaded. */
  file: string;
  /** Its content. */
  payload: CheckpointPayload;
} | null {
  const files = listCheckpoints(dir).reverse();
  for (const file of files) {
    try {
      return { file, payload: readCheckpoint(file) };
    } catch (err) {
      const e = err instanceof CheckpointError ? err : new CheckpointError(file, String(err));
      options.onInvalid?.(e);
    }
  }
  return null;
}

/** Options of a {@link Checkpointer}. */
export interface CheckpointerOptions {
  /** Folder of the checkpoint files. */
  readonly dir: string;
  /** Save every this many outer steps (0: only when asked). */
  readonly every: number;
  /** Checkpoint files kept, newest first (default 2). */
  readonly keep?: number;
  /** Caller data stored beside the trainer state. */
  readonly extra?: () => unknown;
}

/** Saves a trainer's state every N steps (attach it once) and on demand (e.g. on interrupt). */
export class Checkpointer {
  private lastSaved = -1;
  constructor(
    /** The trainer whose state is saved. */
    readonly trainer: Trainer,
    /** Where and how often to save. */
    readonly options: CheckpointerOptions,
  ) {
    if (options.every > 0) {
      trainer.on('step', (e) => {
        if (e.step % options.every === 0) this.save();
      });
    }
  }

  /** Writes a checkpoint of the current state unless this step was already saved. */
  save(): string | null {
    if (this.trainer.step === this.lastSaved) return null;
    const file = writeCheckpoint(
      this.options.dir,
      { trainer: this.trainer.getState(), extra: this.options.extra?.(), savedAt: new Date().toISOString() },
      { keep: this.options.keep },
    );
    this.lastSaved = this.trainer.step;
    return file;
  }

  /** Restores the newest valid checkpoint into the trainer; returns its payload or null. */
  restore(onInvalid?: (error: CheckpointError) => void): CheckpointPayload | null {
    const found = loadLatestCheckpoint(this.options.dir, { onInvalid });
    if (!found) return null;
    this.trainer.setState(found.payload.trainer);
    this.lastSaved = this.trainer.step;
    return found.payload;
  }
}
