/**
 * Review of sm-diet (adversarial), scripted interleavings for the aliasing the branch
 * could introduce and random logs rarely reach: shared frozen empty queues and delays
 * drained and refilled on several locks at once (some restored), one in-memory snapshot
 * object restored into two machines that then diverge (src/tools/simulate/replica.ts hands
 * snapshot objects over), a snapshot captured before later entries (the snapshotter
 * encodes it in slices while entries apply), a version 1 snapshot restored and then
 * retried and withdrawn, and semaphores and elections restored mid-queue. Each step is
 * compared with 0a70385's machine (results, events, snapshot bytes, describe, retries).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { LockStateMachine } from '../../src/lock/index.ts';
import { decodeLockSnapshot, encodeLockSnapshot } from '../../src/node/entry-codec.ts';
import {
  extractLockSources,
  hexSnapshot,
  importLockStateMachine,
  type Machine,
  type MachineClass,
} from '../support/lock-machine-diff.ts';

const BEFORE = '0a70385';
const dir = extractLockSources(BEFORE, 'dlm-smd-alias-');

const LIMITS = { dedupeWindowMax: 64, waitersPerLockMax: 8, lockDelayMs: 0 };
const NAMES = ['a', 'b', 'c', 's', 'e'];

/** The old machine and the branch's, fed the same entries and compared after each. */
class Pair {
  index = 0;
  constructor(
    readonly old: Machine,
    public now: Machine,
  ) {}

  apply(command: Record<string, unknown>, proposalId: string | null = null): Machine {
    this.index += 1;
    const o = this.old.apply(this.index, command, proposalId ?? `p${this.index}`);
    const n = this.now.apply(this.index, command, proposalId ?? `p${this.index}`);
    expect(JSON.stringify(n), `entry ${this.index} ${JSON.stringify(command)}`).toBe(
      JSON.stringify(o),
    );
    this.now.checkInvariants();
    this.compare(`after entry ${this.index}`);
    return o.result;
  }

  compare(what: string, commands: readonly Record<string, unknown>[] = []): void {
    expect(hexSnapshot(this.now), what).toBe(hexSnapshot(this.old));
    for (const name of NAMES) {
      expect(JSON.stringify(this.now.describe(name)), `${what} describe ${name}`).toBe(
        JSON.stringify(this.old.describe(name)),
      );
    }
    for (const c of commands) {
      expect(JSON.stringify(this.now.requestStatus(c)), what).toBe(
        JSON.stringify(this.old.requestStatus(c)),
      );
    }
  }

  open(): number {
    const r = this.apply({
      type: 'OpenSession',
      ttlMs: 10_000,
      clientName: 'c',
      requestId: `open-${this.index + 1}`,
    });
    return r.sessionId as number;
  }
}

function acquire(
  sessionId: number,
  lock: string,
  requestId: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    type: 'Acquire',
    lock,
    sessionId,
    mode: 'exclusive',
    waitMs: 1000,
    requestId,
    owner: 'o',
    maxHoldMs: 0,
    lockDelayMs: 100,
    ...extra,
  };
}

describe.skipIf(dir === null)('sm-diet review: aliasing probes against 0a70385', () => {
  let Old: MachineClass;
  beforeAll(async () => {
    Old = await importLockStateMachine(dir as string);
  });

  const pair = (): Pair => new Pair(new Old(LIMITS), new LockStateMachine(LIMITS));

  it('queues and delays of several locks drained to the shared empty arrays and refilled, across restores', () => {
    for (const via of ['memory', 'codec'] as const) {
      const p = pair();
      p.apply({ type: 'SetBehaviour', version: 5 });
      const [s1, s2, s3, s4] = [p.open(), p.open(), p.open(), p.open()];
      const commands: Record<string, unknown>[] = [];
      const run = (c: Record<string, unknown>) => {
        if (c.type === 'Acquire' || c.type === 'AcquireAll') commands.push(c);
        return p.apply(c);
      };
      run(acquire(s1, 'a', 'r1'));
      run(acquire(s1, 'b', 'r2'));
      run(acquire(s2, 'a', 'r3'));
      run(acquire(s3, 'b', 'r4'));
      run(acquire(s4, 'a', 'r5', { mode: 'shared' }));
      // Restore with two own queues, then the old machine goes on without restoring.
      const snapshot = p.now.snapshot();
      const restored = new LockStateMachine(LIMITS);
      restored.restore(
        via === 'memory' ? snapshot : decodeLockSnapshot(encodeLockSnapshot(snapshot)),
      );
      p.now = restored;
      p.compare('restored', commands);
      // s1 expires: both locks get a delay (own arrays), their heads wait behind it.
      const last = p.old.session(s1).lastRefreshIndex;
      run({ type: 'ExpireSession', sessionId: s1, lastRefreshIndex: last });
      const captured = p.now.snapshot();
      const capturedHex = Buffer.from(encodeLockSnapshot(captured)).toString('hex');
      const delayA = p.old.describe('a').delays[0].index;
      run({ type: 'LockDelayEnded', lock: 'a', delayIndex: delayA });
      run({ type: 'LockDelayEnded', lock: 'b', delayIndex: delayA });
      run({ type: 'Promote', lock: 'a', afterIndex: p.index });
      run({ type: 'CancelWait', lock: 'a', sessionId: s4, requestId: 'r5' });
      // Queues empty again (shared arrays); refill both, in the other order.
      run(acquire(s4, 'b', 'r6'));
      run(acquire(s3, 'a', 'r7'));
      run(acquire(s4, 'c', 'r8', { waitMs: 0 }));
      run(acquire(s2, 'c', 'r9'));
      expect(Buffer.from(encodeLockSnapshot(captured)).toString('hex'), 'captured snapshot').toBe(
        capturedHex,
      );
      // Another restore, from the restored machine's own snapshot, then sessions end.
      const again = new LockStateMachine(LIMITS);
      again.restore(
        via === 'memory'
          ? p.now.snapshot()
          : decodeLockSnapshot(encodeLockSnapshot(p.now.snapshot())),
      );
      p.now = again;
      p.compare('restored again', commands);
      for (const c of [...commands]) p.apply(c); // every retry, answered from memory or applied
      run({ type: 'CloseSession', sessionId: s2, requestId: 'close-2' });
      run({
        type: 'ExpireSession',
        sessionId: s3,
        lastRefreshIndex: p.old.session(s3).lastRefreshIndex,
      });
      for (const c of [...commands]) p.apply(c);
      p.compare('end', commands);
    }
  });

  it('one in-memory snapshot restored into two machines that then diverge', () => {
    const base = pair();
    base.apply({ type: 'SetBehaviour', version: 5 });
    const [s1, s2, s3] = [base.open(), base.open(), base.open()];
    base.apply(acquire(s1, 'a', 'r1'));
    base.apply(acquire(s2, 'a', 'r2'), 'shared-proposal');
    base.apply(acquire(s2, 'a', 'r2'), 'shared-proposal');
    base.apply(acquire(s3, 'a', 'r3'));
    base.apply({
      type: 'AcquireAll',
      sessionId: s3,
      locks: [
        { lock: 'b', mode: 'exclusive' },
        { lock: 'c', mode: 'shared' },
      ],
      waitMs: 1000,
      requestId: 'r4',
      owner: 'o',
      maxHoldMs: 0,
      lockDelayMs: 0,
    });
    base.apply({
      type: 'AcquirePermits',
      lock: 's',
      sessionId: s1,
      permits: 2,
      limit: 2,
      waitMs: 1000,
      requestId: 'r5',
      owner: 'o',
      maxHoldMs: 0,
      lockDelayMs: 0,
    });
    base.apply({
      type: 'AcquirePermits',
      lock: 's',
      sessionId: s2,
      permits: 1,
      limit: 2,
      waitMs: 1000,
      requestId: 'r6',
      owner: 'o',
      maxHoldMs: 0,
      lockDelayMs: 0,
    });
    base.apply({
      type: 'Campaign',
      lock: 'e',
      sessionId: s2,
      value: 'v2',
      waitMs: 1000,
      requestId: 'r7',
      owner: 'o',
      maxHoldMs: 0,
      lockDelayMs: 0,
    });
    base.apply({
      type: 'Campaign',
      lock: 'e',
      sessionId: s1,
      value: 'v1',
      waitMs: 1000,
      requestId: 'r8',
      owner: 'o',
      maxHoldMs: 0,
      lockDelayMs: 0,
    });
    const shared = base.now.snapshot();
    const oldShared = base.old.snapshot();
    const left = new Pair(new Old(LIMITS), new LockStateMachine(LIMITS));
    const right = new Pair(new Old(LIMITS), new LockStateMachine(LIMITS));
    for (const side of [left, right]) {
      side.old.restore(oldShared);
      side.now.restore(shared);
      side.index = base.index;
    }
    // Left: s1 expires (frees a, s, and its candidacy); right: s2 withdraws and releases.
    left.apply({
      type: 'ExpireSession',
      sessionId: s1,
      lastRefreshIndex: left.old.session(s1).lastRefreshIndex,
    });
    right.apply({ type: 'Withdraw', lock: 'a', sessionId: s2, requestId: 'r2', attemptIndex: 6 });
    right.apply({ type: 'Withdraw', lock: 'a', sessionId: s2, requestId: 'r2', attemptIndex: 7 });
    right.apply({
      type: 'Proclaim',
      lock: 'e',
      sessionId: s2,
      token: 12,
      value: 'v2b',
      requestId: 'pr',
    });
    right.apply({ type: 'Release', lock: 'e', sessionId: s2, token: 12, requestId: 'rel-e' });
    left.apply({ type: 'Promote', lock: 'a', afterIndex: left.index });
    left.apply({ type: 'Revoke', lock: 'b', reason: 'op' });
    right.apply({ type: 'Revoke', lock: 'a', reason: 'op' });
    for (const side of [left, right]) {
      for (const name of NAMES) {
        for (const d of side.old.describe(name).delays) {
          side.apply({ type: 'LockDelayEnded', lock: name, delayIndex: d.index });
        }
        side.apply({ type: 'Promote', lock: name, afterIndex: side.index });
      }
    }
    // The snapshot they both restored from is as it was.
    expect(Buffer.from(encodeLockSnapshot(shared)).toString('hex')).toBe(
      Buffer.from(encodeLockSnapshot(oldShared)).toString('hex'),
    );
    base.compare('the machine the snapshot came from');
  });

  it('a version 1 snapshot restored, then retried, withdrawn, expired and drained', () => {
    const v1 = {
      version: 1,
      appliedIndex: 20,
      sessions: [
        { id: 1, ttlMs: 10_000, clientName: 'c', lastRefreshIndex: 1 },
        { id: 2, ttlMs: 10_000, clientName: 'c', lastRefreshIndex: 2 },
        { id: 3, ttlMs: 10_000, clientName: 'c', lastRefreshIndex: 3 },
      ],
      locks: [
        {
          name: 'a',
          holders: [
            {
              sessionId: 1,
              owner: 'o',
              mode: 'shared',
              token: 4,
              requestIndex: 4,
              maxHoldMs: 0,
              lockDelayMs: 50,
            },
          ],
          waiters: [
            {
              sessionId: 2,
              owner: 'o',
              mode: 'exclusive',
              requestIndex: 5,
              requestId: 'q2',
              waitMs: 1000,
              maxHoldMs: 0,
              lockDelayMs: 0,
            },
          ],
          delay: null,
        },
        {
          name: 'b',
          holders: [],
          waiters: [
            {
              sessionId: 3,
              owner: 'o',
              mode: 'shared',
              requestIndex: 7,
              requestId: 'q3',
              waitMs: 1000,
              maxHoldMs: 0,
              lockDelayMs: 0,
            },
          ],
          delay: { index: 6, delayMs: 100 },
        },
      ],
      dedupe: [
        [
          'Acquire/1/q1',
          {
            type: 'Acquired',
            lock: 'a',
            token: 4,
            mode: 'shared',
            holders: [{ sessionId: 1, owner: 'o', mode: 'shared', token: 4, requestIndex: 4 }],
          },
        ],
        ['Acquire/2/q2', { type: 'Queued', lock: 'a', position: 0 }],
        ['Acquire/3/q3', { type: 'Queued', lock: 'b', position: 0 }],
        ['Acquire/3/gone', { type: 'Queued', lock: 'b', position: 1 }],
      ],
    };
    const p = pair();
    p.old.restore(structuredClone(v1));
    p.now.restore(structuredClone(v1));
    p.index = 20;
    p.compare('restored v1');
    const q1 = acquire(1, 'a', 'q1', { mode: 'shared' });
    const q2 = acquire(2, 'a', 'q2');
    const q3 = acquire(3, 'b', 'q3', { mode: 'shared' });
    p.apply(q1);
    p.apply(q2);
    p.apply(q3);
    p.apply({ type: 'Withdraw', lock: 'a', sessionId: 2, requestId: 'q2', attemptIndex: 22 });
    p.apply({ type: 'LockDelayEnded', lock: 'b', delayIndex: 6 });
    p.apply({ type: 'ExpireSession', sessionId: 1, lastRefreshIndex: 1 });
    p.apply(q2);
    p.apply(q3);
    p.apply({ type: 'LockDelayEnded', lock: 'a', delayIndex: p.index - 2 });
    p.apply(acquire(3, 'a', 'q4'));
    p.apply(q2);
    p.compare('end', [q1, q2, q3]);
  });
});
