import { performance } from 'node:perf_hooks';
import {
  describeLinOp,
  type LinOp,
  type PartitionOp,
  returnMs,
  validateHistory,
} from './history.ts';
import {
  type ExpiryBound,
  INITIAL_LOCK_STATE,
  type LockState,
  stateKey,
  stepLock,
} from './model.ts';
import { expiryBounds, partitionByLock } from './partition.ts';
import { type SearchModel, type SearchStats, searchLinearization } from './search.ts';

export interface CheckOptions {
  /**
   * ε, the clock-rate drift bound: a lease lasts at least ttl × (1 − ε) of real time. The
   * README's safety contract states 0.05, the largest drift the simulator runs with. A
   * larger ε accepts more histories.
   */
  readonly clockDriftMax?: number;
  /** See LeaseOptions.acquireRefreshesLease; default false. */
  readonly acquireRefreshesLease?: boolean;
  /** Model steps allowed per lock before that lock's verdict is `unknown`. */
  readonly statesPerLockMax?: number;
  /** Wall time for the whole check; locks not finished by then are `unknown`. */
  readonly timeLimitMs?: number;
  /** Wall time for one lock's search; a lock not finished in it is `unknown`. */
  readonly lockTimeLimitMs?: number;
  /** Shrink each violation to a small set of ops that still has no linearization. */
  readonly minimise?: boolean;
}

export const DEFAULT_CHECK_OPTIONS: Required<CheckOptions> = {
  clockDriftMax: 0.05,
  acquireRefreshesLease: false,
  statesPerLockMax: 20_000_000,
  timeLimitMs: 120_000,
  lockTimeLimitMs: 120_000,
  minimise: true,
};

/** Minimising retries the search many times; past this size it is not worth the time. */
const MINIMISE_OPS_MAX = 300;
/**
 * Minimising is bounded by model steps, so the witness does not depend on the machine's
 * load, and by wall time only as a backstop.
 */
const MINIMISE_STATES_MAX = 5_000_000;
const MINIMISE_TIME_MS = 60_000;

export type Verdict = 'ok' | 'violation' | 'unknown';

export interface LockReport {
  readonly lock: string;
  readonly verdict: Verdict;
  /** The ops of this lock that the search used (refusals that say nothing left out). */
  readonly ops: readonly PartitionOp[];
  readonly stats: SearchStats;
  /** For `violation` and `unknown`: the longest sequence found that has a linearization. */
  readonly longestPrefix?: readonly PartitionOp[];
  /** For `violation` and `unknown`: the ops that could come next after that prefix. */
  readonly nextCandidates?: readonly PartitionOp[];
  /** For `violation`: the ops of a few sessions that still have no linearization. */
  readonly minimal?: readonly PartitionOp[];
}

export interface CheckResult {
  /** `unknown` when no violation was found but some lock ran out of budget: never a pass. */
  readonly verdict: Verdict;
  readonly locks: readonly LockReport[];
  readonly stats: {
    readonly ops: number;
    readonly locks: number;
    readonly statesExplored: number;
    readonly elapsedMs: number;
  };
}

/** Checks a lock-service history for linearizability against the contract's model. */
export function checkLockHistory(
  history: readonly LinOp[],
  options: CheckOptions = {},
): CheckResult {
  const config = { ...DEFAULT_CHECK_OPTIONS, ...options };
  validateHistory(history);
  const startMs = performance.now();
  const deadlineMs = startMs + config.timeLimitMs;
  const bound = expiryBounds(history, config);
  const locks: LockReport[] = [];
  for (const [lock, ops] of partitionByLock(history)) {
    const lockDeadlineMs = Math.min(deadlineMs, performance.now() + config.lockTimeLimitMs);
    locks.push(checkLock(lock, ops, bound, config, lockDeadlineMs));
  }
  const statesExplored = locks.reduce((sum, report) => sum + report.stats.statesExplored, 0);
  return {
    verdict: overallVerdict(locks),
    locks,
    stats: {
      ops: history.length,
      locks: locks.length,
      statesExplored,
      elapsedMs: performance.now() - startMs,
    },
  };
}

function overallVerdict(locks: readonly LockReport[]): Verdict {
  if (locks.some((report) => report.verdict === 'violation')) return 'violation';
  if (locks.some((report) => report.verdict === 'unknown')) return 'unknown';
  return 'ok';
}

function lockModel(bound: ExpiryBound): SearchModel<PartitionOp, LockState> {
  return {
    initial: INITIAL_LOCK_STATE,
    step: (state, op) => stepLock(state, op, bound),
    key: stateKey,
  };
}

function checkLock(
  lock: string,
  ops: readonly PartitionOp[],
  bound: ExpiryBound,
  config: Required<CheckOptions>,
  deadlineMs: number,
): LockReport {
  const model = lockModel(bound);
  const budget = { statesMax: config.statesPerLockMax, deadlineMs };
  const result = searchLinearization(ops, model, budget);
  const base = { lock, verdict: result.verdict, ops, stats: result.stats };
  if (result.verdict === 'ok') return base;
  const longestPrefix = result.longestPrefix.map((i) => ops[i] as PartitionOp);
  const explained = { ...base, longestPrefix, nextCandidates: frontier(ops, longestPrefix) };
  if (result.verdict === 'unknown' || !config.minimise) return explained;
  return { ...explained, minimal: minimise(ops, model) };
}

/**
 * Drops whole sessions (every op of a session on this lock), in chunks halving down to
 * one session as delta debugging does, keeping each drop after which the rest still has
 * no linearization. Whole sessions, because dropping a release but not its acquire, or
 * a grant but not its release, would make up a violation of its own. For the same
 * reason an op that needs someone else's hold (a `busy` refusal, a token told valid)
 * stays only with every acquire that could have explained it. What remains is small,
 * not necessarily the smallest.
 */
function minimise(
  ops: readonly PartitionOp[],
  model: SearchModel<PartitionOp, LockState>,
): readonly PartitionOp[] {
  if (ops.length > MINIMISE_OPS_MAX) return ops;
  const deadlineMs = performance.now() + MINIMISE_TIME_MS;
  let statesLeft = MINIMISE_STATES_MAX;
  const opsOf = (sessions: readonly string[]): PartitionOp[] =>
    ops.filter((op) => sessions.includes(op.session));
  const stillFails = (candidate: readonly PartitionOp[]): boolean => {
    if (!keepsExplanations(candidate, ops)) return false;
    const result = searchLinearization(candidate, model, { statesMax: statesLeft, deadlineMs });
    statesLeft -= result.stats.statesExplored;
    return result.verdict === 'violation';
  };
  let kept = [...new Set(ops.map((op) => op.session))];
  for (let chunk = Math.ceil(kept.length / 2); chunk >= 1; chunk = Math.floor(chunk / 2)) {
    for (let from = kept.length - chunk; from > -chunk; from -= chunk) {
      if (statesLeft <= 0 || performance.now() > deadlineMs) return opsOf(kept);
      const start = Math.max(0, from);
      const without = [...kept.slice(0, start), ...kept.slice(from + chunk)];
      if (without.length < kept.length && stillFails(opsOf(without))) kept = without;
    }
  }
  return opsOf(kept);
}

function keepsExplanations(
  candidate: readonly PartitionOp[],
  all: readonly PartitionOp[],
): boolean {
  const kept = new Set(candidate);
  return candidate.every((op) => {
    const needsHolder =
      (op.type === 'acquire' && op.failCode === 'busy') ||
      (op.type === 'validateFence' && op.valid === true);
    if (!needsHolder) return true;
    return all.every(
      (other) =>
        kept.has(other) ||
        other.type !== 'acquire' ||
        other.outcome === 'fail' ||
        other.session === op.session ||
        other.invokeMs > returnMs(op),
    );
  });
}

/** The ops that could have come next after the prefix: none of them fit. */
function frontier(ops: readonly PartitionOp[], prefix: readonly PartitionOp[]): PartitionOp[] {
  const done = new Set(prefix);
  const remaining = ops.filter((op) => !done.has(op));
  const firstReturnMs = remaining.reduce((min, op) => Math.min(min, returnMs(op)), Infinity);
  return remaining.filter((op) => op.invokeMs <= firstReturnMs);
}

/** A report a person can read: the verdict, each failing lock and its witness. */
export function explainCheck(result: CheckResult): string {
  const { ops, locks, statesExplored, elapsedMs } = result.stats;
  const lines = [
    `linearizability: ${result.verdict} (${ops} ops, ${locks} locks, ${statesExplored} states, ${elapsedMs.toFixed(0)} ms)`,
  ];
  for (const report of result.locks) {
    if (report.verdict !== 'ok') lines.push(explainLock(report));
  }
  return lines.join('\n');
}

/** One lock that did not pass: its verdict, and the witness the search left. */
export function explainLock(report: LockReport): string {
  const lines = [
    `  lock ${report.lock}: ${report.verdict} after ${report.stats.statesExplored} states`,
  ];
  if (report.minimal !== undefined) {
    lines.push('    no linearization exists for these ops:');
    for (const op of report.minimal) lines.push(`      ${describeLinOp(op)}`);
  }
  const prefix = report.longestPrefix ?? [];
  lines.push(
    `    longest linearizable prefix (${prefix.length} of ${report.ops.length} ops), its end:`,
  );
  for (const op of prefix.slice(-10)) lines.push(`      ${describeLinOp(op)}`);
  lines.push('    none of these fits next:');
  for (const op of report.nextCandidates ?? []) lines.push(`      ${describeLinOp(op)}`);
  return lines.join('\n');
}
