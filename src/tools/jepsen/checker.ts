import { describeOp, type Op, type OpKind } from './history.ts';

/**
 * Checkers over the history alone (pure functions): what clients were told must be
 * consistent in real time. The checks against the cluster's log and the register's
 * record are in log-checker.ts. Each returns violations that name the ops involved; an
 * empty list means the property held in this history.
 */
export interface Violation {
  readonly check:
    | 'mutual-exclusion'
    | 'fencing'
    | 'log'
    | 'acknowledged-grant'
    | 'acknowledged-release'
    | 'acknowledged-session'
    | 'acknowledged-proclaim'
    | 'linearizability'
    | 'granted-while-held'
    | 'register-stale-write'
    | 'register-token'
    | 'register-refusal'
    | 'register-answer'
    // Semaphores and elections (coordination-checker.ts).
    | 'permits-over-limit'
    | 'permit-token'
    | 'leader-overlap'
    | 'leader-token'
    // Checked by the nemeses that check what they did (see fault-verdict.ts).
    | 'disk-full'
    | 'corrupt-record'
    | 'membership'
    | 'client-pause';
  readonly message: string;
  /** The ids of the ops involved. */
  readonly ops: readonly number[];
}

/**
 * An exclusive hold as its client believed it: from the acknowledgement of its acquire
 * to the earliest of the release's invocation, the session signal (lostAtMs) and the
 * end of the run. An unanswered acquire is no belief: its client never acts under it
 * (whether the log granted it is checked in log-checker.ts). A set's grant (acquire-all)
 * is a hold of each of its locks, all with the set's one token, ended by the set's
 * release.
 */
export interface Hold {
  readonly client: string;
  readonly lock: string;
  /** The acquire, or the acquire-all whose set includes `lock`. */
  readonly acquire: Op;
  readonly release: Op | null;
  readonly startMs: number;
  readonly endMs: number;
}

/** The locks an acknowledged grant covers: its lock, or every lock of its set. */
export function grantedLocks(op: Op): readonly string[] {
  return op.kind === 'acquire-all' ? (op.locks ?? []) : [op.lock];
}

/** Whether `op` is an acquire or acquire-all its client was told succeeded. */
export function isAcknowledgedGrant(op: Op): boolean {
  return (op.kind === 'acquire' || op.kind === 'acquire-all') && op.outcome === 'ok';
}

export function holdsOf(ops: readonly Op[], endOfRunMs: number): Hold[] {
  const holds: Hold[] = [];
  const releases = releasesByGrant(ops);
  for (const acquire of ops) {
    if (!isAcknowledgedGrant(acquire)) continue;
    const startMs = acquire.completeMs ?? acquire.invokeMs;
    // The first release this client invoked for this grant after learning of it. A set
    // is released by its first lock in code-unit order (what LockSetHandle.release names).
    const releasedBy =
      acquire.kind === 'acquire-all' ? [...grantedLocks(acquire)].sort()[0] : acquire.lock;
    const key = grantKey(acquire.client, releasedBy ?? '', acquire.token);
    const release = releases.get(key)?.find((op) => op.invokeMs >= startMs) ?? null;
    const endMs = Math.min(
      release?.invokeMs ?? Number.POSITIVE_INFINITY,
      acquire.lostAtMs ?? Number.POSITIVE_INFINITY,
      endOfRunMs,
    );
    for (const lock of grantedLocks(acquire))
      holds.push({ client: acquire.client, lock, acquire, release, startMs, endMs });
  }
  return holds;
}

/**
 * Releases by client, lock and token, in invocation order: a 600 s history has thousands
 * of grants and tens of thousands of ops, too many to scan once per grant.
 */
export function releasesByGrant(ops: readonly Op[], kind: OpKind = 'release'): Map<string, Op[]> {
  const byGrant = new Map<string, Op[]>();
  for (const op of ops) {
    if (op.kind !== kind) continue;
    const key = grantKey(op.client, op.lock, op.token);
    const list = byGrant.get(key);
    if (list === undefined) byGrant.set(key, [op]);
    else list.push(op);
  }
  return byGrant;
}

/** The key of releasesByGrant: the client, the lock its release names, and the token. */
export function grantKey(client: string, lock: string, token: string | undefined): string {
  return `${client}\u0000${lock}\u0000${token}`;
}

/** (a) Two holds of one lock by different clients never overlap. */
export function checkMutualExclusion(ops: readonly Op[], endOfRunMs: number): Violation[] {
  const violations: Violation[] = [];
  const byLock = new Map<string, Hold[]>();
  for (const hold of holdsOf(ops, endOfRunMs)) {
    if (hold.endMs <= hold.startMs) continue; // Lost before it was learned of: empty.
    const list = byLock.get(hold.lock) ?? [];
    list.push(hold);
    byLock.set(hold.lock, list);
  }
  for (const holds of byLock.values()) {
    holds.sort((a, b) => a.startMs - b.startMs);
    for (let i = 0; i < holds.length; i++) {
      const a = holds[i] as Hold;
      for (let j = i + 1; j < holds.length; j++) {
        const b = holds[j] as Hold;
        if (b.startMs >= a.endMs) break;
        if (b.client === a.client) continue;
        violations.push({
          check: 'mutual-exclusion',
          message: `${a.lock}: hold of ${a.client} [${a.startMs.toFixed(1)}, ${a.endMs.toFixed(1)}) overlaps hold of ${b.client} [${b.startMs.toFixed(1)}, ${b.endMs.toFixed(1)}): ${describeOp(a.acquire)} / ${describeOp(b.acquire)}`,
          ops: [a.acquire.id, b.acquire.id],
        });
      }
    }
  }
  return violations;
}

/**
 * (b) Fencing tokens increase in real time: if grant A was acknowledged before grant B
 * of the same lock was invoked, token(A) < token(B). A set's grant is a grant of each of
 * its locks, so a set's token must exceed the single grants and the other sets before
 * it on every lock they share. The one exception: a session that acquires a lock it
 * already holds gets its grant back, with the same token (same session, equal token).
 */
export function checkFencing(ops: readonly Op[]): Violation[] {
  const byLock = new Map<string, Op[]>();
  for (const grant of ops) {
    if (!isAcknowledgedGrant(grant)) continue;
    for (const lock of grantedLocks(grant)) {
      const list = byLock.get(lock) ?? [];
      list.push(grant);
      byLock.set(lock, list);
    }
  }
  return checkTokensRise(byLock, 'fencing');
}

/**
 * For each name, grants acknowledged before another grant of it was invoked have lower
 * tokens; the same token in one session is the same grant handed back. Grants without
 * an answer or a token are skipped (they told nobody a token).
 */
export function checkTokensRise(
  grantsByName: ReadonlyMap<string, readonly Op[]>,
  check: Violation['check'],
): Violation[] {
  const violations: Violation[] = [];
  for (const [name, all] of grantsByName) {
    const list = all.filter((op) => op.completeMs !== null && op.token !== undefined);
    const byComplete = [...list].sort((a, b) => (a.completeMs ?? 0) - (b.completeMs ?? 0));
    for (const b of list) {
      const tokenB = BigInt(b.token as string);
      for (const a of byComplete) {
        if ((a.completeMs as number) >= b.invokeMs) break;
        const tokenA = BigInt(a.token as string);
        if (tokenA < tokenB) continue;
        if (tokenA === tokenB && a.session !== undefined && a.session === b.session) continue;
        violations.push({
          check,
          message: `${name}: ${describeOp(b)} was invoked after ${describeOp(a)} completed, but its token is not greater`,
          ops: [a.id, b.id],
        });
      }
    }
  }
  return violations;
}

/** Every history-only check, with the end of the run closing the holds still open. */
export function checkHistory(ops: readonly Op[], endOfRunMs: number): Violation[] {
  return [...checkMutualExclusion(ops, endOfRunMs), ...checkFencing(ops)];
}
