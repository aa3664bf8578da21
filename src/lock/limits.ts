import { assert } from '../util/assert.ts';
import {
  BEHAVIOUR_LATEST,
  BEHAVIOUR_MULTI_LOCK,
  BEHAVIOUR_SEMAPHORES_ELECTIONS,
} from './behaviour.ts';

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
  /**
   * The most locks one AcquireAll names (issue 17). Like every limit below, a rule only
   * from BEHAVIOUR_MULTI_LOCK (SetRules carrying it before is refused, as releases
   * before knew it), and optional: absent, MULTI_LOCK_LIMIT_DEFAULTS' value is in force.
   */
  readonly locksPerAcquireMax?: number;
  /**
   * The most steps (queue places, holders and lookups examined) the deadlock check of one
   * Acquire may take; an Acquire whose check would take more is refused (limitReached)
   * rather than queued unchecked, so that a wait that closes a cycle is never queued.
   */
  readonly deadlockCheckStepsMax?: number;
  /**
   * The highest `limit` a semaphore may have (AcquirePermits). Like the two below, a
   * rule only from BEHAVIOUR_SEMAPHORES_ELECTIONS, and optional: absent,
   * KIND_LIMIT_DEFAULTS' value is in force.
   */
  readonly semaphoreLimitMax?: number;
  /** The most candidates that may wait in one election's queue, besides waitersPerLockMax. */
  readonly candidatesPerElectionMax?: number;
  /** The most bytes of an election's value (Campaign, Proclaim): kept in every snapshot. */
  readonly electionValueBytesMax?: number;
}

/** The rules of issue 17, optional in LockLimits; see there. */
export type MultiLockLimitName = 'locksPerAcquireMax' | 'deadlockCheckStepsMax';

export const MULTI_LOCK_LIMIT_NAMES: readonly MultiLockLimitName[] = Object.freeze([
  'locksPerAcquireMax',
  'deadlockCheckStepsMax',
]);

/**
 * In force while the rules carry none. A set's names are kept on each of its queue
 * places and grants (k² names a set), so the default stays small; 100,000 steps cost a
 * few milliseconds of apply.
 */
export const MULTI_LOCK_LIMIT_DEFAULTS: Readonly<Record<MultiLockLimitName, number>> =
  Object.freeze({ locksPerAcquireMax: 16, deadlockCheckStepsMax: 100_000 });

/**
 * A set of 256 names of at most 4 KiB each is one entry of 1 MiB, within the peer
 * message bound; the steps only cost time, which the rules' own value bounds.
 */
export const MULTI_LOCK_LIMIT_CEILINGS: Readonly<Record<MultiLockLimitName, number>> =
  Object.freeze({ locksPerAcquireMax: 256, deadlockCheckStepsMax: Number.MAX_SAFE_INTEGER });

/** The rules of semaphores and elections (issue 17), optional in LockLimits; see there. */
export type KindLimitName =
  | 'semaphoreLimitMax'
  | 'candidatesPerElectionMax'
  | 'electionValueBytesMax';

export const KIND_LIMIT_NAMES: readonly KindLimitName[] = Object.freeze([
  'semaphoreLimitMax',
  'candidatesPerElectionMax',
  'electionValueBytesMax',
]);

/**
 * In force while the rules carry none. A semaphore's limit costs nothing by itself (its
 * holders are bounded by sessions); a value is kept on the leader's grant and on each
 * candidate's place, so it stays as small as an owner.
 */
export const KIND_LIMIT_DEFAULTS: Readonly<Record<KindLimitName, number>> = Object.freeze({
  semaphoreLimitMax: 100_000,
  candidatesPerElectionMax: 1_000,
  electionValueBytesMax: 4_096,
});

/**
 * A limit up to 10^9 keeps every sum of permits a safe integer; a 64 KiB value is one
 * entry well within the peer message bound.
 */
export const KIND_LIMIT_CEILINGS: Readonly<Record<KindLimitName, number>> = Object.freeze({
  semaphoreLimitMax: 1_000_000_000,
  candidatesPerElectionMax: Number.MAX_SAFE_INTEGER,
  electionValueBytesMax: 65_536,
});

/** The value of a rule of semaphores and elections in `rules`: its own, or the default. */
export function kindRule(rules: LockLimits, name: KindLimitName): number {
  return rules[name] ?? KIND_LIMIT_DEFAULTS[name];
}

/** The optional rules, each with the behaviour version from which SetRules may carry it. */
type OptionalLockLimitName = MultiLockLimitName | KindLimitName;

const OPTIONAL_LIMITS: readonly {
  readonly name: OptionalLockLimitName;
  readonly since: number;
  readonly ceiling: number;
}[] = Object.freeze([
  ...MULTI_LOCK_LIMIT_NAMES.map((name) => ({
    name,
    since: BEHAVIOUR_MULTI_LOCK,
    ceiling: MULTI_LOCK_LIMIT_CEILINGS[name],
  })),
  ...KIND_LIMIT_NAMES.map((name) => ({
    name,
    since: BEHAVIOUR_SEMAPHORES_ELECTIONS,
    ceiling: KIND_LIMIT_CEILINGS[name],
  })),
]);

/** The value of a rule of issue 17 in `rules`: its own, or the default. */
export function multiLockRule(rules: LockLimits, name: MultiLockLimitName): number {
  return rules[name] ?? MULTI_LOCK_LIMIT_DEFAULTS[name];
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

/** The limits every set of rules carries (those of issue 17 are optional: MULTI_LOCK_LIMIT_NAMES). */
export type RequiredLockLimitName = Exclude<keyof LockLimits, OptionalLockLimitName>;

export const LOCK_LIMIT_NAMES = Object.freeze(
  Object.keys(DEFAULT_LOCK_LIMITS) as RequiredLockLimitName[],
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
 * (LOCK_LIMIT_CEILINGS), and the ranges in order. The rules of issue 17 are optional,
 * and each is not a limit at all below the version that brought it (OPTIONAL_LIMITS) (`behaviour`: the version in force).
 */
export function lockRulesProblem(
  rules: unknown,
  behaviour: number = BEHAVIOUR_LATEST,
): LockRulesProblem | null {
  if (typeof rules !== 'object' || rules === null || Array.isArray(rules)) {
    return { field: '', problem: 'must be an object with every lock limit' };
  }
  const given = rules as Readonly<Record<string, unknown>>;
  for (const key of Object.keys(given)) {
    const known =
      Object.hasOwn(DEFAULT_LOCK_LIMITS, key) ||
      OPTIONAL_LIMITS.some((rule) => rule.name === key && behaviour >= rule.since);
    if (!known) return { field: key, problem: 'is not a lock limit' };
  }
  for (const { name: key, ceiling } of OPTIONAL_LIMITS) {
    const value = given[key];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
      return { field: key, problem: `must be an integer >= 1, got ${String(value)}` };
    }
    if (value > ceiling) {
      return { field: key, problem: `must be at most ${ceiling} (its ceiling), got ${value}` };
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

/** Start rules (a node's file) may carry every rule this binary knows. */
export function validateLockLimits(limits: LockLimits): void {
  const found = lockRulesProblem(limits, BEHAVIOUR_LATEST);
  assert(found === null, `lock limit ${found?.field} ${found?.problem}`);
}

/** One rule on which two sets of rules differ. */
export interface LockRuleDifference {
  readonly field: RequiredLockLimitName;
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

/**
 * Plain rules in LockLimits' field order, whatever the order or extra fields of `rules`;
 * the optional rules of issue 17 only when set, so rules without them stay as they were.
 */
export function canonicalLockRules(rules: LockLimits): LockLimits {
  const canonical: Record<string, number> = {};
  for (const field of LOCK_LIMIT_NAMES) canonical[field] = rules[field];
  for (const { name: field } of OPTIONAL_LIMITS) {
    const value = rules[field];
    if (value !== undefined) canonical[field] = value;
  }
  return canonical as unknown as LockLimits;
}
