import { DataError } from '@bilevel/core';
import { existsSync, readFileSync } from 'node:fs';
import { constants as zlibConstants, gunzipSync } from 'node:zlib';

/** Element types of the IDX format (LeCun & Cortes, the MNIST file format), by their type code. */
export type IdxDtype = 'uint8' | 'int8' | 'int16' | 'int32' | 'float32' | 'float64';

const DTYPES: Readonly<Record<number, { dtype: IdxDtype; bytes: number }>> = {
  0x08: { dtype: 'uint8', bytes: 1 },
  0x09: { dtype: 'int8', bytes: 1 },
  0x0b: { dtype: 'int16', bytes: 2 },
  0x0c: { dtype: 'int32', bytes: 4 },
  0x0d: { dtype: 'float32', bytes: 4 },
  0x0e: { dtype: 'float64', bytes: 8 },
};

/** The typed array holding an IDX file's values, by element type. */
export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

/** A parsed IDX file: element type, dimensions and the values in row-major order. */
export interface IdxArray {
  /** The file it was read from. */
  readonly file: string;
  /** Element type. */
  readonly dtype: IdxDtype;
  /** Dimensions, outermost first. */
  readonly dims: readonly number[];
  /** The values in row-major order. */
  readonly data: IdxData;
}

function hex(bytes: Uint8Array, count: number): string {
  return Array.from(bytes.subarray(0, count), (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Parses IDX bytes (already decompressed). Layout: two zero bytes, the type code, the number of
 * dimensions d, then d big-endian uint32 sizes, then the values, big-endian. Every inconsistency (magic
 * number, type code, byte length) raises a {@link DataError} naming `file` and what is wrong.
 */
export function parseIdx(bytes: Uint8Array, file = '(buffer)', note = ''): IdxArray {
  if (bytes.length < 4) {
    throw new DataError(
      `${file}: not an IDX file: only ${bytes.length} byte(s), the header needs at least 4${note}`,
      file,
    );
  }
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw new DataError(
      `${file}: not an IDX file: magic number 0x${hex(bytes, 4)} does not start with 0x0000 ` +
        '(expected 0x0000, a type code and the number of dimensions, e.g. 0x00000803 for uint8 images)',
      file,
    );
  }
  const type = DTYPES[bytes[2]];
  if (!type) {
    throw new DataError(
      `${file}: IDX magic number 0x${hex(bytes, 4)} has unknown type code 0x${bytes[2].toString(16).padStart(2, '0')} ` +
        '(known: 08 uint8, 09 int8, 0b int16, 0c int32, 0d float32, 0e float64)',
      file,
    );
  }
  const rank = bytes[3];
  if (rank === 0) throw new DataError(`${file}: IDX header declares 0 dimensions`, file);
  const headerBytes = 4 + 4 * rank;
  if (bytes.length < headerBytes) {
    throw new DataError(
      `${file}: truncated IDX header: ${rank} dimension(s) need ${headerBytes} header bytes, found ${bytes.length}${note}`,
      file,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const count = dims.reduce((a, b) => a * b, 1);
  const dataBytes = count * type.bytes;
  const expected = headerBytes + dataBytes;
  if (bytes.length !== expected) {
    const what = bytes.length < expected ? 'truncated IDX file' : 'IDX file has trailing bytes';
    throw new DataError(
      `${file}: ${what}: header declares ${dims.join('×')} ${type.dtype}, so expected ${expected} bytes ` +
        `(${headerBytes} header + ${dataBytes} data), found ${bytes.length}${note}`,
      file,
    );
  }
  const start = headerBytes;
  let data: IdxData;
  switch (type.dtype) {
    case 'uint8':
      data = bytes.subarray(start, expected);
      break;
    case 'int8':
      data = new Int8Array(bytes.buffer, bytes.byteOffset + start, count);
      break;
    case 'int16': {
      const a = new Int16Array(count);
      for (let i = 0; i < count; i++) a[i] = view.getInt16(start + 2 * i, false);
      data = a;
      break;
    }
    case 'int32': {
      const a = new Int32Array(count);
      for (let i = 0; i < count; i++) a[i] = view.getInt32(start + 4 * i, false);
      data = a;
      break;
    }
    case 'float32': {
      const a = new Float32Array(count);
      for (let i = 0; i < count; i++) a[i] = view.getFloat32(start + 4 * i, false);
      data = a;
      break;
    }
    case 'float64': {
      const a = new Float64Array(count);
      for (let i = 0; i < count; i++) a[i] = view.getFloat64(start + 8 * i, false);
      data = a;
      break;
    }
  }
  return { file, dtype: type.dtype, dims, data };
}

/** Whether the bytes begin with the gzip signature 1f 8b. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * Decompresses gzip bytes. A stream that ends early is decompressed as far as it goes and reported by the
 * caller together with the byte count it found; corrupt deflate data raises a {@link DataError}.
 */
export function gunzip(bytes: Uint8Array, file: string): {
  /** The decompressed bytes (as far as they go). */
  bytes: Uint8Array;
  /** Whether the stream was complete. */
  complete: boolean;
} {
  try {
    return { bytes: gunzipSync(bytes), complete: true };
  } catch (first) {
    let partial: Uint8Array;
    try {
      partial = gunzipSync(bytes, { finishFlush: zlibConstants.Z_SYNC_FLUSH });
    } catch {
      throw new DataError(`${file}: corrupt gzip data (${(first as Error).message})`, file);
    }
    return { bytes: partial, complete: false };
  }
}

/**
 * Reads an IDX file, gzip-compressed (detected by its signature, whatever the file name) or raw.
 * A missing, truncated or corrupt file raises a {@link DataError} that names the file and says what is
 * wrong, e.g. "expected 47040016 bytes (16 header + 47040000 data), found 1000".
 */
export function readIdx(file: string): IdxArray {
  if (!existsSync(file)) throw new DataError(`${file}: file not found`, file);
  const raw = new Uint8Array(readFileSync(file));
  if (!isGzip(raw)) return parseIdx(raw, file);
  const { bytes, complete } = gunzip(raw, file);
  const note = complete ? '' : ' after decompressing (the gzip stream itself ends early)';
  const parsed = parseIdx(bytes, file, note);
  if (!complete) {
    throw new DataError(
      `${file}: gzip stream is truncated or its checksum is wrong (the IDX content looks complete)`,
      file,
    );
  }
  return parsed;
}

/** Encodes an IDX file (big-endian), for tests and for users who write their own data. */
export function encodeIdx(dtype: IdxDtype, dims: readonly number[], values: ArrayLike<number>): Uint8Array {
  const code = Number(Object.keys(DTYPES).find((k) => DTYPES[Number(k)].dtype === dtype));
  const bytesPer = DTYPES[code].bytes;
  const count = dims.reduce((a, b) => a * b, 1);
  if (values.length !== count) {
    throw new Error(`encodeIdx: dims ${dims.join('×')} need ${count} values, got ${values.length}`);
  }
  const header = 4 + 4 * dims.length;
  const out = new Uint8Array(header + count * bytesPer);
  const view = new DataView(out.buffer);
  out[2] = code;
  out[3] = dims.length;
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  for (let i = 0; i < count; i++) {
    const o = header + i * bytesPer;
    const v = values[i];
    switch (dtype) {
      case 'uint8':
        view.setUint8(o, v);
        break;
      case 'int8':
        view.setInt8(o, v);
        break;
      case 'int16':
        view.setInt16(o, v, false);
        break;
      case 'int32':
        view.setInt32(o, v, false);
        break;
      case 'float32':
        view.setFloat32(o, v, false);
        break;
      case 'float64':
        view.setFloat64(o, v, false);
        break;
    }
  }
  return out;
}
