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
 * File format, version 2 (what writeCheckpoint writes; readCheckpoint also reads version 1):
 *
 *   line 1   header:   {"format":"bilevel-checkpoint","version":2,"bytes":N,"sha256":"…"}\n
 *   then the payload, N bytes, whose SHA-256 is in the header:
 *   line 2   manifest: {"payload":…,"arrays":[{"path":[…],"dtype":"float32","kind":"tree","offset":0,"length":n},…],"dataBytes":D}\n
 *   then     data:     D bytes, the arrays' entries as raw little-endian binary, one after another.
 *
 * `payload` is the checkpoint payload as JSON with `null` where each array of `arrays` goes: every typed array
 * (the Float32Values of tree data: tensors, optimizer moments, warm starts) and every plain number array that
 * is long (more than INLINE_MAX entries) or that JSON would not write exactly (NaN, ±Infinity, −0). `offset`
 * is in bytes from the start of the data section; `kind` says what is rebuilt: 'tree' a Float32Values,
 * 'typed' a typed array of `dtype`, 'array' a plain number array (stored as int32, float32 or float64,
 * whichever holds every entry exactly). Version 1 was the header line followed by the payload as JSON.
 */
const FORMAT = 'bilevel-checkpoint';
/** The version this module writes. */
export const CHECKPOINT_FORMAT_VERSION = 2;
/** Checkpoint files: `.ckpt` (version 2, binary); `.json` is still listed for version 1 files. */
const PATTERN = /^checkpoint-(\d{8})\.(ckpt|json)$/;
/** Plain number arrays up to this length stay in the JSON manifest (when JSON writes them exactly). */
const INLINE_MAX = 64;
/** Reads and writes go through the file system in pieces of at most this many bytes. */
const CHUNK = 16 * 1024 * 1024;
const LITTLE_ENDIAN = os.endianness() === 'LE';

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
} as const;
type DType = keyof typeof DTYPES;
type NumericArray = InstanceType<(typeof DTYPES)[DType]>;
type ArrayKind = 'tree' | 'typed' | 'array';

/** Where an array of the data section goes in the payload, and how it is stored. */
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

interface Manifest {
  readonly payload: unknown;
  readonly arrays: ArrayEntry[];
  readonly dataBytes: number;
}

function fileFor(dir: string, step: number): string {
  return path.join(dir, `checkpoint-${String(step).padStart(8, '0')}.ckpt`);
}

function dtypeOf(a: ArrayBufferView): DType | null {
  for (const [name, ctor] of Object.entries(DTYPES)) {
    if (a instanceof ctor) return name as DType;
  }
  return null;
}

/** The narrowest exact storage of a plain number array, or null when it stays in the JSON manifest. */
function packNumbers(a: readonly unknown[]): { dtype: DType; data: NumericArray } | null {
  const n = a.length;
  if (n === 0) return null;
  let int32 = true;
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
  if (n <= INLINE_MAX && jsonExact) return null;
  const dtype: DType = int32 ? 'int32' : float32 ? 'float32' : 'float64';
  return { dtype, data: DTYPES[dtype].from(a as number[]) };
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

/**
 * Splits a payload into its JSON part (with null where arrays go) and the arrays of the data section. Follows
 * JSON.stringify: objects with a `toJSON` method are left to it, other objects by their own enumerable keys.
 */
function splitPayload(payload: unknown): {
  manifest: Manifest;
  chunks: Uint8Array[];
} {
  const arrays: ArrayEntry[] = [];
  const chunks: Uint8Array[] = [];
  const at: (string | number)[] = [];
  const ancestors = new Set<object>();
  let offset = 0;
  const take = (data: NumericArray, dtype: DType, kind: ArrayKind): null => {
    arrays.push({ path: at.slice(), dtype, kind, offset, length: data.length });
    chunks.push(littleEndianBytes(data));
    offset += data.byteLength;
    return null;
  };
  const visit = (value: unknown): unknown => {
    if (value === null || typeof value !== 'object') return value;
    if (ArrayBuffer.isView(value)) {
      const dtype = dtypeOf(value);
      if (dtype === null) return value; // DataView, BigInt64Array…: left to JSON, as before
      return take(value as NumericArray, dtype, value instanceof Float32Values ? 'tree' : 'typed');
    }
    if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return value;
    if (ancestors.has(value))
      throw new TypeError(`checkpoint payload: circular reference at '${at.join('.')}'`);
    ancestors.add(value);
    try {
      if (Array.isArray(value)) {
        const packed = packNumbers(value);
        if (packed) return take(packed.data, packed.dtype, 'array');
        const out: unknown[] = new Array(value.length);
        for (let i = 0; i < value.length; i++) {
          at.push(i);
          out[i] = visit(value[i]);
          at.pop();
        }
        return out;
      }
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(value)) {
        at.push(key);
        const v = visit((value as Record<string, unknown>)[key]);
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
  const json = visit(payload);
  return { manifest: { payload: json, arrays, dataBytes: offset }, chunks };
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
 * Writes a checkpoint atomically into a temporary file that is flushed to disk and renamed into place: a
 * header line (format, version, byte length and SHA-256 of the rest), a JSON manifest line, then every tensor
 * and typed array (and every long number array) of the payload as raw little-endian binary — about 4 bytes a
 * float32 entry, with no large string ever built. Keeps the newest `keep` checkpoints of the folder. Returns
 * the file written.
 */
export function writeCheckpoint(
  dir: string,
  payload: CheckpointPayload,
  options: { keep?: number } = {},
): string {
  fs.mkdirSync(dir, { recursive: true });
  const { manifest, chunks } = splitPayload(payload);
  const manifestLine = Buffer.from(`${JSON.stringify(manifest)}\n`, 'utf8');
  const hash = createHash('sha256').update(manifestLine);
  let bytes = manifestLine.length;
  for (const c of chunks) {
    hashAll(hash, c);
    bytes += c.byteLength;
  }
  const header = JSON.stringify({
    format: FORMAT,
    version: CHECKPOINT_FORMAT_VERSION,
    bytes,
    sha256: hash.digest('hex'),
  });
  const target = fileFor(dir, payload.trainer.step);
  const tmp = `${target}.tmp-${process.pid}`;
  try {
    const fd = fs.openSync(tmp, 'w');
    try {
      writeAll(fd, Buffer.from(`${header}\n`, 'utf8'));
      writeAll(fd, manifestLine);
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
    const ctor = Object.prototype.hasOwnProperty.call(DTYPES, entry?.dtype) ? DTYPES[entry.dtype] : undefined;
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

/**
 * Reads and verifies one checkpoint file (length and checksum), or throws a {@link CheckpointError}. Reads
 * the current format (version 2) and the JSON files of version 1; a file of a newer version is refused with a
 * message naming it. The tensors' entries come back as {@link Float32Values} with the bits that were saved.
 */
export function readCheckpoint(file: string): CheckpointPayload {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const { header, start } = readHeader(fd, file, size);
    if (header.version !== 1 && header.version !== CHECKPOINT_FORMAT_VERSION) {
      throw new CheckpointError(
        file,
        `format version ${JSON.stringify(header.version)} is not supported (this @bilevel/core reads versions 1 and ${CHECKPOINT_FORMAT_VERSION}; a newer version wrote it?)`,
      );
    }
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
