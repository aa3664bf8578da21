import type {
  AcquireOp,
  CloseSessionOp,
  GrantEndOp,
  LockMode,
  PartitionOp,
  ReleaseOp,
  ValidateFenceOp,
} from './history.ts';
import { returnMs } from './history.ts';

/**
 * The sequential model of ONE lock, written from the promises the README makes to users
 * (not from src/lock's rules):
 *
 * - a lock is held exclusively by one session or shared by several;
 * - a grant's token is greater than every earlier token of the lock, so tokens strictly
 *   increase from grant to grant; a session re-acquiring what it holds gets the same grant;
 * - a release by the holder, with its token, frees its hold;
 * - a session's holds may end by expiry, an event no client observes, but only once
 *   `ttl × (1 − ε)` has passed since the invocation of its last acknowledged refresh;
 * - a closed or expired session holds nothing and is granted nothing;
 * - an acquire answered `grantEnded` was granted, and its grant ended, both before its
 *   answer (README, "Exactly once": a retry of a request whose grant ended is told so).
 *
 * Expiry is placed lazily: an op expires exactly the holders it needs gone, at its own
 * linearization point. Expiring a session earlier than needed is never more permissive
 * (its holds could only explain more refusals and releases by staying, and a later
 * expiry constrains fewer ops), so the lazy choice loses no linearization and keeps the
 * model deterministic, which the search's cache needs.
 */
export interface Hold {
  readonly session: string;
  /** null for a grant whose answer never came (an `info` acquire): its token is unknown. */
  readonly token: number | null;
  readonly mode: LockMode;
}

export interface LockState {
  /** Sorted by session, so equal states have equal keys. */
  readonly holds: readonly Hold[];
  /** The highest token granted so far; 0 before any grant (tokens are log indexes ≥ 1). */
  readonly maxToken: number;
  /** Sessions expired or closed so far in this linearization, sorted. */
  readonly gone: readonly string[];
  /**
   * The ids of the acquires answered `grantEnded` whose grant this linearization has made
   * and not yet ended, sorted: their GrantEndOp may come next.
   */
  readonly granting: readonly number[];
  /**
   * The earliest real time the linearization has reached because of the expiries it
   * placed: every later op must be able to take effect at or after it.
   */
  readonly floorMs: number;
}

/** When each session's lease may end at the earliest; -∞ when nothing bounds it. */
export type ExpiryBound = (session: string) => number;

export const INITIAL_LOCK_STATE: LockState = {
  holds: [],
  maxToken: 0,
  gone: [],
  granting: [],
  floorMs: Number.NEGATIVE_INFINITY,
};

/** A key equal for equal states and different otherwise, for the search's cache. */
export function stateKey(state: LockState): string {
  const holds = state.holds.map((h) => `${h.session}:${h.token ?? '?'}:${h.mode[0]}`).join(',');
  return `${holds}|${state.maxToken}|${state.gone.join(',')}|${state.granting.join(',')}|${state.floorMs}`;
}

/**
 * Whether `op`, which left `state` unchanged, leaves every later state unchanged too
 * (see SearchModel.inert): it only reads (a refusal, a failed release or close, a token
 * told valid), or it is its session's own op and the session is gone, which no later op
 * undoes: a gone session holds nothing and is granted nothing, so its unanswered
 * acquire, release or close and a refusal saying it is gone change nothing any more.
 * A validation is not its asker's session's op: told invalid, it may end a holder.
 */
export function inertLockOp(state: LockState, op: PartitionOp): boolean {
  if (readsOnly(op)) return true;
  return op.type !== 'validateFence' && state.gone.includes(op.session);
}

/** Ops whose step is the identity or impossible in every state. */
function readsOnly(op: PartitionOp): boolean {
  if (op.type === 'validateFence') return op.outcome !== 'ok' || op.valid === true;
  if (op.type === 'grantEnd') return false;
  // A refusal saying the session is gone ends it, when it is not gone yet; a grant that
  // ended was made first.
  if (op.type === 'acquire' && op.failCode === 'grantEnded') return false;
  return op.outcome === 'fail' && !('failCode' in op && op.failCode === 'sessionGone');
}

/**
 * The state after `op` takes effect, or null if its outcome is impossible from `state`,
 * including when the expiries placed so far pushed real time past the op's answer.
 */
export function stepLock(
  state: LockState,
  op: PartitionOp,
  expiryBound: ExpiryBound,
): LockState | null {
  const next = stepUnbounded(state, op, expiryBound);
  return next !== null && next.floorMs <= returnMs(op) ? next : null;
}

function stepUnbounded(
  state: LockState,
  op: PartitionOp,
  expiryBound: ExpiryBound,
): LockState | null {
  switch (op.type) {
    case 'acquire':
      return stepAcquire(state, op, expiryBound);
    case 'grantEnd':
      return endGrant(state, op);
    case 'release':
      return stepRelease(state, op);
    case 'closeSession':
      return stepClose(state, op);
    case 'validateFence':
      return stepValidate(state, op, expiryBound);
  }
}

/**
 * A token validates while its grant is held: a release or the holder's expiry ends it,
 * whoever else holds the lock (README). A grant whose token nobody learned may be it.
 */
function stepValidate(
  state: LockState,
  op: ValidateFenceOp,
  expiryBound: ExpiryBound,
): LockState | null {
  if (op.outcome !== 'ok') return state;
  const holder = state.holds.find((h) => h.token === op.token);
  if (op.valid === true) {
    return holder !== undefined || state.holds.some((h) => h.token === null) ? state : null;
  }
  if (holder === undefined) return state;
  return expire(state, holder.session, expiryBound, returnMs(op));
}

function stepAcquire(state: LockState, op: AcquireOp, expiryBound: ExpiryBound): LockState | null {
  switch (op.outcome) {
    case 'ok':
      return grant(state, op, expiryBound);
    case 'info':
      return grantUnanswered(state, op, expiryBound);
    case 'fail':
      return refuse(state, op, expiryBound);
  }
}

function grant(state: LockState, op: AcquireOp, expiryBound: ExpiryBound): LockState | null {
  const token = op.token ?? 0;
  if (state.gone.includes(op.session)) return null;
  const own = state.holds.find((h) => h.session === op.session);
  if (own !== undefined) return reacquire(state, own, op, token);
  if (token <= state.maxToken) return null;
  let next = state;
  for (const hold of state.holds) {
    if (!conflicts(hold.mode, op.mode)) continue;
    const expired = expire(next, hold.session, expiryBound, returnMs(op));
    if (expired === null) return null;
    next = expired;
  }
  const hold: Hold = { session: op.session, token, mode: op.mode };
  return { ...next, holds: withHold(next.holds, hold), maxToken: token };
}

/** The holding session asking again gets its own grant back, unchanged. */
function reacquire(state: LockState, own: Hold, op: AcquireOp, token: number): LockState | null {
  if (own.mode !== op.mode) return null;
  if (own.token === token) return state;
  if (own.token !== null) return null;
  // The grant's token was unknown (its acquire never answered); this answer names it.
  const hold: Hold = { ...own, token };
  const holds = withHold(
    state.holds.filter((h) => h.session !== own.session),
    hold,
  );
  return { ...state, holds, maxToken: Math.max(state.maxToken, token) };
}

/**
 * An unanswered acquire that takes effect here is granted, with a token nobody learned,
 * after the expiries it needs (its answer never came, so any time after its call will
 * do). The search also tries it later, up to the very end where it changes nothing
 * anyone observed, which is how "it never happened" is covered.
 */
function grantUnanswered(state: LockState, op: AcquireOp, expiryBound: ExpiryBound): LockState {
  if (state.gone.includes(op.session)) return state;
  if (state.holds.some((h) => h.session === op.session)) return state;
  let next = state;
  for (const hold of state.holds) {
    if (!conflicts(hold.mode, op.mode)) continue;
    next = expire(next, hold.session, expiryBound, returnMs(op)) ?? next;
  }
  const hold: Hold = { session: op.session, token: null, mode: op.mode };
  return { ...next, holds: withHold(next.holds, hold) };
}

function refuse(state: LockState, op: AcquireOp, expiryBound: ExpiryBound): LockState | null {
  switch (op.failCode) {
    case 'grantEnded':
      return grantThatEnds(state, op, expiryBound);
    case 'busy':
      return state.holds.some((h) => h.session !== op.session) ? state : null;
    case 'sessionGone':
      if (state.gone.includes(op.session)) return state;
      return expire(state, op.session, expiryBound, returnMs(op));
    default:
      // `other` or none: only "not granted", which any state allows.
      return state;
  }
}

/**
 * The first half of an acquire answered `grantEnded`: its grant, with a token nobody
 * learned, made as an answered grant is (a conflicting holder must be gone by then, by a
 * release or an expiry possible before the answer), or the session's own grant handed
 * back to it. Its end (endGrant) must follow before the answer, so this hold explains
 * refusals within the op's interval only.
 */
function grantThatEnds(
  state: LockState,
  op: AcquireOp,
  expiryBound: ExpiryBound,
): LockState | null {
  if (state.gone.includes(op.session)) return null;
  const granting = [...state.granting, op.id].sort((a, b) => a - b);
  // Re-acquiring what the session holds gives it that grant (in the mode it has).
  if (state.holds.some((h) => h.session === op.session)) return { ...state, granting };
  let next = state;
  for (const hold of state.holds) {
    if (!conflicts(hold.mode, op.mode)) continue;
    const expired = expire(next, hold.session, expiryBound, returnMs(op));
    if (expired === null) return null;
    next = expired;
  }
  const hold: Hold = { session: op.session, token: null, mode: op.mode };
  return { ...next, holds: withHold(next.holds, hold), granting };
}

/**
 * The second half: the grant its first half made has ended (withdrawn, revoked, max hold
 * reached, or the session ended meanwhile), so the session holds the lock no longer. A
 * session holds at most one grant of a lock, so that is the session's hold, if any is
 * left.
 */
function endGrant(state: LockState, op: GrantEndOp): LockState | null {
  if (!state.granting.includes(op.id)) return null;
  const granting = state.granting.filter((id) => id !== op.id);
  return { ...withoutHoldsOf(state, op.session), granting };
}

function stepRelease(state: LockState, op: ReleaseOp): LockState | null {
  const own = state.holds.find(
    (h) => h.session === op.session && (h.token === op.token || h.token === null),
  );
  switch (op.outcome) {
    case 'ok':
      return own === undefined ? null : withoutHoldsOf(state, op.session);
    case 'info':
      return own === undefined ? state : withoutHoldsOf(state, op.session);
    case 'fail':
      return state;
  }
}

/**
 * A close frees every hold of the session; a closed session is granted nothing more. A
 * close refused because the session was unknown says it had ended by the answer: by
 * expiry, or by this very close, whose earlier attempt may have applied before a retry
 * was told NOT_FOUND (README, "Exactly once"). So it ends the session as a close would,
 * with no lease bound to check.
 */
function stepClose(state: LockState, op: CloseSessionOp): LockState | null {
  if (op.outcome === 'fail' && op.failCode !== 'sessionGone') return state;
  if (state.gone.includes(op.session)) return op.outcome === 'ok' ? null : state;
  return markGone(withoutHoldsOf(state, op.session), op.session);
}

/**
 * Ends `session`'s holds by expiry, placed just before an op answered at `returnMs`:
 * possible only if its lease may have run out by then, and every later op then happens
 * no earlier than that.
 */
function expire(
  state: LockState,
  session: string,
  expiryBound: ExpiryBound,
  opReturnMs: number,
): LockState | null {
  const floorMs = Math.max(state.floorMs, expiryBound(session));
  if (floorMs > opReturnMs) return null;
  return { ...markGone(withoutHoldsOf(state, session), session), floorMs };
}

function conflicts(held: LockMode, wanted: LockMode): boolean {
  return held === 'exclusive' || wanted === 'exclusive';
}

function withHold(holds: readonly Hold[], hold: Hold): Hold[] {
  return [...holds, hold].sort((a, b) => (a.session < b.session ? -1 : 1));
}

function withoutHoldsOf(state: LockState, session: string): LockState {
  return { ...state, holds: state.holds.filter((h) => h.session !== session) };
}

function markGone(state: LockState, session: string): LockState {
  return { ...state, gone: [...state.gone, session].sort() };
}
