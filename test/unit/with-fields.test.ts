import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { withFields } from '../../src/util/objects.ts';

// withFields replaces `{ ...base, ...fields }` on hot paths (see src/util/objects.ts); the
// lock state machine's objects are encoded key by key, so the copy must have the same
// keys, in the same order, with the same values, and leave its inputs as they were.
// (Except an own __proto__ key, which no base can have: see objects.ts; the last test.)
const key = fc.constantFrom(
  'type',
  'to',
  'from',
  'term',
  'lock',
  'kind',
  'mode',
  'requestIndex',
  'x',
);
const record = fc.dictionary(key, fc.oneof(fc.integer(), fc.string(), fc.constant(undefined)));

describe('withFields', () => {
  it('is the spread it replaces: keys, order and values', () => {
    fc.assert(
      fc.property(record, record, (base, fields) => {
        const before = JSON.stringify(Object.entries(base));
        const copy = withFields(base, fields);
        const spread = { ...base, ...fields };
        expect(Object.entries(copy)).toEqual(Object.entries(spread));
        expect(copy).not.toBe(base);
        expect(JSON.stringify(Object.entries(base))).toBe(before);
      }),
      { numRuns: 2_000 },
    );
  });

  it('lets the added fields win over the base', () => {
    expect(withFields({ kind: 'old', a: 1 }, { kind: 'lock' })).toEqual({ kind: 'lock', a: 1 });
    expect(Object.keys(withFields({ kind: 'old', a: 1 }, { kind: 'lock', b: 2 }))).toEqual([
      'kind',
      'a',
      'b',
    ]);
  });

  it('differs from the spread on an own __proto__ key (none reaches it: objects.ts)', () => {
    const base = JSON.parse('{"__proto__": {"kind": "semaphore"}, "lock": "a"}');
    expect(Object.keys({ ...base, x: 1 })).toEqual(['__proto__', 'lock', 'x']);
    expect(Object.keys(withFields(base, { x: 1 }))).toEqual(['lock', 'x']);
  });
});
