/**
 * Review: a wait whose remembered Queued left the dedupe window (other writes pushed it
 * out while it waited). Its abandoned caller's Withdraw is then Stale, and a retry of the
 * very request that waits is refused `alreadyWaiting` (FAILED_PRECONDITION, "retry that
 * request (same request id)"), which the TypeScript client's settle takes as decisive:
 * 'notHeld'. The wait stays, is granted later, and the lock stays held by a request whose
 * caller was told it failed and whose client finished settling.
 */
import { describe, expect, it } from 'vitest';
import type { LockCommand } from '../../src/lock/index.ts';
import { asIndex, Log, tokenOf } from './lock-log.ts';

describe('review: a wait that outlived its remembered result', () => {
  it('is withdrawn by its abandoned attempt, and a retry of it is not refused as another request', () => {
    const log = new Log({ dedupeWindowMax: 4 });
    const [holder, waiter, other] = [log.open(), log.open(), log.open()];
    const held = tokenOf(log.acquire(holder, 'L'));
    const wait = log.acquireCommand(waiter, 'L', { requestId: 'w', waitMs: 60_000 });
    expect(log.apply(wait)).toEqual({ type: 'Queued', lock: 'L', position: 0 });
    const attempt = log.index;
    // A busy cluster: other sessions' writes fill the window while the wait lasts.
    for (let k = 0; k < 4; k++) tokenOf(log.acquire(other, `M${k}`));
    // 1. The client's deadline passes; its node sees the call cancelled and withdraws.
    const withdrawn = log.apply({
      type: 'Withdraw',
      lock: 'L',
      sessionId: waiter,
      requestId: 'w',
      attemptIndex: asIndex(attempt),
    });
    // 2. The client settles: it re-issues request 'w' with wait_ms 0.
    const settleRetry = log.apply({ ...wait, waitMs: 0 } as LockCommand);
    // 3. The holder lets go.
    log.release(holder, 'L', held);
    // Whatever the Withdraw and the retry said, the abandoned wait must not end up
    // holding L: the caller was told its Acquire failed, and the settle (told
    // FAILED_PRECONDITION alreadyWaiting, which it takes as "nothing held") has ended.
    expect({ withdrawn, settleRetry: settleRetry.type, holders: log.holders('L') }).toEqual({
      withdrawn: expect.objectContaining({ type: 'Withdrawn' }),
      settleRetry: expect.not.stringMatching(/^Rejected$/),
      holders: [],
    });
  });
});
