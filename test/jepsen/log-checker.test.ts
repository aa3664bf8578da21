import { describe, expect, it } from 'vitest';
import type { LockResult } from '../../src/lock/index.ts';
import { checkMutualExclusion } from '../../src/tools/jepsen/checker.ts';
import type { Op } from '../../src/tools/jepsen/history.ts';
import { requestKeyOfOp } from '../../src/tools/jepsen/log-answers.ts';
import { CommitClock, checkAgainstLog, checkRegister } from '../../src/tools/jepsen/log-checker.ts';
import type { LogGrant, ReplayedLog } from '../../src/tools/jepsen/raft-log.ts';
import type { RegisterDecision } from '../../src/tools/jepsen/register.ts';

/** Hand-made histories and logs: ops get ids in the order given. */
function history(...specs: Omit<Op, 'id'>[]): Op[] {
  return specs.map((spec, id) => ({ ...spec, id }));
}

function acquire(
  client: string,
  session: string,
  invokeMs: number,
  completeMs: number | null,
  outcome: Op['outcome'],
  extra: Partial<Op> = {},
): Omit<Op, 'id'> {
  return {
    client,
    session,
    kind: 'acquire',
    lock: 'L',
    invokeMs,
    completeMs,
    outcome,
    owner: `${client}@${invokeMs}`,
    // As grant() names the request of an owner's grant.
    requestId: `r-${client}@${invokeMs}`,
    ...extra,
  };
}

function release(client: string, session: string, invokeMs: number, token: string): Omit<Op, 'id'> {
  return {
    client,
    session,
    kind: 'release',
    lock: 'L',
    invokeMs,
    completeMs: invokeMs + 5,
    outcome: 'ok',
    token,
    requestId: `rel-${client}@${invokeMs}`,
  };
}

function grant(
  owner: string,
  sessionId: string,
  index: number,
  endIndex: number | null,
  lock = 'L',
): LogGrant {
  return {
    lock,
    sessionId,
    owner,
    requestId: `r-${owner}`,
    mode: 'exclusive',
    token: String(index),
    index,
    endIndex,
    endReason: endIndex === null ? null : 'expire',
    source: 'log',
  };
}

/**
 * A replayed log with `grants`, the acquire ops' requests at the entries given (their
 * results left out: the grants say what they got), and the release ops' requests at
 * the entries given, each of which released.
 */
function replayed(
  grants: LogGrant[],
  acquires: readonly (readonly [Op, readonly number[]])[],
  releases: readonly (readonly [Op, readonly number[]])[] = [],
): ReplayedLog {
  const requests = new Map<string, readonly number[]>();
  const results = new Map<number, LockResult>();
  for (const [op, indexes] of [...acquires, ...releases])
    requests.set(requestKeyOfOp(op) as string, indexes);
  for (const [op, indexes] of releases) {
    for (const index of indexes) results.set(index, { type: 'Released', lock: op.lock });
  }
  return {
    startIndex: 1,
    commitIndex: 100,
    grants,
    requests,
    results,
    problems: [],
    agreement: { smallestCommitIndex: 100, comparisons: 0 },
    nodes: [],
  };
}

const END = 10_000;

describe('commit clock', () => {
  it('bounds an index by invocations before it and answers after it', () => {
    const clock = new CommitClock();
    clock.invokedBefore(5, 100); // the request of entry 5 was invoked at 100
    clock.invokedBefore(9, 300);
    clock.answeredAfter(7, 250); // an answer at 250 needed entry 7 committed
    clock.answeredAfter(12, 400);
    expect(clock.earliestMs(4)).toBe(Number.NEGATIVE_INFINITY);
    expect(clock.earliestMs(5)).toBe(100);
    expect(clock.latestMs(7)).toBe(250);
    expect(clock.latestMs(12)).toBe(400);
    expect(clock.earliestMs(8)).toBe(100);
    expect(clock.earliestMs(9)).toBe(300);
    expect(clock.latestMs(6)).toBe(250);
    expect(clock.latestMs(8)).toBe(400);
    expect(clock.latestMs(13)).toBe(Number.POSITIVE_INFINITY);
  });
});

/**
 * b is told it holds L (token 5) from 20 until it releases at 100. a's acquire is never
 * answered. A lease bug ends b's grant early (index 6) and the log grants L to a at 7.
 * c's acquire of M (token 8) was answered at 40, so index 7 was committed by then; d's
 * acquire of M was invoked at 60 and its entry is at 11, so a's grant, ended at 12, was
 * still live at 60.
 */
describe('an unanswered acquire that the log granted', () => {
  const ops = history(
    acquire('b', 's2', 10, 20, 'ok', { token: '5' }),
    acquire('a', 's1', 30, null, 'info'),
    acquire('c', 's3', 35, 40, 'ok', { token: '8', lock: 'M' }),
    acquire('d', 's4', 60, 70, 'fail', { lock: 'M' }),
    release('b', 's2', 100, '5'),
  );
  const [b, a, c, d, bRelease] = ops as [Op, Op, Op, Op, Op];
  const acquires = [
    [b, [5]],
    [a, [7]],
    [c, [8]],
    [d, [11]],
  ] as const;
  const releases = [[bRelease, [13]]] as const;
  const otherGrants = [grant(c.owner as string, 's3', 8, null, 'M')];

  it('is a violation when it overlaps a client that believes it holds the lock', () => {
    const log = replayed(
      [grant(b.owner as string, 's2', 5, 6), grant(a.owner as string, 's1', 7, 12), ...otherGrants],
      acquires,
      releases,
    );
    // The history alone cannot tell: a was never told it holds anything.
    expect(checkMutualExclusion(ops, END)).toEqual([]);
    const { violations, stats } = checkAgainstLog(ops, log, END);
    expect(violations.map((v) => [v.check, v.ops])).toEqual([['granted-while-held', [a.id, b.id]]]);
    expect(violations[0]?.message).toContain('index 7 to session s1');
    expect(violations[0]?.message).toContain('[40.0, 60.0)');
    expect(stats.info.acquire.tookEffect).toBe(1);
  });

  it('is no violation when the log granted it only after the holder released', () => {
    const log = replayed(
      [
        grant(b.owner as string, 's2', 5, 13),
        grant(a.owner as string, 's1', 14, 20),
        ...otherGrants,
      ],
      acquires,
      releases,
    );
    expect(checkAgainstLog(ops, log, END).violations).toEqual([]);
  });

  it('is no violation when the log never granted it, and is counted as such', () => {
    const log = replayed(
      [grant(b.owner as string, 's2', 5, 13), ...otherGrants],
      acquires,
      releases,
    );
    const { violations, stats } = checkAgainstLog(ops, log, END);
    expect(violations).toEqual([]);
    expect(stats.info.acquire.tookEffect).toBe(0);
    expect(stats.info.acquire.noEffect).toBe(1);
  });
});

describe('acknowledged operations against the log', () => {
  const ops = history(
    acquire('b', 's2', 10, 20, 'ok', { token: '5' }),
    release('b', 's2', 50, '5'),
  );
  const [acquired, released] = ops as [Op, Op];
  const owner = acquired.owner as string;

  it('passes a grant and a release the log made', () => {
    const log = replayed([grant(owner, 's2', 5, 9)], [[acquired, [5]]], [[released, [9]]]);
    const { violations, stats } = checkAgainstLog(ops, log, END);
    expect(violations).toEqual([]);
    expect(stats.answers.acquire).toEqual({ ok: 1, reproduced: 1, beforeStart: 0 });
    expect(stats.answers.release).toEqual({ ok: 1, reproduced: 1, beforeStart: 0 });
  });

  it('catches an acknowledged grant the log never made, or made to another session', () => {
    const none = replayed([], [[acquired, [5]]], [[released, [9]]]);
    expect(checkAgainstLog(ops, none, END).violations.map((v) => v.check)).toContain(
      'acknowledged-grant',
    );
    // The grant with that token went to another session's request: s2's never landed.
    const other = replayed([grant('x', 's9', 5, 9)], [], [[released, [9]]]);
    const violations = checkAgainstLog(ops, other, END).violations;
    expect(violations.find((v) => v.check === 'acknowledged-grant')?.message).toContain(
      'session s9',
    );
  });

  it('catches an acknowledged release the log has no Release for', () => {
    const log = replayed([grant(owner, 's2', 5, 9)], [[acquired, [5]]]);
    expect(checkAgainstLog(ops, log, END).violations.map((v) => v.check)).toEqual([
      'acknowledged-release',
    ]);
  });

  it('catches two grants of one exclusive lock live at once in the log', () => {
    const log = replayed(
      [grant(owner, 's2', 5, 9), grant('x', 's7', 7, 8)],
      [[acquired, [5]]],
      [[released, [9]]],
    );
    expect(checkAgainstLog(ops, log, END).violations.map((v) => v.check)).toContain('log');
  });
});

describe('register record against the log', () => {
  // Grants of L: session s1 at 5 (ended 9), session s2 at 10.
  const log = replayed([grant('a', 's1', 5, 9), grant('b', 's2', 10, null)], []);
  const writeOp = (client: string, session: string, token: string, outcome: Op['outcome']) => ({
    client,
    session,
    kind: 'write' as const,
    lock: 'L',
    invokeMs: 0,
    completeMs: outcome === 'info' ? null : 1,
    outcome,
    token,
    register: 'fenced' as const,
  });
  const decision = (
    seq: number,
    writeId: number,
    session: string,
    token: string,
    accepted: boolean,
  ): RegisterDecision => ({
    seq,
    writeId: String(writeId),
    lock: 'L',
    token,
    client: session === 's1' ? 'a' : 'b',
    session,
    accepted,
    atEpochMs: seq,
  });

  it('passes writes in grant order and a refused stale write; resolves an unanswered one', () => {
    const ops = history(
      writeOp('a', 's1', '5', 'ok'),
      writeOp('b', 's2', '10', 'info'),
      writeOp('a', 's1', '5', 'fail'),
    );
    const decisions = [
      decision(1, 0, 's1', '5', true),
      decision(2, 1, 's2', '10', true),
      decision(3, 2, 's1', '5', false),
    ];
    const { violations, stats } = checkRegister(ops, decisions, log, 'fenced');
    expect(violations).toEqual([]);
    expect(stats).toMatchObject({ accepted: 2, refused: 1, staleAccepted: 0, infoLanded: 1 });
  });

  it('catches a stale write accepted after a newer holder wrote (the control register)', () => {
    const ops = history(writeOp('b', 's2', '10', 'ok'), writeOp('a', 's1', '5', 'ok'));
    const decisions = [decision(1, 0, 's2', '10', true), decision(2, 1, 's1', '5', true)];
    const { violations, stats } = checkRegister(ops, decisions, log, 'fenced');
    expect(violations.map((v) => [v.check, v.ops])).toEqual([['register-stale-write', [0, 1]]]);
    expect(stats.staleAccepted).toBe(1);
  });

  it('catches a token the log never granted, or granted to another session', () => {
    const ops = history(writeOp('a', 's1', '7', 'ok'), writeOp('a', 's1', '10', 'ok'));
    const decisions = [decision(1, 0, 's1', '7', true), decision(2, 1, 's1', '10', true)];
    const messages = checkRegister(ops, decisions, log, 'fenced').violations.map(
      (v) => `${v.check}: ${v.message}`,
    );
    expect(messages).toHaveLength(2);
    expect(messages[0]).toContain('never granted');
    expect(messages[1]).toContain('granted that token to session s2');
  });

  it('explains a refusal by a write accepted under a grant the replay starts after (a snapshot covers it)', () => {
    // The replay starts at 20: tokens 12 and 15 were granted before it (a 600 s run
    // reported every such refusal as unexplained). 15 after 12 refuses 12's holder.
    const late = { ...replayed([], []), startIndex: 20 };
    const ops = history(
      writeOp('b', 's2', '15', 'ok'),
      writeOp('a', 's1', '12', 'fail'),
      writeOp('a', 's1', '16', 'fail'),
    );
    const decisions = [
      decision(1, 0, 's2', '15', true),
      decision(2, 1, 's1', '12', false),
      decision(3, 2, 's1', '16', false),
    ];
    const checks = checkRegister(ops, decisions, late, 'fenced').violations;
    // 12 is explained by 15; 16 is not: nothing later than it was accepted.
    expect(checks.map((v) => [v.check, v.ops])).toEqual([['register-refusal', [2]]]);
  });

  it('catches a refusal no later grant explains, and answers that disagree with the record', () => {
    const ops = history(writeOp('a', 's1', '5', 'fail'), writeOp('a', 's1', '5', 'ok'));
    const decisions = [decision(1, 0, 's1', '5', false)];
    const checks = checkRegister(ops, decisions, log, 'fenced').violations.map((v) => v.check);
    expect(checks).toEqual(['register-refusal', 'register-answer']);
  });
});
