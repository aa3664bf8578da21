import { checkTokensRise, grantKey, releasesByGrant, type Violation } from './checker.ts';
import { describeOp, type Op, type OpKind } from './history.ts';

/**
 * History checkers for semaphores and elections (issue 17), pure functions over what
 * clients were told, like checker.ts. A grant is believed held from the acknowledgement
 * of its acquire-permits or campaign to the earliest of the invocation of its release
 * (resign, for a leader), its session's signal (lostAtMs) and the end of the run.
 *
 * - Permits: at every instant the permits of the believed grants of a semaphore sum to
 *   at most its limit, and no two grants to different sessions carry one token (each
 *   permit grant is its own, the index of the entry that made it), and tokens rise in
 *   real time per semaphore.
 * - Elections: no two believed terms of one election overlap (unless they are one term
 *   handed back to its session), and leader tokens rise in real time.
 */
export interface Belief {
  readonly name: string;
  readonly acquire: Op;
  readonly end: Op | null;
  readonly startMs: number;
  readonly endMs: number;
}

/** The believed grants of `grantKind` ops, each ended by the first `endKind` op of its token. */
export function beliefsOf(
  ops: readonly Op[],
  grantKind: OpKind,
  endKind: OpKind,
  endOfRunMs: number,
): Belief[] {
  const ends = releasesByGrant(ops, endKind);
  const beliefs: Belief[] = [];
  for (const acquire of ops) {
    if (acquire.kind !== grantKind || acquire.outcome !== 'ok') continue;
    const startMs = acquire.completeMs ?? acquire.invokeMs;
    const key = grantKey(acquire.client, acquire.lock, acquire.token);
    const end = ends.get(key)?.find((op) => op.invokeMs >= startMs) ?? null;
    const endMs = Math.min(
      end?.invokeMs ?? Number.POSITIVE_INFINITY,
      acquire.lostAtMs ?? Number.POSITIVE_INFINITY,
      endOfRunMs,
    );
    // Lost before it was learned of: never believed.
    if (endMs > startMs) beliefs.push({ name: acquire.lock, acquire, end, startMs, endMs });
  }
  return beliefs;
}

function byName<T extends { readonly lock: string } | { readonly name: string }>(
  items: readonly T[],
): Map<string, T[]> {
  const grouped = new Map<string, T[]>();
  for (const item of items) {
    const name = 'name' in item ? item.name : item.lock;
    const list = grouped.get(name) ?? [];
    list.push(item);
    grouped.set(name, list);
  }
  return grouped;
}

/**
 * Permits within the limit: sweeping each semaphore's believed grants in time order, the
 * permits held once a grant begins must not exceed the limit. One violation per excess
 * (from a grant that took the sum over the limit until it falls back), naming its holds.
 */
export function checkPermits(ops: readonly Op[], endOfRunMs: number): Violation[] {
  const violations: Violation[] = [];
  const beliefs = beliefsOf(ops, 'acquire-permits', 'release', endOfRunMs);
  for (const [name, holds] of byName(beliefs)) {
    // Ends before starts at one instant: a hold is [start, end).
    const events = holds.flatMap((hold) => [
      { atMs: hold.startMs, starts: true, hold },
      { atMs: hold.endMs, starts: false, hold },
    ]);
    events.sort((a, b) => a.atMs - b.atMs || Number(a.starts) - Number(b.starts));
    const open = new Set<Belief>();
    let over = false;
    for (const event of events) {
      if (!event.starts) {
        open.delete(event.hold);
        over &&= exceeds(open);
        continue;
      }
      open.add(event.hold);
      if (over || !exceeds(open)) continue;
      over = true;
      const held = [...open].sort((a, b) => a.acquire.id - b.acquire.id);
      violations.push({
        check: 'permits-over-limit',
        message: `${name}: at ${event.atMs.toFixed(1)} ms ${permitsOf(held)} permits were believed held, over the limit ${limitOf(held)}: ${held.map((hold) => `${describeOp(hold.acquire)} permits=${hold.acquire.permits}`).join(' / ')}`,
        ops: held.map((hold) => hold.acquire.id),
      });
    }
  }
  const grants = ops.filter((op) => op.kind === 'acquire-permits' && op.outcome === 'ok');
  violations.push(...checkDistinctTokens(grants));
  violations.push(...checkTokensRise(byName(grants), 'permit-token'));
  return violations;
}

function permitsOf(holds: readonly Belief[]): number {
  return holds.reduce((sum, hold) => sum + (hold.acquire.permits ?? 1), 0);
}

/** The limit the grants were asked under: the least any of them named. */
function limitOf(holds: readonly Belief[]): number {
  return Math.min(...holds.map((hold) => hold.acquire.limit ?? Number.POSITIVE_INFINITY));
}

function exceeds(open: ReadonlySet<Belief>): boolean {
  const holds = [...open];
  return permitsOf(holds) > limitOf(holds);
}

/** No two permit grants of one semaphore to different sessions carry one token. */
function checkDistinctTokens(grants: readonly Op[]): Violation[] {
  const violations: Violation[] = [];
  const seen = new Map<string, Op>();
  for (const grant of grants) {
    if (grant.token === undefined) continue;
    const key = `${grant.lock}\u0000${grant.token}`;
    const first = seen.get(key);
    if (first === undefined) {
      seen.set(key, grant);
      continue;
    }
    if (first.session !== undefined && first.session === grant.session) continue;
    violations.push({
      check: 'permit-token',
      message: `${grant.lock}: two permit grants carry token ${grant.token}: ${describeOp(first)} / ${describeOp(grant)}`,
      ops: [first.id, grant.id],
    });
  }
  return violations;
}

/**
 * One leader at a time: no two believed terms of one election overlap, unless they are
 * one term handed back to its session (same session, same token); and leader tokens
 * rise in real time, so a deposed leader's writes can be fenced.
 */
export function checkLeadership(ops: readonly Op[], endOfRunMs: number): Violation[] {
  const violations: Violation[] = [];
  const beliefs = beliefsOf(ops, 'campaign', 'resign', endOfRunMs);
  for (const [name, terms] of byName(beliefs)) {
    terms.sort((a, b) => a.startMs - b.startMs);
    for (let i = 0; i < terms.length; i++) {
      const a = terms[i] as Belief;
      for (let j = i + 1; j < terms.length; j++) {
        const b = terms[j] as Belief;
        if (b.startMs >= a.endMs) break;
        const sameTerm =
          a.acquire.session !== undefined &&
          a.acquire.session === b.acquire.session &&
          a.acquire.token === b.acquire.token;
        if (sameTerm) continue;
        violations.push({
          check: 'leader-overlap',
          message: `${name}: the term of ${a.acquire.client} [${a.startMs.toFixed(1)}, ${a.endMs.toFixed(1)}) overlaps the term of ${b.acquire.client} [${b.startMs.toFixed(1)}, ${b.endMs.toFixed(1)}): ${describeOp(a.acquire)} / ${describeOp(b.acquire)}`,
          ops: [a.acquire.id, b.acquire.id],
        });
      }
    }
  }
  const campaigns = ops.filter((op) => op.kind === 'campaign' && op.outcome === 'ok');
  violations.push(...checkTokensRise(byName(campaigns), 'leader-token'));
  return violations;
}

/** Both checks of this file. */
export function checkCoordination(ops: readonly Op[], endOfRunMs: number): Violation[] {
  return [...checkPermits(ops, endOfRunMs), ...checkLeadership(ops, endOfRunMs)];
}
