/**
 * The value codec: every record round-trips exactly, and a stored value that was damaged
 * (any bit), cut short, or well-checksummed but malformed is refused, never decoded.
 */
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  decodeCompactionPoint,
  decodeEntry,
  decodeHardState,
  decodeSnapshot,
  encodeCompactionPoint,
  encodeEntry,
  encodeHardState,
  encodeSnapshot,
  encodeSnapshotInSlices,
  FORMAT_VERSION,
} from '../../src/storage/codec.ts';
import { crc32c } from '../../src/storage/crc32.ts';
import { CorruptValueError } from '../../src/storage/errors.ts';
import { logIndex, term } from '../../src/util/ids.ts';
import {
  compactionPointArb,
  entryArb,
  hardStateArb,
  indexArb,
  snapshotArb,
} from './arbitraries.ts';

const codecs = [
  { name: 'entry', arb: entryArb, encode: encodeEntry, decode: decodeEntry },
  { name: 'hard state', arb: hardStateArb, encode: encodeHardState, decode: decodeHardState },
  { name: 'snapshot', arb: snapshotArb, encode: encodeSnapshot, decode: decodeSnapshot },
  {
    name: 'compaction point',
    arb: compactionPointArb,
    encode: encodeCompactionPoint,
    decode: decodeCompactionPoint,
  },
] as const;

/** A value framed like the codec frames it, around an arbitrary payload. */
function framed(record: unknown): Uint8Array {
  const payload = new Packr({ useRecords: false }).pack(record);
  const body = new Uint8Array(1 + payload.byteLength);
  body[0] = FORMAT_VERSION;
  body.set(payload, 1);
  const value = new Uint8Array(4 + body.byteLength);
  new DataView(value.buffer).setUint32(0, crc32c(body));
  value.set(body, 4);
  return value;
}

function flipBit(value: Uint8Array, bit: number): Uint8Array {
  const copy = value.slice();
  copy[bit >> 3] = (copy[bit >> 3] ?? 0) ^ (1 << (bit & 7));
  return copy;
}

describe.each(codecs)('codec: $name', ({ arb, encode, decode }) => {
  // The arbitraries and codecs are paired by position; the casts only widen them for `each`.
  const roundTrip = decode as (value: Uint8Array) => unknown;
  const encodeAny = encode as (value: unknown) => Uint8Array;

  it('round-trips exactly', () => {
    fc.assert(
      fc.property(arb as fc.Arbitrary<unknown>, (record) => {
        expect(roundTrip(encodeAny(record))).toEqual(record);
      }),
    );
  });

  it('refuses a value with any single bit flipped', () => {
    fc.assert(
      fc.property(arb as fc.Arbitrary<unknown>, fc.nat(), (record, bitSeed) => {
        const value = encodeAny(record);
        const damaged = flipBit(value, bitSeed % (value.byteLength * 8));
        expect(() => roundTrip(damaged)).toThrow(CorruptValueError);
      }),
    );
  });

  it('refuses a value cut short', () => {
    fc.assert(
      fc.property(arb as fc.Arbitrary<unknown>, fc.nat(), (record, cutSeed) => {
        const value = encodeAny(record);
        const cut = value.subarray(0, cutSeed % value.byteLength);
        expect(() => roundTrip(cut)).toThrow(CorruptValueError);
      }),
    );
  });
});

describe('codec: binary data', () => {
  it('decodes to a plain Uint8Array that does not alias the stored value', () => {
    const value = encodeEntry({
      kind: 'normal',
      index: logIndex(7),
      term: term(2),
      data: Uint8Array.of(1, 2, 3),
    });
    const decoded = decodeEntry(value);
    if (decoded.kind !== 'normal') throw new Error('expected a normal entry');

    expect(Object.getPrototypeOf(decoded.data)).toBe(Uint8Array.prototype);
    value.fill(0);
    expect([...decoded.data]).toEqual([1, 2, 3]);
  });
});

describe('codec: the format is pinned', () => {
  it('writes a noop entry as crc32c, version 1, then the MessagePack array [index, term, 0]', () => {
    const value = encodeEntry({ kind: 'noop', index: logIndex(2), term: term(1) });
    const body = Uint8Array.of(FORMAT_VERSION, 0x93, 0x02, 0x01, 0x00);

    expect([...value.subarray(4)]).toEqual([...body]);
    expect(new DataView(value.buffer).getUint32(0)).toBe(crc32c(body));
  });

  it('writes a normal entry as the MessagePack array [index, term, 1, data], byte for byte', () => {
    // The codec writes a normal entry's header itself (no MessagePack pass over the
    // data): it must be what msgpackr writes, at every width of each integer and of
    // the data's length.
    const widths = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 2 ** 32 - 1, 2 ** 32];
    const integerArb = fc.oneof(fc.constantFrom(...widths, Number.MAX_SAFE_INTEGER), indexArb);
    const lengthArb = fc.constantFrom(0, 1, 0xff, 0x100, 0xffff, 0x10000);
    fc.assert(
      fc.property(
        integerArb,
        integerArb,
        lengthArb,
        fc.nat(255),
        (index, entryTerm, length, fill) => {
          const data = new Uint8Array(length).fill(fill);
          const value = encodeEntry({
            kind: 'normal',
            index: logIndex(index),
            term: term(entryTerm),
            data,
          });
          expect(Buffer.from(value).equals(framed([index, entryTerm, 1, data]))).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('writes indexes past 2^32 exactly', () => {
    const index = logIndex(Number.MAX_SAFE_INTEGER);
    expect(decodeEntry(encodeEntry({ kind: 'noop', index, term: term(2 ** 40) }))).toEqual({
      kind: 'noop',
      index,
      term: 2 ** 40,
    });
  });
});

describe('codec: a valid checksum around a malformed record', () => {
  const malformed: ReadonlyArray<readonly [string, () => unknown]> = [
    ['an unknown entry kind', () => decodeEntry(framed([1, 1, 9]))],
    ['a negative index', () => decodeEntry(framed([-1, 1, 0]))],
    ['a fractional term', () => decodeEntry(framed([1, 1.5, 0]))],
    ['extra fields on a noop', () => decodeEntry(framed([1, 1, 0, 'x']))],
    ['normal entry data that is not binary', () => decodeEntry(framed([1, 1, 1, 'text']))],
    ['an unknown config change', () => decodeEntry(framed([1, 1, 2, 7, 'a']))],
    ['an empty node id', () => decodeEntry(framed([1, 1, 2, 0, '']))],
    ['a hard state with two fields', () => decodeHardState(framed([1, null]))],
    ['a vote for a number', () => decodeHardState(framed([1, 5, 0]))],
    [
      'snapshot voters that are not a list',
      () => decodeSnapshot(framed([1, 1, 'a', [], new Uint8Array()])),
    ],
    ['a compaction point as an object', () => decodeCompactionPoint(framed({ index: 1, term: 1 }))],
    ['trailing bytes after the record', () => decodeHardState(appendByte(framed([1, null, 0])))],
  ];

  it.each(malformed)('refuses %s', (_, decode) => {
    expect(decode).toThrow(CorruptValueError);
  });

  it('refuses an unknown format version even with a valid checksum', () => {
    const value = framed([1, null, 0]);
    value[4] = FORMAT_VERSION + 1;
    new DataView(value.buffer).setUint32(0, crc32c(value.subarray(4)));

    expect(() => decodeHardState(value)).toThrow(/unknown format version 2/);
  });
});

/** Adds a byte inside the checksummed body, then re-checksums, so only the decoder can object. */
function appendByte(value: Uint8Array): Uint8Array {
  const longer = new Uint8Array(value.byteLength + 1);
  longer.set(value);
  longer[value.byteLength] = 0xc0;
  new DataView(longer.buffer).setUint32(0, crc32c(longer.subarray(4)));
  return longer;
}

/**
 * A large snapshot record is framed with its checksum taken a megabyte at a time
 * (src/storage/level-storage.ts createSnapshot): the bytes must be the one-piece
 * encoding's, across every MessagePack bin size and across the checksum's slices.
 */
describe('codec: a snapshot record', () => {
  // The record is framed by hand (its data is not passed through msgpackr); the bytes
  // must stay what msgpackr writes for it under the codec's pinned options.
  const pinned = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

  it('is the bytes msgpackr frames for [index, term, voters, learners, data]', () => {
    fc.assert(
      fc.property(snapshotArb, (snapshot) => {
        const { index, term: snapshotTerm, config } = snapshot.metadata;
        const record = [index, snapshotTerm, config.voters, config.learners, snapshot.data];
        const payload = pinned.pack(record);
        const expected = new Uint8Array(5 + payload.byteLength);
        expected[4] = FORMAT_VERSION;
        expected.set(payload, 5);
        new DataView(expected.buffer).setUint32(0, crc32c(expected.subarray(4)));

        expect(Buffer.from(encodeSnapshot(snapshot)).equals(Buffer.from(expected))).toBe(true);
      }),
    );
  });
});

describe('codec: a snapshot encoded in slices', () => {
  it('is the same bytes as one piece, for any snapshot', async () => {
    await fc.assert(
      fc.asyncProperty(snapshotArb, async (snapshot) => {
        const sliced = await encodeSnapshotInSlices(snapshot, async () => {});
        expect(Buffer.from(sliced).equals(Buffer.from(encodeSnapshot(snapshot)))).toBe(true);
      }),
    );
  });

  it.each([0, 255, 256, 65_535, 65_536, (1 << 20) * 2 + 3])(
    'is the same bytes with %i bytes of data, and pauses once per extra megabyte',
    async (length) => {
      const data = Uint8Array.from({ length }, (_, i) => (i * 31) & 0xff);
      const snapshot = encodeSnapshot({
        metadata: { index: logIndex(70_000), term: term(9), config: { voters: [], learners: [] } },
        data,
      });
      let pauses = 0;
      const sliced = await encodeSnapshotInSlices(decodeSnapshot(snapshot), async () => {
        pauses++;
      });

      expect(Buffer.from(sliced).equals(Buffer.from(snapshot))).toBe(true);
      expect(pauses).toBe(Math.ceil((snapshot.byteLength - 4) / (1 << 20)) - 1);
    },
  );
});
