import { performance } from 'node:perf_hooks';
import {
  type AcquireOp,
  describeLinOp,
  type LinOp,
  type PartitionOp,
  returnMs,
  validateHistory,
} from './history.ts';
import {
  type ExpiryBound,
  INITIAL_LOCK_STATE,
  inertLockOp,
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
const MINIMISE_OPS_MAX = 1_000;
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
    inert: inertLockOp,
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
  const nearby = sessionsNear(ops, explained.nextCandidates, model);
  return { ...explained, minimal: minimise(nearby, model) };
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
  return unexplained(candidate, all).length === 0;
}

/** The acquires left out of `candidate` that may have held what one of its ops saw held. */
function unexplained(
  candidate: readonly PartitionOp[],
  all: readonly PartitionOp[],
): PartitionOp[] {
  const kept = new Set(candidate);
  const endedMs = holdsEndedByMs(all);
  const needers = candidate.filter(
    (op) =>
      (op.type === 'acquire' && op.failCode === 'busy') ||
      (op.type === 'validateFence' && op.valid === true),
  );
  if (needers.length === 0) return [];
  return all.filter(
    (other) =>
      !kept.has(other) &&
      other.type === 'acquire' &&
      mayHold(other) &&
      needers.some(
        (op) =>
          other.session !== op.session &&
          other.invokeMs <= returnMs(op) &&
          // Ended before op began in every linearization: it held nothing then.
          endedBy(endedMs, other) >= op.invokeMs,
      ),
  );
}

/** Whether the acquire's grant may have been held by someone's op: granted, or maybe. */
function mayHold(acquire: AcquireOp): boolean {
  return acquire.outcome !== 'fail' || acquire.failCode === 'grantEnded';
}

/**
 * When acknowledged ops had ended holds, by `session/` (a close: everything the session
 * held) and `session/token` (a release of that grant): each takes effect before its
 * answer, so from then on in every linearization the hold is gone.
 */
function holdsEndedByMs(ops: readonly PartitionOp[]): Map<string, number> {
  const ended = new Map<string, number>();
  const note = (key: string, atMs: number): void => {
    ended.set(key, Math.min(ended.get(key) ?? Number.POSITIVE_INFINITY, atMs));
  };
  for (const op of ops) {
    if (op.type === 'closeSession' && op.outcome === 'fail' && op.failCode === 'sessionGone')
      note(`${op.session}/`, returnMs(op));
    if (op.outcome !== 'ok') continue;
    if (op.type === 'closeSession') note(`${op.session}/`, returnMs(op));
    if (op.type === 'release') note(`${op.session}/${op.token}`, returnMs(op));
  }
  return ended;
}

/** When the grant of `acquire` had certainly ended (+∞ if nothing says). */
function endedBy(ended: ReadonlyMap<string, number>, acquire: AcquireOp): number {
  // Answered grantEnded: ended by its answer.
  const toldMs = acquire.failCode === 'grantEnded' ? returnMs(acquire) : Number.POSITIVE_INFINITY;
  const closedMs = Math.min(toldMs, ended.get(`${acquire.session}/`) ?? Number.POSITIVE_INFINITY);
  if (acquire.token === undefined) return closedMs;
  return Math.min(
    closedMs,
    ended.get(`${acquire.session}/${acquire.token}`) ?? Number.POSITIVE_INFINITY,
  );
}

/** How far before the failing ops a session must reach to stay in the witness. */
const WITNESS_WINDOW_MS = 10_000;

/**
 * A long history's violation, cut down (if it still has no linearization, else the
 * whole history) to what minimise can work on:
 *
 * - at the end, every op invoked after the first instant, once the ops that did not fit
 *   have answered, by which every answered op invoked earlier has answered too. What is
 *   left after that instant is unanswered ops, which fit anywhere, so a linearization of
 *   the whole history restricted to the rest would still be one: the cut makes up no
 *   violation.
 * - at the start, the sessions with no op within WITNESS_WINDOW_MS before the ops that
 *   did not fit, whole sessions as minimise drops them.
 */
function sessionsNear(
  ops: readonly PartitionOp[],
  failing: readonly PartitionOp[],
  model: SearchModel<PartitionOp, LockState>,
): readonly PartitionOp[] {
  if (ops.length <= MINIMISE_OPS_MAX || failing.length === 0) return ops;
  const untilMs = quietAfter(ops, Math.max(...failing.map(returnMs)));
  const fromMs = Math.min(...failing.map((op) => op.invokeMs)) - WITNESS_WINDOW_MS;
  const before = ops.filter((op) => op.invokeMs <= untilMs);
  const sessions = new Set(
    before.filter((op) => (op.completeMs ?? op.invokeMs) >= fromMs).map((op) => op.session),
  );
  // The sessions whose acquires may explain a kept refusal come too (keepsExplanations).
  for (let added = true; added; ) {
    added = false;
    const nearby = before.filter((op) => sessions.has(op.session));
    for (const op of unexplained(nearby, ops)) {
      if (!sessions.has(op.session)) added = sessions.add(op.session) !== undefined;
    }
  }
  const nearby = before.filter((op) => sessions.has(op.session));
  if (!keepsExplanations(nearby, ops)) return ops;
  const deadlineMs = performance.now() + MINIMISE_TIME_MS;
  const result = searchLinearization(nearby, model, { statesMax: MINIMISE_STATES_MAX, deadlineMs });
  return result.verdict === 'violation' ? nearby : ops;
}

/** The first instant ≥ `fromMs` by which every answered op invoked before it has answered. */
function quietAfter(ops: readonly PartitionOp[], fromMs: number): number {
  let untilMs = fromMs;
  for (;;) {
    let latest = untilMs;
    for (const op of ops) {
      if (op.invokeMs <= untilMs && op.completeMs !== null)
        latest = Math.max(latest, op.completeMs);
    }
    if (latest === untilMs) return untilMs;
    untilMs = latest;
  }
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
