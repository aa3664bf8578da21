import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LockCommand } from '../../src/lock/index.ts';
import type { Op } from '../../src/tools/jepsen/history.ts';
import { checkAnswers } from '../../src/tools/jepsen/log-answers.ts';
import { type ReplayedLog, readCommittedLog } from '../../src/tools/jepsen/raft-log.ts';
import { fencingToken, logIndex, sessionId } from '../../src/util/ids.ts';
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
      'acquire-all': { ok: 0, reproduced: 0, beforeStart: 0 },
      release: { ok: 1, reproduced: 1, beforeStart: 0 },
      'acquire-permits': { ok: 0, reproduced: 0, beforeStart: 0 },
      campaign: { ok: 0, reproduced: 0, beforeStart: 0 },
      proclaim: { ok: 0, reproduced: 0, beforeStart: 0 },
      resign: { ok: 0, reproduced: 0, beforeStart: 0 },
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

/**
 * Session 4 holds L (token 5); session 2 waits for it; 4's release grants it to 2 (token
 * 7), whose answer could not be delivered; 3 is refused by that grant at 8; the grant is
 * withdrawn at 9, and 2's retry of the same request at 10 is told grantEnded
 * (lock/state-machine.ts withdraw(), since 865128a).
 */
const WITHDRAWN_LOG = [
  normal(2, open('o1')),
  normal(3, open('o2')),
  normal(4, open('o3')),
  normal(5, acquire(4, 'r-c', 0)),
  normal(6, acquire(2, 'r-w', 1_000)),
  normal(7, {
    type: 'Release',
    lock: 'L',
    sessionId: sessionId(4),
    token: fencingToken(5),
    requestId: 'r-rel',
  }),
  normal(8, acquire(3, 'r-b', 0)),
  normal(9, {
    type: 'Withdraw',
    lock: 'L',
    sessionId: sessionId(2),
    requestId: 'r-w',
    attemptIndex: logIndex(6),
  }),
  normal(10, acquire(2, 'r-w', 1_000)),
];

describe('replaying refusals of an Acquire whose grant was withdrawn', () => {
  const lockOp = (spec: Omit<Spec, 'client' | 'kind' | 'lock'>): Spec => ({
    client: `c${spec.session}`,
    kind: 'acquire',
    lock: 'L',
    ...spec,
  });
  const GRANT_ENDED =
    'grantEnded: Lock.Acquire at 127.0.0.1:1: FAILED_PRECONDITION: the grant of L made for request r-w (token 7) has ended: it was released, revoked or reached its max hold';
  const NOT_ACQUIRED = 'LockNotAcquiredError: L was not acquired: held by c4';
  const truthful: Spec[] = [
    lockOp({ session: '2', requestId: 'r-w', outcome: 'fail', error: GRANT_ENDED }),
    lockOp({
      session: '3',
      requestId: 'r-b',
      outcome: 'fail',
      error: 'LockNotAcquiredError: L was not acquired: held by c2',
      answerIndex: 8,
    }),
    lockOp({ session: '4', requestId: 'r-c', outcome: 'ok', token: '5', answerIndex: 5 }),
    {
      ...lockOp({ session: '4', requestId: 'r-rel', outcome: 'ok', token: '5', answerIndex: 7 }),
      kind: 'release',
    },
  ];

  const withdrawnDirs = new LogDirs();
  let withdrawnLog: ReplayedLog;
  beforeAll(async () => {
    const path = await withdrawnDirs.node('n1', WITHDRAWN_LOG, 10);
    withdrawnLog = await readCommittedLog([{ id: 'n1', path }], 0);
  });
  afterAll(() => withdrawnDirs.removeAll());

  it('replays the withdrawal as the client was told it: granted, withdrawn, retry told grantEnded', () => {
    expect(withdrawnLog.results.get(6)).toMatchObject({ type: 'Queued' });
    expect(withdrawnLog.results.get(8)).toMatchObject({ type: 'NotAcquired' });
    expect(withdrawnLog.results.get(10)).toMatchObject({ type: 'Rejected', code: 'grantEnded' });
    const grant = withdrawnLog.grants.find((g) => g.requestId === 'r-w');
    expect(grant).toMatchObject({ index: 7, endIndex: 9, endReason: 'withdraw' });
    const { violations, answers } = checkAnswers(history(truthful), withdrawnLog);
    expect(violations).toEqual([]);
    expect(answers.acquire).toEqual({ ok: 1, reproduced: 1, beforeStart: 0 });
  });

  it('reports a request told "not acquired" that the log granted, and one told grantEnded it never granted', () => {
    // What the client was told before 865128a: its retry ran afresh, queued, timed out.
    const lied = history(
      truthful.map((spec, i) =>
        i === 0 ? { ...spec, error: NOT_ACQUIRED, answerIndex: 10 } : spec,
      ),
    );
    const caught = checkAnswers(lied, withdrawnLog).violations;
    expect(caught.map((v) => [v.check, v.ops])).toEqual([['acknowledged-grant', [0]]]);
    // The grant was made to its wait by another entry (the release at 7).
    expect(caught[0]?.message).toContain('the log granted its request at index 7');
    // An answer naming an index before the grant says nothing against it.
    const early = history(
      truthful.map((spec, i) =>
        i === 0 ? { ...spec, error: NOT_ACQUIRED, answerIndex: 6 } : spec,
      ),
    );
    expect(checkAnswers(early, withdrawnLog).violations).toEqual([]);
    // Session 3's try-lock was refused: told grantEnded, the log denies it.
    const invented = history(
      truthful.map((spec, i) => (i === 1 ? { ...spec, error: GRANT_ENDED } : spec)),
    );
    const denied = checkAnswers(invented, withdrawnLog).violations;
    expect(denied.map((v) => v.ops)).toEqual([[1]]);
    expect(denied[0]?.message).toContain('never granted its request');
    // Unless the replay starts from a snapshot, after which the grant may have been.
    expect(checkAnswers(invented, { ...withdrawnLog, startIndex: 3 }).violations).toEqual([]);
  });
});
