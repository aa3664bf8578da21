import type { LockCommand } from '../lock/index.ts';
import type { Raft } from '../raft/index.ts';
import type { LogIndex, NodeId } from '../util/ids.ts';
import { decodeEntry } from './entry-codec.ts';
import { DlmError, unavailable } from './errors.ts';
import type { NodeObserver } from './node.ts';
import type { ProposalRegistry } from './proposals.ts';
import { continueTrace, type TraceContext, traceparentOf } from './trace.ts';
import type { Transport } from './transport.ts';

/** What forwarding writes needs of its node. */
export interface WriteForwardingHost {
  readonly id: NodeId;
  readonly raft: Raft;
  readonly transport: Transport;
  readonly proposals: ProposalRegistry;
  readonly observers: readonly NodeObserver[];
  /** A voter or learner of the config this node applied. */
  isMember(id: NodeId): boolean;
  memberIds(): NodeId[];
  /** Whether the leader holds `command` back until the rules are agreed (DlmNode.lockRulesUnset). */
  lockRulesUnset(command: LockCommand): boolean;
  /** Whether a SetRules entry applied here. */
  rulesSet(): boolean;
  electionTimeoutMs(): number;
}

/**
 * Client writes taken by a follower travel to the leader as `forward` messages; the
 * leader proposes each and answers at once with where it went (`forwardAccepted`) or
 * why not (`forwardRefused`). The follower then answers its client when it applies that
 * index (ProposalRegistry), as for a write it proposed itself.
 */
export class WriteForwarding {
  constructor(private readonly host: WriteForwardingHost) {}

  /** On a follower: sends the write to the leader it knows, or fails it when it knows none. */
  send(proposalId: string, data: Uint8Array, trace: TraceContext | undefined): void {
    const { id, raft, proposals, transport } = this.host;
    const leader = raft.leaderId;
    if (leader === null) {
      proposals.fail(proposalId, unavailable(`${id} knows no leader`));
      return;
    }
    transport.send({
      kind: 'forward',
      from: id,
      to: leader,
      proposalId,
      data,
      ...(trace === undefined ? {} : { traceparent: traceparentOf(trace) }),
    });
  }

  /** On the leader: proposes a member's forwarded write and answers where it went. */
  accept(from: NodeId, proposalId: string, data: Uint8Array, traceparent: unknown): void {
    const { id, raft, transport, observers } = this.host;
    if (raft.role === 'leader' && !this.countsAsMember(from)) {
      // Not answered: a stranger learns nothing and costs one message, not two, and a
      // member this leader does not count yet fails the write UNAVAILABLE within an
      // election timeout (failUnanswered); its client retries.
      for (const observer of observers) {
        observer.forwardFromNonMember?.(from, this.host.memberIds());
      }
      return;
    }
    const result = this.rulesHoldBack(data)
      ? { ok: false as const, reason: 'lockRulesUnset' as const, leaderId: id }
      : raft.propose(data);
    if (typeof traceparent === 'string') {
      const trace = continueTrace(traceparent);
      for (const observer of observers) {
        observer.forwardedWrite?.(trace, from, result.ok ? 'proposed' : result.reason);
      }
    }
    if (result.ok) {
      transport.send({
        kind: 'forwardAccepted',
        from: id,
        to: from,
        proposalId,
        index: result.index,
        term: result.term,
      });
    } else {
      transport.send({
        kind: 'forwardRefused',
        from: id,
        to: from,
        proposalId,
        reason: result.reason,
        leaderId: result.leaderId,
      });
    }
  }

  /** On the follower: the leader placed the write at `index`. */
  accepted(proposalId: string, index: LogIndex): void {
    this.host.proposals.placed(proposalId, index);
  }

  /** On the follower: the leader refused the write. */
  refused(proposalId: string, reason: string, leaderId: NodeId | null): void {
    this.host.proposals.fail(proposalId, writeRefusal(reason, leaderId));
  }

  /**
   * A leader answers a forwarded write at once. Without an answer within an election
   * timeout, the forward or its answer was lost (a full peer queue, a broken stream) or
   * the leader is gone: fail it as UNAVAILABLE, so the client retries with the same
   * request id now rather than at the write's deadline.
   */
  failUnanswered(nowMs: number): void {
    const waitedMs = this.host.electionTimeoutMs();
    this.host.proposals.failUnplaced(
      unavailable(`the leader did not answer a forwarded write within ${waitedMs} ms`),
      nowMs,
      nowMs - waitedMs,
    );
  }

  /**
   * Whether the leader takes a forwarded write from `from`: a voter or learner of its
   * config, other than itself (a node never forwards to itself). The peer port admits
   * anyone with the cluster id, or under mutual TLS any node certificate of the CA for
   * the id it claims: that includes a removed node's and one issued for an id never
   * added, and a forwarded write carries whatever identity it likes, which every
   * replica then applies as that caller's. Only members may do that.
   *
   * The config is this leader's applied one. Membership changes in flight:
   * - Adding: a joining node learns who leads only from the leader's appends, and a
   *   leader starts sending to a learner only once it has applied the addLearner entry;
   *   so its first forward reaches a leader that counts it. Promotion keeps it counted.
   * - A new leader's applied config can lag its log: it applies what its predecessor
   *   committed only once an entry of its own term commits (after a crash, also part of
   *   what it had applied itself: the commit index is written unsynced). A member that
   *   reaches it meanwhile (one still holding its id as leader from an earlier term) is
   *   refused; unanswered, the write fails UNAVAILABLE within an election timeout and
   *   its client retries, and the leader counts that member once it has applied its own
   *   log. No member is refused for longer.
   * - Removing: refused from the moment the leader applied the removal, even if the
   *   removed node never learns of it. Before that, or at a new leader that has not
   *   applied it yet, its write is still taken, as a member's: it was one until then.
   *
   * Raft messages are not filtered this way, on purpose: a node may need its leader
   * before its config names that leader. A joining node has no config until the
   * leader's entries or snapshot arrive (with Raft messages filtered, the joiner in
   * test/node/grpc-membership.test.ts never catches up), and a follower cut off while
   * the cluster changed may not hold the entry that made its new leader a member: only
   * that leader will send it. So the core trusts whoever holds a node credential (Raft
   * tolerates crashes, not lies): a removed node's certificate must be retired, see
   * README, Security.
   */
  private countsAsMember(from: NodeId): boolean {
    return from !== this.host.id && this.host.isMember(from);
  }

  /** A forwarded write that lockRulesUnset holds back (its data decodes: peerMessageProblem). */
  private rulesHoldBack(data: Uint8Array): boolean {
    if (this.host.raft.role !== 'leader' || this.host.rulesSet()) return false;
    return this.host.lockRulesUnset(decodeEntry(data).command);
  }
}

/** A write the leader would not take until a SetRules entry applied (see DlmNode.lockRulesUnset). */
export function rulesUnsetRefusal(leaderId: NodeId | null): DlmError {
  return unavailable(
    'lock rules not yet agreed: the leader takes writes once the log has set them (right after an election on a new cluster); retry',
    leaderId,
  );
}

/** The error a client is told for a write the leader's core refused (Raft.propose's reason). */
export function writeRefusal(reason: string, leaderId: NodeId | null): DlmError {
  if (reason === 'lockRulesUnset') return rulesUnsetRefusal(leaderId);
  if (reason === 'tooManyUncommitted') {
    return new DlmError(
      'RESOURCE_EXHAUSTED',
      'the leader has too many uncommitted writes',
      leaderId,
    );
  }
  return unavailable(`the write was refused: ${reason}`, leaderId);
}
