/**
 * Scenario tests of the lock state machine (src/lock/state-machine.ts) and of the
 * runtime's timer helper (src/lock/timers.ts). The model-based property tests in
 * test/property cover random interleavings; these pin down specific behaviours and the
 * exact wording of refusals.
 */
import { describe, expect, it } from 'vitest';
import {
  LOCK_LIMIT_CEILINGS,
  type LockCommand,
  type LockLimits,
  type LockMode,
  LockStateMachine,
  LockTimers,
} from '../../src/lock/index.ts';
import type { SessionId } from '../../src/util/ids.ts';
import { asIndex, asSession, asToken, expectRejected, Log, tokenOf } from './lock-log.ts';

describe('LockStateMachine', () => {
  describe('acquire and try-lock', () => {
    it('grants a free lock with the Acquire entry index as token', () => {
      const log = new Log();
      const a = log.open();
      const result = log.acquire(a, 'db', { owner: 'worker-1' });
      expect(result).toEqual({
        type: 'Acquired',
        lock: 'db',
        token: log.index,
        mode: 'exclusive',
        holders: [
          {
            sessionId: a,
            owner: 'worker-1',
            mode: 'exclusive',
            token: log.index,
            requestIndex: log.index,
          },
        ],
      });
      log.sm.checkInvariants();
    });

    it('try-lock on a held lock returns NotAcquired naming the holders, and changes nothing', () => {
      const log = new Log();
      const a = log.open();
      const b = log.open();
      const token = tokenOf(log.acquire(a, 'db', { owner: 'alpha' }));
      const before = JSON.stringify(log.sm.snapshot().locks);
      const result = log.acquire(b, 'db', { waitMs: 0 });
      expect(result).toEqual({
        type: 'NotAcquired',
        lock: 'db',
        holders: [{ sessionId: a, owner: 'alpha', mode: 'exclusive', token, requestIndex: token }],
      });
      expect(JSON.stringify(log.sm.snapshot().locks)).toBe(before);
      expect(log.waiters('db')).toEqual([]);
    });

    it('shared requests join shared holders, exclusive ones do not', () => {
      const log = new Log();
      const [a, b, c] = [log.open(), log.open(), log.open()];
      const ta = tokenOf(log.acquire(a, 'db', { mode: 'shared' }));
      const tb = tokenOf(log.acquire(b, 'db', { mode: 'shared' }));
      expect(tb).toBeGreaterThan(ta);
      expect(log.acquire(c, 'db', { mode: 'exclusive' }).type).toBe('NotAcquired');
      expect(log.holders('db')).toEqual([
        [a, 'shared', ta],
        [b, 'shared', tb],
      ]);
      expect(log.sm.describe('db').mode).toBe('shared');
    });

    it('re-acquiring by the holder in the same mode returns the same grant and token', () => {
      const log = new Log();
      const a = log.open();
      const first = log.acquire(a, 'db');
      const again = log.acquire(a, 'db', { waitMs: 1_000 });
      expect(again).toEqual(first);
    });

    it('a new shared request does not jump a queued exclusive waiter', () => {
      const log = new Log();
      const [a, b, c] = [log.open(), log.open(), log.open()];
      log.acquire(a, 'db', { mode: 'shared' });
      expect(log.acquire(b, 'db', { mode: 'exclusive', waitMs: 1_000 })).toEqual({
        type: 'Queued',
        lock: 'db',
        position: 0,
      });
      expect(log.acquire(c, 'db', { mode: 'shared', waitMs: 0 }).type).toBe('NotAcquired');
      expect(log.acquire(c, 'db', { mode: 'shared', waitMs: 1_000 })).toEqual({
        type: 'Queued',
        lock: 'db',
        position: 1,
      });
      // Asking again under another request while queued is refused: the wait is the
      // first request's, and folding a second one in would let either one's withdrawal
      // take a grant the other was told of.
      expect(log.acquire(c, 'db', { mode: 'shared', waitMs: 1_000 })).toMatchObject({
        type: 'Rejected',
        code: 'alreadyWaiting',
      });
    });
  });

  describe('FIFO queues', () => {
    it('grants the shared waiters at the head one entry at a time, then the exclusive one, then the rest', () => {
      const log = new Log();
      const [a, b, c, d, e] = [log.open(), log.open(), log.open(), log.open(), log.open()];
      const ta = tokenOf(log.acquire(a, 'db'));
      log.acquire(b, 'db', { mode: 'shared', waitMs: 1_000 });
      log.acquire(c, 'db', { mode: 'shared', waitMs: 1_000 });
      log.acquire(d, 'db', { mode: 'exclusive', waitMs: 1_000 });
      log.acquire(e, 'db', { mode: 'shared', waitMs: 1_000 });
      expect(log.waiters('db')).toEqual([b, c, d, e]);

      const out = log.applyFull({
        type: 'Release',
        lock: 'db',
        sessionId: a,
        token: asToken(ta),
        requestId: 'rel-a',
      });
      const releaseIndex = log.index;
      expect(out.result).toEqual({ type: 'Released', lock: 'db' });
      // The Release grants b only: c's grant needs an entry (and a token) of its own.
      expect(log.holders('db')).toEqual([[b, 'shared', releaseIndex]]);
      expect(out.events.map((event) => event.type)).toEqual([
        'released',
        'waitEnded',
        'granted',
        'promotionPending',
      ]);
      log.apply({ type: 'Promote', lock: 'db', afterIndex: asIndex(releaseIndex) });
      const promoteIndex = log.index;
      expect(log.holders('db')).toEqual([
        [b, 'shared', releaseIndex],
        [c, 'shared', promoteIndex],
      ]);
      expect(log.waiters('db')).toEqual([d, e]);

      log.release(b, 'db', releaseIndex);
      expect(log.waiters('db')).toEqual([d, e]);
      log.release(c, 'db', promoteIndex);
      expect(log.holders('db')).toEqual([[d, 'exclusive', log.index]]);
      expect(log.waiters('db')).toEqual([e]);
      const td = log.index;
      log.release(d, 'db', td);
      expect(log.holders('db')).toEqual([[e, 'shared', log.index]]);
      expect(log.waiters('db')).toEqual([]);
      log.sm.checkInvariants();
    });

    it('a cancelled or expired wait leaves the queue, and the next waiter moves up', () => {
      const log = new Log();
      const [a, b, c] = [log.open(), log.open(), log.open()];
      const ta = tokenOf(log.acquire(a, 'db'));
      log.acquire(b, 'db', { waitMs: 1_000 });
      const bIndex = log.index;
      log.acquire(c, 'db', { waitMs: 1_000, requestId: 'wait-c' });
      const cIndex = log.index;

      // A wait timer for an older request is stale.
      expect(
        log.apply({
          type: 'WaitExpired',
          lock: 'db',
          sessionId: b,
          waiterIndex: asIndex(bIndex - 1),
        }),
      ).toEqual({ type: 'Stale' });
      expect(
        log.apply({ type: 'WaitExpired', lock: 'db', sessionId: b, waiterIndex: asIndex(bIndex) }),
      ).toEqual({ type: 'WaitExpired', lock: 'db', sessionId: b });
      expect(log.waiters('db')).toEqual([c]);
      expect(log.sm.session(b)?.waiting).toEqual([]);

      expectRejected(
        log.apply({ type: 'CancelWait', lock: 'db', sessionId: b, requestId: 'x1' }),
        'notHolder',
        'not waiting',
      );
      expect(
        log.apply({ type: 'CancelWait', lock: 'db', sessionId: c, requestId: 'wait-c' }),
      ).toEqual({
        type: 'WaitCancelled',
        lock: 'db',
      });
      expect(
        log.apply({ type: 'WaitExpired', lock: 'db', sessionId: c, waiterIndex: asIndex(cIndex) }),
      ).toEqual({ type: 'Stale' });
      expect(log.holders('db')).toEqual([[a, 'exclusive', ta]]);
    });

    it('the queue is bounded by waitersPerLockMax', () => {
      const log = new Log({ waitersPerLockMax: 2 });
      const [a, b, c, d] = [log.open(), log.open(), log.open(), log.open()];
      log.acquire(a, 'db');
      log.acquire(b, 'db', { waitMs: 1_000 });
      log.acquire(c, 'db', { waitMs: 1_000 });
      expectRejected(
        log.acquire(d, 'db', { waitMs: 1_000 }),
        'limitReached',
        'waitersPerLockMax',
        '(2)',
        'db',
      );
      // A try-lock on the full queue is still just NotAcquired.
      expect(log.acquire(d, 'db', { waitMs: 0 }).type).toBe('NotAcquired');
    });
  });

  describe('sessions', () => {
    it('closing a session releases its locks and withdraws its waits, promoting others', () => {
      const log = new Log();
      const [a, b, c] = [log.open(), log.open(), log.open()];
      log.acquire(a, 'x');
      log.acquire(b, 'y');
      log.acquire(a, 'y', { waitMs: 1_000 });
      log.acquire(c, 'x', { waitMs: 1_000 });
      expect(log.sm.session(a)).toMatchObject({ held: ['x'], waiting: ['y'] });
      expect(log.apply({ type: 'CloseSession', sessionId: a, requestId: 'bye' })).toEqual({
        type: 'SessionClosed',
        sessionId: a,
      });
      expect(log.sm.session(a)).toBeNull();
      expect(log.holders('x')).toEqual([[c, 'exclusive', log.index]]);
      expect(log.waiters('y')).toEqual([]);
      expect(log.sm.sessionIds()).toEqual([b, c]);
      expectRejected(log.acquire(a, 'z'), 'sessionNotFound', `session ${a}`);
    });

    it('an expiry applies only if no refresh came after the one it was timed from', () => {
      const log = new Log();
      const a = log.open();
      const openIndex = log.index;
      expect(log.apply({ type: 'KeepAlive', sessionIds: [a, asSession(999)] })).toEqual({
        type: 'KeptAlive',
        refreshed: [a],
        missing: [999],
      });
      const refreshIndex = log.index;
      expect(log.sm.session(a)?.lastRefreshIndex).toBe(refreshIndex);
      expect(
        log.apply({ type: 'ExpireSession', sessionId: a, lastRefreshIndex: asIndex(openIndex) }),
      ).toEqual({ type: 'Stale' });
      expect(log.sm.session(a)).not.toBeNull();
      expect(
        log.apply({ type: 'ExpireSession', sessionId: a, lastRefreshIndex: asIndex(refreshIndex) }),
      ).toEqual({ type: 'SessionExpired', sessionId: a });
      expect(log.sm.session(a)).toBeNull();
      expect(
        log.apply({ type: 'ExpireSession', sessionId: a, lastRefreshIndex: asIndex(refreshIndex) }),
      ).toEqual({ type: 'Stale' });
    });

    it('keepalives are batched, within keepAliveBatchMax', () => {
      const log = new Log({ keepAliveBatchMax: 2 });
      const [a, b] = [log.open(), log.open()];
      expect(log.apply({ type: 'KeepAlive', sessionIds: [a, b] }).type).toBe('KeptAlive');
      expectRejected(
        log.apply({ type: 'KeepAlive', sessionIds: [a, b, a] }),
        'invalidArgument',
        'sessionIds',
        '2',
      );
      expectRejected(
        log.apply({ type: 'KeepAlive', sessionIds: [] }),
        'invalidArgument',
        'sessionIds',
      );
    });
  });

  describe('lock-delay', () => {
    it('closes a lock freed by an expiry until LockDelayEnded, then grants the waiters', () => {
      const log = new Log();
      const [a, b, c] = [log.open(), log.open(), log.open()];
      const ta = tokenOf(log.acquire(a, 'db', { lockDelayMs: 500 }));
      const out = log.applyFull({
        type: 'ExpireSession',
        sessionId: a,
        lastRefreshIndex: asIndex(a),
      });
      const expireIndex = log.index;
      expect(out.result).toEqual({ type: 'SessionExpired', sessionId: a });
      expect(out.events).toContainEqual({
        type: 'delayStarted',
        lock: 'db',
        delayIndex: expireIndex,
        delayMs: 500,
      });
      expect(log.sm.describe('db')).toMatchObject({ holders: [], delayIndex: expireIndex });
      expect(log.sm.delaysOf('db')).toEqual([{ index: expireIndex, delayMs: 500 }]);
      expect(log.sm.validateFence('db', asToken(ta))).toEqual({ valid: false, currentToken: null });
      // Closed: a try-lock fails with no holders, a waiting request queues.
      expect(log.acquire(b, 'db')).toEqual({ type: 'NotAcquired', lock: 'db', holders: [] });
      expect(log.acquire(c, 'db', { waitMs: 5_000 })).toEqual({
        type: 'Queued',
        lock: 'db',
        position: 0,
      });
      expect(
        log.apply({ type: 'LockDelayEnded', lock: 'db', delayIndex: asIndex(expireIndex - 1) }),
      ).toEqual({ type: 'Stale' });
      expect(
        log.apply({ type: 'LockDelayEnded', lock: 'db', delayIndex: asIndex(expireIndex) }),
      ).toEqual({ type: 'LockDelayEnded', lock: 'db' });
      expect(log.holders('db')).toEqual([[c, 'exclusive', log.index]]);
      expect(log.sm.describe('db').delayIndex).toBeNull();
    });

    it('uses the cluster default when the Acquire asks for none', () => {
      const log = new Log({ lockDelayMs: 200 });
      const [a, b] = [log.open(), log.open()];
      log.acquire(a, 'db');
      log.apply({ type: 'ExpireSession', sessionId: a, lastRefreshIndex: asIndex(a) });
      expect(log.sm.delaysOf('db')).toEqual([{ index: log.index, delayMs: 200 }]);
      expect(log.acquire(b, 'db').type).toBe('NotAcquired');
    });

    it('does not apply after an explicit release or a close', () => {
      const log = new Log({ lockDelayMs: 200 });
      const [a, b, c] = [log.open(), log.open(), log.open()];
      const ta = tokenOf(log.acquire(a, 'db', { lockDelayMs: 500 }));
      expect(log.release(a, 'db', ta)).toEqual({ type: 'Released', lock: 'db' });
      expect(log.sm.describe('db').delayIndex).toBeNull();
      expect(log.sm.lockCount).toBe(0);
      const tb = tokenOf(log.acquire(b, 'db', { lockDelayMs: 500 }));
      expect(tb).toBeGreaterThan(ta);
      log.apply({ type: 'CloseSession', sessionId: b, requestId: 'bye' });
      expect(log.sm.describe('db').delayIndex).toBeNull();
      expect(log.acquire(c, 'db').type).toBe('Acquired');
    });

    it('is off when neither the cluster nor the Acquire asks for it', () => {
      const log = new Log();
      const [a, b] = [log.open(), log.open()];
      log.acquire(a, 'db');
      log.apply({ type: 'ExpireSession', sessionId: a, lastRefreshIndex: asIndex(a) });
      expect(log.sm.delaysOf('db')).toEqual([]);
      expect(log.acquire(b, 'db').type).toBe('Acquired');
    });
  });

  describe('max-hold and revoke', () => {
    it('MaxHoldReached ends the grant even while keepalives continue, and promotes', () => {
      const log = new Log();
      const [a, b] = [log.open(), log.open()];
      const grant = log.applyFull(log.acquireCommand(a, 'db', { maxHoldMs: 500 }));
      const ta = tokenOf(grant.result);
      expect(grant.events).toContainEqual(
        expect.objectContaining({ type: 'granted', maxHoldMs: 500 }),
      );
      expect(log.sm.maxHoldOf('db', a)).toBe(500);
      log.acquire(b, 'db', { waitMs: 1_000 });
      log.apply({ type: 'KeepAlive', sessionIds: [a] });
      expect(
        log.apply({ type: 'MaxHoldReached', lock: 'db', sessionId: a, token: asToken(ta - 1) }),
      ).toEqual({ type: 'Stale' });
      expect(
        log.apply({ type: 'MaxHoldReached', lock: 'db', sessionId: a, token: asToken(ta) }),
      ).toEqual({ type: 'MaxHoldReached', lock: 'db', token: ta });
      const tb = log.index;
      expect(log.holders('db')).toEqual([[b, 'exclusive', tb]]);
      expect(log.sm.maxHoldOf('db', a)).toBe(0);
      expect(log.sm.session(a)).not.toBeNull();
      // The old holder's release is refused, not ignored.
      expectRejected(log.release(a, 'db', ta), 'notHolder', `session ${a}`, 'db');
      expect(
        log.apply({ type: 'MaxHoldReached', lock: 'db', sessionId: a, token: asToken(ta) }),
      ).toEqual({ type: 'Stale' });
    });

    it('Revoke frees every grant, and the next grant gets a higher token', () => {
      const log = new Log();
      const [a, b, c] = [log.open(), log.open(), log.open()];
      const ta = tokenOf(log.acquire(a, 'db', { mode: 'shared' }));
      const tb = tokenOf(log.acquire(b, 'db', { mode: 'shared' }));
      log.acquire(c, 'db', { waitMs: 1_000 });
      expect(log.apply({ type: 'Revoke', lock: 'db', reason: 'operator' })).toEqual({
        type: 'Revoked',
        lock: 'db',
        freed: 2,
      });
      const revokeIndex = log.index;
      expect(log.holders('db')).toEqual([[c, 'exclusive', revokeIndex]]);
      expect(revokeIndex).toBeGreaterThan(Math.max(ta, tb));
      expect(log.sm.validateFence('db', asToken(tb))).toEqual({
        valid: false,
        currentToken: revokeIndex,
      });
      expect(log.apply({ type: 'Revoke', lock: 'free', reason: 'operator' })).toEqual({
        type: 'Revoked',
        lock: 'free',
        freed: 0,
      });
      expect(log.sm.lockCount).toBe(1);
      const next = log.open();
      log.apply({ type: 'Revoke', lock: 'db', reason: 'operator' });
      expect(tokenOf(log.acquire(next, 'db'))).toBeGreaterThan(revokeIndex);
    });
  });

  describe('release', () => {
    it('refuses a non-holder, a stale token and an unknown session with distinct codes', () => {
      const log = new Log();
      const [a, b] = [log.open(), log.open()];
      const first = tokenOf(log.acquire(a, 'db'));
      log.release(a, 'db', first);
      const second = tokenOf(log.acquire(a, 'db'));
      expectRejected(log.release(b, 'db', second), 'notHolder', `session ${b}`, 'db');
      expectRejected(log.release(a, 'db', first), 'staleToken', `${first}`, `${second}`);
      expectRejected(log.release(asSession(4242), 'db', second), 'sessionNotFound', '4242');
      expect(log.holders('db')).toEqual([[a, 'exclusive', second]]);
    });
  });

  describe('exactly once', () => {
    it('a retry does not act again, and is answered with what is still true', () => {
      const log = new Log();
      const open: LockCommand = {
        type: 'OpenSession',
        ttlMs: 5_000,
        clientName: 'c',
        requestId: 'o1',
      };
      const opened = log.apply(open);
      expect(log.apply(open)).toEqual(opened);
      expect(log.sm.sessionCount).toBe(1);
      const a = (opened as { sessionId: SessionId }).sessionId;
      const b = log.open();

      const acquire = log.acquireCommand(a, 'db', { requestId: 'r1' });
      const acquired = log.apply(acquire);
      const token = tokenOf(acquired);
      const release: LockCommand = {
        type: 'Release',
        lock: 'db',
        sessionId: a,
        token: asToken(token),
        requestId: 'r2',
      };
      expect(log.apply(release)).toEqual({ type: 'Released', lock: 'db' });
      const tb = tokenOf(log.acquire(b, 'db'));
      // The retried Acquire does not queue or grant again, and is not told of a grant
      // that has ended.
      expect(log.apply(acquire)).toMatchObject({ type: 'Rejected', code: 'grantEnded' });
      expect(log.holders('db')).toEqual([[b, 'exclusive', tb]]);
      // The retried Release returns Released, not notHolder.
      expect(log.apply(release)).toEqual({ type: 'Released', lock: 'db' });
      // A refusal changed nothing, so it is not remembered: a corrected retry runs.
      expect(log.release(b, 'db', 1, 'r3')).toMatchObject({ type: 'Rejected', code: 'staleToken' });
      expect(log.release(b, 'db', tb, 'r3')).toEqual({ type: 'Released', lock: 'db' });
      expect(log.holders('db')).toEqual([]);
    });

    it('tells request ids of different commands apart', () => {
      const log = new Log();
      const a = log.open();
      const acquired = log.apply(log.acquireCommand(a, 'db', { requestId: 'same' }));
      const token = asToken(tokenOf(acquired));
      const release: LockCommand = {
        type: 'Release',
        lock: 'db',
        sessionId: a,
        token,
        requestId: 'same',
      };
      expect(log.apply(release)).toEqual({ type: 'Released', lock: 'db' });
    });

    it('forgets the oldest result past dedupeWindowMax, and keeps the window in snapshots', () => {
      const log = new Log({ dedupeWindowMax: 2 });
      const open = (requestId: string): LockCommand => ({
        type: 'OpenSession',
        ttlMs: 5_000,
        clientName: 'c',
        requestId,
      });
      const first = log.apply(open('o1'));
      log.apply(open('o2'));
      expect(log.apply(open('o1'))).toEqual(first);
      log.apply(open('o3'));
      expect(log.sm.snapshot().dedupe.map(([key]) => key)).toEqual([
        'OpenSession/o2',
        'OpenSession/o3',
      ]);
      // o1 fell out of the window: the retry opens a second session.
      expect(log.apply(open('o1'))).not.toEqual(first);
      expect(log.sm.sessionCount).toBe(4);
    });

    it('refuses a bad request id without remembering it', () => {
      const log = new Log({ requestIdBytesMax: 4 });
      expectRejected(
        log.apply({ type: 'OpenSession', ttlMs: 5_000, clientName: 'c', requestId: '' }),
        'invalidArgument',
        'requestId',
      );
      expectRejected(
        log.apply({ type: 'OpenSession', ttlMs: 5_000, clientName: 'c', requestId: 'ééé' }),
        'invalidArgument',
        'requestId',
        '6 bytes',
        '4',
      );
      expect(log.sm.snapshot().dedupe).toEqual([]);
    });
  });

  describe('limits', () => {
    const limits: Partial<LockLimits> = {
      lockNameBytesMax: 4,
      ownerBytesMax: 3,
      clientNameBytesMax: 2,
      sessionTtlMsMin: 1_000,
      sessionTtlMsMax: 2_000,
      sessionsMax: 2,
      locksMax: 2,
      waitMsMax: 100,
      maxHoldMsMax: 200,
      lockDelayMsMax: 300,
    };

    it('lock-name bytes, counting multi-byte UTF-8', () => {
      const log = new Log(limits);
      const a = log.open(1_000);
      expect(log.acquire(a, 'éé').type).toBe('Acquired'); // 4 bytes
      expect(log.acquire(a, '😀').type).toBe('Acquired'); // 4 bytes, one surrogate pair
      expectRejected(log.acquire(a, 'abcde'), 'invalidArgument', 'lock', '5 bytes', 'limit is 4');
      expectRejected(log.acquire(a, 'aéé'), 'invalidArgument', 'lock', '5 bytes', 'limit is 4');
      expectRejected(log.acquire(a, '€€'), 'invalidArgument', 'lock', '6 bytes', 'limit is 4');
      expectRejected(log.acquire(a, ''), 'invalidArgument', 'lock', 'empty');
      // lockNameBytesMax bounds the locks that exist; a lookup by a longer name finds none.
      expectRejected(log.release(a, 'abcde', 1), 'notHolder', 'abcde');
      expect(log.apply({ type: 'Revoke', lock: 'abcde', reason: 'x' })).toEqual({
        type: 'Revoked',
        lock: 'abcde',
        freed: 0,
      });
      expectRejected(
        log.apply({ type: 'CancelWait', lock: 'abcde', sessionId: a, requestId: 'c' }),
        'notHolder',
        'abcde',
      );
      // Past the ceiling no rules allow, a lookup is refused as malformed.
      const huge = 'n'.repeat(LOCK_LIMIT_CEILINGS.lockNameBytesMax + 1);
      expectRejected(log.release(a, huge, 1), 'invalidArgument', 'lock', 'its ceiling');
      expectRejected(log.release(a, '', 1), 'invalidArgument', 'lock', 'empty');
    });

    it('owner bytes', () => {
      const log = new Log(limits);
      const a = log.open(1_000);
      expect(log.acquire(a, 'x', { owner: 'aé' }).type).toBe('Acquired'); // 3 bytes
      expectRejected(
        log.acquire(a, 'y', { owner: 'éé' }),
        'invalidArgument',
        'owner',
        '4 bytes',
        'limit is 3',
      );
    });

    it('client-name bytes', () => {
      const log = new Log(limits);
      expectRejected(
        log.apply({ type: 'OpenSession', ttlMs: 1_000, clientName: 'ü!', requestId: 'o' }),
        'invalidArgument',
        'clientName',
        '3 bytes',
      );
    });

    it('TTL range', () => {
      const log = new Log(limits);
      for (const ttlMs of [999, 2_001, 1_500.5, Number.NaN]) {
        expectRejected(
          log.apply({ type: 'OpenSession', ttlMs, clientName: '', requestId: `t${ttlMs}` }),
          'invalidArgument',
          'ttlMs',
          '[1000, 2000]',
        );
      }
      expect(log.open(1_000)).toBeGreaterThan(0);
      expect(log.open(2_000)).toBeGreaterThan(0);
    });

    it('sessions', () => {
      const log = new Log(limits);
      const a = log.open(1_000);
      log.open(1_000);
      expectRejected(
        log.apply({ type: 'OpenSession', ttlMs: 1_000, clientName: '', requestId: 'third' }),
        'limitReached',
        'sessionsMax',
        '(2)',
      );
      log.apply({ type: 'CloseSession', sessionId: a, requestId: 'bye' });
      expect(log.open(1_000)).toBeGreaterThan(0);
    });

    it('locks in use (a held, awaited or delayed lock counts, a free one does not)', () => {
      const log = new Log(limits);
      const [a, b] = [log.open(1_000), log.open(1_000)];
      const t1 = tokenOf(log.acquire(a, 'l1'));
      log.acquire(a, 'l2');
      expectRejected(log.acquire(b, 'l3'), 'limitReached', 'locksMax', '(2)');
      // A lock in use can still take more requests.
      expect(log.acquire(b, 'l1', { waitMs: 50 }).type).toBe('Queued');
      log.release(a, 'l2', log.sm.describe('l2').holders[0]?.token ?? 0);
      expect(log.acquire(b, 'l3').type).toBe('Acquired');
      expect(log.sm.listLocks('', 10)).toEqual(['l1', 'l3']);
      expect(t1).toBeGreaterThan(0);
    });

    it('durations: waitMs, maxHoldMs, lockDelayMs, and the mode', () => {
      const log = new Log(limits);
      const a = log.open(1_000);
      expectRejected(log.acquire(a, 'x', { waitMs: 101 }), 'invalidArgument', 'waitMs', '[0, 100]');
      expectRejected(log.acquire(a, 'x', { waitMs: -1 }), 'invalidArgument', 'waitMs');
      expectRejected(
        log.acquire(a, 'x', { maxHoldMs: 201 }),
        'invalidArgument',
        'maxHoldMs',
        '200',
      );
      expectRejected(
        log.acquire(a, 'x', { lockDelayMs: 301 }),
        'invalidArgument',
        'lockDelayMs',
        '300',
      );
      expectRejected(
        log.acquire(a, 'x', { mode: 'upgrade' as LockMode }),
        'invalidArgument',
        'mode',
        'upgrade',
      );
      expect(log.acquire(a, 'x', { waitMs: 100, maxHoldMs: 200, lockDelayMs: 300 }).type).toBe(
        'Acquired',
      );
    });

    it('rejects inconsistent limits at construction', () => {
      expect(() => new LockStateMachine({ sessionsMax: 0 })).toThrow(/sessionsMax/);
      expect(() => new LockStateMachine({ sessionTtlMsMin: 10, sessionTtlMsMax: 5 })).toThrow(
        /sessionTtlMsMin/,
      );
      expect(() => new LockStateMachine({ lockDelayMs: 10, lockDelayMsMax: 5 })).toThrow(
        /lockDelayMs/,
      );
    });
  });

  describe('malformed commands', () => {
    // Every replica applies every entry: a command that threw would stop the cluster.
    it.each([
      [{ type: 'Unknown' }, 'unknown command type'],
      [{ type: 'KeepAlive', sessionIds: 'not a list' }, 'KeepAlive.sessionIds'],
      [
        { type: 'OpenSession', ttlMs: '1000', clientName: 'c', requestId: 'r' },
        'OpenSession.ttlMs',
      ],
      [{ type: 'Acquire', lock: 'x', sessionId: 'one' }, 'Acquire.sessionId'],
      [null, 'command must be an object'],
    ])('%j is refused as invalidArgument, naming the field', (command, detail) => {
      const log = new Log();
      const session = log.open();
      const before = JSON.stringify(log.sm.snapshot());
      const output = log.applyFull(command as unknown as LockCommand);
      expect(output.result).toMatchObject({ type: 'Rejected', code: 'invalidArgument' });
      expect((output.result as { detail: string }).detail).toContain(detail);
      expect(output.events).toEqual([]);
      expect(log.sm.session(session)).not.toBeNull();
      const after = JSON.stringify({
        ...log.sm.snapshot(),
        appliedIndex: JSON.parse(before).appliedIndex,
      });
      expect(after).toBe(before);
    });
  });

  describe('queries', () => {
    it('listLocks returns the locks in use with a prefix, in code-unit order, up to a limit', () => {
      const log = new Log();
      const a = log.open();
      for (const name of ['b', 'a/2', 'a/10', 'a/1', 'A/1', 'é', 'a', 'free']) log.acquire(a, name);
      log.release(a, 'free', log.sm.describe('free').holders[0]?.token ?? 0);
      expect(log.sm.listLocks('', 100)).toEqual(['A/1', 'a', 'a/1', 'a/10', 'a/2', 'b', 'é']);
      expect(log.sm.listLocks('a/', 100)).toEqual(['a/1', 'a/10', 'a/2']);
      expect(log.sm.listLocks('a/', 2)).toEqual(['a/1', 'a/10']);
      expect(log.sm.listLocks('z', 100)).toEqual([]);
      expect(log.sm.describe('free')).toEqual({
        lock: 'free',
        mode: null,
        holders: [],
        waiters: [],
        delayIndex: null,
        delays: [],
      });
    });

    it('validateFence tells whether a token is a current grant', () => {
      const log = new Log();
      const [a, b] = [log.open(), log.open()];
      expect(log.sm.validateFence('db', asToken(1))).toEqual({ valid: false, currentToken: null });
      const ta = tokenOf(log.acquire(a, 'db', { mode: 'shared' }));
      const tb = tokenOf(log.acquire(b, 'db', { mode: 'shared' }));
      expect(log.sm.validateFence('db', asToken(ta))).toEqual({ valid: true, currentToken: tb });
      expect(log.sm.validateFence('db', asToken(tb))).toEqual({ valid: true, currentToken: tb });
      log.release(b, 'db', tb);
      expect(log.sm.validateFence('db', asToken(tb))).toEqual({ valid: false, currentToken: ta });
      log.release(a, 'db', ta);
      expect(log.sm.validateFence('db', asToken(ta))).toEqual({ valid: false, currentToken: null });
    });

    it('describes a lock with holders (token, session, owner, acquired-at) and waiters in order', () => {
      const log = new Log();
      const [a, b] = [log.open(), log.open()];
      const ta = tokenOf(log.acquire(a, 'db', { owner: 'alpha' }));
      log.acquire(b, 'db', { waitMs: 1_000, owner: 'beta', requestId: 'rb', maxHoldMs: 7 });
      expect(log.sm.describe('db')).toEqual({
        lock: 'db',
        mode: 'exclusive',
        holders: [{ sessionId: a, owner: 'alpha', mode: 'exclusive', token: ta, requestIndex: ta }],
        waiters: [
          {
            sessionId: b,
            owner: 'beta',
            mode: 'exclusive',
            requestIndex: log.index,
            requestId: 'rb',
            waitMs: 1_000,
            maxHoldMs: 7,
            lockDelayMs: 0,
          },
        ],
        delayIndex: null,
        delays: [],
      });
      expect(log.sm.session(b)).toEqual({
        sessionId: b,
        ttlMs: 10_000,
        identity: '',
        clientName: 'c',
        lastRefreshIndex: b,
        held: [],
        waiting: ['db'],
      });
    });
  });

  describe('log indexes and snapshots', () => {
    it('refuses an index that does not increase, and skips entries without lock commands', () => {
      const sm = new LockStateMachine();
      sm.apply(asIndex(3), { type: 'Revoke', lock: 'x', reason: '' });
      expect(() => sm.apply(asIndex(3), { type: 'Revoke', lock: 'x', reason: '' })).toThrow();
      sm.skipTo(asIndex(10));
      expect(sm.lastAppliedIndex).toBe(10);
      expect(() => sm.skipTo(asIndex(9))).toThrow();
      const out = sm.apply(asIndex(11), {
        type: 'OpenSession',
        ttlMs: 5_000,
        clientName: '',
        requestId: 'o',
      });
      expect(out.result).toEqual({ type: 'SessionOpened', sessionId: 11, ttlMs: 5_000 });
    });

    it('snapshot() and restore() round-trip exactly, and the restored machine goes on the same', () => {
      const build = () => {
        const log = new Log({ lockDelayMs: 100 });
        const [a, b, c] = [log.open(), log.open(), log.open()];
        log.acquire(a, 'x', { mode: 'shared', maxHoldMs: 50 });
        log.acquire(b, 'x', { mode: 'shared' });
        log.acquire(c, 'x', { waitMs: 1_000 });
        log.acquire(c, 'y');
        log.apply({ type: 'ExpireSession', sessionId: c, lastRefreshIndex: asIndex(c) });
        return log;
      };
      const original = build();
      const text = JSON.stringify(original.sm.snapshot());
      const copy = new LockStateMachine({ lockDelayMs: 100 });
      copy.restore(JSON.parse(text));
      copy.checkInvariants();
      expect(JSON.stringify(copy.snapshot())).toBe(text);
      const next: LockCommand = { type: 'Revoke', lock: 'x', reason: 'op' };
      const index = asIndex(original.index + 1);
      expect(copy.apply(index, next)).toEqual(original.sm.apply(index, next));
      expect(JSON.stringify(copy.snapshot())).toBe(JSON.stringify(original.sm.snapshot()));
      expect(() => copy.restore({ ...JSON.parse(text), version: 4 })).toThrow(/version/);
    });
  });
});

describe('LockTimers', () => {
  const TTL = 5_000;
  const REPROPOSE = 1_000;

  function setup(limits: Partial<LockLimits> = {}) {
    const log = new Log(limits);
    const timers = new LockTimers({ reproposeIntervalMs: REPROPOSE, dueBatchMax: 100 });
    /** Applies a command at `nowMs` on this node's clock and feeds its events to the timers. */
    const at = (nowMs: number, command: LockCommand) => {
      const out = log.applyFull(command);
      timers.applied(asIndex(log.index), out.events, nowMs);
      return out.result;
    };
    return { log, timers, at };
  }

  it('proposes an expiry only once ttl has run from the refresh apply time, then re-proposes', () => {
    const { log, timers, at } = setup();
    const t = 10_000;
    const opened = at(t, { type: 'OpenSession', ttlMs: TTL, clientName: '', requestId: 'o' });
    const id = (opened as { sessionId: SessionId }).sessionId;
    const expire: LockCommand = {
      type: 'ExpireSession',
      sessionId: id,
      lastRefreshIndex: asIndex(log.index),
    };
    for (const now of [t, t + 1, t + TTL / 2, t + TTL - 1]) expect(timers.due(now)).toEqual([]);
    expect(timers.due(t + TTL)).toEqual([expire]);
    // Not again within the re-propose interval...
    expect(timers.due(t + TTL)).toEqual([]);
    expect(timers.due(t + TTL + REPROPOSE - 1)).toEqual([]);
    // ...but again after it, in case the first proposal was lost.
    expect(timers.due(t + TTL + REPROPOSE)).toEqual([expire]);
    expect(timers.due(t + TTL + REPROPOSE + 1)).toEqual([]);
    // Applying the expiry ends the deadline.
    at(t + TTL + REPROPOSE + 2, expire);
    expect(timers.size).toBe(0);
    expect(timers.due(t + 10 * TTL)).toEqual([]);
  });

  it('a later refresh replaces the deadline, and the expiry carries the later refresh index', () => {
    const { log, timers, at } = setup();
    const opened = at(0, { type: 'OpenSession', ttlMs: TTL, clientName: '', requestId: 'o' });
    const id = (opened as { sessionId: SessionId }).sessionId;
    at(3_000, { type: 'KeepAlive', sessionIds: [id] });
    const refreshIndex = log.index;
    expect(timers.due(TTL)).toEqual([]);
    expect(timers.due(3_000 + TTL - 1)).toEqual([]);
    expect(timers.due(3_000 + TTL)).toEqual([
      { type: 'ExpireSession', sessionId: id, lastRefreshIndex: refreshIndex },
    ]);
    expect(timers.size).toBe(1);
  });

  it('times waits, max-hold and lock-delay from their apply times, and drops them when they end', () => {
    const { log, timers, at } = setup();
    const a = (
      at(0, { type: 'OpenSession', ttlMs: TTL, clientName: '', requestId: 'a' }) as {
        sessionId: SessionId;
      }
    ).sessionId;
    const b = (
      at(0, { type: 'OpenSession', ttlMs: TTL, clientName: '', requestId: 'b' }) as {
        sessionId: SessionId;
      }
    ).sessionId;
    const ta = tokenOf(at(100, log.acquireCommand(a, 'db', { maxHoldMs: 400, lockDelayMs: 700 })));
    at(200, log.acquireCommand(b, 'db', { waitMs: 300 }));
    const waitIndex = log.index;
    const dueAt = (now: number) => timers.due(now).filter((c) => c.type !== 'ExpireSession');
    expect(dueAt(499)).toEqual([]);
    expect(dueAt(500)).toEqual([
      { type: 'MaxHoldReached', lock: 'db', sessionId: a, token: ta },
      { type: 'WaitExpired', lock: 'db', sessionId: b, waiterIndex: waitIndex },
    ]);
    // The wait times out first; the max-hold timer still stands.
    at(510, { type: 'WaitExpired', lock: 'db', sessionId: b, waiterIndex: asIndex(waitIndex) });
    expect(dueAt(500 + REPROPOSE)).toEqual([
      { type: 'MaxHoldReached', lock: 'db', sessionId: a, token: ta },
    ]);
    // The session expires: the hold timer goes, a lock-delay timer starts.
    at(2_000, { type: 'ExpireSession', sessionId: a, lastRefreshIndex: asIndex(a) });
    const delayIndex = log.index;
    expect(dueAt(2_699)).toEqual([]);
    expect(dueAt(2_700)).toEqual([{ type: 'LockDelayEnded', lock: 'db', delayIndex }]);
    at(2_701, { type: 'LockDelayEnded', lock: 'db', delayIndex: asIndex(delayIndex) });
    expect(timers.due(1_000_000)).toEqual([
      { type: 'ExpireSession', sessionId: b, lastRefreshIndex: b },
    ]);
    expect(timers.size).toBe(1);
  });

  it('gives at most dueBatchMax commands per call', () => {
    const log = new Log();
    const timers = new LockTimers({ reproposeIntervalMs: REPROPOSE, dueBatchMax: 2 });
    for (const requestId of ['a', 'b', 'c']) {
      const out = log.applyFull({ type: 'OpenSession', ttlMs: TTL, clientName: '', requestId });
      timers.applied(asIndex(log.index), out.events, 0);
    }
    expect(timers.due(TTL)).toHaveLength(2);
    expect(timers.due(TTL)).toHaveLength(1);
    expect(timers.due(TTL)).toHaveLength(0);
    expect(() => new LockTimers({ reproposeIntervalMs: 0, dueBatchMax: 1 })).toThrow();
    expect(() => new LockTimers({ reproposeIntervalMs: 1, dueBatchMax: 0 })).toThrow();
  });

  it('restore() rebuilds every deadline counted from now, never earlier', () => {
    const log = new Log({ lockDelayMs: 0 });
    const [a, b, c] = [log.open(TTL), log.open(2 * TTL), log.open(TTL)];
    const tb = tokenOf(log.acquire(b, 'held', { maxHoldMs: 600 }));
    log.acquire(c, 'held', { waitMs: 800 });
    const waitIndex = log.index;
    log.acquire(a, 'delayed', { lockDelayMs: 900 });
    log.apply({ type: 'ExpireSession', sessionId: a, lastRefreshIndex: asIndex(a) });
    const delayIndex = log.index;

    const timers = new LockTimers({ reproposeIntervalMs: REPROPOSE, dueBatchMax: 100 });
    // Stale deadlines from before are dropped.
    timers.applied(
      asIndex(1),
      [{ type: 'sessionRefreshed', sessionId: asSession(77), ttlMs: 1 }],
      0,
    );
    const now = 50_000;
    timers.restore(log.sm, now);
    expect(timers.size).toBe(5);
    expect(timers.due(now + 599)).toEqual([]);
    expect(timers.due(now + 600)).toEqual([
      { type: 'MaxHoldReached', lock: 'held', sessionId: b, token: tb },
    ]);
    expect(timers.due(now + 800)).toEqual([
      { type: 'WaitExpired', lock: 'held', sessionId: c, waiterIndex: waitIndex },
    ]);
    expect(timers.due(now + 900)).toEqual([
      { type: 'LockDelayEnded', lock: 'delayed', delayIndex },
    ]);
    // The three above were never applied, so they come round again every REPROPOSE ms;
    // the sessions expire only a full TTL after the restore.
    const expiryOf = (id: SessionId, at: number) =>
      timers.due(at).filter((cmd) => cmd.type === 'ExpireSession' && cmd.sessionId === id);
    expect(expiryOf(c, now + TTL - 1)).toEqual([]);
    expect(expiryOf(c, now + TTL)).toEqual([
      { type: 'ExpireSession', sessionId: c, lastRefreshIndex: c },
    ]);
    expect(expiryOf(b, now + 2 * TTL - 1)).toEqual([]);
    expect(expiryOf(b, now + 2 * TTL)).toEqual([
      { type: 'ExpireSession', sessionId: b, lastRefreshIndex: b },
    ]);
  });
});
