export {
  BEHAVIOUR_ATTEMPT_PROPOSALS,
  BEHAVIOUR_BASE,
  BEHAVIOUR_LATEST,
  BEHAVIOUR_MULTI_LOCK,
  BEHAVIOUR_SEMAPHORES_ELECTIONS,
  BEHAVIOUR_VERSIONED,
  BehaviourUnsupportedError,
  isBehaviourVersion,
} from './behaviour.ts';
export {
  IDENTITY_BYTES_MAX,
  IDENTITY_QUOTA_FIELDS,
  type IdentityQuota,
  isOwnQuotaRefusal,
} from './identity-quota.ts';
export {
  canonicalLockRules,
  DEFAULT_LOCK_LIMITS,
  KIND_LIMIT_CEILINGS,
  KIND_LIMIT_DEFAULTS,
  KIND_LIMIT_NAMES,
  type KindLimitName,
  kindRule,
  LOCK_LIMIT_CEILINGS,
  LOCK_LIMIT_NAMES,
  type LockLimits,
  type LockRuleDifference,
  type LockRulesProblem,
  lockRulesDifferences,
  lockRulesProblem,
  MULTI_LOCK_LIMIT_CEILINGS,
  MULTI_LOCK_LIMIT_DEFAULTS,
  MULTI_LOCK_LIMIT_NAMES,
  type MultiLockLimitName,
  multiLockRule,
  type RequiredLockLimitName,
  validateLockLimits,
} from './limits.ts';
export { type LockDelay, lockSetNames } from './records.ts';
export { plainLockSnapshot } from './snapshot.ts';
export {
  type AttemptsOfProposal,
  type FenceValidation,
  type LockDescription,
  type LockSnapshot,
  type LockSnapshotV1,
  type LockSnapshotV2,
  type LockSnapshotV3,
  type LockSnapshotV4,
  type LockSnapshotV5,
  type LockSnapshotV6,
  LockStateMachine,
  type LockStateMachineOptions,
  type RememberedResult,
  type SessionDescription,
  type SessionSummary,
} from './state-machine.ts';
export { LockTimers, type LockTimersOptions } from './timers.ts';
export * from './types.ts';
export { deadlockDetail } from './wait-for.ts';
