import { byLockInGrantOrder, type PairRecord } from './records.ts';

/**
 * Safety checks on the bench's own records. A client surely held its lock from when it
 * received the grant until it sent the release: the server granted before the first
 * and can only have freed it after the second. So if two such intervals of one lock
 * overlap, two clients held it at once. Likewise grants of one lock, in the order they
 * were received, must carry strictly rising tokens.
 */
export type Violation =
  | {
      readonly kind: 'overlap';
      readonly lock: string;
      /** The earlier grant, still held (release not yet sent) when `second` was received. */
      readonly first: HoldInterval;
      readonly second: HoldInterval;
      readonly overlapMs: number;
    }
  | {
      readonly kind: 'tokenNotRising';
      readonly lock: string;
      readonly previous: HoldInterval;
      readonly next: HoldInterval;
    };

export interface HoldInterval {
  readonly clientIndex: number;
  readonly token: string;
  readonly grantedMs: number;
  readonly releaseSentMs: number;
}

/** Every violation found, lock by lock, in grant order. */
export function findViolations(records: readonly PairRecord[]): Violation[] {
  const violations: Violation[] = [];
  for (const [lock, grants] of byLockInGrantOrder(records)) {
    violations.push(...overlapsOf(lock, grants), ...tokenDropsOf(lock, grants));
  }
  return violations;
}

function overlapsOf(lock: string, grants: readonly PairRecord[]): Violation[] {
  const found: Violation[] = [];
  // The grant whose release was sent last so far: a later grant must come after it.
  let latest: PairRecord | undefined;
  for (const grant of grants) {
    if (latest !== undefined && grant.grantedMs < latest.releaseSentMs) {
      found.push({
        kind: 'overlap',
        lock,
        first: intervalOf(latest),
        second: intervalOf(grant),
        overlapMs: latest.releaseSentMs - grant.grantedMs,
      });
    }
    if (latest === undefined || grant.releaseSentMs > latest.releaseSentMs) latest = grant;
  }
  return found;
}

function tokenDropsOf(lock: string, grants: readonly PairRecord[]): Violation[] {
  const found: Violation[] = [];
  for (let i = 1; i < grants.length; i++) {
    const previous = grants[i - 1];
    const next = grants[i];
    if (previous === undefined || next === undefined) continue;
    if (BigInt(next.token) <= BigInt(previous.token)) {
      found.push({
        kind: 'tokenNotRising',
        lock,
        previous: intervalOf(previous),
        next: intervalOf(next),
      });
    }
  }
  return found;
}

function intervalOf(record: PairRecord): HoldInterval {
  return {
    clientIndex: record.clientIndex,
    token: record.token,
    grantedMs: record.grantedMs,
    releaseSentMs: record.releaseSentMs,
  };
}

/** One line per violation, for the report. */
export function describeViolation(violation: Violation): string {
  switch (violation.kind) {
    case 'overlap':
      return (
        `${violation.lock}: client ${violation.second.clientIndex} received grant ` +
        `${violation.second.token} ${violation.overlapMs.toFixed(3)} ms before client ` +
        `${violation.first.clientIndex} sent the release of grant ${violation.first.token}`
      );
    case 'tokenNotRising':
      return (
        `${violation.lock}: token ${violation.next.token} (client ${violation.next.clientIndex}) ` +
        `came after token ${violation.previous.token} (client ${violation.previous.clientIndex})`
      );
  }
}
