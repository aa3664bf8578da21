import { assert } from '../util/assert.ts';
import { type LogIndex, logIndex } from '../util/ids.ts';
import type { SnapshotMetadata } from './types.ts';

/**
 * The leader's view of one follower (etcd's Progress).
 *
 * - probe: we do not know where the follower's log matches ours. Send one
 *   AppendEntries and wait for its answer (or a heartbeat response) before the next.
 * - replicate: the follower is keeping up. Send optimistically, pipelining up to
 *   `inflightMessagesMax` batches that have not been acknowledged.
 * - snapshot: the entries the follower needs are compacted. Stream a snapshot in
 *   chunks, a bounded window of them in flight, and pause appends until it is installed.
 *
 * Invariant: matchIndex < nextIndex.
 */
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export interface SnapshotTransfer {
  readonly metadata: SnapshotMetadata;
  readonly data: Uint8Array;
  /** Bytes the follower has confirmed. */
  ackedOffset: number;
  /** Where the next chunk starts; chunks in [ackedOffset, sentOffset) are in flight. */
  sentOffset: number;
  /** Bumped at every rewind; chunks carry it so that answers to older rounds are ignored. */
  round: number;
  /** Heartbeat ticks since the last chunk went out without an answer. */
  idleTicks: number;
}

export class Progress {
  matchIndex: LogIndex = logIndex(0);
  nextIndex: LogIndex;
  state: ProgressState = 'probe';
  /** In probe state: an AppendEntries is out and we wait for its answer. */
  probeSent = false;
  /** The last index of each AppendEntries batch sent in replicate state and not yet acknowledged. */
  readonly inflight: LogIndex[] = [];
  /** Heard from since the last CheckQuorum round. */
  recentActive = false;
  /** Leader ticks since the follower last answered anything (see Raft.compactionFloor). */
  silentTicks = 0;
  snapshotTransfer: SnapshotTransfer | null = null;

  constructor(
    nextIndex: LogIndex,
    private readonly inflightMessagesMax: number,
  ) {
    this.nextIndex = nextIndex;
  }

  /** Any answer from the follower: it is active for CheckQuorum and for the compaction floor. */
  heardFrom(): void {
    this.recentActive = true;
    this.silentTicks = 0;
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflight.length >= this.inflightMessagesMax;
      case 'snapshot':
        return true;
    }
  }

  becomeProbe(): void {
    if (this.state === 'snapshot' && this.snapshotTransfer !== null) {
      // Resume right after the snapshot if it covers more than the follower confirmed.
      const snapshotIndex = this.snapshotTransfer.metadata.index;
      this.nextIndex = logIndex(Math.max(this.matchIndex, snapshotIndex) + 1);
    } else {
      this.nextIndex = logIndex(this.matchIndex + 1);
    }
    this.resetState('probe');
  }

  becomeReplicate(): void {
    this.nextIndex = logIndex(this.matchIndex + 1);
    this.resetState('replicate');
  }

  becomeSnapshot(metadata: SnapshotMetadata, data: Uint8Array): void {
    this.resetState('snapshot');
    this.snapshotTransfer = {
      metadata,
      data,
      ackedOffset: 0,
      sentOffset: 0,
      round: 0,
      idleTicks: 0,
    };
  }

  private resetState(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.inflight.length = 0;
    this.snapshotTransfer = null;
  }

  /** An AppendEntries success up to `index`. Returns false when it is stale. */
  maybeUpdate(index: LogIndex): boolean {
    let updated = false;
    if (index > this.matchIndex) {
      this.matchIndex = index;
      this.probeSent = false;
      updated = true;
    }
    if (this.nextIndex < index + 1) this.nextIndex = logIndex(index + 1);
    while (this.inflight.length > 0 && (this.inflight[0] ?? Infinity) <= index)
      this.inflight.shift();
    return updated;
  }

  /**
   * An AppendEntries rejection of `rejectedIndex`. Moves nextIndex back to `retryIndex`
   * (computed from the follower's hint). Returns false when the rejection is stale.
   */
  maybeDecreaseTo(rejectedIndex: LogIndex, retryIndex: LogIndex): boolean {
    // While a snapshot streams, rejections of older appends say nothing new.
    if (this.state === 'snapshot') return false;
    if (this.state === 'replicate') {
      // Stale unless it rejects something we sent after the last known match.
      if (rejectedIndex <= this.matchIndex) return false;
      this.nextIndex = logIndex(this.matchIndex + 1);
      return true;
    }
    // In probe state only the rejection of the probe we sent (nextIndex - 1) counts.
    if (this.nextIndex - 1 !== rejectedIndex) return false;
    this.nextIndex = logIndex(
      Math.max(Math.min(rejectedIndex, retryIndex), this.matchIndex + 1, 1),
    );
    this.probeSent = false;
    assert(this.nextIndex > this.matchIndex, 'nextIndex must stay above matchIndex');
    return true;
  }

  /**
   * Records a sent AppendEntries. In replicate state a non-empty batch is in flight and
   * nextIndex moves past it at once; in probe state we wait for the answer.
   */
  sentEntries(lastIndex: LogIndex, entryCount: number): void {
    if (this.state === 'probe') {
      this.probeSent = true;
    } else if (this.state === 'replicate' && entryCount > 0) {
      this.nextIndex = logIndex(lastIndex + 1);
      this.inflight.push(lastIndex);
    }
  }
}
