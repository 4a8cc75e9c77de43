/**
 * Float32 arrays as base64 text, exact to the bit (the responses of distributed-ES blocks travel in their JSON
 * results so). No tensor library here: the ES queue thread imports this module.
 */

/** Float32 values as base64 (exact, 4/3 bytes per byte; a block's responses travel so). */
export function encodeFloat32(values: Float32Array): string {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('base64');
}

/** Reads {@link encodeFloat32}'s string; throws when it is not a whole number of float32 values. */
export function decodeFloat32(text: string): Float32Array {
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length % 4 !== 0) throw new Error(`${bytes.length} bytes are not float32 values`);
  const out = new Float32Array(bytes.length / 4);
  Buffer.from(out.buffer).set(bytes);
  return out;
}
