import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { BenchIo } from './finish.ts';
import type { BenchOptions } from './options.ts';
import type { LocksResult, NodeMemory, RestartFigures } from './scale-locks.ts';
import type { RampResult, RampStep } from './scale-ramp.ts';
import type { SessionsResult } from './scale-sessions.ts';
import { per } from './stats.ts';

/** The scale cells' printed summary, JSON file and exit code. */
export type ScaleResult = SessionsResult | LocksResult | RampResult;

/** The issue's targets: reported, never asserted. */
const SESSIONS_TARGET = 10_000;
const LOCKS_TARGET = 100_000;
const RSS_TARGET_MB = 300;

export function finishScaleRun(
  options: BenchOptions,
  results: readonly ScaleResult[],
  io: BenchIo,
): number {
  for (const result of results) io.out(`\n${formatScaleResult(result)}`);
  const failures = results.flatMap(failuresOf);
  const path = resolve(
    options.out ??
      join('results', `bench-scale-${new Date().toISOString().replace(/[:.]/g, '-')}.json`),
  );
  mkdirSync(dirname(path), { recursive: true });
  const report = {
    finishedAt: new Date().toISOString(),
    options,
    host: { cpus: cpus().length, loadavg: loadavg(), node: process.version },
    failures,
    scale: results,
  };
  writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
  const load = loadavg().map((each) => each.toFixed(1));
  io.out(
    `\nhost: ${cpus().length} cores, load average ${load.join(' ')} at the end ` +
      '(the cluster and the load generator share them with everything else)\n',
  );
  io.out(`\nresults: ${path}\n`);
  for (const failure of failures) io.err(`FAILED ${failure}\n`);
  return failures.length > 0 ? 1 : 0;
}

/** What fails the run: spurious expiries and safety violations (targets only report). */
export function failuresOf(result: ScaleResult): string[] {
  switch (result.cell) {
    case 'sessions':
    case 'locks':
      return result.spuriousExpiries > 0
        ? [`${result.cell}: ${result.spuriousExpiries} spurious session expiries`]
        : [];
    case 'ramp':
      return result.violations > 0 ? [`ramp: ${result.violations} safety violations`] : [];
  }
}

export function formatScaleResult(result: ScaleResult): string {
  switch (result.cell) {
    case 'sessions':
      return formatSessions(result);
    case 'locks':
      return formatLocks(result);
    case 'ramp':
      return formatRamp(result);
  }
}

function formatSessions(r: SessionsResult): string {
  const leader = r.nodes.find((node) => node.leader);
  const followers = r.nodes.filter((node) => !node.leader);
  const met = r.opened >= SESSIONS_TARGET && r.spuriousExpiries === 0 && lostCount(r) === 0;
  return lines([
    `sessions: ${r.sessions} sessions, TTL ${r.ttlMs} ms, held ${r.holdSeconds.toFixed(0)} s, ${r.workers} workers${raisedText(r.raisedLimits)}`,
    `  open         ${r.opened} in ${r.openSeconds.toFixed(1)} s (${r.opensPerSecond.toFixed(0)}/s), ${r.openErrors.count} errors, leader ${pct(r.openLeaderCpuPercent)} of a core meanwhile`,
    `  refreshes    ${r.sessionsRefreshed} session refreshes, ${r.refreshesPerSecond.toFixed(0)}/s (every session every TTL/3: ~${r.refreshesPerSecondExpected.toFixed(0)}/s)`,
    `  keepalives   ${r.keepAliveCallsAnswered} KeepAlive calls carried them (${r.keepAliveCallsPerSecond.toFixed(1)}/s, ${fixed(per(r.sessionsRefreshed, r.keepAliveCallsAnswered), 0)} sessions a call), ` +
      `call p50 ${ms(r.keepAliveMs.p50)} p99 ${ms(r.keepAliveMs.p99)} max ${ms(r.keepAliveMs.max)} ms, ${r.keepAliveErrors} errors`,
    `  leader ${r.leader}    ${pct(leader?.cpuPercent)} of a core, ${fixed(leader?.msPerRefresh, 4)} ms CPU per session refresh (${fixed(leader?.msPerKeepAliveCall, 2)} ms per call)` +
      `${r.leaderAfter === r.leader ? '' : ` (leader after: ${r.leaderAfter})`}`,
    `  followers    ${followers.map((node) => `${node.name} ${pct(node.cpuPercent)} (${fixed(node.msPerRefresh, 4)} ms/refresh)`).join(', ')}`,
    `  RSS MB       ${r.nodes.map((node) => `${node.name} ${fixed(node.rssMb, 0)} (peak ${fixed(node.peakRssMb, 0)})`).join(', ')}`,
    `  server       dlm_sessions ${r.nodes.map((node) => `${node.name} ${node.sessionsGauge}`).join(', ')}`,
    `  SPURIOUS EXPIRIES ${r.spuriousExpiries} (sessions a KeepAlive answered as ended ${r.clientSawExpired}, ` +
      `dlm_session_expiries_total rise ${r.serverExpiries}); sessions whose signal fired ${lostCount(r)} (why: sessionsLost in the JSON), alive at the end ${r.sessionsAliveAtEnd}/${r.opened}`,
    `  lg           busy ${pct(r.lgBusy * 100)}, ${fixed(r.lgCpuMsPerRefresh, 4)} ms CPU per session refresh, RSS max ${fixed(r.lgRssMbMax, 0)} MB`,
    `  target       ${SESSIONS_TARGET} live sessions, zero spurious expiries: ${met ? 'met' : 'NOT met'}`,
  ]);
}

function formatLocks(r: LocksResult): string {
  const worstRss = Math.max(
    ...r.afterFill.map((node) => node.rssMb),
    ...r.followerRestart.rssMbAfter.map((node) => node.rssMb),
    ...r.clusterRestart.rssMbAfter.map((node) => node.rssMb),
  );
  const met = r.acquired >= LOCKS_TARGET && worstRss < RSS_TARGET_MB;
  const s = r.snapshot;
  return lines([
    `locks: ${r.acquired} of ${r.sessions * r.locksPerSession} acquired (${r.sessions} sessions × ${r.locksPerSession})${raisedText(r.raisedLimits)}`,
    `  fill         ${r.fillSeconds.toFixed(1)} s, ${r.fillPerSecond.toFixed(0)} acquires/s (first fifth ${r.fillRate.firstFifthPerSecond.toFixed(0)}/s, ` +
      `last fifth ${r.fillRate.lastFifthPerSecond.toFixed(0)}/s), leader ${fixed(r.fillLeaderCpuMsPerAcquire, 3)} ms CPU per acquire, ${r.fillErrors.count} errors`,
    `  RSS MB       after the fill: ${memoryText(r.afterFill)}`,
    `  snapshot     ${r.follower}'s newest at index ${s.index}: ${(s.bytes / 2 ** 20).toFixed(1)} MB, ${s.locks} locks, ${s.sessions} sessions, ` +
      `${s.dedupeEntries} remembered results; data dir ${(s.dataDirBytes / 2 ** 20).toFixed(1)} MB`,
    `               take (snapshot() + encode) ${fixed(s.takeMs, 0)} ms, decode ${fixed(s.decodeMs, 0)} ms, restore ${fixed(s.restoreMs, 0)} ms, ` +
      `LevelDB load ${fixed(s.storageLoadMs, 0)} ms`,
    `  restart ${r.follower}   ${restartText(r.followerRestart)}`,
    `  restart all  ${restartText(r.clusterRestart)}`,
    `  kept         every node holds ${r.acquired} locks after the restarts: ${r.locksKept ? 'yes' : 'NO'}; ` +
      `sessions alive ${r.sessionsAliveAtEnd}/${r.sessions}, lost ${r.sessionsLost.count}, SPURIOUS EXPIRIES ${r.spuriousExpiries}`,
    `  lg           RSS max ${fixed(r.lgRssMbMax, 0)} MB`,
    `  target       ${LOCKS_TARGET} locks under ${RSS_TARGET_MB} MB RSS per node: ${met ? 'met' : 'NOT met'} (worst ${fixed(worstRss, 0)} MB)`,
  ]);
}

function formatRamp(r: RampResult): string {
  const header = `  ${'clients'.padStart(7)} ${'pairs/s'.padStart(8)} ${'p50'.padStart(7)} ${'p99'.padStart(7)} ${'cpu/write'.padStart(9)} ${'leader%'.padStart(7)} ${'host%'.padStart(6)} ${'fsync ms'.padStart(8)} ${'lg busy'.padStart(7)} ${'err'.padStart(4)}`;
  const row = (step: RampStep) =>
    `  ${String(step.clients).padStart(7)} ${step.pairsPerSecond.toFixed(0).padStart(8)} ${ms(step.acquireMs.p50).padStart(7)} ` +
    `${ms(step.acquireMs.p99).padStart(7)} ${fixed(step.serverCpuMsPerWrite, 3).padStart(9)} ${fixed(step.leaderCpuPercent, 0).padStart(7)} ` +
    `${fixed(step.hostBusyPercent, 0).padStart(6)} ${fixed(step.leaderFsync.meanMs, 2).padStart(8)} ${fixed(step.lgBusyPercent, 0).padStart(7)} ` +
    `${String(step.errors).padStart(4)}${step.underLimit ? '' : '  over the limit'}`;
  const best = r.breakingPoint;
  return lines([
    `ramp: distinct locks, ${r.stepSeconds} s a step, acquire p99 limit ${r.p99LimitMs} ms (cpu/write: all servers; fsync: the leader's mean)`,
    header,
    ...r.steps.map(row),
    best === null
      ? '  breaking point: none (no step stayed under the limit)'
      : `  breaking point: ${best.pairsPerSecond.toFixed(0)} pairs/s at ${best.clients} clients (p99 ${ms(best.acquireMs.p99)} ms)`,
    r.brokeAt === null
      ? `  p99 stayed under the limit up to the last step; at it: ${r.limitedBy}`
      : `  breaks at ${r.brokeAt.clients} clients: ${r.limitedBy}`,
    `  safety violations ${r.violations}`,
  ]);
}

function restartText(figures: RestartFigures): string {
  const parts = [
    `answers ${seconds(figures.answersMs)}`,
    ...(figures.leaderMs === null ? [] : [`leader ${seconds(figures.leaderMs)}`]),
    `linearizable read ${seconds(figures.linearizableReadMs)}`,
    `caught up ${seconds(figures.caughtUpMs)}`,
  ];
  return `${parts.join(', ')} after spawn; RSS MB ${memoryText(figures.rssMbAfter)}`;
}

function memoryText(nodes: readonly NodeMemory[]): string {
  const text = nodes.map((node) => `${node.name} ${fixed(node.rssMb, 0)}`).join(', ');
  const split = nodes
    .map(
      (node) =>
        `${node.name} ${fixed(node.heapUsedMb, 0)}/${fixed(node.heapTotalMb, 0)}/${fixed(node.externalMb, 0)}`,
    )
    .join(', ');
  return (
    `${text} (dlm_locks_in_use ${nodes.map((node) => fixed(node.locksGauge, 0)).join('/')}; ` +
    `heap used/total/external MB ${split})`
  );
}

function raisedText(raised: readonly { field: string; from: number; to: number }[]): string {
  if (raised.length === 0) return '';
  return `; config sets ${raised.map((limit) => `${limit.field} ${limit.from}→${limit.to}`).join(', ')}`;
}

function lostCount(r: SessionsResult): number {
  return r.sessionsLost.count;
}

function seconds(valueMs: number | null): string {
  return valueMs === null ? 'not within the timeout' : `${(valueMs / 1000).toFixed(2)} s`;
}

function ms(value: number): string {
  return fixed(value, value < 10 ? 2 : 1);
}

function pct(value: number | undefined): string {
  return `${fixed(value, 0)} %`;
}

function fixed(value: number | undefined, digits: number): string {
  return value !== undefined && Number.isFinite(value) ? value.toFixed(digits) : '-';
}

function lines(all: readonly string[]): string {
  return `${all.join('\n')}\n`;
}
