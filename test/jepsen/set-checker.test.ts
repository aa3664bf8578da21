import { describe, expect, it } from 'vitest';
import { checkFencing, checkMutualExclusion, holdsOf } from '../../src/tools/jepsen/checker.ts';
import type { Op } from '../../src/tools/jepsen/history.ts';
import { checkLinearizable } from '../../src/tools/jepsen/linearizable.ts';

/**
 * The history checkers over sets (issue 17): a set's grant (acquire-all) is a hold of
 * each of its locks, with the set's one token, until the set's release, which names the
 * set's first lock in code-unit order (as the client library releases it). Each test
 * with an injected violation must flag exactly it; the same history without it, nothing.
 */
function history(...specs: Omit<Op, 'id'>[]): Op[] {
  return specs.map((spec, id) => ({ ...spec, id }));
}

function set(
  client: string,
  locks: readonly string[],
  invokeMs: number,
  completeMs: number,
  token: string,
): Omit<Op, 'id'> {
  return {
    client,
    session: `s-${client}`,
    kind: 'acquire-all',
    lock: [...locks].sort()[0] as string,
    locks,
    invokeMs,
    completeMs,
    outcome: 'ok',
    token,
  };
}

function single(
  client: string,
  lock: string,
  invokeMs: number,
  completeMs: number,
  token: string,
): Omit<Op, 'id'> {
  const op = { client, session: `s-${client}`, kind: 'acquire', lock, invokeMs, completeMs };
  return { ...op, kind: 'acquire', outcome: 'ok', token };
}

function release(
  client: string,
  lock: string,
  invokeMs: number,
  token: string,
  locks?: readonly string[],
): Omit<Op, 'id'> {
  return {
    client,
    session: `s-${client}`,
    kind: 'release',
    lock,
    invokeMs,
    completeMs: invokeMs + 5,
    outcome: 'ok',
    token,
    ...(locks === undefined ? {} : { locks }),
  };
}

const END = 10_000;

/**
 * a holds {y, x} (asked in that order; released by x), then b holds {z, y}, then c holds y
 * alone, each after the previous released: no overlap, tokens rising on every lock.
 */
const CLEAN = [
  set('a', ['y', 'x'], 0, 10, '5'),
  release('a', 'x', 50, '5', ['y', 'x']),
  set('b', ['z', 'y'], 20, 60, '7'),
  release('b', 'y', 90, '7', ['z', 'y']),
  single('c', 'y', 70, 100, '9'),
  release('c', 'y', 120, '9'),
  // Disjoint sets overlap freely.
  set('d', ['p', 'q'], 0, 10, '4'),
  set('e', ['r', 's'], 0, 10, '6'),
];

describe('sets in the history checkers', () => {
  it('a set grant is a hold of each of its locks, ended by the release of its first lock', () => {
    const holds = holdsOf(history(...CLEAN), END).filter((hold) => hold.client === 'a');
    expect(holds.map((hold) => [hold.lock, hold.startMs, hold.endMs])).toEqual([
      ['y', 10, 50],
      ['x', 10, 50],
    ]);
  });

  it('passes sets and single holds that follow one another, and disjoint sets at once', () => {
    const ops = history(...CLEAN);
    expect(checkMutualExclusion(ops, END)).toEqual([]);
    expect(checkFencing(ops)).toEqual([]);
  });

  it('catches two overlapping set holds of a shared lock, and only that', () => {
    // b's set is acknowledged at 40, while a (released at 50) still holds y.
    const ops = history(
      ...CLEAN.map((op, i) => (i === 2 ? set('b', ['z', 'y'], 20, 40, '7') : op)),
    );
    const violations = checkMutualExclusion(ops, END);
    expect(violations.map((v) => [v.check, v.ops])).toEqual([['mutual-exclusion', [0, 2]]]);
    expect(violations[0]?.message).toMatch(/^y: /);
    expect(checkFencing(ops)).toEqual([]);
  });

  it('catches a single hold that overlaps a set holding its lock', () => {
    // c is told it holds y at 80, while b (released at 90) still holds it.
    const ops = history(...CLEAN.map((op, i) => (i === 4 ? single('c', 'y', 70, 80, '9') : op)));
    expect(checkMutualExclusion(ops, END).map((v) => v.ops)).toEqual([[2, 4]]);
  });

  it('catches a set whose token is not above an earlier grant of a lock it shares', () => {
    // b's set token (4, released as such) is below a's (5), acknowledged before b was invoked.
    const lowered: Record<number, Omit<Op, 'id'>> = {
      2: set('b', ['z', 'y'], 20, 60, '4'),
      3: release('b', 'y', 90, '4', ['z', 'y']),
    };
    const ops = history(...CLEAN.map((op, i) => lowered[i] ?? op));
    const violations = checkFencing(ops);
    expect(violations.map((v) => [v.check, v.ops])).toEqual([['fencing', [0, 2]]]);
    expect(violations[0]?.message).toMatch(/^y: /);
    expect(checkMutualExclusion(ops, END)).toEqual([]);
  });

  it('catches a single grant whose token is not above a set before it', () => {
    const ops = history(...CLEAN.map((op, i) => (i === 4 ? single('c', 'y', 70, 100, '6') : op)));
    expect(checkFencing(ops).map((v) => v.ops)).toEqual([[2, 4]]);
  });

  it('leaves the locks a set covers, semaphores and elections out of the linearizability search, and checks the rest', () => {
    const ops = history(
      ...CLEAN,
      single('f', 'only-single', 0, 10, '3'),
      release('f', 'only-single', 20, '3'),
      { ...single('g', 'sem', 0, 10, '11'), kind: 'acquire-permits', permits: 1, limit: 2 },
      release('g', 'sem', 20, '11'),
      { ...single('h', 'elect', 0, 10, '12'), kind: 'campaign', value: 'h' },
    );
    const verdict = checkLinearizable(ops);
    expect(verdict.locksLeftOut).toEqual(['elect', 'p', 'q', 'r', 's', 'sem', 'x', 'y', 'z']);
    expect(verdict.locks.map((lock) => lock.lock)).toEqual(['only-single']);
  });
});
