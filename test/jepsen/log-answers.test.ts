import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LockCommand } from '../../src/lock/index.ts';
import type { Op } from '../../src/tools/jepsen/history.ts';
import { checkAnswers } from '../../src/tools/jepsen/log-answers.ts';
import { type ReplayedLog, readCommittedLog } from '../../src/tools/jepsen/raft-log.ts';
import { fencingToken, sessionId } from '../../src/util/ids.ts';
import { LogDirs, normal } from './log-dirs.ts';

/**
 * Every answer a client got, replayed from a real committed log (LevelDB, read back and
 * run through the nodes' state machine): the right answers are reproduced, and each
 * wrong one is reported.
 */
const acquire = (session: number, requestId: string, waitMs: number): LockCommand => ({
  type: 'Acquire',
  lock: 'L',
  sessionId: sessionId(session),
  mode: 'exclusive',
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
 * Sessions 2 and 3 open; 2 takes L; 3 queues for it; both are kept alive in one entry;
 * 2 releases, which grants 3 (token 7); 3 closes; 2 takes L again (token 9); session 10
 * opens and is refused L (2 holds it).
 */
const LOG = [
  normal(2, open('o1')),
  normal(3, open('o2')),
  normal(4, acquire(2, 'r-a', 0)),
  normal(5, acquire(3, 'r-b', 1_000)),
  normal(6, { type: 'KeepAlive', sessionIds: [sessionId(2), sessionId(3)] }),
  normal(7, {
    type: 'Release',
    lock: 'L',
    sessionId: sessionId(2),
    token: fencingToken(4),
    requestId: 'r-rel',
  }),
  normal(8, { type: 'CloseSession', sessionId: sessionId(3), requestId: 'r-close' }),
  normal(9, acquire(2, 'r-c', 0)),
  normal(10, open('o3')),
  normal(11, acquire(10, 'r-e', 0)),
];

type Spec = Omit<Op, 'id' | 'invokeMs' | 'completeMs' | 'lock'> & { lock?: string };

/** What the clients were told, truthfully; ids in order. */
const TOLD: Spec[] = [
  {
    client: 'c0',
    kind: 'open-session',
    outcome: 'ok',
    requestId: 'o1',
    session: '2',
    ttlMs: 3_000,
    answerIndex: 2,
  },
  {
    client: 'c1',
    kind: 'open-session',
    outcome: 'ok',
    requestId: 'o2',
    session: '3',
    ttlMs: 3_000,
    answerIndex: 3,
  },
  {
    client: 'c0',
    kind: 'acquire',
    lock: 'L',
    outcome: 'ok',
    session: '2',
    requestId: 'r-a',
    token: '4',
    answerIndex: 4,
  },
  // Queued at 5, granted by the Release at 7: the grant a later entry made to the wait.
  {
    client: 'c1',
    kind: 'acquire',
    lock: 'L',
    outcome: 'ok',
    session: '3',
    requestId: 'r-b',
    token: '7',
    answerIndex: 7,
  },
  { client: 'c0', kind: 'keep-alive', outcome: 'ok', session: '2', answerIndex: 6 },
  {
    client: 'c0',
    kind: 'release',
    lock: 'L',
    outcome: 'ok',
    session: '2',
    requestId: 'r-rel',
    token: '4',
    answerIndex: 7,
  },
  {
    client: 'c1',
    kind: 'close-session',
    outcome: 'ok',
    session: '3',
    requestId: 'r-close',
    answerIndex: 8,
  },
  { client: 'c0', kind: 'acquire', lock: 'L', outcome: 'info', session: '2', requestId: 'r-c' },
  { client: 'c2', kind: 'acquire', lock: 'L', outcome: 'info', session: '10', requestId: 'r-e' },
  { client: 'c0', kind: 'acquire', lock: 'L', outcome: 'info', session: '2', requestId: 'r-x' },
  { client: 'c1', kind: 'keep-alive', outcome: 'info', session: '3' },
  {
    client: 'c2',
    kind: 'open-session',
    outcome: 'ok',
    requestId: 'o3',
    session: '10',
    ttlMs: 3_000,
    answerIndex: 10,
  },
];

function history(specs: readonly Spec[]): Op[] {
  return specs.map((spec, id) => ({
    lock: '',
    ...spec,
    id,
    invokeMs: id * 10,
    completeMs: spec.outcome === 'info' ? null : id * 10 + 5,
  }));
}

/** The truthful history with op `id` changed: what a buggy cluster could have told. */
function told(id: number, change: Partial<Op>): Op[] {
  return history(TOLD.map((spec, i) => (i === id ? { ...spec, ...change } : spec)));
}

const dirs = new LogDirs();
let log: ReplayedLog;
beforeAll(async () => {
  log = await readCommittedLog([{ id: 'n1', path: await dirs.node('n1', LOG, 11) }], 0);
});
afterAll(() => dirs.removeAll());

describe('replaying every answer from the committed log', () => {
  it('reproduces every ok answer of a truthful history, and resolves the unanswered ones', () => {
    const { violations, answers, info } = checkAnswers(history(TOLD), log);
    expect(violations).toEqual([]);
    expect(answers).toEqual({
      'open-session': { ok: 3, reproduced: 3, beforeStart: 0 },
      'keep-alive': { ok: 1, reproduced: 1, beforeStart: 0 },
      acquire: { ok: 2, reproduced: 2, beforeStart: 0 },
      release: { ok: 1, reproduced: 1, beforeStart: 0 },
      'close-session': { ok: 1, reproduced: 1, beforeStart: 0 },
    });
    // r-c was granted (token 9), r-e refused, r-x never sent; a keepalive has no id.
    expect(info.acquire).toEqual({ tookEffect: 1, noEffect: 1, notInLog: 1, unresolvable: 0 });
    expect(info['keep-alive']).toEqual({
      tookEffect: 0,
      noEffect: 0,
      notInLog: 0,
      unresolvable: 1,
    });
  });

  const wrong: [string, number, Partial<Op>, Op['kind'], string][] = [
    [
      'a grant with a token the replay gives differently',
      2,
      { token: '5' },
      'acquire',
      'Acquired token 4 at 4',
    ],
    ['a grant the log does not contain', 2, { requestId: 'r-zz' }, 'acquire', 'no committed entry'],
    [
      'a grant answered before the entry that made it',
      3,
      { answerIndex: 6 },
      'acquire',
      'only at index 7, after index 6',
    ],
    [
      'a session id the log gave another open',
      0,
      { session: '3' },
      'open-session',
      'SessionOpened session 2',
    ],
    ['a lease length the log did not grant', 0, { ttlMs: 5_000 }, 'open-session', 'ttl 3000'],
    [
      'a keepalive at an entry that refreshed nothing',
      4,
      { answerIndex: 5 },
      'keep-alive',
      'is Queued, no refresh of session 2',
    ],
    [
      'a keepalive past the committed log',
      4,
      { answerIndex: 12 },
      'keep-alive',
      'no lock command at index 12',
    ],
    ['a release of another session', 5, { session: '3' }, 'release', 'no committed entry'],
    [
      'a close the log refused',
      6,
      { session: '2', requestId: 'r-close' },
      'close-session',
      'no committed entry',
    ],
  ];
  it.each(wrong)('reports %s', (_, id, change, kind, message) => {
    const { violations, answers } = checkAnswers(told(id, change), log);
    expect(violations).toHaveLength(1);
    expect(violations[0]?.ops).toEqual([id]);
    expect(violations[0]?.message).toContain(message);
    const stats = answers[kind as keyof typeof answers];
    expect(stats.reproduced).toBe(stats.ok - 1);
  });

  it('reports a refusal as a violation only when it was told ok', () => {
    // Session 10 was refused L at 11: told `ok` with a token, it is caught; told `fail`, fine.
    const refused: Spec = {
      client: 'c2',
      kind: 'acquire',
      lock: 'L',
      session: '10',
      requestId: 'r-e',
      token: '11',
      outcome: 'ok',
      answerIndex: 11,
    };
    const caught = checkAnswers(history([...TOLD, refused]), log).violations;
    expect(caught.map((v) => v.check)).toEqual(['acknowledged-grant']);
    expect(caught[0]?.message).toContain('NotAcquired at 11');
    expect(
      checkAnswers(history([...TOLD, { ...refused, outcome: 'fail' }]), log).violations,
    ).toEqual([]);
  });

  it('counts answers from before the replay start (a snapshot) as unchecked, not reproduced', () => {
    const fromSnapshot: ReplayedLog = { ...log, startIndex: 6 };
    const { violations, answers } = checkAnswers(told(2, { token: '5' }), fromSnapshot);
    expect(violations).toEqual([]);
    expect(answers.acquire).toEqual({ ok: 2, reproduced: 1, beforeStart: 1 });
  });
});
