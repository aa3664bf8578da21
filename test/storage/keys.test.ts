/** Index keys: LevelDB orders keys bytewise, so the encoding must preserve numeric order. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeIndexKey, encodeIndexKey, INDEX_KEY_BYTES } from '../../src/storage/keys.ts';
import { AssertionError } from '../../src/util/assert.ts';
import { type LogIndex, logIndex } from '../../src/util/ids.ts';

const safeIndex = fc.maxSafeNat().map(logIndex);

/** Bytewise comparison, as LevelDB's default comparator does it. */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const difference = (a[i] ?? 0) - (b[i] ?? 0);
    if (difference !== 0) return Math.sign(difference);
  }
  return Math.sign(a.length - b.length);
}

describe('index keys', () => {
  it('round-trip every safe integer >= 0', () => {
    fc.assert(
      fc.property(safeIndex, (index) => {
        const key = encodeIndexKey(index);
        expect(key.byteLength).toBe(INDEX_KEY_BYTES);
        expect(decodeIndexKey(key)).toBe(index);
      }),
    );
  });

  it('preserve order: bytewise key order equals numeric order', () => {
    fc.assert(
      fc.property(safeIndex, safeIndex, (a, b) => {
        expect(compareBytes(encodeIndexKey(a), encodeIndexKey(b))).toBe(Math.sign(a - b));
      }),
    );
  });

  it('preserve order around the 32-bit word boundary and at the ends', () => {
    const edges = [0, 1, 255, 256, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER];
    const keys = edges.map((edge) => encodeIndexKey(logIndex(edge)));
    const sorted = [...keys].sort(compareBytes);

    expect(sorted).toEqual(keys);
    expect([...encodeIndexKey(logIndex(2 ** 32 + 1))]).toEqual([0, 0, 0, 1, 0, 0, 0, 1]);
  });

  it('reject keys of the wrong width or past the safe range', () => {
    expect(decodeIndexKey(new Uint8Array(7))).toBeUndefined();
    expect(decodeIndexKey(new Uint8Array(9))).toBeUndefined();
    expect(decodeIndexKey(new Uint8Array(8).fill(0xff))).toBeUndefined();
    expect(() => encodeIndexKey(-1 as LogIndex)).toThrow(AssertionError);
    expect(() => encodeIndexKey(0.5 as LogIndex)).toThrow(AssertionError);
  });

  it('decode a key that is a view into a larger buffer', () => {
    const padded = new Uint8Array(12);
    padded.set(encodeIndexKey(logIndex(42)), 3);

    expect(decodeIndexKey(padded.subarray(3, 11))).toBe(42);
  });
});
