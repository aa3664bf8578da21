import { assert } from '../util/assert.ts';
import type { LogIndex, NodeId, Term } from '../util/ids.ts';
import type { RaftLog } from './log.ts';
import type { RaftOptions } from './options.ts';
import type { OutgoingMessage, ReadState } from './types.ts';

/** A read the leader holds: one on this node (requester null), or one a follower forwarded. */
interface ReadRequest {
  readonly context: string;
  /** The follower that forwarded the read, or null for a read on this node. */
  readonly requester: NodeId | null;
}

interface PendingRead extends ReadRequest {
  readonly sequence: number;
  readonly index: LogIndex;
}

/** What the leader's reads need of the Raft core that owns them. */
export interface ReadIndexHost {
  readonly id: NodeId;
  readonly log: RaftLog;
  readonly options: RaftOptions;
  term(): Term;
  voters(): readonly NodeId[];
  send(message: OutgoingMessage): void;
  /** A read on this node may be served once its index is applied (Ready.readStates). */
  serveLocal(state: ReadState): void;
  /** A read on this node will never be served (Ready.refusedReads). */
  refuseLocal(context: string): void;
  /** Raft.readQuorum: a test overrides it on the core, so the rule stays there. */
  readQuorum(read: { readonly requester: NodeId | null }): number;
}

/**
 * Linearizable reads as the leader serves them (§6.4, ReadIndex): a read is answered at
 * the commit index it arrived at, once a majority of voters has answered a heartbeat
 * sent after it, which shows that no other leader can have committed past that index.
 * The Raft core owns one; it feeds it heartbeat answers and commits, and clears it
 * whenever it resets its term state (Raft.resetTerm).
 */
export class LeaderReads {
  private sequence = 0;
  private readonly pendingReads: PendingRead[] = [];
  /** Reads taken before this leader committed an entry of its term; it cannot vouch for commitIndex yet. */
  private readonly readsAwaitingTermCommit: ReadRequest[] = [];
  private readonly readAcks = new Map<NodeId, number>();
  private readBroadcastPending = false;

  constructor(private readonly host: ReadIndexHost) {}

  /** The newest read's sequence, which heartbeats carry for their answers to confirm. */
  get readSequence(): number {
    return this.sequence;
  }

  /** Reads wait for a heartbeat round that the next Ready is to send. */
  get broadcastPending(): boolean {
    return this.readBroadcastPending;
  }

  /** Whether reads wait for a heartbeat round; the caller sends it now. */
  takeBroadcastPending(): boolean {
    const pending = this.readBroadcastPending;
    this.readBroadcastPending = false;
    return pending;
  }

  /** Takes a read on the leader. Returns false when it is refused (too many pending reads). */
  request(context: string, requester: NodeId | null): boolean {
    const { log } = this.host;
    if (log.term(log.commitIndex) !== this.host.term()) {
      if (this.readsAwaitingTermCommit.length >= this.host.options.pendingReadsMax) return false;
      this.readsAwaitingTermCommit.push({ context, requester });
      return true;
    }
    if (this.pendingReads.length >= this.host.options.pendingReadsMax) return false;
    this.sequence++;
    this.pendingReads.push({ sequence: this.sequence, context, index: log.commitIndex, requester });
    // Releases the read at once only if it needs no round (a lone voter is its own
    // majority). One heartbeat round confirms every read up to the newest sequence, so
    // reads taken in one batch share a single broadcast, sent at the next Ready.
    this.releaseConfirmed();
    if (this.pendingReads.length > 0) this.readBroadcastPending = true;
    return true;
  }

  /** The leader's commit index moved: once it is of the leader's term, the waiting reads can start. */
  flushAwaitingTermCommit(): void {
    const { log } = this.host;
    if (log.term(log.commitIndex) !== this.host.term()) return;
    const waiting = this.readsAwaitingTermCommit.splice(0);
    for (const read of waiting) {
      if (this.request(read.context, read.requester)) continue;
      if (read.requester === null) this.host.refuseLocal(read.context);
      else this.refuseForwarded(read.requester, read.context, false);
    }
  }

  /** A voter answered a heartbeat: it confirms leadership for every read up to `readSequence`. */
  acknowledge(member: NodeId, readSequence: number): void {
    if (!this.host.voters().includes(member)) return;
    const previous = this.readAcks.get(member) ?? 0;
    this.readAcks.set(member, Math.max(previous, readSequence));
    this.releaseConfirmed();
  }

  /** Releases every read whose sequence a majority of voters (counting us) has confirmed. */
  releaseConfirmed(): void {
    while (this.pendingReads.length > 0) {
      const read = this.pendingReads[0];
      assert(read !== undefined, 'pendingReads is not empty');
      let confirmations = 0;
      for (const voter of this.host.voters()) {
        if (voter === this.host.id || (this.readAcks.get(voter) ?? 0) >= read.sequence)
          confirmations++;
      }
      if (confirmations < this.host.readQuorum(read)) return;
      this.pendingReads.shift();
      if (read.requester === null) {
        this.host.serveLocal({ context: read.context, index: read.index });
      } else {
        this.host.send({
          type: 'ReadIndexResponse',
          to: read.requester,
          term: this.host.term(),
          context: read.context,
          readIndex: read.index,
        });
      }
    }
  }

  /**
   * Tells a follower its forwarded read cannot be served here; its host retries. Any
   * role sends it. `notLeader`: we do not lead (else we lead but our read queue is full).
   */
  refuseForwarded(to: NodeId, context: string, notLeader: boolean): void {
    this.host.send({
      type: 'ReadIndexResponse',
      to,
      term: this.host.term(),
      context,
      readIndex: null,
      notLeader,
    });
  }

  /** The core resets its term state (a new term, or a new role): every read held ends. */
  clear(): void {
    // This node's own reads end here unserved: say so. Reads followers forwarded here are
    // not answered: theirs wait out their deadline, as a lost request would.
    for (const read of [...this.pendingReads, ...this.readsAwaitingTermCommit]) {
      if (read.requester === null) this.host.refuseLocal(read.context);
    }
    this.pendingReads.length = 0;
    this.readsAwaitingTermCommit.length = 0;
    this.readAcks.clear();
    this.readBroadcastPending = false;
  }
}
