import {
  type LockCommand,
  type LockLimits,
  type LockResult,
  LockStateMachine,
  type RememberedResult,
} from '../../lock/index.ts';
import {
  type Entry,
  type MessageOf,
  type Progress,
  type ProposeResult,
  Raft,
  type RaftConfig,
} from '../../raft/index.ts';
import {
  type FencingToken,
  fencingToken,
  type LogIndex,
  logIndex,
  type NodeId,
} from '../../util/ids.ts';
import type { LockMachineFactory } from './replica.ts';
import type { SimBugs } from './simulator.ts';

/**
 * Known bugs, injected only from tests by subclassing the Raft core or the lock state
 * machine and overriding one protected rule. The simulator must catch each of them:
 * this is how we know its checks have teeth. Production code has no bug flags.
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

/**
 * A leader counts its own copy of a new entry toward the commit as it appends it, before
 * its write is durable (the rule thesis §10.2.1 relaxes only for sending). With one
 * follower's acknowledgement it commits and tells the followers, which apply an entry
 * that one disk of three holds.
 */
export class CountsOwnCopyBeforePersisting extends Raft {
  override propose(data: Uint8Array): ProposeResult {
    const result = super.propose(data);
    if (result.ok) this.countOwnCopy(result.index);
    return result;
  }
}

/** A leader answers reads once it alone has confirmed them, not a majority. */
class ReadsWithOwnConfirmation extends Raft {
  protected override readQuorum(_read: { readonly requester: NodeId | null }): number {
    return 1;
  }
}

/** A leader answers its own reads without a heartbeat round; forwarded ones still get one. */
class LocalReadsSkipHeartbeatRound extends Raft {
  protected override readQuorum(read: { readonly requester: NodeId | null }): number {
    return read.requester === null ? 1 : super.readQuorum(read);
  }
}

/** A follower answers a read at its own applied index instead of asking the leader. */
class FollowerReadsAppliedIndex extends Raft {
  protected override followerReadIndex(leader: NodeId, context: string): boolean {
    const readIndex = this.log.appliedIndex;
    this.step({
      type: 'ReadIndexResponse',
      from: leader,
      to: this.id,
      term: this.term,
      context,
      readIndex,
    });
    return true;
  }
}

/**
 * A leader compacts past a snapshot it is streaming to a follower (no compaction floor).
 * Where snapshots stream slower than the log outgrows what compaction keeps, that
 * follower receives one snapshot after another and never catches up.
 */
class IgnoresCompactionFloor extends Raft {
  override compactionFloor(): LogIndex | null {
    return null;
  }
}

/** An expiry applies even when a refresh came after the one the leader timed. */
class ExpiresRefreshedSessions extends LockStateMachine {
  protected override expiryGuardHolds(_last: LogIndex, _timed: LogIndex): boolean {
    return true;
  }
}

/** A promoted waiter's token is its request's index, not the granting entry's. */
class TokenFromRequestEntry extends LockStateMachine {
  protected override grantToken(requestIndex: LogIndex): FencingToken {
    return fencingToken(requestIndex);
  }
}

/**
 * A waiting set is granted only the lock whose queue let it go (the partial grant the
 * atomic multi-lock forbids). Its own invariant check is silenced too, as it would be if
 * the same mistake were made in both: the simulator's model must catch it on its own.
 */
class GrantsSetLockByLock extends LockStateMachine {
  protected override grantedTogether(_names: readonly string[], at: string): readonly string[] {
    return [at];
  }

  override checkInvariants(): void {}
}

/**
 * A semaphore lets one permit too many in: a request fits while the permits held plus
 * its own stay within the limit plus one. Its invariant check is silenced, so that the
 * simulator's model must catch it on its own.
 */
class PermitsOverLimit extends LockStateMachine {
  protected override permitsFit(held: number, permits: number, limit: number): boolean {
    return held + permits <= limit + 1;
  }

  override checkInvariants(): void {}
}

/**
 * A semaphore keeps one permit back: a request fits only while the permits held plus its
 * own stay below the limit, so a semaphore is never filled and a request for all of its
 * permits waits for ever. The model's promise that a request that fits is granted catches
 * it; no invariant of the state does.
 */
class PermitsOneShort extends LockStateMachine {
  protected override permitsFit(held: number, permits: number, limit: number): boolean {
    return held + permits < limit;
  }
}

/**
 * An election takes a second leader beside the first (never a third). Its invariant
 * check is silenced too: the model must see the two leaders itself.
 */
class TwoLeaders extends LockStateMachine {
  protected override leaderSeatFree(leaders: number): boolean {
    return leaders <= 1;
  }

  override checkInvariants(): void {}
}

/**
 * A retried Proclaim is told its first answer, Proclaimed, even once the term it
 * proclaimed in has ended (the answer before rev-kinds' F1).
 */
class ProclaimRetriesVerbatim extends LockStateMachine {
  protected override answerRetry(
    command: LockCommand,
    key: string,
    remembered: RememberedResult,
  ): LockResult {
    if (command.type === 'Proclaim') return remembered.result;
    return super.answerRetry(command, key, remembered);
  }
}

/**
 * A leader marks every empty append to a replicating follower as a commit notice, the
 * one a heartbeat answer prompts too, so a follower whose acknowledgement was lost is
 * never asked again in a way it answers: its match stays behind, and once the leader
 * needs it for a majority, nothing more commits.
 */
export class NoticesLaggingFollowers extends Raft {
  protected override isCommitNotice(progress: Progress, entries: readonly Entry[]): boolean {
    return super.isCommitNotice(progress, entries, true);
  }
}

function subclass(Core: new (config: RaftConfig) => Raft): SimBugs {
  return { createRaft: (config) => new Core(config) };
}

function lockSubclass(Machine: new (limits: Partial<LockLimits>) => LockStateMachine): {
  readonly createLockMachine: LockMachineFactory;
} {
  return { createLockMachine: (limits) => new Machine(limits) };
}

export const INJECTED_BUGS = {
  commitsOldTermEntries: subclass(CommitsOldTermEntries),
  votesTwice: subclass(VotesTwice),
  acknowledgesBeforePersisting: { ackBeforePersist: true },
  countsOwnCopyBeforePersisting: subclass(CountsOwnCopyBeforePersisting),
  keepsConflictingSuffix: subclass(KeepsConflictingSuffix),
  expiresRefreshedSessions: lockSubclass(ExpiresRefreshedSessions),
  readsWithOwnConfirmation: subclass(ReadsWithOwnConfirmation),
  localReadsSkipHeartbeatRound: subclass(LocalReadsSkipHeartbeatRound),
  tokenFromRequestEntry: lockSubclass(TokenFromRequestEntry),
  grantsSetLockByLock: lockSubclass(GrantsSetLockByLock),
  permitsOverLimit: lockSubclass(PermitsOverLimit),
  twoLeaders: lockSubclass(TwoLeaders),
  permitsOneShort: lockSubclass(PermitsOneShort),
  proclaimRetriesVerbatim: lockSubclass(ProclaimRetriesVerbatim),
  followerReadsAppliedIndex: subclass(FollowerReadsAppliedIndex),
  ignoresCompactionFloor: subclass(IgnoresCompactionFloor),
} as const satisfies Record<string, SimBugs>;

export type InjectedBug = keyof typeof INJECTED_BUGS;
