import * as grpc from '@grpc/grpc-js';
import type { Connection } from './connection.ts';
import { DlmClientError } from './errors.ts';

/** What the scheduler needs of a session it keeps alive. */
export interface KeepAliveMember {
  readonly id: string;
  readonly ttlMs: number;
  /** The session's safe deadline now: past it a confirmation is worth nothing. */
  deadlineMs(): number;
  /** A keepalive sent at `sentMs` (the connection's clock) was confirmed. */
  confirmed(sentMs: number): void;
  /** The cluster said the session is gone. */
  gone(): void;
}

/** The lock rules' default keepAliveBatchMax: a batch the cluster takes unless lowered. */
export const KEEPALIVE_BATCH_MAX_DEFAULT = 1_000;

/** How soon a batch that failed (not by the session's end) is tried again, at most. */
const RETRY_AFTER_FAILURE_MS = 250;

/** How early a session may be sent to share a firing of the timer (see fire()). */
const FIRE_SLACK_MS = 10;

interface Entry {
  readonly member: KeepAliveMember;
  /** When its next keepalive is due (the connection's clock). */
  dueMs: number;
  inFlight: boolean;
}

/**
 * Keeps every session of one connection alive with as few calls as it can: a session
 * is due a keepalive a third of its TTL after its last one ended, as it always was, and
 * when the first is due, every session of the same TTL due within a sixth of it goes
 * along in the same call (KeepAliveRequest.session_ids), up to the batch bound, split
 * beyond.
 * Sessions sent together are due together again, so N sessions soon cost about
 * N / batchMax calls per interval instead of N. Sending a session early is the only
 * cost, and it only makes its lease fresher.
 *
 * Each session's safe deadline counts from the send time of the call that confirmed
 * it, taken before the call goes out: the cluster counts the TTL from when it applies
 * the entry, which is later. One session the cluster calls expired ends alone.
 */
export class KeepAliveScheduler {
  private readonly entries = new Map<string, Entry>();
  private timer: NodeJS.Timeout | null = null;
  private timerAtMs = Number.POSITIVE_INFINITY;

  constructor(
    private readonly connection: Connection,
    /** Lowered (halved) when the cluster refuses a batch as malformed: see send(). */
    private batchMax: number,
  ) {
    if (!Number.isInteger(batchMax) || batchMax < 1) {
      throw new Error(`keepAliveBatchMax must be a positive integer, got ${batchMax}`);
    }
  }

  /** The largest batch it sends now. */
  get batchSizeMax(): number {
    return this.batchMax;
  }

  add(member: KeepAliveMember): void {
    const dueMs = this.nowMs() + intervalMs(member.ttlMs);
    this.entries.set(member.id, { member, dueMs, inFlight: false });
    this.armBy(dueMs);
  }

  remove(member: KeepAliveMember): void {
    if (this.entries.get(member.id)?.member !== member) return;
    this.entries.delete(member.id);
    if (this.entries.size === 0) this.disarm();
  }

  private nowMs(): number {
    return this.connection.clock.nowMs();
  }

  private disarm(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.timerAtMs = Number.POSITIVE_INFINITY;
  }

  private armAt(atMs: number): void {
    this.disarm();
    this.timerAtMs = atMs;
    this.timer = setTimeout(() => this.fire(), Math.max(0, atMs - this.nowMs()));
    this.timer.unref();
  }

  /** Moves the timer earlier if a session is due before it fires; O(1), no scan. */
  private armBy(dueMs: number): void {
    if (dueMs < this.timerAtMs) this.armAt(dueMs);
  }

  /**
   * Sends every session due now (or within its window) and sets the timer for the next:
   * one pass over the sessions per firing, however many there are. A firing also takes
   * those due within FIRE_SLACK_MS, so sessions due at distinct moments (one per call,
   * or opened one by one) cost at most about 1,000 / FIRE_SLACK_MS firings a second.
   */
  private fire(): void {
    this.timer = null;
    this.timerAtMs = Number.POSITIVE_INFINITY;
    // No call can go out any more: each session ends at its own safe deadline.
    if (this.connection.isClosed) return;
    const nowMs = this.nowMs();
    const due: Entry[] = [];
    let nextMs = Number.POSITIVE_INFINITY;
    for (const entry of this.entries.values()) {
      if (entry.inFlight) continue;
      if (entry.dueMs - this.windowMs(entry.member.ttlMs) <= nowMs) due.push(entry);
      else if (entry.dueMs < nextMs) nextMs = entry.dueMs;
    }
    due.sort((a, b) => a.dueMs - b.dueMs);
    for (const group of byTtl(due)) {
      for (let start = 0; start < group.length; start += this.batchMax) {
        void this.send(group.slice(start, start + this.batchMax));
      }
    }
    if (nextMs !== Number.POSITIVE_INFINITY) this.armAt(nextMs);
  }

  private async send(batch: readonly Entry[]): Promise<void> {
    for (const entry of batch) entry.inFlight = true;
    const members = batch.map((entry) => entry.member);
    // Taken before the call goes out: every session is credited with this, never later.
    const sentMs = this.nowMs();
    let nextInMs: (member: KeepAliveMember) => number = (member) => intervalMs(member.ttlMs);
    try {
      const answer = await this.connection.call('Lock', 'KeepAlive', request(members), {
        // Past the earliest safe deadline of the batch that session's confirmation is
        // worth nothing, and the rest are tried again soon after (below). The batch
        // shares one TTL (see byTtl), so this is about what each would have alone.
        deadlineMs: Math.max(sentMs + 1, earliestDeadlineMs(members)),
        // A frozen node must not eat the time left: short attempts leave room to try
        // the others before the safe deadline.
        attemptTimeoutMs: Math.max(100, Math.floor(shortestTtlMs(members) / 6)),
      });
      const expired = new Set(
        ((answer.expired_session_ids ?? []) as unknown[]).map((id) => String(id)),
      );
      for (const member of members) {
        if (!this.holds(member)) continue;
        if (expired.has(member.id)) member.gone();
        else member.confirmed(sentMs);
      }
    } catch (error) {
      const status = error instanceof DlmClientError ? error.status : null;
      const [only] = members;
      if (status === grpc.status.NOT_FOUND && members.length === 1 && only !== undefined) {
        if (this.holds(only)) only.gone();
      } else if (isBatchRefusal(error) && members.length > 1) {
        // The cluster's keepAliveBatchMax is lower than ours, or it predates session_ids
        // (it reads the batch as session_id 0), or the message was too large for it:
        // halve down to the one-session form.
        this.batchMax = Math.max(1, Math.floor(members.length / 2));
        nextInMs = () => 0;
      } else {
        // The deadline timer ends a session nothing got through for in time; the others
        // of the batch may still have time left.
        nextInMs = (member) => Math.min(intervalMs(member.ttlMs), RETRY_AFTER_FAILURE_MS);
      }
    }
    const doneMs = this.nowMs();
    for (const entry of batch) {
      entry.inFlight = false;
      entry.dueMs = doneMs + nextInMs(entry.member);
      if (this.holds(entry.member)) this.armBy(entry.dueMs);
    }
  }

  /**
   * How early a session may go along with a batch: at most half its interval. Only
   * FIRE_SLACK_MS when batches hold one session: sending early would then only cost calls.
   */
  private windowMs(ttlMs: number): number {
    return this.batchMax > 1 ? Math.max(FIRE_SLACK_MS, Math.floor(ttlMs / 6)) : FIRE_SLACK_MS;
  }

  private holds(member: KeepAliveMember): boolean {
    return this.entries.get(member.id)?.member === member;
  }
}

/**
 * The due sessions split by TTL, each group in the order given. Sessions of one TTL
 * share a call: a call's deadline and attempt timeout are those of its shortest TTL,
 * so a long-TTL session sent with short ones would time out on every call a cluster
 * answers too slowly for the short ones, though fast enough for it alone.
 */
function byTtl(entries: readonly Entry[]): Iterable<Entry[]> {
  const groups = new Map<number, Entry[]>();
  for (const entry of entries) {
    const group = groups.get(entry.member.ttlMs);
    if (group === undefined) groups.set(entry.member.ttlMs, [entry]);
    else group.push(entry);
  }
  return groups.values();
}

/** A loop, not Math.min(...): spreading a large array overflows the call stack. */
function earliestDeadlineMs(members: readonly KeepAliveMember[]): number {
  let earliestMs = Number.POSITIVE_INFINITY;
  for (const member of members) earliestMs = Math.min(earliestMs, member.deadlineMs());
  return earliestMs;
}

function shortestTtlMs(members: readonly KeepAliveMember[]): number {
  let shortestMs = Number.POSITIVE_INFINITY;
  for (const member of members) shortestMs = Math.min(shortestMs, member.ttlMs);
  return shortestMs;
}

/**
 * A refusal of the batch as such (its size or form), not of its sessions: a cluster's
 * INVALID_ARGUMENT, or a RESOURCE_EXHAUSTED gRPC itself raised for a message past its
 * size limit. A node's backpressure is RESOURCE_EXHAUSTED too, but it says so with a
 * dlm-error-code, and a smaller batch would not help it.
 */
function isBatchRefusal(error: unknown): boolean {
  if (!(error instanceof DlmClientError)) return false;
  if (error.status === grpc.status.INVALID_ARGUMENT) return true;
  return error.status === grpc.status.RESOURCE_EXHAUSTED && error.errorCode === null;
}

/** One session as before (so an older server takes it); several as session_ids. */
function request(members: readonly KeepAliveMember[]): object {
  const [only] = members;
  return members.length === 1 && only !== undefined
    ? { session_id: only.id }
    : { session_ids: members.map((member) => member.id) };
}

/** A keepalive a third of the TTL after the last: two more tries before the lease could end. */
function intervalMs(ttlMs: number): number {
  return Math.floor(ttlMs / 3);
}
