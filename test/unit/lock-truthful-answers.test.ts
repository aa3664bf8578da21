/**
 * The lock state machine tells clients only true things: regression tests for the
 * issues where it did not (a mode it did not grant, a token shared by two grants, a
 * lock-delay cut short, a remembered grant handed out after it ended), and for the
 * Withdraw and Promote commands that came with the fixes.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_LOCK_LIMITS, type LockCommand, LockTimers } from '../../src/lock/index.ts';
import type { SessionId } from '../../src/util/ids.ts';
import { asIndex, asSession, asToken, expectRejected, Log, tokenOf } from './lock-log.ts';

describe('a session asking for a lock in the mode it does not hold', () => {
  it('is refused with modeMismatch when it holds the lock shared and asks exclusive', () => {
    const log = new Log();
    const [a, b] = [log.open(), log.open()];
    const ta = tokenOf(log.acquire(a, 'L', { mode: 'shared' }));
    const tb = tokenOf(log.acquire(b, 'L', { mode: 'shared' }));
    expectRejected(
      log.acquire(a, 'L', { mode: 'exclusive' }),
      'modeMismatch',
      `session ${a} holds L shared; release it before asking for exclusive`,
    );
    expect(log.holders('L')).toEqual([
      [a, 'shared', ta],
      [b, 'shared', tb],
    ]);
  });

  it('is refused with modeMismatch when it holds the lock exclusive and asks shared', () => {
    const log = new Log();
    const a = log.open();
    const ta = tokenOf(log.acquire(a, 'L'));
    expectRejected(
      log.acquire(a, 'L', { mode: 'shared', waitMs: 1_000 }),
      'modeMismatch',
      `session ${a} holds L exclusive; release it before asking for shared`,
    );
    expect(log.holders('L')).toEqual([[a, 'exclusive', ta]]);
  });

  it('is refused while it waits for the lock in the other mode, and the wait stays', () => {
    const log = new Log();
    const [a, b] = [log.open(), log.open()];
    log.acquire(a, 'L');
    log.acquire(b, 'L', { mode: 'shared', waitMs: 1_000 });
    expectRejected(
      log.acquire(b, 'L', { mode: 'exclusive', waitMs: 1_000 }),
      'modeMismatch',
      `session ${b} waits for L shared`,
      'exclusive',
    );
    expect(log.sm.describe('L').waiters.map((w) => [w.sessionId, w.mode])).toEqual([[b, 'shared']]);
  });

  it('the same mode still returns the grant it has, and the refusal is not remembered', () => {
    const log = new Log();
    const a = log.open();
    const first = log.acquire(a, 'L', { mode: 'shared' });
    expect(log.acquire(a, 'L', { mode: 'shared' })).toEqual(first);
    const ask = log.acquireCommand(a, 'L', { mode: 'exclusive', requestId: 'up' });
    expectRejected(log.apply(ask), 'modeMismatch');
    log.release(a, 'L', tokenOf(first));
    // Once released, the same request runs afresh and is granted.
    expect(log.apply(ask)).toMatchObject({ type: 'Acquired', mode: 'exclusive' });
  });
});
describe('lock-delays', () => {
  it('a shorter delay does not end a longer one placed before it', () => {
    const log = new Log();
    const [a, b, c] = [log.open(), log.open(), log.open()];
    log.acquire(a, 'L', { mode: 'shared', lockDelayMs: 1_000 });
    log.acquire(b, 'L', { mode: 'shared', lockDelayMs: 100 });
    log.apply({ type: 'ExpireSession', sessionId: a, lastRefreshIndex: asIndex(a) });
    const delayA = log.index;
    log.apply({ type: 'ExpireSession', sessionId: b, lastRefreshIndex: asIndex(b) });
    const delayB = log.index;
    log.acquire(c, 'L', { waitMs: 5_000 });
    // B's short delay ends first: A's still closes the lock.
    expect(log.apply({ type: 'LockDelayEnded', lock: 'L', delayIndex: asIndex(delayB) })).toEqual({
      type: 'LockDelayEnded',
      lock: 'L',
    });
    expect(log.holders('L')).toEqual([]);
    expect(log.sm.delaysOf('L')).toEqual([{ index: delayA, delayMs: 1_000 }]);
    expect(log.sm.describe('L')).toMatchObject({
      delayIndex: delayA,
      delays: [{ index: delayA, delayMs: 1_000 }],
    });
    // An ended delay cannot end again.
    expect(log.apply({ type: 'LockDelayEnded', lock: 'L', delayIndex: asIndex(delayB) })).toEqual({
      type: 'Stale',
    });
    expect(log.apply({ type: 'LockDelayEnded', lock: 'L', delayIndex: asIndex(delayA) })).toEqual({
      type: 'LockDelayEnded',
      lock: 'L',
    });
    expect(log.holders('L')).toEqual([[c, 'exclusive', log.index]]);
    expect(log.sm.describe('L')).toMatchObject({ delayIndex: null, delays: [] });
  });

  it('the delays round-trip through a snapshot', () => {
    const log = new Log();
    const [a, b] = [log.open(), log.open()];
    log.acquire(a, 'L', { mode: 'shared', lockDelayMs: 900 });
    log.acquire(b, 'L', { mode: 'shared', lockDelayMs: 300 });
    log.apply({ type: 'ExpireSession', sessionId: a, lastRefreshIndex: asIndex(a) });
    log.apply({ type: 'ExpireSession', sessionId: b, lastRefreshIndex: asIndex(b) });
    const text = JSON.stringify(log.sm.snapshot());
    const copy = new Log();
    copy.sm.restore(JSON.parse(text));
    expect(copy.sm.delaysOf('L')).toEqual(log.sm.delaysOf('L'));
    expect(JSON.stringify(copy.sm.snapshot())).toBe(text);
  });

  it('restore still reads a version 1 snapshot, whose one delay becomes a list of one', () => {
    const copy = new Log();
    copy.sm.restore({
      version: 1,
      appliedIndex: 9,
      sessions: [{ id: 2, ttlMs: 10_000, clientName: 'c', lastRefreshIndex: 2 }],
      locks: [
        { name: 'L', holders: [], waiters: [], delay: { index: 8, delayMs: 500 } },
        {
          name: 'M',
          holders: [
            {
              sessionId: asSession(2),
              owner: 'o',
              mode: 'exclusive',
              token: asToken(5),
              requestIndex: asIndex(5),
              maxHoldMs: 0,
              lockDelayMs: 0,
            },
          ],
          waiters: [],
          delay: null,
        },
      ],
      dedupe: [
        ['Acquire/2/gone', { type: 'Queued', lock: 'L', position: 0 }],
        [
          'Acquire/2/r5',
          { type: 'Acquired', lock: 'M', token: asToken(5), mode: 'exclusive', holders: [] },
        ],
      ],
    });
    copy.sm.checkInvariants();
    // Version 1 left a Queued in place after its wait ended: forgotten, not carried on.
    expect(copy.sm.snapshot().dedupe.map(([key, value]) => [key, value.openAttempts])).toEqual([
      ['Acquire/2/r5', []],
    ]);
    expect(copy.sm.snapshot().locks[1]?.holders[0]?.requestId).toBe('');
    expect(copy.sm.delaysOf('L')).toEqual([{ index: 8, delayMs: 500 }]);
    expect(copy.sm.delaysOf('M')).toEqual([]);
    expect(copy.sm.snapshot().version).toBe(3);
    expect(copy.sm.rules).toEqual(DEFAULT_LOCK_LIMITS);
    expect(copy.sm.validateFence('M', asToken(5))).toEqual({ valid: true, currentToken: 5 });
  });

  it('the timers end each delay on its own deadline, and rebuild every one on restore', () => {
    const log = new Log();
    const timers = new LockTimers({ reproposeIntervalMs: 1_000, dueBatchMax: 100 });
    const at = (nowMs: number, command: LockCommand) => {
      const out = log.applyFull(command);
      timers.applied(asIndex(log.index), out.events, nowMs);
      return out.result;
    };
    const [a, b] = [log.open(60_000), log.open(60_000)];
    at(0, log.acquireCommand(a, 'L', { mode: 'shared', lockDelayMs: 10_000 }));
    at(0, log.acquireCommand(b, 'L', { mode: 'shared', lockDelayMs: 1_000 }));
    at(0, { type: 'ExpireSession', sessionId: a, lastRefreshIndex: asIndex(a) });
    const delayA = log.index;
    at(500, { type: 'ExpireSession', sessionId: b, lastRefreshIndex: asIndex(b) });
    const delayB = log.index;
    const delaysDue = (nowMs: number) =>
      timers.due(nowMs).filter((command) => command.type === 'LockDelayEnded');
    expect(delaysDue(1_499)).toEqual([]);
    expect(delaysDue(1_500)).toEqual([{ type: 'LockDelayEnded', lock: 'L', delayIndex: delayB }]);
    at(1_500, { type: 'LockDelayEnded', lock: 'L', delayIndex: asIndex(delayB) });
    expect(delaysDue(9_999)).toEqual([]);
    expect(delaysDue(10_000)).toEqual([{ type: 'LockDelayEnded', lock: 'L', delayIndex: delayA }]);

    const rebuilt = new LockTimers({ reproposeIntervalMs: 1_000, dueBatchMax: 100 });
    rebuilt.restore(log.sm, 20_000);
    expect(rebuilt.due(30_000).filter((command) => command.type === 'LockDelayEnded')).toEqual([
      { type: 'LockDelayEnded', lock: 'L', delayIndex: delayA },
    ]);
  });
});

describe('one entry grants at most one holder per lock', () => {
  /** A holds L exclusive; shared waiters B and C, then exclusive D, queue behind it. */
  function queuedShared() {
    const log = new Log();
    const [a, b, c, d, e] = [log.open(), log.open(), log.open(), log.open(), log.open()];
    const ta = tokenOf(log.acquire(a, 'L'));
    log.acquire(b, 'L', { mode: 'shared', waitMs: 1_000 });
    log.acquire(c, 'L', { mode: 'shared', waitMs: 1_000 });
    log.acquire(d, 'L', { waitMs: 1_000 });
    return { log, a, b, c, d, e, ta };
  }

  it('a release promotes one shared waiter; a Promote entry grants the next with its own token', () => {
    const { log, a, b, c, d, ta } = queuedShared();
    const out = log.applyFull({
      type: 'Release',
      lock: 'L',
      sessionId: a,
      token: asToken(ta),
      requestId: 'rel',
    });
    const tb = log.index;
    expect(log.holders('L')).toEqual([[b, 'shared', tb]]);
    expect(log.waiters('L')).toEqual([c, d]);
    expect(out.events.at(-1)).toEqual({ type: 'promotionPending', lock: 'L' });
    expect(log.sm.promotionPending('L')).toBe(true);

    const promoted = log.applyFull({ type: 'Promote', lock: 'L', afterIndex: asIndex(tb) });
    const tc = log.index;
    expect(promoted.result).toEqual({ type: 'Promoted', lock: 'L', sessionId: c, token: tc });
    expect(log.holders('L')).toEqual([
      [b, 'shared', tb],
      [c, 'shared', tc],
    ]);
    // D is exclusive: nothing more to grant, so no promotion is pending.
    expect(promoted.events.map((event) => event.type)).not.toContain('promotionPending');
    expect(log.sm.promotionPending('L')).toBe(false);
    expect(log.apply({ type: 'Promote', lock: 'L', afterIndex: asIndex(tc) })).toEqual({
      type: 'Stale',
    });
  });

  it('after one shared holder expires, its token no longer validates', () => {
    const { log, a, b, c, ta } = queuedShared();
    log.release(a, 'L', ta);
    const tb = log.index;
    log.apply({ type: 'Promote', lock: 'L', afterIndex: asIndex(tb) });
    const tc = log.index;
    expect(tb).not.toBe(tc);
    log.apply({ type: 'ExpireSession', sessionId: b, lastRefreshIndex: asIndex(b) });
    expect(log.sm.validateFence('L', asToken(tb))).toEqual({ valid: false, currentToken: tc });
    expect(log.sm.validateFence('L', asToken(tc))).toEqual({ valid: true, currentToken: tc });
    expect(log.holders('L')).toEqual([[c, 'shared', tc]]);
  });

  it('while a promotion is pending, a new shared Acquire queues behind the waiters', () => {
    const { log, a, b, c, d, e, ta } = queuedShared();
    log.release(a, 'L', ta);
    expect(log.acquire(e, 'L', { mode: 'shared', waitMs: 0 }).type).toBe('NotAcquired');
    expect(log.acquire(e, 'L', { mode: 'shared', waitMs: 1_000 })).toEqual({
      type: 'Queued',
      lock: 'L',
      position: 2,
    });
    expect(log.waiters('L')).toEqual([c, d, e]);
    expect(log.holders('L').map(([session]) => session)).toEqual([b]);
  });

  it('a Promote for a lock with nothing grantable is Stale and changes nothing', () => {
    const log = new Log();
    const [a, b] = [log.open(), log.open()];
    log.acquire(a, 'L');
    log.acquire(b, 'L', { waitMs: 1_000 });
    const before = JSON.stringify(log.sm.snapshot().locks);
    const out = log.applyFull({ type: 'Promote', lock: 'L', afterIndex: asIndex(1) });
    expect(out).toEqual({ result: { type: 'Stale' }, events: [] });
    expect(log.apply({ type: 'Promote', lock: 'free', afterIndex: asIndex(1) })).toEqual({
      type: 'Stale',
    });
    expect(JSON.stringify(log.sm.snapshot().locks)).toBe(before);
  });

  it('the timers propose a Promote at once, again after restore, and drop it once granted', () => {
    const { log, a, ta } = queuedShared();
    const timers = new LockTimers({ reproposeIntervalMs: 1_000, dueBatchMax: 100 });
    const at = (nowMs: number, command: LockCommand) => {
      const out = log.applyFull(command);
      timers.applied(asIndex(log.index), out.events, nowMs);
      return out.result;
    };
    const promotes = (nowMs: number) =>
      timers.due(nowMs).filter((command) => command.type === 'Promote');
    at(100, { type: 'Release', lock: 'L', sessionId: a, token: asToken(ta), requestId: 'rel' });
    const releaseIndex = log.index;
    expect(promotes(100)).toEqual([{ type: 'Promote', lock: 'L', afterIndex: releaseIndex }]);
    // Proposed once; offered again only after the repropose interval.
    expect(promotes(100)).toEqual([]);

    const rebuilt = new LockTimers({ reproposeIntervalMs: 1_000, dueBatchMax: 100 });
    rebuilt.restore(log.sm, 5_000);
    expect(rebuilt.due(5_000).filter((command) => command.type === 'Promote')).toEqual([
      { type: 'Promote', lock: 'L', afterIndex: releaseIndex },
    ]);

    at(150, { type: 'Promote', lock: 'L', afterIndex: asIndex(releaseIndex) });
    expect(promotes(10_000)).toEqual([]);
  });

  it('an expiry that frees several locks grants at most one holder on each', () => {
    const log = new Log();
    const [a, b, c] = [log.open(), log.open(), log.open()];
    for (const lock of ['L', 'M']) {
      log.acquire(a, lock);
      log.acquire(b, lock, { mode: 'shared', waitMs: 1_000 });
      log.acquire(c, lock, { mode: 'shared', waitMs: 1_000 });
    }
    const out = log.applyFull({
      type: 'ExpireSession',
      sessionId: a,
      lastRefreshIndex: asIndex(a),
    });
    expect(log.holders('L')).toEqual([[b, 'shared', log.index]]);
    expect(log.holders('M')).toEqual([[b, 'shared', log.index]]);
    expect(out.events.filter((event) => event.type === 'promotionPending')).toEqual([
      { type: 'promotionPending', lock: 'L' },
      { type: 'promotionPending', lock: 'M' },
    ]);
  });
});

describe('a retried request is answered with what is true now', () => {
  it('an Acquire retried after its session expired is refused, not told its old token', () => {
    const log = new Log();
    const [s1, s2] = [log.open(), log.open()];
    const first = log.acquireCommand(s1, 'L', { requestId: 'r1' });
    const t1 = tokenOf(log.apply(first));
    log.apply({ type: 'ExpireSession', sessionId: s1, lastRefreshIndex: asIndex(s1) });
    const t2 = tokenOf(log.acquire(s2, 'L'));
    expect(t2).toBeGreaterThan(t1);
    expectRejected(log.apply(first), 'sessionNotFound', `session ${s1}`);
  });

  it('an Acquire retried after its grant was revoked is told grantEnded', () => {
    const log = new Log();
    const [s1, s2] = [log.open(), log.open()];
    const first = log.acquireCommand(s1, 'L', { requestId: 'r1' });
    const t1 = tokenOf(log.apply(first));
    log.apply({ type: 'Revoke', lock: 'L', reason: 'operator' });
    tokenOf(log.acquire(s2, 'L'));
    expectRejected(
      log.apply(first),
      'grantEnded',
      `the grant of L made for request r1 (token ${t1}) has ended`,
    );
    expect(log.holders('L').map(([session]) => session)).toEqual([s2]);
  });

  it('an Acquire retried after max-hold, or after its own release, is told grantEnded', () => {
    const log = new Log();
    const s1 = log.open();
    const held = log.acquireCommand(s1, 'L', { requestId: 'r1', maxHoldMs: 100 });
    const t1 = tokenOf(log.apply(held));
    log.apply({ type: 'MaxHoldReached', lock: 'L', sessionId: s1, token: asToken(t1) });
    expectRejected(log.apply(held), 'grantEnded', `token ${t1}`, 'r1');
    const again = log.acquireCommand(s1, 'M', { requestId: 'r2' });
    const t2 = tokenOf(log.apply(again));
    log.release(s1, 'M', t2);
    // Even a new grant of the same lock to the same session is not the one r2 got.
    tokenOf(log.acquire(s1, 'M'));
    expectRejected(log.apply(again), 'grantEnded', `grant of M`, `token ${t2}`);
  });

  it('an Acquire retried while its grant stands is told Acquired with the holders of now', () => {
    const log = new Log();
    const [s1, s2] = [log.open(), log.open()];
    const first = log.acquireCommand(s1, 'L', { requestId: 'r1', mode: 'shared' });
    const t1 = tokenOf(log.apply(first));
    const t2 = tokenOf(log.acquire(s2, 'L', { mode: 'shared' }));
    expect(log.apply(first)).toMatchObject({
      type: 'Acquired',
      token: t1,
      holders: [
        { sessionId: s1, token: t1 },
        { sessionId: s2, token: t2 },
      ],
    });
  });

  it('a queued Acquire retried after its promotion is told Acquired with the grant', () => {
    const log = new Log();
    const [s1, s2] = [log.open(), log.open()];
    const t1 = tokenOf(log.acquire(s1, 'L'));
    const wait = log.acquireCommand(s2, 'L', { requestId: 'w', waitMs: 1_000 });
    expect(log.apply(wait)).toEqual({ type: 'Queued', lock: 'L', position: 0 });
    log.release(s1, 'L', t1);
    const t2 = log.index;
    expect(log.apply(wait)).toMatchObject({ type: 'Acquired', lock: 'L', token: t2 });
    expect(log.sm.snapshot().dedupe).toContainEqual([
      `Acquire/${s2}/w`,
      expect.objectContaining({ result: expect.objectContaining({ type: 'Acquired', token: t2 }) }),
    ]);
  });

  it('a queued Acquire retried after its wait ran out or was cancelled is told NotAcquired', () => {
    const log = new Log();
    const [s1, s2, s3] = [log.open(), log.open(), log.open()];
    log.acquire(s1, 'L');
    const expiring = log.acquireCommand(s2, 'L', { requestId: 'w2', waitMs: 1_000 });
    log.apply(expiring);
    const waitIndex = log.index;
    const cancelled = log.acquireCommand(s3, 'L', { requestId: 'w3', waitMs: 1_000 });
    log.apply(cancelled);
    log.apply({ type: 'WaitExpired', lock: 'L', sessionId: s2, waiterIndex: asIndex(waitIndex) });
    log.apply({ type: 'CancelWait', lock: 'L', sessionId: s3, requestId: 'w3' });
    const holders = log.sm.describe('L').holders;
    expect(log.apply(expiring)).toEqual({ type: 'NotAcquired', lock: 'L', holders });
    expect(log.apply(cancelled)).toEqual({ type: 'NotAcquired', lock: 'L', holders });
    // Retrying did not queue them again.
    expect(log.waiters('L')).toEqual([]);
  });

  it('a queued Acquire retried while it waits is told its place in the queue now', () => {
    const log = new Log();
    const [s1, s2, s3] = [log.open(), log.open(), log.open()];
    log.acquire(s1, 'L');
    log.acquire(s2, 'L', { waitMs: 1_000, requestId: 'w2' });
    const wait = log.acquireCommand(s3, 'L', { requestId: 'w3', waitMs: 1_000 });
    expect(log.apply(wait)).toEqual({ type: 'Queued', lock: 'L', position: 1 });
    log.apply({ type: 'CancelWait', lock: 'L', sessionId: s2, requestId: 'w2' });
    expect(log.apply(wait)).toEqual({ type: 'Queued', lock: 'L', position: 0 });
  });

  it('Release and CancelWait retried after the session ended are refused; CloseSession is not', () => {
    const log = new Log();
    const [s1, s2] = [log.open(), log.open()];
    const t1 = tokenOf(log.acquire(s1, 'L'));
    const release = {
      type: 'Release',
      lock: 'L',
      sessionId: s1,
      token: asToken(t1),
      requestId: 'rel',
    } as const;
    expect(log.apply(release)).toEqual({ type: 'Released', lock: 'L' });
    log.acquire(s1, 'L');
    log.acquire(s2, 'M');
    log.acquire(s1, 'M', { waitMs: 1_000, requestId: 'w' });
    const cancel = { type: 'CancelWait', lock: 'M', sessionId: s1, requestId: 'w' } as const;
    expect(log.apply(cancel)).toEqual({ type: 'WaitCancelled', lock: 'M' });
    const close = { type: 'CloseSession', sessionId: s1, requestId: 'bye' } as const;
    expect(log.apply(close)).toEqual({ type: 'SessionClosed', sessionId: s1 });
    expectRejected(log.apply(release), 'sessionNotFound', `session ${s1}`);
    expectRejected(log.apply(cancel), 'sessionNotFound', `session ${s1}`);
    expect(log.apply(close)).toEqual({ type: 'SessionClosed', sessionId: s1 });
  });

  it('CancelWait cancels only the wait of its own request', () => {
    const log = new Log();
    const [s1, s2] = [log.open(), log.open()];
    log.acquire(s1, 'L');
    log.acquire(s2, 'L', { waitMs: 1_000, requestId: 'later' });
    expectRejected(
      log.apply({ type: 'CancelWait', lock: 'L', sessionId: s2, requestId: 'earlier' }),
      'notHolder',
      `session ${s2}`,
      'earlier',
    );
    expect(log.waiters('L')).toEqual([s2]);
    expect(log.apply({ type: 'CancelWait', lock: 'L', sessionId: s2, requestId: 'later' })).toEqual(
      { type: 'WaitCancelled', lock: 'L' },
    );
  });

  it('a grant remembers its request: in the granted event and in snapshots', () => {
    const log = new Log();
    const [s1, s2] = [log.open(), log.open()];
    const out = log.applyFull(log.acquireCommand(s1, 'L', { requestId: 'mine' }));
    expect(out.events).toContainEqual(
      expect.objectContaining({ type: 'granted', lock: 'L', requestId: 'mine' }),
    );
    log.acquire(s2, 'L', { requestId: 'theirs', waitMs: 1_000 });
    const release = log.applyFull({
      type: 'Release',
      lock: 'L',
      sessionId: s1,
      token: asToken(tokenOf(out.result)),
      requestId: 'rel',
    });
    expect(release.events).toContainEqual(
      expect.objectContaining({ type: 'granted', lock: 'L', requestId: 'theirs' }),
    );
    // Describe shows holders to everyone: the request id stays out of the public holder.
    expect(Object.keys(log.sm.describe('L').holders[0] ?? {})).not.toContain('requestId');
    const snapshot = log.sm.snapshot();
    expect(snapshot.locks[0]?.holders[0]).toMatchObject({ sessionId: s2, requestId: 'theirs' });
  });
});

describe('Withdraw gives back what an abandoned Acquire attempt got', () => {
  function withdraw(log: Log, lock: string, sessionId: SessionId, requestId: string, at: number) {
    return log.applyFull({
      type: 'Withdraw',
      lock,
      sessionId,
      requestId,
      attemptIndex: asIndex(at),
    });
  }

  it('withdraws a wait, promotes the next waiter, and lets a retry run afresh', () => {
    const log = new Log();
    const [s1, s2, s3] = [log.open(), log.open(), log.open()];
    const t1 = tokenOf(log.acquire(s1, 'L', { mode: 'shared' }));
    const wait = log.acquireCommand(s2, 'L', { requestId: 'w', waitMs: 1_000 });
    log.apply(wait);
    const attempt = log.index;
    log.acquire(s3, 'L', { mode: 'shared', waitMs: 1_000 });
    const out = withdraw(log, 'L', s2, 'w', attempt);
    expect(out.result).toEqual({ type: 'Withdrawn', lock: 'L', undid: 'wait' });
    expect(out.events).toContainEqual(
      expect.objectContaining({ type: 'waitEnded', sessionId: s2, reason: 'cancelled' }),
    );
    expect(log.holders('L')).toEqual([
      [s1, 'shared', t1],
      [s3, 'shared', log.index],
    ]);
    // Its effect is fully undone, so the request may run again: it queues anew.
    expect(log.apply(wait)).toEqual({ type: 'Queued', lock: 'L', position: 0 });
  });

  it('gives back the grant the attempt got, and the next waiter is granted', () => {
    const log = new Log();
    const [s1, s2] = [log.open(), log.open()];
    const got = log.acquireCommand(s1, 'L', { requestId: 'g' });
    tokenOf(log.apply(got));
    const attempt = log.index;
    log.acquire(s2, 'L', { waitMs: 1_000 });
    const out = withdraw(log, 'L', s1, 'g', attempt);
    expect(out.result).toEqual({ type: 'Withdrawn', lock: 'L', undid: 'grant' });
    expect(out.events).toContainEqual(
      expect.objectContaining({ type: 'released', sessionId: s1, reason: 'release' }),
    );
    expect(log.holders('L')).toEqual([[s2, 'exclusive', log.index]]);
    // Applied once: a second Withdraw of the same attempt finds nothing remembered.
    expect(withdraw(log, 'L', s1, 'g', attempt).result).toEqual({ type: 'Stale' });
  });

  it('gives back a grant its wait turned into', () => {
    const log = new Log();
    const [s1, s2] = [log.open(), log.open()];
    const t1 = tokenOf(log.acquire(s1, 'L'));
    log.apply(log.acquireCommand(s2, 'L', { requestId: 'w', waitMs: 1_000 }));
    const attempt = log.index;
    log.release(s1, 'L', t1);
    expect(log.holders('L').map(([session]) => session)).toEqual([s2]);
    expect(withdraw(log, 'L', s2, 'w', attempt).result).toEqual({
      type: 'Withdrawn',
      lock: 'L',
      undid: 'grant',
    });
    expect(log.holders('L')).toEqual([]);
  });

  it('gives back only once every attempt of the request was withdrawn, in any order', () => {
    const log = new Log();
    const s1 = log.open();
    const got = log.acquireCommand(s1, 'L', { requestId: 'g' });
    const t1 = tokenOf(log.apply(got));
    const firstAttempt = log.index;
    // A retry applied: either caller may have been told Acquired.
    tokenOf(log.apply(got));
    const retryAttempt = log.index;
    // The later attempt's caller went away first (its forward landed late, say): the
    // earlier attempt's caller may hold the grant.
    expect(withdraw(log, 'L', s1, 'g', retryAttempt).result).toMatchObject({ undid: 'nothing' });
    expect(log.holders('L')).toEqual([[s1, 'exclusive', t1]]);
    expect(withdraw(log, 'L', s1, 'g', retryAttempt).result).toEqual({ type: 'Stale' });
    expect(withdraw(log, 'L', s1, 'g', firstAttempt).result).toMatchObject({ undid: 'grant' });
    expect(log.holders('L')).toEqual([]);
  });

  it('does not release a grant a re-acquire shared with an earlier request', () => {
    const log = new Log();
    const s1 = log.open();
    const t1 = tokenOf(log.acquire(s1, 'L', { requestId: 'r1' }));
    expect(tokenOf(log.acquire(s1, 'L', { requestId: 'r2' }))).toBe(t1);
    const attempt = log.index;
    expect(withdraw(log, 'L', s1, 'r2', attempt).result).toEqual({
      type: 'Withdrawn',
      lock: 'L',
      undid: 'nothing',
    });
    expect(log.holders('L')).toEqual([[s1, 'exclusive', t1]]);
  });

  it('does not release, for the first request, a grant a second request was told of', () => {
    const log = new Log();
    const s1 = log.open();
    const t1 = tokenOf(log.acquire(s1, 'L', { requestId: 'r1' }));
    const firstAttempt = log.index;
    expect(tokenOf(log.acquire(s1, 'L', { requestId: 'r2' }))).toBe(t1);
    // r1's caller went away, but r2's caller was told it holds L.
    expect(withdraw(log, 'L', s1, 'r1', firstAttempt).result).toEqual({
      type: 'Withdrawn',
      lock: 'L',
      undid: 'nothing',
    });
    expect(log.holders('L')).toEqual([[s1, 'exclusive', t1]]);
  });

  it('gives a grant two requests were told of back only once both were withdrawn', () => {
    const log = new Log();
    const s1 = log.open();
    tokenOf(log.acquire(s1, 'L', { requestId: 'r1' }));
    const firstAttempt = log.index;
    tokenOf(log.acquire(s1, 'L', { requestId: 'r2' }));
    const secondAttempt = log.index;
    expect(withdraw(log, 'L', s1, 'r1', firstAttempt).result).toMatchObject({ undid: 'nothing' });
    expect(withdraw(log, 'L', s1, 'r2', secondAttempt).result).toMatchObject({ undid: 'grant' });
    expect(log.holders('L')).toEqual([]);
  });

  it('refuses a second request of a session already waiting, so one wait has one request', () => {
    const log = new Log();
    const [s1, s2] = [log.open(), log.open()];
    log.acquire(s1, 'L', { requestId: 'held' });
    expect(log.acquire(s2, 'L', { requestId: 'w1', waitMs: 1_000 }).type).toBe('Queued');
    expect(log.acquire(s2, 'L', { requestId: 'w2', waitMs: 0 })).toMatchObject({
      type: 'Rejected',
      code: 'alreadyWaiting',
    });
  });

  it('is Stale for a session that ended, a request that got nothing, or another lock', () => {
    const log = new Log();
    const [s1, s2] = [log.open(), log.open()];
    log.acquire(s1, 'L', { requestId: 'held' });
    const heldAt = log.index;
    log.acquire(s2, 'L', { requestId: 'try', waitMs: 0 });
    const tryAt = log.index;
    expect(withdraw(log, 'L', s2, 'try', tryAt).result).toEqual({ type: 'Stale' });
    expect(withdraw(log, 'M', s1, 'held', heldAt).result).toEqual({ type: 'Stale' });
    log.apply({ type: 'ExpireSession', sessionId: s1, lastRefreshIndex: asIndex(s1) });
    expect(withdraw(log, 'L', s1, 'held', heldAt).result).toEqual({ type: 'Stale' });
  });

  it('after the grant ended, undoes nothing, and a retry is told the grant ended', () => {
    const log = new Log();
    const s1 = log.open();
    const got = log.acquireCommand(s1, 'L', { requestId: 'g' });
    const t1 = tokenOf(log.apply(got));
    const attempt = log.index;
    log.release(s1, 'L', t1);
    expect(withdraw(log, 'L', s1, 'g', attempt).result).toEqual({
      type: 'Withdrawn',
      lock: 'L',
      undid: 'nothing',
    });
    expectRejected(log.apply(got), 'grantEnded', `token ${t1}`);
    expect(log.holders('L')).toEqual([]);
  });

  // Found by the Jepsen run of seed 779330080: a grant withdrawn because its answer could
  // not be delivered, then the client's retry of the same request queued and timed out,
  // so the client was told "not acquired" while others had been refused as busy by it.
  it('a retry after its grant was withdrawn is told grantEnded, not granted or queued again', () => {
    const log = new Log();
    const [s1, s2, s3] = [log.open(), log.open(), log.open()];
    const got = log.acquireCommand(s1, 'L', { requestId: 'g', waitMs: 1_000 });
    const t1 = tokenOf(log.apply(got));
    const attempt = log.index;
    // Others saw the grant: a try-lock is refused while s1 holds L.
    expect(log.acquire(s2, 'L', { waitMs: 0 })).toMatchObject({ type: 'NotAcquired' });
    expect(withdraw(log, 'L', s1, 'g', attempt).result).toMatchObject({ undid: 'grant' });
    // A holder took L meanwhile, so a retry applied afresh would queue.
    const t3 = tokenOf(log.acquire(s3, 'L'));
    expectRejected(log.apply(got), 'grantEnded', `token ${t1}`);
    expect(log.holders('L')).toEqual([[s3, 'exclusive', t3]]);
    expect(log.sm.describe('L').waiters).toEqual([]);
    // The retry's own Withdraw finds nothing to give back.
    expect(withdraw(log, 'L', s1, 'g', log.index).result).toMatchObject({ undid: 'nothing' });
    expect(log.holders('L')).toEqual([[s3, 'exclusive', t3]]);
  });

  it('a malformed Withdraw is refused naming the field', () => {
    const log = new Log();
    const s1 = log.open();
    expectRejected(
      log.apply({ type: 'Withdraw', lock: 'L', sessionId: s1, requestId: 'g' } as never),
      'invalidArgument',
      'Withdraw.attemptIndex',
    );
  });
});
