import { assert } from '../util/assert.ts';
import type { LogIndex, SessionId } from '../util/ids.ts';
import type { IdentityQuota } from './identity-quota.ts';
import { type LockLimits, multiLockRule } from './limits.ts';
import {
  compareStrings,
  type Grant,
  internedMode,
  type LockRecord,
  namesOf,
  publicHolder,
  Rejection,
  reject,
  rejectField,
  type SessionRecord,
  toldAlso,
} from './records.ts';
import type { LockClaim, LockCommand, LockEvent, LockMode, LockResult, Waiter } from './types.ts';
import { type CycleSearch, deadlockDetail, type WaitForView } from './wait-for.ts';

/**
 * Atomic multi-lock (issue 17): the AcquireAll command and the rules that keep a lock
 * set whole. A set is granted all at once, by one entry, with one token, or not at all.
 * While it waits it holds none of its locks and has a place in the queue of each, and a
 * queue grants only its head, so a set is granted once it is at the head of every one
 * of its queues and fits each lock's holders. Queues grow in log order, so the oldest
 * waiter anywhere heads every queue it is in: it waits for holders only, and two sets
 * over overlapping names can neither deadlock each other nor starve.
 *
 * Each grant and queue place of a set carries the set's names (`lockSet`), so that any
 * of its locks leads to the others: ending one ends the set (Release, Revoke, max-hold,
 * Withdraw, a wait's end), on every replica alike.
 */

type AcquireAll = Extract<LockCommand, { type: 'AcquireAll' }>;

/** What a grant keeps of the request it answers. */
export type GrantRequest = Pick<
  Waiter,
  | 'owner'
  | 'mode'
  | 'requestIndex'
  | 'requestId'
  | 'maxHoldMs'
  | 'lockDelayMs'
  | 'lockSet'
  | 'permits'
  | 'value'
>;

/** What of the state machine the set rules use; closures over its state and helpers. */
export interface LockSetHost {
  readonly locks: ReadonlyMap<string, LockRecord>;
  readonly sessions: ReadonlyMap<SessionId, SessionRecord>;
  index(): LogIndex;
  rules(): LockLimits;
  requireSession(id: SessionId): SessionRecord;
  /** Refuses (kindMismatch) a set that names a semaphore or an election (kinds.ts). */
  checkKinds(names: readonly string[]): void;
  /** The lock's record, created if it has none (it counts towards locksMax from now on). */
  lockFor(name: string): LockRecord;
  compatible(lock: LockRecord, mode: LockMode): boolean;
  mayGrant(lock: LockRecord): boolean;
  grant(lock: LockRecord, session: SessionRecord, request: GrantRequest): Grant;
  /** Appends `waiter` to the lock's queue and notes the wait (event `queued`). */
  enqueue(lock: LockRecord, session: SessionRecord, waiter: Waiter): void;
  /** Takes the head place out of the queue, as granted (event `waitEnded`). */
  dequeueGranted(lock: LockRecord, session: SessionRecord): Waiter;
  promotionPendingOn(lock: LockRecord): boolean;
  checkText(field: string, value: string, bytesMax: number, limit: string, empty?: boolean): void;
  checkDuration(field: string, value: number, max: number, limit: string): void;
  identityCounts(identity: string): { readonly held: number; readonly waiting: number };
  /** The earlier attempt of a wait whose remembered result left the window. */
  noteEvictedWait(wait: Waiter): void;
  /** The proposal of the entry being applied, when waits record theirs (behaviour 3). */
  attemptProposal(): string | null;
  /** The wait-for search (a test seam of the state machine). */
  findWaitCycle(requester: SessionId, claims: readonly LockClaim[], stepsMax: number): CycleSearch;
  /**
   * The locks of a waiting set that the entry granting it at `at` grants: all of them (a
   * test seam of the state machine).
   */
  grantedTogether(names: readonly string[], at: string): readonly string[];
  emit(event: LockEvent): void;
}

export class LockSets {
  constructor(private readonly host: LockSetHost) {}

  /**
   * The wait-for graph as the search reads it; see wait-for.ts. A wait for a semaphore
   * is no edge (kinds.ts): any holder's release may free it.
   */
  readonly view: WaitForView = {
    waitsOf: (id) =>
      [...(this.host.sessions.get(id)?.waiting ?? [])]
        .filter((name) => this.host.locks.get(name)?.kind !== 'semaphore')
        .sort(compareStrings),
    queueOf: (name) => this.host.locks.get(name)?.waiters ?? [],
    holdersOf: (name) => this.host.locks.get(name)?.holders ?? NO_HOLDERS,
  };

  acquireAll(command: AcquireAll): LockResult {
    const claims = this.checkedClaims(command);
    const names = claims.map((claim) => claim.lock);
    this.host.checkKinds(names);
    const session = this.host.requireSession(command.sessionId);
    const again =
      this.heldAlready(session, claims, command.requestId) ??
      this.waitingAlready(session, claims, command.requestId);
    if (again !== null) return again;
    this.checkLocksMax(names);
    const { requestId, owner, maxHoldMs, lockDelayMs, waitMs, quota } = command;
    const requestIndex = this.host.index();
    const request = { owner, requestIndex, requestId, maxHoldMs, lockDelayMs, lockSet: names };
    if (claims.every((claim) => this.grantableNow(claim))) {
      this.checkQuota(session, quota, claims.length, false);
      for (const { lock, mode } of claims) {
        this.host.grant(this.host.lockFor(lock), session, { ...request, mode });
      }
      return this.acquiredAll(session.id, names);
    }
    if (waitMs === 0) return this.notAcquiredAll(names);
    this.checkQueuesRoom(names);
    this.checkQuota(session, quota, claims.length, true);
    this.checkNoDeadlock(session, claims);
    const proposalId = this.host.attemptProposal();
    for (const { lock, mode } of claims) {
      const waiter: Waiter = {
        sessionId: session.id,
        owner,
        mode,
        requestIndex,
        requestId,
        waitMs,
        maxHoldMs,
        lockDelayMs,
        lockSet: names,
        ...(proposalId === null ? {} : { proposalId }),
      };
      this.host.enqueue(this.host.lockFor(lock), session, waiter);
    }
    return this.queuedAll(session.id, names);
  }

  /** The set's claims in code-unit order of their names, each valid and named once. */
  private checkedClaims(command: AcquireAll): LockClaim[] {
    const rules = this.host.rules();
    const max = multiLockRule(rules, 'locksPerAcquireMax');
    const count = command.locks.length;
    if (count === 0 || count > max) {
      rejectField('locks', `must name 1 to ${max} locks (locksPerAcquireMax), got ${count}`);
    }
    const seen = new Set<string>();
    command.locks.forEach(({ lock, mode }, k) => {
      if (!this.host.locks.has(lock)) {
        this.host.checkText(`locks[${k}].lock`, lock, rules.lockNameBytesMax, 'lockNameBytesMax');
      }
      if (seen.has(lock)) {
        rejectField(
          `locks[${k}].lock`,
          `names ${JSON.stringify(lock)} again: a set names a lock once`,
        );
      }
      seen.add(lock);
      if (mode !== 'exclusive' && mode !== 'shared') {
        rejectField(`locks[${k}].mode`, `must be exclusive or shared, got ${String(mode)}`);
      }
    });
    this.host.checkText('owner', command.owner, rules.ownerBytesMax, 'ownerBytesMax', true);
    this.host.checkDuration('waitMs', command.waitMs, rules.waitMsMax, 'waitMsMax');
    this.host.checkDuration('maxHoldMs', command.maxHoldMs, rules.maxHoldMsMax, 'maxHoldMsMax');
    const { lockDelayMsMax } = rules;
    this.host.checkDuration('lockDelayMs', command.lockDelayMs, lockDelayMsMax, 'lockDelayMsMax');
    return command.locks
      .map(({ lock, mode }) => ({ lock, mode: internedMode(mode) }))
      .sort(compareClaims);
  }

  /**
   * A session that holds the very set (same names, same modes, one grant) is told of it
   * again, as a re-acquire of one lock is. Any other overlap with what it holds is
   * refused: one grant with one token must cover the whole set.
   */
  private heldAlready(
    session: SessionRecord,
    claims: readonly LockClaim[],
    requestId: string,
  ): LockResult | null {
    const held = claims.find((claim) => session.held.has(claim.lock));
    if (held === undefined) return null;
    const grant = this.host.locks.get(held.lock)?.holders.get(session.id);
    assert(grant !== undefined, `session ${session.id} lists ${held.lock} but does not hold it`);
    const names = claims.map((claim) => claim.lock);
    const sameSet =
      sameNames(namesOf(grant, held.lock), names) &&
      claims.every(
        ({ lock, mode }) => this.host.locks.get(lock)?.holders.get(session.id)?.mode === mode,
      );
    if (!sameSet) {
      const within =
        grant.lockSet === undefined ? '' : ` within the set ${JSON.stringify(grant.lockSet)}`;
      reject(
        'alreadyHolding',
        `session ${session.id} holds ${JSON.stringify(held.lock)} ${grant.mode} (token ${grant.token})${within}; release it before asking for it in this set`,
      );
    }
    this.retell(session.id, held.lock, toldAlso(grant, requestId));
    return this.acquiredAll(session.id, names);
  }

  /**
   * The set's own retry, whose remembered result left the window, is told its places
   * again; any other wait of the session for one of its locks refuses it, as for Acquire.
   */
  private waitingAlready(
    session: SessionRecord,
    claims: readonly LockClaim[],
    requestId: string,
  ): LockResult | null {
    const waited = claims.find((claim) => session.waiting.has(claim.lock));
    if (waited === undefined) return null;
    const place = this.host.locks
      .get(waited.lock)
      ?.waiters.find((waiter) => waiter.sessionId === session.id);
    assert(place !== undefined, `session ${session.id} lists ${waited.lock} but does not wait`);
    const names = claims.map((claim) => claim.lock);
    const own =
      place.requestId === requestId &&
      place.lockSet !== undefined &&
      sameNames(place.lockSet, names) &&
      claims.every(({ lock, mode }) => this.placeOf(lock, session.id)?.mode === mode);
    if (own) {
      this.host.noteEvictedWait(place);
      return this.queuedAll(session.id, names);
    }
    return reject(
      'alreadyWaiting',
      `session ${session.id} already waits for ${waited.lock} under request ${place.requestId}: retry that request (same request id) for its answer, or give it up first`,
    );
  }

  private checkLocksMax(names: readonly string[]): void {
    const added = names.filter((name) => !this.host.locks.has(name)).length;
    const { locksMax } = this.host.rules();
    if (added > 0 && this.host.locks.size + added > locksMax) {
      reject(
        'limitReached',
        `locksMax (${locksMax}) locks are in use: ${this.host.locks.size} now, and this set would add ${added}`,
      );
    }
  }

  private checkQueuesRoom(names: readonly string[]): void {
    const { waitersPerLockMax } = this.host.rules();
    for (const name of names) {
      if ((this.host.locks.get(name)?.waiters.length ?? 0) >= waitersPerLockMax) {
        reject(
          'limitReached',
          `waitersPerLockMax (${waitersPerLockMax}) waiters queue for ${name}`,
        );
      }
    }
  }

  /** The per-identity limits, for `count` more holds (or waits, with `wait`). */
  private checkQuota(
    session: SessionRecord,
    quota: IdentityQuota | undefined,
    count: number,
    wait: boolean,
  ): void {
    if (quota === undefined) return;
    const counts = this.host.identityCounts(session.identity);
    const who = `identity ${JSON.stringify(session.identity)}`;
    if (wait && counts.waiting + count > quota.waitersMax) {
      reject(
        'limitReached',
        `waitersPerIdentityMax (${quota.waitersMax}) Acquires wait for ${who}; this set would add ${count}`,
      );
    }
    if (counts.held + counts.waiting + count > quota.locksHeldMax) {
      reject(
        'limitReached',
        `locksHeldPerIdentityMax (${quota.locksHeldMax}) locks are held or awaited by ${who}; this set would add ${count}`,
      );
    }
  }

  /**
   * Refuses a wait that would close a wait-for cycle (`deadlock`, naming it), and one
   * whose check would take more than deadlockCheckStepsMax steps (limitReached): it is
   * not queued unchecked, so no wait the rules let in closes a cycle. A session that
   * holds nothing and waits for nothing has no one waiting for it: nothing to search.
   */
  checkNoDeadlock(session: SessionRecord, claims: readonly LockClaim[]): void {
    if (session.held.size === 0 && session.waiting.size === 0) return;
    const stepsMax = multiLockRule(this.host.rules(), 'deadlockCheckStepsMax');
    const found = this.host.findWaitCycle(session.id, claims, stepsMax);
    if (found.kind === 'tooLarge') {
      reject(
        'limitReached',
        `deadlockCheckStepsMax (${stepsMax}) steps did not finish checking that this wait closes no wait-for cycle; nothing was queued: retry later, or without waiting (waitMs 0)`,
      );
    }
    if (found.kind === 'cycle') {
      throw new Rejection('deadlock', deadlockDetail(found.cycle), null, found.cycle);
    }
  }

  /** A lock of a new set that could be granted now: free to join, and no one queues for it. */
  private grantableNow({ lock: name, mode }: LockClaim): boolean {
    const lock = this.host.locks.get(name);
    if (lock === undefined) return true;
    return (
      lock.delays.length === 0 && lock.waiters.length === 0 && this.host.compatible(lock, mode)
    );
  }

  // ------------------------------------------------------------------ waiting sets

  /**
   * A queued set that could be granted now: at the head of each of its queues, each lock
   * open (no lock-delay) and its holders compatible with the set's mode for it.
   */
  setGrantable(head: Waiter): boolean {
    assert(head.lockSet !== undefined, `place ${head.requestIndex} is not a set's`);
    return head.lockSet.every((name) => {
      const lock = this.host.locks.get(name);
      const place = lock?.waiters[0];
      return (
        lock !== undefined &&
        place !== undefined &&
        samePlace(place, head) &&
        lock.delays.length === 0 &&
        this.host.compatible(lock, place.mode)
      );
    });
  }

  /** Whether this entry may still grant every lock of the set (one grant per lock per entry). */
  mayGrantSet(head: Waiter): boolean {
    assert(head.lockSet !== undefined, `place ${head.requestIndex} is not a set's`);
    return head.lockSet.every((name) => {
      const lock = this.host.locks.get(name);
      return lock !== undefined && this.host.mayGrant(lock);
    });
  }

  /**
   * Grants the set at the head of `at` on every one of its locks, by this entry, and
   * returns its grant of `at` and the answer its request is now remembered by. Its other
   * locks have had their grant of this entry: a head behind the set there that could now
   * be granted waits for a Promote.
   */
  grantWaitingSet(at: LockRecord, head: Waiter): { grant: Grant; answer: LockResult } {
    const session = this.host.sessions.get(head.sessionId);
    assert(session !== undefined, `waiter of ${at.name} has no session ${head.sessionId}`);
    const names = namesOf(head, at.name);
    // What the retry is told is built from the places: its holders are not remembered.
    const locks = names.map((name) => {
      const mode = this.placeOf(name, session.id)?.mode;
      assert(mode !== undefined, `the set waiting at ${at.name} lacks its place in ${name}`);
      return { lock: name, mode, holders: [] };
    });
    let granted: Grant | null = null;
    for (const name of this.host.grantedTogether(names, at.name)) {
      const lock = this.host.lockFor(name);
      const place = this.host.dequeueGranted(lock, session);
      const grant = this.host.grant(lock, session, place);
      if (lock === at) granted = grant;
    }
    assert(granted !== null, `the set waiting at the head of ${at.name} was not granted it`);
    for (const name of namesOf(head, at.name)) {
      const lock = this.host.locks.get(name);
      if (lock !== undefined && lock !== at && this.host.promotionPendingOn(lock)) {
        this.host.emit({ type: 'promotionPending', lock: name });
      }
    }
    return { grant: granted, answer: { type: 'AcquiredAll', token: granted.token, locks } };
  }

  // ------------------------------------------------------------------ grants told

  /**
   * Puts what `told` says of the requests told of the grant (requestId, alsoFor) on every
   * lock of its set: a Withdraw gives the set back only when every request told of any
   * of its locks was withdrawn.
   */
  retell(id: SessionId, lock: string, told: Grant): void {
    for (const name of namesOf(told, lock)) {
      const holders = this.host.locks.get(name)?.holders;
      const member = holders?.get(id);
      assert(holders !== undefined && member !== undefined, `set of ${lock} lost ${name}`);
      holders.set(id, { ...member, requestId: told.requestId, alsoFor: told.alsoFor });
    }
  }

  // ------------------------------------------------------------------ answers

  acquiredAll(id: SessionId, names: readonly string[]): LockResult {
    const locks = names.map((name) => {
      const lock = this.host.locks.get(name);
      const grant = lock?.holders.get(id);
      assert(lock !== undefined && grant !== undefined, `session ${id} lacks ${name} of its set`);
      return {
        lock: name,
        mode: grant.mode,
        holders: [...lock.holders.values()].map(publicHolder),
      };
    });
    const token = this.host.locks.get(names[0] as string)?.holders.get(id)?.token;
    assert(token !== undefined, `session ${id} holds no set ${JSON.stringify(names)}`);
    return { type: 'AcquiredAll', token, locks };
  }

  queuedAll(id: SessionId, names: readonly string[]): LockResult {
    const locks = names.map((name) => {
      const position = this.host.locks.get(name)?.waiters.findIndex((w) => w.sessionId === id);
      assert(position !== undefined && position >= 0, `session ${id} does not wait for ${name}`);
      return { lock: name, position };
    });
    return { type: 'QueuedAll', locks };
  }

  notAcquiredAll(names: readonly string[]): LockResult {
    const locks = names.map((name) => ({
      lock: name,
      holders: [...(this.host.locks.get(name)?.holders.values() ?? [])].map(publicHolder),
    }));
    return { type: 'NotAcquiredAll', locks };
  }

  /**
   * What a retried AcquireAll is told, from its first result: its grant while the set is
   * still held with that token, else grantEnded; its places while it still waits, else
   * NotAcquiredAll (a wait that ended without a grant).
   */
  retried(requestId: string, session: SessionRecord, first: LockResult): LockResult {
    if (first.type === 'AcquiredAll') {
      const names = first.locks.map((each) => each.lock);
      const grant = this.host.locks.get(names[0] as string)?.holders.get(session.id);
      if (grant !== undefined && grant.token === first.token) {
        this.retell(session.id, names[0] as string, toldAlso(grant, requestId));
        return this.acquiredAll(session.id, names);
      }
      return reject(
        'grantEnded',
        `the grant of the set ${JSON.stringify(names)} made for request ${requestId} (token ${first.token}) has ended: it was released, revoked or reached its max hold`,
      );
    }
    assert(first.type === 'QueuedAll' || first.type === 'NotAcquiredAll', 'a set result');
    const names = first.locks.map((each) => each.lock);
    const place = this.placeOf(names[0] as string, session.id);
    if (first.type === 'QueuedAll' && place?.requestId === requestId) {
      return this.queuedAll(session.id, names);
    }
    return this.notAcquiredAll(names);
  }

  private placeOf(name: string, id: SessionId): Waiter | undefined {
    return this.host.locks.get(name)?.waiters.find((waiter) => waiter.sessionId === id);
  }

  // ------------------------------------------------------------------ invariants

  /** A set is held whole (one token) or not at all, and waits in every one of its queues. */
  invariantProblem(): string | null {
    for (const lock of this.host.locks.values()) {
      for (const grant of lock.holders.values()) {
        const problem = this.wholeProblem(
          lock.name,
          grant,
          (member) => member.holders.get(grant.sessionId)?.token === grant.token,
        );
        if (problem !== null) return `grant ${grant.token}: ${problem}`;
      }
      for (const place of lock.waiters) {
        const problem = this.wholeProblem(lock.name, place, (member) =>
          member.waiters.some((each) => samePlace(each, place)),
        );
        if (problem !== null) return `wait ${place.requestIndex}: ${problem}`;
      }
    }
    return null;
  }

  private wholeProblem(
    name: string,
    entry: { readonly lockSet?: readonly string[] },
    has: (member: LockRecord) => boolean,
  ): string | null {
    const names = entry.lockSet;
    if (names === undefined) return null;
    if (!names.includes(name)) return `${name} is not in its set ${JSON.stringify(names)}`;
    if (names.some((each, k) => k > 0 && compareStrings(names[k - 1] as string, each) >= 0)) {
      return `its set ${JSON.stringify(names)} is not in code-unit order`;
    }
    for (const member of names) {
      const lock = this.host.locks.get(member);
      if (lock === undefined || !has(lock)) return `the set of ${name} lacks ${member}`;
    }
    return null;
  }
}

/** Whether two queue places are one request's (a set's places in two queues). */
function samePlace(a: Waiter, b: Waiter): boolean {
  return a.sessionId === b.sessionId && a.requestIndex === b.requestIndex;
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((name, k) => name === b[k]);
}

function compareClaims(a: LockClaim, b: LockClaim): number {
  return compareStrings(a.lock, b.lock);
}

const NO_HOLDERS: ReadonlyMap<SessionId, Grant> = new Map();
