import { describe, expect, it } from 'vitest';
import {
  BEHAVIOUR_MULTI_LOCK,
  DEFAULT_LOCK_LIMITS,
  type LockCommand,
} from '../../../src/lock/index.ts';
import { encodeEntry } from '../../../src/node/entry-codec.ts';
import type { Entry } from '../../../src/raft/types.ts';
import { type Answer, RuntimeChecker } from '../../../src/tools/simulate/runtime/checker.ts';
import type { LogIndex, SessionId, Term } from '../../../src/util/ids.ts';

/**
 * The runtime checker's judgement of AcquireAll answers, on a log written by hand: it
 * must flag a set told acquired while one of its locks was still another session's, and
 * a set told not acquired that its own request had in fact been granted. The runs in
 * runtime.test.ts exercise the same code against real nodes; this shows it has teeth.
 */
const S1 = 3 as SessionId;
const S2 = 4 as SessionId;

const COMMANDS: readonly LockCommand[] = [
  { type: 'SetRules', rules: DEFAULT_LOCK_LIMITS, onlyIfUnset: true },
  { type: 'SetBehaviour', version: BEHAVIOUR_MULTI_LOCK },
  { type: 'OpenSession', ttlMs: 10_000, clientName: 'c1', requestId: 'o1' },
  { type: 'OpenSession', ttlMs: 10_000, clientName: 'c2', requestId: 'o2' },
  // 5: session 4 takes b; 6: session 3 asks for a and b at once and waits.
  acquire(S2, 'b', 'r-b'),
  {
    type: 'AcquireAll',
    locks: [
      { lock: 'a', mode: 'exclusive' },
      { lock: 'b', mode: 'exclusive' },
    ],
    sessionId: S1,
    waitMs: 5_000,
    requestId: 'r-set',
    owner: 'c1',
    maxHoldMs: 0,
    lockDelayMs: 0,
  },
  // 7: b is released, and the set is granted in the same entry, with token 7.
  { type: 'Release', lock: 'b', sessionId: S2, token: 5 as never, requestId: 'rel-b' },
  // 8: another request of session 3 for the same set is told of the set it holds.
  {
    type: 'AcquireAll',
    locks: [
      { lock: 'b', mode: 'exclusive' },
      { lock: 'a', mode: 'exclusive' },
    ],
    sessionId: S1,
    waitMs: 0,
    requestId: 'r-set-again',
    owner: 'c1',
    maxHoldMs: 0,
    lockDelayMs: 0,
  },
];

function acquire(sessionId: SessionId, lock: string, requestId: string): LockCommand {
  return {
    type: 'Acquire',
    lock,
    sessionId,
    mode: 'exclusive',
    waitMs: 0,
    requestId,
    owner: 'c2',
    maxHoldMs: 0,
    lockDelayMs: 0,
  };
}

function checkerWithLog(): RuntimeChecker {
  const checker = new RuntimeChecker(0, () => 0);
  checker.releaseSent(S2, 'rel-b');
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

function setAnswer(index: number, acquired: boolean, token: number, requestId = 'r-set'): Answer {
  return {
    client: 'c1',
    node: 'n1',
    atMs: 1,
    index,
    told: {
      kind: 'AcquireAll',
      sessionId: S1,
      requestId,
      locks: [
        { lock: 'a', mode: 'exclusive' },
        { lock: 'b', mode: 'exclusive' },
      ],
      acquired,
      token,
    },
  };
}

function verdict(answer: Answer): string | null {
  const checker = checkerWithLog();
  try {
    checker.told(answer);
  } catch {
    // fail() throws as well as recording the violation.
  }
  return checker.violation;
}

describe('the runtime checker on AcquireAll answers', () => {
  it('accepts the set told acquired where it was granted', () => {
    expect(verdict(setAnswer(7, true, 7))).toBeNull();
  });

  it('accepts a later request for the same set told of the set its session holds', () => {
    expect(verdict(setAnswer(8, true, 7, 'r-set-again'))).toBeNull();
  });

  it('flags a set told acquired while it still waited behind another session', () => {
    expect(verdict(setAnswer(6, true, 6))).toMatch(/did not hold a there/);
  });

  it('flags a set told acquired with another token than its grant', () => {
    expect(verdict(setAnswer(7, true, 6))).toMatch(/token 7/);
  });

  it('flags a set told not acquired that its own request was granted', () => {
    expect(verdict(setAnswer(7, false, 0))).toMatch(/held a there through this request/);
  });

  it('flags a set told not acquired while its request still waited', () => {
    expect(verdict(setAnswer(6, false, 0))).toMatch(/still waited for a there/);
  });
});
