/**
 * Review of branch `multi` (issue 17, f42350b): interleavings in which the lock state
 * machine tells a client something untrue. Each test fails on f42350b.
 */
import { describe, expect, it } from 'vitest';
import {
  BEHAVIOUR_ATTEMPT_PROPOSALS,
  type LockCommand,
  type LockResult,
} from '../../src/lock/index.ts';
import type { LogIndex, SessionId } from '../../src/util/ids.ts';
import { SetLog, tokenOfSet } from '../lock/multi-lock-log.ts';

/** A log at behaviour 3 (no deadlock detection): what the previous release did. */
function atBehaviour3(): SetLog {
  const log = new SetLog({}, { raise: false });
  log.apply({ type: 'SetBehaviour', version: BEHAVIOUR_ATTEMPT_PROPOSALS });
  return log;
}

function promoteAll(log: SetLog, lock: string): void {
  // What the leader's timers do on `promotionPending`: Promote until Stale.
  for (let k = 0; k < 10; k++) {
    const r = log.apply({ type: 'Promote', lock, afterIndex: log.index as LogIndex });
    if (r.type === 'Stale') return;
  }
}

/**
 * Single-lock users only. Reader A waits for y (shared) behind writer D; C holds x and
 * also waits for y (shared), behind A. A now asks for x (exclusive, held by C).
 * The search has C "wait for" A because A's place is ahead of C in y's queue, "whatever
 * the modes". But A's place in y is a single-lock wait, granted when D lets go whatever
 * A waits for elsewhere, and C (shared) is granted beside A: C never waits for A to
 * release anything. No cycle can form; yet A is told `deadlock`.
 */
function sharedScenario(log: SetLog): {
  a: SessionId;
  c: SessionId;
  d: SessionId;
  dToken: number;
  answer: LockResult;
} {
  const [a, c, d] = [log.open(), log.open(), log.open()];
  const dToken = tokenOfSet(log.acquire(d, 'y', 'exclusive'));
  expect(log.acquire(a, 'y', 'shared')).toMatchObject({ type: 'Queued', position: 0 });
  tokenOfSet(log.acquire(c, 'x', 'exclusive'));
  expect(log.acquire(c, 'y', 'shared')).toMatchObject({ type: 'Queued', position: 1 });
  const answer = log.acquire(a, 'x', 'exclusive');
  return { a, c, d, dToken, answer };
}

describe('rev3: deadlock detection', () => {
  it('the same log runs to completion without detection: the wait closes no cycle', () => {
    // Control: at behaviour 3 the wait is queued and every request ends granted.
    const log = atBehaviour3();
    const { a, c, d, dToken, answer } = sharedScenario(log);
    expect(answer).toMatchObject({ type: 'Queued', lock: 'x' });
    log.release(d, 'y', dToken); // A granted y (shared)
    promoteAll(log, 'y'); // C granted y (shared) beside A: C waits for nothing now
    expect(log.holderIds('y').sort()).toEqual([a, c].sort());
    const cx = log.sm.describe('x').holders[0]?.token as number;
    log.release(c, 'x', cx); // C done with x: A granted x
    expect(log.holderIds('x')).toEqual([a]);
  });

  it('FALSE POSITIVE: a single-lock Acquire that closes no cycle is refused `deadlock`', () => {
    const log = new SetLog();
    const { answer } = sharedScenario(log);
    // f42350b: Rejected deadlock, "session A waits for x held by C, C waits for y queued
    // for ahead of it by A" -- a shared place ahead of a shared place blocks nothing.
    expect(answer).toMatchObject({ type: 'Queued', lock: 'x' });
  });

  it('STEP BOUND: under default rules a nested single-lock Acquire on a queue of 450 is refused', () => {
    // waitersPerLockMax is 1,000 by default, but the search counts a findIndex per
    // reached waiter (position + 1 steps each): ~N^2/2 steps, so 450 waiters exceed the
    // default deadlockCheckStepsMax (100,000). Every waiter was let in; a session that
    // holds any other lock is now refused `limitReached` for a wait that closes nothing.
    const n = 450;
    const run = (log: SetLog): LockResult => {
      const h = log.open();
      tokenOfSet(log.acquire(h, 'hot'));
      for (let k = 0; k < n; k++) {
        const w = log.open();
        expect(log.acquire(w, 'hot').type).toBe('Queued');
      }
      const r = log.open();
      tokenOfSet(log.acquire(r, 'mine')); // r holds something: the check runs
      return log.acquire(r, 'hot');
    };
    expect(run(atBehaviour3())).toMatchObject({ type: 'Queued', position: n });
    expect(run(new SetLog())).toMatchObject({ type: 'Queued', position: n });
  }, 60_000);
});

describe('rev3: attempts of an AcquireAll', () => {
  it('attemptsOf says an applied AcquireAll never applied (null)', () => {
    // The node asks attemptsOf(command, proposalId) whether a write its caller gave up on
    // applied; null means "did not apply / nothing to give back". An AcquireAll that
    // applied and was granted is answered null: its caller would be told it got nothing
    // while the set stays held until the session ends.
    const log = new SetLog();
    const a = log.open();
    const command = log.setCommand(a, ['x', 'y'], { requestId: 'r-set' });
    log.index += 1;
    const { result } = log.sm.apply(log.index as LogIndex, command, 'proposal-1');
    expect(result.type).toBe('AcquiredAll');
    const attempts = log.sm.attemptsOf(command as LockCommand, 'proposal-1');
    expect(attempts).not.toBeNull();
  });
});
