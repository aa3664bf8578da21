/**
 * RaftLog: the stable log in storage followed by unstable (not yet persisted) entries
 * or snapshot. These are the Log Matching rules of §5.3 at the level of one log, and the
 * commit/apply/stable bookkeeping the Ready seam depends on.
 */
import { describe, expect, it } from 'vitest';
import { RaftLog } from '../../src/raft/log.ts';
import { MemoryStorage } from '../../src/raft/storage.ts';
import type { Snapshot } from '../../src/raft/types.ts';
import { AssertionError } from '../../src/util/assert.ts';
import { logIndex as idx, term as tm } from '../../src/util/ids.ts';
import { entry, ids, logTerms } from './harness.ts';

const [a, b] = ids('a', 'b');

/** Storage holding entries 2.. with the given terms (index 1 is the bootstrap snapshot). */
function storageWith(terms: number[]): MemoryStorage {
  const storage = MemoryStorage.bootstrap({ voters: [a, b], learners: [] });
  storage.append(terms.map((t, i) => entry(i + 2, t)));
  return storage;
}

function logOver(terms: number[], commit = 1, applied = 1): RaftLog {
  return new RaftLog(storageWith(terms), idx(commit), idx(applied));
}

function indexes(entries: readonly { index: number }[] | undefined): number[] | undefined {
  return entries?.map((en) => en.index);
}

describe('RaftLog: indexes and terms', () => {
  it('a log over storage starts with what storage holds and nothing unstable', () => {
    const log = logOver([1, 2, 2]);

    expect(log.firstIndex()).toBe(2);
    expect(log.lastIndex()).toBe(4);
    expect(log.lastTerm()).toBe(2);
    expect(log.term(idx(1))).toBe(1); // the snapshot position still has a term
    expect(log.term(idx(0))).toBeUndefined();
    expect(log.term(idx(5))).toBeUndefined();
    expect(log.pendingEntries()).toEqual([]);
    expect(log.pendingSnapshot()).toBeNull();
  });

  it('refuses to start with commit past the last entry or applied past commit', () => {
    expect(() => logOver([1], 3, 1)).toThrow(AssertionError);
    expect(() => logOver([1, 1], 2, 3)).toThrow(AssertionError);
  });

  it('isUpToDate compares last terms first, then lengths (§5.4.1)', () => {
    const log = logOver([1, 2, 2]); // last entry 4@2

    expect(log.isUpToDate(idx(9), tm(1))).toBe(false);
    expect(log.isUpToDate(idx(3), tm(2))).toBe(false);
    expect(log.isUpToDate(idx(4), tm(2))).toBe(true);
    expect(log.isUpToDate(idx(2), tm(3))).toBe(true);
  });

  it('firstIndexOfTermAt and lastIndexWithTermAtMost find term boundaries for backtracking', () => {
    const log = logOver([1, 2, 2, 2, 4, 4, 5]); // indexes 2..8

    expect(log.firstIndexOfTermAt(idx(5))).toBe(3);
    expect(log.firstIndexOfTermAt(idx(7))).toBe(6);
    expect(log.firstIndexOfTermAt(idx(2))).toBe(2);
    expect(log.lastIndexWithTermAtMost(idx(8), tm(3))).toBe(5);
    expect(log.lastIndexWithTermAtMost(idx(8), tm(4))).toBe(7);
    expect(log.lastIndexWithTermAtMost(idx(20), tm(9))).toBe(8);
    expect(log.lastIndexWithTermAtMost(idx(8), tm(0))).toBe(0); // runs off the known log
  });
});

describe('RaftLog: append and truncate', () => {
  it('appended entries are unstable until the host persists them, and visible at once', () => {
    const log = logOver([1]);

    log.append([entry(3, 2), entry(4, 2)]);

    expect(log.lastIndex()).toBe(4);
    expect(log.term(idx(4))).toBe(2);
    expect(indexes(log.pendingEntries())).toEqual([3, 4]);
    expect(log.storage.lastIndex()).toBe(2);
  });

  it('an append that overlaps unstable entries replaces them from its first index on', () => {
    const log = logOver([1]);
    log.append([entry(3, 2), entry(4, 2), entry(5, 2)]);

    log.append([entry(4, 3)]);

    expect(logTerms(log)).toEqual([1, 2, 3]);
    expect(indexes(log.pendingEntries())).toEqual([3, 4]);
  });

  it('an append that overlaps stable entries shadows them; storage keeps the old ones until persisted', () => {
    const log = logOver([1, 1, 1]); // stable 2..4

    log.append([entry(3, 2)]);

    expect(log.lastIndex()).toBe(3);
    expect(logTerms(log)).toEqual([1, 2]);
    expect(log.storage.term(idx(3))).toBe(1);
    expect(log.storage.lastIndex()).toBe(4);
    expect(indexes(log.pendingEntries())).toEqual([3]);
  });

  it('refuses to rewrite committed entries or to leave a gap', () => {
    const log = logOver([1, 1], 3);

    expect(() => log.append([entry(3, 2)])).toThrow(AssertionError);
    expect(() => log.append([entry(5, 2)])).toThrow(AssertionError);
    expect(() => log.append([entry(4, 2)])).not.toThrow();
  });

  it('appendAfter keeps matching entries, truncates from the first conflict, and returns the last new index', () => {
    const log = logOver([1, 1, 2, 2]); // 2..5

    expect(log.appendAfter(idx(2), [entry(3, 1), entry(4, 2)])).toBe(4);
    expect(logTerms(log)).toEqual([1, 1, 2, 2]); // nothing changed, 5 is kept
    expect(log.pendingEntries()).toEqual([]);

    expect(log.appendAfter(idx(3), [entry(4, 2), entry(5, 3), entry(6, 3)])).toBe(6);
    expect(logTerms(log)).toEqual([1, 1, 2, 3, 3]);
    expect(indexes(log.pendingEntries())).toEqual([5, 6]);
  });

  it('appendAfter asserts rather than replace a committed entry (Log Matching)', () => {
    const log = logOver([1, 1, 2], 4);

    expect(() => log.appendAfter(idx(3), [entry(4, 3)])).toThrow(AssertionError);
  });

  it('entriesFrom returns stable then unstable entries, cut at bytesMax (at least one), or undefined when compacted', () => {
    const storage = storageWith([1, 1, 1]);
    const log = new RaftLog(storage, idx(1), idx(1));
    log.append([entry(5, 2, 'x'.repeat(10)), entry(6, 2, 'y'.repeat(10))]);
    const size = 24 + 'e2@1'.length;

    expect(indexes(log.entriesFrom(idx(2), Number.MAX_SAFE_INTEGER))).toEqual([2, 3, 4, 5, 6]);
    expect(indexes(log.entriesFrom(idx(2), 2 * size))).toEqual([2, 3]);
    expect(indexes(log.entriesFrom(idx(4), 1))).toEqual([4]);
    expect(indexes(log.entriesFrom(idx(4), size + 34))).toEqual([4, 5]);
    expect(log.entriesFrom(idx(7), 100)).toEqual([]);

    storage.createSnapshot(idx(3), { voters: [a, b], learners: [] }, new Uint8Array());
    storage.compact(idx(3));
    expect(log.entriesFrom(idx(3), 100)).toBeUndefined();
    expect(indexes(log.entriesFrom(idx(4), 1000))).toEqual([4, 5, 6]);
  });
});

describe('RaftLog: commit, apply, stable', () => {
  it('commitTo moves forward only, and never past the last entry', () => {
    const log = logOver([1, 1, 1]);

    expect(log.commitTo(idx(3))).toBe(true);
    expect(log.commitTo(idx(2))).toBe(false);
    expect(log.commitTo(idx(3))).toBe(false);
    expect(log.commitIndex).toBe(3);
    expect(() => log.commitTo(idx(5))).toThrow(AssertionError);
  });

  it('appliedTo moves forward only, and never past commit', () => {
    const log = logOver([1, 1, 1], 3, 1);

    log.appliedTo(idx(2));
    expect(log.appliedIndex).toBe(2);
    expect(() => log.appliedTo(idx(1))).toThrow(AssertionError);
    expect(() => log.appliedTo(idx(4))).toThrow(AssertionError);
  });

  it('nextCommittedEntries hands out (applied, commit], at least one entry per batch', () => {
    const log = logOver([1, 1, 1, 1], 4, 2);

    expect(indexes(log.nextCommittedEntries(Number.MAX_SAFE_INTEGER))).toEqual([3, 4]);
    expect(indexes(log.nextCommittedEntries(1))).toEqual([3]);
    log.append([entry(6, 2)]);
    log.commitTo(idx(6));
    expect(indexes(log.nextCommittedEntries(Number.MAX_SAFE_INTEGER))).toEqual([3, 4, 5, 6]);
  });

  it('stableTo forgets unstable entries once persisted, unless they were replaced meanwhile', () => {
    const log = logOver([1]);
    log.append([entry(3, 2), entry(4, 2)]);
    (log.storage as MemoryStorage).append([entry(3, 2), entry(4, 2)]); // the host persists them

    log.stableTo(idx(4), tm(1)); // not the term of 4: a different entry was persisted
    expect(indexes(log.pendingEntries())).toEqual([3, 4]);
    log.stableTo(idx(3), tm(2));
    expect(indexes(log.pendingEntries())).toEqual([4]);
    log.stableTo(idx(2), tm(1)); // below the unstable part: nothing to do
    expect(indexes(log.pendingEntries())).toEqual([4]);
    log.stableTo(idx(4), tm(2));
    expect(log.pendingEntries()).toEqual([]);
    expect(log.lastIndex()).toBe(4); // now read from storage
    expect(log.term(idx(4))).toBe(2);
  });
});

describe('RaftLog: unstable snapshot', () => {
  const snapshot: Snapshot = {
    metadata: { index: idx(10), term: tm(3), config: { voters: [a, b], learners: [] } },
    data: new Uint8Array([1, 2, 3]),
  };

  it('restore replaces the log with the snapshot until the host persists it', () => {
    const log = logOver([1, 1, 2], 2, 2);
    log.append([entry(5, 2)]);

    log.restore(snapshot);

    expect(log.pendingSnapshot()).toBe(snapshot);
    expect(log.pendingEntries()).toEqual([]);
    expect(log.firstIndex()).toBe(11);
    expect(log.lastIndex()).toBe(10);
    expect(log.lastTerm()).toBe(3);
    expect(log.term(idx(10))).toBe(3);
    expect(log.term(idx(4))).toBeUndefined();
    expect(log.commitIndex).toBe(10);
    expect(log.snapshot()).toBe(snapshot);
    // Nothing is handed out to apply until the snapshot itself is applied.
    expect(log.nextCommittedEntries(1000)).toEqual([]);
  });

  it('entries appended after a restored snapshot follow it', () => {
    const log = logOver([1]);
    log.restore(snapshot);

    log.append([entry(11, 3)]);

    expect(log.lastIndex()).toBe(11);
    expect(indexes(log.pendingEntries())).toEqual([11]);
    expect(log.pendingSnapshot()).toBe(snapshot);
  });

  it('committed entries after a pending snapshot are withheld until the snapshot is persisted and applied', () => {
    const log = logOver([1]);
    log.restore(snapshot);
    log.append([entry(11, 3), entry(12, 3)]);
    log.commitTo(idx(12));

    expect(log.nextCommittedEntries(1000)).toEqual([]);

    (log.storage as MemoryStorage).applySnapshot(snapshot);
    log.stableSnapshotTo(idx(10));
    log.appliedTo(idx(10));
    expect(indexes(log.nextCommittedEntries(1000))).toEqual([11, 12]);
  });

  it('stableSnapshotTo clears the pending snapshot only for its own index', () => {
    const log = logOver([1]);
    log.restore(snapshot);

    log.stableSnapshotTo(idx(9));
    expect(log.pendingSnapshot()).toBe(snapshot);
    log.stableSnapshotTo(idx(10));
    expect(log.pendingSnapshot()).toBeNull();
  });

  it('refuses to restore a snapshot at or below the commit index', () => {
    const log = logOver([1, 1, 1, 1, 1, 1, 1, 1, 1], 10, 1);

    expect(() => log.restore(snapshot)).toThrow(AssertionError);
  });
});
