import { type Entry, type MessageOf, Raft, type RaftConfig } from '../../src/raft/index.ts';
import { type LogIndex, logIndex } from '../../src/util/ids.ts';
import type { SimBugs } from './simulator.ts';

/**
 * Known Raft bugs, injected only from tests by subclassing the core and overriding
 * one protected rule. The simulator must catch each of them: this is how we know its
 * checks have teeth. Production code has no bug flags.
 */

/** Figure 8: the leader commits an entry from an earlier term by counting replicas. */
class CommitsOldTermEntries extends Raft {
  protected override isCommittable(_index: LogIndex): boolean {
    return true;
  }
}

/** A node grants a second vote in a term it already voted in. */
class VotesTwice extends Raft {
  protected override canGrantVote(message: MessageOf<'RequestVote'>): boolean {
    return this.leaderId === null || super.canGrantVote(message);
  }
}

/** A follower appends past a conflict instead of truncating the conflicting suffix. */
class KeepsConflictingSuffix extends Raft {
  protected override appendFromLeader(prevLogIndex: LogIndex, entries: readonly Entry[]): LogIndex {
    const fresh = entries.filter((entry) => entry.index > this.log.lastIndex());
    this.log.append(fresh);
    return logIndex(prevLogIndex + entries.length);
  }
}

function subclass(Core: new (config: RaftConfig) => Raft): SimBugs {
  return { createRaft: (config) => new Core(config) };
}

export const INJECTED_BUGS = {
  commitsOldTermEntries: subclass(CommitsOldTermEntries),
  votesTwice: subclass(VotesTwice),
  acknowledgesBeforePersisting: { ackBeforePersist: true },
  keepsConflictingSuffix: subclass(KeepsConflictingSuffix),
} as const satisfies Record<string, SimBugs>;

export type InjectedBug = keyof typeof INJECTED_BUGS;
