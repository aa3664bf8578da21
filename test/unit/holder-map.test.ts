/**
 * HolderMap stands in for a Map of a lock's holders: after any sequence of sets and
 * deletes it answers and iterates exactly as a Map given the same sequence, insertion
 * order included (snapshots list holders in it).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HolderMap } from '../../src/lock/holder-map.ts';

type Op =
  | { readonly kind: 'set'; readonly key: number; readonly value: string }
  | { readonly kind: 'delete'; readonly key: number };

const keyArb = fc.integer({ min: 1, max: 5 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), key: keyArb, value: fc.string({ maxLength: 3 }) }),
  fc.record({ kind: fc.constant('delete' as const), key: keyArb }),
);

describe('HolderMap', () => {
  it('answers and iterates as a Map after any sets and deletes', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 40 }), (ops) => {
        const model = new Map<number, string>();
        const holders = new HolderMap<number, string>();
        for (const op of ops) {
          if (op.kind === 'set') {
            model.set(op.key, op.value);
            holders.set(op.key, op.value);
          } else {
            expect(holders.delete(op.key)).toBe(model.delete(op.key));
          }
          expect(holders.size).toBe(model.size);
          expect([...holders.keys()]).toEqual([...model.keys()]);
          expect([...holders.values()]).toEqual([...model.values()]);
          for (const key of [1, 2, 3, 4, 5, 6]) {
            expect(holders.get(key)).toBe(model.get(key));
            expect(holders.has(key)).toBe(model.has(key));
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it('keeps a re-set key in its place among several', () => {
    const holders = new HolderMap<number, string>();
    holders.set(1, 'a').set(2, 'b').set(1, 'c');

    expect([...holders.keys()]).toEqual([1, 2]);
    expect([...holders.values()]).toEqual(['c', 'b']);
  });
});
