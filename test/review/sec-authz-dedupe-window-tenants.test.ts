/**
 * Review of sec-authz (issue 15), item 4 ("so one tenant cannot exhaust the cluster-wide
 * limits"): the dedupe window (dedupeWindowMax) is one cluster-wide resource that the
 * per-identity limits leave shared. A tenant that stays inside its own limits (one
 * session, one lock at a time) evicts another tenant's remembered results with
 * Acquire/Release pairs, so that tenant's retry is no longer recognised: here alice's
 * OpenSession retry (same request id, e.g. after a timeout) is refused by alice's OWN
 * sessionsPerIdentityMax, because bob's traffic made it look like a second session.
 *
 * The window is small here (10) to keep the test short; with the default (100,000) the
 * same takes 50,000 Acquire/Release pairs of bob's, well within a tenant's reach.
 *
 * FAILS on sec-authz as reviewed (88423af).
 */
import { describe, expect, it } from 'vitest';
import type { IdentityQuota, LockCommand } from '../../src/lock/index.ts';
import type { SessionId } from '../../src/util/ids.ts';
import { Log, tokenOf } from '../unit/lock-log.ts';

type AcquireCommand = Extract<LockCommand, { type: 'Acquire' }>;

const QUOTA: IdentityQuota = { sessionsMax: 1, locksHeldMax: 1, waitersMax: 1 };
const WINDOW = 10;

describe("review sec-authz: one tenant's traffic and another's retries", () => {
  it("a tenant within its limits does not make another tenant's OpenSession retry fail", () => {
    const log = new Log({ dedupeWindowMax: WINDOW });
    const openAlice = () =>
      log.apply({
        type: 'OpenSession',
        ttlMs: 10_000,
        clientName: 'alice',
        requestId: 'alice-open-1',
        identity: 'alice',
        quota: QUOTA,
      });
    const first = openAlice();
    expect(first.type).toBe('SessionOpened');

    const bobOpened = log.apply({
      type: 'OpenSession',
      ttlMs: 10_000,
      clientName: 'bob',
      requestId: 'bob-open-1',
      identity: 'bob',
      quota: QUOTA,
    });
    if (bobOpened.type !== 'SessionOpened') throw new Error(JSON.stringify(bobOpened));
    const bob = bobOpened.sessionId as SessionId;
    // Bob never holds more than one lock nor has more than one session.
    for (let k = 0; k < WINDOW; k++) {
      const token = tokenOf(
        log.apply({
          ...(log.acquireCommand(bob, 'b/x') as AcquireCommand),
          identity: 'bob',
          quota: QUOTA,
        }),
      );
      const released = log.apply({
        type: 'Release',
        lock: 'b/x',
        sessionId: bob,
        token: token as never,
        requestId: log.nextRequestId(),
        identity: 'bob',
      });
      expect(released.type).toBe('Released');
      log.sm.checkInvariants();
    }

    // Alice's client retries its OpenSession (its first answer was lost).
    const retried = openAlice();
    // Observed on the branch: Rejected limitReached "sessionsPerIdentityMax (1) sessions
    // are open for identity \"alice\"": her retry was forgotten because of bob's traffic.
    expect(retried).toEqual(first);
  });
});
