import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { writeHistory } from './history.ts';
import { renderReport } from './report.ts';
import type { JepsenOptions, JepsenResult } from './run.ts';
import { summarize } from './summary.ts';

/**
 * A run's results directory, `<base>/<run-id>/`:
 *   history.jsonl   ops, then nemesis events (JSON lines, as writeHistory writes them)
 *   logs/*.log      every node's log and the register process's, from the cluster's dir
 *   summary.json    options, counts, every checker's verdict, wall time
 *   index.html      the report: opens from the file system, no server, no network
 */

/** e.g. 20261203T110000Z-seed7: sorts by start time, and names the seed to rerun. */
export function runIdOf(startedAt: Date, seed: number): string {
  const stamp = startedAt
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/[-:]/g, '');
  return `${stamp}-seed${seed}`;
}

/**
 * Makes the run's directory and copies the logs into it. Called once the nodes have
 * stopped, before the checks: a run that passes removes the cluster's directory.
 * Returns the directory's path; two runs in one second with one seed get `-2`, `-3`…
 */
export function openResults(base: string, runId: string, clusterDir: string): string {
  mkdirSync(base, { recursive: true });
  let dir = join(base, runId);
  for (let n = 2; !makeDir(dir); n++) dir = join(base, `${runId}-${n}`);
  const logsDir = join(dir, 'logs');
  mkdirSync(logsDir);
  for (const name of readdirSync(clusterDir)) {
    if (name.endsWith('.log')) copyFileSync(join(clusterDir, name), join(logsDir, name));
  }
  return dir;
}

/** Whether it made the directory (false: it exists already). */
function makeDir(path: string): boolean {
  try {
    mkdirSync(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/** Writes the history, the summary and the report into a directory openResults made. */
export function writeResults(
  dir: string,
  run: { startedAt: Date; wallMs: number; options: JepsenOptions & { readonly nodes: number } },
  result: JepsenResult,
): void {
  const summary = summarize({ ...run, runId: basename(dir), result });
  writeHistory(join(dir, 'history.jsonl'), result.ops, result.nemesisEvents);
  writeFileSync(join(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  const logs = readdirSync(join(dir, 'logs')).sort();
  const html = renderReport(
    summary,
    { ops: result.ops, nemesisEvents: result.nemesisEvents },
    logs,
  );
  writeFileSync(join(dir, 'index.html'), html);
}
