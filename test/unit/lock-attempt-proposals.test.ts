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
import { asIndex, asToken, Log } from './lock-log.ts';

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
    const queued = { type: 'Queued', lock: 'x', position: 0 };
    expect(log.sm.attemptsOf(waits, 'n1/boot/1')).toEqual({ indexes: [first], now: queued });
    expect(log.sm.attemptsOf(waits, 'n2/boot/7')?.indexes).toEqual([retry]);
    expect(log.sm.attemptsOf(waits, 'n3/boot/1')).toBeNull();
    // Another request of the session is another key.
    const other = log.acquireCommand(waiter, 'x', { waitMs: 5_000, requestId: 'v' });
    expect(log.sm.attemptsOf(other, 'n1/boot/1')).toBeNull();

    const withdraw = { type: 'Withdraw', lock: 'x', sessionId: waiter, requestId: 'w' } as const;
    log.apply({ ...withdraw, attemptIndex: asIndex(first) });
    expect(log.sm.attemptsOf(waits, 'n1/boot/1')).toBeNull();
    expect(log.sm.attemptsOf(waits, 'n2/boot/7')?.indexes).toEqual([retry]);
    log.sm.checkInvariants();
  });

  it('tells what is true now: the grant the wait became, after a snapshot; nothing once it ended', () => {
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
    const found = restored.attemptsOf(waits, 'n1/boot/1');
    expect(found?.indexes).toEqual([attempt]);
    expect(found?.now).toMatchObject({
      type: 'Acquired',
      token: log.index,
      holders: [{ sessionId: waiter, token: log.index }],
    });
    restored.checkInvariants();

    log.apply({
      type: 'Release',
      lock: 'x',
      sessionId: waiter,
      token: asToken(log.index),
      requestId: 's',
    });
    expect(log.sm.attemptsOf(waits, 'n1/boot/1')).toEqual({ indexes: [attempt], now: null });
  });

  it('finds a wait whose remembered result left the window by the proposal that queued it', () => {
    const log = new Log({ dedupeWindowMax: 4 });
    log.apply({ type: 'SetBehaviour', version: BEHAVIOUR_ATTEMPT_PROPOSALS });
    const holder = log.open();
    const waiter = log.open();
    log.acquire(holder, 'x');
    const waits = log.acquireCommand(waiter, 'x', { waitMs: 5_000, requestId: 'w' });
    log.index += 1;
    log.sm.apply(asIndex(log.index), waits, 'n1/boot/1');
    const attempt = log.index;
    for (let i = 0; i < 6; i++) log.open();
    expect(log.sm.snapshot().dedupe.some(([key]) => key.endsWith('/w'))).toBe(false);
    const found = log.sm.attemptsOf(waits, 'n1/boot/1');
    expect(found).toEqual({ indexes: [attempt], now: { type: 'Queued', lock: 'x', position: 0 } });
    expect(log.sm.attemptsOf(waits, 'n2/boot/1')).toBeNull();
    // Its Withdraw (by that index) gives the wait back.
    const withdrawn = log.apply({
      type: 'Withdraw',
      lock: 'x',
      sessionId: waiter,
      requestId: 'w',
      attemptIndex: asIndex(attempt),
    });
    expect(withdrawn).toEqual({ type: 'Withdrawn', lock: 'x', undid: 'wait' });
  });

  it('records nothing below the version, so replicas of older binaries hold the same state', () => {
    const { log, apply } = logAt(BEHAVIOUR_VERSIONED);
    const holder = log.open();
    const session = log.open();
    log.acquire(holder, 'x');
    const command = log.acquireCommand(session, 'x', { requestId: 'a', waitMs: 5_000 });
    apply(command, 'n1/boot/1');
    expect(log.sm.attemptsOf(command, 'n1/boot/1')).toBeNull();
    const snapshot = log.sm.snapshot();
    const [, remembered] = snapshot.dedupe.at(-1) ?? [];
    expect(remembered?.openAttempts).toEqual([log.index]);
    expect(remembered?.attemptProposals).toBeUndefined();
    expect(remembered?.attemptsDropped).toBeUndefined();
    expect(snapshot.locks[0]?.waiters[0]).not.toHaveProperty('proposalId');
  });

  it('keeps only the proposals of attempts still open when attempts are dropped', () => {
    const { log, apply } = logAt(BEHAVIOUR_ATTEMPT_PROPOSALS);
    const session = log.open();
    const command = log.acquireCommand(session, 'x', { requestId: 'a' });
    for (let i = 0; i < 40; i++) apply(command, `n1/boot/${i}`);
    expect(log.sm.attemptsOf(command, 'n1/boot/0')).toBeNull();
    expect(log.sm.attemptsOf(command, 'n1/boot/39')?.indexes).toEqual([log.index]);
    const [, remembered] = log.sm.snapshot().dedupe.at(-1) ?? [];
    expect(remembered?.attemptProposals?.length).toBe(remembered?.openAttempts.length);
    log.sm.checkInvariants();
  });
});
