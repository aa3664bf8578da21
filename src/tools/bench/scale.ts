import type { Cleanup } from './cleanup.ts';
import type { BenchIo } from './finish.ts';
import type { BenchOptions } from './options.ts';
import { Progress } from './progress.ts';
import type { ScaleContext } from './scale-common.ts';
import { runLocksCell } from './scale-locks.ts';
import type { ScaleCellName } from './scale-options.ts';
import { runRampCell } from './scale-ramp.ts';
import { finishScaleRun, formatScaleResult, type ScaleResult } from './scale-report.ts';
import { runSessionsCell } from './scale-sessions.ts';
import { WorkerPool } from './workers.ts';

/**
 * `npm run bench -- --scale sessions,locks,ramp`: the scale cells (issue 12 point 5),
 * each on a fresh cluster of its own, one after the other, then the summary and JSON.
 */
const CELLS: Record<ScaleCellName, (context: ScaleContext) => Promise<ScaleResult>> = {
  sessions: runSessionsCell,
  locks: runLocksCell,
  ramp: runRampCell,
};

export async function runScale(
  options: BenchOptions,
  dir: string,
  cleanup: Cleanup,
  io: BenchIo,
): Promise<number> {
  const progress = new Progress(io.err);
  const pool = WorkerPool.start(options.workers, (worker, count) => progress.report(worker, count));
  cleanup.add('stop the bench workers', () => pool.stop());
  cleanup.add('stop progress output', () => progress.stop());
  const context: ScaleContext = {
    pool,
    progress,
    cleanup,
    io,
    dir,
    scale: options.scale,
    sessionTtlMs: options.sessionTtlMs,
    seconds: options.seconds,
    warmupPairs: options.warmupPairs,
    waitMs: options.waitMs,
    nodeFlags: options.nodeFlags,
  };
  const results: ScaleResult[] = [];
  for (const name of options.scale.cells) {
    const result = await CELLS[name](context);
    io.err(formatScaleResult(result));
    results.push(result);
  }
  return finishScaleRun(options, results, io);
}
