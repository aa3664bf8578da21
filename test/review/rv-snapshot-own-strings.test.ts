/**
 * Review of 0cd8813 (decodeLockSnapshot walks the decoded snapshot with withOwnStrings to
 * ENTRY_NESTING_MAX levels, replacing each string of 13 characters or more with a copy:
 * a latin1 round trip, or for wider text the key of a one-property object).
 *
 * The walk must change no value: whatever bytes msgpackr decodes, decodeLockSnapshot must
 * give the same value as msgpackr's own unpack under the pinned options, re-encode to the
 * same bytes as that value does, touch nothing a later decode sees (msgpackr's caches), and pollute no
 * prototype. Probed with strings of every kind (lone surrogates, astral, latin1 high
 * half, numeric-looking), keys such as __proto__ / constructor / array-index strings, and
 * nesting past the walk's bound. HELD on 0cd8813.
 */
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import type { LockSnapshot } from '../../src/lock/index.ts';
import { decodeLockSnapshot, encodeLockSnapshot } from '../../src/node/entry-codec.ts';

const OPTIONS = { useRecords: false, mapsAsObjects: true, int64AsType: 'number' } as const;
const plain = new Packr(OPTIONS);

const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }), // lone surrogates included
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.string({
    unit: fc.constantFrom('a', 'é', 'ÿ', '€', '\ud800', '\udc00', '😀', '0'),
    minLength: 10,
    maxLength: 40,
  }),
  fc.constantFrom(
    '__proto__',
    'constructor',
    'prototype',
    '4294967294',
    '12345678901234',
    'toString',
  ),
);
const key = fc.oneof(text, fc.constantFrom('__proto__', 'constructor', '0', '1', 'length'));
const { tree } = fc.letrec((tie) => ({
  tree: fc.oneof(
    { depthSize: 'small', maxDepth: 22 },
    text,
    fc.integer(),
    fc.double({ noNaN: true }),
    fc.boolean(),
    fc.constant(null),
    fc.uint8Array({ maxLength: 8 }),
    fc.array(tie('tree'), { maxLength: 4 }),
    fc.dictionary(key, tie('tree'), { maxKeys: 4 }),
  ),
}));

function deep(levels: number, leaf: unknown): unknown {
  let value = leaf;
  for (let i = 0; i < levels; i++) value = i % 2 === 0 ? [value] : { k: value };
  return value;
}

describe('rv-own-strings: decodeLockSnapshot changes no value', () => {
  it('equals msgpackr unpack, re-encodes to the same bytes, and leaves later decodes alone', () => {
    fc.assert(
      fc.property(tree, (value) => {
        const bytes = new Packr(OPTIONS).pack(value);
        const reference = plain.unpack(bytes);
        const decoded = decodeLockSnapshot(bytes) as unknown;
        expect(decoded).toEqual(reference);
        // Against msgpackr's own decode re-encoded (msgpackr itself renames a __proto__ key
        // to __proto_, so the original bytes are not always what comes back).
        const again = encodeLockSnapshot(reference as LockSnapshot);
        expect(
          Buffer.from(encodeLockSnapshot(decoded as LockSnapshot)).equals(Buffer.from(again)),
        ).toBe(true);
        // A second decode of the same bytes is not disturbed by the walk of the first.
        expect(decodeLockSnapshot(bytes)).toEqual(reference);
        expect(plain.unpack(bytes)).toEqual(reference);
        expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      }),
      { numRuns: 3000, seed: 424242 },
    );
  });

  it('strings past the bound, __proto__ keys and lone surrogates survive as msgpackr gives them', () => {
    const long = `${'\ud800'}lone-surrogate-and-more-than-13`;
    const value = {
      __proto__x: 1,
      keys: { ['__proto__']: 'proto-valued-long-string', constructor: 'constructor-long-string' },
      surrogate: long,
      astral: '😀😀😀😀😀😀😀😀 long enough',
      deep: deep(30, 'a string deeper than the walk goes'),
    };
    const bytes = new Packr(OPTIONS).pack(JSON.parse(JSON.stringify(value)));
    const decoded = decodeLockSnapshot(bytes) as unknown as Record<string, unknown>;
    expect(decoded).toEqual(plain.unpack(bytes));
    expect(Object.getPrototypeOf(decoded.keys)).toBe(Object.prototype);
  });
});
