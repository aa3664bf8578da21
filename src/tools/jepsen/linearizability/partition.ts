import {
  type AcquireOp,
  grantEndOf,
  type LinOp,
  type PartitionOp,
  type ReleaseOp,
} from './history.ts';
import type { ExpiryBound } from './model.ts';

export interface LeaseOptions {
  /** The clock-rate drift bound ε of the safety contract: a lease lasts ≥ ttl × (1 − ε). */
  readonly clockDriftMax: number;
  /**
   * Whether an ok acquire also refreshes its session's lease. The contract names only
   * keepalives (and the open), and src/lock refreshes on nothing else, so the default is
   * false: counting it would flag correct runs.
   */
  readonly acquireRefreshesLease: boolean;
}

/**
 * The earliest time each session's lease may end: `ttl × (1 − ε)` after the invocation of
 * its last acknowledged refresh. Every acknowledged refresh must come before the expiry
 * (an expired session is not refreshed), so the latest of them bounds it, wherever the
 * search places it. A session whose TTL or refreshes the history does not show is
 * unbounded (-∞): the checker then cannot tell an early expiry, and never invents one.
 */
export function expiryBounds(ops: readonly LinOp[], options: LeaseOptions): ExpiryBound {
  const ttlMs = new Map<string, number>();
  for (const op of ops) {
    if (op.type === 'openSession') ttlMs.set(op.session, op.ttlMs);
    else if (op.type === 'keepAlive' && op.ttlMs !== undefined && !ttlMs.has(op.session)) {
      ttlMs.set(op.session, op.ttlMs);
    }
  }
  const lastRefreshInvokeMs = new Map<string, number>();
  for (const op of ops) {
    if (op.outcome !== 'ok' || !refreshes(op, options)) continue;
    const previous = lastRefreshInvokeMs.get(op.session) ?? Number.NEGATIVE_INFINITY;
    lastRefreshInvokeMs.set(op.session, Math.max(previous, op.invokeMs));
  }
  const bounds = new Map<string, number>();
  for (const [session, invokeMs] of lastRefreshInvokeMs) {
    const ttl = ttlMs.get(session);
    if (ttl !== undefined) bounds.set(session, invokeMs + ttl * (1 - options.clockDriftMax));
  }
  return (session) => bounds.get(session) ?? Number.NEGATIVE_INFINITY;
}

function refreshes(op: LinOp, options: LeaseOptions): boolean {
  switch (op.type) {
    case 'openSession':
    case 'keepAlive':
      return true;
    case 'acquire':
      return options.acquireRefreshesLease;
    case 'closeSession':
    case 'release':
    case 'validateFence':
      return false;
  }
}

/**
 * Splits the history per lock name. Locks are independent objects once each session's
 * expiry bound is fixed up front, so the history is linearizable only if every lock's
 * part is (P-compositionality). A close goes to every lock its session touched. Each
 * part places its own expiry of a session: the parts do not agree on one expiry instant,
 * which can only let more histories pass, never fail a correct one.
 *
 * Ops that cannot change or observe a lock (a release refused, an acquire refused for a
 * reason that says nothing about the lock, a close refused for any reason but the
 * session being unknown) are left out. An acquire answered `grantEnded` comes with its
 * GrantEndOp: both halves in the same lock's part, so the split keeps its hold whole.
 */
export function partitionByLock(ops: readonly LinOp[]): Map<string, PartitionOp[]> {
  const parts = new Map<string, PartitionOp[]>();
  const locksOfSession = new Map<string, Set<string>>();
  for (const op of ops) {
    if (op.type === 'validateFence' && op.outcome === 'ok') pushTo(parts, op.lock, op);
    if (op.type !== 'acquire' && op.type !== 'release') continue;
    addTo(locksOfSession, op.session, op.lock);
    if (observable(op)) pushTo(parts, op.lock, op);
    if (op.type === 'acquire' && op.failCode === 'grantEnded')
      pushTo(parts, op.lock, grantEndOf(op));
  }
  for (const op of ops) {
    if (op.type !== 'closeSession') continue;
    if (op.outcome === 'fail' && op.failCode !== 'sessionGone') continue;
    for (const lock of locksOfSession.get(op.session) ?? []) pushTo(parts, lock, op);
  }
  return parts;
}

function observable(op: AcquireOp | ReleaseOp): boolean {
  if (op.outcome !== 'fail') return true;
  if (op.type !== 'acquire') return false;
  return op.failCode === 'busy' || op.failCode === 'sessionGone' || op.failCode === 'grantEnded';
}

function addTo(map: Map<string, Set<string>>, key: string, value: string): void {
  const set = map.get(key);
  if (set === undefined) map.set(key, new Set([value]));
  else set.add(value);
}

function pushTo<T>(map: Map<string, T[]>, key: string, value: T): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}
