import type { LockStateMachine } from '../../lock/index.ts';
import type { NodeStatus } from '../node.ts';
import type { ConsoleActivity } from './activity.ts';
import type { ContendedLock } from './contention.ts';
import type { AppliedAt } from './index-clock.ts';

/**
 * What the console page shows of one node, as JSON: its Raft state and, from its own
 * applied state (a stale read: no round to the leader), the locks, sessions and the
 * recent contention. Times are durations up to now ("held for"), never clock readings,
 * so that no two nodes' clocks are compared.
 */
export interface NodeSummary {
  readonly id: string;
  readonly role: string;
  readonly term: number;
  readonly leaderId: string | null;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly voters: readonly string[];
  readonly learners: readonly string[];
  /** Leader changes this node saw within LEADER_CHANGES_WINDOW_MS, how long ago each. */
  readonly leaderChangesAgoMs: readonly number[];
}

export interface Duration {
  readonly ms: number;
  /** At least `ms`: it began before what this node remembers. */
  readonly atLeast: boolean;
}

export interface HolderView {
  readonly sessionId: number;
  readonly owner: string;
  readonly mode: string;
  readonly token: number;
  readonly held: Duration;
}

export interface WaiterView {
  readonly sessionId: number;
  readonly owner: string;
  readonly mode: string;
  readonly waiting: Duration;
}

export interface LockView {
  readonly lock: string;
  /** The first HOLDERS_SHOWN holders (a shared lock can have many). */
  readonly holders: readonly HolderView[];
  readonly holdersTotal: number;
  /** The first WAITERS_SHOWN of the queue, in order. */
  readonly waiters: readonly WaiterView[];
  readonly waitersTotal: number;
  /** A lock-delay closes the lock (its holder's session expired). */
  readonly delayed: boolean;
}

export interface SessionView {
  readonly sessionId: number;
  readonly clientName: string;
  readonly ttlMs: number;
  readonly sinceRefresh: Duration;
  /** The first names (code-unit order): together the rows list about rowsMax of each. */
  readonly held: readonly string[];
  readonly heldTotal: number;
  readonly waiting: readonly string[];
  readonly waitingTotal: number;
}

export interface NodeView {
  readonly node: NodeSummary;
  /**
   * Owners and client names are blanked: with an `auth` section they are for those
   * with `read` on the lock, which the metrics address cannot tell.
   */
  readonly namesHidden: boolean;
  readonly locks: {
    readonly prefix: string;
    /** Locks in use under the prefix (held, waited for or delayed). */
    readonly total: number;
    readonly rows: readonly LockView[];
  };
  readonly sessions: { readonly total: number; readonly rows: readonly SessionView[] };
  readonly contention: {
    readonly windowMs: number;
    readonly rows: readonly (ContendedLock & { readonly waitersNow: number })[];
    /** Events of locks past the tracker's bound: counted, not named. */
    readonly untracked: number;
  };
}

/** The node as the console reads it: status, and the applied state. */
export interface ViewedNode {
  readonly id: string;
  readonly locks: LockStateMachine;
  status(): NodeStatus;
}

export const LEADER_CHANGES_WINDOW_MS = 10 * 60_000;
const CONTENDED_ROWS = 10;
const WAITERS_SHOWN = 20;
const HOLDERS_SHOWN = 20;

export function nodeSummary(
  node: ViewedNode,
  activity: ConsoleActivity,
  nowMs: number,
): NodeSummary {
  const status = node.status();
  return {
    id: status.id,
    role: status.role,
    term: status.term,
    leaderId: status.leaderId,
    commitIndex: status.commitIndex,
    appliedIndex: status.appliedIndex,
    voters: status.voters,
    learners: status.learners,
    leaderChangesAgoMs: activity
      .leaderChangesWithin(LEADER_CHANGES_WINDOW_MS)
      .map((atMs) => Math.round(nowMs - atMs)),
  };
}

export function nodeView(
  node: ViewedNode,
  activity: ConsoleActivity,
  prefix: string,
  rowsMax: number,
  nowMs: number,
  namesHidden = false,
): NodeView {
  const since = (index: number): Duration => duration(activity.clock.appliedAt(index), nowMs);
  const locks = node.locks;
  const hide = (name: string): string => (namesHidden ? '' : name);
  // Bounded: the first rowsMax names, and a count (no name copied or sorted for it).
  const rows = locks.listLocks(prefix, rowsMax).map((name) => lockView(locks, name, since, hide));
  const sessionIds = locks.sessionIds();
  const shownIds = sessionIds.slice(0, rowsMax);
  // The rows share rowsMax names of held (and of waited-for) locks, one each at least.
  const namesPerRow = Math.max(1, Math.floor(rowsMax / Math.max(1, shownIds.length)));
  const sessions: SessionView[] = [];
  for (const id of shownIds) {
    const session = locks.sessionSummary(id, namesPerRow);
    if (session === null) continue;
    sessions.push({
      sessionId: session.sessionId,
      clientName: hide(session.clientName),
      ttlMs: session.ttlMs,
      sinceRefresh: since(session.lastRefreshIndex),
      held: session.held,
      heldTotal: session.heldTotal,
      waiting: session.waiting,
      waitingTotal: session.waitingTotal,
    });
  }
  const contended = activity.contention.top(CONTENDED_ROWS, nowMs);
  return {
    node: nodeSummary(node, activity, nowMs),
    namesHidden,
    locks: { prefix, total: locks.countLocks(prefix), rows },
    sessions: { total: sessionIds.length, rows: sessions },
    contention: {
      windowMs: activity.contention.windowMs,
      rows: contended.locks.map((row) => ({
        ...row,
        waitersNow: locks.describe(row.lock).waiters.length,
      })),
      untracked: contended.untracked,
    },
  };
}

function lockView(
  locks: LockStateMachine,
  name: string,
  since: (index: number) => Duration,
  hide: (name: string) => string,
): LockView {
  const described = locks.describe(name);
  return {
    lock: name,
    holdersTotal: described.holders.length,
    holders: described.holders.slice(0, HOLDERS_SHOWN).map((holder) => ({
      sessionId: holder.sessionId,
      owner: hide(holder.owner),
      mode: holder.mode,
      token: holder.token,
      held: since(holder.token),
    })),
    waitersTotal: described.waiters.length,
    waiters: described.waiters.slice(0, WAITERS_SHOWN).map((waiter) => ({
      sessionId: waiter.sessionId,
      owner: hide(waiter.owner),
      mode: waiter.mode,
      waiting: since(waiter.requestIndex),
    })),
    delayed: described.delays.length > 0,
  };
}

function duration(at: AppliedAt, nowMs: number): Duration {
  return { ms: Math.max(0, Math.round(nowMs - at.atMs)), atLeast: at.before };
}
