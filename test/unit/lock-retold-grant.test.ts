/**
 * Found by the second review of the multi-lock branch (a random-command fuzz, seed 304),
 * and on main for single locks: a request whose attempt was withdrawn while another
 * request of the session kept the grant alive is, on retry, told "Acquired, token T" from
 * memory. The grant must count that request again among those told of it; before, the
 * other request's Withdraw then freed the grant under the retried caller, and another
 * session was granted the lock while that caller was told it holds it.
 *
 * The fix shipped before behaviour versions existed, so it is the base version's rule
 * (behaviour.ts).
 */
import { describe, expect, it } from 'vitest';
import {
  BEHAVIOUR_BASE,
  BEHAVIOUR_VERSIONED,
  type LockCommand,
  type LockResult,
} from '../../src/lock/index.ts';
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

/** Seed 304's steps at `version`; what the last Withdraw undid, and b's try afterwards. */
function retoldThenWithdrawn(version: number): { undid: LockResult; after: LockResult } {
  const log = new Log();
  expect(log.apply({ type: 'SetBehaviour', version })).toMatchObject({
    type: version === BEHAVIOUR_BASE ? 'Stale' : 'BehaviourSet',
  });
  expect(log.sm.behaviour).toBe(version);
  const a = log.open();
  const b = log.open();
  const first = log.acquireCommand(a, 'x', { requestId: 'first' });
  const token = tokenOf(log.apply(first));
  const firstAttempt = log.index;
  const again = log.acquireCommand(a, 'x', { requestId: 'again' });
  expect(log.apply(again)).toMatchObject({ type: 'Acquired', token });
  const againAttempt = log.index;
  expect(withdraw(log, first, firstAttempt)).toMatchObject({ undid: 'nothing' });
  // Both rules tell the retry only what is held now: the grant, and its holders today.
  expect(log.apply(first)).toMatchObject({
    type: 'Acquired',
    lock: 'x',
    token,
    holders: [{ sessionId: a, token }],
  });
  const undid = withdraw(log, again, againAttempt);
  return { undid, after: log.acquire(b, 'x') };
}

describe('a retry told of a grant after its request was withdrawn', () => {
  // The release before behaviour versions already applied 0dbc683's rule, so every
  // version does (behaviour.ts; review test review-behaviour-base-rule).
  for (const version of [BEHAVIOUR_BASE, BEHAVIOUR_VERSIONED]) {
    it(`keeps the grant when the other request told of it is withdrawn (behaviour ${version})`, () => {
      const { undid, after } = retoldThenWithdrawn(version);
      expect(undid).toMatchObject({ undid: 'nothing' });
      expect(after).toMatchObject({ type: 'NotAcquired' });
    });
  }
});
