import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LockCommand } from '../../src/lock/index.ts';
import type { Op } from '../../src/tools/jepsen/history.ts';
import { checkAnswers } from '../../src/tools/jepsen/log-answers.ts';
import { checkAgainstLog } from '../../src/tools/jepsen/log-checker.ts';
import { type ReplayedLog, readCommittedLog } from '../../src/tools/jepsen/raft-log.ts';
import { fencingToken, logIndex, sessionId } from '../../src/util/ids.ts';
import { LogDirs, normal } from './log-dirs.ts';

/**
 * The answers to AcquirePermits, Campaign, Proclaim and a resignation (issue 17) replayed
 * from a real committed log: the truthful ones are reproduced, and each wrong one a buggy
 * cluster could have given is reported, and only it. And a believed term of leadership
 * during which the log granted the election to another session is caught.
 */
const common = (session: number, requestId: string) => ({
  sessionId: sessionId(session),
  requestId,
  owner: requestId,
  maxHoldMs: 0,
  lockDelayMs: 0,
});
const permits = (session: number, requestId: string, count: number): LockCommand => ({
  type: 'AcquirePermits',
  lock: 'sem',
  permits: count,
  limit: 2,
  waitMs: 0,
  ...common(session, requestId),
});
const campaign = (session: number, requestId: string, waitMs: number): LockCommand => ({
  type: 'Campaign',
  lock: 'elect',
  value: requestId,
  waitMs,
  ...common(session, requestId),
});
const open = (requestId: string): LockCommand => ({
  type: 'OpenSession',
  ttlMs: 3_000,
  clientName: requestId,
  requestId,
});

/**
 * Sessions 3 and 4 open; 3 takes 1 permit of sem (token 5), 4 asks for 2 and is refused
 * (1 of 2 left); 3 leads elect (token 7), 4 campaigns and waits; 3 proclaims v2; 3
 * resigns, which elects 4 (at 10, or a later Promote at 11).
 */
const LOG = [
  normal(2, { type: 'SetBehaviour', version: 5 }),
  normal(3, open('o1')),
  normal(4, open('o2')),
  normal(5, permits(3, 'r-p1', 1)),
  normal(6, permits(4, 'r-p2', 2)),
  normal(7, campaign(3, 'r-c1', 0)),
  normal(8, campaign(4, 'r-c2', 1_000)),
  normal(9, {
    type: 'Proclaim',
    lock: 'elect',
    sessionId: sessionId(3),
    token: fencingToken(7),
    value: 'v2',
    requestId: 'r-pr',
  }),
  normal(10, {
    type: 'Release',
    lock: 'elect',
    sessionId: sessionId(3),
    token: fencingToken(7),
    requestId: 'r-resign',
  }),
  normal(11, { type: 'Promote', lock: 'elect', afterIndex: logIndex(10) }),
];

type Spec = Omit<Op, 'id' | 'invokeMs' | 'completeMs'>;

function told(electedAt: number): Spec[] {
  const base = (client: string, session: number) => ({ client, session: String(session) });
  return [
    {
      ...base('sem0', 3),
      kind: 'acquire-permits',
      lock: 'sem',
      permits: 1,
      limit: 2,
      outcome: 'ok',
      requestId: 'r-p1',
      owner: 'r-p1',
      token: '5',
      answerIndex: 5,
    },
    {
      ...base('sem1', 4),
      kind: 'acquire-permits',
      lock: 'sem',
      permits: 2,
      limit: 2,
      outcome: 'fail',
      requestId: 'r-p2',
      owner: 'r-p2',
      error: 'PermitsNotAcquiredError: 2 permits of sem were not acquired',
      answerIndex: 6,
    },
    {
      ...base('e0', 3),
      kind: 'campaign',
      lock: 'elect',
      value: 'r-c1',
      outcome: 'ok',
      requestId: 'r-c1',
      owner: 'r-c1',
      token: '7',
      answerIndex: 7,
    },
    {
      ...base('e0', 3),
      kind: 'proclaim',
      lock: 'elect',
      value: 'v2',
      outcome: 'ok',
      requestId: 'r-pr',
      token: '7',
      answerIndex: 9,
    },
    {
      ...base('e0', 3),
      kind: 'resign',
      lock: 'elect',
      outcome: 'ok',
      requestId: 'r-resign',
      token: '7',
      answerIndex: 10,
    },
    {
      ...base('e1', 4),
      kind: 'campaign',
      lock: 'elect',
      value: 'r-c2',
      outcome: 'ok',
      requestId: 'r-c2',
      owner: 'r-c2',
      token: String(electedAt),
      answerIndex: electedAt,
    },
  ];
}

/** Each op 10 ms after the one before, answered 5 ms after its invocation. */
function history(specs: readonly Spec[]): Op[] {
  return specs.map((spec, id) => ({
    ...spec,
    id,
    invokeMs: id * 10,
    completeMs: spec.outcome === 'info' ? null : id * 10 + 5,
  }));
}

const dirs = new LogDirs();
let log: ReplayedLog;
let electedAt: number;
beforeAll(async () => {
  log = await readCommittedLog([{ id: 'n1', path: await dirs.node('n1', LOG, 11) }], 0);
  electedAt = log.grants.find((grant) => grant.requestId === 'r-c2')?.index ?? -1;
});
afterAll(() => dirs.removeAll());

describe('replaying the answers of semaphores and elections from the committed log', () => {
  it('replays the log as the scenario says, and reproduces every truthful answer', () => {
    expect([10, 11]).toContain(electedAt);
    expect(log.results.get(6)).toMatchObject({ type: 'NotAcquired' });
    const { violations, answers } = checkAnswers(history(told(electedAt)), log);
    expect(violations).toEqual([]);
    for (const kind of ['acquire-permits', 'campaign', 'proclaim', 'resign'] as const)
      expect(answers[kind].reproduced, kind).toBe(answers[kind].ok);
    expect(answers.campaign.ok).toBe(2);
  });

  const wrong: [string, number, (electedAt: number) => Partial<Op>, Op['kind'], string][] = [
    ['a permit told another token', 0, () => ({ token: '6' }), 'acquire-permits', 'grant'],
    [
      'permits told granted that the log refused',
      1,
      () => ({ outcome: 'ok', token: '6', error: 'x' }),
      'acquire-permits',
      'NotAcquired',
    ],
    ['a leader told another token', 2, () => ({ token: '8' }), 'campaign', 'grant'],
    ['a proclaim of another value', 3, () => ({ value: 'v3' }), 'proclaim', 'Proclaimed'],
    [
      'a candidate elected before its grant',
      5,
      (at) => ({ answerIndex: at - 1 }),
      'campaign',
      'after index',
    ],
    [
      'a candidate told not elected that the log elected',
      5,
      (at) => ({ outcome: 'fail', error: 'NotElectedError: not elected', answerIndex: at }),
      'campaign',
      'but the log granted its request',
    ],
  ];
  for (const [name, index, change, kind, says] of wrong) {
    it(`reports ${name}, and only it`, () => {
      const specs = told(electedAt).map((spec, i) =>
        i === index ? { ...spec, ...change(electedAt) } : spec,
      );
      const { violations } = checkAnswers(history(specs), log);
      expect(violations.map((v) => v.ops)).toEqual([[index]]);
      expect(violations[0]?.message).toContain(says);
      expect(specs[index]?.kind).toBe(kind);
    });
  }

  it("catches a leader who believed it led while the log's grant went to the next", () => {
    // e0 resigned at 40 (op #4) in the truth; here it never resigned, and e1 was elected:
    // e0 believes it leads to the end of the run, over e1's grant.
    const specs = told(electedAt).filter((spec) => spec.kind !== 'resign');
    const ops = history(specs);
    const found = checkAgainstLog(ops, log, 1_000).violations;
    const e0 = ops.find((op) => op.kind === 'campaign' && op.client === 'e0')?.id;
    expect(
      found
        .filter((v) => v.check === 'granted-while-held')
        .map((v) => v.ops.includes(e0 as number)),
    ).toEqual([true]);
    const truthful = checkAgainstLog(history(told(electedAt)), log, 1_000).violations;
    expect(truthful).toEqual([]);
  });
});
