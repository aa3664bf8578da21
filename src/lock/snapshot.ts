import {
  BEHAVIOUR_BASE,
  BEHAVIOUR_MULTI_LOCK,
  BEHAVIOUR_SEMAPHORES_ELECTIONS,
} from './behaviour.ts';
import type { LockLimits } from './limits.ts';
import { acquireKey, type Grant } from './records.ts';
import { plainRemembered, type RememberedResult } from './remembered.ts';
import type { LockResult, Waiter } from './types.ts';

/**
 * The lock state machine's snapshot formats, oldest to newest, and how an older one is
 * read as the newest shape. Which format a state is written in follows its behaviour
 * version (LockStateMachine.snapshot), so that a binary that cannot read a state refuses
 * its snapshot rather than misread it.
 */

/**
 * Plain data, in a canonical order: two replicas at one index produce equal snapshots.
 * Version 4 is version 3 plus the behaviour version (behaviour.ts), and is written only
 * once that was raised: until then a snapshot is version 3, which binaries older than
 * behaviour versions read (they refuse any later version), so they can still be sent one
 * during a rolling upgrade. An old binary handed a version 4 stops, as it must: it would
 * apply the entries after it by the base rules.
 */
export type LockSnapshot = LockSnapshotV3 | LockSnapshotV4 | LockSnapshotV5 | LockSnapshotV6;

/**
 * Version 6 is version 5 at BEHAVIOUR_SEMAPHORES_ELECTIONS or later (issue 17): a lock
 * entry may carry its record's `kind` and a semaphore's `limit`, and grants and queue
 * places their `permits` or `value` (each key only where it applies). Written only once
 * that behaviour is in force, so that a binary that knows only version 5 refuses it
 * rather than read a semaphore as a shared lock.
 */
export interface LockSnapshotV6 extends Omit<LockSnapshotV5, 'version' | 'locks'> {
  readonly version: 6;
  readonly locks: readonly SnapshotLockV6[];
}

/** A lock entry of version 6: version 3's, and for a semaphore or election its kind. */
export type SnapshotLockV6 = LockSnapshotV3['locks'][number] & {
  readonly kind?: 'semaphore' | 'election';
  readonly limit?: number;
};

/**
 * Version 5 is version 4 at BEHAVIOUR_MULTI_LOCK or later (issue 17): grants and queue
 * places may carry their set's names (`lockSet`), and the rules locksPerAcquireMax and
 * deadlockCheckStepsMax. Written only once that behaviour is in force, so that a binary
 * that knows only version 4 refuses it rather than drop the sets.
 */
export interface LockSnapshotV5 extends Omit<LockSnapshotV4, 'version'> {
  readonly version: 5;
}

export interface LockSnapshotV4 extends Omit<LockSnapshotV3, 'version'> {
  readonly version: 4;
  /** Above BEHAVIOUR_BASE (a snapshot at the base is version 3). Before `dedupe`, which must be last. */
  readonly behaviour: number;
}

/**
 * Version 3 adds the rules set through the log and the index of the SetRules entry that
 * set them, both null while none has applied (then each machine applies the rules it
 * started with, its node's file), and the counts that lowered rules left above a limit.
 * Its behaviour version is the base.
 */
export interface LockSnapshotV3 {
  readonly version: 3;
  readonly appliedIndex: number;
  readonly rules: LockLimits | null;
  readonly rulesSetIndex: number | null;
  readonly carriedOver: CarriedOver;
  readonly sessions: readonly SnapshotSession[];
  readonly locks: readonly {
    readonly name: string;
    readonly holders: readonly Grant[];
    readonly waiters: readonly Waiter[];
    readonly delays: readonly { readonly index: number; readonly delayMs: number }[];
  }[];
  /**
   * Remembered results, oldest first. A taken snapshot shares the window's records, some
   * of them compact ones (remembered.ts, OneAttempt): read them through the interface.
   * They encode (msgpackr, JSON) as their literal form; structuredClone would not keep
   * them, so copy a snapshot with plainLockSnapshot.
   */
  readonly dedupe: readonly (readonly [string, RememberedResult])[];
}

/**
 * What nodes wrote before version 3: version 2 kept every lock-delay of a lock
 * (version 1 kept one), the request id of each grant, and the latest attempt of each
 * remembered request. `restore` still reads both, with the machine's start rules in force.
 */
export type LockSnapshotV2 = Omit<
  LockSnapshotV3,
  'version' | 'rules' | 'rulesSetIndex' | 'carriedOver'
> & {
  readonly version: 2;
};

/**
 * Counts that lowered rules left above a limit (SetRules ends nothing that exists): the
 * invariant is that nothing was added past the limit in force when it was added.
 */
export interface CarriedOver {
  readonly sessions: number;
  readonly locks: number;
  readonly waitersPerLock: number;
}

/** What nodes wrote before version 2; `restore` still reads it. */
export interface LockSnapshotV1 {
  readonly version: 1;
  readonly appliedIndex: number;
  readonly sessions: readonly SnapshotSession[];
  readonly locks: readonly {
    readonly name: string;
    readonly holders: readonly Omit<Grant, 'requestId' | 'alsoFor'>[];
    readonly waiters: readonly Waiter[];
    readonly delay: { readonly index: number; readonly delayMs: number } | null;
  }[];
  readonly dedupe: readonly (readonly [string, LockResult])[];
}

export interface SnapshotSession {
  readonly id: number;
  readonly ttlMs: number;
  readonly clientName: string;
  readonly lastRefreshIndex: number;
  /** Written only when not '' (anonymous), so snapshots without identities stay as they were. */
  readonly identity?: string;
}

/**
 * Any version in version 4's shape: before version 4 the behaviour was the base, and
 * before version 3 no rules were set through the log, so the restoring machine's start
 * rules (its node's file, as then) stay in force.
 */
export function upgradeSnapshot(
  saved: LockSnapshot | LockSnapshotV2 | LockSnapshotV1,
): LockSnapshotV4 | LockSnapshotV5 | LockSnapshotV6 {
  if (saved.version === 4 || saved.version === 5 || saved.version === 6) return saved;
  if (saved.version === 3) return { ...saved, version: 4, behaviour: BEHAVIOUR_BASE };
  const v2 = saved.version === 1 ? upgradeSnapshotV1(saved) : saved;
  return {
    ...v2,
    version: 4,
    behaviour: BEHAVIOUR_BASE,
    rules: null,
    rulesSetIndex: null,
    carriedOver: NOTHING_CARRIED_OVER,
  };
}

/** Which behaviour versions a snapshot of `version` is written at (see snapshot()). */
export function snapshotHolds(version: number, behaviour: number): boolean {
  if (version < 4) return behaviour === BEHAVIOUR_BASE;
  if (version === 4) return behaviour > BEHAVIOUR_BASE && behaviour < BEHAVIOUR_MULTI_LOCK;
  if (version === 5) {
    return behaviour >= BEHAVIOUR_MULTI_LOCK && behaviour < BEHAVIOUR_SEMAPHORES_ELECTIONS;
  }
  return behaviour >= BEHAVIOUR_SEMAPHORES_ELECTIONS;
}

export const NOTHING_CARRIED_OVER: CarriedOver = Object.freeze({
  sessions: 0,
  locks: 0,
  waitersPerLock: 0,
});

/**
 * A version 1 snapshot in version 2's shape. Its one lock-delay becomes a list of one.
 * Its grants did not record their request ('' matches no request, so a Withdraw gives
 * none of them back) nor the latest attempt of a request (0 matches no attempt, so a
 * Withdraw of those requests is Stale): both err towards keeping a grant, which its
 * session still ends. Version 1 left a waiter's remembered Queued in place after the
 * wait ended; such an entry is forgotten, as if it had left the window.
 */
function upgradeSnapshotV1(saved: LockSnapshotV1): LockSnapshotV2 {
  const waits = new Set<string>();
  for (const lock of saved.locks) {
    for (const waiter of lock.waiters) waits.add(acquireKey(waiter.sessionId, waiter.requestId));
  }
  const dedupe: (readonly [string, RememberedResult])[] = [];
  for (const [key, result] of saved.dedupe) {
    const endedWait = result.type === 'Queued' && key.startsWith('Acquire/') && !waits.has(key);
    if (!endedWait) dedupe.push([key, { result, openAttempts: [] }]);
  }
  return {
    version: 2,
    appliedIndex: saved.appliedIndex,
    sessions: saved.sessions,
    locks: saved.locks.map(({ delay, holders, ...lock }) => ({
      ...lock,
      holders: holders.map((grant) => ({ ...grant, requestId: '', alsoFor: [] })),
      delays: delay === null ? [] : [delay],
    })),
    dedupe,
  };
}

/** `snapshot` as plain data, a deep copy: its remembered results in their literal form. */
export function plainLockSnapshot(snapshot: LockSnapshot): LockSnapshot {
  const dedupe = snapshot.dedupe.map(
    ([key, remembered]) => [key, plainRemembered(remembered)] as const,
  );
  return structuredClone({ ...snapshot, dedupe });
}
