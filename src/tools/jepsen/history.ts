import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { DlmClientError } from '../../client/index.ts';
import type { RegisterMode } from './register.ts';

/**
 * A Jepsen-style operation history. Every time is `performance.now()` of the test
 * process, one monotonic clock, so times are comparable; a client worker in a process of
 * its own reports its times on the wall clock it shares, converted (client-worker.ts). The
 * register's own record and the cluster's log are kept apart from it (register.ts,
 * raft-log.ts): the checkers compare the three.
 */
export type OpKind =
  | 'acquire'
  | 'acquire-all'
  | 'release'
  | 'write'
  | SessionOpKind
  | CoordinationOpKind;

/**
 * Semaphores and elections (issue 17; coordination-checker.ts): permits of the semaphore
 * `lock` (ended by a 'release' of their token), and a term of leadership of the
 * election `lock` (ended by a 'resign' of its token; 'proclaim' changes its value).
 */
export type CoordinationOpKind = 'acquire-permits' | 'campaign' | 'proclaim' | 'resign';

/** The kinds whose ok answer is a grant with a token, made by the log's 'granted' events. */
export const GRANT_KINDS: ReadonlySet<OpKind> = new Set([
  'acquire',
  'acquire-all',
  'acquire-permits',
  'campaign',
]);

/**
 * The session calls, recorded from the client library's call observer (the keepalives
 * are the session's own, on its timer): the linearizability checker's lease bound needs
 * when each refresh began, and the log replay checks their answers.
 */
export type SessionOpKind = 'open-session' | 'keep-alive' | 'close-session';

/**
 * ok: it happened; fail: it certainly did not, or (an acquire answered grantEnded, see
 * grantEnded) its effect had been undone by the answer; info: unknown (a timeout, a lost
 * answer).
 */
export type Outcome = 'ok' | 'fail' | 'info';

export interface Op {
  /** Position in the history (invocation order), to name the op in a violation. */
  readonly id: number;
  readonly client: string;
  /** The session the op ran in, when known (a re-acquire in one session keeps its token). */
  session?: string;
  readonly kind: OpKind;
  /**
   * '' for a session op: it names no lock. For an acquire-all, the first of `locks` in
   * code-unit order, which is the lock the client library releases the set by.
   */
  readonly lock: string;
  /**
   * For an acquire-all: every lock of the set, in the order it was asked for (a set
   * grant is a hold of each). For the release of a set: the set's locks.
   */
  readonly locks?: readonly string[];
  readonly invokeMs: number;
  /** null while pending, and for an op whose answer never came. */
  completeMs: number | null;
  outcome: Outcome;
  /** The fencing token: granted (acquire), released (release) or presented (write). */
  token?: string;
  /**
   * For an acquire (or acquire-all): when the session that asked for it fired its signal (the lease may be
   * lost), or its client gave the session up; its hold ends then.
   */
  lostAtMs?: number;
  /** Why it failed or is unknown, for the reader. */
  error?: string;
  /**
   * For an acquire (or acquire-all): the `owner` it sent, unique in the run, so the checker finds the
   * log entries that carried it (an unanswered acquire is resolved by it).
   */
  owner?: string;
  /** For an acquire-permits: how many permits it asked for, of the semaphore's `limit`. */
  readonly permits?: number;
  readonly limit?: number;
  /** For a campaign or proclaim: the leader's value. */
  value?: string;
  /** For a write: which register it went to. */
  register?: RegisterMode;
  /**
   * The request id the call carried (a retry carries the same one), which finds its
   * entries in the log. A keepalive carries none.
   */
  requestId?: string;
  /** For an `ok` answer: the applied log index its response header named. */
  answerIndex?: number;
  /** For an `ok` open-session: the lease length the cluster granted. */
  ttlMs?: number;
}

/**
 * A fault and its end. `target` is a node id, a client name (client-pause: the client
 * worker process is stopped between checking its lease and writing), or 'registers'
 * (the register process frozen), 'network' (a partition and its heal: the detail names
 * the shape and the cuts), or the node restarted under a faked clock, whose disk is full
 * (disk-full), whose record was corrupted (corrupt), or that is being added to or
 * removed from the cluster (member-add, member-remove; their end says whether it was
 * done and the voters Status then named).
 */
export type NemesisKind =
  | 'kill'
  | 'restart'
  | 'pause'
  | 'resume'
  | 'client-pause'
  | 'client-resume'
  | 'register-pause'
  | 'register-resume'
  | 'partition'
  | 'heal'
  | 'clock'
  | 'clock-restore'
  | 'disk-full'
  | 'disk-free'
  | 'corrupt'
  | 'corrupt-restore'
  | 'member-add'
  | 'member-added'
  | 'member-remove'
  | 'member-removed';

export interface NemesisEvent {
  readonly atMs: number;
  readonly kind: NemesisKind;
  readonly target: string;
  /** What exactly was done: a partition's shape and cuts, a clock fault's setting. */
  readonly detail?: string;
}

export function now(): number {
  return performance.now();
}

/** Appends ops as they are invoked, and fills in their outcome when they complete. */
export class History {
  readonly ops: Op[] = [];

  invoke(
    client: string,
    kind: OpKind,
    lock: string,
    fields: Partial<Op> = {},
    invokeMs = now(),
  ): Op {
    const op: Op = {
      ...fields,
      id: this.ops.length,
      client,
      kind,
      lock,
      invokeMs,
      completeMs: null,
      outcome: 'info',
    };
    this.ops.push(op);
    return op;
  }

  /** An 'info' op keeps completeMs null: its effect, if any, may come at any later time. */
  complete(
    op: Op,
    outcome: Outcome,
    fields: Partial<Pick<Op, 'token' | 'error'>> = {},
    completeMs = now(),
  ): void {
    op.completeMs = outcome === 'info' ? null : completeMs;
    op.outcome = outcome;
    if (fields.token !== undefined) op.token = fields.token;
    if (fields.error !== undefined) op.error = fields.error;
  }
}

/** An error as an op's `error`: the checkers read the class name of a client-side refusal. */
export function errorText(error: unknown): string {
  if (error instanceof DlmClientError)
    return `${error.errorCode ?? error.status}: ${error.message}`;
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * Whether an acquire was answered that its grant ended (FAILED_PRECONDITION,
 * grantEnded): the cluster granted the request and the grant ended before the answer (it
 * was withdrawn because the grant's answer could not be delivered, revoked, or reached
 * its max hold). Recorded as `fail` with its error: it holds nothing at the answer, and
 * the checkers read the error (linearizability/from-jepsen-lite.ts, log-answers.ts).
 */
export function grantEnded(error: unknown): boolean {
  return error instanceof DlmClientError && error.errorCode === 'grantEnded';
}

/** Describes an op in one line, for violation messages. */
export function describeOp(op: Op): string {
  const done = op.completeMs === null ? 'never' : op.completeMs.toFixed(1);
  const token = op.token === undefined ? '' : ` token=${op.token}`;
  const lost = op.lostAtMs === undefined ? '' : ` lostAt=${op.lostAtMs.toFixed(1)}`;
  const session = op.session === undefined ? '' : ` session=${op.session}`;
  const kind = op.register === undefined ? op.kind : `${op.kind}(${op.register})`;
  const lock =
    op.locks !== undefined ? ` [${op.locks.join(',')}]` : op.lock === '' ? '' : ` ${op.lock}`;
  const request = op.requestId === undefined ? '' : ` request=${op.requestId}`;
  const at = op.answerIndex === undefined ? '' : ` answeredAt=${op.answerIndex}`;
  return `#${op.id} ${op.client} ${kind}${lock} ${op.outcome}${token}${session}${request}${at} [${op.invokeMs.toFixed(1)}..${done}]${lost}`;
}

/** Each event that ends a fault, mapped to the kind of event that began it. */
const OPENING: Partial<Record<NemesisKind, NemesisKind>> = {
  restart: 'kill',
  resume: 'pause',
  'client-resume': 'client-pause',
  'register-resume': 'register-pause',
  heal: 'partition',
  'clock-restore': 'clock',
  'disk-free': 'disk-full',
  'corrupt-restore': 'corrupt',
  'member-added': 'member-add',
  'member-removed': 'member-remove',
};

export interface FaultWindow {
  readonly from: number;
  readonly to: number;
  readonly target: string;
  readonly kind: NemesisKind;
  readonly detail?: string;
}

function detailOf(event: NemesisEvent): { detail?: string } {
  return event.detail === undefined ? {} : { detail: event.detail };
}

/** Windows [from, to) when some node was down or frozen, a client paused or the registers frozen. */
export function faultWindows(events: readonly NemesisEvent[], endMs: number): FaultWindow[] {
  const windows: FaultWindow[] = [];
  const open = new Map<string, NemesisEvent>();
  for (const event of events) {
    const opens = OPENING[event.kind];
    const key = `${opens ?? event.kind}/${event.target}`;
    if (opens === undefined) {
      open.set(key, event);
      continue;
    }
    const start = open.get(key);
    if (start === undefined) continue;
    open.delete(key);
    windows.push({
      from: start.atMs,
      to: event.atMs,
      target: event.target,
      kind: start.kind,
      ...detailOf(start),
    });
  }
  for (const start of open.values()) {
    windows.push({
      from: start.atMs,
      to: endMs,
      target: start.target,
      kind: start.kind,
      ...detailOf(start),
    });
  }
  return windows;
}

/** The history as JSON lines: ops, then nemesis events (each as `{"nemesis": …}`). */
export function writeHistory(
  path: string,
  ops: readonly Op[],
  nemesisEvents: readonly NemesisEvent[],
): void {
  const lines = [
    ...ops.map((op) => JSON.stringify(op)),
    ...nemesisEvents.map((event) => JSON.stringify({ nemesis: event })),
  ];
  writeFileSync(path, lines.map((line) => `${line}\n`).join(''));
}
