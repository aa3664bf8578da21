/**
 * LockStateMachine.ownerRefusal (issue 15): what the API may refuse as another
 * identity's session without writing an entry. It must never say what the log would
 * not: a session this node has not applied yet is the log's to judge.
 */
import { describe, expect, it } from 'vitest';
import type { LockCommand } from '../../src/lock/index.ts';
import { asSession, asToken, Log } from './lock-log.ts';

type AcquireCommand = Extract<LockCommand, { type: 'Acquire' }>;

function openAs(log: Log, identity: string) {
  const result = log.apply({
    type: 'OpenSession',
    ttlMs: 10_000,
    clientName: 'c',
    requestId: log.nextRequestId(),
    identity,
  });
  if (result.type !== 'SessionOpened') throw new Error(JSON.stringify(result));
  return result.sessionId;
}

describe('ownerRefusal', () => {
  it('refuses every command on another identity’s session with the refusal the entry gets', () => {
    const log = new Log();
    const alice = openAs(log, 'alice');
    const commands: LockCommand[] = [
      { type: 'KeepAlive', sessionIds: [alice], identity: 'bob' },
      { type: 'CloseSession', sessionId: alice, requestId: 'r1', identity: 'bob' },
      {
        type: 'Release',
        lock: 'x',
        sessionId: alice,
        token: asToken(1),
        requestId: 'r2',
        identity: 'bob',
      },
      { ...(log.acquireCommand(alice, 'x') as AcquireCommand), identity: 'bob' },
      // An anonymous command on an owned session, as after an auth section was removed.
      { type: 'KeepAlive', sessionIds: [alice] },
    ];
    for (const command of commands) {
      const early = log.sm.ownerRefusal(command);
      expect(early).toMatchObject({ type: 'Rejected', code: 'notSessionOwner' });
      expect(log.apply(command)).toEqual(early);
    }
    expect(log.sm.ownerRefusal({ type: 'KeepAlive', sessionIds: [alice], identity: 'alice' })).toBe(
      null,
    );
  });

  it('leaves to the log a session id this node has not applied yet (a lagging follower)', () => {
    const follower = new Log();
    const leader = new Log();
    for (const log of [follower, leader]) openAs(log, 'alice');
    // The leader has applied a session of carol's at index 2; the follower has not.
    const carol = openAs(leader, 'carol');
    const command: LockCommand = { type: 'KeepAlive', sessionIds: [carol], identity: 'bob' };
    expect(follower.sm.ownerRefusal(command)).toBe(null);
    expect(leader.sm.ownerRefusal(command)).toMatchObject({ code: 'notSessionOwner' });
  });

  it('names the session the entry would name: it stops at an id it cannot judge yet', () => {
    const log = new Log();
    const alice = openAs(log, 'alice');
    const later = asSession(log.index + 5);
    // bob's batch names a session that may yet be opened before alice's: which of the
    // two the entry names depends on what applies first, so only the log can tell.
    const batch: LockCommand = { type: 'KeepAlive', sessionIds: [later, alice], identity: 'bob' };
    expect(log.sm.ownerRefusal(batch)).toBe(null);
    while (log.index < later - 1) openAs(log, 'bob');
    expect(openAs(log, 'carol')).toBe(later);
    expect(log.apply(batch)).toMatchObject({
      code: 'notSessionOwner',
      detail: expect.stringContaining(`session ${later} `),
    });
    // An id at or below the applied index that no session has will never be one.
    const closed = openAs(log, 'bob');
    log.apply({ type: 'CloseSession', sessionId: closed, requestId: 'c1', identity: 'bob' });
    const past: LockCommand = { type: 'KeepAlive', sessionIds: [closed, alice], identity: 'bob' };
    const early = log.sm.ownerRefusal(past);
    expect(early).toMatchObject({
      code: 'notSessionOwner',
      detail: expect.stringContaining(`session ${alice} `),
    });
    expect(log.apply(past)).toEqual(early);
  });

  it('answers nothing for a command the state machine refuses on its shape or ceilings first', () => {
    const log = new Log();
    const alice = openAs(log, 'alice');
    const tooLong = 'r'.repeat(100_000);
    const command: LockCommand = {
      type: 'CloseSession',
      sessionId: alice,
      requestId: tooLong,
      identity: 'bob',
    };
    expect(log.sm.ownerRefusal(command)).toBe(null);
    expect(log.apply(command)).toMatchObject({ code: 'invalidArgument' });
  });
});
