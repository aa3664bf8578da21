import { type BenchErrors, mergeErrors } from './bench-errors.ts';
import { type CellSpec, type Contention, cellName } from './cells.ts';
import { describeViolation, findViolations } from './check.ts';
import type { PauseReport } from './pauses.ts';
import { byLockInGrantOrder, type PairRecord } from './records.ts';
import type { SystemName } from './server-cluster.ts';
import { jainIndex, type LatencySummaryMs, summarize } from './stats.ts';

/** Every figure of one cell of one system, as printed and written to the JSON. */
export interface CellResult {
  readonly system: SystemName;
  readonly cell: string;
  /** 1.. for measured cells (see --rounds); 0 for the warm-up. */
  readonly round: number;
  readonly clients: number;
  readonly contention: Contention;
  readonly pairs: number;
  /** From the start signal until the last client finished its last pair. */
  readonly seconds: number;
  readonly pairsPerSecond: number;
  /** Acquire sent → grant received; on a hot lock this includes the wait in the queue. */
  readonly acquireMs: LatencySummaryMs;
  /** Release sent → its answer received. */
  readonly releaseMs: LatencySummaryMs;
  /** Release sent → the next waiter's grant received; hot lock only. */
  readonly handoffMs: LatencySummaryMs | null;
  readonly fairness: Fairness;
  readonly serverCpu: ServerCpu | null;
  /** The bench's worker processes, per write. */
  readonly loadgenCpuMsPerWrite: number;
  /**
   * The busiest worker's event-loop utilization over the cell (0..1). Near 1 the load
   * generator, not the servers, set the pace: add --workers. It is wall-clock time in
   * callbacks, so a process waiting for a CPU mid-callback counts as busy.
   */
  readonly loadgenBusiest: number;
  /** The machine's 1-minute load average at the cell's end: how noisy the run was. */
  readonly hostLoad1m: number;
  readonly violations: { readonly count: number; readonly first: readonly string[] };
  readonly errors: BenchErrors;
  readonly leader: string | null;
  readonly notes: readonly string[];
  /**
   * The slowest acquires, slowest first, with the wall-clock time each was sent: to
   * match a stall against the nodes' logs (GC pauses, snapshots, event-loop stalls).
   */
  readonly slowestAcquires: readonly SlowAcquire[];
  /** --stall-ms only: the pauses the nodes logged, and what the slowest acquires overlapped. */
  readonly pauses?: PauseReport | null;
}

export interface SlowAcquire {
  /** When the acquire was sent, as an ISO date with milliseconds (the nodes' log `time` is epoch ms). */
  readonly sentAt: string;
  readonly sentMs: number;
  readonly ms: number;
  readonly clientIndex: number;
  readonly lock: string;
}

export interface Fairness {
  readonly grantsMin: number;
  readonly grantsMax: number;
  readonly jainIndex: number;
}

export interface ServerCpu {
  readonly members: readonly MemberCpu[];
  /** All members together, per write. */
  readonly totalMsPerWrite: number;
}

export interface MemberCpu {
  readonly name: string;
  readonly leader: boolean;
  readonly cpuMs: number;
  readonly msPerWrite: number;
  /** Its main thread switched out while runnable, per write (see mainThreadPreemptions). */
  readonly preemptionsPerWrite: number;
}

export interface CellRun {
  readonly system: SystemName;
  readonly cell: CellSpec;
  readonly round: number;
  readonly startMs: number;
  readonly records: readonly PairRecord[];
  readonly loadgenCpuMs: number;
  readonly loadgenBusiest: number;
  readonly hostLoad1m: number;
  /** CPU ms each server process used over the cell, by member name; null if unknown. */
  readonly serverCpuMs: ReadonlyMap<string, number> | null;
  /** How often each server's main thread was preempted over the cell; null if unknown. */
  readonly serverPreemptions: ReadonlyMap<string, number> | null;
  readonly errors: readonly BenchErrors[];
  readonly leaderBefore: string | null;
  readonly leaderAfter: string | null;
}

/** A pair is an acquire and a release: two writes to the replicated log. */
export const WRITES_PER_PAIR = 2;
const VIOLATIONS_LISTED_MAX = 20;

/** When the cell's last client finished its last pair (its start, if none did). */
export function cellEndMs(run: Pick<CellRun, 'startMs' | 'records'>): number {
  return run.records.reduce((latest, record) => Math.max(latest, record.releasedMs), run.startMs);
}

/** `slowestCount`: how many of the slowest acquires to keep (see --slowest). */
export function analyzeCell(run: CellRun, slowestCount = 0): CellResult {
  const { records } = run;
  const seconds = (cellEndMs(run) - run.startMs) / 1000;
  const writes = records.length * WRITES_PER_PAIR;
  const violations = findViolations(records);
  const notes: string[] = [];
  if (run.leaderBefore !== run.leaderAfter) {
    notes.push(`leader changed during the cell: ${run.leaderBefore} → ${run.leaderAfter}`);
  }
  return {
    system: run.system,
    cell: cellName(run.cell),
    round: run.round,
    clients: run.cell.clients,
    contention: run.cell.contention,
    pairs: records.length,
    seconds,
    pairsPerSecond: seconds > 0 ? records.length / seconds : 0,
    acquireMs: summarize(records.map((record) => record.grantedMs - record.acquireSentMs)),
    releaseMs: summarize(records.map((record) => record.releasedMs - record.releaseSentMs)),
    handoffMs: run.cell.contention === 'hot' ? summarize(handoffSamplesMs(records)) : null,
    fairness: fairnessOf(records, run.cell.clients),
    serverCpu: serverCpuOf(run, writes),
    loadgenCpuMsPerWrite: run.loadgenCpuMs / writes,
    loadgenBusiest: run.loadgenBusiest,
    hostLoad1m: run.hostLoad1m,
    violations: {
      count: violations.length,
      first: violations.slice(0, VIOLATIONS_LISTED_MAX).map(describeViolation),
    },
    errors: mergeErrors(run.errors),
    leader: run.leaderAfter,
    notes,
    slowestAcquires: slowestAcquires(records, slowestCount),
  };
}

export function slowestAcquires(records: readonly PairRecord[], count: number): SlowAcquire[] {
  if (count <= 0) return [];
  return records
    .map((record) => ({ record, ms: record.grantedMs - record.acquireSentMs }))
    .sort((a, b) => b.ms - a.ms)
    .slice(0, count)
    .map(({ record, ms }) => ({
      sentAt: new Date(record.acquireSentMs).toISOString(),
      sentMs: record.acquireSentMs,
      ms,
      clientIndex: record.clientIndex,
      lock: record.lock,
    }));
}

/**
 * For each grant whose Acquire was sent before the previous holder sent its release
 * (so it was waiting), the time from that release being sent to this grant arriving.
 */
export function handoffSamplesMs(records: readonly PairRecord[]): number[] {
  const samples: number[] = [];
  for (const grants of byLockInGrantOrder(records).values()) {
    for (let i = 1; i < grants.length; i++) {
      const previous = grants[i - 1];
      const next = grants[i];
      if (previous === undefined || next === undefined) continue;
      if (next.acquireSentMs < previous.releaseSentMs) {
        samples.push(next.grantedMs - previous.releaseSentMs);
      }
    }
  }
  return samples;
}

function fairnessOf(records: readonly PairRecord[], clients: number): Fairness {
  const grants = new Array<number>(clients).fill(0);
  for (const record of records) grants[record.clientIndex] = (grants[record.clientIndex] ?? 0) + 1;
  return {
    grantsMin: Math.min(...grants),
    grantsMax: Math.max(...grants),
    jainIndex: jainIndex(grants),
  };
}

function serverCpuOf(
  run: Pick<CellRun, 'serverCpuMs' | 'serverPreemptions' | 'leaderAfter'>,
  writes: number,
): ServerCpu | null {
  if (run.serverCpuMs === null || writes === 0) return null;
  const members = [...run.serverCpuMs].map(([name, ms]) => ({
    name,
    leader: name === run.leaderAfter,
    cpuMs: ms,
    msPerWrite: ms / writes,
    preemptionsPerWrite: (run.serverPreemptions?.get(name) ?? Number.NaN) / writes,
  }));
  const total = members.reduce((sum, member) => sum + member.cpuMs, 0);
  return { members, totalMsPerWrite: total / writes };
}
