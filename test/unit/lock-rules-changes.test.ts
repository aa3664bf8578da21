/**
 * Interleavings in which a SetRules entry could make a replica tell a client something
 * untrue, or make two replicas at one index differ (found by an adversarial review of
 * the replicated lock rules; each failed before its fix). Each test states the promise
 * it checks; "Observed" notes say what the unfixed code did.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_LOCK_LIMITS, type LockLimits, LockStateMachine } from '../../src/lock/index.ts';
import { asIndex, Log } from './lock-log.ts';

function setRules(log: Log, rules: LockLimits) {
  return log.apply({ type: 'SetRules', rules, onlyIfUnset: false });
}

describe('review: exactly once across a SetRules that lowers a limit', () => {
  // README/DESIGN: "A retried mutation with the same request_id returns the first
  // outcome and never applies twice". The client relies on it (src/client/errors.ts
  // `decisive`: the state machine "deduplicates by request id before anything else, so
  // this is also what any earlier attempt with the same request id came to"), and its
  // settle treats INVALID_ARGUMENT as "nothing is held" (src/client/settle.ts).
  it('a retried Acquire whose first attempt was granted gets the grant, not invalidArgument, after requestIdBytesMax is lowered', () => {
    const log = new Log();
    const session = log.open();
    const requestId = 'r'.repeat(40); // fine under the default requestIdBytesMax (64)
    const first = log.acquire(session, 'L', { requestId });
    expect(first.type).toBe('Acquired');
    // The operator lowers the request id size (dlm rules apply); the retry of the
    // acknowledged-but-lost Acquire lands after it.
    expect(setRules(log, { ...DEFAULT_LOCK_LIMITS, requestIdBytesMax: 16 }).type).toBe('RulesSet');
    const retry = log.acquire(session, 'L', { requestId });
    // The session does hold L with the first attempt's token...
    expect(log.sm.describe('L').holders.map((h) => h.sessionId)).toEqual([session]);
    // ...so the retry must say so (first outcome). Observed: Rejected invalidArgument
    // "requestId is 40 bytes, the limit is 16", which the client reads as "nothing held".
    expect(retry).toMatchObject({ type: 'Acquired', lock: 'L' });
  });

  it('a retried OpenSession is answered with the session it opened, after requestIdBytesMax is lowered', () => {
    const log = new Log();
    const requestId = 'o'.repeat(40);
    const first = log.apply({ type: 'OpenSession', ttlMs: 10_000, clientName: 'c', requestId });
    expect(first.type).toBe('SessionOpened');
    setRules(log, { ...DEFAULT_LOCK_LIMITS, requestIdBytesMax: 16 });
    const retry = log.apply({ type: 'OpenSession', ttlMs: 10_000, clientName: 'c', requestId });
    expect(retry).toEqual(first);
  });
});

describe('review: a replica restored from a snapshot vs one that applied the log', () => {
  // "two replicas at one index produce equal snapshots" and checkInvariants must hold on
  // every replica. carriedOver is not in the snapshot: the live replica keeps the
  // counts at the SetRules index, the restored one recomputes them at the snapshot's.
  it('checkInvariants holds on a replica restored from a snapshot after lowered sessionsMax and expiries with lock-delay', () => {
    const log = new Log();
    const sessions = [1, 2, 3].map(() => log.open());
    for (const s of sessions) {
      expect(log.acquire(s, 'L', { mode: 'shared', lockDelayMs: 1_000 }).type).toBe('Acquired');
    }
    setRules(log, { ...DEFAULT_LOCK_LIMITS, sessionsMax: 1 });
    for (const s of sessions) {
      const refresh = log.sm.session(s)?.lastRefreshIndex;
      expect(
        log.apply({ type: 'ExpireSession', sessionId: s, lastRefreshIndex: asIndex(refresh ?? 0) })
          .type,
      ).toBe('SessionExpired');
    }
    expect(log.sm.describe('L').delays).toHaveLength(3);
    log.sm.checkInvariants(); // holds on the replica that applied the log
    const restored = new LockStateMachine();
    restored.restore(log.sm.snapshot());
    expect(restored.snapshot()).toEqual(log.sm.snapshot());
    // Observed: "L has too many delays" (3 > max(sessionsMax 1, carried 0)).
    expect(() => restored.checkInvariants()).not.toThrow();
  });
});

describe('review: the dedupe window shrinks at once (documented in operations.md, against the README contract)', () => {
  it('a retried Acquire of a grant since released is not granted a second time after dedupeWindowMax is lowered', () => {
    const log = new Log();
    const session = log.open();
    const first = log.acquire(session, 'L', { requestId: 'acq' });
    if (first.type !== 'Acquired') throw new Error('not acquired');
    log.apply({
      type: 'Release',
      lock: 'L',
      sessionId: session,
      token: first.token,
      requestId: 'rel',
    });
    // Without the SetRules the retry is answered grantEnded (FAILED_PRECONDITION).
    setRules(log, { ...DEFAULT_LOCK_LIMITS, dedupeWindowMax: 1 });
    const retry = log.acquire(session, 'L', { requestId: 'acq' });
    // Observed: Acquired with a new token: one request id, two grants.
    expect(retry).toMatchObject({ type: 'Rejected', code: 'grantEnded' });
  });
});

describe('review: upgrading from unreplicated rules, every node with the same lock section', () => {
  // docs/operations.md: "Upgrade all nodes with the same lock section, and expect the
  // upgraded cluster to agree with itself from the first leader's SetRules on."
  it('two upgraded replicas whose version 2 snapshots were taken at different indexes agree after the first SetRules', () => {
    // Every node's file, the same on all of them: a TTL minimum below the default.
    const FILE: LockLimits = { ...DEFAULT_LOCK_LIMITS, sessionTtlMsMin: 200 };
    // The old version: limits from the file (the constructor's rules), version 2 snapshots.
    const old = new LockStateMachine(FILE);
    const v2 = () => {
      const { rules: _, rulesSetIndex: __, ...rest } = old.snapshot();
      return { ...rest, version: 2 as const };
    };
    const log: Parameters<LockStateMachine['apply']>[1][] = [
      { type: 'OpenSession', ttlMs: 5_000, clientName: 'a', requestId: 'a' },
      // Valid under the file (>= 200), acknowledged to its client by the old version.
      { type: 'OpenSession', ttlMs: 500, clientName: 'b', requestId: 'b' },
      {
        type: 'Acquire',
        lock: 'L',
        sessionId: 2 as never,
        mode: 'exclusive',
        waitMs: 0,
        requestId: 'acq-b',
        owner: 'b',
        maxHoldMs: 0,
        lockDelayMs: 0,
      },
    ];
    old.apply(asIndex(1), log[0] as never);
    const snapshotOfA = v2(); // node A's last snapshot before the upgrade: index 1
    old.apply(asIndex(2), log[1] as never);
    old.apply(asIndex(3), log[2] as never);
    const snapshotOfB = v2(); // node B's: index 3
    expect(old.describe('L').holders.map((h) => h.sessionId)).toEqual([2]);

    // Both restart on the new version, which starts each state machine from its node's
    // file as DlmNode does, restore their own snapshot, replay the rest of the committed
    // log, then apply the first leader's SetRules (the same file's rules).
    const a = new LockStateMachine(FILE);
    a.restore(snapshotOfA);
    a.apply(asIndex(2), log[1] as never);
    a.apply(asIndex(3), log[2] as never);
    const b = new LockStateMachine(FILE);
    b.restore(snapshotOfB);
    const setRules = { type: 'SetRules' as const, rules: FILE, onlyIfUnset: true };
    a.apply(asIndex(4), setRules);
    b.apply(asIndex(4), setRules);
    // Observed: A refused session 2 on replay (ttl 500 < default 1000), so on A nobody
    // holds L, on B session 2 does: the replicas differ at index 4 and ever after.
    expect(a.describe('L')).toEqual(b.describe('L'));
    expect(a.snapshot()).toEqual(b.snapshot());
  });
});

describe('review: "Told failed means nothing held" across a SetRules lowering requestIdBytesMax', () => {
  it('the Withdraw of an abandoned waiting Acquire still gives back its wait', () => {
    const log = new Log();
    const holder = log.open();
    const waiter = log.open();
    const held = log.acquire(holder, 'L');
    if (held.type !== 'Acquired') throw new Error('not acquired');
    const requestId = 'w'.repeat(40);
    expect(log.acquire(waiter, 'L', { requestId, waitMs: 60_000 }).type).toBe('Queued');
    const attemptIndex = log.index;
    // The operator lowers requestIdBytesMax; the waiter's call then hits its deadline and
    // the API (src/api/acquire.ts withdraw) proposes a Withdraw with the request's id.
    setRules(log, { ...DEFAULT_LOCK_LIMITS, requestIdBytesMax: 16 });
    const withdrawn = log.apply({
      type: 'Withdraw',
      lock: 'L',
      sessionId: waiter,
      requestId,
      attemptIndex: asIndex(attemptIndex),
    });
    // Observed: Rejected invalidArgument (requestId is 40 bytes): writeWithRetry counts a
    // Rejected result as done, the wait stays, and the release below grants L to a
    // session whose client was told DEADLINE_EXCEEDED.
    log.apply({
      type: 'Release',
      lock: 'L',
      sessionId: holder,
      token: held.token,
      requestId: 'rel',
    });
    expect(withdrawn).toMatchObject({ type: 'Withdrawn', undid: 'wait' });
    expect(log.sm.describe('L').holders).toEqual([]);
  });
});
