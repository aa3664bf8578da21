import type { BenchErrors } from './bench-errors.ts';
import { metricSum, scrapeMetrics } from './node-probe.ts';
import {
  limitsFor,
  type RaisedLimit,
  readNodes,
  type ScaleContext,
  sleepMs,
  startScaleCluster,
  statsDelta,
  workerStats,
} from './scale-common.ts';
import { endpointsVia } from './server-cluster.ts';
import { type LatencySummaryMs, per, summarize } from './stats.ts';

/**
 * The sessions cell: N sessions, kept alive by the client library (a keepalive every
 * TTL/3 each) for S seconds against a fresh cluster. Every session's client is alive
 * and keeping it alive throughout, so any expiry is spurious: a KeepAlive answered
 * NOT_FOUND, or a rise of the nodes' dlm_session_expiries_total.
 */
const OPEN_TIMEOUT_MS = 600_000;
const CLOSE_TIMEOUT_MS = 300_000;
const PROGRESS_EVERY_MS = 10_000;

export interface NodeFigures {
  readonly name: string;
  readonly leader: boolean;
  readonly cpuMs: number;
  /** Share of one core over the hold, in %. */
  readonly cpuPercent: number;
  /** CPU per session refresh (a call's cost shared among the sessions it carried). */
  readonly msPerRefresh: number;
  readonly msPerKeepAliveCall: number;
  readonly rssMb: number;
  readonly peakRssMb: number;
  /** The node's dlm_sessions gauge at the end of the hold. */
  readonly sessionsGauge: number;
  /** Its dlm_session_expiries_total rise from before the opens to the end of the hold. */
  readonly expiries: number;
}

export interface SessionsResult {
  readonly cell: 'sessions';
  readonly sessions: number;
  readonly opened: number;
  readonly openSeconds: number;
  readonly opensPerSecond: number;
  readonly openErrors: BenchErrors;
  /** The leader's CPU while the sessions opened (their keepalives included), % of a core. */
  readonly openLeaderCpuPercent: number;
  readonly ttlMs: number;
  readonly holdSeconds: number;
  readonly workers: number;
  readonly raisedLimits: readonly RaisedLimit[];
  /** KeepAlive calls answered; one refreshes up to keepAliveBatchMax sessions. */
  readonly keepAliveCallsAnswered: number;
  readonly keepAliveCallsPerSecond: number;
  /** Session refreshes those calls carried: what a lease lives on. */
  readonly sessionsRefreshed: number;
  readonly refreshesPerSecond: number;
  /** What every session needs: one refresh every TTL/3. */
  readonly refreshesPerSecondExpected: number;
  /** A KeepAlive call sent → answered. */
  readonly keepAliveMs: LatencySummaryMs;
  readonly keepAliveErrors: number;
  readonly keepAliveErrorMessages: BenchErrors;
  readonly leader: string;
  readonly leaderAfter: string | null;
  readonly nodes: readonly NodeFigures[];
  /**
   * Sessions the cluster answered as ended though their client kept them alive (a
   * KeepAlive answered NOT_FOUND, or an id in a batch's expired_session_ids).
   */
  readonly clientSawExpired: number;
  /** The most any node applied (they apply the same log). */
  readonly serverExpiries: number;
  /** max(clientSawExpired, serverExpiries): must be 0. */
  readonly spuriousExpiries: number;
  /** Sessions whose signal fired during the run (lease not confirmed in time, or expired). */
  readonly sessionsLost: BenchErrors;
  readonly sessionsAliveAtEnd: number;
  readonly lgBusy: number;
  readonly lgCpuMsPerRefresh: number;
  readonly lgRssMbMax: number;
}

export async function runSessionsCell(context: ScaleContext): Promise<SessionsResult> {
  const { pool, scale, io } = context;
  // sessionsMax must leave room for the sessions asked for.
  const { extra, raised } = limitsFor({ sessionsMax: scale.sessions });
  const { cluster, leader } = await startScaleCluster(context, 'sessions', extra, raised);
  const endpoints = endpointsVia(cluster.members, leader, 'leader');
  const scrapeAll = () =>
    Promise.all(cluster.nodes.map((node) => scrapeMetrics(node.metricsAddress)));
  const metricsBefore = await scrapeAll();
  const perWorker = Array.from(
    { length: pool.size },
    (_, worker) =>
      Math.floor(scale.sessions / pool.size) + (worker < scale.sessions % pool.size ? 1 : 0),
  );
  io.err(
    `sessions: opening ${scale.sessions} sessions (TTL ${context.sessionTtlMs} ms) over ${pool.size} workers\n`,
  );
  const nodesBeforeOpen = readNodes(cluster);
  const openStartMs = performance.now();
  const opened = await pool.ask(
    (worker) => ({
      kind: 'scaleOpen',
      endpoints,
      count: perWorker[worker] ?? 0,
      ttlMs: context.sessionTtlMs,
      concurrency: scale.concurrency,
      namePrefix: `scale-w${worker}-`,
    }),
    'scaleOpened',
    OPEN_TIMEOUT_MS,
  );
  const openSeconds = (performance.now() - openStartMs) / 1000;
  const openedCount = opened.reduce((sum, answer) => sum + answer.opened, 0);
  const leaderOpenCpuMs =
    (readNodes(cluster).find((node) => node.name === leader)?.cpuMs ?? Number.NaN) -
    (nodesBeforeOpen.find((node) => node.name === leader)?.cpuMs ?? Number.NaN);
  io.err(
    `sessions: ${openedCount} open in ${openSeconds.toFixed(1)} s; holding ${scale.holdSeconds} s\n`,
  );

  const statsBefore = await workerStats(pool, true);
  const nodesBefore = readNodes(cluster);
  const holdStartMs = performance.now();
  const holdEndMs = holdStartMs + scale.holdSeconds * 1000;
  while (performance.now() < holdEndMs) {
    await sleepMs(Math.min(PROGRESS_EVERY_MS, holdEndMs - performance.now()));
    const now = statsDelta(statsBefore, await workerStats(pool, false));
    io.err(
      `  sessions: ${((performance.now() - holdStartMs) / 1000).toFixed(0)}/${scale.holdSeconds} s, ` +
        `${now.sessionsRefreshed} session refreshes in ${now.keepAliveCallsAnswered} KeepAlive calls, ` +
        `${now.sessionsAlive}/${now.sessionsOpen} alive, ${now.sessionsAnsweredExpired} answered expired\n`,
    );
  }
  const holdSeconds = (performance.now() - holdStartMs) / 1000;
  const nodesAfter = readNodes(cluster);
  const stats = statsDelta(statsBefore, await workerStats(pool, false));
  const metricsAfter = await scrapeAll();
  const leaderAfter = await cluster.leader();

  const closing = await pool.ask(
    () => ({ kind: 'scaleClose', concurrency: scale.concurrency }),
    'scaleClosed',
    CLOSE_TIMEOUT_MS,
  );
  for (const answer of closing) {
    if (answer.errors.count > 0)
      io.err(`sessions: close errors ${JSON.stringify(answer.errors)}\n`);
  }
  await cluster.stop();

  const refreshes = stats.sessionsRefreshed;
  const calls = stats.keepAliveCallsAnswered;
  const nodes = nodesAfter.map((after, i): NodeFigures => {
    const cpuMs = after.cpuMs - (nodesBefore[i]?.cpuMs ?? 0);
    const expiries = (samples: ReadonlyMap<string, number> | undefined) =>
      samples === undefined ? Number.NaN : metricSum(samples, 'dlm_session_expiries_total');
    return {
      name: after.name,
      leader: after.name === leader,
      cpuMs,
      cpuPercent: (cpuMs / (holdSeconds * 1000)) * 100,
      msPerRefresh: per(cpuMs, refreshes),
      msPerKeepAliveCall: per(cpuMs, calls),
      rssMb: after.rssMb,
      peakRssMb: after.peakRssMb,
      sessionsGauge: metricSum(metricsAfter[i] ?? new Map(), 'dlm_sessions'),
      expiries: expiries(metricsAfter[i]) - expiries(metricsBefore[i]),
    };
  });
  const serverExpiries = Math.max(...nodes.map((node) => node.expiries));
  return {
    cell: 'sessions',
    sessions: scale.sessions,
    opened: openedCount,
    openSeconds,
    opensPerSecond: openedCount / openSeconds,
    openLeaderCpuPercent: (leaderOpenCpuMs / (openSeconds * 1000)) * 100,
    openErrors: {
      count: opened.reduce((sum, answer) => sum + answer.errors.count, 0),
      messages: Object.assign({}, ...opened.map((answer) => answer.errors.messages)),
    },
    ttlMs: context.sessionTtlMs,
    holdSeconds,
    workers: pool.size,
    raisedLimits: raised,
    keepAliveCallsAnswered: calls,
    keepAliveCallsPerSecond: calls / holdSeconds,
    sessionsRefreshed: refreshes,
    refreshesPerSecond: refreshes / holdSeconds,
    refreshesPerSecondExpected: openedCount / (Math.floor(context.sessionTtlMs / 3) / 1000),
    keepAliveMs: summarize(stats.keepAliveMsSample),
    keepAliveErrors: stats.keepAliveErrors,
    keepAliveErrorMessages: stats.keepAliveErrorMessages,
    leader,
    leaderAfter,
    nodes,
    clientSawExpired: stats.sessionsAnsweredExpiredTotal,
    serverExpiries,
    spuriousExpiries: Math.max(stats.sessionsAnsweredExpiredTotal, serverExpiries),
    sessionsLost: stats.sessionsLost,
    sessionsAliveAtEnd: stats.sessionsAlive,
    lgBusy: stats.lgBusiest,
    lgCpuMsPerRefresh: per(stats.lgCpuMs, refreshes),
    lgRssMbMax: stats.lgRssMbMax,
  };
}
