import { describe, expect, it } from 'vitest';
import {
  checkCoordination,
  checkLeadership,
  checkPermits,
} from '../../src/tools/jepsen/coordination-checker.ts';
import type { Op } from '../../src/tools/jepsen/history.ts';

/**
 * The semaphore and election checkers (issue 17) on hand-written histories: each
 * injected violation is flagged, and only it; the same history without it passes.
 */
function history(...specs: Omit<Op, 'id'>[]): Op[] {
  return specs.map((spec, id) => ({ ...spec, id }));
}

const END = 10_000;

function permits(
  client: string,
  count: number,
  invokeMs: number,
  completeMs: number,
  token: string,
  extra: Partial<Op> = {},
): Omit<Op, 'id'> {
  return {
    client,
    session: `s-${client}`,
    kind: 'acquire-permits',
    lock: 'sem',
    permits: count,
    limit: 2,
    invokeMs,
    completeMs,
    outcome: 'ok',
    token,
    ...extra,
  };
}

function ending(
  kind: 'release' | 'resign',
  lock: string,
): (client: string, invokeMs: number, token: string) => Omit<Op, 'id'> {
  return (client, invokeMs, token) => ({
    client,
    session: `s-${client}`,
    kind,
    lock,
    invokeMs,
    completeMs: invokeMs + 5,
    outcome: 'ok',
    token,
  });
}
const release = ending('release', 'sem');
const resign = ending('resign', 'elect');

function campaign(
  client: string,
  invokeMs: number,
  completeMs: number,
  token: string,
  extra: Partial<Op> = {},
): Omit<Op, 'id'> {
  return {
    client,
    session: `s-${client}`,
    kind: 'campaign',
    lock: 'elect',
    value: client,
    invokeMs,
    completeMs,
    outcome: 'ok',
    token,
    ...extra,
  };
}

function notGranted(client: string, invokeMs: number, completeMs: number): Omit<Op, 'id'> {
  const { token: _token, ...op } = permits(client, 1, invokeMs, completeMs, '0');
  return { ...op, outcome: 'fail' };
}

/**
 * Limit 2: a and b hold one permit each at once; c takes 2 once a and b released; d
 * waited and never got one; e's grant was lost (signal) before c began.
 */
const PERMITS = [
  permits('a', 1, 0, 10, '5'),
  permits('b', 1, 5, 20, '6'),
  release('a', 40, '5'),
  release('b', 50, '6'),
  permits('c', 2, 30, 60, '8'),
  release('c', 90, '8'),
  notGranted('d', 35, 1_035),
  permits('e', 1, 0, 12, '7', { lostAtMs: 55 }),
];

describe('semaphore checker: permits within the limit, one token per grant', () => {
  it('passes grants within the limit, and counts a lost grant only until its signal', () => {
    const ops = history(...PERMITS.filter((op) => op.client !== 'e'));
    expect(checkPermits(ops, END)).toEqual([]);
  });

  it('catches permits over the limit once, naming the holds', () => {
    // e's permit (believed from 12 until its signal at 55) overlaps a's and b's (to 40
    // and 50): three of limit 2, reported once. c (from 60) begins after e's signal.
    const ops = history(...PERMITS);
    const violations = checkPermits(ops, END);
    expect(violations.map((v) => [v.check, v.ops])).toEqual([['permits-over-limit', [0, 1, 7]]]);
    expect(violations[0]?.message).toContain('3 permits were believed held, over the limit 2');
  });

  it('catches a grant of two permits beside one still held', () => {
    // c acknowledged at 45, while b (released at 50) still holds one.
    const ops = history(
      ...PERMITS.filter((op) => op.client !== 'e').map((op) =>
        op.kind === 'acquire-permits' && op.client === 'c' ? { ...op, completeMs: 45 } : op,
      ),
    );
    expect(checkPermits(ops, END).map((v) => [v.check, v.ops])).toEqual([
      ['permits-over-limit', [1, 4]],
    ]);
  });

  it('catches two permit grants to different sessions with one token, and tokens going down', () => {
    const shared = history(
      ...PERMITS.filter((op) => op.client !== 'e').map((op) =>
        op.kind === 'acquire-permits' && op.client === 'b' ? { ...op, token: '5' } : op,
      ),
    );
    expect(checkPermits(shared, END).map((v) => [v.check, v.ops])).toEqual([
      // b's release names token 6, so b's grant is believed to the end: 2 + 1 > 2 at 60.
      ['permits-over-limit', [1, 4]],
      ['permit-token', [0, 1]],
    ]);
    const down = history(
      ...PERMITS.filter((op) => op.client !== 'e').map((op) =>
        op.client === 'c' && op.token === '8' ? { ...op, token: '4' } : op,
      ),
    );
    // c's token 4 is below both a's (5) and b's (6), acknowledged before c was invoked.
    expect(checkPermits(down, END).map((v) => [v.check, v.ops])).toEqual([
      ['permit-token', [0, 4]],
      ['permit-token', [1, 4]],
    ]);
  });
});

/** x leads, resigns; y leads after it (its campaign waited); z's term was lost (signal). */
const TERMS = [
  campaign('x', 0, 10, '5'),
  campaign('y', 5, 60, '9'),
  resign('x', 50, '5'),
  resign('y', 100, '9'),
  campaign('z', 110, 120, '12', { lostAtMs: 200 }),
  campaign('w', 150, 250, '15'),
];

describe('election checker: one leader at a time, leader tokens rising', () => {
  it('passes terms that follow one another', () => {
    expect(checkLeadership(history(...TERMS), END)).toEqual([]);
  });

  it('catches two overlapping leaders, and only them', () => {
    // y told it leads at 40, before x resigned at 50.
    const ops = history(
      ...TERMS.map((op) =>
        op.kind === 'campaign' && op.client === 'y' ? { ...op, completeMs: 40 } : op,
      ),
    );
    expect(checkLeadership(ops, END).map((v) => [v.check, v.ops])).toEqual([
      ['leader-overlap', [0, 1]],
    ]);
  });

  it('catches a leader whose session signal came after the next leader began', () => {
    const ops = history(...TERMS.map((op) => (op.client === 'z' ? { ...op, lostAtMs: 260 } : op)));
    expect(checkLeadership(ops, END).map((v) => [v.check, v.ops])).toEqual([
      ['leader-overlap', [4, 5]],
    ]);
  });

  it('catches a leader token that goes down, and only it', () => {
    const ops = history(
      ...TERMS.map((op) =>
        op.kind === 'campaign' && op.client === 'w' ? { ...op, token: '11' } : op,
      ),
    );
    expect(checkLeadership(ops, END).map((v) => [v.check, v.ops])).toEqual([
      ['leader-token', [4, 5]],
    ]);
  });

  it('lets a session be handed its own term back', () => {
    const ops = history(...TERMS, campaign('x', 20, 30, '5'));
    expect(checkLeadership(ops, END)).toEqual([]);
  });

  it('checkCoordination gathers both', () => {
    const ops = history(
      ...PERMITS,
      ...TERMS.map((op) =>
        op.kind === 'campaign' && op.client === 'w' ? { ...op, token: '11' } : op,
      ),
    );
    expect(new Set(checkCoordination(ops, END).map((v) => v.check))).toEqual(
      new Set(['permits-over-limit', 'leader-token']),
    );
  });
});
