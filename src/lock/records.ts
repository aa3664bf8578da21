import type { LogIndex, SessionId } from '../util/ids.ts';
import { HolderMap } from './holder-map.ts';
import type { Holder, LockMode, RejectionCode, Waiter, WaitForHop } from './types.ts';

/**
 * The lock state machine's own records and refusals, shared by its modules
 * (state-machine.ts, lock-set.ts and the others split from it). Nothing here is
 * replicated differently from before: these are the shapes the state machine has
 * always kept.
 */

/** A grant, plus what the runtime needs to end it on time. */
export interface Grant extends Holder {
  readonly maxHoldMs: number;
  readonly lockDelayMs: number;
  /**
   * The Acquire request the grant was made for, so that a Withdraw of it can find it;
   * '' when no request may give it back (see `alsoFor`).
   */
  readonly requestId: string;
  /**
   * Later requests of the same session that were told of this grant (re-acquires).
   * Any of their callers may hold it, so a Withdraw gives it back only once every
   * request that was told of it was withdrawn. Bounded: past TOLD_REQUESTS_MAX the
   * grant becomes no request's (requestId '').
   */
  readonly alsoFor: readonly string[];
}

export const TOLD_REQUESTS_MAX = 16;

export interface SessionRecord {
  readonly id: SessionId;
  readonly ttlMs: number;
  readonly clientName: string;
  /** The identity that opened it ('' anonymous); only it may use the session. */
  readonly identity: string;
  lastRefreshIndex: LogIndex;
  /** Names of the locks this session holds or waits for. */
  readonly held: Set<string>;
  readonly waiting: Set<string>;
}

/**
 * The queue and the lock-delays of every lock that has none: shared, so that a held
 * lock does not keep two empty arrays of its own (64 bytes per held lock, heap snapshot,
 * issue 12). Frozen, since they are shared: a lock's own array is made on its first
 * waiter or delay (ownWaiters, ownDelays) and given up when it empties again.
 */
export const NO_WAITERS: readonly Waiter[] = Object.freeze([]);
export const NO_DELAYS: readonly LockDelay[] = Object.freeze([]);

/** The lock's queue, to change: its own array, made if it had the shared empty one. */
export function ownWaiters(lock: LockRecord): Waiter[] {
  if (lock.waiters === NO_WAITERS) lock.waiters = [];
  return lock.waiters as Waiter[];
}

/** After a waiter left: an emptied queue goes back to the shared empty one. */
export function leftWaiters(lock: LockRecord): void {
  if (lock.waiters.length === 0) lock.waiters = NO_WAITERS;
}

/** The lock's delays, to change: its own array, made if it had the shared empty one. */
export function ownDelays(lock: LockRecord): LockDelay[] {
  if (lock.delays === NO_DELAYS) lock.delays = [];
  return lock.delays as LockDelay[];
}

/** After a delay ended: emptied delays go back to the shared empty ones. */
export function leftDelays(lock: LockRecord): void {
  if (lock.delays.length === 0) lock.delays = NO_DELAYS;
}

/**
 * A lock's record, which is its own holders' HolderMap (`holders` returns it): one object
 * where a record and its HolderMap were two, 32 bytes per held lock (heap snapshot,
 * issue 12). A plain lock's record has no `kind` or `limit` property (KindRecord's has),
 * so that locks' records and snapshots stay as they were.
 */
export class LockRecord extends HolderMap<SessionId, Grant> {
  /**
   * FIFO queue of waiting Acquires. NO_WAITERS while empty, as most held locks' queues
   * are: changed only through ownWaiters and leftWaiters.
   */
  waiters: readonly Waiter[] = NO_WAITERS;
  /**
   * Every lock-delay placed on the lock and not yet ended, oldest first. The lock stays
   * closed to new grants until all have ended: a shorter delay placed later must not
   * cut short a longer one (each expired holder asked for its own). Bounded: a closed
   * lock gets no new holders, so there is at most one delay per holder it had when it
   * closed. NO_DELAYS while empty: changed only through ownDelays and leftDelays.
   */
  delays: readonly LockDelay[] = NO_DELAYS;
  /**
   * What the name is while this record lives (kinds.ts), fixed by the request that
   * created it; absent for a plain lock. Only from BEHAVIOUR_SEMAPHORES_ELECTIONS.
   */
  declare readonly kind?: 'semaphore' | 'election';
  /** A semaphore's limit: the most permits its holders hold at once. Absent otherwise. */
  declare readonly limit?: number;

  constructor(readonly name: string) {
    super();
  }

  /** Current grants in grant order. All exclusive (then exactly one) or all shared. */
  get holders(): HolderMap<SessionId, Grant> {
    return this;
  }
}

/** A semaphore's or election's record: a lock's, with its kind and a semaphore's limit. */
export class KindRecord extends LockRecord {
  override readonly kind: 'semaphore' | 'election';

  /** `limit` only for a semaphore: an election's record has no `limit` property. */
  constructor(name: string, kind: 'semaphore' | 'election', limit: number | undefined) {
    super(name);
    this.kind = kind;
    if (limit !== undefined) (this as { limit?: number }).limit = limit;
  }
}

/** A lock-delay: placed by the expiry entry at `index`, for `delayMs` from that entry. */
export interface LockDelay {
  readonly index: LogIndex;
  readonly delayMs: number;
}

export class Rejection extends Error {
  constructor(
    readonly code: RejectionCode,
    readonly detail: string,
    readonly field: string | null,
    /** For `deadlock`: the cycle the wait would close. */
    readonly cycle: readonly WaitForHop[] | null = null,
  ) {
    super(detail);
  }
}

export function reject(code: RejectionCode, detail: string): never {
  throw new Rejection(code, detail, null);
}

/** A field of the command is wrong: the detail is `${field} ${problem}`. */
export function rejectField(field: string, problem: string): never {
  throw new Rejection('invalidArgument', `${field} ${problem}`, field);
}

/** Whether `requestId` is one of the requests told of `grant`, so its Withdraw counts. */
export function toldOf(grant: Grant, requestId: string): boolean {
  return (
    grant.requestId !== '' && (grant.requestId === requestId || grant.alsoFor.includes(requestId))
  );
}

/**
 * Whether `value`'s own enumerable keys are exactly `keys`, in that order: a decoded
 * record that a literal of those keys would rebuild byte for byte. No array is made,
 * since a restore asks it once per held lock.
 */
export function hasKeysInOrder(value: object, keys: readonly string[]): boolean {
  let position = 0;
  for (const key in value) {
    if (!Object.hasOwn(value, key) || key !== keys[position]) return false;
    position++;
  }
  return position === keys.length;
}

export function acquireKey(id: SessionId, requestId: string): string {
  return flatKey('Acquire', id, requestId);
}

/**
 * `parts` joined by '/', as one flat string. A template literal makes a cons string
 * (32 bytes) over a new prefix like "Acquire/7/" (32 more) and the request id; V8 later
 * flattens a key it hashes or writes into a copy beside the cons. The dedupe window
 * keeps one key per remembered request, 16 to 32 bytes per held lock more than a flat
 * string (heap snapshot, issue 12). join writes one sequential string.
 */
export function flatKey(...parts: readonly (string | number)[]): string {
  // String() as a template literal would: join writes null and undefined as ''.
  return parts.map(String).join('/');
}

/**
 * The one constant of `mode`. A decoded entry or snapshot gives every mode its own copy
 * of "exclusive" (32 bytes), kept by each grant, waiter and remembered answer made from
 * it: 100,000 copies at 100,000 held locks (heap snapshot, issue 12). Any other value is
 * returned as it is, so that a check that refuses it still sees it.
 */
export function internedMode(mode: LockMode): LockMode {
  if (mode === 'exclusive') return 'exclusive';
  return mode === 'shared' ? 'shared' : mode;
}

/** What Describe and answers show of a grant; a set's names only for a set's grant. */
export function publicHolder(grant: Holder): Holder {
  const holder: Holder = {
    sessionId: grant.sessionId,
    owner: grant.owner,
    mode: grant.mode,
    token: grant.token,
    requestIndex: grant.requestIndex,
  };
  const { lockSet, permits, value } = grant;
  if (lockSet === undefined && permits === undefined && value === undefined) return holder;
  // Each key only where it applies, so that plain locks' holders stay as they were.
  return {
    ...holder,
    ...(lockSet === undefined ? {} : { lockSet }),
    ...(permits === undefined ? {} : { permits }),
    ...(value === undefined ? {} : { value }),
  };
}

/**
 * The `alsoFor` of every grant no later request was told of (nearly all): one shared
 * empty list rather than 32 bytes of heap per held lock. Frozen, since it is shared;
 * grants are replaced, never edited.
 */
export const TOLD_NO_OTHERS: readonly string[] = Object.freeze([]);

/** `grant` as told of to `requestId` too (a re-acquire under another request). */
export function toldAlso(grant: Grant, requestId: string): Grant {
  if (grant.requestId === '' || toldOf(grant, requestId)) return grant;
  if (grant.alsoFor.length >= TOLD_REQUESTS_MAX) {
    return { ...grant, requestId: '', alsoFor: TOLD_NO_OTHERS };
  }
  return { ...grant, alsoFor: [...grant.alsoFor, requestId] };
}

/** The locks a grant or queue place stands for: its set's, or its own lock's alone. */
export function namesOf(
  entry: { readonly lockSet?: readonly string[] },
  lock: string,
): readonly string[] {
  return entry.lockSet ?? [lock];
}

export function isIntegerIn(value: number, min: number, max: number): boolean {
  return Number.isSafeInteger(value) && value >= min && value <= max;
}

/** Code-unit order, the same everywhere (localeCompare is not). */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** An AcquireAll's lock names in code-unit order, as its set records them. */
export function lockSetNames(command: {
  readonly locks: readonly { readonly lock: string }[];
}): string[] {
  return command.locks.map((claim) => claim.lock).sort(compareStrings);
}

/** The place in `lock`'s queue of the wait request `requestId` of session `id` queued; -1: none. */
export function waiterPosition(
  lock: LockRecord | undefined,
  id: SessionId,
  requestId: string,
): number {
  return (
    lock?.waiters.findIndex(
      (waiter) => waiter.sessionId === id && waiter.requestId === requestId,
    ) ?? -1
  );
}
