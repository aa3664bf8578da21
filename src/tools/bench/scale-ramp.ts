import type { CellResult } from './analyze.ts';
import { assignLocks } from './cells.ts';
import { type MeasureContext, measureCell, type Workload } from './measure.ts';
import {
  type FsyncDelta,
  fsyncDelta,
  hostBusyShare,
  hostCpu,
  scrapeMetrics,
} from './node-probe.ts';
import type { ScaleCluster } from './scale-cluster.ts';
import { type ScaleContext, startScaleCluster } from './scale-common.ts';
import type { LatencySummaryMs } from './stats.ts';

/**
 * The ramp: distinct-lock clients 1, 2, 4, ... (each its own session and lock, the
 * pair cells' loop) until the acquire p99 passes the limit, to find the highest pairs/s
 * under it and say what ran out first.
 */
const WARMUP_CLIENTS = 16;
const WARMUP_SECONDS_MAX = 180;
/** A share of a core or of the machine at or above this counts as saturated. */
const SATURATED = 0.85;
/** fsync at or above this share of the acquire p50 makes the disk the bottleneck. */
const DISK_SHARE = 0.5;

export interface RampStep {
  readonly clients: number;
  readonly pairsPerSecond: number;
  readonly acquireMs: LatencySummaryMs;
  readonly serverCpuMsPerWrite: number;
  readonly leaderCpuMsPerWrite: number;
  /** The leader's CPU over the step, % of one core. */
  readonly leaderCpuPercent: number;
  readonly followerCpuPercents: readonly number[];
  /** The whole machine's busy share over the step, % (other load included). */
  readonly hostBusyPercent: number;
  readonly lgBusyPercent: number;
  readonly lgCpuMsPerWrite: number;
  /** The leader's synced writes over the step (dlm_storage_fsync_seconds). */
  readonly leaderFsync: FsyncDelta;
  readonly errors: number;
  readonly violations: number;
  readonly underLimit: boolean;
}

export interface RampResult {
  readonly cell: 'ramp';
  readonly p99LimitMs: number;
  readonly stepSeconds: number;
  readonly warmupPairs: number;
  readonly steps: readonly RampStep[];
  /** The step with the most pairs/s whose p99 stayed under the limit; null if none did. */
  readonly breakingPoint: RampStep | null;
  /** The first step over the limit; null if every step stayed under it. */
  readonly brokeAt: RampStep | null;
  /** What ran out at brokeAt (or at the last step when nothing broke). */
  readonly limitedBy: string;
  readonly violations: number;
}

export async function runRampCell(context: ScaleContext): Promise<RampResult> {
  const { scale, io } = context;
  const { cluster, leader } = await startScaleCluster(context, 'ramp', {}, []);
  const measure: MeasureContext = {
    pool: context.pool,
    sessionTtlMs: context.sessionTtlMs,
    waitMs: context.waitMs,
    via: 'leader',
    dlmClient: 'library',
    // A ramp step reports percentiles; it keeps no slowest-acquire list.
    slowest: 0,
    stallMs: null,
    onRunStart: (label, seconds, pairsMax) => context.progress.start(label, seconds, pairsMax),
    onRunEnd: () => context.progress.stop(),
  };
  const runTag = `ramp-${Date.now().toString(36)}`;
  let violations = 0;
  if (context.warmupPairs > 0) {
    const warmup = await measureCell(
      measure,
      cluster,
      workload('warmup', WARMUP_CLIENTS, runTag, {
        seconds: WARMUP_SECONDS_MAX,
        pairsMax: context.warmupPairs,
      }),
    );
    violations += warmup.violations.count;
    io.err(`ramp: warm-up ${warmup.pairs} pairs, ${warmup.pairsPerSecond.toFixed(0)} pairs/s\n`);
  }
  const steps: RampStep[] = [];
  for (const clients of clientSteps(scale.rampMax)) {
    const step = await runStep(context, measure, cluster, leader, clients, runTag);
    violations += step.violations;
    steps.push(step);
    io.err(`${formatRampLine(step)}\n`);
    if (!step.underLimit) break;
  }
  await cluster.stop();
  const under = steps.filter((step) => step.underLimit);
  const breakingPoint = under.reduce<RampStep | null>(
    (best, step) => (best === null || step.pairsPerSecond > best.pairsPerSecond ? step : best),
    null,
  );
  const brokeAt = steps.find((step) => !step.underLimit) ?? null;
  const judged = brokeAt ?? steps.at(-1) ?? null;
  return {
    cell: 'ramp',
    p99LimitMs: scale.rampP99Ms,
    stepSeconds: context.seconds,
    warmupPairs: context.warmupPairs,
    steps,
    breakingPoint,
    brokeAt,
    limitedBy: judged === null ? 'no step ran' : limitedBy(judged),
    violations,
  };
}

/** 1, 2, 4, ... and `max` itself as the last step. */
export function clientSteps(max: number): number[] {
  const steps: number[] = [];
  for (let clients = 1; clients < max; clients *= 2) steps.push(clients);
  steps.push(max);
  return steps;
}

async function runStep(
  context: ScaleContext,
  measure: MeasureContext,
  cluster: ScaleCluster,
  leader: string,
  clients: number,
  runTag: string,
): Promise<RampStep> {
  const leaderMetrics = cluster.node(leader).metricsAddress;
  const fsyncBefore = await scrapeMetrics(leaderMetrics);
  const hostBefore = hostCpu();
  const result = await measureCell(
    measure,
    cluster,
    workload(`${clients}x-distinct`, clients, `${runTag}-${clients}`, {
      seconds: context.seconds,
      pairsMax: Number.POSITIVE_INFINITY,
    }),
  );
  const hostBusy = hostBusyShare(hostBefore, hostCpu());
  const fsync = fsyncDelta(fsyncBefore, await scrapeMetrics(leaderMetrics));
  return stepOf(result, clients, hostBusy, fsync, context.scale.rampP99Ms);
}

function stepOf(
  result: CellResult,
  clients: number,
  hostBusy: number,
  fsync: FsyncDelta,
  limitMs: number,
): RampStep {
  const wallMs = result.seconds * 1000;
  const members = result.serverCpu?.members ?? [];
  const leaderMember = members.find((member) => member.leader);
  const percent = (cpuMs: number) => (wallMs > 0 ? (cpuMs / wallMs) * 100 : Number.NaN);
  return {
    clients,
    pairsPerSecond: result.pairsPerSecond,
    acquireMs: result.acquireMs,
    serverCpuMsPerWrite: result.serverCpu?.totalMsPerWrite ?? Number.NaN,
    leaderCpuMsPerWrite: leaderMember?.msPerWrite ?? Number.NaN,
    leaderCpuPercent: percent(leaderMember?.cpuMs ?? Number.NaN),
    followerCpuPercents: members
      .filter((member) => !member.leader)
      .map((member) => percent(member.cpuMs)),
    hostBusyPercent: hostBusy * 100,
    lgBusyPercent: result.loadgenBusiest * 100,
    lgCpuMsPerWrite: result.loadgenCpuMsPerWrite,
    leaderFsync: fsync,
    errors: result.errors.count,
    violations: result.violations.count,
    underLimit: result.pairs > 0 && result.acquireMs.p99 <= limitMs,
  };
}

/** What ran out first at this step, judged in this order; the figures go with it. */
export function limitedBy(step: RampStep): string {
  if (step.leaderCpuPercent >= SATURATED * 100) {
    return `CPU: the leader used ${step.leaderCpuPercent.toFixed(0)} % of a core`;
  }
  if (step.hostBusyPercent >= SATURATED * 100) {
    return `CPU: the machine was ${step.hostBusyPercent.toFixed(0)} % busy (all cores, other load included)`;
  }
  if (step.lgBusyPercent >= SATURATED * 100) {
    return `the load generator (busiest worker ${step.lgBusyPercent.toFixed(0)} % busy: add --workers)`;
  }
  if (step.leaderFsync.meanMs >= DISK_SHARE * step.acquireMs.p50) {
    return `disk: a leader fsync took ${step.leaderFsync.meanMs.toFixed(2)} ms on average of an acquire p50 of ${step.acquireMs.p50.toFixed(2)} ms`;
  }
  return (
    `queueing: no resource saturated (leader ${step.leaderCpuPercent.toFixed(0)} % of a core, ` +
    `machine ${step.hostBusyPercent.toFixed(0)} %, fsync mean ${step.leaderFsync.meanMs.toFixed(2)} ms); ` +
    'calls wait behind each other in the event loops and batches'
  );
}

export function formatRampLine(step: RampStep): string {
  return (
    `ramp ${step.clients} clients: ${step.pairsPerSecond.toFixed(0)} pairs/s, ` +
    `p50 ${step.acquireMs.p50.toFixed(2)} p99 ${step.acquireMs.p99.toFixed(2)} ms, ` +
    `server ${step.serverCpuMsPerWrite.toFixed(3)} ms CPU/write, leader ${step.leaderCpuPercent.toFixed(0)} % of a core, ` +
    `lg busy ${step.lgBusyPercent.toFixed(0)} %${step.underLimit ? '' : ' (over the limit)'}`
  );
}

function workload(
  name: string,
  clients: number,
  runTag: string,
  limits: { seconds: number; pairsMax: number },
): Workload {
  const cell = { clients, contention: 'distinct' as const };
  return { name, cell, round: 1, assignments: assignLocks(cell, runTag), ...limits };
}
