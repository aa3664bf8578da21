import { type LogIndex, logIndex, type NodeId, type Term } from '../util/ids.ts';
import { withFields } from '../util/objects.ts';
import type { RaftLog } from './log.ts';
import type { RaftOptions } from './options.ts';
import type { Progress, SnapshotTransfer } from './progress.ts';
import type { Entry, MessageOf, OutgoingMessage } from './types.ts';

/** What the leader's replication needs of the Raft core that owns it. */
export interface LeaderReplicationHost {
  readonly id: NodeId;
  readonly log: RaftLog;
  readonly options: RaftOptions;
  /**
   * The leader's view of every member, its own included. The core adds and removes
   * members as it takes office and as the config changes; replication only reads it.
   */
  readonly progress: ReadonlyMap<NodeId, Progress>;
  /** The leader's term, which every message carries. */
  term(): Term;
  send(message: OutgoingMessage): void;
  /** Raft.isCommitNotice: a test overrides it on the core, so the rule stays there. */
  isCommitNotice(progress: Progress, entries: readonly Entry[], commitAdvanced: boolean): boolean;
}

/**
 * The leader's side of log replication (§5.3) and of snapshot transfer (§7): what each
 * follower is sent, and what its answers do to its Progress. The Raft core owns one and
 * calls it only while it leads. Deciding the commit index, confirming reads and handing
 * over leadership stay with the core; a handler returns what the core needs for them.
 */
export class LeaderReplication {
  private readonly log: RaftLog;
  private readonly options: RaftOptions;
  private readonly progress: ReadonlyMap<NodeId, Progress>;

  constructor(private readonly host: LeaderReplicationHost) {
    this.log = host.log;
    this.options = host.options;
    this.progress = host.progress;
  }

  // ---------------------------------------------------------------- sending

  broadcastAppend(): void {
    for (const member of this.progress.keys()) {
      if (member !== this.host.id) this.sendAppend(member);
    }
  }

  /** Tells every follower of a new commit index, with what it still misses. */
  broadcastCommit(): void {
    for (const member of this.progress.keys()) {
      if (member !== this.host.id) this.sendAppend(member, 'notice');
    }
  }

  /** `readSequence` is the newest read the leader wants confirmed (see read-index.ts). */
  broadcastHeartbeat(readSequence: number): void {
    for (const [member, progress] of this.progress) {
      if (member === this.host.id) continue;
      this.host.send({
        type: 'Heartbeat',
        to: member,
        term: this.host.term(),
        leaderCommit: logIndex(Math.min(progress.matchIndex, this.log.commitIndex)),
        readSequence,
      });
    }
  }

  /**
   * Sends the follower what it is missing, or a snapshot when that part of the log is
   * compacted. An empty AppendEntries still carries the commit index and serves as a
   * probe. `ifEmpty` says what to do when there is nothing to send: send it (a probe),
   * skip it (acknowledgements pass 'skip', so that an ack never answers an ack), or send
   * it as a commit notice (a commit advance, see Raft.isCommitNotice).
   */
  sendAppend(to: NodeId, ifEmpty: 'send' | 'skip' | 'notice' = 'send'): void {
    const progress = this.progress.get(to);
    if (progress === undefined || progress.isPaused()) return;
    const prevLogIndex = logIndex(progress.nextIndex - 1);
    const prevLogTerm = this.log.term(prevLogIndex);
    const entries = this.log.entriesFrom(progress.nextIndex, this.options.appendBatchBytesMax);
    if (prevLogTerm === undefined || entries === undefined) {
      this.startSnapshotTransfer(to, progress);
      return;
    }
    if (entries.length === 0 && ifEmpty === 'skip') return;
    const append = {
      type: 'AppendEntries' as const,
      to,
      term: this.host.term(),
      prevLogIndex,
      prevLogTerm,
      entries,
      leaderCommit: this.log.commitIndex,
    };
    const notice = this.host.isCommitNotice(progress, entries, ifEmpty === 'notice');
    this.host.send(notice ? withFields(append, { commitNotice: true as const }) : append);
    const last = entries.at(-1);
    progress.sentEntries(last === undefined ? prevLogIndex : last.index, entries.length);
  }

  // ---------------------------------------------------------------- snapshot transfer (§7)

  private startSnapshotTransfer(to: NodeId, progress: Progress): void {
    // Not yet read back from disk: nothing is sent, so the follower's next answer (a
    // heartbeat's, at the latest) brings it here again.
    if (!this.log.snapshotDataReady()) return;
    const snapshot = this.log.snapshot();
    progress.becomeSnapshot(snapshot.metadata, snapshot.data);
    this.sendSnapshotChunks(to);
  }

  /** Fills the window of chunks in flight to `to`. */
  private sendSnapshotChunks(to: NodeId): void {
    const transfer = this.progress.get(to)?.snapshotTransfer;
    if (transfer === undefined || transfer === null) return;
    const { snapshotChunkBytesMax, snapshotChunksInFlightMax } = this.options;
    const windowEnd = transfer.ackedOffset + snapshotChunkBytesMax * snapshotChunksInFlightMax;
    const totalBytes = transfer.data.byteLength;
    // An empty snapshot still takes one (empty) chunk.
    while (transfer.sentOffset < Math.min(windowEnd, Math.max(totalBytes, 1))) {
      const offset = transfer.sentOffset;
      const end = Math.min(offset + snapshotChunkBytesMax, totalBytes);
      this.host.send({
        type: 'InstallSnapshot',
        to,
        term: this.host.term(),
        metadata: transfer.metadata,
        offset,
        round: transfer.round,
        chunk: transfer.data.subarray(offset, end),
        done: end === totalBytes,
      });
      transfer.sentOffset = Math.max(end, offset + 1);
    }
  }

  private rewindSnapshotTransfer(transfer: SnapshotTransfer, offset: number): void {
    transfer.round++;
    transfer.ackedOffset = offset;
    transfer.sentOffset = offset;
  }

  /** Chunks that went unanswered for an election timeout are sent again. Called every heartbeat. */
  tickSnapshotTransfers(): void {
    for (const [member, progress] of this.progress) {
      const transfer = progress.snapshotTransfer;
      if (transfer === null) continue;
      transfer.idleTicks += this.options.heartbeatIntervalTicks;
      if (transfer.idleTicks >= this.options.electionTimeoutTicks) {
        // Nothing answered for a while: send the window again from the confirmed offset.
        transfer.idleTicks = 0;
        this.rewindSnapshotTransfer(transfer, transfer.ackedOffset);
        this.sendSnapshotChunks(member);
      }
    }
  }

  // ---------------------------------------------------------------- answers

  /**
   * Moves the follower's Progress on its answer to an AppendEntries, and sends it what
   * comes next. Returns its Progress when its match advanced, for the core to commit
   * what a majority now holds and to send on (see Raft.followerMatched); else null.
   */
  handleAppendResponse(message: MessageOf<'AppendEntriesResponse'>): Progress | null {
    const progress = this.progress.get(message.from);
    if (progress === undefined) return null;
    progress.heardFrom();
    if (!message.success) {
      const retryIndex = this.retryIndexFromHint(message);
      if (progress.maybeDecreaseTo(message.rejectedIndex, retryIndex)) {
        if (progress.state === 'replicate') progress.becomeProbe();
        this.sendAppend(message.from);
      }
      return null;
    }
    const wasPaused = progress.isPaused();
    if (!progress.maybeUpdate(message.matchIndex)) {
      if (wasPaused && !progress.isPaused()) this.sendAppend(message.from, 'skip');
      return null;
    }
    if (progress.state === 'probe') progress.becomeReplicate();
    const transfer = progress.snapshotTransfer;
    if (transfer !== null && progress.matchIndex >= transfer.metadata.index) progress.becomeProbe();
    return progress;
  }

  /** Where to probe next after a rejection, using the follower's hint (§5.3, the paragraph on optimizations). */
  private retryIndexFromHint(message: MessageOf<'AppendEntriesResponse'>): LogIndex {
    if (message.hintTerm === null) return message.hintIndex;
    const candidate = this.log.lastIndexWithTermAtMost(message.rejectedIndex, message.hintTerm);
    if (this.log.term(candidate) === message.hintTerm) return logIndex(candidate + 1);
    return message.hintIndex;
  }

  /**
   * Moves the follower's Progress on its answer to a heartbeat. Returns false when the
   * answer is from no member; else the core counts it toward its reads.
   */
  handleHeartbeatResponse(message: MessageOf<'HeartbeatResponse'>): boolean {
    const progress = this.progress.get(message.from);
    if (progress === undefined) return false;
    progress.heardFrom();
    progress.probeSent = false;
    // A full pipeline whose batches were lost would never drain; the heartbeat round
    // trip shows the follower is reachable, so let one more batch out.
    if (progress.state === 'replicate' && progress.isPaused()) progress.inflight.shift();
    if (progress.matchIndex < this.log.lastIndex()) this.sendAppend(message.from);
    return true;
  }

  handleSnapshotResponse(message: MessageOf<'InstallSnapshotResponse'>): void {
    const progress = this.progress.get(message.from);
    if (progress === undefined) return;
    progress.heardFrom();
    const transfer = progress.snapshotTransfer;
    if (progress.state !== 'snapshot' || transfer === null) return;
    if (transfer.metadata.index !== message.snapshotIndex) return;
    if (message.installed) {
      progress.maybeUpdate(message.matchIndex);
      progress.becomeProbe();
      this.sendAppend(message.from);
      return;
    }
    transfer.idleTicks = 0;
    if (message.nextOffset > message.chunkOffset) {
      // Progress is progress, whatever round the chunk was sent in.
      transfer.ackedOffset = Math.max(transfer.ackedOffset, message.nextOffset);
      transfer.sentOffset = Math.max(transfer.sentOffset, transfer.ackedOffset);
    } else if (message.round === transfer.round) {
      // The follower wants an earlier offset (a chunk was lost, or it lost what it had).
      // Answers from before the last rewind are ignored here: each would start another
      // stream of chunks.
      this.rewindSnapshotTransfer(transfer, message.nextOffset);
    } else {
      return;
    }
    this.sendSnapshotChunks(message.from);
  }
}
