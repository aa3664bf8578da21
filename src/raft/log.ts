import { assert } from '../util/assert.ts';
import { type LogIndex, logIndex, type Term } from '../util/ids.ts';
import type { Storage } from './storage.ts';
import { takeWithinBytes } from './storage.ts';
import { type Entry, entrySizeBytes, type Snapshot } from './types.ts';

/**
 * The log as the core sees it: what stable storage holds, followed by what has been
 * appended but not yet persisted (`unstable`). A snapshot received from the leader is
 * also unstable until the host persists it.
 *
 * Invariant: appliedIndex <= commitIndex <= lastIndex().
 * Invariant: commitIndex and appliedIndex never decrease.
 * Invariant: no entry at or below commitIndex is ever replaced (Log Matching, §5.3).
 */
export class RaftLog {
  commitIndex: LogIndex;
  appliedIndex: LogIndex;
  private unstableSnapshot: Snapshot | null = null;
  private unstableEntries: Entry[] = [];
  /** Index of unstableEntries[0], or of the next entry when the list is empty. */
  private unstableOffset: LogIndex;

  constructor(
    readonly storage: Storage,
    commitIndex: LogIndex,
    appliedIndex: LogIndex,
  ) {
    this.unstableOffset = logIndex(storage.lastIndex() + 1);
    this.commitIndex = commitIndex;
    this.appliedIndex = appliedIndex;
    assert(commitIndex <= this.lastIndex(), `commit ${commitIndex} past last ${this.lastIndex()}`);
    assert(appliedIndex <= commitIndex, `applied ${appliedIndex} past commit ${commitIndex}`);
  }

  firstIndex(): LogIndex {
    if (this.unstableSnapshot !== null) return logIndex(this.unstableSnapshot.metadata.index + 1);
    return this.storage.firstIndex();
  }

  lastIndex(): LogIndex {
    const lastUnstable = this.unstableEntries.at(-1);
    if (lastUnstable !== undefined) return lastUnstable.index;
    if (this.unstableSnapshot !== null) return this.unstableSnapshot.metadata.index;
    return this.storage.lastIndex();
  }

  /** The term at `index`, or undefined when compacted or past the end. */
  term(index: LogIndex): Term | undefined {
    if (index > this.lastIndex()) return undefined;
    if (index >= this.unstableOffset)
      return this.unstableEntries[index - this.unstableOffset]?.term;
    const snapshot = this.unstableSnapshot;
    if (snapshot !== null) {
      return index === snapshot.metadata.index ? snapshot.metadata.term : undefined;
    }
    return this.storage.term(index);
  }

  lastTerm(): Term {
    const lastTerm = this.term(this.lastIndex());
    assert(lastTerm !== undefined, 'the last entry always has a known term');
    return lastTerm;
  }

  matchTerm(index: LogIndex, term: Term): boolean {
    return this.term(index) === term;
  }

  /** §5.4.1: a candidate's log is at least as up to date as ours. */
  isUpToDate(lastIndex: LogIndex, lastTerm: Term): boolean {
    const ourLastTerm = this.lastTerm();
    return lastTerm > ourLastTerm || (lastTerm === ourLastTerm && lastIndex >= this.lastIndex());
  }

  /** All entries in [lo, hi), which must be within the log. */
  entriesBetween(lo: LogIndex, hi: LogIndex): readonly Entry[] {
    return this.slice(lo, hi, Number.POSITIVE_INFINITY);
  }

  /**
   * Entries in [lo, lastIndex()], at most about `bytesMax`, or undefined when some of
   * them are compacted and a snapshot must be sent instead.
   */
  entriesFrom(lo: LogIndex, bytesMax: number): readonly Entry[] | undefined {
    if (lo < this.firstIndex()) return undefined;
    return this.slice(lo, logIndex(this.lastIndex() + 1), bytesMax);
  }

  private slice(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[] {
    if (lo >= hi) return [];
    const offset = this.unstableOffset;
    if (lo >= offset)
      return takeWithinBytes(this.unstableEntries, lo - offset, hi - offset, bytesMax);
    const stableHi = logIndex(Math.min(hi, offset));
    const stable = [...this.storage.entries(lo, stableHi, bytesMax)];
    if (stableHi === hi || stable.length < stableHi - lo) return stable;
    const spentBytes = stable.reduce((sum, entry) => sum + entrySizeBytes(entry), 0);
    const unstable = takeWithinBytes(this.unstableEntries, 0, hi - offset, bytesMax, spentBytes);
    return stable.concat(unstable);
  }

  /**
   * Appends entries from the leader after the entry at prevLogIndex (which must match),
   * replacing any conflicting suffix. Returns the index of the last new entry.
   */
  appendAfter(prevLogIndex: LogIndex, entries: readonly Entry[]): LogIndex {
    const lastNewIndex = logIndex(prevLogIndex + entries.length);
    const conflict = entries.find((entry) => !this.matchTerm(entry.index, entry.term));
    if (conflict !== undefined) {
      assert(
        conflict.index > this.commitIndex,
        `entry ${conflict.index} conflicts with the committed log (commit ${this.commitIndex})`,
      );
      this.append(entries.slice(conflict.index - prevLogIndex - 1));
    }
    return lastNewIndex;
  }

  /** Appends entries at their indexes, truncating whatever they overlap. */
  append(entries: readonly Entry[]): void {
    const first = entries[0];
    if (first === undefined) return;
    assert(first.index > this.commitIndex, `append at ${first.index} would rewrite committed log`);
    assert(first.index <= this.lastIndex() + 1, `append at ${first.index} leaves a gap`);
    if (first.index <= this.unstableOffset) {
      this.unstableOffset = first.index;
      this.unstableEntries = [...entries];
    } else {
      this.unstableEntries.length = first.index - this.unstableOffset;
      this.unstableEntries.push(...entries);
    }
  }

  /** The first index of the term at `index` in our log, for the fast-backtracking hint. */
  firstIndexOfTermAt(index: LogIndex): LogIndex {
    const hintTerm = this.term(index);
    let first = index;
    while (first > this.firstIndex() && this.term(logIndex(first - 1)) === hintTerm) {
      first = logIndex(first - 1);
    }
    return first;
  }

  /** The last index at or below `index` whose term is <= `term`, for the leader's backtracking. */
  lastIndexWithTermAtMost(index: LogIndex, term: Term): LogIndex {
    let candidate = logIndex(Math.min(index, this.lastIndex()));
    for (;;) {
      const candidateTerm = this.term(candidate);
      if (candidateTerm === undefined || candidateTerm <= term) return candidate;
      candidate = logIndex(candidate - 1);
    }
  }

  commitTo(index: LogIndex): boolean {
    if (index <= this.commitIndex) return false;
    assert(index <= this.lastIndex(), `commit ${index} is past the last entry ${this.lastIndex()}`);
    this.commitIndex = index;
    return true;
  }

  appliedTo(index: LogIndex): void {
    assert(index >= this.appliedIndex, `applied index goes back: ${index} < ${this.appliedIndex}`);
    assert(index <= this.commitIndex, `applied ${index} is past commit ${this.commitIndex}`);
    this.appliedIndex = index;
  }

  /** Committed entries the host has not applied yet; none while a snapshot waits to be applied. */
  nextCommittedEntries(bytesMax: number): readonly Entry[] {
    return this.committedEntriesAfter(this.appliedIndex, this.commitIndex, bytesMax);
  }

  /**
   * Committed entries after `index`, up to `limit` at most; none while a snapshot waits
   * to be applied.
   */
  committedEntriesAfter(index: LogIndex, limit: LogIndex, bytesMax: number): readonly Entry[] {
    if (this.unstableSnapshot !== null) return [];
    const lo = logIndex(Math.max(index + 1, this.firstIndex()));
    return this.slice(lo, logIndex(Math.min(this.commitIndex, limit) + 1), bytesMax);
  }

  pendingEntries(): readonly Entry[] {
    return this.unstableEntries;
  }

  pendingSnapshot(): Snapshot | null {
    return this.unstableSnapshot;
  }

  /**
   * The last index whose entry is on stable storage and still part of this log: the
   * entries after it are unstable (appended, maybe replacing stored ones, not yet
   * persisted). Only for a log without a pending snapshot, which no leader has.
   */
  lastPersistedIndex(): LogIndex {
    assert(this.unstableSnapshot === null, 'a log with a pending snapshot has no durable tail');
    return logIndex(this.unstableOffset - 1);
  }

  /** Whether the entry at (`index`, `term`) is still waiting to be persisted. */
  isUnstable(index: LogIndex, term: Term): boolean {
    return index >= this.unstableOffset && this.term(index) === term;
  }

  /** The host persisted entries up to `index`; forget them unless they were replaced meanwhile. */
  stableTo(index: LogIndex, term: Term): void {
    if (index < this.unstableOffset) return;
    if (this.term(index) !== term) return;
    this.unstableEntries.splice(0, index - this.unstableOffset + 1);
    this.unstableOffset = logIndex(index + 1);
  }

  stableSnapshotTo(index: LogIndex): void {
    if (this.unstableSnapshot?.metadata.index === index) this.unstableSnapshot = null;
  }

  /** Replaces the log with a snapshot from the leader; the host persists and applies it next. */
  restore(snapshot: Snapshot): void {
    const index = snapshot.metadata.index;
    assert(
      index > this.commitIndex,
      `restore(${index}) would move commit back from ${this.commitIndex}`,
    );
    this.unstableSnapshot = snapshot;
    this.unstableEntries = [];
    this.unstableOffset = logIndex(index + 1);
    this.commitIndex = index;
  }

  snapshot(): Snapshot {
    return this.unstableSnapshot ?? this.storage.snapshot();
  }

  /** Whether snapshot().data can be had now, without waiting for a disk (see Storage). */
  snapshotDataReady(): boolean {
    return this.unstableSnapshot !== null || (this.storage.snapshotDataReady?.() ?? true);
  }
}
