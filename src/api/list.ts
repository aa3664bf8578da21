import type { LockDescription, LockStateMachine, Waiter } from '../lock/index.ts';
import type { Caller } from './auth/caller.ts';
import { requirePermission } from './auth/guard.ts';
import { type ApiContext, header, wireHolder } from './context.ts';
import type {
  ListLocksResponse,
  ListSessionsResponse,
  WireLockInfo,
  WireSessionInfo,
  WireWaiter,
} from './proto.ts';
import { toUint64, wireMode } from './proto.ts';
import { parseListLocks, parseListSessions } from './validate.ts';

/**
 * ListLocks and ListSessions: one bounded page of the lock state, for operators and
 * scripts (`dlm locks`, `dlm sessions`). Linearizable reads through ReadIndex unless
 * `stale`. A page holds at most `limit` items (runtime.listItemsMax at most); a lock's
 * waiters are bounded by the rules' waitersPerLockMax, and a session's lock names by
 * SESSION_LOCK_NAMES_MAX, so no answer grows with the whole state.
 */

/** Lock names listed per session (held and waiting each); the counts say how many in all. */
export const SESSION_LOCK_NAMES_MAX = 32;

type Locks = ApiContext['node']['locks'];

/** Runs `read` through ReadIndex, or on this node's state as is when `stale`. */
async function readState<T>(
  context: ApiContext,
  stale: boolean,
  read: (locks: Locks) => T,
): Promise<{ value: T; index: number }> {
  const run = (locks: Locks) => ({ value: read(locks), index: locks.lastAppliedIndex });
  return stale ? run(context.node.locks) : await context.node.read(run);
}

export async function listLocks(
  context: ApiContext,
  raw: unknown,
  caller: Caller,
): Promise<ListLocksResponse> {
  const query = parseListLocks(raw, context.options.listItemsMax);
  // Every name the page can hold starts with the prefix: read on the prefix covers them.
  requirePermission(context.auth, caller, 'read', query.prefix);
  const { value, index } = await readState(context, query.stale, (locks) => {
    // One more than asked, to tell whether another page follows.
    const names = locks.listLocks(query.prefix, query.limit + 1, query.after);
    const page = names.slice(0, query.limit).map((name) => locks.describe(name));
    return { truncated: names.length > query.limit, page };
  });
  return {
    header: header(context.node, index),
    locks: value.page.map((described) => lockInfo(context, described)),
    truncated: value.truncated,
    last: value.page.at(-1)?.lock ?? '',
  };
}

/** A lock as Describe shows it, with each holder's hold time on this node. */
export function lockInfo(context: ApiContext, described: LockDescription): WireLockInfo {
  return {
    lock: described.lock,
    mode: wireMode(described.mode),
    holders: described.holders.map((holder) =>
      wireHolder(holder, context.activity?.heldMs(described.lock, holder.sessionId) ?? 0),
    ),
    waiters: described.waiters.map(wireWaiter),
  };
}

export async function listSessions(
  context: ApiContext,
  raw: unknown,
  caller: Caller,
): Promise<ListSessionsResponse> {
  const query = parseListSessions(raw, context.options.listItemsMax);
  // A session lists the names it holds and waits for, under any prefix.
  requirePermission(context.auth, caller, 'read', '');
  const { value, index } = await readState(context, query.stale, (locks) => {
    const ids = sessionsAfter(locks, query.afterSessionId, query.limit + 1);
    const page = ids.slice(0, query.limit);
    return {
      truncated: ids.length > query.limit,
      sessions: page.map((id) => sessionInfo(context, locks, id)),
    };
  });
  const sessions = value.sessions.filter((each) => each !== null);
  return {
    header: header(context.node, index),
    sessions,
    truncated: value.truncated,
    last_session_id: sessions.at(-1)?.session_id ?? '0',
  };
}

function sessionsAfter(locks: Locks, after: number, count: number): number[] {
  const ids: number[] = [];
  for (const id of locks.sessionIds()) {
    if (id <= after) continue;
    ids.push(id);
    if (ids.length === count) break;
  }
  return ids;
}

function sessionInfo(
  context: ApiContext,
  locks: Pick<LockStateMachine, 'sessionSummary'>,
  id: number,
): WireSessionInfo | null {
  const session = locks.sessionSummary(
    id as Parameters<LockStateMachine['sessionSummary']>[0],
    SESSION_LOCK_NAMES_MAX,
  );
  if (session === null) return null;
  return {
    session_id: toUint64(session.sessionId),
    client_name: session.clientName,
    ttl_ms: toUint64(session.ttlMs),
    since_refresh_ms: toUint64(context.activity?.sinceRefreshMs(session.sessionId) ?? 0),
    last_refresh_index: toUint64(session.lastRefreshIndex),
    held_locks: session.held,
    held_count: session.heldTotal,
    waiting_locks: session.waiting,
    waiting_count: session.waitingTotal,
  };
}

export function wireWaiter(waiter: Waiter): WireWaiter {
  return {
    session_id: toUint64(waiter.sessionId),
    owner: waiter.owner,
    mode: wireMode(waiter.mode),
    enqueued_index: toUint64(waiter.requestIndex),
    permits: toUint64(waiter.permits ?? 0),
    value: waiter.value ?? '',
  };
}
