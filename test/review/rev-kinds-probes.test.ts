/**
 * Review of issue 17's semaphores and elections (merge db5278c, e9bd982): attacks that
 * HELD. Each probe is an interleaving that looked able to make the state machine tell
 * a client something untrue; each passes on main. The findings are in rev-kinds.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { type LockCommand, LockStateMachine } from '../../src/lock/index.ts';
import type { FencingToken, LogIndex, SessionId } from '../../src/util/ids.ts';
import { KindLog, rejection, tokenOf } from '../lock/kinds-log.ts';
import { tokenOfSet } from '../lock/multi-lock-log.ts';

function expire(log: KindLog, id: SessionId): void {
  const lastRefreshIndex = log.sm.session(id)?.lastRefreshIndex ?? (0 as LogIndex);
  log.apply({ type: 'ExpireSession', sessionId: id, lastRefreshIndex });
}

function withdraw(log: KindLog, command: LockCommand, attemptIndex: number): void {
  if (!('requestId' in command) || !('lock' in command) || !('sessionId' in command)) {
    throw new Error('not a single-name acquire');
  }
  log.apply({
    type: 'Withdraw',
    lock: command.lock,
    sessionId: command.sessionId,
    requestId: command.requestId,
    attemptIndex: attemptIndex as LogIndex,
  });
}

describe('rev-kinds probes: retries', () => {
  it('a retry after the grant ended and the name became an election is grantEnded, status null', () => {
    const log = new KindLog();
    const [a, b] = [log.open(), log.open()];
    const ask = log.permitsCommand(a, 'x', 1, 2, { requestId: 'p1' });
    const t = tokenOf(log.apply(ask));
    log.release(a, 'x', t);
    tokenOf(log.campaign(b, 'x', 'v'));
    tokenOf(log.campaign(a, 'y', 'v'));
    expect(log.sm.requestStatus(ask)).toBeNull();
    expect(rejection(log.apply(ask)).code).toBe('grantEnded');
    expect(log.sm.describe('x')).toMatchObject({ kind: 'election' });
  });

  it('a retry after a Withdraw gave back the permits is grantEnded, never granted twice', () => {
    const log = new KindLog();
    const a = log.open();
    const ask = log.permitsCommand(a, 's', 2, 3, { requestId: 'p1' });
    log.apply(ask);
    withdraw(log, ask, log.index);
    expect(log.sm.lockCount).toBe(0);
    expect(log.sm.requestStatus(ask)).toBeNull();
    expect(rejection(log.apply(ask)).code).toBe('grantEnded');
    expect(log.sm.lockCount).toBe(0);
  });

  it('a Campaign granted from the queue, withdrawn: its retry is grantEnded and the next leads', () => {
    const log = new KindLog();
    const [a, b, c] = [log.open(), log.open(), log.open()];
    const ta = tokenOf(log.campaign(a, 'e', 'a'));
    const ask = log.campaignCommand(b, 'e', 'b', { requestId: 'c1' });
    log.apply(ask);
    const attempt = log.index;
    log.campaign(c, 'e', 'c');
    log.release(a, 'e', ta); // b leads
    expect(log.sm.requestStatus(ask)).toMatchObject({ type: 'Acquired' });
    withdraw(log, ask, attempt);
    expect(log.sm.describe('e').holders).toMatchObject([{ sessionId: c, value: 'c' }]);
    expect(log.sm.requestStatus(ask)).toBeNull();
    expect(rejection(log.apply(ask)).code).toBe('grantEnded');
  });

  it('a retry evicted from the window, once the name is a plain lock, is kindMismatch, not Acquired', () => {
    const log = new KindLog({ dedupeWindowMax: 2 });
    const [a, b] = [log.open(), log.open()];
    const ask = log.permitsCommand(a, 'x', 1, 2, { requestId: 'p1' });
    const t = tokenOf(log.apply(ask));
    log.release(a, 'x', t);
    log.acquire(b, 'x');
    log.acquire(b, 'y');
    log.acquire(b, 'z'); // p1 left the window
    expect(log.sm.requestStatus(ask)).toBeUndefined();
    expect(rejection(log.apply(ask)).code).toBe('kindMismatch');
  });

  it('an evicted retry of a waiting AcquirePermits keeps its place and permits', () => {
    const log = new KindLog({ dedupeWindowMax: 2 });
    const [a, b] = [log.open(), log.open()];
    const ta = tokenOf(log.permits(a, 's', 2, 2));
    const ask = log.permitsCommand(b, 's', 1, 2, { requestId: 'p1' });
    log.apply(ask);
    log.acquire(a, 'y');
    log.acquire(a, 'z');
    expect(log.apply(ask)).toEqual({ type: 'Queued', lock: 's', position: 0 });
    log.release(a, 's', ta);
    expect(log.permitsOf('s')).toEqual([1]);
  });
});

describe('rev-kinds probes: permits, head of line, one grant per entry', () => {
  it('the head asking for all permits is not overtaken; a Promote then is Stale', () => {
    const log = new KindLog();
    const [a, b, c, d] = [log.open(), log.open(), log.open(), log.open()];
    const ta = tokenOf(log.permits(a, 's', 1, 2));
    tokenOf(log.permits(b, 's', 1, 2));
    expect(log.permits(c, 's', 2, 2)).toMatchObject({ type: 'Queued', position: 0 });
    expect(log.permits(d, 's', 1, 2)).toMatchObject({ type: 'Queued', position: 1 });
    log.release(a, 's', ta); // one permit free: d would fit, c heads
    expect(log.apply({ type: 'Promote', lock: 's', afterIndex: log.index as LogIndex })).toEqual({
      type: 'Stale',
    });
    expect(log.sm.describe('s').holders.map((h) => h.sessionId)).toEqual([b]);
  });

  it('a Revoke freeing many permits grants one waiter per entry, each with its own token', () => {
    const log = new KindLog();
    const [a, b, c, d] = [log.open(), log.open(), log.open(), log.open()];
    tokenOf(log.permits(a, 's', 3, 3));
    for (const id of [b, c, d]) log.permits(id, 's', 1, 3);
    log.apply({ type: 'Revoke', lock: 's', reason: 'op' });
    expect(log.sm.describe('s').holders).toHaveLength(1);
    log.settle('s');
    const tokens = log.sm.describe('s').holders.map((h) => h.token);
    expect(new Set(tokens).size).toBe(3);
    const tb = tokens[0] as number;
    log.release(b, 's', tb);
    expect(log.sm.validateFence('s', tb as FencingToken).valid).toBe(false);
  });

  it('a session end that frees permits in two semaphores grants one waiter per name per entry', () => {
    const log = new KindLog();
    const [a, b, c, d] = [log.open(), log.open(), log.open(), log.open()];
    log.permits(a, 's', 2, 2);
    log.permits(a, 't', 2, 2);
    for (const id of [b, c]) log.permits(id, 's', 1, 2);
    for (const id of [c, d]) log.permits(id, 't', 1, 2);
    log.apply({ type: 'CloseSession', sessionId: a, requestId: 'close' });
    expect(log.sm.describe('s').holders).toHaveLength(1);
    expect(log.sm.describe('t').holders).toHaveLength(1);
    log.settle('s');
    log.settle('t');
    for (const name of ['s', 't']) {
      const tokens = log.sm.describe(name).holders.map((h) => h.token);
      expect(new Set(tokens).size).toBe(2);
    }
  });
});

describe('rev-kinds probes: lock-delay, kinds and rules', () => {
  it('a semaphore closed by a lock-delay keeps its kind and limit; every other ask is kindMismatch', () => {
    const log = new KindLog();
    const [a, b] = [log.open(), log.open()];
    log.permits(a, 's', 1, 2, { lockDelayMs: 1_000 });
    expire(log, a);
    expect(log.sm.describe('s')).toMatchObject({ holders: [], kind: 'semaphore', limit: 2 });
    expect(rejection(log.acquire(b, 's')).code).toBe('kindMismatch');
    expect(rejection(log.acquireAll(b, ['r', 's'])).code).toBe('kindMismatch');
    expect(rejection(log.campaign(b, 's', 'v')).code).toBe('kindMismatch');
    expect(rejection(log.permits(b, 's', 1, 3)).code).toBe('kindMismatch');
    expect(log.permits(b, 's', 2, 2)).toMatchObject({ type: 'Queued', position: 0 });
    const delayIndex = log.sm.delaysOf('s')[0]?.index as LogIndex;
    log.apply({ type: 'LockDelayEnded', lock: 's', delayIndex });
    expect(log.permitsOf('s')).toEqual([2]);
  });

  it('rules lowered below a semaphore that exists end nothing and never overfill it', () => {
    const log = new KindLog();
    const [a, b] = [log.open(), log.open()];
    const ta = tokenOf(log.permits(a, 's', 4, 5));
    log.permits(b, 's', 3, 5);
    const rules = { ...log.sm.rules, semaphoreLimitMax: 2 };
    expect(log.apply({ type: 'SetRules', rules, onlyIfUnset: false })).toMatchObject({
      type: 'RulesSet',
    });
    expect(rejection(log.permits(b, 't', 1, 3)).code).toBe('invalidArgument');
    log.release(a, 's', ta);
    expect(log.permitsOf('s')).toEqual([3]);
  });
});

describe('rev-kinds probes: elections', () => {
  it("a stale token of the leader's own session (before a re-campaign) is refused", () => {
    const log = new KindLog();
    const a = log.open();
    const t1 = tokenOf(log.campaign(a, 'e', 'one'));
    log.release(a, 'e', t1);
    const t2 = tokenOf(log.campaign(a, 'e', 'two'));
    expect(t2).toBeGreaterThan(t1);
    expect(rejection(log.proclaim(a, 'e', t1, 'stale')).code).toBe('staleToken');
    expect(log.sm.holdersOf('e')[0]?.value).toBe('two');
  });

  it('a cycle through an election and a set is refused deadlock; through a semaphore it is not', () => {
    const log = new KindLog();
    const [a, b] = [log.open(), log.open()];
    tokenOf(log.campaign(a, 'e', 'a'));
    tokenOfSet(log.acquireAll(b, ['x', 'y']));
    expect(log.acquire(a, 'x')).toMatchObject({ type: 'Queued' });
    expect(rejection(log.campaign(b, 'e', 'b')).code).toBe('deadlock');
    // By design (kinds.ts) a semaphore wait is not searched, even when, as here, it
    // closes a real cycle (b waits for a's permit, a for b's set): queued, not refused.
    tokenOf(log.permits(a, 's', 1, 1));
    expect(log.permits(b, 's', 1, 1)).toMatchObject({ type: 'Queued' });
  });
});

describe('rev-kinds probes: snapshots', () => {
  it('a snapshot with permit and candidate waiters restores to the same future answers', () => {
    const log = new KindLog();
    const [a, b, c] = [log.open(), log.open(), log.open()];
    const ts = tokenOf(log.permits(a, 's', 2, 3));
    log.permits(b, 's', 2, 3);
    log.permits(c, 's', 1, 3);
    const te = tokenOf(log.campaign(a, 'e', 'a'));
    log.campaign(b, 'e', 'b');
    log.campaign(c, 'e', 'c');
    const copy = new LockStateMachine();
    copy.restore(JSON.parse(JSON.stringify(log.sm.snapshot())));
    const rest: LockCommand[] = [
      { type: 'Release', lock: 's', sessionId: a, token: ts as FencingToken, requestId: 'r1' },
      { type: 'Promote', lock: 's', afterIndex: 0 as LogIndex },
      { type: 'Revoke', lock: 'e', reason: 'op' },
      { type: 'WaitExpired', lock: 'e', sessionId: c, waiterIndex: 0 as LogIndex },
      { type: 'Release', lock: 'e', sessionId: a, token: te as FencingToken, requestId: 'r2' },
    ];
    for (const command of rest) {
      log.index += 1;
      const ours = log.sm.apply(log.index as LogIndex, command);
      const theirs = copy.apply(log.index as LogIndex, command);
      expect(theirs).toEqual(ours);
    }
    expect(JSON.stringify(copy.snapshot())).toBe(JSON.stringify(log.sm.snapshot()));
  });
});
