/**
 * Found by the second review of the multi-lock branch (a random-command fuzz, seed 304),
 * and on main for single locks: a request whose attempt was withdrawn while another
 * request of the session kept the grant alive is, on retry, told "Acquired, token T" from
 * memory. The grant must count that request again among those told of it; before, the
 * other request's Withdraw then freed the grant under the retried caller, and another
 * session was granted the lock while that caller was told it holds it.
 */
import { describe, expect, it } from 'vitest';
import type { LockCommand, LockResult } from '../../src/lock/index.ts';
import type { LogIndex } from '../../src/util/ids.ts';
import { Log, tokenOf } from '../unit/lock-log.ts';

function withdraw(log: Log, command: LockCommand, attemptIndex: number): LockResult {
  if (command.type !== 'Acquire') throw new Error('not an Acquire');
  const result = log.apply({
    type: 'Withdraw',
    lock: command.lock,
    sessionId: command.sessionId,
    requestId: command.requestId,
    attemptIndex: attemptIndex as LogIndex,
  });
  log.sm.checkInvariants();
  return result;
}

describe('a retry told of a grant after its request was withdrawn', () => {
  it('keeps the grant when the other request told of it is withdrawn', () => {
    const log = new Log();
    const a = log.open();
    const b = log.open();
    const first = log.acquireCommand(a, 'x', { requestId: 'first' });
    const token = tokenOf(log.apply(first));
    const firstAttempt = log.index;
    const again = log.acquireCommand(a, 'x', { requestId: 'again' });
    expect(log.apply(again)).toMatchObject({ type: 'Acquired', token });
    const againAttempt = log.index;
    expect(withdraw(log, first, firstAttempt)).toMatchObject({ undid: 'nothing' });
    expect(log.apply(first)).toMatchObject({ type: 'Acquired', lock: 'x', token });
    expect(withdraw(log, again, againAttempt)).toMatchObject({ undid: 'nothing' });
    expect(log.acquire(b, 'x')).toMatchObject({ type: 'NotAcquired' });
  });
});
