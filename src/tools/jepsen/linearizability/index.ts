/**
 * A linearizability checker for lock-service histories (Wing & Gong / Lowe search with a
 * cache of explored configurations, as in Porcupine, split per lock name), against the
 * sequential model of the README's safety contract, leases included.
 *
 *   const history = fromJepsenLite(result.ops);   // or build LinOps directly
 *   const checked = checkLockHistory(history, { clockDriftMax: 0.05, timeLimitMs: 60_000 });
 *   if (checked.verdict !== 'ok') console.log(explainCheck(checked));   // 'unknown' is not a pass
 */
export {
  type CheckOptions,
  type CheckResult,
  checkLockHistory,
  DEFAULT_CHECK_OPTIONS,
  explainCheck,
  explainLock,
  type LockReport,
  type Verdict,
} from './check.ts';
export {
  type FromJepsenLiteOptions,
  fromJepsenLite,
  type JepsenLiteOp,
} from './from-jepsen-lite.ts';
export {
  type AcquireFailCode,
  type AcquireOp,
  type CloseSessionOp,
  describeLinOp,
  type GrantEndOp,
  grantEndOf,
  type KeepAliveOp,
  type LinOp,
  type LockMode,
  type OpenSessionOp,
  type Outcome,
  type PartitionOp,
  type ReleaseOp,
  returnMs,
  type ValidateFenceOp,
  validateHistory,
} from './history.ts';
export {
  type ExpiryBound,
  INITIAL_LOCK_STATE,
  type LockState,
  stateKey,
  stepLock,
} from './model.ts';
export { expiryBounds, type LeaseOptions, partitionByLock } from './partition.ts';
export {
  type SearchModel,
  type SearchResult,
  type SearchStats,
  searchLinearization,
} from './search.ts';
