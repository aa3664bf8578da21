import type { CellResult, MemberCpu } from './analyze.ts';
import { type NodePauseTotals, PAUSE_CAUSES, type PauseCause } from './pauses.ts';

/** The printed tables: one row per cell and system, then dlm/etcd ratios. */

interface Column {
  readonly title: string;
  readonly value: (result: CellResult) => string;
}

const COLUMNS: readonly Column[] = [
  { title: 'cell', value: (r) => r.cell },
  { title: 'system', value: (r) => r.system },
  { title: 'pairs/s', value: (r) => r.pairsPerSecond.toFixed(0) },
  { title: 'acq p50', value: (r) => ms(r.acquireMs.p50) },
  { title: 'p99', value: (r) => ms(r.acquireMs.p99) },
  { title: 'max', value: (r) => ms(r.acquireMs.max) },
  { title: 'handoff p50', value: (r) => (r.handoffMs === null ? '-' : ms(r.handoffMs.p50)) },
  { title: 'p99', value: (r) => (r.handoffMs === null ? '-' : ms(r.handoffMs.p99)) },
  {
    title: 'fair min/max jain',
    value: (r) =>
      `${r.fairness.grantsMin}/${r.fairness.grantsMax} ${fixed(r.fairness.jainIndex, 2)}`,
  },
  { title: 'cpu/write L F F', value: memberCpu },
  {
    title: 'sum',
    value: (r) => (r.serverCpu === null ? '-' : fixed(r.serverCpu.totalMsPerWrite, 3)),
  },
  { title: 'lg', value: (r) => fixed(r.loadgenCpuMsPerWrite, 3) },
  { title: 'lg busy', value: (r) => `${(r.loadgenBusiest * 100).toFixed(0)}%` },
  { title: 'viol', value: (r) => String(r.violations.count) },
  { title: 'err', value: (r) => String(r.errors.count) },
];

const ROUND_COLUMN: Column = { title: 'round', value: (r) => String(r.round) };

/** One row per cell, system and round; rows of one cell together when there are rounds. */
export function formatResults(results: readonly CellResult[]): string {
  const rounds = Math.max(...results.map((result) => result.round));
  const columns =
    rounds > 1 ? [...COLUMNS.slice(0, 2), ROUND_COLUMN, ...COLUMNS.slice(2)] : COLUMNS;
  const cellOrder = [...new Set(results.map((result) => result.cell))];
  const rows = [...results].sort(
    (a, b) =>
      cellOrder.indexOf(a.cell) - cellOrder.indexOf(b.cell) ||
      a.system.localeCompare(b.system) ||
      a.round - b.round,
  );
  return formatTable(
    columns.map((column) => column.title),
    rows.map((result) => columns.map((column) => column.value(result))),
  );
}

/**
 * dlm's figure over etcd's, per cell that ran on both: above 1 means dlm's is bigger.
 * With several rounds, each side's figure is its median over the rounds.
 */
export interface Ratio {
  readonly cell: string;
  readonly rounds: number;
  readonly pairsPerSecond: number;
  readonly acquireP50: number;
  readonly acquireP99: number;
  /** All server processes' CPU per write. */
  readonly serverCpuPerWrite: number | null;
  readonly leaderCpuPerWrite: number | null;
}

export function ratiosOf(results: readonly CellResult[]): Ratio[] {
  const ratios: Ratio[] = [];
  for (const cell of [...new Set(results.map((result) => result.cell))]) {
    const dlm = results.filter((result) => result.system === 'dlm' && result.cell === cell);
    const etcd = results.filter((result) => result.system === 'etcd' && result.cell === cell);
    if (dlm.length === 0 || etcd.length === 0) continue;
    const ratio = (figure: (result: CellResult) => number | null): number | null =>
      ratioOrNull(medianOrNull(dlm.map(figure)), medianOrNull(etcd.map(figure)));
    ratios.push({
      cell,
      rounds: Math.min(dlm.length, etcd.length),
      pairsPerSecond: ratio((result) => result.pairsPerSecond) ?? Number.NaN,
      acquireP50: ratio((result) => result.acquireMs.p50) ?? Number.NaN,
      acquireP99: ratio((result) => result.acquireMs.p99) ?? Number.NaN,
      serverCpuPerWrite: ratio((result) => result.serverCpu?.totalMsPerWrite ?? null),
      leaderCpuPerWrite: ratio(leaderMsPerWrite),
    });
  }
  return ratios;
}

/** The median of the figures, or null if any is missing (no CPU figures for one side). */
function medianOrNull(figures: readonly (number | null)[]): number | null {
  if (figures.length === 0 || figures.some((figure) => figure === null)) return null;
  const sorted = (figures as number[]).slice().sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? Number.NaN)
    : ((sorted[middle - 1] ?? Number.NaN) + (sorted[middle] ?? Number.NaN)) / 2;
}

export function formatRatios(ratios: readonly Ratio[]): string {
  return formatTable(
    ['cell', 'pairs/s', 'acq p50', 'acq p99', 'server cpu/write', 'leader cpu/write'],
    ratios.map((ratio) => [
      ratio.cell,
      fixed(ratio.pairsPerSecond, 2),
      fixed(ratio.acquireP50, 2),
      fixed(ratio.acquireP99, 2),
      ratio.serverCpuPerWrite === null ? '-' : fixed(ratio.serverCpuPerWrite, 2),
      ratio.leaderCpuPerWrite === null ? '-' : fixed(ratio.leaderCpuPerWrite, 2),
    ]),
  );
}

/** One line per cell as it finishes, for the progress output. */
export function formatCellLine(result: CellResult): string {
  const cpu =
    result.serverCpu === null
      ? ''
      : `, server ${fixed(result.serverCpu.totalMsPerWrite, 3)} ms CPU/write`;
  return (
    `${result.system} ${result.cell}${result.round > 1 ? ` (round ${result.round})` : ''}: ` +
    `${result.pairsPerSecond.toFixed(0)} pairs/s, ` +
    `acquire p50 ${ms(result.acquireMs.p50)} p99 ${ms(result.acquireMs.p99)} ms${cpu}, ` +
    `${result.violations.count} violations, ${result.errors.count} errors`
  );
}

function leaderMsPerWrite(result: CellResult): number | null {
  return result.serverCpu?.members.find((member) => member.leader)?.msPerWrite ?? null;
}

function ratioOrNull(a: number | null, b: number | null): number | null {
  return a === null || b === null ? null : a / b;
}

/** Leader first, then the others in name order, so columns line up across cells. */
function memberCpu(result: CellResult): string {
  if (result.serverCpu === null) return '-';
  const members = [...result.serverCpu.members].sort(
    (a, b) => Number(b.leader) - Number(a.leader) || a.name.localeCompare(b.name),
  );
  return members.map((member) => fixed(member.msPerWrite, 3)).join(' ');
}

function ms(value: number): string {
  return fixed(value, value < 10 ? 2 : 1);
}

function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '-';
}

/** The first two columns are text, aligned left; the rest are numbers, aligned right. */
function formatTable(titles: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = titles.map((title, i) =>
    Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)),
  );
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => (i < 2 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return `${[line(titles), ...rows.map(line)].join('\n')}\n`;
}

/** The cell's slowest acquires, one line each, with the time each was sent; '' if none kept. */
export function formatSlowest(result: CellResult): string {
  return result.slowestAcquires
    .map(
      (slow) =>
        `  slow acquire ${slow.ms.toFixed(1)} ms sent ${slow.sentAt} (${Math.round(slow.sentMs)}) client ${slow.clientIndex}\n`,
    )
    .join('');
}

/**
 * How often each dlm node's event loop (its main thread) waited for a CPU another
 * process held, per write; '' for etcd, whose Go runtime runs its work on other threads.
 */
export function formatPreemptions(result: CellResult): string {
  if (result.system !== 'dlm' || result.serverCpu === null) return '';
  const node = (member: MemberCpu) =>
    `${member.name}${member.leader ? ' (leader)' : ''} ${member.preemptionsPerWrite.toFixed(2)}`;
  return `  event loop preempted per write: ${result.serverCpu.members.map(node).join(', ')}\n`;
}

/** --stall-ms: each node's pauses in the cell, and what its slowest acquires overlapped. */
export function formatPauses(result: CellResult): string {
  const report = result.pauses;
  if (report === null || report === undefined) return '';
  const ms = (value: number) => value.toFixed(1);
  const node = (each: NodePauseTotals) =>
    `${each.name}${each.leader ? ' (leader)' : ''} GC ${each.gc.count} (${ms(each.gc.totalMs)} ms, max ${ms(each.gc.maxMs)}), stalls ${each.stall.count} (${ms(each.stall.totalMs)} ms, max ${ms(each.stall.maxMs)})`;
  const during = PAUSE_CAUSES.map(
    (cause) => `${PAUSE_CAUSE_WORDS[cause]} ${report.slowDuring[cause]}`,
  );
  return (
    `  pauses >= ${report.thresholdMs} ms: ${report.nodes.map(node).join('; ')}\n` +
    `  slowest 1% of acquires (${report.slowAcquires}, >= ${ms(report.slowAcquireMsMin)} ms) ran during: ${during.join(', ')}\n`
  );
}

const PAUSE_CAUSE_WORDS: Record<PauseCause, string> = {
  leaderGc: 'a leader GC',
  leaderStall: 'a leader stall',
  followerGc: 'a follower GC',
  followerStall: 'a follower stall',
  none: 'none of these',
};
