import {
  BEHAVIOUR_SEMAPHORES_ELECTIONS,
  canonicalLockRules,
  DEFAULT_LOCK_LIMITS,
  type LockCommand,
  type LockLimits,
  type LockStateMachine,
} from '../lock/index.ts';
import { rulesAtBehaviour } from '../lock/optional-rules.ts';
import type { Entry, Raft } from '../raft/index.ts';
import type { LogIndex, NodeId, Term } from '../util/ids.ts';
import { advertisedBehaviour, BehaviourClaims } from './behaviour.ts';
import { decodeEntry, encodeEntry } from './entry-codec.ts';
import { DlmError } from './errors.ts';
import type { Clock } from './node.ts';
import type { PeerMessage } from './peer-message.ts';
import { claimedSender } from './peer-message-check.ts';

/** How a SetBehaviour entry's bytes name it (noteLoggedRaises). */
const SET_BEHAVIOUR_BYTES = Buffer.from('SetBehaviour');

/** Whether `data` holds the bytes of 'SetBehaviour'; no copy, and no view when it is a Buffer. */
function namesSetBehaviour(data: Uint8Array): boolean {
  const bytes = Buffer.isBuffer(data)
    ? data
    : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return bytes.indexOf(SET_BEHAVIOUR_BYTES) >= 0;
}

/** What the log's rules and behaviour version need of their node. */
export interface ClusterRulesHost {
  readonly id: NodeId;
  readonly raft: Raft;
  readonly locks: LockStateMachine;
  readonly clock: Clock;
  /** The lock rules of this node's config (NodeRuntimeOptions.lock). */
  readonly fileRules: Partial<LockLimits>;
  electionTimeoutMs(): number;
  memberIds(): NodeId[];
  /** A voter or learner of the config this node applied. */
  isMember(id: NodeId): boolean;
  /** DlmNode.agreedBehaviour, which a test may override: so always asked of the node. */
  agreedBehaviour(nowMs: number): number | null;
}

/**
 * The lock rules and the lock behaviour version the log sets, as this node drives them:
 * a new cluster's first rules, proposed by its leader (and completed once the behaviour
 * raise that follows has applied), the behaviour raises, and what each member's binary
 * applies, by which members that fall short are held back (behaviour.ts).
 */
export class ClusterRules {
  /** The term in which this node, as leader, proposed its config's rules; see proposeRulesIfUnset. */
  private rulesProposedInTerm = -1;
  /**
   * The first rules this leader proposed for a cluster without any, when it had to leave
   * out optional rules of its file that the version then in force did not know (see
   * proposeRulesIfUnset): what it proposed, and its file's rules whole.
   */
  private fileRulesLeft: {
    readonly term: number;
    readonly proposed: LockLimits;
    readonly whole: LockLimits;
  } | null = null;
  /** What each member's binary applies, as its messages say (behaviour.ts). */
  private readonly behaviourClaims = new BehaviourClaims();
  /** The raise this node proposed last as leader, so that it proposes it once a term. */
  private behaviourProposed = { term: -1, version: 0 };
  /** The highest raise in this node's log, appended but perhaps not applied (behaviourHeldTo). */
  private loggedRaise: {
    readonly index: LogIndex;
    readonly term: Term;
    readonly version: number;
  } | null = null;
  /** When this node last became leader (its clock), for the wait in proposeRulesIfUnset. */
  private ledSinceMs = 0;

  constructor(private readonly host: ClusterRulesHost) {}

  /** This node became leader at `nowMs` (its clock). */
  becameLeader(nowMs: number): void {
    this.ledSinceMs = nowMs;
  }

  /**
   * The highest lock behaviour version `id`'s binary applies, as its latest message to
   * this node said; null if none came since this node started. Only a leader hears from
   * every member.
   */
  heardFrom(id: NodeId): number | null {
    const { host } = this;
    return id === host.id ? host.locks.behaviourMax : this.behaviourClaims.claimOf(id);
  }

  /** The sender's latest word on its binary (see behaviour.ts). */
  noteClaim(message: PeerMessage): void {
    const { host } = this;
    const from = claimedSender(message) as NodeId;
    if (from === host.id) return;
    const behaviourMax = advertisedBehaviour(message);
    const member = host.isMember(from);
    this.behaviourClaims.heard(from, behaviourMax, host.raft.term, host.clock.nowMs(), member);
  }

  /** The members changed (a config entry applied): see BehaviourClaims.membersChanged. */
  membersChanged(): void {
    this.behaviourClaims.membersChanged(this.host.memberIds());
  }

  /**
   * Whether Raft traffic to `to` is held back: its latest message said its binary cannot
   * apply the behaviour version in force, so no entry reaches it until it runs one that
   * can (see behaviour.ts).
   */
  holdsBack(to: NodeId): boolean {
    return this.behaviourClaims.fallsShortOf(to, this.behaviourHeldTo());
  }

  /**
   * A node whose binary cannot apply the behaviour version in force is not added (or,
   * added before it said so, not promoted: it gets no entries, see behaviour.ts).
   */
  refuseBehindBehaviour(id: NodeId): void {
    const version = this.behaviourHeldTo();
    if (!this.behaviourClaims.fallsShortOf(id, version)) return;
    throw new DlmError(
      'FAILED_PRECONDITION',
      `${id} runs a binary that applies lock behaviour versions up to ${this.behaviourClaims.claimOf(id)}, but the cluster applies version ${version}: it would apply entries differently. Run a release that supports version ${version} on ${id}, then add it again`,
    );
  }

  /**
   * A cluster whose log never set lock rules (a new one, or a database from before they
   * were replicated) gets this node's config's, proposed once per term by the leader.
   * Only once an entry of its own term has applied: then every entry committed before
   * its term has applied too, so `rulesSetIndex` tells whether rules were ever set.
   * onlyIfUnset makes a copy proposed by an earlier leader, committed late, harmless.
   * Returns whether rules are in force here, so the leader may propose timer commands.
   *
   * A new cluster is born at the highest behaviour version its members apply: the raise
   * goes in right after the rules, before any lock command (a client write waits for the
   * rules, and a timer command for this tick). For that the leader waits to hear from
   * every member, an election timeout at most; one not heard by then leaves the cluster
   * at the base, raised once it is (proposeBehaviourRaise).
   */
  proposeRulesIfUnset(nowMs: number): boolean {
    const { raft, locks } = this.host;
    if (locks.rulesSetIndex !== null) return true;
    const term = raft.term;
    if (this.rulesProposedInTerm === term) return false;
    if (raft.log.term(raft.log.appliedIndex) !== term) return false;
    const waitedMs = nowMs - this.ledSinceMs;
    const agreed = this.host.agreedBehaviour(nowMs);
    if (agreed === null && waitedMs < this.host.electionTimeoutMs()) return false;
    const file = { ...DEFAULT_LOCK_LIMITS, ...this.host.fileRules };
    // SetRules refuses a window below the results remembered (a log written before the
    // rules were replicated may hold more than this file allows): never shrink it.
    const dedupeWindowMax = Math.max(file.dedupeWindowMax, locks.rememberedCount);
    // The base version knows no optional rule (lock.locksPerAcquireMax, ...), and a
    // SetRules carrying one it does not know is refused whole: so the rules go in without
    // those the version in force lacks, and completeFileRules adds them once the raise
    // that follows has applied (to version 5 or higher: see there). (The raise cannot go
    // first: before any SetRules each node
    // would apply it under its own file's rules.)
    const whole = { ...file, dedupeWindowMax };
    const { rules, left } = rulesAtBehaviour(whole, locks.behaviour);
    const command: LockCommand = { type: 'SetRules', rules, onlyIfUnset: true };
    if (raft.propose(encodeEntry({ proposalId: null, command })).ok) {
      this.rulesProposedInTerm = term;
      this.fileRulesLeft = left.length === 0 ? null : { term, proposed: rules, whole };
      this.proposeBehaviourRaise(nowMs);
    }
    return false;
  }

  /**
   * Completes the first rules of a new cluster with the optional rules of this leader's
   * file that its SetRules had to leave out, once the behaviour raise has applied: in the
   * same term only, and only while the rules in force are still the ones it proposed
   * (an operator's SetLockRules since, or another leader's rules, are left alone). A
   * raise that never comes (a member on an older binary), or one that stops below
   * BEHAVIOUR_SEMAPHORES_ELECTIONS (whose guard the completion needs), leaves them out
   * until `dlm rules apply`; the node's rules report names them as differing meanwhile.
   */
  completeFileRules(): void {
    const { raft, locks } = this.host;
    const pending = this.fileRulesLeft;
    if (pending === null) return;
    if (pending.term !== raft.term) {
      this.fileRulesLeft = null;
      return;
    }
    // Not raised yet (or not to the versions those rules need): wait.
    if (rulesAtBehaviour(pending.whole, locks.behaviour).left.length > 0) return;
    const same = (a: LockLimits, b: LockLimits): boolean =>
      JSON.stringify(canonicalLockRules(a)) === JSON.stringify(canonicalLockRules(b));
    // The applied rules are not enough: an operator's SetRules may be in the log behind
    // them, and would be overwritten (review rev-api-rules-race). So the completion is
    // Stale unless the rules in force are still those set at the index seen here, which
    // only a cluster at BEHAVIOUR_SEMAPHORES_ELECTIONS checks; below it none is proposed.
    const setAt = locks.rulesSetIndex;
    const guarded = locks.behaviour >= BEHAVIOUR_SEMAPHORES_ELECTIONS;
    if (!same(locks.rules, pending.proposed) || setAt === null || !guarded) {
      this.fileRulesLeft = null;
      return;
    }
    const command: LockCommand = {
      type: 'SetRules',
      rules: pending.whole,
      onlyIfUnset: false,
      onlyIfSetAt: setAt,
    };
    if (raft.propose(encodeEntry({ proposalId: null, command })).ok) this.fileRulesLeft = null;
  }

  /**
   * The version members are held to: the one in force, or a raise in this node's log that
   * has not applied yet (its own proposal, or one it inherited as a new leader). Holding
   * back by the applied version alone sent a raise in flight to a member the leader had
   * just heard claim an older binary, and the raise committed on its acknowledgement
   * (review test review-behaviour-held-back).
   */
  private behaviourHeldTo(): number {
    const raise = this.loggedRaise;
    // A raise in a suffix that was since replaced holds nothing.
    const logged =
      raise !== null && this.host.raft.log.term(raise.index) === raise.term ? raise.version : 0;
    return Math.max(this.host.locks.behaviour, logged);
  }

  /**
   * Notes the highest SetBehaviour among entries this node appends, before they are
   * sent on. Entries are decoded only when their bytes name the command (msgpack keeps
   * strings as they are), so the write path pays a byte search, not a decode.
   */
  noteLoggedRaises(entries: readonly Entry[]): void {
    for (const entry of entries) {
      if (entry.kind !== 'normal' || !namesSetBehaviour(entry.data)) continue;
      const { command } = decodeEntry(entry.data);
      if (command.type !== 'SetBehaviour') continue;
      if (this.loggedRaise === null || command.version > this.loggedRaise.version) {
        this.loggedRaise = { index: entry.index, term: entry.term, version: command.version };
      }
    }
  }

  /**
   * Proposes SetBehaviour for the highest version this node and every member apply by a
   * fresh claim, when that is above the version in force, once a term (see behaviour.ts).
   * Only once an entry of its own term applied, so the version in force is the log's.
   */
  proposeBehaviourRaise(nowMs: number): void {
    const { raft, locks } = this.host;
    const term = raft.term;
    if (raft.log.term(raft.log.appliedIndex) !== term) return;
    const agreed = this.host.agreedBehaviour(nowMs);
    if (agreed === null || agreed <= locks.behaviour) return;
    const proposed = this.behaviourProposed;
    if (proposed.term === term && proposed.version >= agreed) return;
    const command: LockCommand = { type: 'SetBehaviour', version: agreed };
    if (raft.propose(encodeEntry({ proposalId: null, command })).ok) {
      this.behaviourProposed = { term, version: agreed };
    }
  }

  /**
   * The highest version this node and every member apply by a fresh claim; null while
   * one has none. DlmNode.agreedBehaviour's own answer.
   */
  agreedBehaviour(nowMs: number): number | null {
    const { host } = this;
    const others = host.memberIds().filter((id) => id !== host.id);
    const { term } = host.raft;
    const ownMax = host.locks.behaviourMax;
    return this.behaviourClaims.agreedMax(others, ownMax, term, nowMs, host.electionTimeoutMs());
  }
}
