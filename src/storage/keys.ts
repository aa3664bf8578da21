import { assert } from '../util/assert.ts';
import { type LogIndex, logIndex } from '../util/ids.ts';

/**
 * Log keys are fixed-width 8-byte big-endian unsigned integers, so that LevelDB's
 * bytewise key order is numeric index order: iterating the `log` sublevel walks the
 * log from first to last, and a range bound is just an encoded index.
 */
export const INDEX_KEY_BYTES = 8;

const TWO_POW_32 = 2 ** 32;

export function encodeIndexKey(index: LogIndex): Uint8Array {
  assert(
    Number.isSafeInteger(index) && index >= 0,
    `index key needs a safe integer >= 0: ${index}`,
  );
  const key = new Uint8Array(INDEX_KEY_BYTES);
  const view = new DataView(key.buffer);
  // Split instead of BigInt: a safe integer's high word fits in 21 bits.
  view.setUint32(0, Math.floor(index / TWO_POW_32));
  view.setUint32(4, index % TWO_POW_32);
  return key;
}

/**
 * The index a key names, or undefined when the key is not a valid index key (wrong
 * width, or past Number.MAX_SAFE_INTEGER). Stored keys are data, so a bad one is
 * corruption for the caller to report, not an assertion.
 */
export function decodeIndexKey(key: Uint8Array): LogIndex | undefined {
  if (key.byteLength !== INDEX_KEY_BYTES) return undefined;
  const view = new DataView(key.buffer, key.byteOffset, key.byteLength);
  const index = view.getUint32(0) * TWO_POW_32 + view.getUint32(4);
  return Number.isSafeInteger(index) ? logIndex(index) : undefined;
}

/**
 * A snapshot chunk's key: its generation (8 bytes) then its position (4 bytes), both
 * big-endian, so that one generation's chunks are one key range, in order.
 */
export const CHUNK_KEY_BYTES = INDEX_KEY_BYTES + 4;

export function encodeChunkKey(generation: number, position: number): Uint8Array {
  assert(
    Number.isSafeInteger(position) && position >= 0 && position < TWO_POW_32,
    `chunk position needs a 32-bit integer: ${position}`,
  );
  const key = new Uint8Array(CHUNK_KEY_BYTES);
  key.set(encodeIndexKey(logIndex(generation)));
  new DataView(key.buffer).setUint32(INDEX_KEY_BYTES, position);
  return key;
}

/** [generation, position], or undefined when the key is not a chunk key. */
export function decodeChunkKey(key: Uint8Array): readonly [number, number] | undefined {
  if (key.byteLength !== CHUNK_KEY_BYTES) return undefined;
  const generation = decodeIndexKey(key.subarray(0, INDEX_KEY_BYTES));
  if (generation === undefined) return undefined;
  const view = new DataView(key.buffer, key.byteOffset, key.byteLength);
  return [generation, view.getUint32(INDEX_KEY_BYTES)];
}
