/**
 * Atomic multi-lock and deadlock detection in the lock state machine (issue 17, items 1
 * and 2): the deterministic cases, the behaviour gate and the snapshot format.
 */
import { describe, expect, it } from 'vitest';
import {
  BEHAVIOUR_MULTI_LOCK,
  BEHAVIOUR_VERSIONED,
  BehaviourUnsupportedError,
  type LockResult,
  LockStateMachine,
  MULTI_LOCK_LIMIT_DEFAULTS,
} from '../../src/lock/index.ts';
import type { LogIndex, SessionId } from '../../src/util/ids.ts';
import { SetLog, tokenOfSet } from './multi-lock-log.ts';

function rejection(result: LockResult): Extract<LockResult, { type: 'Rejected' }> {
  if (result.type !== 'Rejected') throw new Error(`not rejected: ${JSON.stringify(result)}`);
  return result;
}

describe('AcquireAll', () => {
  it('grants every lock at once, with one token, and a Release of any frees the set', () => {
    const log = new SetLog();
    const a = log.open();
    const granted = log.acquireAll(a, ['y', { lock: 'x', mode: 'shared' }]);
    expect(granted).toMatchObject({
      type: 'AcquiredAll',
      token: log.index,
      locks: [
        { lock: 'x', mode: 'shared' },
        { lock: 'y', mode: 'exclusive' },
      ],
    });
    expect(log.sm.describe('x').holders[0]).toMatchObject({ lockSet: ['x', 'y'] });
    expect(log.release(a, 'y', tokenOfSet(granted))).toEqual({
      type: 'Released',
      lock: 'y',
      lockSet: ['x', 'y'],
    });
    expect(log.sm.lockCount).toBe(0);
  });

  it('waits holding nothing, keeps its place in every queue, and is granted whole', () => {
    const log = new SetLog();
    const [a, b, c] = [log.open(), log.open(), log.open()];
    const x = tokenOfSet(log.acquire(a, 'x'));
    expect(log.acquireAll(b, ['x', 'y'])).toEqual({
      type: 'QueuedAll',
      locks: [
        { lock: 'x', position: 0 },
        { lock: 'y', position: 0 },
      ],
    });
    // y is free, but b holds nothing while it waits: c queues behind it (FIFO).
    expect(log.holderIds('y')).toEqual([]);
    expect(log.acquire(c, 'y')).toEqual({ type: 'Queued', lock: 'y', position: 1 });
    log.release(a, 'x', x);
    expect(log.holderIds('x')).toEqual([b]);
    expect(log.holderIds('y')).toEqual([b]);
    expect(log.sm.describe('y').holders[0]?.token).toBe(log.index);
    expect(log.waiterIds('y')).toEqual([c]);
  });

  it('two sessions taking overlapping sets in opposite orders 1,000 times never deadlock', () => {
    const log = new SetLog();
    const [a, b] = [log.open(), log.open()];
    let grants = 0;
    let lastToken = 0;
    for (let round = 0; round < 1_000; round++) {
      // Who asks first alternates; each names the locks in its own order.
      const [first, second] = round % 2 === 0 ? [a, b] : [b, a];
      const one = log.acquireAll(first, first === a ? ['x', 'y', 'z'] : ['z', 'y', 'x']);
      const two = log.acquireAll(second, second === a ? ['x', 'y'] : ['y', 'x']);
      expect(one.type).toBe('AcquiredAll');
      expect(two.type).toBe('QueuedAll');
      log.release(first, 'x', tokenOfSet(one));
      // The waiting set was granted by the release, whole, with a higher token.
      const held = log.sm.describe('y').holders;
      expect(held.map((holder) => holder.sessionId)).toEqual([second]);
      expect(log.holderIds('x')).toEqual([second]);
      expect(held[0]?.token).toBeGreaterThan(lastToken);
      lastToken = held[0]?.token ?? 0;
      log.release(second, 'y', lastToken);
      grants += 2;
    }
    expect(grants).toBe(2_000);
    expect(log.sm.lockCount).toBe(0);
  });

  it('refuses a set over its bound, a lock named twice and a mode that is none, naming each', () => {
    const log = new SetLog({}, {});
    const a = log.open();
    const many = Array.from(
      { length: MULTI_LOCK_LIMIT_DEFAULTS.locksPerAcquireMax + 1 },
      (_, k) => `l${k}`,
    );
    expect(rejection(log.acquireAll(a, many))).toMatchObject({
      code: 'invalidArgument',
      field: 'locks',
      detail: `locks must name 1 to ${MULTI_LOCK_LIMIT_DEFAULTS.locksPerAcquireMax} locks (locksPerAcquireMax), got ${many.length}`,
    });
    expect(rejection(log.acquireAll(a, []))).toMatchObject({ field: 'locks' });
    expect(rejection(log.acquireAll(a, ['x', 'y', 'x']))).toMatchObject({ field: 'locks[2].lock' });
    expect(
      rejection(log.acquireAll(a, [{ lock: 'x', mode: 'upgradable' as 'shared' }])),
    ).toMatchObject({ field: 'locks[0].mode' });
    const ruled = new SetLog({ locksPerAcquireMax: 2 });
    const b = ruled.open();
    expect(rejection(ruled.acquireAll(b, ['x', 'y', 'z'])).detail).toContain(
      '(locksPerAcquireMax), got 3',
    );
  });

  it('refuses a set overlapping what the session holds, and re-tells the very set', () => {
    const log = new SetLog();
    const a = log.open();
    const first = log.acquireAll(a, ['x', 'y']);
    expect(log.acquireAll(a, ['y', 'x'])).toMatchObject({
      type: 'AcquiredAll',
      token: tokenOfSet(first),
    });
    expect(rejection(log.acquireAll(a, ['x', 'z']))).toMatchObject({ code: 'alreadyHolding' });
    expect(rejection(log.acquireAll(a, [{ lock: 'x', mode: 'shared' }, 'y'])).code).toBe(
      'alreadyHolding',
    );
  });
});

describe('deadlock detection', () => {
  it('refuses the wait that closes a cycle of three sessions, naming it', () => {
    const log = new SetLog();
    const [s1, s2, s3] = [log.open(), log.open(), log.open()];
    log.acquire(s1, 'a');
    log.acquire(s2, 'b');
    log.acquire(s3, 'c');
    expect(log.acquire(s1, 'b').type).toBe('Queued');
    expect(log.acquire(s2, 'c').type).toBe('Queued');
    const refused = rejection(log.acquire(s3, 'a'));
    expect(refused.code).toBe('deadlock');
    expect(refused.cycle).toEqual([
      { waiter: s3, lock: 'a', blocker: s1, blockerHolds: true },
      { waiter: s1, lock: 'b', blocker: s2, blockerHolds: true },
      { waiter: s2, lock: 'c', blocker: s3, blockerHolds: true },
    ]);
    expect(refused.detail).toBe(
      `waiting would close a wait-for cycle, so nothing was queued: session ${s3} waits for "a" held by session ${s1}, session ${s1} waits for "b" held by session ${s2}, session ${s2} waits for "c" held by session ${s3}`,
    );
    // Nothing changed: s3 still waits for nothing.
    expect(log.sm.session(s3)?.waiting).toEqual([]);
    // Taking the locks one by one in opposite orders is refused, not left to a TTL.
    const other = new SetLog();
    const [p, q] = [other.open(), other.open()];
    other.acquire(p, 'x');
    other.acquire(q, 'y');
    expect(other.acquire(p, 'y').type).toBe('Queued');
    expect(rejection(other.acquire(q, 'x')).code).toBe('deadlock');
  });

  it('counts waiters ahead in the queue as blockers, whatever their modes', () => {
    const log = new SetLog();
    const [h, w, s] = [log.open(), log.open(), log.open()];
    log.acquire(h, 'm', 'shared');
    log.acquire(s, 'n');
    // w waits for the set {m, n} at the head of m's queue (n is held by s).
    expect(log.acquireAll(w, [{ lock: 'm', mode: 'shared' }, 'n']).type).toBe('QueuedAll');
    // s asks m shared: compatible with the holder h, but it queues behind w, which waits
    // for n, which s holds.
    const refused = rejection(log.acquire(s, 'm', 'shared'));
    expect(refused.cycle).toEqual([
      { waiter: s, lock: 'm', blocker: w, blockerHolds: false },
      { waiter: w, lock: 'n', blocker: s, blockerHolds: true },
    ]);
  });

  it('refuses a check past deadlockCheckStepsMax rather than queue it unchecked', () => {
    const log = new SetLog({ deadlockCheckStepsMax: 3 });
    const [owner, x, ...queued] = Array.from({ length: 6 }, () => log.open()) as SessionId[];
    log.acquire(owner as SessionId, 'a');
    for (const each of queued) log.acquire(each, 'a');
    // x holds b, so someone may wait for it: its wait for a is checked, over the holder
    // of a and the 4 places ahead of it (5 steps), past the bound of 3.
    log.acquire(x as SessionId, 'b');
    const refused = rejection(log.acquire(x as SessionId, 'a'));
    expect(refused.code).toBe('limitReached');
    expect(refused.detail).toContain('deadlockCheckStepsMax (3)');
  });
});

describe('the behaviour gate', () => {
  it('below the raise, AcquireAll is refused as the release before refused it', () => {
    const log = new SetLog({}, { raise: false });
    const a = log.open();
    expect(log.acquireAll(a, ['x'])).toEqual({
      type: 'Rejected',
      code: 'invalidArgument',
      detail: 'unknown command type "AcquireAll"',
    });
    expect(log.sm.ownerRefusal(log.setCommand(a, ['x']))).toBeNull();
    expect(log.sm.lockCount).toBe(0);
  });

  it('below the raise, rules with the new limits are refused and cycles are not looked for', () => {
    const log = new SetLog({}, { raise: false });
    const rules = { ...log.sm.rules, locksPerAcquireMax: 4 };
    expect(log.apply({ type: 'SetRules', rules, onlyIfUnset: false })).toEqual({
      type: 'Rejected',
      code: 'invalidArgument',
      detail: 'rules.locksPerAcquireMax is not a lock limit',
      field: 'rules.locksPerAcquireMax',
    });
    const [p, q] = [log.open(), log.open()];
    log.acquire(p, 'x');
    log.acquire(q, 'y');
    log.acquire(p, 'y');
    expect(log.acquire(q, 'x')).toEqual({ type: 'Queued', lock: 'x', position: 0 });
    log.apply({ type: 'SetBehaviour', version: BEHAVIOUR_MULTI_LOCK });
    expect(log.apply({ type: 'SetRules', rules, onlyIfUnset: false }).type).toBe('RulesSet');
    expect(log.sm.rules.locksPerAcquireMax).toBe(4);
  });
});

describe('snapshots of sets', () => {
  it('are version 5 from the raise, round-trip, and a binary below it refuses them', () => {
    const log = new SetLog({ locksPerAcquireMax: 3 });
    const [a, b] = [log.open(), log.open()];
    log.acquireAll(a, ['x', 'y']);
    log.acquireAll(b, ['y', 'z']);
    const snapshot = log.sm.snapshot();
    expect(snapshot).toMatchObject({ version: 5, behaviour: BEHAVIOUR_MULTI_LOCK });
    const text = JSON.stringify(snapshot);
    const copy = new LockStateMachine({ locksPerAcquireMax: 3 });
    copy.restore(JSON.parse(text));
    copy.checkInvariants();
    expect(JSON.stringify(copy.snapshot())).toBe(text);
    const next = log.setCommand(a, ['z']);
    const index = (log.index + 1) as LogIndex;
    expect(copy.apply(index, next)).toEqual(log.sm.apply(index, next));
    const old = new LockStateMachine({}, { behaviourMax: BEHAVIOUR_VERSIONED });
    expect(() => old.restore(JSON.parse(text))).toThrow(BehaviourUnsupportedError);
    expect(() => copy.restore({ ...JSON.parse(text), version: 4 })).toThrow(/version/);
  });
});
