/**
 * isOwnQuotaRefusal tells the limitReached refusals an identity caused itself (its
 * per-identity quotas, charged to its refused-writes budget) from the cluster-wide ones
 * other tenants' state causes (not charged; review test sec-budget-cross-tenant). Each
 * refusal here comes from the state machine itself, so a reworded message fails this.
 */
import { describe, expect, it } from 'vitest';
import { isOwnQuotaRefusal, type LockCommand, type LockResult } from '../../src/lock/index.ts';
import { Log } from './lock-log.ts';

const QUOTA = { sessionsMax: 1, locksHeldMax: 2, waitersMax: 1 };

function detailOf(result: LockResult): string {
  if (result.type !== 'Rejected' || result.code !== 'limitReached') {
    throw new Error(`expected limitReached, got ${JSON.stringify(result)}`);
  }
  return result.detail;
}

function openAs(log: Log, identity: string): LockResult {
  const command: LockCommand = {
    type: 'OpenSession',
    ttlMs: 10_000,
    clientName: 'c',
    requestId: log.nextRequestId(),
    identity,
    quota: QUOTA,
  };
  return log.apply(command);
}

function acquireAs(
  log: Log,
  identity: string,
  session: number,
  lock: string,
  waitMs: number,
): LockResult {
  const base = log.acquireCommand(session as never, lock, { waitMs });
  return log.apply({ ...base, identity, quota: QUOTA } as LockCommand);
}

function sessionOf(result: LockResult): number {
  if (result.type !== 'SessionOpened') throw new Error(JSON.stringify(result));
  return result.sessionId;
}

describe('isOwnQuotaRefusal', () => {
  it('is true for each per-identity quota the state machine refuses', () => {
    const log = new Log();
    const x = sessionOf(openAs(log, 'x'));
    expect(isOwnQuotaRefusal(detailOf(openAs(log, 'x')))).toBe(true); // sessionsPerIdentityMax
    const other = sessionOf(openAs(log, 'y'));
    acquireAs(log, 'y', other, 'held-1', 0);
    acquireAs(log, 'y', other, 'held-2', 0);
    expect(acquireAs(log, 'x', x, 'held-1', 10_000).type).toBe('Queued');
    // waitersPerIdentityMax: a second wait of x's.
    expect(isOwnQuotaRefusal(detailOf(acquireAs(log, 'x', x, 'held-2', 10_000)))).toBe(true);
    // locksHeldPerIdentityMax: one held and one awaited already.
    expect(acquireAs(log, 'x', x, 'free-1', 0).type).toBe('Acquired');
    expect(isOwnQuotaRefusal(detailOf(acquireAs(log, 'x', x, 'free-2', 0)))).toBe(true);
  });

  it('is false for the cluster-wide limits', () => {
    const sessions = new Log({ sessionsMax: 1 });
    sessions.open();
    expect(
      isOwnQuotaRefusal(
        detailOf(
          sessions.apply({
            type: 'OpenSession',
            ttlMs: 10_000,
            clientName: 'c',
            requestId: sessions.nextRequestId(),
          }),
        ),
      ),
    ).toBe(false);
    const locks = new Log({ locksMax: 1, waitersPerLockMax: 1 });
    const a = locks.open();
    const b = locks.open();
    const c = locks.open();
    locks.acquire(a, 'one');
    expect(isOwnQuotaRefusal(detailOf(locks.acquire(b, 'two')))).toBe(false); // locksMax
    locks.acquire(b, 'one', { waitMs: 10_000 });
    expect(isOwnQuotaRefusal(detailOf(locks.acquire(c, 'one', { waitMs: 10_000 })))).toBe(false); // waitersPerLockMax
  });
});
