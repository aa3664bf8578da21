import type { Violation } from './checker.ts';
import type { NemesisEvent, Op, Outcome } from './history.ts';
import type { LinearizabilityVerdict } from './linearizable.ts';
import type { LogCheckStats } from './log-checker.ts';
import type { JepsenOptions, JepsenResult, Nemesis } from './run.ts';

/**
 * What a Jepsen run found, as data: written to `summary.json` and drawn by report.ts.
 * Every checker reports through CheckerVerdict, so the report and the summary need no
 * change when a checker is added: only `checkerVerdicts` learns of it.
 */

/** Something a checker found, and the history ops it names. */
export interface Anomaly {
  readonly message: string;
  readonly ops?: readonly number[];
}

/**
 * One checker's verdict. 'unknown' is not a pass: the checker could not decide (nothing
 * to check, a search out of time, a control whose fault never ran).
 */
export interface CheckerVerdict {
  readonly name: string;
  readonly valid: boolean | 'unknown';
  /** The violations' checks this verdict covers, which get no verdict of their own. */
  readonly checks?: readonly string[];
  readonly details: {
    /** What was checked, or why the verdict is unknown. */
    readonly note?: string;
    readonly stats?: Readonly<Record<string, number | string>>;
    /** What it found: anomalies, or for a negative control what it was meant to catch. */
    readonly anomalies?: readonly Anomaly[];
    /** How many it found, when `anomalies` holds only the first of them. */
    readonly anomalyCount?: number;
  };
}

export type OutcomeCounts = Record<Outcome, number>;

/**
 * The options that describe a run (not where its results go, nor its progress callback),
 * with the cluster size it ran with.
 */
export type RunOptions = Omit<JepsenOptions, 'onProgress' | 'results' | 'nodes'> & {
  readonly nodes: number;
};

export interface RunSummary {
  /** UTC start time and seed, e.g. 20261203T110000Z-seed7: the results directory's name. */
  readonly runId: string;
  /** ISO 8601, UTC. */
  readonly startedAt: string;
  /** From the cluster's start to the end of the checks. */
  readonly wallMs: number;
  readonly options: RunOptions;
  /**
   * performance.now() of the test process when the workload began and when its holds were
   * closed: every time in the history is on that clock.
   */
  readonly workloadStartMs: number;
  readonly workloadEndMs: number;
  /** Ops by kind ('write fenced', 'write ignore-tokens' for the two registers) and outcome. */
  readonly ops: { readonly total: number; readonly byKind: Record<string, OutcomeCounts> };
  readonly grants: {
    /** Acquires a client was told succeeded. */
    readonly acknowledged: number;
    /** Grants in the committed Raft log, and of them those no client was told of. */
    readonly inLog: number;
    readonly inLogUnacknowledged: number;
  };
  readonly nemesis: {
    readonly total: number;
    readonly byKind: Record<string, number>;
    /** Faults asked for that could not run here: skipped, never passed. */
    readonly skipped: readonly { readonly nemesis: Nemesis; readonly reason: string }[];
  };
  /** false if any checker is invalid, else 'unknown' if any is unknown, else true. */
  readonly valid: boolean | 'unknown';
  readonly checkers: readonly CheckerVerdict[];
}

/** summary.json keeps this many anomalies per checker; anomalyCount says how many there were. */
const ANOMALIES_KEPT = 100;

export function summarize(run: {
  readonly runId: string;
  readonly startedAt: Date;
  readonly wallMs: number;
  readonly options: JepsenOptions & { readonly nodes: number };
  readonly result: JepsenResult;
}): RunSummary {
  const { result } = run;
  const { onProgress: _onProgress, results: _results, ...options } = run.options;
  const checkers = checkerVerdicts(options, result).map(keepFirstAnomalies);
  return {
    runId: run.runId,
    startedAt: run.startedAt.toISOString(),
    wallMs: Math.round(run.wallMs),
    options,
    workloadStartMs: result.startMs,
    workloadEndMs: result.endMs,
    ops: { total: result.ops.length, byKind: countOps(result.ops) },
    grants: {
      acknowledged: acknowledgedGrants(result.ops).length,
      inLog: result.log.grants,
      inLogUnacknowledged: result.log.grantsUnacknowledged,
    },
    nemesis: {
      total: result.nemesisEvents.length,
      byKind: countNemesis(result.nemesisEvents),
      skipped: result.skipped,
    },
    valid: overall(checkers),
    checkers,
  };
}

/** The op's kind, with the register a write went to. */
export function opKindLabel(op: Op): string {
  return op.register === undefined ? op.kind : `${op.kind} ${op.register}`;
}

export function countOps(ops: readonly Op[]): Record<string, OutcomeCounts> {
  const counts: Record<string, OutcomeCounts> = {};
  for (const op of ops) {
    const label = opKindLabel(op);
    counts[label] ??= { ok: 0, fail: 0, info: 0 };
    counts[label][op.outcome]++;
  }
  return counts;
}

export function countNemesis(events: readonly NemesisEvent[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const event of events) counts[event.kind] = (counts[event.kind] ?? 0) + 1;
  return counts;
}

function acknowledgedGrants(ops: readonly Op[]): Op[] {
  return ops.filter((op) => op.kind === 'acquire' && op.outcome === 'ok');
}

/**
 * The sets workload's figures (issue 17), for the mutual exclusion verdict, which covers
 * them: a set's grant is a hold of each of its locks. Empty when no set was asked for.
 */
function setStats(ops: readonly Op[]): Record<string, number> {
  const sets = ops.filter((op) => op.kind === 'acquire-all');
  if (sets.length === 0) return {};
  const refused = (prefix: string): number =>
    sets.filter((op) => op.outcome === 'fail' && op.error?.startsWith(prefix) === true).length;
  return {
    setsAsked: sets.length,
    setsGranted: sets.filter((op) => op.outcome === 'ok').length,
    setsNotAcquired: refused('LockSetNotAcquiredError'),
    setsRefusedAsDeadlock: refused('deadlock:'),
    setsUnknown: sets.filter((op) => op.outcome === 'info').length,
  };
}

function overall(checkers: readonly CheckerVerdict[]): boolean | 'unknown' {
  if (checkers.some((checker) => checker.valid === false)) return false;
  return checkers.some((checker) => checker.valid === 'unknown') ? 'unknown' : true;
}

function keepFirstAnomalies(verdict: CheckerVerdict): CheckerVerdict {
  const anomalies = verdict.details.anomalies ?? [];
  if (anomalies.length <= ANOMALIES_KEPT) return verdict;
  return {
    ...verdict,
    details: {
      ...verdict.details,
      anomalies: anomalies.slice(0, ANOMALIES_KEPT),
      anomalyCount: verdict.details.anomalyCount ?? anomalies.length,
    },
  };
}

/**
 * The checkers of run.ts, grouped by what they compare. A violation whose check is in
 * none of these groups (a checker added since) still gets a verdict, named after it.
 */
const CHECK_GROUPS: readonly { readonly name: string; readonly checks: readonly string[] }[] = [
  { name: 'history: mutual exclusion', checks: ['mutual-exclusion'] },
  { name: 'history: tokens rise in real time', checks: ['fencing'] },
  {
    name: 'raft log: what clients were told against the committed log',
    checks: [
      'log',
      'acknowledged-grant',
      'acknowledged-release',
      'acknowledged-proclaim',
      'granted-while-held',
    ],
  },
  { name: 'history: linearizable (lease-aware model)', checks: ['linearizability'] },
  {
    name: 'fenced register: accepted writes follow the log',
    checks: ['register-stale-write', 'register-token', 'register-refusal', 'register-answer'],
  },
];

/** Every checker's verdict on a run, in the order the report shows them. */
export function checkerVerdicts(options: RunOptions, result: JepsenResult): CheckerVerdict[] {
  const grants = acknowledgedGrants(result.ops).length;
  const noGrants = grants === 0 ? 'no acknowledged grant: nothing to check' : undefined;
  const verdicts = CHECK_GROUPS.map((group) =>
    groupVerdict(group.name, violationsOf(result.violations, group.checks), noGrants),
  );
  const [historyMutex, historyTokens, raftLog, linearizable, fenced] = verdicts as [
    CheckerVerdict,
    CheckerVerdict,
    CheckerVerdict,
    CheckerVerdict,
    CheckerVerdict,
  ];
  const grouped = new Set([
    ...CHECK_GROUPS.flatMap((group) => group.checks),
    ...COORDINATION_GROUPS.flatMap((group) => group.checks),
    ...result.faultVerdicts.flatMap((verdict) => verdict.checks ?? []),
  ]);
  const others = [...new Set(result.violations.map((v) => v.check))]
    .filter((check) => !grouped.has(check))
    .map((check) => groupVerdict(check, violationsOf(result.violations, [check])));
  return [
    withStats(historyMutex, { grants, ...setStats(result.ops) }),
    ...coordinationVerdicts(result),
    historyTokens,
    withUncheckedNote(withStats(raftLog, logStats(result.log)), result.log),
    linearizabilityVerdict(linearizable, result.linearizability),
    withStats(fenced, { ...result.fenced.stats }),
    ...others,
    ...result.faultVerdicts,
    ...negativeControl(options, result),
    ...beyondDriftBound(options, result),
  ];
}

/**
 * Semaphores and elections (coordination-checker.ts), each with a verdict only when the
 * history has its ops: a run without them has nothing there to pass or fail.
 */
const COORDINATION_GROUPS = [
  {
    name: 'history: semaphore permits within the limit, one rising token per grant',
    kind: 'acquire-permits',
    checks: ['permits-over-limit', 'permit-token'],
  },
  {
    name: 'history: one leader per election at a time, leader tokens rising',
    kind: 'campaign',
    checks: ['leader-overlap', 'leader-token'],
  },
] as const;

function coordinationVerdicts(result: JepsenResult): CheckerVerdict[] {
  return COORDINATION_GROUPS.flatMap((group) => {
    const asked = result.ops.filter((op) => op.kind === group.kind);
    if (asked.length === 0) return [];
    const granted = asked.filter((op) => op.outcome === 'ok').length;
    const verdict = groupVerdict(
      group.name,
      violationsOf(result.violations, group.checks),
      granted === 0 ? 'no acknowledged grant: nothing to check' : undefined,
    );
    return [withStats(verdict, { asked: asked.length, granted })];
  });
}

/**
 * A replay that could not start from the bootstrap (no node, nor a copy the run kept,
 * held the log from its first entry) leaves the answers given before its start
 * unchecked: the verdict says how many, so a pass is not read as covering them.
 */
function withUncheckedNote(verdict: CheckerVerdict, log: LogCheckStats): CheckerVerdict {
  const unchecked = Object.values(log.answers).reduce((sum, a) => sum + a.beforeStart, 0);
  if (unchecked === 0) return verdict;
  const note = `${unchecked} ok answers unchecked: given before index ${log.startIndex}, where the replay started (a snapshot; no node kept the log from the bootstrap)`;
  const notes = verdict.details.note === undefined ? note : `${verdict.details.note}; ${note}`;
  return { ...verdict, details: { ...verdict.details, note: notes } };
}

/** The log checker's figures flattened for the report: `acquire ok` 404/404 and so on. */
function logStats(log: LogCheckStats): Record<string, number | string> {
  const stats: Record<string, number | string> = {
    grants: log.grants,
    grantsUnacknowledged: log.grantsUnacknowledged,
    committedIndex: log.committedIndex,
    startIndex: log.startIndex,
    agreementComparisons: log.agreement.comparisons,
    agreementSmallestCommitIndex: log.agreement.smallestCommitIndex,
    logsRead: log.logs.join('; '),
  };
  for (const [kind, answers] of Object.entries(log.answers)) {
    if (answers.ok > 0) stats[`${kind} ok reproduced`] = `${answers.reproduced}/${answers.ok}`;
    if (answers.beforeStart > 0)
      stats[`${kind} ok unchecked (before the replay's start)`] = answers.beforeStart;
  }
  for (const [kind, info] of Object.entries(log.info)) {
    const { tookEffect, noEffect, notInLog, unresolvable } = info;
    if (tookEffect + noEffect + notInLog + unresolvable === 0) continue;
    stats[`${kind} info`] =
      `${tookEffect} took effect, ${noEffect} without effect, ${notInLog} not in log, ${unresolvable} unresolvable`;
  }
  return stats;
}

/** An exhausted search budget is `unknown`, never valid; the stats give each lock's search. */
function linearizabilityVerdict(
  grouped: CheckerVerdict,
  verdict: LinearizabilityVerdict,
): CheckerVerdict {
  const stats: Record<string, number | string> = {
    ops: verdict.ops,
    checkMs: Math.round(verdict.checkMs),
  };
  for (const lock of verdict.locks) {
    stats[lock.lock] =
      `${lock.verdict}, ${lock.ops} ops, ${lock.statesExplored} states, ${lock.searchMs.toFixed(0)} ms`;
  }
  const unknown = grouped.valid === true && verdict.verdict === 'unknown';
  if (verdict.locksLeftOut.length > 0)
    stats['left out (sets, semaphores, elections; the model knows single locks)'] =
      verdict.locksLeftOut.join(', ');
  const note = `search budget exhausted on ${verdict.unknownLocks.join(', ')}`;
  return withStats(
    unknown ? { ...grouped, valid: 'unknown', details: { ...grouped.details, note } } : grouped,
    stats,
  );
}

function violationsOf(violations: readonly Violation[], checks: readonly string[]): Violation[] {
  return violations.filter((violation) => checks.includes(violation.check));
}

function groupVerdict(
  name: string,
  violations: readonly Violation[],
  unknownBecause?: string,
): CheckerVerdict {
  if (violations.length > 0) return { name, valid: false, details: { anomalies: violations } };
  if (unknownBecause !== undefined)
    return { name, valid: 'unknown', details: { note: unknownBecause } };
  return { name, valid: true, details: {} };
}

function withStats(
  verdict: CheckerVerdict,
  stats: Record<string, number | string>,
): CheckerVerdict {
  return { ...verdict, details: { ...verdict.details, stats } };
}

/**
 * The register that ignores tokens must be caught accepting stale writes: valid means it
 * was. Only client pauses make stale writes, so without the client-pause nemesis there is
 * no verdict, and with it but no pause that ran the verdict is unknown.
 */
function negativeControl(options: RunOptions, result: JepsenResult): CheckerVerdict[] {
  // No nemeses named means all of them, client-pause among them.
  if (options.nemeses?.includes('client-pause') === false) return [];
  return [controlVerdict(result)];
}

function controlVerdict(result: JepsenResult): CheckerVerdict {
  const name = 'negative control: a register that ignores tokens is caught';
  const { control } = result;
  const stale = control.violations.filter((v) => v.check === 'register-stale-write');
  const pauses = result.nemesisEvents.filter((event) => event.kind === 'client-pause').length;
  const stats = { ...control.stats, clientPauses: pauses };
  if (stale.length > 0) {
    const note = `caught: it accepted ${stale.length} stale writes (expected; the fenced register refused them)`;
    return { name, valid: true, details: { note, stats, anomalies: stale } };
  }
  if (pauses === 0)
    return {
      name,
      valid: 'unknown',
      details: { note: 'no client pause ran: nothing to catch', stats },
    };
  return {
    name,
    valid: false,
    details: { note: `not caught after ${pauses} client pauses`, stats },
  };
}

/**
 * Under clock-beyond, real-time violations inside its windows are allowed (the drift
 * bound was broken on purpose); they are listed here, apart, and fail nothing.
 */
function beyondDriftBound(options: RunOptions, result: JepsenResult): CheckerVerdict[] {
  if (!(options.nemeses ?? []).includes('clock-beyond')) return [];
  const note = `${result.beyondBound.length} real-time violations while a clock ran beyond the drift bound: allowed, only fencing must hold`;
  return [
    {
      name: 'beyond the drift bound (reported apart)',
      valid: true,
      details: { note, anomalies: result.beyondBound },
    },
  ];
}
