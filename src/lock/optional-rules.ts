import { BEHAVIOUR_MULTI_LOCK, BEHAVIOUR_SEMAPHORES_ELECTIONS } from './behaviour.ts';
import {
  KIND_LIMIT_CEILINGS,
  KIND_LIMIT_DEFAULTS,
  type KindLimitName,
  LOCK_LIMIT_NAMES,
  type LockLimits,
  MULTI_LOCK_LIMIT_CEILINGS,
  MULTI_LOCK_LIMIT_DEFAULTS,
  type MultiLockLimitName,
} from './limits.ts';

/**
 * The lock rules that are optional in LockLimits (issue 17 and after): a set of rules
 * may leave one out, and then its default is in force. Each is a rule only from the lock
 * behaviour version that brought it: the state machine refuses SetRules carrying it
 * before (as the release before knew it), so it is proposed only where the version in
 * force at its apply knows it. This table is the config's, the wire's and the node's one
 * list of them.
 */
export type OptionalLockRuleName = MultiLockLimitName | KindLimitName;

export interface OptionalLockRule {
  /** In force while the rules carry none. */
  readonly defaultValue: number;
  /** The largest value any rules may set. */
  readonly ceiling: number;
  /** The lock behaviour version from which the state machine takes it. */
  readonly since: number;
}

export const OPTIONAL_LOCK_RULES: Readonly<Record<OptionalLockRuleName, OptionalLockRule>> =
  Object.freeze({
    locksPerAcquireMax: {
      defaultValue: MULTI_LOCK_LIMIT_DEFAULTS.locksPerAcquireMax,
      ceiling: MULTI_LOCK_LIMIT_CEILINGS.locksPerAcquireMax,
      since: BEHAVIOUR_MULTI_LOCK,
    },
    deadlockCheckStepsMax: {
      defaultValue: MULTI_LOCK_LIMIT_DEFAULTS.deadlockCheckStepsMax,
      ceiling: MULTI_LOCK_LIMIT_CEILINGS.deadlockCheckStepsMax,
      since: BEHAVIOUR_MULTI_LOCK,
    },
    semaphoreLimitMax: {
      defaultValue: KIND_LIMIT_DEFAULTS.semaphoreLimitMax,
      ceiling: KIND_LIMIT_CEILINGS.semaphoreLimitMax,
      since: BEHAVIOUR_SEMAPHORES_ELECTIONS,
    },
    candidatesPerElectionMax: {
      defaultValue: KIND_LIMIT_DEFAULTS.candidatesPerElectionMax,
      ceiling: KIND_LIMIT_CEILINGS.candidatesPerElectionMax,
      since: BEHAVIOUR_SEMAPHORES_ELECTIONS,
    },
    electionValueBytesMax: {
      defaultValue: KIND_LIMIT_DEFAULTS.electionValueBytesMax,
      ceiling: KIND_LIMIT_CEILINGS.electionValueBytesMax,
      since: BEHAVIOUR_SEMAPHORES_ELECTIONS,
    },
  });

export const OPTIONAL_LOCK_RULE_NAMES = Object.freeze(
  Object.keys(OPTIONAL_LOCK_RULES) as OptionalLockRuleName[],
);

/** The value of an optional rule in `rules`: its own, or its default. */
export function optionalRule(rules: LockLimits, name: OptionalLockRuleName): number {
  return rules[name] ?? OPTIONAL_LOCK_RULES[name].defaultValue;
}

/**
 * `rules` as a cluster at lock behaviour `behaviour` takes them: the optional rules its
 * version does not know yet are left out (`left` names them), so that the rest still
 * applies instead of the whole set being refused.
 */
export function rulesAtBehaviour(
  rules: LockLimits,
  behaviour: number,
): { readonly rules: LockLimits; readonly left: readonly OptionalLockRuleName[] } {
  const kept: Record<string, number> = { ...rules };
  const left: OptionalLockRuleName[] = [];
  for (const name of OPTIONAL_LOCK_RULE_NAMES) {
    if (rules[name] === undefined || behaviour >= OPTIONAL_LOCK_RULES[name].since) continue;
    delete kept[name];
    left.push(name);
  }
  return { rules: kept as unknown as LockLimits, left };
}

/** One rule on which two sets of rules differ, an optional one by its value in force. */
export interface RuleDifference {
  readonly field: keyof LockLimits;
  readonly ours: number;
  readonly theirs: number;
}

/** Every rule, required and optional, on which `ours` and `theirs` differ, in table order. */
export function ruleDifferences(ours: LockLimits, theirs: LockLimits): RuleDifference[] {
  const differences: RuleDifference[] = LOCK_LIMIT_NAMES.filter(
    (field) => ours[field] !== theirs[field],
  ).map((field) => ({ field, ours: ours[field], theirs: theirs[field] }));
  for (const field of OPTIONAL_LOCK_RULE_NAMES) {
    const [mine, log] = [optionalRule(ours, field), optionalRule(theirs, field)];
    if (mine !== log) differences.push({ field, ours: mine, theirs: log });
  }
  return differences;
}
