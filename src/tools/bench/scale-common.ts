import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DlmClient } from '../../client/index.ts';
import {
  DEFAULT_LOCK_LIMITS,
  type LockLimits,
  type RequiredLockLimitName,
} from '../../lock/limits.ts';
import { type BenchErrors, mergeErrors } from './bench-errors.ts';
import type { Cleanup } from './cleanup.ts';
import type { DlmConfigExtra } from './dlm-cluster.ts';
import type { BenchIo } from './finish.ts';
import { processMemoryMb } from './node-probe.ts';
import { processCpuMs } from './proc-cpu.ts';
import type { Progress } from './progress.ts';
import { RESTART_CHANNEL_OPTIONS, ScaleCluster } from './scale-cluster.ts';
import type { ScaleOptions } from './scale-options.ts';
import type { ScaleStats } from './scale-worker.ts';
import { waitForStableLeader } from './server-cluster.ts';
import type { WorkerPool } from './workers.ts';

/** What every scale cell gets from the coordinator. */
export interface ScaleContext {
  readonly pool: WorkerPool;
  readonly progress: Progress;
  readonly cleanup: Cleanup;
  readonly io: BenchIo;
  /** The run's temp dir; each cell's cluster gets a folder in it. */
  readonly dir: string;
  readonly scale: ScaleOptions;
  readonly sessionTtlMs: number;
  readonly seconds: number;
  readonly warmupPairs: number;
  readonly waitMs: number;
  /** Node/V8 flags for every node a cell starts (--node-flags). */
  readonly nodeFlags: readonly string[];
}

/** A setting the bench changed in the cluster config it generated (a limit raised to fit the size asked). */
export interface RaisedLimit {
  readonly field: string;
  readonly from: number;
  readonly to: number;
}

/** Lock limits at least `wanted`, over the defaults; says which it raised. */
export function limitsFor(wanted: Partial<LockLimits>): {
  extra: DlmConfigExtra;
  raised: RaisedLimit[];
} {
  const raised: RaisedLimit[] = [];
  const lock: Record<string, number> = {};
  for (const [field, value] of Object.entries(wanted) as [RequiredLockLimitName, number][]) {
    const from = DEFAULT_LOCK_LIMITS[field];
    if (value > from) {
      lock[field] = value;
      raised.push({ field: `lock.${field}`, from, to: value });
    }
  }
  return { extra: Object.keys(lock).length > 0 ? { lock } : {}, raised };
}

/** Starts a cell's fresh cluster in `<dir>/<name>`, stopped by the run's cleanup. */
export async function startScaleCluster(
  context: ScaleContext,
  name: string,
  extra: DlmConfigExtra,
  raised: readonly RaisedLimit[],
): Promise<{ cluster: ScaleCluster; leader: string }> {
  const dir = join(context.dir, name);
  mkdirSync(dir);
  for (const limit of raised) {
    context.io.err(`${name}: config sets ${limit.field} from ${limit.from} to ${limit.to}\n`);
  }
  context.io.err(`${name}: starting a fresh 3-node dlm cluster in ${dir}\n`);
  const cluster = await ScaleCluster.start(dir, extra, { nodeFlags: context.nodeFlags });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await cluster.stop();
  };
  context.cleanup.add(`stop the ${name} cluster`, stop);
  const leader = await waitForStableLeader(cluster);
  context.io.err(`${name}: leader ${leader}\n`);
  return { cluster, leader };
}

/** One node's CPU so far and memory now, read from /proc. */
export interface NodeReading {
  readonly name: string;
  readonly cpuMs: number;
  readonly rssMb: number;
  readonly peakRssMb: number;
}

export function readNodes(cluster: ScaleCluster): NodeReading[] {
  return cluster.nodes.map((node) => {
    const pid = cluster.pidOf(node.id);
    return { name: node.id, cpuMs: processCpuMs(pid), ...processMemoryMb(pid) };
  });
}

/** Every worker's counters (see ScaleStats). */
export async function workerStats(pool: WorkerPool, resetLatency: boolean): Promise<ScaleStats[]> {
  const answers = await pool.ask(
    () => ({ kind: 'scaleStats', resetLatency }),
    'scaleStats',
    STATS_TIMEOUT_MS,
  );
  return answers.map((answer) => answer.stats);
}

const STATS_TIMEOUT_MS = 30_000;

/** Workers' counters summed; the busiest worker's event-loop share between two readings. */
export interface StatsDelta {
  readonly sessionsOpen: number;
  readonly sessionsAlive: number;
  readonly keepAliveCallsAnswered: number;
  readonly sessionsRefreshed: number;
  readonly keepAliveErrors: number;
  readonly sessionsAnsweredExpired: number;
  /** Since the sessions opened, not only between the readings. */
  readonly sessionsAnsweredExpiredTotal: number;
  readonly keepAliveErrorMessages: BenchErrors;
  readonly sessionsLost: BenchErrors;
  readonly keepAliveMsSample: number[];
  readonly lgCpuMs: number;
  readonly lgBusiest: number;
  readonly lgRssMbMax: number;
}

export function statsDelta(
  before: readonly ScaleStats[],
  after: readonly ScaleStats[],
): StatsDelta {
  const sum = (figure: (stats: ScaleStats) => number, of: readonly ScaleStats[]) =>
    of.reduce((total, stats) => total + figure(stats), 0);
  const delta = (figure: (stats: ScaleStats) => number) => sum(figure, after) - sum(figure, before);
  const busy = after.map((stats, i) => {
    const active = stats.loopActiveMs - (before[i]?.loopActiveMs ?? 0);
    const idle = stats.loopIdleMs - (before[i]?.loopIdleMs ?? 0);
    return active + idle > 0 ? active / (active + idle) : 0;
  });
  return {
    sessionsOpen: sum((stats) => stats.sessionsOpen, after),
    sessionsAlive: sum((stats) => stats.sessionsAlive, after),
    keepAliveCallsAnswered: delta((stats) => stats.keepAliveCallsAnswered),
    sessionsRefreshed: delta((stats) => stats.sessionsRefreshed),
    keepAliveErrors: delta((stats) => stats.keepAliveErrors),
    sessionsAnsweredExpired: delta((stats) => stats.sessionsAnsweredExpired),
    sessionsAnsweredExpiredTotal: sum((stats) => stats.sessionsAnsweredExpired, after),
    keepAliveErrorMessages: mergeErrors(after.map((stats) => stats.keepAliveErrorMessages)),
    sessionsLost: mergeErrors(after.map((stats) => stats.sessionsLost)),
    keepAliveMsSample: after.flatMap((stats) => stats.keepAliveMsSample),
    lgCpuMs: delta((stats) => stats.cpuMs),
    lgBusiest: Math.max(0, ...busy),
    lgRssMbMax: Math.max(0, ...after.map((stats) => stats.rssMb)),
  };
}

/**
 * Asks `address` alone for a linearizable Describe of `lock` until one is answered or
 * `timeoutMs` has passed; resolves with the ms it took, or null if none was answered.
 */
export async function timeToLinearizableRead(
  address: string,
  lock: string,
  timeoutMs: number,
): Promise<number | null> {
  const startMs = performance.now();
  const client = new DlmClient({
    endpoints: [address],
    transport: 'unary',
    channelOptions: RESTART_CHANNEL_OPTIONS,
  });
  try {
    while (performance.now() - startMs < timeoutMs) {
      try {
        await client.describe(lock, { timeoutMs: 2_000 });
        return performance.now() - startMs;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    return null;
  } finally {
    client.close();
  }
}

/** Polls until `check` is true or `timeoutMs` passed; resolves with the ms it took, or null. */
export async function timeUntil(
  check: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 50,
): Promise<number | null> {
  const startMs = performance.now();
  while (performance.now() - startMs < timeoutMs) {
    if (await check().catch(() => false)) return performance.now() - startMs;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  return null;
}

export function sleepMs(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
