import { loadavg } from 'node:os';
import { analyzeCell, type CellResult, type CellRun, cellEndMs } from './analyze.ts';
import type { DlmClientKind } from './bench-session.ts';
import { type CellSpec, type ClientAssignment, dealToWorkers } from './cells.ts';
import { pauseReport } from './pauses.ts';
import { mainThreadPreemptions, processCpuMs } from './proc-cpu.ts';
import { epochNowMs } from './records.ts';
import { endpointsVia, type ServerCluster, type Via } from './server-cluster.ts';
import type { WorkerPool } from './workers.ts';

/**
 * Runs one cell on one cluster through the worker pool: open every client's session,
 * read the servers' CPU, run, read it again, close the sessions, analyze.
 */
const OPEN_TIMEOUT_MS = 60_000;
const CLOSE_TIMEOUT_MS = 60_000;
/** Past the cell's end, a client may still be waiting in a queue or retrying a call. */
const DRAIN_MARGIN_MS = 30_000;

export interface MeasureContext {
  readonly pool: WorkerPool;
  readonly sessionTtlMs: number;
  readonly waitMs: number;
  readonly via: Via;
  readonly dlmClient: DlmClientKind;
  /** How many of the slowest acquires each cell keeps (see --slowest). */
  readonly slowest: number;
  /** --stall-ms: report the pauses the nodes logged (pauses.ts); null: no report. */
  readonly stallMs: number | null;
  /** Progress output: a run of `seconds` (or `pairsMax` pairs) starts, then ends. */
  readonly onRunStart: (label: string, seconds: number, pairsMax: number) => void;
  readonly onRunEnd: () => void;
}

export interface Workload {
  readonly name: string;
  readonly cell: CellSpec;
  readonly round: number;
  readonly assignments: readonly ClientAssignment[];
  readonly seconds: number;
  /** Stop early once this many pairs are done in all; Infinity for a timed cell. */
  readonly pairsMax: number;
}

export async function measureCell(
  context: MeasureContext,
  cluster: ServerCluster,
  workload: Workload,
): Promise<CellResult> {
  const { pool } = context;
  const leaderBefore = await cluster.leader();
  const endpoints = endpointsVia(cluster.members, leaderBefore, context.via);
  const hands = dealToWorkers(workload.assignments, pool.size);
  await pool.ask(
    (worker) => ({
      kind: 'open',
      system: cluster.system,
      endpoints,
      clients: hands[worker] ?? [],
      sessionTtlMs: context.sessionTtlMs,
      dlmClient: context.dlmClient,
    }),
    'opened',
    OPEN_TIMEOUT_MS,
  );
  const closeSessions = () => pool.ask(() => ({ kind: 'close' }), 'closed', CLOSE_TIMEOUT_MS);
  let run: CellRun;
  try {
    run = await runOpened(context, cluster, workload, leaderBefore);
  } catch (error) {
    // The run's failure is the news; closing after it may well fail too.
    await closeSessions().catch(() => {});
    throw error;
  }
  await closeSessions();
  const result = { ...analyzeCell(run, context.slowest), cell: workload.name };
  // The warm-up's pauses are not reported: it is not measured either.
  if (context.stallMs === null || workload.round === 0) return result;
  const window = { startMs: run.startMs, endMs: cellEndMs(run) };
  const pauses = pauseReport(cluster.members, result.leader, run.records, window, context.stallMs);
  return { ...result, pauses };
}

async function runOpened(
  context: MeasureContext,
  cluster: ServerCluster,
  workload: Workload,
  leaderBefore: string | null,
): Promise<CellRun> {
  const { pool } = context;
  const pairsMaxPerWorker = Number.isFinite(workload.pairsMax)
    ? Math.ceil(workload.pairsMax / pool.size)
    : Number.MAX_SAFE_INTEGER;
  const before = serverReadings(cluster);
  const startMs = epochNowMs();
  context.onRunStart(`${cluster.system} ${workload.name}`, workload.seconds, workload.pairsMax);
  let answers: Awaited<ReturnType<typeof pool.ask<'ran'>>>;
  try {
    answers = await pool.ask(
      () => ({
        kind: 'run',
        untilMs: startMs + workload.seconds * 1000,
        pairsMax: pairsMaxPerWorker,
        waitMs: context.waitMs,
      }),
      'ran',
      workload.seconds * 1000 + context.waitMs + DRAIN_MARGIN_MS,
    );
  } finally {
    context.onRunEnd();
  }
  const after = serverReadings(cluster);
  return {
    system: cluster.system,
    cell: workload.cell,
    round: workload.round,
    startMs,
    records: answers.flatMap((answer) => answer.records),
    loadgenCpuMs: answers.reduce((sum, answer) => sum + answer.cpuMs, 0),
    loadgenBusiest: Math.max(...answers.map((answer) => answer.eventLoopBusy)),
    hostLoad1m: loadavg()[0] ?? Number.NaN,
    serverCpuMs: delta(before?.cpuMs ?? null, after?.cpuMs ?? null),
    serverPreemptions: delta(before?.preemptions ?? null, after?.preemptions ?? null),
    errors: answers.map((answer) => answer.errors),
    leaderBefore,
    leaderAfter: await cluster.leader(),
  };
}

/**
 * CPU ms used so far by each server process this run started, and its main thread's
 * preemptions, by member name; null if it started none.
 */
function serverReadings(
  cluster: ServerCluster,
): { cpuMs: Map<string, number>; preemptions: Map<string, number> } | null {
  const cpuMs = new Map<string, number>();
  const preemptions = new Map<string, number>();
  for (const member of cluster.members) {
    if (member.pid === null) return null;
    try {
      cpuMs.set(member.name, processCpuMs(member.pid));
      preemptions.set(member.name, mainThreadPreemptions(member.pid));
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      throw new Error(`${cluster.system} member ${member.name} stopped during the run: ${why}`);
    }
  }
  return { cpuMs, preemptions };
}

function delta(
  before: ReadonlyMap<string, number> | null,
  after: ReadonlyMap<string, number> | null,
): Map<string, number> | null {
  if (before === null || after === null) return null;
  return new Map([...after].map(([name, ms]) => [name, ms - (before.get(name) ?? 0)]));
}
