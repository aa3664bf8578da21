import { readFileSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { newRequestId, type ProcessCluster } from '../process-cluster.ts';
import type { Violation } from './checker.ts';
import { faultVerdict } from './fault-verdict.ts';
import { type NemesisEvent, now } from './history.ts';
import type { Members } from './members.ts';
import type { NodeDisks } from './node-disks.ts';
import type { CheckerVerdict } from './summary.ts';
import { waitUntilCaughtUp, waitUntilExited } from './waits.ts';

/**
 * The disk-full nemesis (issue 13, point 5): a node's tmpfs is filled with a ballast
 * file, so its next LevelDB write fails with ENOSPC. The node must stop without
 * acknowledging anything it could not persist, while the others go on; once the
 * ballast is gone it is restarted and must rejoin.
 *
 * What it answered is read from the node's own log, where each call is a line (at
 * debug level) and the failure is the fatal line it writes as it stops: an OK answer to
 * a write call after that line is an acknowledgement after the failed write. The order
 * of lines in one process's log needs no clock. (The fatal line comes a few microtasks
 * after the failed write; nothing is applied, so nothing answered, in between.) A probe
 * keeps calling KeepAlive on the node while its disk is full, so that there are calls
 * to answer right when the write fails.
 */

/** The tmpfs each node's data directory gets: room for a minute's run and its compactions. */
export const NODE_DISK_BYTES = 64 * 1024 * 1024;
/** How long a full node has to fail a write and exit. */
const STOP_TIMEOUT_MS = 10_000;
/**
 * A filled tmpfs has a few KiB of slack (the free part of pages its files own), which
 * the workload's writes use up within a second or so. A node that still answers write
 * calls OK this long after the fill, without a failed write in its log, acknowledges
 * writes it cannot have persisted (or hides its failure).
 */
const FULL_DISK_SLACK_MS = 5_000;
/** How long it has, once restarted on a freed disk, to catch up with the others. */
const REJOIN_TIMEOUT_MS = 20_000;
const PROBE_INTERVAL_MS = 25;
const PROBE_SESSION_TTL_MS = 3_000;
const PROBE_CALL_DEADLINE_MS = 1_000;

/** Calls that change state: an OK answer to one acknowledges a write. */
const WRITE_METHODS: ReadonlySet<string> = new Set([
  'OpenSession',
  'KeepAlive',
  'CloseSession',
  'Acquire',
  'Release',
  'AddMember',
  'RemoveMember',
  'TransferLeadership',
  'SetLockRules',
]);

/** One fill of one node, and what came of it. */
export interface DiskFullRecord {
  readonly node: string;
  readonly ballastBytes: number;
  /** The error the node stopped on (its fatal log line), or null if it failed no write. */
  readonly failure: string | null;
  readonly exited: boolean;
  /** Write calls it answered OK before its failed write, while the disk was full or not. */
  readonly acksBeforeFailure: number;
  /** Write calls it answered OK after its failed write: there must be none. */
  readonly acksAfterFailure: number;
  /** Write calls it answered OK, with no failed write logged, long after the fill: none. */
  readonly acksLongAfterFill: number;
  /**
   * Started again on the still-full disk, as a supervisor would: whether it stopped
   * again, why (the last line it wrote), and its OK answers after a failed write there.
   * Null when it never stopped.
   */
  readonly onFullDisk: { stopped: boolean; lastWords: string; acksAfterFailure: number } | null;
  /** Caught up after its restart; null when it never stopped, so never restarted. */
  readonly rejoined: boolean | null;
}

export class DiskFullNemesis {
  private readonly records: DiskFullRecord[] = [];
  private readonly found: Violation[] = [];
  private notRunningAtFill = 0;

  constructor(
    private readonly cluster: ProcessCluster,
    private readonly disks: NodeDisks,
    private readonly members: Members,
    private readonly events: NemesisEvent[],
  ) {}

  /**
   * Fills `node`'s disk and watches it stop; starts it once more on the full disk; then
   * frees the disk and restarts it.
   */
  async once(node: string): Promise<void> {
    const { cluster, events } = this;
    // What is judged is how this process ends: with none running, waitUntilExited holds
    // at once, and the log is read before whatever does run there (a process the harness
    // lost track of, seed 1203) has failed its write.
    if (!cluster.isRunning(node)) {
      this.notRunningAtFill++;
      this.found.push({
        check: 'disk-full',
        message: `${node}: was not running when its disk was to be filled (a fault left it down, or the harness lost its process): nothing filled, nothing to judge`,
        ops: [],
      });
      return;
    }
    const logOffset = logSize(cluster, node);
    const probe = await Probe.open(cluster, node);
    const ballastBytes = this.disks.fill(node);
    // pino's `time` is the wall clock, which the node shares with this process.
    const slackGoneAtEpochMs = Date.now() + FULL_DISK_SLACK_MS;
    const detail = `tmpfs of ${mib(this.disks.sizeBytes)} filled (${mib(ballastBytes)} of ballast)`;
    events.push({ atMs: now(), kind: 'disk-full', target: node, detail });
    const exited = await waitUntilExited(cluster, node, STOP_TIMEOUT_MS);
    await probe.stop();
    const answered = answersAround(logSince(cluster, node, logOffset), slackGoneAtEpochMs);
    // A node that failed a write but did not exit is hung (judged below): stop it. One
    // that failed none goes on as it was, with room again.
    if (!exited && answered.failure !== null) await cluster.kill(node);
    const stopped = !cluster.isRunning(node);
    const onFullDisk = stopped ? await this.startOnFullDisk(node) : null;
    this.disks.drain(node);
    events.push({ atMs: now(), kind: 'disk-free', target: node });
    const rejoined = stopped ? await this.restart(node) : null;
    this.judge({ node, ballastBytes, exited, onFullDisk, rejoined, ...answered });
  }

  /**
   * A supervisor restarts a node that exited; while its disk is still full it must
   * stop again (or not start), and acknowledge nothing after its failed write.
   */
  private async startOnFullDisk(node: string): Promise<DiskFullRecord['onFullDisk']> {
    const logOffset = logSize(this.cluster, node);
    this.cluster.start(node);
    const stopped = await waitUntilExited(this.cluster, node, STOP_TIMEOUT_MS);
    if (!stopped) await this.cluster.kill(node);
    const text = logSince(this.cluster, node, logOffset);
    const lastWords = text.trim().split('\n').at(-1)?.slice(0, 300) ?? '';
    const { acksAfterFailure } = answersAround(text, Number.POSITIVE_INFINITY);
    return { stopped, lastWords, acksAfterFailure };
  }

  private async restart(node: string): Promise<boolean> {
    this.cluster.start(node);
    return waitUntilCaughtUp(this.cluster, node, this.members.ids(), REJOIN_TIMEOUT_MS);
  }

  private judge(record: DiskFullRecord): void {
    this.records.push(record);
    const { node, failure } = record;
    const problem = (message: string): void => {
      this.found.push({ check: 'disk-full', message: `${node}: ${message}`, ops: [] });
    };
    if (record.acksAfterFailure > 0)
      problem(`answered ${record.acksAfterFailure} write calls OK after its failed write`);
    if (record.acksLongAfterFill > 0)
      problem(
        `answered ${record.acksLongAfterFill} write calls OK over ${FULL_DISK_SLACK_MS} ms after its disk filled, with no failed write in its log: writes a full disk cannot have taken`,
      );
    if ((record.onFullDisk?.acksAfterFailure ?? 0) > 0)
      problem('restarted on the full disk, it answered write calls OK after a failed write');
    if (failure !== null && !record.exited)
      problem(`did not exit within ${STOP_TIMEOUT_MS} ms of its failed write (${failure})`);
    if (failure === null && record.exited) problem('exited on a full disk without saying why');
    if (record.rejoined === false)
      problem(`did not catch up within ${REJOIN_TIMEOUT_MS} ms of its restart on a freed disk`);
  }

  violations(): readonly Violation[] {
    return this.found;
  }

  verdict(): CheckerVerdict {
    const stopped = this.records.filter((r) => r.failure !== null);
    const stats = {
      fills: this.records.length,
      stoppedOnFailedWrite: stopped.length,
      acksAfterFailedWrite: sum(this.records.map((r) => r.acksAfterFailure)),
      acksBeforeFailedWrite: sum(this.records.map((r) => r.acksBeforeFailure)),
      acksLongAfterFill: sum(this.records.map((r) => r.acksLongAfterFill)),
      stoppedAgainOnFullDisk: this.records.filter((r) => r.onFullDisk?.stopped === true).length,
      rejoined: this.records.filter((r) => r.rejoined === true).length,
      notRunningAtFill: this.notRunningAtFill,
    };
    return faultVerdict({
      name: 'disk full: the node acknowledged nothing after its failed write, stopped, and rejoined',
      check: 'disk-full',
      violations: this.found,
      stats,
      unknownBecause:
        stopped.length === 0
          ? `no filled node failed a write (${this.records.length} fills)`
          : null,
      note: stopped
        .map((r) => `${r.node}: ${r.failure}; restarted full: ${r.onFullDisk?.lastWords}`)
        .join('; '),
    });
  }
}

/**
 * What a node's log says it answered: its first fatal line (the failure it stopped on)
 * and the OK answers to write calls before and after it, and of those before it, the
 * ones logged at or after `lateFromEpochMs`. Lines that are not JSON (the CLI's last
 * words on stderr) are skipped.
 *
 * An answer is after the failure if its line follows the fatal one, unless its own time
 * is earlier than the fatal line's: pino writes the fatal line at once and the others
 * through its buffer, so an answer given 2 ms before the failure can land after it in the
 * file (600 s run, seed 1209: a KeepAlive at …476 under a fatal line at …478).
 */
export function answersAround(
  logText: string,
  lateFromEpochMs: number,
): {
  failure: string | null;
  acksBeforeFailure: number;
  acksAfterFailure: number;
  acksLongAfterFill: number;
} {
  let failure: string | null = null;
  let failureAtMs = Number.NEGATIVE_INFINITY;
  let acksBeforeFailure = 0;
  let acksAfterFailure = 0;
  let acksLongAfterFill = 0;
  for (const line of logText.split('\n')) {
    const entry = parseLine(line);
    if (entry === null) continue;
    if (failure === null && Number(entry.level) >= FATAL) {
      failure = String((entry.err as { message?: unknown } | undefined)?.message ?? entry.msg);
      if (typeof entry.time === 'number') failureAtMs = entry.time;
      continue;
    }
    const ack = entry.msg === 'call' && entry.code === 0 && WRITE_METHODS.has(String(entry.method));
    if (!ack) continue;
    const answeredBeforeFailure = typeof entry.time === 'number' && entry.time < failureAtMs;
    if (failure !== null && !answeredBeforeFailure) acksAfterFailure++;
    else if (Number(entry.time) >= lateFromEpochMs) acksLongAfterFill++;
    else acksBeforeFailure++;
  }
  return { failure, acksBeforeFailure, acksAfterFailure, acksLongAfterFill };
}

/** pino's level number for fatal. */
const FATAL = 60;

function parseLine(line: string): Record<string, unknown> | null {
  if (!line.startsWith('{')) return null;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/**
 * KeepAlives to one node, back to back, so that it has writes to answer while its disk
 * fills. Opened before the fill (through that node); without a session it does nothing.
 */
class Probe {
  private stopped = false;
  private readonly loop: Promise<void>;

  private constructor(
    private readonly cluster: ProcessCluster,
    private readonly node: string,
    private readonly sessionId: string | null,
  ) {
    this.loop = this.run();
  }

  static async open(cluster: ProcessCluster, node: string): Promise<Probe> {
    const request = {
      ttl_ms: String(PROBE_SESSION_TTL_MS),
      client_name: 'disk-full-probe',
      request_id: newRequestId(),
    };
    try {
      const opened = await cluster.call(node, 'OpenSession', request, PROBE_CALL_DEADLINE_MS);
      return new Probe(cluster, node, String(opened.session_id));
    } catch {
      return new Probe(cluster, node, null);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  private async run(): Promise<void> {
    if (this.sessionId === null) return;
    while (!this.stopped && this.cluster.isRunning(this.node)) {
      const request = { session_id: this.sessionId };
      // Refusals are expected once the node stopped; its log says what it answered.
      await this.cluster
        .call(this.node, 'KeepAlive', request, PROBE_CALL_DEADLINE_MS)
        .catch(() => {});
      await sleep(PROBE_INTERVAL_MS);
    }
  }
}

function logSize(cluster: ProcessCluster, node: string): number {
  return statSync(cluster.logPath(node)).size;
}

function logSince(cluster: ProcessCluster, node: string, offset: number): string {
  return readFileSync(cluster.logPath(node)).subarray(offset).toString('utf8');
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

function sum(values: readonly number[]): number {
  return values.reduce((total, value) => total + value, 0);
}
