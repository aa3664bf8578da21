import type { SessionId } from '../util/ids.ts';
import {
  acquireKey,
  type Grant,
  type LockRecord,
  reject,
  type SessionRecord,
  toldAlso,
  waiterPosition,
} from './records.ts';
import { type RememberedResult, type RememberedResults, withOpenAttempts } from './remembered.ts';
import type { LockCommand, LockResult, ReleaseReason } from './types.ts';

/**
 * Retries and withdrawals: how a request applied again is answered from what its first
 * application left (remembered.ts), told only what is still true, and how a Withdraw
 * gives back what an attempt of it took, once no caller may have been told of it.
 */

type Withdraw = Extract<LockCommand, { type: 'Withdraw' }>;

/** What of the state machine retries and withdrawals use; closures over its state and helpers. */
export interface RetryHost {
  readonly locks: ReadonlyMap<string, LockRecord>;
  readonly sessions: ReadonlyMap<SessionId, SessionRecord>;
  /** The dedupe window. */
  readonly remembered: RememberedResults;
  requireSession(id: SessionId): SessionRecord;
  acquiredResult(lock: LockRecord, grant: Grant): LockResult;
  /** Not granted: names the lock's current holders. */
  notAcquired(name: string): LockResult;
  holderOf(lock: LockRecord, id: SessionId): Grant;
  /** Ends the session's wait for the lock (its set's, in every queue) and promotes. */
  endWait(lock: LockRecord, id: SessionId, reason: 'cancelled'): void;
  /** Ends the grant (its set's, of every lock) and promotes. */
  endGrant(lock: LockRecord, grant: Grant, reason: ReleaseReason): void;
  /** A set's (lock-set.ts): replaces the session's grant with `told`, on each lock of a set. */
  retell(id: SessionId, lock: string, told: Grant): void;
  /** A set's retry (lock-set.ts). */
  retriedSet(requestId: string, session: SessionRecord, first: LockResult): LockResult;
  /** A test seam of the state machine: whether a Withdraw names `grant`. */
  withdrawFinds(grant: Grant, command: Withdraw): boolean;
}

export class Retries {
  constructor(private readonly host: RetryHost) {}

  /**
   * A retry is not applied again, and it is told only what is still true: the first
   * result when that still holds, else what became of the request.
   */
  answer(command: LockCommand, key: string, remembered: RememberedResult): LockResult {
    switch (command.type) {
      case 'Acquire':
      case 'AcquireAll':
      case 'AcquirePermits':
      case 'Campaign': {
        const session = this.host.requireSession(command.sessionId);
        this.host.remembered.addAttempt(key, remembered);
        return this.retriedAcquire(command.requestId, session, remembered.result);
      }
      case 'Release':
      case 'CancelWait':
        // Released or WaitCancelled is still true, but a session that ended holds and
        // waits for nothing: its client must learn that rather than carry on.
        this.host.requireSession(command.sessionId);
        return remembered.result;
      case 'Proclaim':
        this.host.requireSession(command.sessionId);
        return this.retriedProclaim(command, remembered.result);
      default:
        // SessionOpened and SessionClosed stay true.
        return remembered.result;
    }
  }

  /**
   * `Proclaimed` says the caller leads under its token with its value in force, which
   * stops being true when that term ends (released, revoked, max hold) even while the
   * session lives on, perhaps leading again under a newer token: then the retry is told
   * the term has ended, as an Acquire retry is told its grant has.
   */
  private retriedProclaim(
    command: Extract<LockCommand, { type: 'Proclaim' }>,
    first: LockResult,
  ): LockResult {
    if (first.type !== 'Proclaimed') return first;
    const grant = this.host.locks.get(first.lock)?.holders.get(command.sessionId);
    if (grant?.token === first.token) return first;
    return reject(
      'grantEnded',
      `the term of ${JSON.stringify(first.lock)} under token ${first.token}, in which request ${command.requestId} proclaimed, has ended: it was resigned, revoked or reached its max hold`,
    );
  }

  private retriedAcquire(requestId: string, session: SessionRecord, first: LockResult): LockResult {
    if (isSetResult(first)) return this.host.retriedSet(requestId, session, first);
    if (first.type !== 'Acquired' && first.type !== 'Queued' && first.type !== 'NotAcquired') {
      return first;
    }
    const lock = this.host.locks.get(first.lock);
    if (first.type === 'Acquired') {
      const grant = lock?.holders.get(session.id);
      if (lock !== undefined && grant !== undefined && grant.token === first.token) {
        // Told only what is held now: this grant, and today's holders. This caller is
        // told of the grant again, so its request counts among those told of it: a
        // Withdraw may have let it go while another request kept the grant.
        this.host.retell(session.id, lock.name, toldAlso(grant, requestId));
        return this.host.acquiredResult(lock, this.host.holderOf(lock, session.id));
      }
      reject(
        'grantEnded',
        `the grant of ${first.lock} made for request ${requestId} (token ${first.token}) has ended: it was released, revoked or reached its max hold`,
      );
    }
    const position = waiterPosition(lock, session.id, requestId);
    if (first.type === 'Queued' && position >= 0) {
      return { type: 'Queued', lock: first.lock, position };
    }
    // A wait that ended without a grant (a remembered Queued always has its waiter:
    // the wait's end rewrites it; checkInvariants holds that).
    return this.host.notAcquired(first.lock);
  }

  /**
   * Guarded: an open attempt of the request, by a live session, on the lock the request
   * named. The outcome is undone only when the last open attempt is withdrawn. A grant is
   * matched by its request id, so a re-acquire that shared a grant made for an earlier
   * request gives nothing back.
   */
  withdraw(command: Withdraw): LockResult {
    const { lock: name, sessionId: id, requestId } = command;
    const key = acquireKey(id, requestId);
    const remembered = this.host.remembered.get(key);
    const first = remembered?.result;
    const namesLock =
      ((first?.type === 'Acquired' || first?.type === 'Queued' || first?.type === 'NotAcquired') &&
        first.lock === name) ||
      (first !== undefined && isSetResult(first) && first.locks.some((each) => each.lock === name));
    if (remembered === undefined && this.host.sessions.has(id))
      return this.withdrawEvictedWait(command);
    if (
      !this.host.sessions.has(id) ||
      remembered === undefined ||
      !namesLock ||
      !remembered.openAttempts.includes(command.attemptIndex)
    ) {
      return { type: 'Stale' };
    }
    const stillOpen = remembered.openAttempts.filter((index) => index !== command.attemptIndex);
    if (stillOpen.length > 0 || remembered.attemptsDropped === true) {
      // Another attempt's caller may have been told the outcome: nothing to give back yet.
      this.host.remembered.set(key, withOpenAttempts(remembered, stillOpen));
      return { type: 'Withdrawn', lock: name, undid: 'nothing' };
    }
    const lock = this.host.locks.get(name);
    const grant = lock?.holders.get(id);
    let undid: 'wait' | 'grant' | 'nothing' = 'nothing';
    if (lock !== undefined && waiterPosition(lock, id, requestId) >= 0) {
      this.host.endWait(lock, id, 'cancelled');
      undid = 'wait';
    } else if (
      lock !== undefined &&
      grant !== undefined &&
      this.host.withdrawFinds(grant, command)
    ) {
      const rest = [grant.requestId, ...grant.alsoFor].filter((each) => each !== requestId);
      if (rest.length === 0) {
        this.host.endGrant(lock, grant, 'release');
        undid = 'grant';
      } else {
        // Another request's caller may hold it: only this request lets go of it.
        const [first = '', ...others] = rest;
        this.host.retell(id, name, { ...grant, requestId: first, alsoFor: others });
      }
    }
    if (first?.type === 'Acquired' || first?.type === 'AcquiredAll') {
      // It was granted, and others saw that grant (refused as busy, told its holder): a
      // retry must learn the grant ended, not be granted again as if it never was.
      this.host.remembered.set(key, { result: first, openAttempts: [] });
    } else {
      // Only a wait was undone, which told no one anything: a later retry runs afresh.
      this.host.remembered.delete(key);
    }
    return { type: 'Withdrawn', lock: name, undid };
  }

  /**
   * A wait whose remembered result left the window is still withdrawn by the attempt
   * that queued it: a waiter is told nothing until it is granted, so no other caller
   * can hold what it gives back. (A grant is not: its callers may have been told.)
   */
  private withdrawEvictedWait(command: Withdraw): LockResult {
    const lock = this.host.locks.get(command.lock);
    const waiter = lock?.waiters.find(
      (each) =>
        each.sessionId === command.sessionId &&
        each.requestId === command.requestId &&
        each.requestIndex === command.attemptIndex,
    );
    if (lock === undefined || waiter === undefined) return { type: 'Stale' };
    this.host.endWait(lock, command.sessionId, 'cancelled');
    return { type: 'Withdrawn', lock: command.lock, undid: 'wait' };
  }
}

/** An AcquireAll's answer, which its retries follow (lock-set.ts). */
function isSetResult(
  result: LockResult,
): result is Extract<LockResult, { type: 'AcquiredAll' | 'QueuedAll' | 'NotAcquiredAll' }> {
  return (
    result.type === 'AcquiredAll' || result.type === 'QueuedAll' || result.type === 'NotAcquiredAll'
  );
}
