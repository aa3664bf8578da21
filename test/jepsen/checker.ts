import { describeOp, type Op } from './history.ts';

/**
 * Checkers over a history (pure functions). Each returns violations that name the ops
 * involved; an empty list means the property held in this history.
 */
export interface Violation {
  readonly check: 'mutual-exclusion' | 'fencing' | 'register' | 'write-outside-hold';
  readonly message: string;
  /** The ids of the ops involved. */
  readonly ops: readonly number[];
}

/**
 * An exclusive hold as its client saw it: from the acquire's acknowledgement to the
 * earliest of the release's invocation, the session signal (lostAtMs) and the end of the
 * run. `certain` is false for an 'info' acquire (no answer): it may or may not have been
 * granted, so its possible hold runs from its invocation.
 */
export interface Hold {
  readonly client: string;
  readonly lock: string;
  readonly acquire: Op;
  readonly release: Op | null;
  readonly startMs: number;
  readonly endMs: number;
  readonly certain: boolean;
}

export function holdsOf(ops: readonly Op[], endOfRunMs: number): Hold[] {
  const holds: Hold[] = [];
  for (const acquire of ops) {
    if (acquire.kind !== 'acquire' || acquire.outcome === 'fail') continue;
    const certain = acquire.outcome === 'ok';
    const startMs = certain ? (acquire.completeMs ?? acquire.invokeMs) : acquire.invokeMs;
    // The first release this client invoked for this grant after learning of it.
    const release = certain
      ? (ops.find(
          (op) =>
            op.kind === 'release' &&
            op.client === acquire.client &&
            op.lock === acquire.lock &&
            op.token === acquire.token &&
            op.invokeMs >= startMs,
        ) ?? null)
      : null;
    const endMs = Math.min(
      release?.invokeMs ?? Number.POSITIVE_INFINITY,
      acquire.lostAtMs ?? Number.POSITIVE_INFINITY,
      endOfRunMs,
    );
    holds.push({
      client: acquire.client,
      lock: acquire.lock,
      acquire,
      release,
      startMs,
      endMs,
      certain,
    });
  }
  return holds;
}

export interface MutualExclusionResult {
  readonly violations: Violation[];
  /**
   * Overlaps of a possible hold ('info' acquire) with another client's hold. Not
   * violations: see checkMutualExclusion.
   */
  readonly indeterminate: { readonly possible: number; readonly other: number }[];
}

/**
 * (a) Two holds of one lock by different clients never overlap.
 *
 * The choice for 'info' acquires: an unanswered acquire may have been granted at any
 * moment from its invocation on, so its possible hold is [invoke, min(lostAt, end)).
 * It is a violation only when both holds are certain (two acknowledged grants). An
 * overlap that involves a possible hold is reported as indeterminate, not as a
 * violation: the acquire may never have been applied (a request lost with a killed
 * leader is the common case), and then the other client's hold was legitimate. The
 * client of an 'info' acquire has no token and never acts under it, so it cannot break
 * the fenced resource either.
 */
export function checkMutualExclusion(
  ops: readonly Op[],
  endOfRunMs: number,
): MutualExclusionResult {
  const violations: Violation[] = [];
  const indeterminate: { possible: number; other: number }[] = [];
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
        if (a.certain && b.certain) {
          violations.push({
            check: 'mutual-exclusion',
            message: `${a.lock}: hold of ${a.client} [${a.startMs.toFixed(1)}, ${a.endMs.toFixed(1)}) overlaps hold of ${b.client} [${b.startMs.toFixed(1)}, ${b.endMs.toFixed(1)}): ${describeOp(a.acquire)} / ${describeOp(b.acquire)}`,
            ops: [a.acquire.id, b.acquire.id],
          });
        } else {
          const [possible, other] = a.certain ? [b, a] : [a, b];
          indeterminate.push({ possible: possible.acquire.id, other: other.acquire.id });
        }
      }
    }
  }
  return { violations, indeterminate };
}

/**
 * (b) Fencing tokens increase in real time: if grant A was acknowledged before grant B
 * of the same lock was invoked, token(A) < token(B). The one exception: a session that
 * acquires a lock it already holds gets its grant back, with the same token (same
 * session, equal token).
 */
export function checkFencing(ops: readonly Op[]): Violation[] {
  const violations: Violation[] = [];
  const grants = ops.filter(
    (op) =>
      op.kind === 'acquire' &&
      op.outcome === 'ok' &&
      op.completeMs !== null &&
      op.token !== undefined,
  );
  const byLock = new Map<string, Op[]>();
  for (const grant of grants) {
    const list = byLock.get(grant.lock) ?? [];
    list.push(grant);
    byLock.set(grant.lock, list);
  }
  for (const list of byLock.values()) {
    const byComplete = [...list].sort((a, b) => (a.completeMs ?? 0) - (b.completeMs ?? 0));
    for (const b of list) {
      const tokenB = BigInt(b.token as string);
      for (const a of byComplete) {
        if ((a.completeMs as number) >= b.invokeMs) break;
        const tokenA = BigInt(a.token as string);
        if (tokenA < tokenB) continue;
        if (tokenA === tokenB && a.session !== undefined && a.session === b.session) continue;
        violations.push({
          check: 'fencing',
          message: `${b.lock}: ${describeOp(b)} was invoked after ${describeOp(a)} completed, but its token is not greater`,
          ops: [a.id, b.id],
        });
      }
    }
  }
  return violations;
}

/**
 * (c) The fenced register, re-verified from the history: in the order the writes
 * happened, no write with a token below the highest accepted so far was accepted, and no
 * write at or above it was rejected.
 */
export function checkRegister(ops: readonly Op[]): Violation[] {
  const violations: Violation[] = [];
  const highest = new Map<string, { token: bigint; op: Op }>();
  const writes = ops
    .filter((op) => op.kind === 'write' && op.outcome !== 'info' && op.token !== undefined)
    .sort((a, b) => (a.completeMs ?? a.invokeMs) - (b.completeMs ?? b.invokeMs) || a.id - b.id);
  for (const write of writes) {
    const token = BigInt(write.token as string);
    const seen = highest.get(write.lock);
    const stale = seen !== undefined && token < seen.token;
    if (write.outcome === 'ok' && stale) {
      violations.push({
        check: 'register',
        message: `${write.lock}: ${describeOp(write)} was accepted below ${describeOp(seen.op)}`,
        ops: [seen.op.id, write.id],
      });
    } else if (write.outcome === 'fail' && !stale) {
      violations.push({
        check: 'register',
        message: `${write.lock}: ${describeOp(write)} was rejected though no higher token was accepted`,
        ops: [write.id],
      });
    }
    if (write.outcome === 'ok' && !stale) highest.set(write.lock, { token, op: write });
  }
  return violations;
}

/**
 * (d) Every accepted write was made inside a certain hold of its client on that lock,
 * with that hold's token: a client acts only while its signal says the lease is good.
 */
export function checkWritesWithinHolds(ops: readonly Op[], endOfRunMs: number): Violation[] {
  const holds = holdsOf(ops, endOfRunMs).filter((hold) => hold.certain);
  const violations: Violation[] = [];
  for (const write of ops) {
    if (write.kind !== 'write' || write.outcome !== 'ok') continue;
    const at = write.invokeMs;
    const inside = holds.some(
      (hold) =>
        hold.client === write.client &&
        hold.lock === write.lock &&
        hold.acquire.token === write.token &&
        hold.startMs <= at &&
        at < hold.endMs,
    );
    if (!inside) {
      violations.push({
        check: 'write-outside-hold',
        message: `${describeOp(write)} was made outside any hold of ${write.client} with that token`,
        ops: [write.id],
      });
    }
  }
  return violations;
}

/** Every check above, with the end of the run closing the holds still open. */
export function checkAll(
  ops: readonly Op[],
  endOfRunMs: number,
): { violations: Violation[]; indeterminate: number } {
  const mutex = checkMutualExclusion(ops, endOfRunMs);
  return {
    violations: [
      ...mutex.violations,
      ...checkFencing(ops),
      ...checkRegister(ops),
      ...checkWritesWithinHolds(ops, endOfRunMs),
    ],
    indeterminate: mutex.indeterminate.length,
  };
}
