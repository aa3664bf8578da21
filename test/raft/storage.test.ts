/**
 * MemoryStorage: the stable log, hard state and snapshot as the core reads them (§5.3
 * for the log, §7 for compaction: the compacted position keeps its term so that the
 * leader can still check prevLogTerm against it).
 */
import { describe, expect, it } from 'vitest';
import { MemoryStorage, takeWithinBytes } from '../../src/raft/storage.ts';
import { AssertionError } from '../../src/util/assert.ts';
import { logIndex as idx, term as tm } from '../../src/util/ids.ts';
import { entry, hardState, ids, storedTerms } from './harness.ts';

const [a, b, c] = ids('a', 'b', 'c');
const config = { voters: [a, b, c], learners: [] };

function storageWith(terms: number[]): MemoryStorage {
  const storage = MemoryStorage.bootstrap(config);
  storage.append(terms.map((t, i) => entry(i + 2, t)));
  return storage;
}

describe('MemoryStorage: a new store', () => {
  it('bootstrap holds the founding snapshot at index 1, term 1, with the config sorted', () => {
    const storage = MemoryStorage.bootstrap({ voters: [c, a, b], learners: [] });

    expect(storage.snapshot().metadata).toEqual({ index: 1, term: 1, config });
    expect(storage.firstIndex()).toBe(2);
    expect(storage.lastIndex()).toBe(1);
    expect(storage.term(idx(1))).toBe(1);
    expect(storage.term(idx(0))).toBeUndefined();
    expect(storage.term(idx(2))).toBeUndefined();
    expect(storage.initialState()).toEqual({ hardState: hardState(1, null, 1), config });
  });

  it('joining knows nothing: an empty config and an empty log at index 0, term 0', () => {
    const storage = MemoryStorage.joining();

    expect(storage.initialState()).toEqual({
      hardState: hardState(0, null, 0),
      config: { voters: [], learners: [] },
    });
    expect(storage.firstIndex()).toBe(1);
    expect(storage.lastIndex()).toBe(0);
    expect(storage.term(idx(0))).toBe(0);
  });

  it('setHardState is what initialState reports after a restart', () => {
    const storage = MemoryStorage.bootstrap(config);

    storage.setHardState(hardState(4, b, 1));

    expect(storage.initialState().hardState).toEqual(hardState(4, b, 1));
  });
});

describe('MemoryStorage: append', () => {
  it('appends contiguous entries after the last one', () => {
    const storage = storageWith([1, 2, 2]);

    expect(storage.lastIndex()).toBe(4);
    expect(storedTerms(storage)).toEqual([1, 2, 2]);
    expect(storage.term(idx(3))).toBe(2);
  });

  it('an append that starts inside the log replaces everything from there on', () => {
    const storage = storageWith([1, 2, 2, 2]);

    storage.append([entry(4, 3)]);

    expect(storage.lastIndex()).toBe(4);
    expect(storedTerms(storage)).toEqual([1, 2, 3]);
    expect(storage.term(idx(5))).toBeUndefined();
  });

  it('refuses a gap, and entries at or below the compacted index', () => {
    const storage = storageWith([1, 1]);

    expect(() => storage.append([entry(5, 1)])).toThrow(AssertionError);
    expect(() => storage.append([entry(1, 1)])).toThrow(AssertionError);
    expect(() => storage.append([entry(4, 1), entry(6, 1)])).toThrow(AssertionError);
  });

  it('entries(lo, hi) returns [lo, hi), cut at bytesMax but never empty, and checks its range', () => {
    const storage = storageWith([1, 1, 1, 1]); // each entry is 24 + 4 bytes

    expect(storage.entries(idx(2), idx(6), 1000).map((en) => en.index)).toEqual([2, 3, 4, 5]);
    expect(storage.entries(idx(3), idx(5), 1000).map((en) => en.index)).toEqual([3, 4]);
    expect(storage.entries(idx(2), idx(6), 56).map((en) => en.index)).toEqual([2, 3]);
    expect(storage.entries(idx(2), idx(6), 1).map((en) => en.index)).toEqual([2]);
    expect(storage.entries(idx(4), idx(4), 1000)).toEqual([]);
    expect(() => storage.entries(idx(1), idx(3), 1000)).toThrow(AssertionError);
    expect(() => storage.entries(idx(2), idx(7), 1000)).toThrow(AssertionError);
    expect(() => storage.entries(idx(4), idx(3), 1000)).toThrow(AssertionError);
  });

  it('takeWithinBytes takes at least one entry only when nothing was spent before', () => {
    const entries = [entry(2, 1), entry(3, 1)];

    expect(takeWithinBytes(entries, 0, 2, 1)).toHaveLength(1);
    expect(takeWithinBytes(entries, 0, 2, 1, 10)).toHaveLength(0);
    expect(takeWithinBytes(entries, 0, 2, 1000, 10)).toHaveLength(2);
  });
});

describe('MemoryStorage: snapshots and compaction (§7)', () => {
  it('createSnapshot records the term of its index and the config and data it is given', () => {
    const storage = storageWith([1, 2, 2, 3]);
    const data = new Uint8Array([7, 7]);

    const snapshot = storage.createSnapshot(idx(4), config, data);

    expect(snapshot.metadata).toEqual({ index: 4, term: 2, config });
    expect(storage.snapshot()).toBe(snapshot);
    expect(storage.snapshot().data).toBe(data);
    // Taking a snapshot does not by itself drop the log.
    expect(storage.firstIndex()).toBe(2);
  });

  it('createSnapshot refuses to go backwards or to snapshot an index it has no term for', () => {
    const storage = storageWith([1, 2]);
    storage.createSnapshot(idx(3), config, new Uint8Array());

    expect(() => storage.createSnapshot(idx(2), config, new Uint8Array())).toThrow(AssertionError);
    expect(() => storage.createSnapshot(idx(9), config, new Uint8Array())).toThrow(AssertionError);
  });

  it('compact drops entries up to the index, but still knows the term of the compacted index', () => {
    const storage = storageWith([1, 2, 2, 3, 3]); // 2..6
    storage.createSnapshot(idx(5), config, new Uint8Array());

    storage.compact(idx(4));

    expect(storage.firstIndex()).toBe(5);
    expect(storage.lastIndex()).toBe(6);
    expect(storage.term(idx(4))).toBe(2);
    expect(storage.term(idx(3))).toBeUndefined();
    expect(storedTerms(storage)).toEqual([3, 3]);
    expect(() => storage.entries(idx(4), idx(6), 1000)).toThrow(AssertionError);

    storage.compact(idx(3)); // already compacted: nothing happens
    expect(storage.firstIndex()).toBe(5);
  });

  it('compact refuses to go past the snapshot', () => {
    const storage = storageWith([1, 2, 2]);
    storage.createSnapshot(idx(3), config, new Uint8Array());

    expect(() => storage.compact(idx(4))).toThrow(AssertionError);
  });

  it('appending after compaction continues at the next index', () => {
    const storage = storageWith([1, 2]);
    storage.createSnapshot(idx(3), config, new Uint8Array());
    storage.compact(idx(3));

    storage.append([entry(4, 2)]);

    expect(storage.firstIndex()).toBe(4);
    expect(storage.lastIndex()).toBe(4);
    expect(() => storage.append([entry(3, 2)])).toThrow(AssertionError);
  });

  it('applySnapshot replaces the whole log with a snapshot received from the leader', () => {
    const storage = storageWith([1, 1, 1]);
    const received = {
      metadata: { index: idx(10), term: tm(4), config },
      data: new Uint8Array([1]),
    };

    storage.applySnapshot(received);

    expect(storage.snapshot()).toBe(received);
    expect(storage.firstIndex()).toBe(11);
    expect(storage.lastIndex()).toBe(10);
    expect(storage.term(idx(10))).toBe(4);
    expect(storage.term(idx(4))).toBeUndefined();
    const older = { metadata: { index: idx(5), term: tm(4), config }, data: new Uint8Array() };
    expect(() => storage.applySnapshot(older)).toThrow(AssertionError);
  });
});
