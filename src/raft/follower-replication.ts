import { type LogIndex, logIndex, type NodeId, type Term } from '../util/ids.ts';
import type { RaftLog } from './log.ts';
import type { Entry, MessageOf, OutgoingMessage, Snapshot, SnapshotMetadata } from './types.ts';

interface IncomingSnapshot {
  readonly metadata: SnapshotMetadata;
  readonly chunks: Uint8Array[];
  receivedBytes: number;
}

/** What a follower's replication needs of the Raft core that owns it. */
export interface FollowerReplicationHost {
  readonly log: RaftLog;
  term(): Term;
  send(message: OutgoingMessage): void;
  /** Raft.appendFromLeader: a test overrides it on the core, so the rule stays there. */
  appendFromLeader(prevLogIndex: LogIndex, entries: readonly Entry[]): LogIndex;
  /** Raft.installSnapshot: a whole snapshot arrived; it may replace the config too. */
  installSnapshot(snapshot: Snapshot): void;
}

/**
 * A follower's side of log replication (§5.3) and of snapshot transfer (§7): it takes
 * the leader's AppendEntries, heartbeats and snapshot chunks, and answers them. The Raft
 * core owns one and hands it these messages once it has checked their term and leader.
 */
export class FollowerReplication {
  private readonly log: RaftLog;
  private incomingSnapshot: IncomingSnapshot | null = null;

  constructor(private readonly host: FollowerReplicationHost) {
    this.log = host.log;
  }

  // ---------------------------------------------------------------- appends (§5.3)

  handleAppendEntries(message: MessageOf<'AppendEntries'>): void {
    const append = this.pastCommitIndex(message);
    if (append === null) {
      // Everything up to our commit index already matches the leader (Leader Completeness).
      if (message.commitNotice === true) return;
      this.sendAppendResponse(message.from, true, this.log.commitIndex, logIndex(0));
      return;
    }
    if (!this.log.matchTerm(append.prevLogIndex, append.prevLogTerm)) {
      this.sendAppendResponse(message.from, false, logIndex(0), append.prevLogIndex);
      return;
    }
    const lastNewIndex = this.host.appendFromLeader(append.prevLogIndex, append.entries);
    this.log.commitTo(logIndex(Math.min(message.leaderCommit, lastNewIndex)));
    if (message.commitNotice === true) return;
    this.sendAppendResponse(message.from, true, lastNewIndex, logIndex(0));
  }

  /**
   * The part of an AppendEntries after our commit index: what is committed already
   * matches the leader, and is never truncated. A batch that starts below the commit index
   * and reaches past it (a resent batch with new entries joined on, see coalesce.ts) still
   * delivers its new entries. Null when nothing past the commit index can be taken.
   */
  private pastCommitIndex(
    message: MessageOf<'AppendEntries'>,
  ): Pick<MessageOf<'AppendEntries'>, 'prevLogIndex' | 'prevLogTerm' | 'entries'> | null {
    const commitIndex = this.log.commitIndex;
    if (message.prevLogIndex >= commitIndex) return message;
    const skip = commitIndex - message.prevLogIndex;
    const atCommit = message.entries[skip - 1];
    if (atCommit === undefined || skip >= message.entries.length) return null;
    // Our committed entry must be the leader's; if it were not, take nothing (as before).
    if (!this.log.matchTerm(commitIndex, atCommit.term)) return null;
    return {
      prevLogIndex: commitIndex,
      prevLogTerm: atCommit.term,
      entries: message.entries.slice(skip),
    };
  }

  private sendAppendResponse(
    to: NodeId,
    success: boolean,
    matchIndex: LogIndex,
    rejectedIndex: LogIndex,
  ): void {
    let hintIndex = logIndex(0);
    let hintTerm: Term | null = null;
    if (!success) {
      // Fast backtracking: tell the leader our term at the rejected position and where
      // that term starts, so it can skip a whole term per round trip.
      if (rejectedIndex > this.log.lastIndex()) {
        hintIndex = logIndex(this.log.lastIndex() + 1);
      } else {
        hintTerm = this.log.term(rejectedIndex) ?? null;
        hintIndex = this.log.firstIndexOfTermAt(rejectedIndex);
      }
    }
    this.host.send({
      type: 'AppendEntriesResponse',
      to,
      term: this.host.term(),
      success,
      matchIndex,
      rejectedIndex,
      hintIndex,
      hintTerm,
    });
  }

  handleHeartbeat(message: MessageOf<'Heartbeat'>): void {
    // The leader never sends a commit index beyond what it knows we hold.
    this.log.commitTo(logIndex(Math.min(message.leaderCommit, this.log.lastIndex())));
    this.host.send({
      type: 'HeartbeatResponse',
      to: message.from,
      term: this.host.term(),
      readSequence: message.readSequence,
    });
  }

  // ---------------------------------------------------------------- snapshots (§7)

  handleSnapshotChunk(message: MessageOf<'InstallSnapshot'>): void {
    const { metadata, offset } = message;
    const answer = (nextOffset: number, installed: boolean, matchIndex: LogIndex): void =>
      this.host.send({
        type: 'InstallSnapshotResponse',
        to: message.from,
        term: this.host.term(),
        snapshotIndex: metadata.index,
        chunkOffset: offset,
        round: message.round,
        nextOffset,
        installed,
        matchIndex,
      });
    if (metadata.index <= this.log.commitIndex) {
      // We already have everything it covers.
      this.incomingSnapshot = null;
      answer(0, true, this.log.commitIndex);
      return;
    }
    const isIncoming = (snapshot: IncomingSnapshot | null): snapshot is IncomingSnapshot =>
      snapshot !== null &&
      snapshot.metadata.index === metadata.index &&
      snapshot.metadata.term === metadata.term;
    // A first chunk starts a transfer, unless it is a late copy of the one under way.
    if (
      offset === 0 &&
      !(isIncoming(this.incomingSnapshot) && this.incomingSnapshot.receivedBytes > 0)
    ) {
      this.incomingSnapshot = { metadata, chunks: [], receivedBytes: 0 };
    }
    const incoming = this.incomingSnapshot;
    if (!isIncoming(incoming) || incoming.receivedBytes !== offset) {
      answer(isIncoming(incoming) ? incoming.receivedBytes : 0, false, logIndex(0));
      return;
    }
    incoming.chunks.push(message.chunk);
    incoming.receivedBytes += message.chunk.byteLength;
    if (!message.done) {
      answer(incoming.receivedBytes, false, logIndex(0));
      return;
    }
    this.incomingSnapshot = null;
    this.host.installSnapshot({
      metadata,
      data: concatChunks(incoming.chunks, incoming.receivedBytes),
    });
    answer(incoming.receivedBytes, true, metadata.index);
  }
}

function concatChunks(chunks: readonly Uint8Array[], totalBytes: number): Uint8Array {
  const data = new Uint8Array(totalBytes);
  let offset = 0;
  for (const chunk of chunks) {
    data.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return data;
}
