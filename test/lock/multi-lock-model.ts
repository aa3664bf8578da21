/**
 * The promise of atomic multi-lock and deadlock detection (issue 17), as users are told
 * it, written without reading src/lock's rules: plain arrays, linear scans, a naive
 * wait-for graph. It imports only types from src.
 *
 * What it promises:
 * - a set is granted whole, by one entry, with one token (that entry's index), or not at
 *   all; while it waits it holds none of its locks and keeps its place in each queue;
 * - a queue is first come, first served: a grant of a lock never passes a waiter that
 *   came before, and never joins holders of a conflicting mode or a lock-delay;
 * - releasing, revoking, reaching max-hold of or withdrawing any lock of a set ends the
 *   whole set; a wait that ends (expired, cancelled, withdrawn) ends in every queue;
 * - a waiter that could be granted is granted, or a Promote is owed for one of its locks
 *   (the leader's timers propose it at once), so nothing grantable is left to sleep;
 * - an Acquire that would wait is refused `deadlock` exactly when its wait would close a
 *   cycle of sessions each waiting for the next, and the cycle it names is one; so from
 *   the raise on, no cycle ever forms;
 * - a retry (same session, same request id) changes nothing and is told what is true.
 *
 * Which waiting sets an entry grants, beyond the Promote it was asked for, is the state
 * machine's choice: the model follows its `granted` events and checks each against the
 * promise, rather than predicting them.
 */
import type { LockCommand, LockEvent, LockMode, LockResult } from '../../src/lock/types.ts';

interface Held {
  readonly session: number;
  readonly mode: LockMode;
  readonly token: number;
  readonly set: readonly string[];
  readonly isSet: boolean;
  readonly maxHoldMs: number;
  readonly lockDelayMs: number;
  /** The requests told of this grant; the first is the one it was made for. */
  told: string[];
}

interface Place {
  readonly session: number;
  readonly mode: LockMode;
  readonly requestIndex: number;
  readonly requestId: string;
  readonly set: readonly string[];
  readonly isSet: boolean;
  readonly maxHoldMs: number;
  readonly lockDelayMs: number;
}

interface Lock {
  holders: Held[];
  queue: Place[];
  /** Indexes of the expiries that closed it, each until its LockDelayEnded. */
  delays: number[];
}

/** What a request's retry is answered from. */
interface Memory {
  kind: 'granted' | 'waiting' | 'ended';
  readonly isSet: boolean;
  readonly names: readonly string[];
  token: number;
  open: number[];
  dropped: boolean;
}

/** A result as the model predicts it: Rejected by its code, holders by session, mode and token. */
export type Expected = Record<string, unknown>;

const ATTEMPTS_KEPT = 16;

export interface PromiseOptions {
  readonly locksPerAcquireMax: number;
  readonly lockDelayMs: number;
  /**
   * Whether the log starts at BEHAVIOUR_MULTI_LOCK. Below it the release before is
   * promised: AcquireAll is an unknown command, and no wait is refused as a deadlock.
   */
  readonly raised: boolean;
}

export class SetPromise {
  readonly locks = new Map<string, Lock>();
  readonly sessions = new Map<number, { lastRefresh: number }>();
  readonly memory = new Map<string, Memory>();
  /** Locks a Promote is owed for, as the timers learn it from the events. */
  readonly owed = new Set<string>();
  /** The deadlock refusal the last command got from the model, to check its cycle by. */
  lastCycleCheck: ((cycle: unknown) => void) | null = null;
  /** Whether the last command was a retry answered from memory (it must change nothing). */
  lastWasRetry = false;
  private index = 0;
  private raised: boolean;
  /** No wait was queued before the raise: then no cycle may ever form. */
  private cycleFreeFromStart: boolean;

  constructor(private readonly options: PromiseOptions) {
    this.raised = options.raised;
    this.cycleFreeFromStart = options.raised;
  }

  get isRaised(): boolean {
    return this.raised;
  }

  // ------------------------------------------------------------------ commands

  /** The result the command must get; its direct effects are applied to the model. */
  before(index: number, command: LockCommand): Expected {
    this.index = index;
    this.lastCycleCheck = null;
    this.lastWasRetry = false;
    switch (command.type) {
      case 'OpenSession':
        this.sessions.set(index, { lastRefresh: index });
        return { type: 'SessionOpened', sessionId: index, ttlMs: command.ttlMs };
      case 'KeepAlive': {
        const refreshed = command.sessionIds.filter((id) => this.sessions.has(id));
        for (const id of refreshed) this.sessions.set(id, { lastRefresh: index });
        const missing = command.sessionIds.filter((id) => !this.sessions.has(id));
        return { type: 'KeptAlive', refreshed, missing };
      }
      case 'CloseSession':
        if (!this.sessions.has(command.sessionId)) return rejected('sessionNotFound');
        this.endSession(command.sessionId, false);
        return { type: 'SessionClosed', sessionId: command.sessionId };
      case 'ExpireSession': {
        const session = this.sessions.get(command.sessionId);
        if (session?.lastRefresh !== command.lastRefreshIndex) return { type: 'Stale' };
        this.endSession(command.sessionId, true);
        return { type: 'SessionExpired', sessionId: command.sessionId };
      }
      case 'Acquire':
        return this.acquire(command.sessionId, command.requestId, false, command, [
          { lock: command.lock, mode: command.mode },
        ]);
      case 'AcquireAll':
        if (!this.raised) return rejected('invalidArgument');
        return this.acquire(command.sessionId, command.requestId, true, command, command.locks);
      case 'Release':
        return this.release(command);
      case 'CancelWait': {
        if (!this.sessions.has(command.sessionId)) return rejected('sessionNotFound');
        const place = this.placeOf(command.lock, command.sessionId);
        if (place === undefined || place.requestId !== command.requestId) {
          return rejected('notHolder');
        }
        this.endWait(place, 'ended');
        return { type: 'WaitCancelled', lock: command.lock };
      }
      case 'WaitExpired': {
        const place = this.placeOf(command.lock, command.sessionId);
        if (place === undefined || place.requestIndex !== command.waiterIndex) {
          return { type: 'Stale' };
        }
        this.endWait(place, 'ended');
        return { type: 'WaitExpired', lock: command.lock, sessionId: command.sessionId };
      }
      case 'MaxHoldReached': {
        const held = this.heldBy(command.lock, command.sessionId);
        if (held === undefined || held.token !== command.token) return { type: 'Stale' };
        this.endGrant(held, false);
        return { type: 'MaxHoldReached', lock: command.lock, token: command.token };
      }
      case 'LockDelayEnded': {
        const lock = this.locks.get(command.lock);
        if (lock === undefined || !lock.delays.includes(command.delayIndex))
          return { type: 'Stale' };
        lock.delays = lock.delays.filter((each) => each !== command.delayIndex);
        this.dropIfIdle(command.lock);
        return { type: 'LockDelayEnded', lock: command.lock };
      }
      case 'Promote': {
        const head = this.locks.get(command.lock)?.queue[0];
        if (head === undefined || !this.grantable(head)) return { type: 'Stale' };
        return { type: 'Promoted', lock: command.lock, sessionId: head.session, token: index };
      }
      case 'Revoke': {
        const holders = [...(this.locks.get(command.lock)?.holders ?? [])];
        for (const held of holders) this.endGrant(held, false);
        return { type: 'Revoked', lock: command.lock, freed: holders.length };
      }
      case 'Withdraw':
        return this.withdraw(command);
      case 'SetBehaviour':
        if (this.raised) return { type: 'Stale' };
        this.raised = true;
        return { type: 'BehaviourSet', version: command.version };
      default:
        throw new Error(`the promise model does not generate ${command.type}`);
    }
  }

  private acquire(
    sessionId: number,
    requestId: string,
    isSet: boolean,
    command: { waitMs: number; maxHoldMs: number; lockDelayMs: number },
    asked: readonly { lock: string; mode: LockMode }[],
  ): Expected {
    const key = `${sessionId}/${requestId}`;
    const memory = this.memory.get(key);
    if (memory !== undefined) {
      if (!this.sessions.has(sessionId)) return rejected('sessionNotFound');
      this.lastWasRetry = true;
      return this.retry(sessionId, requestId, memory);
    }
    const names = asked.map((claim) => claim.lock);
    const invalid =
      (isSet && (asked.length === 0 || asked.length > this.options.locksPerAcquireMax)) ||
      new Set(names).size !== names.length ||
      asked.some(
        (claim) =>
          (claim.mode !== 'exclusive' && claim.mode !== 'shared') ||
          (claim.lock === '' && !this.locks.has(claim.lock)),
      );
    if (invalid) return rejected('invalidArgument');
    if (!this.sessions.has(sessionId)) return rejected('sessionNotFound');
    const claims = [...asked].sort((a, b) => compare(a.lock, b.lock));
    const sorted = claims.map((claim) => claim.lock);
    const again = isSet
      ? this.setAgain(sessionId, requestId, claims)
      : this.singleAgain(sessionId, requestId, claims[0] as { lock: string; mode: LockMode });
    if (again !== null) return again;
    const free = claims.every(({ lock, mode }) => {
      const record = this.locks.get(lock);
      return (
        record === undefined ||
        (record.queue.length === 0 &&
          record.delays.length === 0 &&
          compatible(record.holders, mode))
      );
    });
    if (free) {
      for (const { lock, mode } of claims) {
        this.lockFor(lock).holders.push({
          session: sessionId,
          mode,
          token: this.index,
          set: sorted,
          isSet,
          maxHoldMs: command.maxHoldMs,
          lockDelayMs: command.lockDelayMs,
          told: [requestId],
        });
      }
      this.remember(key, 'granted', isSet, sorted, this.index);
      return this.acquiredAnswer(sessionId, sorted, isSet);
    }
    if (command.waitMs === 0) return this.notAcquiredAnswer(sorted, isSet);
    const cycle = this.raised && this.cycleThrough(sessionId, claims);
    if (cycle) {
      this.lastCycleCheck = (named) => this.checkCycle(sessionId, claims, named);
      return rejected('deadlock');
    }
    if (!this.raised) this.cycleFreeFromStart = false;
    for (const { lock, mode } of claims) {
      this.lockFor(lock).queue.push({
        session: sessionId,
        mode,
        requestIndex: this.index,
        requestId,
        set: sorted,
        isSet,
        maxHoldMs: command.maxHoldMs,
        lockDelayMs: command.lockDelayMs,
      });
    }
    this.remember(key, 'waiting', isSet, sorted, 0);
    return this.queuedAnswer(sessionId, sorted, isSet);
  }

  /** A set naming what the session holds: the very set is told again; any other overlap refused. */
  private setAgain(
    sessionId: number,
    requestId: string,
    claims: readonly { lock: string; mode: LockMode }[],
  ): Expected | null {
    const names = claims.map((claim) => claim.lock);
    const heldClaim = claims.find((claim) => this.heldBy(claim.lock, sessionId) !== undefined);
    if (heldClaim !== undefined) {
      const held = this.heldBy(heldClaim.lock, sessionId) as Held;
      const same =
        sameList(held.set, names) &&
        claims.every((claim) => this.heldBy(claim.lock, sessionId)?.mode === claim.mode);
      if (!same) return rejected('alreadyHolding');
      this.tell(held, requestId);
      this.remember(`${sessionId}/${requestId}`, 'granted', true, names, held.token);
      return this.acquiredAnswer(sessionId, names, true);
    }
    if (claims.some((claim) => this.placeOf(claim.lock, sessionId) !== undefined)) {
      return rejected('alreadyWaiting');
    }
    return null;
  }

  /** One lock the session holds (re-told, in its mode) or waits for (refused). */
  private singleAgain(
    sessionId: number,
    requestId: string,
    claim: { lock: string; mode: LockMode },
  ): Expected | null {
    const held = this.heldBy(claim.lock, sessionId);
    if (held !== undefined) {
      if (held.mode !== claim.mode) return rejected('modeMismatch');
      this.tell(held, requestId);
      this.remember(`${sessionId}/${requestId}`, 'granted', false, [claim.lock], held.token);
      return this.acquiredAnswer(sessionId, [claim.lock], false);
    }
    const place = this.placeOf(claim.lock, sessionId);
    if (place !== undefined) {
      return rejected(place.mode !== claim.mode ? 'modeMismatch' : 'alreadyWaiting');
    }
    return null;
  }

  private retry(sessionId: number, requestId: string, memory: Memory): Expected {
    memory.open.push(this.index);
    if (memory.open.length > ATTEMPTS_KEPT) {
      memory.open.shift();
      memory.dropped = true;
    }
    const first = memory.names[0] as string;
    if (memory.kind === 'granted') {
      const held = this.heldBy(first, sessionId);
      if (held === undefined || held.token !== memory.token) return rejected('grantEnded');
      this.tell(held, requestId);
      return this.acquiredAnswer(sessionId, memory.names, memory.isSet);
    }
    const place = this.placeOf(first, sessionId);
    if (memory.kind === 'waiting' && place?.requestId === requestId) {
      return this.queuedAnswer(sessionId, memory.names, memory.isSet);
    }
    return this.notAcquiredAnswer(memory.names, memory.isSet);
  }

  private release(command: Extract<LockCommand, { type: 'Release' }>): Expected {
    if (!this.sessions.has(command.sessionId)) return rejected('sessionNotFound');
    const held = this.heldBy(command.lock, command.sessionId);
    if (held === undefined) return rejected('notHolder');
    if (held.token !== command.token) return rejected('staleToken');
    this.endGrant(held, false);
    return held.isSet
      ? { type: 'Released', lock: command.lock, lockSet: held.set }
      : { type: 'Released', lock: command.lock };
  }

  /**
   * Gives back what the attempt got, the whole set, once no other attempt of the request
   * and no other request told of the grant is open; see Withdraw in types.ts.
   */
  private withdraw(command: Extract<LockCommand, { type: 'Withdraw' }>): Expected {
    const { lock, sessionId, requestId, attemptIndex } = command;
    const key = `${sessionId}/${requestId}`;
    const memory = this.memory.get(key);
    if (
      !this.sessions.has(sessionId) ||
      memory === undefined ||
      !memory.names.includes(lock) ||
      !memory.open.includes(attemptIndex)
    ) {
      return { type: 'Stale' };
    }
    memory.open = memory.open.filter((each) => each !== attemptIndex);
    if (memory.open.length > 0 || memory.dropped) return withdrawn(lock, 'nothing');
    let undid = 'nothing';
    const place = this.placeOf(lock, sessionId);
    const held = this.heldBy(lock, sessionId);
    if (place !== undefined && place.requestId === requestId) {
      this.endWait(place, 'forgotten');
      undid = 'wait';
    } else if (held?.told.includes(requestId) && held.told[0] !== '') {
      const rest = held.told.filter((each) => each !== requestId);
      if (rest.length === 0) {
        this.endGrant(held, false);
        undid = 'grant';
      } else {
        for (const member of this.membersOf(held)) member.told = rest;
      }
    }
    if (memory.kind === 'granted') {
      memory.open = [];
      memory.dropped = false;
    } else {
      this.memory.delete(key);
    }
    return withdrawn(lock, undid);
  }

  // ------------------------------------------------------------------ endings

  /** Ends a grant and every other lock of its set; an expiry closes each for its delay. */
  private endGrant(held: Held, expired: boolean): void {
    for (const name of held.set) {
      const lock = this.locks.get(name);
      if (lock === undefined) continue;
      lock.holders = lock.holders.filter((each) => each.session !== held.session);
      const delayMs = held.lockDelayMs > 0 ? held.lockDelayMs : this.options.lockDelayMs;
      if (expired && delayMs > 0) lock.delays.push(this.index);
      this.dropIfIdle(name);
    }
  }

  /** Ends a wait in every queue of its set; its request is told NotAcquired, or forgotten. */
  private endWait(place: Place, memory: 'ended' | 'forgotten' | 'kept'): void {
    for (const name of place.set) {
      const lock = this.locks.get(name);
      if (lock === undefined) continue;
      lock.queue = lock.queue.filter((each) => each.session !== place.session);
      this.dropIfIdle(name);
    }
    const key = `${place.session}/${place.requestId}`;
    const remembered = this.memory.get(key);
    if (memory === 'ended' && remembered?.kind === 'waiting') remembered.kind = 'ended';
    if (memory === 'forgotten') this.memory.delete(key);
  }

  private endSession(sessionId: number, expired: boolean): void {
    for (const [name, lock] of [...this.locks]) {
      const place = lock.queue.find((each) => each.session === sessionId);
      if (place !== undefined) this.endWait(place, 'kept');
      const held = this.locks.get(name)?.holders.find((each) => each.session === sessionId);
      if (held !== undefined) {
        // A set's locks are ended one by one here: each gets the expiry's delay.
        const record = this.locks.get(name) as Lock;
        record.holders = record.holders.filter((each) => each.session !== sessionId);
        const delayMs = held.lockDelayMs > 0 ? held.lockDelayMs : this.options.lockDelayMs;
        if (expired && delayMs > 0) record.delays.push(this.index);
        this.dropIfIdle(name);
      }
    }
    this.sessions.delete(sessionId);
  }

  // ------------------------------------------------------------------ the machine's grants

  /**
   * Follows the entry's events: each grant of a waiting request is checked against the
   * promise (first in line, fits, the whole set by this entry), and the Promotes owed
   * are noted as the timers note them.
   */
  after(events: readonly LockEvent[]): void {
    // By request: a set has a place object in each of its queues.
    const promoted = new Map<string, { place: Place; locks: Set<string> }>();
    const grantedLocks = new Set<string>();
    let pending: Place | null = null;
    for (const event of events) {
      if (event.type === 'promotionPending') {
        this.owed.add(event.lock);
        continue;
      }
      // As the timers do: a change to the lock's holders, waiters or delays settles it.
      if (event.type !== 'queued' && 'lock' in event) this.owed.delete(event.lock);
      if (event.type === 'waitEnded' && event.reason === 'granted') {
        pending = this.takeHead(event.lock, event.sessionId, event.requestIndex);
        continue;
      }
      if (event.type !== 'granted') continue;
      if (grantedLocks.has(event.lock)) fail(`entry ${this.index} granted ${event.lock} twice`);
      grantedLocks.add(event.lock);
      if (event.holder.token !== this.index) {
        fail(`${event.lock} granted with token ${event.holder.token} by entry ${this.index}`);
      }
      if (pending === null || pending.session !== event.holder.sessionId) {
        // A grant the model predicted for the command itself.
        if (this.heldBy(event.lock, event.holder.sessionId)?.token !== this.index) {
          fail(`entry ${this.index} granted ${event.lock} to ${event.holder.sessionId} unasked`);
        }
        continue;
      }
      this.grantPlace(event.lock, pending);
      const key = `${pending.session}/${pending.requestIndex}`;
      const entry = promoted.get(key) ?? { place: pending, locks: new Set<string>() };
      entry.locks.add(event.lock);
      promoted.set(key, entry);
      pending = null;
    }
    for (const { place, locks } of promoted.values()) this.checkWhole(place, locks);
    this.checkNothingAsleep();
  }

  /** The place leaving `lock`'s queue as granted must be first in line. */
  private takeHead(name: string, sessionId: number, requestIndex: number): Place {
    const lock = this.locks.get(name);
    const head = lock?.queue[0];
    if (lock === undefined || head === undefined) fail(`${name} granted a waiter it lacks`);
    if (head.session !== sessionId || head.requestIndex !== requestIndex) {
      fail(`FIFO: ${name} granted session ${sessionId} ahead of session ${head.session}`);
    }
    lock.queue.shift();
    return head;
  }

  private grantPlace(name: string, place: Place): void {
    const lock = this.lockFor(name);
    if (lock.delays.length > 0) fail(`${name} granted during its lock-delay`);
    if (!compatible(lock.holders, place.mode)) {
      fail(`${name} granted ${place.mode} to ${place.session} beside conflicting holders`);
    }
    lock.holders.push({
      session: place.session,
      mode: place.mode,
      token: this.index,
      set: place.set,
      isSet: place.isSet,
      maxHoldMs: place.maxHoldMs,
      lockDelayMs: place.lockDelayMs,
      told: [place.requestId],
    });
  }

  /** All or nothing: a waiting set is granted every one of its locks by one entry. */
  private checkWhole(place: Place, locks: Set<string>): void {
    const missing = place.set.filter((name) => !locks.has(name));
    if (missing.length > 0) {
      fail(
        `partial grant: entry ${this.index} granted session ${place.session} ${[...locks]} of its set ${place.set}, not ${missing}`,
      );
    }
    const memory = this.memory.get(`${place.session}/${place.requestId}`);
    if (memory?.kind === 'waiting') {
      memory.kind = 'granted';
      memory.token = this.index;
    }
  }

  /** Every waiter that could be granted now is, or is owed a Promote on one of its locks. */
  private checkNothingAsleep(): void {
    for (const [name, lock] of this.locks) {
      const head = lock.queue[0];
      if (head === undefined || !this.grantable(head)) continue;
      if (!head.set.some((each) => this.owed.has(each))) {
        fail(
          `session ${head.session} could be granted ${head.set} (at ${name}) but no Promote is owed`,
        );
      }
    }
  }

  // ------------------------------------------------------------------ deadlock

  /** The sessions `sessionId` waits for, each with the lock it waits for them by. */
  private waitsFor(sessionId: number): { lock: string; blocker: number; holds: boolean }[] {
    const edges: { lock: string; blocker: number; holds: boolean }[] = [];
    for (const [name, lock] of this.locks) {
      const at = lock.queue.findIndex((each) => each.session === sessionId);
      if (at < 0) continue;
      const mode = (lock.queue[at] as Place).mode;
      for (const held of lock.holders) {
        if (!compatible([held], mode))
          edges.push({ lock: name, blocker: held.session, holds: true });
      }
      for (const ahead of lock.queue.slice(0, at)) {
        if (waitsBehind(ahead, mode))
          edges.push({ lock: name, blocker: ahead.session, holds: false });
      }
    }
    return edges;
  }

  /** The edges a new wait for `claims` would add (its session's). */
  private newEdges(
    claims: readonly { lock: string; mode: LockMode }[],
  ): { lock: string; blocker: number; holds: boolean }[] {
    const edges: { lock: string; blocker: number; holds: boolean }[] = [];
    for (const { lock: name, mode } of claims) {
      const lock = this.locks.get(name);
      for (const held of lock?.holders ?? []) {
        if (!compatible([held], mode))
          edges.push({ lock: name, blocker: held.session, holds: true });
      }
      for (const ahead of lock?.queue ?? []) {
        if (waitsBehind(ahead, mode))
          edges.push({ lock: name, blocker: ahead.session, holds: false });
      }
    }
    return edges;
  }

  /** Whether some session the new wait waits for leads back to the requester. */
  private cycleThrough(
    sessionId: number,
    claims: readonly { lock: string; mode: LockMode }[],
  ): boolean {
    const seen = new Set<number>();
    const stack = this.newEdges(claims).map((edge) => edge.blocker);
    while (stack.length > 0) {
      const next = stack.pop() as number;
      if (next === sessionId) return true;
      if (seen.has(next)) continue;
      seen.add(next);
      for (const edge of this.waitsFor(next)) stack.push(edge.blocker);
    }
    return false;
  }

  /** The named cycle starts with one of the new wait's edges and follows real ones home. */
  private checkCycle(
    sessionId: number,
    claims: readonly { lock: string; mode: LockMode }[],
    named: unknown,
  ): void {
    const hops = named as {
      waiter: number;
      lock: string;
      blocker: number;
      blockerHolds: boolean;
    }[];
    if (!Array.isArray(hops) || hops.length === 0) fail(`deadlock named no cycle`);
    hops.forEach((hop, k) => {
      const edges = k === 0 ? this.newEdges(claims) : this.waitsFor(hop.waiter);
      const real = edges.some(
        (edge) =>
          edge.lock === hop.lock && edge.blocker === hop.blocker && edge.holds === hop.blockerHolds,
      );
      if (!real) fail(`deadlock named ${JSON.stringify(hop)}, which is no wait`);
      const next = hops[(k + 1) % hops.length] as { waiter: number };
      if (hop.blocker !== (k === hops.length - 1 ? sessionId : next.waiter)) {
        fail(`deadlock named a chain that is not a cycle: ${JSON.stringify(hops)}`);
      }
    });
    if (hops[0]?.waiter !== sessionId) fail(`deadlock cycle does not start at ${sessionId}`);
  }

  /** From the raise on, no session waits for itself through others. */
  checkAcyclic(): void {
    if (!this.cycleFreeFromStart) return;
    for (const sessionId of this.sessions.keys()) {
      const seen = new Set<number>();
      const stack = this.waitsFor(sessionId).map((edge) => edge.blocker);
      while (stack.length > 0) {
        const next = stack.pop() as number;
        if (next === sessionId) fail(`session ${sessionId} is in a wait-for cycle`);
        if (seen.has(next)) continue;
        seen.add(next);
        for (const edge of this.waitsFor(next)) stack.push(edge.blocker);
      }
    }
  }

  // ------------------------------------------------------------------ queries and answers

  /** Every lock in use: holders and queue as describe() must show them. */
  describe(name: string): { holders: unknown[]; waiters: unknown[]; delays: number[] } {
    const lock = this.locks.get(name);
    return {
      holders: (lock?.holders ?? []).map((held) => [
        held.session,
        held.mode,
        held.token,
        held.isSet ? held.set : null,
      ]),
      waiters: (lock?.queue ?? []).map((place) => [
        place.session,
        place.mode,
        place.requestIndex,
        place.isSet ? place.set : null,
      ]),
      delays: [...(lock?.delays ?? [])],
    };
  }

  grantable(place: Place): boolean {
    return place.set.every((name) => {
      const lock = this.locks.get(name);
      const head = lock?.queue[0];
      return (
        lock !== undefined &&
        head !== undefined &&
        head.session === place.session &&
        head.requestIndex === place.requestIndex &&
        lock.delays.length === 0 &&
        compatible(lock.holders, head.mode)
      );
    });
  }

  heldBy(name: string, sessionId: number): Held | undefined {
    return this.locks.get(name)?.holders.find((held) => held.session === sessionId);
  }

  placeOf(name: string, sessionId: number): Place | undefined {
    return this.locks.get(name)?.queue.find((place) => place.session === sessionId);
  }

  private membersOf(held: Held): Held[] {
    return held.set.map((name) => this.heldBy(name, held.session) as Held);
  }

  private tell(held: Held, requestId: string): void {
    if (held.told.includes(requestId)) return;
    for (const member of this.membersOf(held)) member.told = [...member.told, requestId];
  }

  private remember(
    key: string,
    kind: Memory['kind'],
    isSet: boolean,
    names: readonly string[],
    token: number,
  ): void {
    this.memory.set(key, { kind, isSet, names, token, open: [this.index], dropped: false });
  }

  private holdersOf(name: string): unknown[] {
    return (this.locks.get(name)?.holders ?? []).map((held) => [
      held.session,
      held.mode,
      held.token,
    ]);
  }

  private acquiredAnswer(sessionId: number, names: readonly string[], isSet: boolean): Expected {
    const first = this.heldBy(names[0] as string, sessionId) as Held;
    if (!isSet) {
      const lock = names[0] as string;
      return {
        type: 'Acquired',
        lock,
        token: first.token,
        mode: first.mode,
        holders: this.holdersOf(lock),
      };
    }
    const locks = names.map((name) => ({
      lock: name,
      mode: this.heldBy(name, sessionId)?.mode,
      holders: this.holdersOf(name),
    }));
    return { type: 'AcquiredAll', token: first.token, locks };
  }

  private queuedAnswer(sessionId: number, names: readonly string[], isSet: boolean): Expected {
    const positions = names.map((name) => ({
      lock: name,
      position: this.locks.get(name)?.queue.findIndex((place) => place.session === sessionId),
    }));
    return isSet ? { type: 'QueuedAll', locks: positions } : { type: 'Queued', ...positions[0] };
  }

  private notAcquiredAnswer(names: readonly string[], isSet: boolean): Expected {
    const locks = names.map((name) => ({ lock: name, holders: this.holdersOf(name) }));
    return isSet ? { type: 'NotAcquiredAll', locks } : { type: 'NotAcquired', ...locks[0] };
  }

  private lockFor(name: string): Lock {
    let lock = this.locks.get(name);
    if (lock === undefined) {
      lock = { holders: [], queue: [], delays: [] };
      this.locks.set(name, lock);
    }
    return lock;
  }

  private dropIfIdle(name: string): void {
    const lock = this.locks.get(name);
    if (lock !== undefined && lock.holders.length + lock.queue.length + lock.delays.length === 0) {
      this.locks.delete(name);
    }
  }
}

/** A machine's result in the model's terms (see Expected). */
export function comparable(result: LockResult): Expected {
  const holders = (list: readonly { sessionId: number; mode: LockMode; token: number }[]) =>
    list.map((holder) => [holder.sessionId, holder.mode, holder.token]);
  switch (result.type) {
    case 'Rejected':
      return { type: 'Rejected', code: result.code };
    case 'Acquired':
      return { ...result, holders: holders(result.holders) };
    case 'NotAcquired':
      return { ...result, holders: holders(result.holders) };
    case 'AcquiredAll':
      return {
        ...result,
        locks: result.locks.map((each) => ({ ...each, holders: holders(each.holders) })),
      };
    case 'NotAcquiredAll':
      return {
        ...result,
        locks: result.locks.map((each) => ({ ...each, holders: holders(each.holders) })),
      };
    case 'KeptAlive':
      return { ...result, refreshed: [...result.refreshed], missing: [...result.missing] };
    default:
      return { ...result };
  }
}

function compatible(holders: readonly { mode: LockMode }[], mode: LockMode): boolean {
  return (
    holders.length === 0 || (mode === 'shared' && holders.every((held) => held.mode === 'shared'))
  );
}

function rejected(code: string): Expected {
  return { type: 'Rejected', code };
}

function withdrawn(lock: string, undid: string): Expected {
  return { type: 'Withdrawn', lock, undid };
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((name, k) => name === b[k]);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function fail(message: string): never {
  throw new Error(message);
}

/**
 * Whether a wait in `mode` behind `ahead` depends on it. The promise: a waiter is granted
 * once it is at the head and fits. Behind an incompatible place it must outlast that
 * place's hold; behind a set it must outlast the set's wait for its other locks; behind
 * a compatible single-lock place it only needs that place granted, which depends on
 * nothing the waiter does not wait for itself (this lock's incompatible holders and
 * places ahead).
 */
function waitsBehind(ahead: Place, mode: LockMode): boolean {
  if (ahead.set.length > 1) return true;
  return ahead.mode === 'exclusive' || mode === 'exclusive';
}
