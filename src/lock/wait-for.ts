import type { SessionId } from '../util/ids.ts';
import type { Holder, LockClaim, LockMode, WaitForHop } from './types.ts';

/**
 * Deadlock detection (issue 17): the wait-for graph between sessions, computed at apply
 * from the queues and holders, never stored. A session waiting for a lock waits for
 * - every holder of it whose mode excludes the waiter's (shared beside shared does not),
 * - every waiter ahead of it in the lock's queue whose mode excludes the waiter's (the
 *   waiter is granted only after it releases), and every set waiter ahead of it whatever
 *   the modes: a queue grants only its head, and a set at the head may be held up by
 *   another of its locks. A single-lock shared place ahead of a shared waiter is no
 *   edge: it is granted once this lock's blockers go, and those (exclusive holders and
 *   places, sets) block the waiter behind it directly (review test rev3-multi-lock: the
 *   edge refused a single-lock Acquire that could not deadlock).
 * Only queuing adds edges (a grant turns "waits ahead of" into "holds", or drops the
 * edge, and everything else removes), so refusing every wait that would close a cycle
 * keeps the graph acyclic from the raise on.
 *
 * The search walks from the new request's edges and asks whether it comes back to the
 * requesting session. Every replica must decide alike and name the same cycle, so it is
 * breadth-first in a fixed order: claims and each session's locks in code-unit order,
 * queues front to back, holders in grant order.
 */
export interface WaitForView {
  /** The locks `session` waits for, in code-unit order. */
  waitsOf(session: SessionId): readonly string[];
  /** The lock's queue, front first, by session and mode. */
  queueOf(lock: string): readonly WaitingPlace[];
  /** The lock's holders, in grant order (one exclusive, or all shared). */
  holdersOf(lock: string): {
    values(): IterableIterator<Pick<Holder, 'sessionId' | 'mode'>>;
  };
}

export interface WaitingPlace {
  readonly sessionId: SessionId;
  readonly mode: LockMode;
  /** The names of its set when it waits for several locks at once (AcquireAll). */
  readonly lockSet?: readonly string[];
}

export type CycleSearch =
  | { readonly kind: 'none'; readonly steps: number }
  | { readonly kind: 'cycle'; readonly cycle: readonly WaitForHop[]; readonly steps: number }
  /** The search would examine more than `stepsMax` places, holders and lookups. */
  | { readonly kind: 'tooLarge'; readonly steps: number };

/** Thrown inside the search when it runs past its bound; caught in findWaitCycle. */
class StepsExceeded extends Error {}

/** One breadth-first search; see the module comment. */
class Search {
  private readonly reachedBy = new Map<SessionId, WaitForHop>();
  private readonly frontier: SessionId[] = [];
  /**
   * Per lock and waiting mode, how many places from the front were scanned already: a
   * waiter in that mode reaches the same places ahead as any other in it.
   */
  private readonly placesReached = new Map<string, number>();
  /** Per lock, each waiting session's position, built once when first needed. */
  private readonly positions = new Map<string, ReadonlyMap<SessionId, number>>();
  /**
   * Locks whose holders are reached. Holders are one exclusive or all shared, so a lock's
   * holders are reached all at once, by the first waiter they block.
   */
  private readonly holdersReached = new Set<string>();
  private closing: WaitForHop | null = null;
  steps = 0;

  constructor(
    private readonly view: WaitForView,
    private readonly requester: SessionId,
    private readonly stepsMax: number,
  ) {}

  run(claims: readonly LockClaim[]): readonly WaitForHop[] | null {
    for (const claim of [...claims].sort(compareClaims)) {
      const places = this.view.queueOf(claim.lock).length;
      if (this.scan(claim.lock, places, this.requester, claim.mode)) return this.cycle();
    }
    for (let next = 0; next < this.frontier.length; next++) {
      const session = this.frontier[next] as SessionId;
      if (this.expand(session)) return this.cycle();
    }
    return null;
  }

  /** Walks the edges of a session reached on the way; true once the requester is reached. */
  private expand(session: SessionId): boolean {
    const locks = this.view.waitsOf(session);
    this.count(locks.length);
    for (const lock of locks) {
      const position = this.positionOf(lock, session);
      const place = position === undefined ? undefined : this.view.queueOf(lock)[position];
      if (place !== undefined && this.scan(lock, position ?? 0, session, place.mode)) return true;
    }
    return false;
  }

  /**
   * Where `session` waits in `lock`'s queue. A lookup per reached session scanned the
   * queue each time: quadratic in a long queue, which ran a nested Acquire of a lock
   * with 446 waiters past the default step bound (review test rev3-multi-lock).
   */
  private positionOf(lock: string, session: SessionId): number | undefined {
    let positions = this.positions.get(lock);
    if (positions === undefined) {
      const queue = this.view.queueOf(lock);
      this.count(queue.length);
      const built = new Map<SessionId, number>();
      for (const [position, place] of queue.entries()) built.set(place.sessionId, position);
      this.positions.set(lock, built);
      positions = built;
    }
    this.count(1);
    return positions.get(session);
  }

  /**
   * The edges of `waiter`, waiting for `lock` in `mode` behind the first `ahead` places:
   * the holders its mode conflicts with, and the places ahead not reached yet.
   */
  private scan(lock: string, ahead: number, waiter: SessionId, mode: LockMode): boolean {
    if (this.reachHolders(lock, waiter, mode)) return true;
    const queue = this.view.queueOf(lock);
    const key = `${mode}\u0000${lock}`;
    const from = this.placesReached.get(key) ?? 0;
    if (ahead <= from) return false;
    this.placesReached.set(key, ahead);
    for (let position = from; position < ahead; position++) {
      this.count(1);
      const place = queue[position] as WaitingPlace;
      if (!blocksBehind(place, mode)) continue;
      const hop = { waiter, lock, blocker: place.sessionId, blockerHolds: false };
      if (this.reach(hop)) return true;
    }
    return false;
  }

  private reachHolders(lock: string, waiter: SessionId, mode: LockMode): boolean {
    if (this.holdersReached.has(lock)) return false;
    const holders = this.view.holdersOf(lock);
    const first = holders.values().next().value;
    if (first === undefined) return false;
    if (mode === 'shared' && first.mode === 'shared') return false;
    this.holdersReached.add(lock);
    for (const holder of holders.values()) {
      this.count(1);
      const hop = { waiter, lock, blocker: holder.sessionId, blockerHolds: true };
      if (this.reach(hop)) return true;
    }
    return false;
  }

  /** Notes how `hop.blocker` was first reached; true when it is the requester. */
  private reach(hop: WaitForHop): boolean {
    if (hop.blocker === this.requester) {
      this.closing = hop;
      return true;
    }
    if (this.reachedBy.has(hop.blocker)) return false;
    this.reachedBy.set(hop.blocker, hop);
    this.frontier.push(hop.blocker);
    return false;
  }

  private count(steps: number): void {
    this.steps += steps;
    if (this.steps > this.stepsMax) throw new StepsExceeded();
  }

  /** The cycle from the requester's own edge round to the edge that reached it back. */
  private cycle(): readonly WaitForHop[] {
    const hops: WaitForHop[] = [];
    let hop = this.closing;
    while (hop !== null) {
      hops.push(hop);
      hop = hop.waiter === this.requester ? null : (this.reachedBy.get(hop.waiter) ?? null);
    }
    return hops.reverse();
  }
}

/**
 * Whether `requester`, queuing for `claims`, would close a wait-for cycle, examining at
 * most `stepsMax` places, holders and lookups. (A session that holds nothing and waits
 * for nothing has no one waiting for it: the caller need not search then.)
 */
export function findWaitCycle(
  view: WaitForView,
  requester: SessionId,
  claims: readonly LockClaim[],
  stepsMax: number,
): CycleSearch {
  const search = new Search(view, requester, stepsMax);
  try {
    const cycle = search.run(claims);
    if (cycle === null) return { kind: 'none', steps: search.steps };
    return { kind: 'cycle', cycle, steps: search.steps };
  } catch (error) {
    if (!(error instanceof StepsExceeded)) throw error;
    return { kind: 'tooLarge', steps: search.steps };
  }
}

/** A `deadlock` refusal's detail: the cycle in words; `nameOf` as for describeCycle. */
export function deadlockDetail(
  cycle: readonly WaitForHop[],
  nameOf?: (lock: string) => string,
): string {
  return `waiting would close a wait-for cycle, so nothing was queued: ${describeCycle(cycle, nameOf)}`;
}

/**
 * The cycle in words, for a refusal: `session 5 waits for "b" held by session 7, ...`.
 * `nameOf` writes a lock's name (the API hides names its caller may not read).
 */
export function describeCycle(
  cycle: readonly WaitForHop[],
  nameOf: (lock: string) => string = (lock) => JSON.stringify(lock),
): string {
  return cycle
    .map(
      (hop) =>
        `session ${hop.waiter} waits for ${nameOf(hop.lock)} ${hop.blockerHolds ? 'held by' : 'queued for ahead of it by'} session ${hop.blocker}`,
    )
    .join(', ');
}

/** Whether a waiter in `mode` behind `place` waits for it (see the module comment). */
function blocksBehind(place: WaitingPlace, mode: LockMode): boolean {
  if (place.lockSet !== undefined && place.lockSet.length > 1) return true;
  return place.mode === 'exclusive' || mode === 'exclusive';
}

function compareClaims(a: LockClaim, b: LockClaim): number {
  return a.lock < b.lock ? -1 : a.lock > b.lock ? 1 : 0;
}
