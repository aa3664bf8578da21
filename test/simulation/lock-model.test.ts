import { describe, expect, it } from 'vitest';
import {
  BEHAVIOUR_MULTI_LOCK,
  type LockClaim,
  type LockCommand,
  type LockMode,
  type LockResult,
  LockStateMachine,
  type RememberedResult,
} from '../../src/lock/index.ts';
import type { CycleSearch } from '../../src/lock/wait-for.ts';
import { INJECTED_BUGS } from '../../src/tools/simulate/bugs.ts';
import { LockModel } from '../../src/tools/simulate/lock-model.ts';
import { SIM_LOCK_LIMITS } from '../../src/tools/simulate/lock-workload.ts';
import {
  fencingToken,
  type LogIndex,
  logIndex,
  nodeId,
  type SessionId,
} from '../../src/util/ids.ts';

/** Each check of the lock model fires on the state it exists to forbid, and only then. */
const n1 = nodeId('n1');

class Run {
  readonly model = new LockModel({ clockDriftMax: 0, dedupeWindowMax: 200, lockDelayMs: 0 });
  index = 0;

  constructor(readonly machine: LockStateMachine = new LockStateMachine(SIM_LOCK_LIMITS)) {}

  apply(command: LockCommand, nowMs: number): LockResult {
    this.index++;
    const output = this.machine.apply(logIndex(this.index), command);
    this.model.applied(logIndex(this.index), command, output, nowMs);
    this.model.checkReplica(n1, this.index, this.machine);
    return output.result;
  }

  open(ttlMs: number, nowMs: number): SessionId {
    const result = this.apply(
      { type: 'OpenSession', ttlMs, clientName: 'c', requestId: `o${this.index}` },
      nowMs,
    );
    if (result.type !== 'SessionOpened') throw new Error(`open: ${JSON.stringify(result)}`);
    return result.sessionId;
  }

  acquire(
    sessionId: SessionId,
    nowMs: number,
    options: { mode?: LockMode; waitMs?: number; requestId?: string } = {},
  ): LockResult {
    return this.apply(
      {
        type: 'Acquire',
        lock: 'a',
        sessionId,
        mode: options.mode ?? 'exclusive',
        waitMs: options.waitMs ?? 0,
        requestId: options.requestId ?? `q${this.index}`,
        owner: '',
        maxHoldMs: 0,
        lockDelayMs: 0,
      },
      nowMs,
    );
  }

  /** Raises the behaviour to the multi-lock rules, as the simulated leader does. */
  multiLock(): this {
    this.apply({ type: 'SetBehaviour', version: BEHAVIOUR_MULTI_LOCK }, 0);
    return this;
  }

  acquireOne(sessionId: SessionId, lock: string, waitMs: number, nowMs: number): LockResult {
    return this.apply(
      {
        type: 'Acquire',
        lock,
        sessionId,
        mode: 'exclusive',
        waitMs,
        requestId: `q${this.index}`,
        owner: '',
        maxHoldMs: 0,
        lockDelayMs: 0,
      },
      nowMs,
    );
  }

  acquireAll(sessionId: SessionId, locks: readonly string[], nowMs: number): LockResult {
    const claims: LockClaim[] = locks.map((lock) => ({ lock, mode: 'exclusive' }));
    return this.apply(
      {
        type: 'AcquireAll',
        locks: claims,
        sessionId,
        waitMs: 1000,
        requestId: `m${this.index}`,
        owner: '',
        maxHoldMs: 0,
        lockDelayMs: 0,
      },
      nowMs,
    );
  }

  releaseOf(sessionId: SessionId, lock: string, token: number, nowMs: number): LockResult {
    return this.apply(
      { type: 'Release', lock, sessionId, token: fencingToken(token), requestId: `r${this.index}` },
      nowMs,
    );
  }

  release(sessionId: SessionId, token: number, nowMs: number): LockResult {
    return this.apply(
      {
        type: 'Release',
        lock: 'a',
        sessionId,
        token: fencingToken(token),
        requestId: `r${this.index}`,
      },
      nowMs,
    );
  }
}

function expire(sessionId: SessionId, lastRefreshIndex: number): LockCommand {
  return { type: 'ExpireSession', sessionId, lastRefreshIndex: lastRefreshIndex as LogIndex };
}

describe('LockModel', () => {
  it('accepts the real state machine: grants, waits, refusals, keepalives, expiry', () => {
    const run = new Run();
    const s1 = run.open(300, 0);
    const s2 = run.open(300, 1);
    expect(run.acquire(s1, 2).type).toBe('Acquired');
    expect(run.acquire(s2, 3).type).toBe('NotAcquired');
    expect(run.acquire(s2, 4, { waitMs: 100 }).type).toBe('Queued');
    expect(run.release(s2, 3, 5).type).toBe('Rejected');
    run.apply({ type: 'KeepAlive', sessionIds: [s2] }, 200);
    // s1 was last refreshed at 0 and its TTL has run: the expiry promotes s2.
    expect(run.apply(expire(s1, 1), 300).type).toBe('SessionExpired');
    expect(run.machine.describe('a').holders[0]?.token).toBe(run.index);
    // s2 was refreshed after the expiry the leader may have timed from its open.
    expect(run.apply(expire(s2, 2), 301).type).toBe('Stale');
  });

  it('an expiry timed from an older refresh than the last one', () => {
    const run = new Run(INJECTED_BUGS.expiresRefreshedSessions.createLockMachine(SIM_LOCK_LIMITS));
    const s1 = run.open(300, 0);
    run.apply({ type: 'KeepAlive', sessionIds: [s1] }, 290);
    expect(() => run.apply(expire(s1, 1), 310)).toThrow(/refreshed at 2/);
  });

  it('a lease ending before its TTL has run from its last refresh', () => {
    const run = new Run();
    const s1 = run.open(300, 0);
    expect(() => run.apply(expire(s1, 1), 299)).toThrow(/Lease: .*expired 299\.0 ms after/);
  });

  it("a waiter's token that is not the granting entry's index", () => {
    const run = new Run(INJECTED_BUGS.tokenFromRequestEntry.createLockMachine(SIM_LOCK_LIMITS));
    const s1 = run.open(300, 0);
    const s2 = run.open(300, 0);
    const granted = run.acquire(s1, 0);
    run.acquire(s2, 0, { waitMs: 100 });
    if (granted.type !== 'Acquired') throw new Error('not granted');
    expect(() => run.release(s1, granted.token, 1)).toThrow(/carries token 4/);
  });

  it('a second exclusive holder', () => {
    class SharesEverything extends LockStateMachine {
      protected override modesCompatible(): boolean {
        return true;
      }
    }
    const run = new Run(new SharesEverything(SIM_LOCK_LIMITS));
    const s1 = run.open(300, 0);
    const s2 = run.open(300, 0);
    run.acquire(s1, 0);
    expect(() => run.acquire(s2, 0)).toThrow(/Mutual exclusion/);
  });

  it('a retried Acquire applied again after its release', () => {
    class ForgetsRequests extends LockStateMachine {
      protected override rememberedResult(): RememberedResult | undefined {
        return undefined;
      }
    }
    const run = new Run(new ForgetsRequests(SIM_LOCK_LIMITS));
    const s1 = run.open(300, 0);
    const granted = run.acquire(s1, 0, { requestId: 'x' });
    if (granted.type !== 'Acquired') throw new Error('not granted');
    run.release(s1, granted.token, 1);
    expect(() => run.acquire(s1, 2, { requestId: 'x' })).toThrow(/Exactly once/);
  });

  it('a replica whose state differs from the model at the same index', () => {
    const run = new Run();
    const s1 = run.open(300, 0);
    run.acquire(s1, 0);
    const behind = new LockStateMachine(SIM_LOCK_LIMITS);
    behind.apply(logIndex(1), {
      type: 'OpenSession',
      ttlMs: 300,
      clientName: 'c',
      requestId: 'o0',
    });
    behind.skipTo(logIndex(2));
    expect(() => run.model.checkReplica(n1, 2, behind)).toThrow(/Lock model: n1 after 2/);
  });

  it('accepts overlapping sets in opposite orders and a real cycle refused as deadlock', () => {
    const run = new Run().multiLock();
    const s1 = run.open(5000, 0);
    const s2 = run.open(5000, 0);
    const s3 = run.open(5000, 0);
    const first = run.acquireAll(s1, ['x', 'y'], 1);
    expect(run.acquireAll(s2, ['y', 'x'], 2).type).toBe('QueuedAll');
    if (first.type !== 'AcquiredAll') throw new Error(`not granted: ${JSON.stringify(first)}`);
    // Releasing one lock of the set frees the set; the waiting set is granted whole.
    run.releaseOf(s1, 'y', first.token, 3);
    expect(run.machine.describe('x').holders[0]?.token).toBe(run.index);
    expect(run.machine.describe('y').holders[0]?.token).toBe(run.index);
    // s2 holds x and y; s3 holds z and waits for x; s2 asking for z closes the cycle.
    run.acquireOne(s3, 'z', 0, 4);
    expect(run.acquireOne(s3, 'x', 1000, 5).type).toBe('Queued');
    const refused = run.acquireOne(s2, 'z', 1000, 6);
    expect(refused).toMatchObject({ type: 'Rejected', code: 'deadlock' });
  });

  it('a deadlock refusal naming a cycle that does not exist', () => {
    class SeesCycles extends LockStateMachine {
      protected override waitCycleOf(
        requester: SessionId,
        claims: readonly LockClaim[],
      ): CycleSearch {
        const lock = claims[0]?.lock ?? '';
        const holder = this.describe(lock).holders[0]?.sessionId ?? requester;
        // Claims the holder waits for the requester, which it does not.
        const cycle = [
          { waiter: requester, lock, blocker: holder, blockerHolds: true },
          { waiter: holder, lock, blocker: requester, blockerHolds: true },
        ];
        return { kind: 'cycle', cycle, steps: 1 };
      }
    }
    const run = new Run(new SeesCycles(SIM_LOCK_LIMITS)).multiLock();
    const s1 = run.open(5000, 0);
    const s2 = run.open(5000, 0);
    run.acquireOne(s1, 'x', 0, 1);
    run.acquireOne(s2, 'y', 0, 2);
    expect(() => run.acquireOne(s2, 'x', 1000, 3)).toThrow(
      /Lock model: .*deadlock hop 1: 2 does not wait for x/,
    );
  });

  it('a waiting set granted only the lock that let it go', () => {
    const run = new Run(
      INJECTED_BUGS.grantsSetLockByLock.createLockMachine(SIM_LOCK_LIMITS),
    ).multiLock();
    const s1 = run.open(5000, 0);
    const s2 = run.open(5000, 0);
    const first = run.acquireAll(s1, ['x', 'y'], 1);
    run.acquireAll(s2, ['x', 'y'], 2);
    if (first.type !== 'AcquiredAll') throw new Error('not granted');
    expect(() => run.releaseOf(s1, 'x', first.token, 3)).toThrow(/Multi-lock: .*partial grant/);
  });
});
