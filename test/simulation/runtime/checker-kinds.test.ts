import { describe, expect, it } from 'vitest';
import {
  BEHAVIOUR_SEMAPHORES_ELECTIONS,
  DEFAULT_LOCK_LIMITS,
  type LockCommand,
} from '../../../src/lock/index.ts';
import { encodeEntry } from '../../../src/node/entry-codec.ts';
import type { Entry } from '../../../src/raft/types.ts';
import {
  type Answer,
  RuntimeChecker,
  type Told,
} from '../../../src/tools/simulate/runtime/checker.ts';
import type { FencingToken, LogIndex, SessionId, Term } from '../../../src/util/ids.ts';

/**
 * The runtime checker's judgement of semaphore and election answers and beliefs, on a
 * log written by hand: permits told acquired that were not granted, permits believed
 * held past the limit, a Proclaim or a Leader answer the log does not bear out, a stale
 * Leader read, and two clients believing they lead at once must each be flagged. The
 * runs in runtime.test.ts exercise the same code against real nodes; this shows it has
 * teeth.
 */
const S1 = 3 as SessionId;
const S2 = 4 as SessionId;
const S3 = 5 as SessionId;

const COMMANDS: readonly LockCommand[] = [
  { type: 'SetRules', rules: DEFAULT_LOCK_LIMITS, onlyIfUnset: true },
  { type: 'SetBehaviour', version: BEHAVIOUR_SEMAPHORES_ELECTIONS },
  { type: 'OpenSession', ttlMs: 10_000, clientName: 'c1', requestId: 'o1' },
  { type: 'OpenSession', ttlMs: 10_000, clientName: 'c2', requestId: 'o2' },
  { type: 'OpenSession', ttlMs: 10_000, clientName: 'c3', requestId: 'o3' },
  // 6, 7: sessions 3 and 4 take a permit each of sem (limit 2); 8: session 5 is refused.
  permits(S1, 'p1'),
  permits(S2, 'p2'),
  permits(S3, 'p3'),
  // 9: session 3 leads e (token 9); 10: session 4 waits to lead; 11: 3 proclaims "v2".
  campaign(S1, 'c1', 'v1', 0),
  campaign(S2, 'c2', 'w1', 5_000),
  {
    type: 'Proclaim',
    lock: 'e',
    sessionId: S1,
    token: 9 as FencingToken,
    value: 'v2',
    requestId: 'pr1',
  },
  // 12: session 3 resigns, and session 4 leads from this entry (token 12).
  { type: 'Release', lock: 'e', sessionId: S1, token: 9 as FencingToken, requestId: 'rs1' },
  // 13: session 3 proclaims with its old term's token: refused.
  {
    type: 'Proclaim',
    lock: 'e',
    sessionId: S1,
    token: 9 as FencingToken,
    value: 'v3',
    requestId: 'pr2',
  },
];

function permits(sessionId: SessionId, requestId: string): LockCommand {
  return {
    type: 'AcquirePermits',
    lock: 'sem',
    permits: 1,
    limit: 2,
    sessionId,
    waitMs: 0,
    requestId,
    owner: 'c',
    maxHoldMs: 0,
    lockDelayMs: 0,
  };
}

function campaign(sessionId: SessionId, requestId: string, value: string, waitMs: number) {
  return {
    type: 'Campaign',
    lock: 'e',
    value,
    sessionId,
    waitMs,
    requestId,
    owner: 'c',
    maxHoldMs: 0,
    lockDelayMs: 0,
  } as const satisfies LockCommand;
}

function checkerWithLog(): RuntimeChecker {
  const checker = new RuntimeChecker(0, () => 0);
  checker.releaseSent(S1, 'rs1');
  const entries: Entry[] = COMMANDS.map((command, i) => ({
    kind: 'normal',
    term: 1 as Term,
    index: (i + 1) as LogIndex,
    data: encodeEntry({ proposalId: `p${i + 1}`, command }),
  }));
  checker.committed('n1', entries);
  expect(checker.violation).toBeNull();
  return checker;
}

function answer(index: number, told: Told): Answer {
  return { client: 'c1', node: 'n1', atMs: 1, index, told };
}

function verdict(told: Answer | ((checker: RuntimeChecker) => void)): string | null {
  const checker = checkerWithLog();
  try {
    if (typeof told === 'function') told(checker);
    else checker.told(told);
  } catch {
    // fail() throws as well as recording the violation.
  }
  return checker.violation;
}

function permitsTold(sessionId: SessionId, requestId: string, acquired: boolean, token: number) {
  return {
    kind: 'AcquirePermits',
    sessionId,
    requestId,
    lock: 'sem',
    permits: 1,
    limit: 2,
    acquired,
    token,
  } as const satisfies Told;
}

function leaderTold(leader: { sessionId: number; token: number; value: string } | null) {
  return { kind: 'Leader', lock: 'e', leader, ackedBeforeIndex: 0 } as const satisfies Told;
}

function proclaimTold(index: number, requestId: string, token: number, value: string): Answer {
  return answer(index, {
    kind: 'Proclaim',
    sessionId: S1,
    requestId,
    lock: 'e',
    token,
    value,
    leader: { sessionId: S1, token, value },
  });
}

describe('the runtime checker on semaphore answers and beliefs', () => {
  it('accepts permits told acquired where they were granted', () => {
    expect(verdict(answer(6, permitsTold(S1, 'p1', true, 6)))).toBeNull();
    expect(verdict(answer(8, permitsTold(S3, 'p3', false, 0)))).toBeNull();
  });

  it('flags permits told acquired that the semaphore, full, refused', () => {
    expect(verdict(answer(8, permitsTold(S3, 'p3', true, 8)))).toMatch(/Answer: .*p3/);
  });

  it('flags permits told not acquired that were granted', () => {
    expect(verdict(answer(7, permitsTold(S2, 'p2', false, 0)))).toMatch(/Answer: /);
  });

  it('flags three clients believing they hold a permit each of a semaphore of 2', () => {
    const believe = (checker: RuntimeChecker): void => {
      checker.permitsBeliefStarted('c1', S1, 'sem', 6, 1, 2, 1);
      checker.permitsBeliefStarted('c2', S2, 'sem', 7, 1, 2, 2);
      checker.permitsBeliefStarted('c3', S3, 'sem', 8, 1, 2, 3);
    };
    expect(verdict(believe)).toMatch(/^Semaphore: c3 .* others believe they hold 2/);
  });

  it('accepts permits believed in turn within the limit', () => {
    const believe = (checker: RuntimeChecker): void => {
      checker.permitsBeliefStarted('c1', S1, 'sem', 6, 1, 2, 1);
      checker.permitsBeliefStarted('c2', S2, 'sem', 7, 1, 2, 2);
      checker.beliefEnded('c1', 'sem', 3);
      checker.permitsBeliefStarted('c3', S3, 'sem', 8, 1, 2, 3);
    };
    expect(verdict(believe)).toBeNull();
  });
});

describe('the runtime checker on election answers and beliefs', () => {
  it('accepts a Proclaim answered where the leader proclaimed', () => {
    expect(verdict(proclaimTold(11, 'pr1', 9, 'v2'))).toBeNull();
  });

  it('flags a Proclaim told accepted that the log refused (no longer the leader)', () => {
    expect(verdict(proclaimTold(13, 'pr2', 9, 'v3'))).toMatch(/Answer: .*pr2/);
  });

  it('accepts Leader answers naming the leader and its value at the index', () => {
    expect(verdict(answer(9, leaderTold({ sessionId: S1, token: 9, value: 'v1' })))).toBeNull();
    expect(verdict(answer(11, leaderTold({ sessionId: S1, token: 9, value: 'v2' })))).toBeNull();
    expect(verdict(answer(12, leaderTold({ sessionId: S2, token: 12, value: 'w1' })))).toBeNull();
    expect(verdict(answer(8, leaderTold(null)))).toBeNull();
  });

  it('flags a Leader answer with the value before the proclaim', () => {
    const told = answer(11, leaderTold({ sessionId: S1, token: 9, value: 'v1' }));
    expect(verdict(told)).toMatch(/the leader at 11 was 3\/9\/"v2"/);
  });

  it('flags a Leader answer naming the leader who resigned', () => {
    const told = answer(12, leaderTold({ sessionId: S1, token: 9, value: 'v2' }));
    expect(verdict(told)).toMatch(/the leader at 12 was 4\/12/);
  });

  it('flags a Leader answer of no leader while one led', () => {
    expect(verdict(answer(10, leaderTold(null)))).toMatch(/the leader at 10 was 3\/9/);
  });

  it('flags a stale Leader read', () => {
    const told = answer(11, {
      ...leaderTold({ sessionId: S1, token: 9, value: 'v2' }),
      ackedBeforeIndex: 12,
    });
    expect(verdict(told)).toMatch(/the read is stale/);
  });

  it('flags a candidate told elected while it still waited', () => {
    const told = answer(10, {
      kind: 'Campaign',
      sessionId: S2,
      requestId: 'c2',
      lock: 'e',
      value: 'w1',
      acquired: true,
      token: 10,
    });
    expect(verdict(told)).toMatch(/did not hold e there/);
  });

  it('flags two clients believing they lead one election at once', () => {
    const believe = (checker: RuntimeChecker): void => {
      checker.leadBeliefStarted('c1', S1, 'e', 9, 1);
      checker.leadBeliefStarted('c2', S2, 'e', 12, 2);
    };
    expect(verdict(believe)).toMatch(/^Election: c2 was told at 2 ms it leads e/);
  });

  it('accepts a leader believed after the last one stopped', () => {
    const believe = (checker: RuntimeChecker): void => {
      checker.leadBeliefStarted('c1', S1, 'e', 9, 1);
      checker.beliefEnded('c1', 'e', 2);
      checker.leadBeliefStarted('c2', S2, 'e', 12, 3);
    };
    expect(verdict(believe)).toBeNull();
  });
});
