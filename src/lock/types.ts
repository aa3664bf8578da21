import type { FencingToken, LogIndex, SessionId } from '../util/ids.ts';
import type { IdentityQuota } from './identity-quota.ts';
import type { LockLimits } from './limits.ts';

export type LockMode = 'exclusive' | 'shared';

/**
 * What a name is while it has a record (a holder, a waiter or a lock-delay): a plain
 * lock (Acquire, AcquireAll), a semaphore (AcquirePermits) or an election (Campaign).
 * The first request that creates the record fixes its kind; a request of another kind
 * is refused (kindMismatch) until the record is gone. From BEHAVIOUR_SEMAPHORES_ELECTIONS.
 */
export type LockKind = 'lock' | 'semaphore' | 'election';

/** One lock of an AcquireAll, in the mode asked for it. */
export interface LockClaim {
  readonly lock: string;
  readonly mode: LockMode;
}

/**
 * One edge of a wait-for cycle: `waiter` waits for `lock`, which `blocker` holds in a
 * mode that excludes the waiter's (`blockerHolds`) or waits for ahead of it in the queue.
 */
export interface WaitForHop {
  readonly waiter: SessionId;
  readonly lock: string;
  readonly blocker: SessionId;
  readonly blockerHolds: boolean;
}

/**
 * Who asks (issue 15): the identity the node that took the call authenticated, '' for an
 * anonymous caller (no auth configured). Absent means ''. A session belongs to the
 * identity that opened it; a command on a session that carries another is refused
 * (notSessionOwner) on every replica alike.
 */
interface Asker {
  readonly identity?: string;
}

/** The per-identity limits the authorizing node applied; absent: none. */
interface Limited {
  readonly quota?: IdentityQuota;
}

/**
 * Commands the lock state machine applies, one per log entry. Clients cause the
 * first group; the leader's timers propose the guarded timer commands, which are
 * no-ops once stale; an operator issues Revoke.
 *
 * Request ids make retries exactly-once: a mutation is remembered by
 * (sessionId, requestId), and OpenSession by its requestId alone.
 */
export type LockCommand =
  | ({
      readonly type: 'OpenSession';
      readonly ttlMs: number;
      readonly clientName: string;
      readonly requestId: string;
    } & Asker &
      Limited)
  /** Refreshes several sessions in one entry, so keepalives batch. */
  | ({ readonly type: 'KeepAlive'; readonly sessionIds: readonly SessionId[] } & Asker)
  | ({
      readonly type: 'CloseSession';
      readonly sessionId: SessionId;
      readonly requestId: string;
    } & Asker)
  /** Applies only if the session has not been refreshed after `lastRefreshIndex`. */
  | {
      readonly type: 'ExpireSession';
      readonly sessionId: SessionId;
      readonly lastRefreshIndex: LogIndex;
    }
  | ({
      readonly type: 'Acquire';
      readonly lock: string;
      readonly sessionId: SessionId;
      readonly mode: LockMode;
      /** 0 = try-lock: refuse at once if the lock cannot be granted. */
      readonly waitMs: number;
      readonly requestId: string;
      readonly owner: string;
      /** 0 = no limit; otherwise the grant ends this long after it is made. */
      readonly maxHoldMs: number;
      /** 0 = the cluster default; how long the lock stays closed after this holder's session expires. */
      readonly lockDelayMs: number;
    } & Asker &
      Limited)
  /**
   * Atomic multi-lock (issue 17; from BEHAVIOUR_MULTI_LOCK, an unknown command type
   * before): every lock of `locks` at once, each in its mode, or none. While it waits it
   * holds none of them and keeps its place in each lock's queue. One grant covers the
   * set, with one token (the granting entry's index); the set's duration fields are
   * those of Acquire. Releasing, revoking or ending any lock of the set ends it whole.
   */
  | ({
      readonly type: 'AcquireAll';
      readonly locks: readonly LockClaim[];
      readonly sessionId: SessionId;
      readonly waitMs: number;
      readonly requestId: string;
      readonly owner: string;
      readonly maxHoldMs: number;
      readonly lockDelayMs: number;
    } & Asker &
      Limited)
  /**
   * Semaphore (issue 17; from BEHAVIOUR_SEMAPHORES_ELECTIONS, an unknown command type
   * before): `permits` of the semaphore `lock`, of which at most `limit` are held at
   * once. Each grant is one holder (mode shared) with its own token, the granting
   * entry's index; waiters are served FIFO (head of line: a large request is not
   * overtaken). Every request of a semaphore names the same `limit` while it has a
   * record (kindMismatch otherwise). Release, CancelWait, Withdraw and the timers work as
   * for an Acquire, by `lock`. Wait-for edges through a semaphore are not followed: any
   * holder's release may free a waiter, so a cycle through one is not surely a deadlock.
   */
  | ({
      readonly type: 'AcquirePermits';
      readonly lock: string;
      readonly permits: number;
      readonly limit: number;
      readonly sessionId: SessionId;
      readonly waitMs: number;
      readonly requestId: string;
      readonly owner: string;
      readonly maxHoldMs: number;
      readonly lockDelayMs: number;
    } & Asker &
      Limited)
  /**
   * Leader election (issue 17; from BEHAVIOUR_SEMAPHORES_ELECTIONS): an exclusive
   * Acquire of the election `lock` whose grant carries `value`. The holder leads; the
   * token of its grant is its term's fencing token, so each new leader's is higher.
   * Candidates wait FIFO. Resign is a Release of the grant.
   */
  | ({
      readonly type: 'Campaign';
      readonly lock: string;
      readonly value: string;
      readonly sessionId: SessionId;
      readonly waitMs: number;
      readonly requestId: string;
      readonly owner: string;
      readonly maxHoldMs: number;
      readonly lockDelayMs: number;
    } & Asker &
      Limited)
  /**
   * The leader of election `lock` (the grant with `token`, of `sessionId`) replaces its
   * value. Refused notHolder / staleToken as a Release would be.
   */
  | ({
      readonly type: 'Proclaim';
      readonly lock: string;
      readonly sessionId: SessionId;
      readonly token: FencingToken;
      readonly value: string;
      readonly requestId: string;
    } & Asker)
  | ({
      readonly type: 'Release';
      readonly lock: string;
      readonly sessionId: SessionId;
      readonly token: FencingToken;
      readonly requestId: string;
    } & Asker)
  /**
   * Withdraws the waiting Acquire of the same session and request id, as when its call
   * is cancelled. A later wait of the session under another request is not touched.
   */
  | {
      readonly type: 'CancelWait';
      readonly lock: string;
      readonly sessionId: SessionId;
      readonly requestId: string;
    }
  /**
   * Gives back whatever the Acquire attempt at `attemptIndex` (of this session and
   * request id) got, because its caller went away (deadline, cancel, a failure it was
   * told of): its wait, or the grant made for it. Applies only if that entry is still
   * the latest that carried the request (a newer attempt's caller may have been told
   * Acquired), else Stale; Stale too for a session that is not live. Afterwards a
   * request that was granted is answered `grantEnded` on retry (its grant was seen by
   * others); one that only waited is forgotten, so a later retry runs afresh.
   */
  | {
      readonly type: 'Withdraw';
      readonly lock: string;
      readonly sessionId: SessionId;
      readonly requestId: string;
      readonly attemptIndex: LogIndex;
    }
  /** Timer: the wait of the Acquire at `waiterIndex` ran out. */
  | {
      readonly type: 'WaitExpired';
      readonly lock: string;
      readonly sessionId: SessionId;
      readonly waiterIndex: LogIndex;
    }
  /** Timer: the lock-delay that began at `delayIndex` is over. */
  | { readonly type: 'LockDelayEnded'; readonly lock: string; readonly delayIndex: LogIndex }
  /** Timer: the grant with `token` has been held for its maxHoldMs. */
  | {
      readonly type: 'MaxHoldReached';
      readonly lock: string;
      readonly sessionId: SessionId;
      readonly token: FencingToken;
    }
  /**
   * Timer: grants the next compatible head waiter of `lock` (at most one), as one entry
   * grants at most one holder per lock. Proposed at once after an entry left the lock
   * with a grantable head waiter (event `promotionPending`); `afterIndex` is that entry.
   * Stale when nothing is grantable.
   */
  | { readonly type: 'Promote'; readonly lock: string; readonly afterIndex: LogIndex }
  /** Operator: frees the lock's current grants, so the next grant gets a higher token. */
  | { readonly type: 'Revoke'; readonly lock: string; readonly reason: string }
  /**
   * Puts `rules` in force from this entry on, on every replica. Invalid rules are
   * rejected (invalidArgument, naming the field) and change nothing. With
   * `onlyIfUnset` it is Stale once any SetRules has applied: a new leader proposes its
   * config's rules that way, so the first to commit wins and a later leader's copy
   * (proposed before it saw the first) changes nothing.
   */
  | {
      readonly type: 'SetRules';
      readonly rules: LockLimits;
      readonly onlyIfUnset: boolean;
      /**
       * From BEHAVIOUR_SEMAPHORES_ELECTIONS: Stale unless the rules in force were set by
       * the entry at this index. A new cluster's leader completes its first rules with
       * it, so that an operator's SetRules committed in between is never overwritten.
       * Ignored below that version, as the releases before ignore it.
       */
      readonly onlyIfSetAt?: LogIndex;
    }
  /**
   * Raises the behaviour version (see behaviour.ts) to `version` from this entry on, on
   * every replica. Proposed by the leader only, once every member supports `version`.
   * Stale when the version is already that high (it never goes down); a version that is
   * not an integer from the base up is rejected (invalidArgument); one above what this
   * binary knows throws BehaviourUnsupportedError: its node stops rather than diverge.
   */
  | { readonly type: 'SetBehaviour'; readonly version: number };

export type LockCommandType = LockCommand['type'];

export interface Holder {
  readonly sessionId: SessionId;
  readonly owner: string;
  readonly mode: LockMode;
  readonly token: FencingToken;
  /** The index of the Acquire entry; below the token when the request waited. */
  readonly requestIndex: LogIndex;
  /** Granted by an AcquireAll: every lock of its set, in code-unit order, held as one. */
  readonly lockSet?: readonly string[];
  /** A semaphore's grant: the permits it holds (mode shared). Absent for other kinds. */
  readonly permits?: number;
  /** An election's grant (its leader): the value it campaigned with or last proclaimed. */
  readonly value?: string;
}

export interface Waiter {
  readonly sessionId: SessionId;
  readonly owner: string;
  readonly mode: LockMode;
  readonly requestIndex: LogIndex;
  readonly requestId: string;
  readonly waitMs: number;
  readonly maxHoldMs: number;
  readonly lockDelayMs: number;
  /** Queued by an AcquireAll: every lock of its set, in code-unit order; it waits in each. */
  readonly lockSet?: readonly string[];
  /** Queued by an AcquirePermits: the permits it asks for. */
  readonly permits?: number;
  /** Queued by a Campaign: the value it will lead with. */
  readonly value?: string;
  /**
   * The proposal of the entry that queued the wait, from behaviour version 3
   * (BEHAVIOUR_ATTEMPT_PROPOSALS); absent before it or for a timer's entry.
   */
  readonly proposalId?: string;
}

/** Why a request was refused. Each maps to one gRPC status at the API edge. */
export type RejectionCode =
  | 'invalidArgument'
  | 'sessionNotFound'
  | 'notHolder'
  | 'staleToken'
  | 'limitReached'
  /**
   * A retried Acquire whose grant has ended since (released, revoked, max-hold): its
   * remembered `Acquired` is no longer true, and it is not run again (exactly once).
   */
  | 'grantEnded'
  /**
   * The session holds (or waits for) the lock in the other mode. A grant cannot change
   * mode in place: telling a shared holder `Acquired` for exclusive would be false.
   */
  | 'modeMismatch'
  /**
   * The session already waits for the lock under another request. Folding a second
   * request into that wait would let the withdrawal of either one take away a grant
   * the other was told of; the caller retries the waiting request (same request id).
   */
  | 'alreadyWaiting'
  /** The session belongs to another identity than the command's (issue 15). */
  | 'notSessionOwner'
  /**
   * An AcquireAll names a lock the session holds under another grant (or in another
   * mode, or within another set): one grant, one token, must cover the whole set. From
   * behaviour version 5 also a single-lock request for a lock the session holds within a
   * set: the set's grant is not a grant of that lock alone.
   */
  | 'alreadyHolding'
  /**
   * The Acquire would wait, and its wait would close a cycle of sessions each waiting
   * for the next (issue 17): refused at once, naming the cycle, instead of waiting until
   * a TTL ends it. Nothing changed.
   */
  | 'deadlock'
  /**
   * The name is a record of another kind (a lock, a semaphore, an election), or a
   * semaphore with another limit, or an AcquireAll names a semaphore or an election.
   * The detail names the kind (and limit) it has. Nothing changed.
   */
  | 'kindMismatch';

/**
 * The result of one command. Deterministic: every replica computes the same result
 * for the same entry.
 */
export type LockResult =
  | { readonly type: 'SessionOpened'; readonly sessionId: SessionId; readonly ttlMs: number }
  | {
      readonly type: 'KeptAlive';
      readonly refreshed: readonly SessionId[];
      readonly missing: readonly SessionId[];
    }
  | { readonly type: 'SessionClosed'; readonly sessionId: SessionId }
  | { readonly type: 'SessionExpired'; readonly sessionId: SessionId }
  | {
      readonly type: 'Acquired';
      readonly lock: string;
      readonly token: FencingToken;
      readonly mode: LockMode;
      readonly holders: readonly Holder[];
    }
  | { readonly type: 'Queued'; readonly lock: string; readonly position: number }
  /** A try-lock, or a wait that ran out: not an error, it names the current holders. */
  | { readonly type: 'NotAcquired'; readonly lock: string; readonly holders: readonly Holder[] }
  /** Every lock of an AcquireAll's set at once, with one token. */
  | {
      readonly type: 'AcquiredAll';
      readonly token: FencingToken;
      readonly locks: readonly {
        readonly lock: string;
        readonly mode: LockMode;
        readonly holders: readonly Holder[];
      }[];
    }
  /** Waiting in the queue of every lock of the set, at these places. */
  | {
      readonly type: 'QueuedAll';
      readonly locks: readonly { readonly lock: string; readonly position: number }[];
    }
  /** A try-lock or a wait that ended for a set: not an error, it names each lock's holders. */
  | {
      readonly type: 'NotAcquiredAll';
      readonly locks: readonly { readonly lock: string; readonly holders: readonly Holder[] }[];
    }
  /** The leader's new value is in force (Proclaim). */
  | {
      readonly type: 'Proclaimed';
      readonly lock: string;
      readonly token: FencingToken;
      readonly value: string;
    }
  /** `lockSet`: the grant was a set's, and every lock of it was released. */
  | { readonly type: 'Released'; readonly lock: string; readonly lockSet?: readonly string[] }
  | { readonly type: 'WaitCancelled'; readonly lock: string }
  /** What a Withdraw gave back: the attempt's wait, its grant, or nothing (it had ended). */
  | {
      readonly type: 'Withdrawn';
      readonly lock: string;
      readonly undid: 'wait' | 'grant' | 'nothing';
    }
  | { readonly type: 'Revoked'; readonly lock: string; readonly freed: number }
  | { readonly type: 'WaitExpired'; readonly lock: string; readonly sessionId: SessionId }
  | { readonly type: 'LockDelayEnded'; readonly lock: string }
  | { readonly type: 'MaxHoldReached'; readonly lock: string; readonly token: FencingToken }
  | {
      readonly type: 'Promoted';
      readonly lock: string;
      readonly sessionId: SessionId;
      readonly token: FencingToken;
    }
  /** The rules in force from this entry on. */
  | { readonly type: 'RulesSet'; readonly rules: LockLimits }
  /** The behaviour version in force from this entry on. */
  | { readonly type: 'BehaviourSet'; readonly version: number }
  /** A guarded command that no longer matched the state: nothing changed. */
  | { readonly type: 'Stale' }
  | {
      readonly type: 'Rejected';
      readonly code: RejectionCode;
      /** What was wrong, naming the field or limit. */
      readonly detail: string;
      /**
       * The command's field at fault (`owner`, `rules.dedupeWindowMax`), for an
       * invalidArgument about one; `detail` then starts with it. The API names the
       * request's field from it.
       */
      readonly field?: string;
      /** For `deadlock`: the cycle, from the refused request's session round to it. */
      readonly cycle?: readonly WaitForHop[];
    };

export type ReleaseReason = 'release' | 'close' | 'expire' | 'maxHold' | 'revoke';

/**
 * What changed, in order, for watchers and for the runtime's timers. Every event
 * carries the index of the entry that caused it.
 */
export type LockEvent =
  | {
      readonly type: 'granted';
      readonly lock: string;
      readonly holder: Holder;
      /** The Acquire request the grant answers (not in Holder: Describe shows holders to all). */
      readonly requestId: string;
      readonly maxHoldMs: number;
    }
  | {
      readonly type: 'released';
      readonly lock: string;
      readonly sessionId: SessionId;
      readonly token: FencingToken;
      readonly reason: ReleaseReason;
    }
  | { readonly type: 'queued'; readonly lock: string; readonly waiter: Waiter }
  /** The leader of election `lock` proclaimed a new value. */
  | {
      readonly type: 'proclaimed';
      readonly lock: string;
      readonly sessionId: SessionId;
      readonly token: FencingToken;
      readonly value: string;
    }
  | {
      readonly type: 'waitEnded';
      readonly lock: string;
      readonly sessionId: SessionId;
      readonly requestIndex: LogIndex;
      readonly reason: 'granted' | 'expired' | 'cancelled' | 'sessionEnded';
    }
  | {
      readonly type: 'delayStarted';
      readonly lock: string;
      readonly delayIndex: LogIndex;
      readonly delayMs: number;
    }
  | { readonly type: 'delayEnded'; readonly lock: string; readonly delayIndex: LogIndex }
  /**
   * After this entry the lock's head waiter could be granted, but this entry already
   * granted the lock once (one grant per entry keeps tokens unique). The leader's timers
   * propose a Promote for it at once. Always the last event of its entry for the lock.
   */
  | { readonly type: 'promotionPending'; readonly lock: string }
  | {
      readonly type: 'sessionRefreshed';
      readonly sessionId: SessionId;
      readonly ttlMs: number;
    }
  | {
      readonly type: 'sessionEnded';
      readonly sessionId: SessionId;
      readonly reason: 'close' | 'expire';
    };

export interface ApplyOutput {
  readonly result: LockResult;
  readonly events: readonly LockEvent[];
}
