import { readFileSync } from 'node:fs';
import { type SlowAcquire, slowestAcquires } from './analyze.ts';
import type { PairRecord } from './records.ts';
import type { ServerMember } from './server-cluster.ts';

/**
 * --stall-ms: which of a cell's slowest acquires ran while a node was paused. Each dlm
 * node the bench starts logs every GC pause and event-loop stall of at least
 * runtime.stallReportMsMin (`long GC pause`, `event loop stalled`, with `startedAtMs` in
 * epoch ms, the clock the bench's records use). After a cell the bench reads those
 * lines back and reports, per node, the pauses within the cell, and, for the slowest 1%
 * of its acquires, what each one overlapped.
 *
 * A GC pause delays the stall timer too, so most GC pauses are also logged as a stall:
 * an acquire is put down to the first cause that overlaps it, in the order of
 * PAUSE_CAUSES (GC before stall, leader before follower).
 */
export interface NodePause {
  readonly node: string;
  readonly kind: 'gc' | 'stall';
  readonly startMs: number;
  readonly durationMs: number;
}

export interface NodePauseTotals {
  readonly name: string;
  readonly leader: boolean;
  readonly gc: PauseTotals;
  readonly stall: PauseTotals;
}

export interface PauseTotals {
  readonly count: number;
  readonly totalMs: number;
  readonly maxMs: number;
}

export const PAUSE_CAUSES = [
  'leaderGc',
  'leaderStall',
  'followerGc',
  'followerStall',
  'none',
] as const;
export type PauseCause = (typeof PAUSE_CAUSES)[number];

export interface PauseReport {
  readonly thresholdMs: number;
  readonly nodes: readonly NodePauseTotals[];
  /** The slowest 1% of the cell's acquires (at least one), by what each overlapped. */
  readonly slowAcquires: number;
  readonly slowAcquireMsMin: number;
  readonly slowDuring: Readonly<Record<PauseCause, number>>;
}

/** The share of acquires, slowest first, that the report explains. */
const SLOW_FRACTION = 0.01;

/**
 * The report for one cell, or null when no member has a log the bench can read (a
 * cluster it did not start, or etcd).
 */
export function pauseReport(
  members: readonly ServerMember[],
  leader: string | null,
  records: readonly PairRecord[],
  window: { readonly startMs: number; readonly endMs: number },
  thresholdMs: number,
): PauseReport | null {
  const logged = members.filter((member) => member.logPath !== undefined);
  if (logged.length === 0) return null;
  const pauses = logged.flatMap((member) =>
    parsePauses(member.name, readFileSync(member.logPath as string, 'utf8')).filter(
      (pause) =>
        pause.startMs + pause.durationMs >= window.startMs && pause.startMs <= window.endMs,
    ),
  );
  const slow = slowestAcquires(records, Math.max(1, Math.floor(records.length * SLOW_FRACTION)));
  const slowDuring = Object.fromEntries(PAUSE_CAUSES.map((cause) => [cause, 0])) as Record<
    PauseCause,
    number
  >;
  for (const acquire of slow) slowDuring[causeOf(acquire, pauses, leader)]++;
  return {
    thresholdMs,
    nodes: logged.map((member) => ({
      name: member.name,
      leader: member.name === leader,
      gc: totals(pauses, member.name, 'gc'),
      stall: totals(pauses, member.name, 'stall'),
    })),
    slowAcquires: slow.length,
    // Slowest first; 0 for a cell that completed no pair.
    slowAcquireMsMin: slow.at(-1)?.ms ?? 0,
    slowDuring,
  };
}

/** The pauses in a node's log (pino JSON lines); other lines are skipped. */
export function parsePauses(node: string, log: string): NodePause[] {
  const pauses: NodePause[] = [];
  for (const line of log.split('\n')) {
    const kind = line.includes('"long GC pause"')
      ? 'gc'
      : line.includes('"event loop stalled"')
        ? 'stall'
        : null;
    if (kind === null) continue;
    let entry: { startedAtMs?: unknown; durationMs?: unknown };
    try {
      entry = JSON.parse(line);
    } catch {
      continue; // a line cut short by a kill
    }
    const { startedAtMs, durationMs } = entry;
    if (typeof startedAtMs !== 'number' || typeof durationMs !== 'number') continue;
    pauses.push({ node, kind, startMs: startedAtMs, durationMs });
  }
  return pauses;
}

function causeOf(acquire: SlowAcquire, pauses: readonly NodePause[], leader: string | null) {
  const grantedMs = acquire.sentMs + acquire.ms;
  const overlapping = pauses.filter(
    (pause) => pause.startMs < grantedMs && pause.startMs + pause.durationMs > acquire.sentMs,
  );
  const has = (onLeader: boolean, kind: NodePause['kind']) =>
    overlapping.some((pause) => (pause.node === leader) === onLeader && pause.kind === kind);
  if (has(true, 'gc')) return 'leaderGc';
  if (has(true, 'stall')) return 'leaderStall';
  if (has(false, 'gc')) return 'followerGc';
  if (has(false, 'stall')) return 'followerStall';
  return 'none';
}

function totals(pauses: readonly NodePause[], node: string, kind: NodePause['kind']): PauseTotals {
  let count = 0;
  let totalMs = 0;
  let maxMs = 0;
  for (const pause of pauses) {
    if (pause.node !== node || pause.kind !== kind) continue;
    count++;
    totalMs += pause.durationMs;
    maxMs = Math.max(maxMs, pause.durationMs);
  }
  return { count, totalMs, maxMs };
}
