import { assert } from '../util/assert.ts';

/**
 * Every limit of the lock state machine. They are part of the replicated state's
 * contract: all replicas must apply the same limits, so they come from the cluster
 * config and never from a node's local whim.
 */
export interface LockLimits {
  readonly lockNameBytesMax: number;
  readonly ownerBytesMax: number;
  readonly clientNameBytesMax: number;
  readonly requestIdBytesMax: number;
  readonly sessionTtlMsMin: number;
  readonly sessionTtlMsMax: number;
  readonly sessionsMax: number;
  /** Locks with a holder, a waiter or a pending lock-delay. Free locks cost nothing. */
  readonly locksMax: number;
  readonly waitersPerLockMax: number;
  readonly waitMsMax: number;
  readonly maxHoldMsMax: number;
  readonly keepAliveBatchMax: number;
  /** Lock-delay after a holder's session expires, unless the Acquire asked for another. */
  readonly lockDelayMs: number;
  readonly lockDelayMsMax: number;
  /** How many recent request results are remembered for exactly-once retries. */
  readonly dedupeWindowMax: number;
}

export const DEFAULT_LOCK_LIMITS: LockLimits = {
  lockNameBytesMax: 256,
  ownerBytesMax: 1024,
  clientNameBytesMax: 256,
  requestIdBytesMax: 64,
  sessionTtlMsMin: 1_000,
  sessionTtlMsMax: 300_000,
  sessionsMax: 100_000,
  locksMax: 100_000,
  waitersPerLockMax: 1_000,
  waitMsMax: 3_600_000,
  maxHoldMsMax: 86_400_000,
  keepAliveBatchMax: 1_000,
  lockDelayMs: 0,
  lockDelayMsMax: 60_000,
  dedupeWindowMax: 100_000,
};

export function validateLockLimits(limits: LockLimits): void {
  for (const [key, value] of Object.entries(limits)) {
    const allowsZero = key === 'lockDelayMs';
    assert(
      Number.isSafeInteger(value) && (allowsZero ? value >= 0 : value > 0),
      `lock limit ${key} must be ${allowsZero ? 'an integer >= 0' : 'a positive integer'}: ${value}`,
    );
  }
  assert(
    limits.sessionTtlMsMin <= limits.sessionTtlMsMax,
    `sessionTtlMsMin (${limits.sessionTtlMsMin}) exceeds sessionTtlMsMax (${limits.sessionTtlMsMax})`,
  );
  assert(
    limits.lockDelayMs <= limits.lockDelayMsMax,
    `lockDelayMs (${limits.lockDelayMs}) exceeds lockDelayMsMax (${limits.lockDelayMsMax})`,
  );
}
