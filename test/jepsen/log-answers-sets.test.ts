import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LockCommand } from '../../src/lock/index.ts';
import type { Op } from '../../src/tools/jepsen/history.ts';
import { checkAnswers } from '../../src/tools/jepsen/log-answers.ts';
import { type ReplayedLog, readCommittedLog } from '../../src/tools/jepsen/raft-log.ts';
import { fencingToken, logIndex, sessionId } from '../../src/util/ids.ts';
import { LogDirs, normal } from './log-dirs.ts';

/**
 * The answers to AcquireAll (issue 17) replayed from a real committed log: a set granted
 * at once, one granted after it waited, a set refused as a deadlock and one not
 * acquired are reproduced as told, and each wrong answer a buggy cluster could have
 * given is reported, and only it.
 */
const acquireAll = (
  session: number,
  requestId: string,
  locks: readonly string[],
  waitMs: number,
): LockCommand => ({
  type: 'AcquireAll',
  locks: locks.map((lock) => ({ lock, mode: 'exclusive' })),
  sessionId: sessionId(session),
  waitMs,
  requestId,
  owner: requestId,
  maxHoldMs: 0,
  lockDelayMs: 0,
});
const open = (requestId: string): LockCommand => ({
  type: 'OpenSession',
  ttlMs: 3_000,
  clientName: requestId,
  requestId,
});

/**
 * Sessions 3 and 4 open; 3 takes {y, x} (token 5); 4 waits for {z, y}; 3 releases its
 * set by x, which grants 4's set (a later entry if the release cannot); 3 takes w alone,
 * then waits for {z, q} (4 holds z); 4 asking for {w, p} would close the cycle: refused
 * as a deadlock; 4's try of {x, w} finds w held: not acquired.
 */
const LOG = [
  normal(2, { type: 'SetBehaviour', version: 4 }),
  normal(3, open('o1')),
  normal(4, open('o2')),
  normal(5, acquireAll(3, 'r-s1', ['y', 'x'], 0)),
  normal(6, acquireAll(4, 'r-s2', ['z', 'y'], 1_000)),
  normal(7, {
    type: 'Release',
    lock: 'x',
    sessionId: sessionId(3),
    token: fencingToken(5),
    requestId: 'r-rel',
  }),
  normal(8, { type: 'Promote', lock: 'y', afterIndex: logIndex(7) }),
  normal(9, {
    type: 'Acquire',
    lock: 'w',
    sessionId: sessionId(3),
    mode: 'exclusive',
    waitMs: 0,
    requestId: 'r-w',
    owner: 'r-w',
    maxHoldMs: 0,
    lockDelayMs: 0,
  }),
  normal(10, acquireAll(3, 'r-s3', ['z', 'q'], 1_000)),
  normal(11, acquireAll(4, 'r-s4', ['w', 'p'], 1_000)),
  normal(12, acquireAll(4, 'r-s5', ['x', 'w'], 0)),
];

type Spec = Omit<Op, 'id' | 'invokeMs' | 'completeMs' | 'lock'> & { lock?: string };

const setOp = (
  session: number,
  requestId: string,
  locks: readonly string[],
  outcome: Op['outcome'],
  extra: Partial<Op> = {},
): Spec => ({
  client: `c${session}`,
  kind: 'acquire-all',
  lock: [...locks].sort()[0] as string,
  locks,
  outcome,
  session: String(session),
  requestId,
  ...extra,
});

const GRANTED_AFTER_WAIT = 'granted-after-wait';

function told(promotedAt: number): Spec[] {
  return [
    setOp(3, 'r-s1', ['y', 'x'], 'ok', { token: '5', answerIndex: 5 }),
    setOp(4, 'r-s2', ['z', 'y'], 'ok', {
      token: String(promotedAt),
      answerIndex: promotedAt,
      owner: GRANTED_AFTER_WAIT,
    }),
    setOp(4, 'r-s4', ['w', 'p'], 'fail', {
      error: 'deadlock: acquiring "p", "w" would deadlock',
      answerIndex: 11,
    }),
    setOp(4, 'r-s5', ['x', 'w'], 'fail', {
      error: 'LockSetNotAcquiredError: the set w, x was not acquired',
      answerIndex: 12,
    }),
    // Queued (3 waits for z): in the log, without effect.
    setOp(3, 'r-s3', ['z', 'q'], 'info'),
  ];
}

function history(specs: readonly Spec[]): Op[] {
  return specs.map((spec, id) => ({
    lock: '',
    ...spec,
    id,
    invokeMs: id * 10,
    completeMs: spec.outcome === 'info' ? null : id * 10 + 5,
  }));
}

const dirs = new LogDirs();
let log: ReplayedLog;
/** Where the replay granted 4's waiting set: 7 (the release) or 8 (the Promote). */
let promotedAt: number;
beforeAll(async () => {
  log = await readCommittedLog([{ id: 'n1', path: await dirs.node('n1', LOG, 12) }], 0);
  const grant = log.grants.find((each) => each.requestId === 'r-s2');
  promotedAt = grant?.index ?? -1;
});
afterAll(() => dirs.removeAll());

describe('replaying the answers to AcquireAll from the committed log', () => {
  it('replays the log as the scenario says', () => {
    expect([7, 8]).toContain(promotedAt);
    expect(log.grants.filter((each) => each.requestId === 'r-s2').map((each) => each.lock)).toEqual(
      expect.arrayContaining(['y', 'z']),
    );
    expect(log.results.get(11)).toMatchObject({ type: 'Rejected', code: 'deadlock' });
    expect(log.results.get(12)).toMatchObject({ type: 'NotAcquiredAll' });
  });

  it('reproduces every answer of the truthful history', () => {
    const { violations, answers, info } = checkAnswers(history(told(promotedAt)), log);
    expect(violations).toEqual([]);
    expect(answers['acquire-all']).toEqual({ ok: 2, reproduced: 2, beforeStart: 0 });
    expect(info['acquire-all']).toEqual({
      tookEffect: 0,
      noEffect: 1,
      notInLog: 0,
      unresolvable: 0,
    });
  });

  const wrong: [string, number, (promotedAt: number) => Partial<Op>, string][] = [
    ['a set told another token', 0, () => ({ token: '6' }), 'AcquiredAll [x, y] token 5'],
    [
      'a set told granted with a lock it was not granted',
      0,
      () => ({ locks: ['y', 'x', 'q'] }),
      'the replay answers its request with',
    ],
    [
      'a waiting set told granted before the log granted it',
      1,
      (at) => ({ answerIndex: at - 1 }),
      'after index',
    ],
    [
      'a set the log refused as a deadlock told granted',
      2,
      () => ({ outcome: 'ok', token: '11', error: undefined }),
      'Rejected deadlock at 11',
    ],
    [
      'a set the log found not free told deadlock',
      3,
      () => ({ error: 'deadlock: acquiring "w", "x" would deadlock' }),
      'no entry up to index 12 refused its request so',
    ],
    [
      'a set the log granted told not acquired',
      1,
      (at) => ({
        outcome: 'fail',
        error: 'LockSetNotAcquiredError: not acquired',
        answerIndex: at,
      }),
      'but the log granted its request at index',
    ],
  ];
  for (const [name, index, change, says] of wrong) {
    it(`reports ${name}, and only it`, () => {
      const specs = told(promotedAt).map((spec, i) =>
        i === index ? { ...spec, ...change(promotedAt) } : spec,
      );
      const { violations } = checkAnswers(history(specs), log);
      expect(violations.map((v) => [v.check, v.ops])).toEqual([['acknowledged-grant', [index]]]);
      expect(violations[0]?.message).toContain(says);
    });
  }
});
