/**
 * The lock state machine tells clients only true things: regression tests for the
 * issues where it did not (a mode it did not grant, a token shared by two grants, a
 * lock-delay cut short, a remembered grant handed out after it ended), and for the
 * Withdraw and Promote commands that came with the fixes.
 */
import { describe, expect, it } from 'vitest';
import { expectRejected, Log, tokenOf } from './lock-log.ts';

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
