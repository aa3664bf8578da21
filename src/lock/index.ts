export { DEFAULT_LOCK_LIMITS, type LockLimits, validateLockLimits } from './limits.ts';
export {
  type FenceValidation,
  type LockDelay,
  type LockDescription,
  type LockSnapshot,
  type LockSnapshotV1,
  LockStateMachine,
  type RememberedResult,
  type SessionDescription,
} from './state-machine.ts';
export { LockTimers, type LockTimersOptions } from './timers.ts';
export * from './types.ts';
