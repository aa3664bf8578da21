import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CellResult } from './analyze.ts';
import { assignLocks, type CellSpec, cellName } from './cells.ts';
import { Cleanup } from './cleanup.ts';
import { existingDlmCluster, startDlmCluster } from './dlm-cluster.ts';
import { etcdVersion, findEtcd, startEtcdCluster } from './etcd-cluster.ts';
import type { BenchIo } from './finish.ts';
import { finishRun } from './finish.ts';
import { type MeasureContext, measureCell, type Workload } from './measure.ts';
import { BENCH_HELP, type BenchOptions, parseBenchArgs } from './options.ts';
import { canReadProcessCpu } from './proc-cpu.ts';
import { Progress } from './progress.ts';
import { formatCellLine, formatPauses, formatPreemptions, formatSlowest } from './report.ts';
import { runScale } from './scale.ts';
import { type ServerCluster, waitForStableLeader } from './server-cluster.ts';
import { WorkerPool } from './workers.ts';

/**
 * `npm run bench`: the coordinator. It starts the clusters and the worker processes,
 * warms each system up, runs every cell (alternating dlm and etcd when comparing, so
 * noise on this machine hits both), prints the tables and writes the JSON.
 */
export type { BenchIo } from './finish.ts';

/** The warm-up never runs longer than this, whatever --warmup asks. */
const WARMUP_SECONDS_MAX = 180;
/** Warm-up mixes both paths: a hot lock's queue and independent locks. */
const WARMUP_CLIENTS_HOT = 8;
const WARMUP_CLIENTS_DISTINCT = 8;

export async function runBench(argv: readonly string[], io: BenchIo): Promise<number> {
  let options: BenchOptions;
  let etcdBin: string | null = null;
  try {
    options = parseBenchArgs(argv);
    if (options.help) {
      io.out(BENCH_HELP);
      return 0;
    }
    if (options.compare === 'etcd') etcdBin = findEtcd(options.etcdBin);
    refuseQuietStallLogs(options, process.env.DLM_LOG_LEVEL);
  } catch (error) {
    io.err(`bench: ${messageOf(error)}\n`);
    return 2;
  }
  const cleanup = new Cleanup();
  const dir = mkdtempSync(join(tmpdir(), 'dlm-bench-'));
  let keepDir = options.keepData;
  cleanup.add(`remove ${dir}`, () => {
    if (keepDir) io.err(`bench: cluster data and logs kept in ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  });
  let wasInterrupted = false;
  const interrupted = onInterrupt(async () => {
    wasInterrupted = true;
    io.err('\nbench: interrupted; stopping everything it started\n');
    await reportCleanup(cleanup, io);
  });
  try {
    return await runWith(options, etcdBin, dir, cleanup, io);
  } catch (error) {
    // Stopping the clusters and workers on an interrupt makes the run fail: not news.
    if (wasInterrupted) return 130;
    keepDir = true;
    io.err(`bench: ${messageOf(error)}\n`);
    return 1;
  } finally {
    interrupted.dispose();
    await reportCleanup(cleanup, io);
  }
}

async function runWith(
  options: BenchOptions,
  etcdBin: string | null,
  dir: string,
  cleanup: Cleanup,
  io: BenchIo,
): Promise<number> {
  if (!canReadProcessCpu()) io.err('bench: /proc/PID/stat is not readable: no CPU figures\n');
  if (options.scale.cells.length > 0) return runScale(options, dir, cleanup, io);
  const clusters = await startClusters(options, etcdBin, dir, cleanup, io);
  const progress = new Progress(io.err);
  const pool = WorkerPool.start(options.workers, (worker, pairs) => progress.report(worker, pairs));
  cleanup.add('stop the bench workers', () => pool.stop());
  cleanup.add('stop progress output', () => progress.stop());
  const context: MeasureContext = {
    pool,
    sessionTtlMs: options.sessionTtlMs,
    waitMs: options.waitMs,
    via: options.via,
    dlmClient: options.dlmClient,
    slowest: options.slowest,
    stallMs: options.stallMs,
    onRunStart: (label, seconds, pairsMax) => progress.start(label, seconds, pairsMax),
    onRunEnd: () => progress.stop(),
  };
  const runTag = Date.now().toString(36);
  const warmups: CellResult[] = [];
  if (options.warmupPairs > 0) {
    for (const cluster of clusters) {
      const result = await measureCell(context, cluster, warmupWorkload(options, runTag));
      io.err(`warm-up: ${formatCellLine(result)}\n`);
      warmups.push(result);
    }
  }
  const results: CellResult[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    for (const [i, cell] of options.cells.entries()) {
      for (const cluster of clusters) {
        const workload = cellWorkload(cell, options, round, `${runTag}-${round}-${i}`);
        const result = await measureCell(context, cluster, workload);
        io.err(`${formatCellLine(result)}\n`);
        io.err(formatSlowest(result));
        io.err(formatPreemptions(result));
        io.err(formatPauses(result));
        results.push(result);
      }
    }
  }
  return finishRun(options, { clusters, warmups, results, etcdBin }, io);
}

async function startClusters(
  options: BenchOptions,
  etcdBin: string | null,
  dir: string,
  cleanup: Cleanup,
  io: BenchIo,
): Promise<ServerCluster[]> {
  const clusters: ServerCluster[] = [];
  // In parallel: each may wait out its stop grace.
  cleanup.add('stop the clusters', async () => {
    await Promise.all(clusters.map((cluster) => cluster.stop()));
  });
  if (options.endpoints !== null) {
    clusters.push(existingDlmCluster(options.endpoints, options.serverPids));
  } else {
    const dlmDir = join(dir, 'dlm');
    mkdirSync(dlmDir);
    io.err(
      `starting a 3-node dlm cluster (peer transport ${options.peerTransport}) in ${dlmDir}\n`,
    );
    const runtime = {
      ...options.runtime,
      ...(options.stallMs === null ? {} : { stallReportMsMin: options.stallMs }),
    };
    if (Object.keys(options.runtime).length > 0) {
      io.err(`  its runtime settings: ${JSON.stringify(options.runtime)}\n`);
    }
    clusters.push(
      await startDlmCluster(
        dlmDir,
        { peerTransport: options.peerTransport, runtime },
        { cpuProfDir: options.cpuProfDir, nodeFlags: options.nodeFlags },
      ),
    );
  }
  if (etcdBin !== null) {
    const etcdDir = join(dir, 'etcd');
    mkdirSync(etcdDir);
    io.err(`starting a 3-member etcd cluster (${etcdVersion(etcdBin)}) in ${etcdDir}\n`);
    const etcd = await startEtcdCluster(etcdBin, etcdDir);
    clusters.push(etcd);
  }
  for (const cluster of clusters) {
    const leader = await waitForStableLeader(cluster);
    io.err(`${cluster.system}: leader ${leader}\n`);
  }
  return clusters;
}

function warmupWorkload(options: BenchOptions, runTag: string): Workload {
  const hot = assignLocks({ clients: WARMUP_CLIENTS_HOT, contention: 'hot' }, `${runTag}-warmup`);
  const distinct = assignLocks(
    { clients: WARMUP_CLIENTS_HOT + WARMUP_CLIENTS_DISTINCT, contention: 'distinct' },
    `${runTag}-warmup`,
  ).slice(WARMUP_CLIENTS_HOT);
  const assignments = [...hot, ...distinct];
  return {
    name: 'warmup',
    cell: { clients: assignments.length, contention: 'hot' },
    round: 0,
    assignments,
    seconds: WARMUP_SECONDS_MAX,
    pairsMax: options.warmupPairs,
  };
}

function cellWorkload(
  cell: CellSpec,
  options: BenchOptions,
  round: number,
  runTag: string,
): Workload {
  return {
    name: cellName(cell),
    cell,
    round,
    assignments: assignLocks(cell, runTag),
    seconds: options.seconds,
    pairsMax: Number.POSITIVE_INFINITY,
  };
}

/** The nodes log their pauses at warn level, and inherit the bench's DLM_LOG_LEVEL. */
function refuseQuietStallLogs(options: BenchOptions, level: string | undefined): void {
  if (options.stallMs !== null && level !== undefined && QUIET_LEVELS.has(level)) {
    throw new Error(`--stall-ms reads the nodes' warn lines, which DLM_LOG_LEVEL=${level} drops`);
  }
}

const QUIET_LEVELS = new Set(['error', 'fatal', 'silent']);

function onInterrupt(handler: () => Promise<void>): { dispose(): void } {
  const listener = (signal: NodeJS.Signals): void => {
    void handler().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', listener);
  process.once('SIGTERM', listener);
  return {
    dispose: () => {
      process.off('SIGINT', listener);
      process.off('SIGTERM', listener);
    },
  };
}

async function reportCleanup(cleanup: Cleanup, io: BenchIo): Promise<void> {
  for (const problem of await cleanup.run()) io.err(`bench: cleanup: ${problem}\n`);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
