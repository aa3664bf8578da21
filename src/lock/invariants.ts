import { assert } from '../util/assert.ts';
import type { SessionId } from '../util/ids.ts';
import { IdentityTally } from './identity-quota.ts';
import type { LockLimits } from './limits.ts';
import type { LockRecord, SessionRecord } from './records.ts';
import type { CarriedOver } from './snapshot.ts';

/**
 * The invariants of the state machine's locks, sessions and per-identity tally, which
 * LockStateMachine.checkInvariants asserts (with those of the dedupe window, lock sets
 * and kinds, each checked by its own module). Read-only.
 */

/** What of the state machine the invariants read. */
export interface InvariantState {
  readonly locks: ReadonlyMap<string, LockRecord>;
  readonly sessions: ReadonlyMap<SessionId, SessionRecord>;
  readonly tally: IdentityTally;
  /** The rules in force. */
  readonly rules: LockLimits;
  readonly carriedOver: CarriedOver;
}

/** Asserts the invariants of the locks, the sessions and the tally. */
export function checkStateInvariants(state: InvariantState): void {
  const { locks, sessions, rules, carriedOver } = state;
  let waiterCount = 0;
  for (const lock of locks.values()) {
    const modes = [...lock.holders.values()].map((holder) => holder.mode);
    if (modes.includes('exclusive'))
      assert(modes.length === 1, `${lock.name} has an exclusive holder beside others`);
    assert(
      lock.holders.size + lock.waiters.length + lock.delays.length > 0,
      `${lock.name} is idle but kept`,
    );
    assert(
      lock.waiters.length <= Math.max(rules.waitersPerLockMax, carriedOver.waitersPerLock),
      `${lock.name} has too many waiters`,
    );
    // At most one delay per expired holder, and a closed lock gets no new holders.
    assert(lock.delays.length <= sessionsBound(state), `${lock.name} has too many delays`);
    assert(
      lock.delays.every((delay, k) => k === 0 || delay.index > (lock.delays[k - 1]?.index ?? 0)),
      `${lock.name} has delays out of order`,
    );
    for (const id of lock.holders.keys()) {
      assert(
        sessions.get(id)?.held.has(lock.name) === true,
        `${lock.name} held by dead session ${id}`,
      );
    }
    // Each grant its own token: ValidateFence tells a grant by its token alone.
    const tokens = new Set([...lock.holders.values()].map((holder) => holder.token));
    assert(tokens.size === lock.holders.size, `${lock.name} has two grants with one token`);
    for (const waiter of lock.waiters) {
      assert(
        sessions.get(waiter.sessionId)?.waiting.has(lock.name) === true,
        `${lock.name} awaited by dead session ${waiter.sessionId}`,
      );
    }
    // acquire() and worthRemembering() rely on it: one place per session in a queue.
    const waiting = new Set(lock.waiters.map((waiter) => waiter.sessionId));
    assert(waiting.size === lock.waiters.length, `a session waits twice for ${lock.name}`);
    waiterCount += lock.waiters.length;
  }
  // With the check above, every name in a session's waiting set is a place in a queue.
  let waitingCount = 0;
  for (const session of sessions.values()) waitingCount += session.waiting.size;
  assert(
    waitingCount === waiterCount,
    `sessions wait ${waitingCount} times, queues hold ${waiterCount}`,
  );
  assert(sessions.size <= sessionsBound(state), 'too many sessions');
  const problem = tallyProblem(sessions.values(), state.tally);
  assert(problem === null, problem ?? '');
  assert(locks.size <= Math.max(rules.locksMax, carriedOver.locks), 'too many locks');
}

function sessionsBound(state: InvariantState): number {
  return Math.max(state.rules.sessionsMax, state.carriedOver.sessions);
}

/** The per-identity counts, recounted from the sessions, equal the tally kept in step. */
function tallyProblem(sessions: Iterable<SessionRecord>, tally: IdentityTally): string | null {
  const recount = new IdentityTally();
  for (const session of sessions) {
    recount.change(session.identity, 'sessions', 1);
    recount.change(session.identity, 'held', session.held.size);
    recount.change(session.identity, 'waiting', session.waiting.size);
  }
  const kept = new Map(tally.entries());
  const counted = new Map(recount.entries());
  const keys = new Set([...kept.keys(), ...counted.keys()]);
  for (const key of keys) {
    const a = JSON.stringify(kept.get(key));
    const b = JSON.stringify(counted.get(key));
    if (a !== b) return `identity ${JSON.stringify(key)} is tallied ${a} but has ${b}`;
  }
  return null;
}
