import { randomUUID } from 'node:crypto';
import { BEHAVIOUR_BASE } from '../lock/index.ts';
import type { StoredIdentity } from '../storage/index.ts';
import type { NodeId } from '../util/ids.ts';
import { withFields } from '../util/objects.ts';
import type { PeerMessage } from './peer-message.ts';
import type { Transport } from './transport.ts';

/**
 * Which cluster a node belongs to, and how that keeps clusters apart.
 *
 * Node ids are names an operator picks (the default config calls every cluster's nodes
 * n1..n3), so they cannot tell two clusters apart. Every database therefore stores a
 * cluster id and its node id (storage `identity`), and every peer message carries the
 * sender's cluster id. A node drops a message whose id is not its own before the Raft
 * core sees it: to Raft that is a lost message, which it tolerates, so filtering can
 * never make two members disagree. It only keeps strangers out: a node started on
 * another cluster's directory can no longer win an election with its higher term, and
 * no follower appends a foreign leader's entries.
 *
 * Where the id comes from, and why the founders agree on it:
 * - The config's `clusterId`, when given: every founder stores it at bootstrap.
 * - Otherwise exactly one founder generates it: the one whose id sorts first among the
 *   founders in the config (the same file for all of them, so they agree on who it is,
 *   without a message). It stores a random UUID in the same synced batch that creates
 *   its database. The other founders, and every joiner, start with '' (not known).
 * - A node that does not know the id accepts every message, and takes the id from the
 *   first one that carries it, from whichever member sent it: it saves the id (synced)
 *   before it accepts any message carrying it, and drops that first one (Raft resends).
 *   From then on it sends the id and refuses everything else.
 * Since only one node ever generates an id and every other node only copies one, no two
 * members can end up with different generated ids: there is no race to lose. A joiner
 * (`dlm serve --join`) learns the id from the leader's first message this way.
 * - A node that knows the id still refuses a member's message without one, but answers
 *   it at once with a message that carries the id (at most once per member per tick).
 *   Founders learn the id at different times, from the generator's first message that
 *   gets through; a follower that learned it before its leader would otherwise stop
 *   hearing that leader, which learns it only when the generator reaches it too (its
 *   link may be in reconnect backoff for seconds), and elect another. Answered, the
 *   leader learns the id one round trip after the follower, well within an election
 *   timeout. The answer only hastens what the id-less node does anyway on the next
 *   message it gets from us; what is refused and counted is unchanged.
 *
 * What stays open: until the generating founder has been heard from, the others run
 * without an id and accept anyone, as every node did before ids existed. A config
 * `clusterId` closes that window, and lets every start check the database against it.
 */

/** A fresh cluster id, for the founder that generates it. */
export function generateClusterId(): string {
  return randomUUID();
}

/** The identity an EMPTY database is created with (see the module comment). */
export function bootstrapIdentity(options: {
  readonly nodeId: NodeId;
  /** The config's clusterId, or null. */
  readonly clusterId: string | null;
  /** The founders listed in the config, or null for a node joining with --join. */
  readonly founders: readonly string[] | null;
}): StoredIdentity {
  const { nodeId, clusterId, founders } = options;
  if (clusterId !== null) return { clusterId, nodeId };
  const generator = founders === null ? undefined : [...founders].sort()[0];
  return { clusterId: generator === nodeId ? generateClusterId() : '', nodeId };
}

/** The database belongs to another node or another cluster: the node must not start. */
export class IdentityMismatchError extends Error {
  override readonly name = 'IdentityMismatchError';
}

/** What the start-up check decided. */
export interface StartIdentity {
  readonly identity: StoredIdentity;
  /** The identity changed (an older database, or the config named the cluster): save it. */
  readonly save: boolean;
  /** For the log, when `save`: what was adopted and why. */
  readonly note: string | null;
}

/**
 * Checks the stored identity at every start against the node's id and the config's
 * clusterId. Throws IdentityMismatchError naming both ids and the directory when the
 * database is another node's or another cluster's. A database from before identities
 * were kept (none stored) adopts the node's id and the config's clusterId, if any.
 */
export function checkIdentityAtStart(
  stored: StoredIdentity | null,
  expected: { readonly nodeId: NodeId; readonly clusterId: string | null },
  directory: string,
): StartIdentity {
  const { nodeId, clusterId } = expected;
  if (stored === null) {
    const identity = { clusterId: clusterId ?? '', nodeId };
    const cluster =
      clusterId === null
        ? 'it will learn the cluster id from the first peer that sends one'
        : `cluster id ${clusterId} from the config`;
    return {
      identity,
      save: true,
      note: `the database in ${directory} has no stored identity (written before identities were kept): adopting node id ${nodeId}, and ${cluster}`,
    };
  }
  if (stored.nodeId !== nodeId) {
    throw new IdentityMismatchError(
      `the database in ${directory} belongs to node ${stored.nodeId}, not to ${nodeId}: it is another member's data directory (restore a node only from its own backup)`,
    );
  }
  if (clusterId === null || stored.clusterId === clusterId) {
    return { identity: stored, save: false, note: null };
  }
  if (stored.clusterId === '') {
    return {
      identity: { clusterId, nodeId },
      save: true,
      note: `the database in ${directory} did not know its cluster id yet: adopting ${clusterId} from the config`,
    };
  }
  throw new IdentityMismatchError(
    `the database in ${directory} belongs to cluster ${stored.clusterId}, but the config says clusterId ${clusterId}: it is another cluster's data directory`,
  );
}

/** Other clusters' ids remembered since start; a voter cycling through ids gains nothing. */
const FOREIGN_IDS_TRACKED_MAX = 16;

/** What to do with one inbound peer message. */
export type Admission =
  | { readonly kind: 'accept' }
  /** Unknown id so far: save this one, and drop the message meanwhile. */
  | { readonly kind: 'adopt'; readonly clusterId: string }
  /** Saving an adopted id is in flight: drop, the sender resends. */
  | { readonly kind: 'wait' }
  | {
      readonly kind: 'foreign';
      readonly from: string;
      readonly clusterId: string;
      /**
       * Set when this node, not the sender, is the stranger: since it started no message
       * carried its own id, while a majority of its voters sent this other one. It was
       * started on another cluster's data directory.
       */
      readonly strandedAmong: readonly NodeId[] | null;
      /** A member sent no id because it has not learned it: send it ours now. */
      readonly answer: boolean;
    };

/**
 * The node's side of the module comment: the current cluster id ('' = not known yet,
 * and null storage identity behaves the same), and the verdict on each inbound message.
 */
export class ClusterIdentityGuard {
  private adopting = false;
  private heardOwn = false;
  /** Since start: who sent each other cluster's id (bounded by the members' count). */
  private readonly foreignSenders = new Map<string, Set<string>>();
  /** When each id-less member was last answered (bounded by the members' count). */
  private readonly answeredAtMs = new Map<NodeId, number>();

  constructor(
    private readonly self: NodeId,
    private current: string,
    /** The least time between two answers to one id-less member: the node's tick. */
    private readonly answerIntervalMs: number,
  ) {}

  get clusterId(): string {
    return this.current;
  }

  /** The adopted id is on disk: from now on it is this node's. */
  adopted(clusterId: string): void {
    this.adopting = false;
    this.current = clusterId;
  }

  /** Saving an adopted id failed; the node stops, so no more verdicts matter. */
  adoptionFailed(): void {
    this.adopting = false;
  }

  admit(
    message: PeerMessage,
    members: { readonly voters: readonly NodeId[]; readonly learners: readonly NodeId[] },
    nowMs: number,
  ): Admission {
    const theirs = typeof message.clusterId === 'string' ? message.clusterId : '';
    if (this.current === '') {
      if (this.adopting) return { kind: 'wait' };
      if (theirs === '') return { kind: 'accept' };
      this.adopting = true;
      return { kind: 'adopt', clusterId: theirs };
    }
    if (theirs === this.current) {
      this.heardOwn = true;
      return { kind: 'accept' };
    }
    const from = senderOf(message);
    return {
      kind: 'foreign',
      from,
      clusterId: theirs,
      strandedAmong: this.stranded(theirs, from, members.voters),
      answer: message.clusterId === '' && this.answerDue(from, members, nowMs),
    };
  }

  /**
   * Whether to tell `from`, which sent an explicit '' (a peer older than cluster ids
   * sends nothing and would not learn), our id. Only members: a stranger's name may be
   * anything, and the answers to one member are bounded by the clock.
   */
  private answerDue(
    from: string,
    members: { readonly voters: readonly NodeId[]; readonly learners: readonly NodeId[] },
    nowMs: number,
  ): boolean {
    const member = [...members.voters, ...members.learners].find((id) => id === from);
    if (member === undefined || member === this.self) return false;
    const lastMs = this.answeredAtMs.get(member);
    if (lastMs !== undefined && nowMs - lastMs < this.answerIntervalMs) return false;
    this.answeredAtMs.set(member, nowMs);
    return true;
  }

  private stranded(theirs: string, from: string, voters: readonly NodeId[]): NodeId[] | null {
    if (this.heardOwn || theirs === '') return null;
    // Only other voters count: a stranger with a made-up id cannot grow this.
    if (from === this.self || !voters.includes(from as NodeId)) return null;
    const senders = this.foreignSenders.get(theirs) ?? new Set<string>();
    if (senders.size === 0 && this.foreignSenders.size >= FOREIGN_IDS_TRACKED_MAX) return null;
    senders.add(from);
    this.foreignSenders.set(theirs, senders);
    const quorum = Math.floor(voters.length / 2) + 1;
    const others = voters.filter((voter) => voter !== this.self && senders.has(voter));
    return others.length >= quorum ? others.sort() : null;
  }
}

function senderOf(message: PeerMessage): string {
  return message.kind === 'raft' ? message.message.from : message.from;
}

/**
 * The node's transport, stamping every message it sends with the current cluster id and
 * the highest lock behaviour version its binary applies (none at the base, as a binary
 * older than versions sends; see behaviour.ts).
 */
export function stampingTransport(
  inner: Transport,
  clusterId: () => string,
  behaviourMax: () => number,
): Transport {
  // Every Raft message passes here: see withFields for why not a spread.
  const stamped = (message: PeerMessage): PeerMessage => {
    const max = behaviourMax();
    const stamp =
      max > BEHAVIOUR_BASE
        ? { clusterId: clusterId(), behaviour: max }
        : { clusterId: clusterId() };
    return withFields(message, stamp);
  };
  return {
    id: inner.id,
    send: (message) => inner.send(stamped(message)),
    onMessage: (handler) => inner.onMessage(handler),
    ...(inner.addPeer === undefined
      ? {}
      : { addPeer: (id: NodeId, address: string) => inner.addPeer?.(id, address) }),
    ...(inner.removePeer === undefined
      ? {}
      : { removePeer: (id: NodeId) => inner.removePeer?.(id) }),
    close: () => inner.close(),
  };
}
