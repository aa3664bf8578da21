import { DEFAULT_RUNTIME_CONFIG } from '../../config/types.ts';
import type { BenchErrors } from './bench-errors.ts';
import { metricSum, type Samples, scrapeMetrics } from './node-probe.ts';
import type { ScaleCluster } from './scale-cluster.ts';
import {
  limitsFor,
  type NodeReading,
  type RaisedLimit,
  readNodes,
  type ScaleContext,
  sleepMs,
  startScaleCluster,
  statsDelta,
  timeToLinearizableRead,
  timeUntil,
  workerStats,
} from './scale-common.ts';
import { inspectSnapshot, type SnapshotFigures } from './scale-snapshot.ts';
import { endpointsVia } from './server-cluster.ts';

/**
 * The locks cell: a few hundred sessions each take many locks (wait_ms 0, many in
 * flight) until N are held; then memory per node, the newest snapshot (read from a
 * killed follower's LevelDB), the follower's restart and the whole cluster's, with
 * every lock still held throughout (the sessions' TTL outlives the restarts).
 */
const OPEN_TIMEOUT_MS = 300_000;
const FILL_TIMEOUT_MS = 1_800_000;
const CLOSE_TIMEOUT_MS = 300_000;
/** Past this a restart step is reported as not reached (null), not waited for. */
const RESTART_STEP_TIMEOUT_MS = 180_000;
const FILL_SAMPLE_EVERY_MS = 1_000;

export interface FillRate {
  /** Acquires/s over the first and the last fifth of the fill (O(n) costs show as a drop). */
  readonly firstFifthPerSecond: number;
  readonly lastFifthPerSecond: number;
}

export interface NodeMemory {
  readonly name: string;
  readonly rssMb: number;
  readonly peakRssMb: number;
  readonly locksGauge: number;
  /** From the node's dlm_process_memory_bytes (NaN if it does not serve it). */
  readonly heapUsedMb: number;
  readonly heapTotalMb: number;
  readonly externalMb: number;
}

export interface RestartFigures {
  /** Spawn → the node answers Status. */
  readonly answersMs: number | null;
  /** Spawn → applied up to the commit index known before the kill. */
  readonly caughtUpMs: number | null;
  /** Spawn → a linearizable Describe answered (through that node, or any for the cluster). */
  readonly linearizableReadMs: number | null;
  /** Spawn → a leader known (whole cluster only). */
  readonly leaderMs: number | null;
  readonly rssMbAfter: readonly NodeMemory[];
}

export interface LocksResult {
  readonly cell: 'locks';
  readonly locksAsked: number;
  readonly sessions: number;
  readonly locksPerSession: number;
  readonly raisedLimits: readonly RaisedLimit[];
  readonly acquired: number;
  readonly fillErrors: BenchErrors;
  readonly fillSeconds: number;
  readonly fillPerSecond: number;
  readonly fillRate: FillRate;
  readonly fillLeaderCpuMsPerAcquire: number;
  readonly leader: string;
  readonly afterFill: readonly NodeMemory[];
  readonly snapshot: SnapshotFigures;
  readonly follower: string;
  readonly followerRestart: RestartFigures;
  readonly clusterRestart: RestartFigures;
  /** Every node's dlm_locks_in_use equals the locks taken after the restarts. */
  readonly locksKept: boolean;
  readonly sessionsAliveAtEnd: number;
  readonly sessionsLost: BenchErrors;
  readonly spuriousExpiries: number;
  readonly lgRssMbMax: number;
}

/** The runtime snapshot settings the bench was asked to set (--snapshot-entries, --snapshot-entries-max). */
function snapshotSettings(
  scale: ScaleContext['scale'],
): { field: 'snapshotEntriesThreshold' | 'snapshotEntriesMax'; to: number }[] {
  const asked = [
    ['snapshotEntriesThreshold', scale.snapshotEntries],
    ['snapshotEntriesMax', scale.snapshotEntriesMax],
  ] as const;
  return asked.flatMap(([field, to]) => (to === null ? [] : [{ field, to }]));
}

export async function runLocksCell(context: ScaleContext): Promise<LocksResult> {
  const { pool, scale, io, progress } = context;
  const sessions = Math.min(scale.lockSessions, scale.locks);
  const locksPerSession = Math.ceil(scale.locks / sessions);
  const target = sessions * locksPerSession;
  const limits = limitsFor({ locksMax: target, sessionsMax: sessions });
  const snapshotRaises = snapshotSettings(scale);
  const runtime = Object.fromEntries(snapshotRaises.map(({ field, to }) => [field, to]));
  const extra = snapshotRaises.length === 0 ? limits.extra : { ...limits.extra, runtime };
  const raised: RaisedLimit[] = [
    ...limits.raised,
    ...snapshotRaises.map(({ field, to }) => ({
      field: `runtime.${field}`,
      from: DEFAULT_RUNTIME_CONFIG[field],
      to,
    })),
  ];
  const { cluster, leader } = await startScaleCluster(context, 'locks', extra, raised);
  const endpoints = endpointsVia(cluster.members, leader, 'leader');
  const perWorker = Array.from(
    { length: pool.size },
    (_, worker) => Math.floor(sessions / pool.size) + (worker < sessions % pool.size ? 1 : 0),
  );
  await pool.ask(
    (worker) => ({
      kind: 'scaleOpen',
      endpoints,
      count: perWorker[worker] ?? 0,
      ttlMs: scale.lockSessionTtlMs,
      concurrency: scale.concurrency,
      namePrefix: `locks-w${worker}-`,
    }),
    'scaleOpened',
    OPEN_TIMEOUT_MS,
  );
  const statsStart = await workerStats(pool, true);
  io.err(`locks: ${sessions} sessions open; taking ${locksPerSession} locks each (${target})\n`);

  const before = readNodes(cluster);
  const fillStartMs = performance.now();
  const samples: { ms: number; acquired: number }[] = [{ ms: 0, acquired: 0 }];
  progress.start('locks fill', FILL_TIMEOUT_MS / 1000, target, 'locks');
  const sampler = setInterval(() => {
    samples.push({ ms: performance.now() - fillStartMs, acquired: progress.total() });
  }, FILL_SAMPLE_EVERY_MS);
  let filled: Awaited<ReturnType<typeof pool.ask<'scaleFilled'>>>;
  try {
    filled = await pool.ask(
      () => ({
        kind: 'scaleFill',
        lockPrefix: 'scale',
        locksPerSession,
        concurrency: scale.concurrency,
      }),
      'scaleFilled',
      FILL_TIMEOUT_MS,
    );
  } finally {
    clearInterval(sampler);
    progress.stop();
  }
  const fillSeconds = (performance.now() - fillStartMs) / 1000;
  const acquired = filled.reduce((sum, answer) => sum + answer.acquired, 0);
  samples.push({ ms: fillSeconds * 1000, acquired });
  const after = readNodes(cluster);
  const leaderCpuMs = cpuOf(after, leader) - cpuOf(before, leader);
  io.err(`locks: ${acquired} held after ${fillSeconds.toFixed(1)} s\n`);

  const locksEverywhere = () => allNodesHold(cluster, acquired);
  await timeUntil(locksEverywhere, RESTART_STEP_TIMEOUT_MS);
  const afterFill = await memoryOf(cluster);

  const follower = cluster.nodes.find((node) => node.id !== leader)?.id ?? 'n1';
  // Any name will do: a Describe of a free lock is a linearizable read all the same.
  const someLock = 'scale/probe';
  const followerRestart = await restartFollower(context, cluster, leader, follower, someLock);
  const snapshot = followerRestart.snapshot;
  const clusterRestart = await restartCluster(context, cluster, someLock);
  const locksKept = await timeUntil(locksEverywhere, RESTART_STEP_TIMEOUT_MS).then(
    (ms) => ms !== null,
  );
  const statsEnd = statsDelta(statsStart, await workerStats(pool, false));
  const expiries = await Promise.all(
    cluster.nodes.map((node) =>
      scrapeMetrics(node.metricsAddress).then((samples) =>
        metricSum(samples, 'dlm_session_expiries_total'),
      ),
    ),
  );
  await pool.ask(
    () => ({ kind: 'scaleClose', concurrency: scale.concurrency }),
    'scaleClosed',
    CLOSE_TIMEOUT_MS,
  );
  await cluster.stop();
  return {
    cell: 'locks',
    locksAsked: scale.locks,
    sessions,
    locksPerSession,
    raisedLimits: raised,
    acquired,
    fillErrors: {
      count: filled.reduce((sum, answer) => sum + answer.errors.count, 0),
      messages: Object.assign({}, ...filled.map((answer) => answer.errors.messages)),
    },
    fillSeconds,
    fillPerSecond: acquired / fillSeconds,
    fillRate: fillRateOf(samples, acquired),
    fillLeaderCpuMsPerAcquire: acquired > 0 ? leaderCpuMs / acquired : Number.NaN,
    leader,
    afterFill,
    snapshot,
    follower,
    followerRestart: followerRestart.figures,
    clusterRestart,
    locksKept,
    sessionsAliveAtEnd: statsEnd.sessionsAlive,
    sessionsLost: statsEnd.sessionsLost,
    // Every session was kept alive throughout (restarts included): any expiry is spurious.
    spuriousExpiries: Math.max(statsEnd.sessionsAnsweredExpiredTotal, ...expiries),
    lgRssMbMax: statsEnd.lgRssMbMax,
  };
}

async function restartFollower(
  context: ScaleContext,
  cluster: ScaleCluster,
  leader: string,
  follower: string,
  lock: string,
): Promise<{ figures: RestartFigures; snapshot: SnapshotFigures }> {
  const commitIndex = Number((await cluster.status(leader))?.commit_index ?? 0);
  context.io.err(`locks: kill -9 follower ${follower} (leader commit ${commitIndex})\n`);
  await cluster.killNode(follower);
  const snapshot = await inspectSnapshot(cluster.dataDirOf(follower));
  context.io.err(
    `locks: ${follower}'s snapshot at ${snapshot.index}: ${(snapshot.bytes / 2 ** 20).toFixed(1)} MB, ` +
      `${snapshot.locks} locks; restarting it\n`,
  );
  const startMs = performance.now();
  cluster.startNode(follower);
  const since = (ms: number | null) => (ms === null ? null : performance.now() - startMs);
  const answers = since(
    await timeUntil(async () => (await cluster.status(follower)) !== null, RESTART_STEP_TIMEOUT_MS),
  );
  const caughtUp = since(
    await timeUntil(
      async () => Number((await cluster.status(follower))?.applied_index ?? 0) >= commitIndex,
      RESTART_STEP_TIMEOUT_MS,
    ),
  );
  const read = since(
    await timeToLinearizableRead(
      cluster.node(follower).clientAddress,
      lock,
      RESTART_STEP_TIMEOUT_MS,
    ),
  );
  return {
    snapshot,
    figures: {
      answersMs: answers,
      caughtUpMs: caughtUp,
      linearizableReadMs: read,
      leaderMs: null,
      rssMbAfter: await memoryOf(cluster),
    },
  };
}

async function restartCluster(
  context: ScaleContext,
  cluster: ScaleCluster,
  lock: string,
): Promise<RestartFigures> {
  const statuses = await Promise.all(cluster.nodes.map((node) => cluster.status(node.id)));
  const commitIndex = Math.max(...statuses.map((status) => Number(status?.commit_index ?? 0)));
  context.io.err(`locks: kill -9 all three nodes (commit ${commitIndex}); restarting them\n`);
  await Promise.all(cluster.nodes.map((node) => cluster.killNode(node.id)));
  const startMs = performance.now();
  for (const node of cluster.nodes) cluster.startNode(node.id);
  const since = (ms: number | null) => (ms === null ? null : performance.now() - startMs);
  const answers = since(
    await timeUntil(
      async () => (await cluster.status(cluster.nodes[0]?.id ?? 'n1')) !== null,
      RESTART_STEP_TIMEOUT_MS,
    ),
  );
  const leaderMs = since(
    await timeUntil(async () => (await cluster.leader()) !== null, RESTART_STEP_TIMEOUT_MS),
  );
  const leader = (await cluster.leader()) ?? cluster.nodes[0]?.id ?? 'n1';
  const read = since(
    await timeToLinearizableRead(cluster.node(leader).clientAddress, lock, RESTART_STEP_TIMEOUT_MS),
  );
  const caughtUp = since(
    await timeUntil(async () => {
      const all = await Promise.all(cluster.nodes.map((node) => cluster.status(node.id)));
      return all.every((status) => Number(status?.applied_index ?? 0) >= commitIndex);
    }, RESTART_STEP_TIMEOUT_MS),
  );
  // Let the sessions' keepalives reach the new leader before anything reads them.
  await sleepMs(1_000);
  return {
    answersMs: answers,
    caughtUpMs: caughtUp,
    linearizableReadMs: read,
    leaderMs,
    rssMbAfter: await memoryOf(cluster),
  };
}

async function allNodesHold(cluster: ScaleCluster, locks: number): Promise<boolean> {
  const gauges = await Promise.all(
    cluster.nodes.map((node) =>
      scrapeMetrics(node.metricsAddress).then((samples) => metricSum(samples, 'dlm_locks_in_use')),
    ),
  );
  return gauges.every((gauge) => gauge === locks);
}

async function memoryOf(cluster: ScaleCluster): Promise<NodeMemory[]> {
  const readings = readNodes(cluster);
  return Promise.all(
    readings.map(async (reading) => {
      const samples = await scrapeMetrics(cluster.node(reading.name).metricsAddress).catch(
        () => new Map<string, number>(),
      );
      return {
        name: reading.name,
        rssMb: reading.rssMb,
        peakRssMb: reading.peakRssMb,
        locksGauge: metricSum(samples, 'dlm_locks_in_use'),
        heapUsedMb: memoryMb(samples, 'heap_used'),
        heapTotalMb: memoryMb(samples, 'heap_total'),
        externalMb: memoryMb(samples, 'external'),
      };
    }),
  );
}

function memoryMb(samples: Samples, kind: string): number {
  return metricSum(samples, 'dlm_process_memory_bytes', `kind="${kind}"`) / 2 ** 20;
}

function cpuOf(readings: readonly NodeReading[], name: string): number {
  return readings.find((reading) => reading.name === name)?.cpuMs ?? Number.NaN;
}

/** Acquires/s over the first and last fifth of the locks taken, from timed samples. */
export function fillRateOf(
  samples: readonly { ms: number; acquired: number }[],
  total: number,
): FillRate {
  const timeAt = (count: number): number => {
    const sample = samples.find((each) => each.acquired >= count);
    return sample?.ms ?? Number.NaN;
  };
  const fifth = total / 5;
  const rate = (from: number, to: number) => {
    const ms = timeAt(to) - timeAt(from);
    return ms > 0 ? ((to - from) / ms) * 1000 : Number.NaN;
  };
  return {
    firstFifthPerSecond: rate(0, fifth),
    lastFifthPerSecond: rate(total - fifth, total),
  };
}
