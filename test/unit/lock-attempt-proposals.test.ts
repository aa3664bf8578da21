/**
 * From behaviour version 3 an open Acquire attempt records the proposal that carried it
 * (BEHAVIOUR_ATTEMPT_PROPOSALS), so that a node which caught up by a snapshot can still
 * find, and withdraw, a write its caller gave up on (runtime seed 12158).
 */
import { describe, expect, it } from 'vitest';
import {
  BEHAVIOUR_ATTEMPT_PROPOSALS,
  BEHAVIOUR_VERSIONED,
  type LockCommand,
  LockStateMachine,
} from '../../src/lock/index.ts';
import { asIndex, Log } from './lock-log.ts';

/** A log at `version`, where each apply carries a proposal id. */
function logAt(version: number): { log: Log; apply: (command: LockCommand, id: string) => void } {
  const log = new Log();
  if (version > 1) log.apply({ type: 'SetBehaviour', version });
  const apply = (command: LockCommand, id: string): void => {
    log.index += 1;
    log.sm.apply(asIndex(log.index), command, id);
  };
  return { log, apply };
}

describe('open attempts and their proposals', () => {
  it('finds each open attempt by its proposal, and none once withdrawn', () => {
    const { log, apply } = logAt(BEHAVIOUR_ATTEMPT_PROPOSALS);
    const holder = log.open();
    const waiter = log.open();
    log.acquire(holder, 'x');
    const waits = log.acquireCommand(waiter, 'x', { waitMs: 5_000, requestId: 'w' });
    apply(waits, 'n1/boot/1');
    const first = log.index;
    // A retry of the same request from another node is an attempt of its own.
    apply(waits, 'n2/boot/7');
    const retry = log.index;
    expect(log.sm.openAttemptOf(waits, 'n1/boot/1')).toEqual({
      index: first,
      result: { type: 'Queued', lock: 'x', position: 0 },
    });
    expect(log.sm.openAttemptOf(waits, 'n2/boot/7')?.index).toBe(retry);
    expect(log.sm.openAttemptOf(waits, 'n3/boot/1')).toBeNull();
    // Another request of the session is another key.
    const other = log.acquireCommand(waiter, 'x', { waitMs: 5_000, requestId: 'v' });
    expect(log.sm.openAttemptOf(other, 'n1/boot/1')).toBeNull();

    log.apply({
      type: 'Withdraw',
      lock: 'x',
      sessionId: waiter,
      requestId: 'w',
      attemptIndex: asIndex(first),
    });
    expect(log.sm.openAttemptOf(waits, 'n1/boot/1')).toBeNull();
    expect(log.sm.openAttemptOf(waits, 'n2/boot/7')?.index).toBe(retry);
    log.sm.checkInvariants();
  });

  it('follows the request to its grant, and survives a snapshot', () => {
    const { log, apply } = logAt(BEHAVIOUR_ATTEMPT_PROPOSALS);
    const holder = log.open();
    const waiter = log.open();
    const held = log.acquire(holder, 'x');
    const waits = log.acquireCommand(waiter, 'x', { waitMs: 5_000, requestId: 'w' });
    apply(waits, 'n1/boot/1');
    const attempt = log.index;
    if (held.type !== 'Acquired') throw new Error('not acquired');
    log.apply({ type: 'Release', lock: 'x', sessionId: holder, token: held.token, requestId: 'r' });

    const restored = new LockStateMachine();
    restored.restore(log.sm.snapshot());
    const found = restored.openAttemptOf(waits, 'n1/boot/1');
    expect(found?.index).toBe(attempt);
    expect(found?.result.type).toBe('Acquired');
    restored.checkInvariants();
  });

  it('records nothing below the version, so replicas of older binaries hold the same state', () => {
    const { log, apply } = logAt(BEHAVIOUR_VERSIONED);
    const session = log.open();
    const command = log.acquireCommand(session, 'x', { requestId: 'a' });
    apply(command, 'n1/boot/1');
    expect(log.sm.openAttemptOf(command, 'n1/boot/1')).toBeNull();
    const [, remembered] = log.sm.snapshot().dedupe.at(-1) ?? [];
    expect(remembered).toEqual({ result: expect.anything(), openAttempts: [log.index] });
  });

  it('keeps only the proposals of attempts still open when attempts are dropped', () => {
    const { log, apply } = logAt(BEHAVIOUR_ATTEMPT_PROPOSALS);
    const session = log.open();
    const command = log.acquireCommand(session, 'x', { requestId: 'a' });
    for (let i = 0; i < 40; i++) apply(command, `n1/boot/${i}`);
    expect(log.sm.openAttemptOf(command, 'n1/boot/0')).toBeNull();
    expect(log.sm.openAttemptOf(command, 'n1/boot/39')?.index).toBe(log.index);
    const [, remembered] = log.sm.snapshot().dedupe.at(-1) ?? [];
    expect(remembered?.attemptProposals?.length).toBe(remembered?.openAttempts.length);
    log.sm.checkInvariants();
  });
});
