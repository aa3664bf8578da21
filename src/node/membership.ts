import type { ClusterConfig, ConfigChange, ProposeRejection } from '../raft/index.ts';
import type { StoredAddress } from '../storage/index.ts';
import type { NodeId } from '../util/ids.ts';
import { DlmError, unavailable } from './errors.ts';
import type { Transport } from './transport.ts';

/**
 * Membership at run time: where members are reached, and how the core's refusals of a
 * config change read to an operator.
 *
 * Addresses travel outside the log: a config entry names only a node id. Each node
 * keeps an address book:
 * - loaded from its own database (the book as it last saved it), then overlaid by its
 *   static config (the founding nodes, and itself), which wins where both name a node;
 * - on the leader, updated by AddMember, which names the new member's addresses;
 * - spread by 'peerAddresses' peer messages: the leader sends its book to every member
 *   and to the new one when it adds a member, and every node sends its book to every
 *   member it knows when it starts and then every few seconds;
 * - saved to its database (not through the log) whenever it changes.
 * So a node that restarts with only the founding nodes in its config learns the others
 * from the first member that reaches it, and a joining node (`dlm serve --join`, whose
 * config names itself and the founders) announces its own address to the founders.
 * The saved book covers the case where no member can reach it first: once every
 * founder is gone, members that joined later find each other only through it.
 *
 * An entry learned from a peer never overwrites a known address unless it comes from
 * the member itself or from the current leader; an empty field never overwrites.
 */
export type MemberAddress = StoredAddress;

/**
 * The address book, and the transport links that follow it. Entries are never
 * forgotten (a handful of strings per node that ever was a member), but the link to a
 * removed member is closed when its removal applies.
 */
export class AddressBook {
  private readonly entries = new Map<NodeId, MemberAddress>();

  constructor(
    private readonly self: NodeId,
    private readonly transport: Transport,
    /** Called after every change of an entry (not when a merge changes nothing). */
    private readonly onChange: () => void = () => {},
  ) {}

  all(): ReadonlyMap<NodeId, MemberAddress> {
    return new Map(this.entries);
  }

  /**
   * Merges one entry; `overwrite` lets its non-empty fields replace known ones. A new or
   * changed peer address is handed to the transport.
   */
  learn(entry: MemberAddress, overwrite: boolean): void {
    const known = this.entries.get(entry.id);
    const pick = (mine: string, theirs: string): string =>
      theirs === '' || (mine !== '' && !overwrite) ? mine : theirs;
    const next: MemberAddress = {
      id: entry.id,
      peerAddress: pick(known?.peerAddress ?? '', entry.peerAddress),
      clientAddress: pick(known?.clientAddress ?? '', entry.clientAddress),
    };
    if (known?.peerAddress === next.peerAddress && known.clientAddress === next.clientAddress) {
      return;
    }
    this.entries.set(entry.id, next);
    if (next.peerAddress !== (known?.peerAddress ?? '')) this.connect(entry.id);
    this.onChange();
  }

  /** (Re)opens the link to a member, when its address is known. */
  connect(id: NodeId): void {
    const peerAddress = this.entries.get(id)?.peerAddress ?? '';
    if (id !== this.self && peerAddress !== '') this.transport.addPeer?.(id, peerAddress);
  }

  /** Sends the whole book to each of `to` (not to ourselves). */
  announce(to: Iterable<NodeId>): void {
    if (this.entries.size === 0) return;
    const addresses = [...this.entries.values()];
    for (const peer of new Set(to)) {
      if (peer === this.self) continue;
      this.transport.send({ kind: 'peerAddresses', from: this.self, to: peer, addresses });
    }
  }

  /** Sends the whole book to `to`, even an empty one (see ClusterIdentityGuard.answer). */
  send(to: NodeId): void {
    const addresses = [...this.entries.values()];
    this.transport.send({ kind: 'peerAddresses', from: this.self, to, addresses });
  }

  /**
   * A peer's book. Its entries fill gaps; they replace what we know only when the
   * member itself or the leader says so, and never our own entry. A sender that lacks
   * entries we hold gets our book back, so a node that restarted knowing only the
   * founders learns the rest from its first answer.
   */
  receive(from: NodeId, addresses: readonly MemberAddress[], leaderId: NodeId | null): void {
    if (!Array.isArray(addresses)) return;
    // Peer messages are not checked on the wire, and the book is saved: a malformed
    // entry kept here would make the database refuse to open.
    const valid = addresses.filter(isMemberAddress);
    for (const entry of valid) {
      const authoritative = entry.id !== this.self && (entry.id === from || from === leaderId);
      this.learn(entry, authoritative);
    }
    const theirs = new Set(valid.map((entry) => entry.id));
    if ([...this.entries.keys()].some((id) => !theirs.has(id))) this.announce([from]);
  }

  /** Keeps the links in step with membership as config entries apply, on every node. */
  configApplied(change: ConfigChange): void {
    if (change.nodeId === this.self) return;
    if (change.type === 'removeNode') this.transport.removePeer?.(change.nodeId);
    else this.connect(change.nodeId);
  }

  /**
   * After a snapshot replaced the config entries this node would have applied one by
   * one (configApplied saw none of them): a link to every member, none to anyone else.
   * A member removed and added back under the same id, with the same address, would
   * otherwise stay unlinked here, counted as a voter yet sent nothing.
   */
  reconcile(config: ClusterConfig): void {
    const members = new Set([...config.voters, ...config.learners]);
    for (const id of members) this.connect(id);
    for (const id of this.entries.keys()) {
      if (id !== this.self && !members.has(id)) this.transport.removePeer?.(id);
    }
  }

  ids(): NodeId[] {
    return [...this.entries.keys()];
  }
}

function isMemberAddress(entry: unknown): entry is MemberAddress {
  if (typeof entry !== 'object' || entry === null) return false;
  const { id, peerAddress, clientAddress } = entry as Record<string, unknown>;
  return (
    typeof id === 'string' &&
    id !== '' &&
    typeof peerAddress === 'string' &&
    typeof clientAddress === 'string'
  );
}

/** Whether `config` shows `change` done; false means its entry was lost to a leader change. */
export function configReflects(config: ClusterConfig, change: ConfigChange): boolean {
  const voter = config.voters.includes(change.nodeId);
  const learner = config.learners.includes(change.nodeId);
  switch (change.type) {
    case 'addLearner':
      return voter || learner;
    case 'promoteLearner':
      return voter;
    case 'removeNode':
      return !voter && !learner;
  }
}

export function describeChange(change: ConfigChange): string {
  switch (change.type) {
    case 'addLearner':
      return `adding ${change.nodeId} as a learner`;
    case 'promoteLearner':
      return `promoting ${change.nodeId} to voter`;
    case 'removeNode':
      return `removing ${change.nodeId}`;
  }
}

/** Refusals a membership change waits out (until its deadline) instead of failing at once. */
export const TRANSIENT_REFUSALS: ReadonlySet<ProposeRejection> = new Set<ProposeRejection>([
  'configChangePending',
  'transferringLeadership',
  'tooManyUncommitted',
  'learnerBehind',
]);

/** The core's refusal of a config change, as an error that names the member and what to do. */
export function membershipRefusal(
  change: ConfigChange,
  reason: ProposeRejection,
  leaderId: NodeId | null,
): DlmError {
  const what = describeChange(change);
  const id = change.nodeId;
  switch (reason) {
    case 'notLeader':
      return unavailable(`${what} was refused: membership changes go to the leader`, leaderId);
    case 'transferringLeadership':
      return unavailable(`${what} was refused: leadership is being handed over`, leaderId);
    case 'tooManyUncommitted':
      return new DlmError(
        'RESOURCE_EXHAUSTED',
        `${what} was refused: the leader has too many uncommitted writes`,
        leaderId,
      );
    case 'configChangePending':
      return new DlmError(
        'FAILED_PRECONDITION',
        `${what} was refused: another membership change is still being applied; retry once it is`,
      );
    case 'alreadyMember':
      return new DlmError('FAILED_PRECONDITION', `${id} is already a member of the cluster`);
    case 'notALearner':
      return new DlmError(
        'FAILED_PRECONDITION',
        `${id} is not a learner, so it cannot be promoted`,
      );
    case 'notAMember':
      return new DlmError('FAILED_PRECONDITION', `${id} is not a member of the cluster`);
    case 'learnerBehind':
      return new DlmError(
        'DEADLINE_EXCEEDED',
        `${id} is still too far behind the leader to be promoted; it stays a learner (add it again to retry)`,
      );
    case 'tooFewVoters':
      return new DlmError(
        'FAILED_PRECONDITION',
        `removing ${id} would leave fewer than 2 voters; add a member first`,
      );
  }
}
