import { describe, expect, it } from 'vitest';
import {
  checkFencing,
  checkHistory,
  checkMutualExclusion,
} from '../../src/tools/jepsen/checker.ts';
import type { Op } from '../../src/tools/jepsen/history.ts';

/** A hand-written history: ops get ids in the order given. */
function history(...specs: Omit<Op, 'id'>[]): Op[] {
  return specs.map((spec, id) => ({ ...spec, id }));
}

function acquire(
  client: string,
  invokeMs: number,
  completeMs: number | null,
  outcome: Op['outcome'],
  token?: string,
  extra: Partial<Op> = {},
): Omit<Op, 'id'> {
  return {
    client,
    kind: 'acquire',
    lock: 'L',
    invokeMs,
    completeMs,
    outcome,
    ...(token === undefined ? {} : { token }),
    ...extra,
  };
}

function release(client: string, invokeMs: number, token: string): Omit<Op, 'id'> {
  return {
    client,
    kind: 'release',
    lock: 'L',
    invokeMs,
    completeMs: invokeMs + 5,
    outcome: 'ok',
    token,
  };
}

const END = 10_000;

describe('mutual exclusion checker', () => {
  it('passes holds that follow one another', () => {
    const ops = history(
      acquire('a', 0, 10, 'ok', '5'),
      release('a', 50, '5'),
      acquire('b', 20, 60, 'ok', '7'),
      release('b', 90, '7'),
    );
    expect(checkMutualExclusion(ops, END)).toEqual([]);
  });

  it('catches two acknowledged holds that overlap, naming both acquires', () => {
    const ops = history(
      acquire('a', 0, 10, 'ok', '5'),
      acquire('b', 20, 30, 'ok', '7'),
      release('a', 50, '5'),
      release('b', 90, '7'),
    );
    const violations = checkMutualExclusion(ops, END);
    expect(violations).toHaveLength(1);
    expect(violations[0]?.ops).toEqual([0, 1]);
    expect(violations[0]?.message).toContain('#0 a acquire');
    expect(violations[0]?.message).toContain('#1 b acquire');
  });

  it('closes a hold never released at the end of the run', () => {
    const ops = history(acquire('a', 0, 10, 'ok', '5'), acquire('b', 500, 600, 'ok', '7'));
    expect(checkMutualExclusion(ops, END)).toHaveLength(1);
    // With the run ending before b's grant, there is nothing to overlap.
    expect(checkMutualExclusion(ops, 550)).toEqual([]);
  });

  it("ends a lost session's hold at its signal: a later holder is fine", () => {
    const ops = history(
      acquire('a', 0, 10, 'ok', '5', { lostAtMs: 100 }),
      acquire('b', 20, 150, 'ok', '7'),
      release('b', 200, '7'),
    );
    expect(checkMutualExclusion(ops, END)).toEqual([]);
  });

  it('catches a holder that got the lock before the lost session signalled', () => {
    const ops = history(
      acquire('a', 0, 10, 'ok', '5', { lostAtMs: 100 }),
      acquire('b', 20, 90, 'ok', '7'),
    );
    expect(checkMutualExclusion(ops, END).map((v) => v.ops)).toEqual([[0, 1]]);
  });

  it('treats a grant learned of after the signal fired as no hold at all', () => {
    const ops = history(
      acquire('a', 0, 120, 'ok', '5', { lostAtMs: 100 }),
      acquire('b', 20, 110, 'ok', '7'),
    );
    expect(checkMutualExclusion(ops, END)).toEqual([]);
  });

  it('gives an unanswered acquire no hold: the log decides it (log-checker.test.ts)', () => {
    const ops = history(
      acquire('a', 0, null, 'info'),
      acquire('b', 20, 30, 'ok', '7'),
      release('b', 90, '7'),
    );
    expect(checkMutualExclusion(ops, END)).toEqual([]);
  });

  it('ignores failed acquires and overlaps of one client with itself', () => {
    const ops = history(
      acquire('a', 0, 10, 'ok', '5'),
      acquire('b', 5, 40, 'fail'),
      acquire('a', 20, 30, 'ok', '5'),
    );
    expect(checkMutualExclusion(ops, END)).toEqual([]);
  });

  it('keeps locks apart', () => {
    const ops = history(acquire('a', 0, 10, 'ok', '5'), {
      ...acquire('b', 0, 10, 'ok', '6'),
      lock: 'M',
    });
    expect(checkMutualExclusion(ops, END)).toEqual([]);
  });
});

describe('fencing checker', () => {
  it('passes tokens that increase in real time, and concurrent grants in any order', () => {
    const ops = history(
      acquire('a', 0, 10, 'ok', '5'),
      acquire('b', 20, 30, 'ok', '9'),
      // Concurrent with b (invoked before b completed): no order is implied.
      acquire('c', 25, 40, 'ok', '8'),
    );
    expect(checkFencing(ops)).toEqual([]);
  });

  it('catches a later grant with a lower token', () => {
    const ops = history(acquire('a', 0, 10, 'ok', '9'), acquire('b', 20, 30, 'ok', '8'));
    const violations = checkFencing(ops);
    expect(violations.map((v) => v.ops)).toEqual([[0, 1]]);
    expect(violations[0]?.message).toContain('#1 b acquire');
  });

  it('catches an equal token from another session, but not a re-acquire in one session', () => {
    const other = history(
      acquire('a', 0, 10, 'ok', '9', { session: 's1' }),
      acquire('b', 20, 30, 'ok', '9', { session: 's2' }),
    );
    expect(checkFencing(other)).toHaveLength(1);
    const same = history(
      acquire('a', 0, 10, 'ok', '9', { session: 's1' }),
      acquire('a', 20, 30, 'ok', '9', { session: 's1' }),
    );
    expect(checkFencing(same)).toEqual([]);
  });

  it('compares tokens as integers, not strings', () => {
    const ops = history(acquire('a', 0, 10, 'ok', '9'), acquire('b', 20, 30, 'ok', '10'));
    expect(checkFencing(ops)).toEqual([]);
  });
});

describe('checkHistory', () => {
  it('gathers both history checks', () => {
    const ops = history(acquire('a', 0, 10, 'ok', '9'), acquire('b', 20, 30, 'ok', '8'));
    const checks = new Set(checkHistory(ops, END).map((v) => v.check));
    expect(checks).toEqual(new Set(['mutual-exclusion', 'fencing']));
  });
});
