/**
 * rev5 (review of the mem branch): shared holders (HolderMap's several-holder path,
 * collapse back to one, re-insert) keep grant order, and a machine restored from a
 * snapshot at any point then given the rest of the log writes the same bytes as the
 * one that applied it all; the restore in between must also re-encode byte for byte.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LockStateMachine } from '../../src/lock/index.ts';
import {
  decodeLockSnapshot,
  encodeLockSnapshot,
  encodeLockSnapshotInSlices,
} from '../../src/node/entry-codec.ts';
import { logIndex, sessionId } from '../../src/util/ids.ts';

type Step =
  | {
      kind: 'acq';
      s: number;
      lock: number;
      mode: 'shared' | 'exclusive';
      req: number;
      wait: boolean;
    }
  | { kind: 'rel'; s: number; lock: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant('acq' as const),
    s: fc.integer({ min: 1, max: 5 }),
    lock: fc.integer({ min: 0, max: 2 }),
    mode: fc.constantFrom('shared' as const, 'shared' as const, 'exclusive' as const),
    req: fc.integer({ min: 0, max: 3 }),
    wait: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('rel' as const),
    s: fc.integer({ min: 1, max: 5 }),
    lock: fc.integer({ min: 0, max: 2 }),
  }),
);

const NAMES = ['ä-lock', 'b', '𝄞'];

function run(machine: LockStateMachine, at: number, step: Step): void {
  const name = NAMES[step.lock] as string;
  const id = sessionId(step.s);
  try {
    if (step.kind === 'acq') {
      machine.apply(logIndex(at), {
        type: 'Acquire',
        lock: name,
        sessionId: id,
        mode: step.mode,
        waitMs: step.wait ? 60_000 : 0,
        requestId: `r${step.req}-${at % 3}`,
        owner: `ö${step.s}`,
        maxHoldMs: 0,
        lockDelayMs: 0,
      });
    } else {
      const token = machine.describe(name).holders.find((h) => h.sessionId === id)?.token ?? 0;
      machine.apply(logIndex(at), {
        type: 'Release',
        lock: name,
        sessionId: id,
        token: token as never,
        requestId: `rel-${at}`,
      });
    }
  } catch {
    // a rejected command changes nothing
  }
}

function opened(): LockStateMachine {
  const machine = new LockStateMachine();
  for (let i = 1; i <= 5; i++) {
    machine.apply(logIndex(i), {
      type: 'OpenSession',
      ttlMs: 10_000,
      clientName: `c${i}`,
      requestId: `open-${i}`,
    });
  }
  return machine;
}

const noPause = async (): Promise<void> => {};

describe('rev5: shared holders replay byte for byte', () => {
  it('restored at any point, the rest applied: same snapshot bytes, holders in grant order', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { maxLength: 60 }), fc.nat(), async (steps, cut) => {
        const whole = opened();
        const split = opened();
        const at = steps.length === 0 ? 0 : cut % steps.length;
        steps.forEach((step, k) => {
          run(whole, 6 + k, step);
          if (k < at) run(split, 6 + k, step);
        });
        const mid = encodeLockSnapshot(split.snapshot());
        const restored = new LockStateMachine();
        restored.restore(decodeLockSnapshot(mid));
        expect(Buffer.from(encodeLockSnapshot(restored.snapshot())).equals(Buffer.from(mid))).toBe(
          true,
        );
        steps.forEach((step, k) => {
          if (k >= at) run(restored, 6 + k, step);
        });
        const a = Buffer.from(encodeLockSnapshot(whole.snapshot()));
        const b = Buffer.from(await encodeLockSnapshotInSlices(restored.snapshot(), noPause, 1));
        expect(b.equals(a)).toBe(true);
        for (const name of NAMES) {
          const holders = whole.describe(name).holders;
          const tokens = holders.map((h) => Number(h.token));
          expect(tokens).toEqual([...tokens].sort((x, y) => x - y));
        }
      }),
      { numRuns: 400 },
    );
  });
});
