import type { CellResult } from './analyze.ts';

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

export function formatResults(results: readonly CellResult[]): string {
  return formatTable(
    COLUMNS.map((column) => column.title),
    results.map((result) => COLUMNS.map((column) => column.value(result))),
  );
}

/** dlm's figure over etcd's, per cell that ran on both: above 1 means dlm's is bigger. */
export interface Ratio {
  readonly cell: string;
  readonly pairsPerSecond: number;
  readonly acquireP50: number;
  readonly acquireP99: number;
  /** All server processes' CPU per write. */
  readonly serverCpuPerWrite: number | null;
  readonly leaderCpuPerWrite: number | null;
}

export function ratiosOf(results: readonly CellResult[]): Ratio[] {
  const ratios: Ratio[] = [];
  for (const dlm of results.filter((result) => result.system === 'dlm')) {
    const etcd = results.find((result) => result.system === 'etcd' && result.cell === dlm.cell);
    if (etcd === undefined) continue;
    ratios.push({
      cell: dlm.cell,
      pairsPerSecond: dlm.pairsPerSecond / etcd.pairsPerSecond,
      acquireP50: dlm.acquireMs.p50 / etcd.acquireMs.p50,
      acquireP99: dlm.acquireMs.p99 / etcd.acquireMs.p99,
      serverCpuPerWrite:
        dlm.serverCpu === null || etcd.serverCpu === null
          ? null
          : dlm.serverCpu.totalMsPerWrite / etcd.serverCpu.totalMsPerWrite,
      leaderCpuPerWrite: ratioOrNull(leaderMsPerWrite(dlm), leaderMsPerWrite(etcd)),
    });
  }
  return ratios;
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
    `${result.system} ${result.cell}: ${result.pairsPerSecond.toFixed(0)} pairs/s, ` +
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
