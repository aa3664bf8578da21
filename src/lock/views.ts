import type { FencingToken, LogIndex, SessionId } from '../util/ids.ts';
import {
  compareStrings,
  type LockDelay,
  type LockRecord,
  publicHolder,
  type SessionRecord,
} from './records.ts';
import { smallestNames } from './smallest.ts';
import type { Holder, LockMode, Waiter } from './types.ts';

/**
 * The state machine's read-only views of its locks and sessions (Describe, ListLocks,
 * GetSession, ValidateFence): copies, so that no caller can change the state through
 * one. LockStateMachine's query methods hand their records to these.
 */

export interface LockDescription {
  readonly lock: string;
  readonly mode: LockMode | null;
  readonly holders: readonly Holder[];
  readonly waiters: readonly Waiter[];
  /** The latest lock-delay placed on the lock, while any is in force. */
  readonly delayIndex: LogIndex | null;
  /** Every lock-delay in force, oldest first; the lock is closed while this is not empty. */
  readonly delays: readonly LockDelay[];
  /** A semaphore's or election's kind (absent for a plain lock, or a name not in use). */
  readonly kind?: 'semaphore' | 'election';
  /** A semaphore's limit. */
  readonly limit?: number;
}

export interface SessionDescription {
  readonly sessionId: SessionId;
  readonly ttlMs: number;
  readonly clientName: string;
  /** The identity that opened it; '' anonymous. */
  readonly identity: string;
  readonly lastRefreshIndex: LogIndex;
  readonly held: readonly string[];
  readonly waiting: readonly string[];
}

/** A session for a display: the first names of each list, and the whole counts. */
export interface SessionSummary extends Omit<SessionDescription, 'held' | 'waiting'> {
  readonly held: readonly string[];
  readonly heldTotal: number;
  readonly waiting: readonly string[];
  readonly waitingTotal: number;
}

export interface FenceValidation {
  readonly valid: boolean;
  /** The highest token among the lock's current grants, or null when it is free. */
  readonly currentToken: FencingToken | null;
}

/** The description of the lock `name`, whose record is `lock` (undefined: not in use). */
export function describeLock(name: string, lock: LockRecord | undefined): LockDescription {
  if (lock === undefined)
    return { lock: name, mode: null, holders: [], waiters: [], delayIndex: null, delays: [] };
  const holders = [...lock.holders.values()].map(publicHolder);
  const description: LockDescription = {
    lock: name,
    mode: holders[0]?.mode ?? null,
    holders,
    waiters: [...lock.waiters],
    delayIndex: lock.delays.at(-1)?.index ?? null,
    delays: [...lock.delays],
  };
  const { kind, limit } = lock;
  if (kind === undefined) return description;
  return { ...description, kind, ...(limit === undefined ? {} : { limit }) };
}

/** How many of `names` start with `prefix`; a count, no names copied or sorted. */
export function countNames(names: ReadonlyMap<string, unknown>, prefix: string): number {
  if (prefix === '') return names.size;
  let count = 0;
  for (const name of names.keys()) if (name.startsWith(prefix)) count++;
  return count;
}

/** The names that start with `prefix` and sort after `after`, in the map's order. */
export function* namesUnder(
  names: ReadonlyMap<string, unknown>,
  prefix: string,
  after: string,
): Iterable<string> {
  for (const name of names.keys()) {
    if (name.startsWith(prefix) && compareStrings(name, after) > 0) yield name;
  }
}

/** `session` with the first `namesMax` names of each list, and the counts. */
export function summariseSession(session: SessionRecord, namesMax: number): SessionSummary {
  return {
    ...sessionFields(session),
    held: smallestNames(session.held, namesMax),
    heldTotal: session.held.size,
    waiting: smallestNames(session.waiting, namesMax),
    waitingTotal: session.waiting.size,
  };
}

export function describeSession(session: SessionRecord): SessionDescription {
  return {
    ...sessionFields(session),
    held: [...session.held].sort(compareStrings),
    waiting: [...session.waiting].sort(compareStrings),
  };
}

/** Whether `token` is a current grant of `lock` (undefined: free), and the highest. */
export function fenceOf(lock: LockRecord | undefined, token: FencingToken): FenceValidation {
  let currentToken: FencingToken | null = null;
  let valid = false;
  for (const holder of lock?.holders.values() ?? []) {
    if (holder.token === token) valid = true;
    if (currentToken === null || holder.token > currentToken) currentToken = holder.token;
  }
  return { valid, currentToken };
}

/** What session() and sessionSummary() tell of a session besides its lock names. */
function sessionFields(session: SessionRecord): Omit<SessionDescription, 'held' | 'waiting'> {
  const { id: sessionId, ttlMs, clientName, identity, lastRefreshIndex } = session;
  return { sessionId, ttlMs, clientName, identity, lastRefreshIndex };
}
