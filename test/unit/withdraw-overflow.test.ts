/**
 * Review: an Acquire whose attempts overflow openAttempts (16). The oldest attempt's
 * caller may have been told Acquired; the state machine promises its Withdraw is void
 * and the grant stays. But withdrawing the 16 attempts it kept gives the grant back,
 * taking it from the caller of the attempt that was dropped.
 */
import { describe, expect, it } from 'vitest';
import type { LockCommand } from '../../src/lock/index.ts';
import { asIndex, Log, tokenOf } from './lock-log.ts';

describe('review: openAttempts overflow', () => {
  it('a grant told to the dropped oldest attempt is not given back by the withdrawals of the other 16', () => {
    const log = new Log();
    const a = log.open();
    const ask = log.acquireCommand(a, 'L', { requestId: 'r' });
    // Attempt 1 applies first: its caller is told Acquired and keeps the grant.
    const told = tokenOf(log.apply(ask));
    // 16 more attempts of the same request land (retries that timed out on the client).
    const attempts: number[] = [];
    for (let k = 0; k < 16; k++) {
      expect(tokenOf(log.apply(ask))).toBe(told);
      attempts.push(log.index);
    }
    // Each of those calls was cancelled, so its node withdraws it.
    for (const attemptIndex of attempts) {
      const withdraw: LockCommand = {
        type: 'Withdraw',
        lock: 'L',
        sessionId: a,
        requestId: 'r',
        attemptIndex: asIndex(attemptIndex),
      };
      log.apply(withdraw);
    }
    // The first caller was never withdrawn: the grant it was told of must still be there.
    expect(log.sm.validateFence('L', told as never).valid).toBe(true);
    expect(log.holders('L')).toEqual([[a, 'exclusive', told]]);
    // (As it is, another session is now told it holds L exclusive beside that caller.)
    const b = log.open();
    expect(log.acquire(b, 'L').type).toBe('NotAcquired');
  });
});
