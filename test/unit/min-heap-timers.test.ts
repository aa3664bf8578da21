import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type LockCommand, type LockEvent, LockTimers } from '../../src/lock/index.ts';
import { type LogIndex, logIndex, sessionId } from '../../src/util/ids.ts';
import { MinHeap } from '../../src/util/min-heap.ts';

/**
 * The heap behind LockTimers.due, and LockTimers itself against the plain scan it
 * replaced: for any history of deadlines set, replaced and deleted, each `due` call
 * returns the same commands as a scan of every deadline would.
 */
describe('MinHeap', () => {
  it('pops by priority, and in push order among equal priorities', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.integer({ min: 0, max: 20 }), fc.constant('pop' as const)), {
          maxLength: 300,
        }),
        (ops) => {
          const heap = new MinHeap<number>();
          const reference: { priority: number; sequence: number }[] = [];
          let sequence = 0;
          for (const op of ops) {
            if (op === 'pop') {
              reference.sort((a, b) => a.priority - b.priority || a.sequence - b.sequence);
              expect(heap.peekPriority()).toBe(reference[0]?.priority);
              expect(heap.pop()).toBe(reference.shift()?.sequence);
            } else {
              heap.push(op, sequence);
              reference.push({ priority: op, sequence: sequence++ });
            }
            expect(heap.size).toBe(reference.length);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

const REPROPOSE_MS = 50;

/** The scan LockTimers.due used to do, as the reference. */
class ScanTimers {
  readonly deadlines = new Map<
    string,
    { command: LockCommand; dueAtMs: number; proposedAtMs: number | null }
  >();
  /** The lock-delays in force per lock, oldest first: a lock keeps every one until it ends. */
  readonly delays = new Map<number, LogIndex[]>();

  due(nowMs: number): LockCommand[] {
    const commands: LockCommand[] = [];
    for (const deadline of this.deadlines.values()) {
      if (deadline.dueAtMs > nowMs) continue;
      const proposedAt = deadline.proposedAtMs;
      if (proposedAt !== null && nowMs - proposedAt < REPROPOSE_MS) continue;
      deadline.proposedAtMs = nowMs;
      commands.push(deadline.command);
    }
    return commands;
  }
}

type Op =
  | { kind: 'refresh'; session: number; ttlMs: number }
  | { kind: 'end'; session: number }
  | { kind: 'delay'; lock: number; delayMs: number }
  | { kind: 'delayEnd'; lock: number }
  | { kind: 'advance'; ms: number };

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('refresh' as const),
    session: fc.integer({ min: 1, max: 6 }),
    ttlMs: fc.integer({ min: 1, max: 400 }),
  }),
  fc.record({ kind: fc.constant('end' as const), session: fc.integer({ min: 1, max: 6 }) }),
  fc.record({
    kind: fc.constant('delay' as const),
    lock: fc.integer({ min: 1, max: 3 }),
    delayMs: fc.integer({ min: 1, max: 400 }),
  }),
  fc.record({ kind: fc.constant('delayEnd' as const), lock: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 120 }) }),
);

/** One op as the event LockTimers sees and the reference's change. */
function eventOf(op: Op, index: LogIndex, scan: ScanTimers, nowMs: number): LockEvent | null {
  switch (op.kind) {
    case 'refresh': {
      const id = sessionId(op.session);
      const command: LockCommand = {
        type: 'ExpireSession',
        sessionId: id,
        lastRefreshIndex: index,
      };
      scan.deadlines.set(`s${op.session}`, {
        command,
        dueAtMs: nowMs + op.ttlMs,
        proposedAtMs: null,
      });
      return { type: 'sessionRefreshed', sessionId: id, ttlMs: op.ttlMs };
    }
    case 'end':
      scan.deadlines.delete(`s${op.session}`);
      return { type: 'sessionEnded', sessionId: sessionId(op.session), reason: 'close' };
    case 'delay': {
      const lock = `lock/${op.lock}`;
      const command: LockCommand = { type: 'LockDelayEnded', lock, delayIndex: index };
      scan.deadlines.set(`d${op.lock}/${index}`, {
        command,
        dueAtMs: nowMs + op.delayMs,
        proposedAtMs: null,
      });
      scan.delays.set(op.lock, [...(scan.delays.get(op.lock) ?? []), index]);
      return { type: 'delayStarted', lock, delayIndex: index, delayMs: op.delayMs };
    }
    case 'delayEnd': {
      // Ends the lock's oldest delay in force, or (none) one that was never placed.
      const [delayIndex = index, ...rest] = scan.delays.get(op.lock) ?? [];
      scan.delays.set(op.lock, rest);
      scan.deadlines.delete(`d${op.lock}/${delayIndex}`);
      return { type: 'delayEnded', lock: `lock/${op.lock}`, delayIndex };
    }
    case 'advance':
      return null;
  }
}

const byJson = (commands: readonly LockCommand[]): string[] =>
  commands.map((command) => JSON.stringify(command)).sort();

describe('LockTimers.due (heap) against a scan of every deadline', () => {
  it('returns the same commands after any history of sets, replacements and deletions', () => {
    fc.assert(
      fc.property(fc.array(opArbitrary, { minLength: 1, maxLength: 400 }), (ops) => {
        const timers = new LockTimers({ reproposeIntervalMs: REPROPOSE_MS, dueBatchMax: 1_000 });
        const scan = new ScanTimers();
        let nowMs = 0;
        ops.forEach((op, i) => {
          const index = logIndex(i + 2);
          if (op.kind === 'advance') nowMs += op.ms;
          const event = eventOf(op, index, scan, nowMs);
          if (event !== null) timers.applied(index, [event], nowMs);
          expect(byJson(timers.due(nowMs)), `after op ${i} at ${nowMs} ms`).toEqual(
            byJson(scan.due(nowMs)),
          );
          expect(timers.size).toBe(scan.deadlines.size);
        });
      }),
      { numRuns: 300 },
    );
  });

  it('a rebuild of the heap (after many replaced deadlines) keeps a proposed command waiting its repropose interval', () => {
    const timers = new LockTimers({ reproposeIntervalMs: REPROPOSE_MS, dueBatchMax: 10 });
    const refresh = (index: number, session: number, ttlMs: number, nowMs: number) =>
      timers.applied(
        logIndex(index),
        [{ type: 'sessionRefreshed', sessionId: sessionId(session), ttlMs }],
        nowMs,
      );
    refresh(2, 1, 10, 0);
    expect(timers.due(10)).toHaveLength(1);
    // Session 2 refreshed 500 times: 499 stale heap items, far past the rebuild bound.
    for (let i = 0; i < 500; i++) refresh(3 + i, 2, 10_000, 10);
    expect(timers.due(10 + REPROPOSE_MS - 1)).toEqual([]);
    expect(timers.due(10 + REPROPOSE_MS)).toHaveLength(1);
  });

  it('with a small batch, returns the earliest deadlines first', () => {
    const timers = new LockTimers({ reproposeIntervalMs: REPROPOSE_MS, dueBatchMax: 2 });
    const ttls = [300, 100, 400, 200];
    for (const [i, ttlMs] of ttls.entries()) {
      timers.applied(
        logIndex(i + 2),
        [{ type: 'sessionRefreshed', sessionId: sessionId(i + 1), ttlMs }],
        0,
      );
    }
    const ids = (commands: LockCommand[]) =>
      commands.map((command) => (command.type === 'ExpireSession' ? Number(command.sessionId) : 0));
    expect(ids(timers.due(1_000))).toEqual([2, 4]);
    expect(ids(timers.due(1_000))).toEqual([1, 3]);
    expect(timers.due(1_000)).toEqual([]);
    expect(ids(timers.due(1_000 + REPROPOSE_MS))).toEqual([2, 4]);
  });
});
