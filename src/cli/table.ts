/**
 * What the read commands print: an aligned table for people, or one JSON document (a
 * JSON line per event for `dlm watch`) with the stable field names of docs/cli.md for
 * scripts.
 */

/** Aligned columns; the last cell of a row is never padded, nor does it widen its column. */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.slice(0, -1).forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows
    .map((row) => `${row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ')}`.trimEnd())
    .map((line) => `${line}\n`)
    .join('');
}

/** A table under a header row of upper-case column names (kubectl style). */
export function formatHeaderTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  return formatTable([header, ...rows]);
}

/** One JSON document, pretty-printed, ending in a newline. */
export function formatJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** A duration for people: 850ms, 12.3s, 4m05s, 2h10m. */
export function formatDurationMs(ms: number): string {
  if (ms < 1_000) return `${ms}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)}s`;
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 60)
    return `${minutes}m${String(Math.floor((ms % 60_000) / 1_000)).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}
