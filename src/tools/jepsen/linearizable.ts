import { performance } from 'node:perf_hooks';
import type { Violation } from './checker.ts';
import type { Op } from './history.ts';
import {
  checkLockHistory,
  explainLock,
  fromJepsenLite,
  type LockReport,
  type Verdict,
} from './linearizability/index.ts';

/**
 * The run's history checked for linearizability against the lease-aware lock model
 * (linearizability/), as one more checker of the run: what clients were told, alone,
 * including the session calls that bound each lease. `info` answers stay unknown: the
 * search lets each take effect at any time after its call, or never; the log's view of
 * them is the replay's business, not used here.
 */
export interface LinearizabilityBudget {
  /** Wall time one lock's search may take; past it the lock is `unknown`, not a pass. */
  readonly lockSearchMsMax: number;
  /** Model steps one lock's search may take (the checker's default unless given). */
  readonly statesPerLockMax?: number;
  /** ε of the safety contract: a lease lasts at least ttl × (1 − ε) of real time. */
  readonly clockDriftMax: number;
}

export const DEFAULT_LINEARIZABILITY_BUDGET: LinearizabilityBudget = {
  lockSearchMsMax: 60_000,
  clockDriftMax: 0.05,
};

export interface LockSearch {
  readonly lock: string;
  readonly verdict: Verdict;
  /** The ops of the lock's partition the search ordered. */
  readonly ops: number;
  readonly statesExplored: number;
  readonly searchMs: number;
}

export interface LinearizabilityVerdict {
  /** `unknown` when some lock ran out of budget and none was a violation: never valid. */
  readonly verdict: Verdict;
  readonly locks: readonly LockSearch[];
  /** The whole check: conversion, every lock's search, and minimising any violation. */
  readonly checkMs: number;
  /** Lock ops, session ops and the closes the converter added. */
  readonly ops: number;
  /** One per lock with no linearization, naming the ops of its witness. */
  readonly violations: readonly Violation[];
  /** The locks whose search ran out of budget. */
  readonly unknownLocks: readonly string[];
  /**
   * Names left out of the search: the locks some set (acquire-all) covered, and the
   * semaphores and elections. The model knows single exclusive locks only: it would read
   * a single acquire refused by a set it cannot see, or the release of permits it never
   * saw granted, as a violation. Their exclusion and fencing are checked by checker.ts,
   * coordination-checker.ts and against the log.
   */
  readonly locksLeftOut: readonly string[];
}

/** The names the model cannot check (see locksLeftOut). */
export function locksLeftOutOf(ops: readonly Op[]): Set<string> {
  const names = new Set<string>();
  for (const op of ops) {
    for (const lock of op.locks ?? []) names.add(lock);
    if (op.kind === 'acquire-permits' || op.kind === 'campaign') names.add(op.lock);
  }
  return names;
}

export function checkLinearizable(
  ops: readonly Op[],
  budget: LinearizabilityBudget = DEFAULT_LINEARIZABILITY_BUDGET,
): LinearizabilityVerdict {
  const startMs = performance.now();
  const leftOut = locksLeftOutOf(ops);
  const lockOps = ops.filter((op) => op.kind !== 'acquire-all' && !leftOut.has(op.lock));
  // The run records every close it makes, so none is made up (see FromJepsenLiteOptions).
  const history = fromJepsenLite(lockOps, { closeAfterLastOp: false });
  const result = checkLockHistory(history, {
    clockDriftMax: budget.clockDriftMax,
    lockTimeLimitMs: budget.lockSearchMsMax,
    timeLimitMs: Number.POSITIVE_INFINITY,
    ...(budget.statesPerLockMax === undefined ? {} : { statesPerLockMax: budget.statesPerLockMax }),
  });
  return {
    verdict: result.verdict,
    locks: result.locks.map(lockSearch),
    checkMs: performance.now() - startMs,
    ops: history.length,
    violations: result.locks
      .filter((report) => report.verdict === 'violation')
      .map((report) => violationOf(report, new Set(ops.map((op) => op.id)))),
    unknownLocks: result.locks
      .filter((report) => report.verdict === 'unknown')
      .map((report) => report.lock),
    locksLeftOut: [...leftOut].sort(),
  };
}

function lockSearch(report: LockReport): LockSearch {
  return {
    lock: report.lock,
    verdict: report.verdict,
    ops: report.ops.length,
    statesExplored: report.stats.statesExplored,
    searchMs: report.stats.elapsedMs,
  };
}

/** The witness's ops are the history's (a converted op keeps its id); added closes are not. */
function violationOf(report: LockReport, historyIds: ReadonlySet<number>): Violation {
  const witness = report.minimal ?? report.nextCandidates ?? [];
  return {
    check: 'linearizability',
    message: `no linearization of ${report.lock} in the lease-aware lock model\n${explainLock(report)}`,
    ops: witness.map((op) => op.id).filter((id) => historyIds.has(id)),
  };
}
