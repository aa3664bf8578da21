import { BEHAVIOUR_BASE } from '../lock/index.ts';
import type { NodeId } from '../util/ids.ts';
import type { PeerMessage } from './peer-message.ts';

/**
 * How the cluster raises its lock behaviour version (src/lock/behaviour.ts) in a rolling
 * upgrade, and keeps binaries that cannot apply it out.
 *
 * Every node stamps each peer message it sends with the highest version its binary
 * applies (`behaviour`); binaries older than versions send no stamp, which means the
 * base. The leader keeps, per member, the stamp of the latest message it admitted from
 * it. Once an entry of its own term applied, it proposes SetBehaviour for the highest
 * version that it and EVERY member (voters and learners) support by a fresh stamp: one
 * heard in the current term within the last election timeout, so from a process running
 * now. A claim a member made before it restarted on an older binary does not count: the
 * first message of the older process carries no stamp, and replaces it.
 *
 * A raise must wait for every member, learners too: a binary from before versions
 * rejects SetBehaviour as an unknown command, changing nothing, and would then go on by
 * the base rules beside nodes that apply the new ones, answering its own clients from a
 * diverged state. What remains open is a member restarted on an older binary in the
 * moment between its last stamp and the raise's commit; the node snapshots at once after
 * a raise, so that such a binary started on its data finds a version 4 snapshot it
 * refuses, rather than replay the raise.
 *
 * After the raise, a member whose latest message claims less than the version in force
 * (a node restarted on an older binary, a new member started on one) gets no Raft
 * traffic from this node, the leader in particular: it never receives an entry it cannot
 * apply faithfully, until it runs a binary that supports the version. A member not heard
 * from yet is not held back: it may only be slow (and a snapshot taken after the raise,
 * which such a binary refuses, is what it would get first). Adding a node is refused at
 * once when its messages (it announces its address before it is added) claim less, and
 * otherwise at the catch-up deadline instead of promoting it: it stays a learner.
 */

/** The version `message`'s sender applies up to: its stamp, or the base for none. */
export function advertisedBehaviour(message: PeerMessage): number {
  return message.behaviour ?? BEHAVIOUR_BASE;
}

/** What one node said of its binary, and when. */
interface Claim {
  readonly behaviourMax: number;
  readonly term: number;
  readonly heardAtMs: number;
}

/**
 * Nodes not (yet) members whose claims are kept: a node about to be added announces its
 * address first, so that adding it can be refused at once if its binary falls short.
 */
const NON_MEMBER_CLAIMS_MAX = 16;

/** The leader's picture of which versions its members apply; see the module comment. */
export class BehaviourClaims {
  /** Every member's, and at most NON_MEMBER_CLAIMS_MAX others', oldest first. */
  private readonly claims = new Map<NodeId, Claim>();
  private readonly nonMembers = new Set<NodeId>();

  /** The latest admitted message from `from`, heard at `term`. */
  heard(from: NodeId, behaviourMax: number, term: number, nowMs: number, member: boolean): void {
    if (member) this.nonMembers.delete(from);
    else this.noteNonMember(from);
    this.claims.set(from, { behaviourMax, term, heardAtMs: nowMs });
  }

  private noteNonMember(id: NodeId): void {
    this.nonMembers.delete(id);
    this.nonMembers.add(id);
    for (const oldest of this.nonMembers) {
      if (this.nonMembers.size <= NON_MEMBER_CLAIMS_MAX) break;
      this.nonMembers.delete(oldest);
      this.claims.delete(oldest);
    }
  }

  /** Claims of nodes removed from the members count as any non-member's from now on. */
  membersChanged(members: readonly NodeId[]): void {
    for (const id of this.claims.keys()) {
      if (members.includes(id)) this.nonMembers.delete(id);
      else if (!this.nonMembers.has(id)) this.noteNonMember(id);
    }
  }

  /**
   * The highest version every one of `others` applies by a fresh claim, capped at
   * `ownMax`; null while some member has none (not heard in this term lately).
   */
  agreedMax(
    others: readonly NodeId[],
    ownMax: number,
    term: number,
    nowMs: number,
    freshMs: number,
  ): number | null {
    let agreed = ownMax;
    for (const id of others) {
      const claim = this.claims.get(id);
      if (claim === undefined || claim.term !== term || nowMs - claim.heardAtMs > freshMs) {
        return null;
      }
      agreed = Math.min(agreed, claim.behaviourMax);
    }
    return agreed;
  }

  /** What `id`'s latest message said its binary applies up to; null if none was heard. */
  claimOf(id: NodeId): number | null {
    return this.claims.get(id)?.behaviourMax ?? null;
  }

  /** Whether `id`'s latest message said it cannot apply `version` (unheard: no). */
  fallsShortOf(id: NodeId, version: number): boolean {
    const claim = this.claims.get(id);
    return claim !== undefined && claim.behaviourMax < version;
  }
}
