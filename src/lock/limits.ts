import { assert } from '../util/assert.ts';

/**
 * Every limit of the lock state machine: the rules it applies. They are part of the
 * replicated state: a SetRules entry puts them in force at its index on every replica
 * (see LockStateMachine), and a node's own config only proposes them. Before any
 * SetRules entry, each machine applies the rules it was started with (its node's
 * file); replicas still agree because leaders let no other entry commit before it.
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

export const DEFAULT_LOCK_LIMITS: LockLimits = Object.freeze({
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
});

/** Node's timers fire at once when asked to wait longer than this (TimeoutOverflowWarning). */
export const TIMER_MS_MAX = 2 ** 31 - 1;

/**
 * The most session ids one KeepAlive entry may carry, whatever the rules: a batch is one
 * log entry, and every entry must reach the followers, whose peer gRPC takes at most
 * runtime.peerMessageBytesMax a message (16 MiB by default, never under 320 KiB).
 * 10,000 ids encode in about 90 KB (msgpack, 9 bytes an id at most), well inside it; without this bound a 3 MB request of 500k ids became an entry no
 * follower could receive, so it never committed and leaders lost office one by one.
 */
export const KEEPALIVE_BATCH_CEILING = 10_000;

/**
 * What no rules can exceed. A request is checked against these before anything else
 * (by the API, and again by the state machine before it looks up a remembered result),
 * and against the rules in force only inside apply, after that lookup: a retry of a
 * request that applied must get its first outcome whatever the rules became since, and
 * a node that has not applied the latest SetRules must not judge by older rules. The
 * byte ceilings bound what one request can make a node hold or a log entry carry; the
 * durations must fit a Node timer; other counts are bounded only by what a number can
 * hold.
 */
export const LOCK_LIMIT_CEILINGS: LockLimits = Object.freeze({
  lockNameBytesMax: 4_096,
  ownerBytesMax: 16_384,
  clientNameBytesMax: 4_096,
  requestIdBytesMax: 256,
  sessionTtlMsMin: TIMER_MS_MAX,
  sessionTtlMsMax: TIMER_MS_MAX,
  sessionsMax: Number.MAX_SAFE_INTEGER,
  locksMax: Number.MAX_SAFE_INTEGER,
  waitersPerLockMax: Number.MAX_SAFE_INTEGER,
  waitMsMax: TIMER_MS_MAX,
  maxHoldMsMax: TIMER_MS_MAX,
  keepAliveBatchMax: KEEPALIVE_BATCH_CEILING,
  lockDelayMs: TIMER_MS_MAX,
  lockDelayMsMax: TIMER_MS_MAX,
  dedupeWindowMax: Number.MAX_SAFE_INTEGER,
});

export const LOCK_LIMIT_NAMES = Object.freeze(
  Object.keys(DEFAULT_LOCK_LIMITS) as (keyof LockLimits)[],
);

/** What is wrong with a set of rules, naming the field; `field` is '' for the whole. */
export interface LockRulesProblem {
  readonly field: string;
  readonly problem: string;
}

/**
 * Checks rules that arrive in a log entry, so it must decide the same on every
 * replica and never throw, whatever the entry holds: every field present and no other,
 * each a safe integer (positive, or >= 0 for lockDelayMs) within its ceiling
 * (LOCK_LIMIT_CEILINGS), and the ranges in order.
 */
export function lockRulesProblem(rules: unknown): LockRulesProblem | null {
  if (typeof rules !== 'object' || rules === null || Array.isArray(rules)) {
    return { field: '', problem: 'must be an object with every lock limit' };
  }
  const given = rules as Readonly<Record<string, unknown>>;
  for (const key of Object.keys(given)) {
    if (!Object.hasOwn(DEFAULT_LOCK_LIMITS, key)) {
      return { field: key, problem: 'is not a lock limit' };
    }
  }
  for (const key of LOCK_LIMIT_NAMES) {
    const value = Object.hasOwn(given, key) ? given[key] : undefined;
    const min = key === 'lockDelayMs' ? 0 : 1;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
      return { field: key, problem: `must be an integer >= ${min}, got ${String(value)}` };
    }
    const ceiling = LOCK_LIMIT_CEILINGS[key];
    if (value > ceiling) {
      return { field: key, problem: `must be at most ${ceiling} (its ceiling), got ${value}` };
    }
  }
  const limits = given as unknown as LockLimits;
  if (limits.sessionTtlMsMin > limits.sessionTtlMsMax) {
    return {
      field: 'sessionTtlMsMin',
      problem: `(${limits.sessionTtlMsMin}) exceeds sessionTtlMsMax (${limits.sessionTtlMsMax})`,
    };
  }
  if (limits.lockDelayMs > limits.lockDelayMsMax) {
    return {
      field: 'lockDelayMs',
      problem: `(${limits.lockDelayMs}) exceeds lockDelayMsMax (${limits.lockDelayMsMax})`,
    };
  }
  return null;
}

export function validateLockLimits(limits: LockLimits): void {
  const found = lockRulesProblem(limits);
  assert(found === null, `lock limit ${found?.field} ${found?.problem}`);
}

/** One rule on which two sets of rules differ. */
export interface LockRuleDifference {
  readonly field: keyof LockLimits;
  readonly ours: number;
  readonly theirs: number;
}

/** The fields on which `ours` and `theirs` differ, in the order of LockLimits. */
export function lockRulesDifferences(ours: LockLimits, theirs: LockLimits): LockRuleDifference[] {
  return LOCK_LIMIT_NAMES.filter((field) => ours[field] !== theirs[field]).map((field) => ({
    field,
    ours: ours[field],
    theirs: theirs[field],
  }));
}

/** Plain rules in LockLimits' field order, whatever the order or extra fields of `rules`. */
export function canonicalLockRules(rules: LockLimits): LockLimits {
  const canonical: Record<string, number> = {};
  for (const field of LOCK_LIMIT_NAMES) canonical[field] = rules[field];
  return canonical as unknown as LockLimits;
}
