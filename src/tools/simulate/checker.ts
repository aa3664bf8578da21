import type { Entry, HardState } from '../../raft/index.ts';
import type { LogIndex, NodeId, Term } from '../../util/ids.ts';

/**
 * The safety checker. Every check is incremental, so that it can run after every
 * simulated event: the simulator reports what happened (an entry persisted, a commit
 * observed, an entry applied, a leader elected), and the checker compares it with a
 * global registry of what has happened before. A violation throws SafetyViolation.
 */
export class SafetyViolation extends Error {
  override readonly name = 'SafetyViolation';
}

function violation(property: string, detail: string): never {
  throw new SafetyViolation(`${property}: ${detail}`);
}

export function entryKey(entry: Entry): string {
  switch (entry.kind) {
    case 'normal':
      return `n:${new TextDecoder().decode(entry.data)}`;
    case 'noop':
      return 'noop';
    case 'config':
      return `c:${entry.change.type}:${entry.change.nodeId}`;
  }
}

/** FNV-1a over a string, chained: the state machine's digest of everything applied. */
export function chainHash(previous: number, text: string): number {
  let hash = previous ^ 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

interface RegisteredEntry {
  readonly key: string;
  readonly prevTerm: Term;
}

interface CommittedEntry {
  readonly term: Term;
  readonly key: string;
  /** The term of the node that first observed this commit (the committing leader's term). */
  readonly commitTerm: Term;
}

export class SafetyChecker {
  /** Election Safety: the leader of each term. */
  private readonly leaders = new Map<number, NodeId>();
  /** Log Matching: what the entry at (index, term) is, and the term before it. */
  private readonly entries = new Map<string, RegisteredEntry>();
  /** What is known to be committed at each index. */
  private readonly committed = new Map<number, CommittedEntry>();
  private maxCommittedIndex = 0;
  /** State Machine Safety: the digest after applying each index. */
  private readonly appliedDigests = new Map<number, number>();
  private readonly appliedKeys = new Map<number, string>();
  private readonly lockStateHashes = new Map<number, number>();
  /** Durable term and vote per node, which must never go back. */
  private readonly durableHardStates = new Map<NodeId, HardState>();
  checks = 0;

  get highestCommitIndex(): number {
    return this.maxCommittedIndex;
  }

  leaderElected(id: NodeId, term: Term): void {
    this.checks++;
    const existing = this.leaders.get(term);
    if (existing !== undefined && existing !== id) {
      violation('Election Safety', `${existing} and ${id} both lead term ${term}`);
    }
    this.leaders.set(term, id);
  }

  /** An entry reached a node's stable storage right after an entry of `prevTerm`. */
  entryPersisted(node: NodeId, entry: Entry, prevTerm: Term | undefined): void {
    this.checks++;
    const id = `${entry.index}:${entry.term}`;
    const key = entryKey(entry);
    const registered = this.entries.get(id);
    if (registered === undefined) {
      if (prevTerm !== undefined) this.entries.set(id, { key, prevTerm });
      return;
    }
    if (registered.key !== key) {
      violation(
        'Log Matching',
        `${node} holds ${key} at ${id}, another node holds ${registered.key}`,
      );
    }
    if (prevTerm !== undefined && prevTerm !== registered.prevTerm) {
      violation(
        'Log Matching',
        `${node} holds ${id} after an entry of term ${prevTerm}, but it follows term ${registered.prevTerm}`,
      );
    }
  }

  hardStatePersisted(node: NodeId, next: HardState): void {
    this.checks++;
    const previous = this.durableHardStates.get(node);
    if (previous !== undefined) {
      if (next.term < previous.term) {
        violation('Durable term', `${node} term went back from ${previous.term} to ${next.term}`);
      }
      if (
        next.term === previous.term &&
        previous.votedFor !== null &&
        next.votedFor !== previous.votedFor
      ) {
        violation(
          'Durable vote',
          `${node} changed its vote in term ${next.term} from ${previous.votedFor} to ${next.votedFor}`,
        );
      }
    }
    this.durableHardStates.set(node, next);
  }

  /** A node restarted from storage whose hard state must be the last one persisted. */
  restarted(node: NodeId, term: Term, votedFor: NodeId | null): void {
    this.checks++;
    const durable = this.durableHardStates.get(node);
    if (durable === undefined) return;
    if (durable.term !== term || durable.votedFor !== votedFor) {
      violation(
        'Durable state',
        `${node} restarted at term ${term} vote ${votedFor}, but persisted ${durable.term}/${durable.votedFor}`,
      );
    }
  }

  /**
   * A node's commit index now covers `entry`. Returns true when no node had committed
   * this index before: that node is the committing leader.
   */
  entryCommitted(node: NodeId, nodeTerm: Term, entry: Entry): boolean {
    this.checks++;
    const key = entryKey(entry);
    const existing = this.committed.get(entry.index);
    if (existing === undefined) {
      this.committed.set(entry.index, { term: entry.term, key, commitTerm: nodeTerm });
      this.maxCommittedIndex = Math.max(this.maxCommittedIndex, entry.index);
      return true;
    }
    if (existing.term !== entry.term || existing.key !== key) {
      violation(
        'State Machine Safety',
        `${node} committed ${key}@${entry.term} at ${entry.index}, but ${existing.key}@${existing.term} was committed there`,
      );
    }
    return false;
  }

  /**
   * Leader Completeness: a leader of term T holds every entry committed in a term
   * before T. `termAt` reads the leader's log (undefined where it is compacted).
   */
  leaderHasCommitted(
    node: NodeId,
    term: Term,
    firstIndex: LogIndex,
    lastIndex: LogIndex,
    termAt: (index: LogIndex) => Term | undefined,
  ): void {
    this.checks++;
    for (let index = firstIndex; index <= this.maxCommittedIndex; index++) {
      const committed = this.committed.get(index);
      if (committed === undefined || committed.commitTerm >= term) continue;
      if (index > lastIndex) {
        violation(
          'Leader Completeness',
          `leader ${node} of term ${term} ends at ${lastIndex}, missing committed ${index}`,
        );
      }
      const heldTerm = termAt(index as LogIndex);
      if (heldTerm !== undefined && heldTerm !== committed.term) {
        violation(
          'Leader Completeness',
          `leader ${node} of term ${term} holds term ${heldTerm} at ${index}, committed term ${committed.term}`,
        );
      }
    }
  }

  entryApplied(node: NodeId, entry: Entry, digest: number): void {
    this.checks++;
    const key = `${entry.term}:${entryKey(entry)}`;
    const knownKey = this.appliedKeys.get(entry.index);
    if (knownKey !== undefined && knownKey !== key) {
      violation(
        'State Machine Safety',
        `${node} applied ${key} at ${entry.index}, another node applied ${knownKey}`,
      );
    }
    this.appliedKeys.set(entry.index, key);
    this.digestAt(node, entry.index, digest);
  }

  /** Every replica holds the same lock state after applying the same index. */
  lockStateAt(node: NodeId, index: LogIndex, stateHash: number): void {
    this.checks++;
    const known = this.lockStateHashes.get(index);
    if (known !== undefined && known !== stateHash) {
      violation(
        'Lock state',
        `${node} lock state at ${index} hashes to ${stateHash}, others to ${known}`,
      );
    }
    this.lockStateHashes.set(index, stateHash);
  }

  snapshotRestored(node: NodeId, index: LogIndex, digest: number): void {
    this.digestAt(node, index, digest);
  }

  private digestAt(node: NodeId, index: number, digest: number): void {
    this.checks++;
    const known = this.appliedDigests.get(index);
    if (known !== undefined && known !== digest) {
      violation(
        'State Machine Safety',
        `${node} state digest at ${index} is ${digest}, others have ${known}`,
      );
    }
    this.appliedDigests.set(index, digest);
  }

  /** A linearizable read must see every write committed before it was issued. */
  readServed(node: NodeId, readIndex: LogIndex, committedAtIssue: number): void {
    this.checks++;
    if (readIndex < committedAtIssue) {
      violation(
        'Linearizable read',
        `${node} served a read at ${readIndex}, but ${committedAtIssue} was committed before it was issued`,
      );
    }
  }
}

export function monotonic(property: string, node: NodeId, previous: number, next: number): void {
  if (next < previous) violation(property, `${node} went back from ${previous} to ${next}`);
}
