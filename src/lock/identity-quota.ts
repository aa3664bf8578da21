/**
 * Per-identity limits (issue 15): one tenant must not exhaust the cluster-wide limits.
 * The node that authenticated a call puts the limits its config gives the caller into
 * the command (see IdentityQuota), so every replica checks the same numbers against the
 * same counts and decides alike, whatever its own config says.
 */

/**
 * An identity's most UTF-8 bytes, wherever it comes from (config, certificate, command):
 * it goes into logs, error messages, and every session's log entries and snapshot.
 */
export const IDENTITY_BYTES_MAX = 256;

/** The limits one identity's requests are held to; carried by OpenSession and Acquire. */
export interface IdentityQuota {
  /** Sessions the identity may have open at once. */
  readonly sessionsMax: number;
  /**
   * Locks its sessions may hold or wait for at once: a wait counts, because it may be
   * granted later without another request to refuse.
   */
  readonly locksHeldMax: number;
  /** Acquires its sessions may have waiting in lock queues at once. */
  readonly waitersMax: number;
}

/**
 * What every refusal for an identity's own quota names (`sessionsPerIdentityMax (3)
 * sessions are open for identity "x"`, see LockStateMachine): the limitReached refusals
 * the asker caused, unlike the cluster-wide ones (sessionsMax, locksMax,
 * waitersPerLockMax), which other tenants' state can cause.
 */
const OWN_QUOTA_MARK = 'PerIdentityMax (';

export function isOwnQuotaRefusal(detail: string): boolean {
  return detail.includes(OWN_QUOTA_MARK);
}

export const IDENTITY_QUOTA_FIELDS: readonly (keyof IdentityQuota)[] = [
  'sessionsMax',
  'locksHeldMax',
  'waitersMax',
];

/** What one identity has now: derived from the sessions, rebuilt on restore. */
export interface IdentityCounts {
  sessions: number;
  held: number;
  waiting: number;
}

/** Counts per identity, kept in step with every change to sessions, holders and waiters. */
export class IdentityTally {
  private readonly counts = new Map<string, IdentityCounts>();

  of(identity: string): IdentityCounts {
    return this.counts.get(identity) ?? { sessions: 0, held: 0, waiting: 0 };
  }

  change(identity: string, field: keyof IdentityCounts, delta: number): void {
    let counts = this.counts.get(identity);
    if (counts === undefined) {
      counts = { sessions: 0, held: 0, waiting: 0 };
      this.counts.set(identity, counts);
    }
    counts[field] += delta;
    // An identity with nothing left costs nothing, so the map is bounded by live sessions.
    if (counts.sessions === 0 && counts.held === 0 && counts.waiting === 0) {
      this.counts.delete(identity);
    }
  }

  clear(): void {
    this.counts.clear();
  }

  entries(): IterableIterator<[string, IdentityCounts]> {
    return this.counts.entries();
  }
}

/** What is wrong with a command's quota (a shape the API never sends), or null. */
export function quotaProblem(quota: unknown): string | null {
  if (quota === undefined) return null;
  if (typeof quota !== 'object' || quota === null) return 'must be an object';
  for (const field of IDENTITY_QUOTA_FIELDS) {
    const value = (quota as Record<string, unknown>)[field];
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      return `${field} must be a non-negative integer`;
    }
  }
  return null;
}
