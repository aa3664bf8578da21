import { describe, expect, it } from 'vitest';
import { smallestNames } from '../../src/lock/smallest.ts';

/** The bounded listing behind listLocks and the console: the same as sort-then-slice. */
describe('smallestNames', () => {
  it('equals sorting every name and keeping the first `limit`, for any order and limit', () => {
    let seed = 7;
    const next = (): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed;
    };
    for (let round = 0; round < 200; round++) {
      const names = new Set<string>();
      const count = next() % 60;
      // Short names from a small alphabet: many share prefixes; code units past ASCII too.
      for (let i = 0; i < count; i++) {
        names.add(Array.from({ length: 1 + (next() % 4) }, () => 'ab/Zé'[next() % 5]).join(''));
      }
      const limit = next() % 12;
      const expected = [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).slice(0, limit);
      expect(smallestNames(names, limit)).toEqual(expected);
    }
  });

  it('returns nothing for a limit of 0 and everything sorted for an infinite one', () => {
    expect(smallestNames(['b', 'a'], 0)).toEqual([]);
    expect(smallestNames(['c', 'a', 'b'], Number.POSITIVE_INFINITY)).toEqual(['a', 'b', 'c']);
  });
});
