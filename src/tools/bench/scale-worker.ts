import * as grpc from '@grpc/grpc-js';
import { type CallObserver, DlmClient, DlmClientError, type Session } from '../../client/index.ts';
import { type BenchErrors, ErrorTally } from './bench-errors.ts';
import type { ScaleToWorker } from './protocol.ts';

/**
 * A bench worker's part in the scale cells: many sessions through one client (one
 * Lock.Session stream per node, as a real process with many leases would have), kept
 * alive by the client library itself, with every KeepAlive counted as it ends. What it
 * keeps is bounded: counters, a fixed-size latency sample, and the sessions asked for.
 */
const LATENCY_SAMPLE_MAX = 4_000;
/** Budget of one call that does not wait (open, acquire with wait 0, close). */
const CALL_TIMEOUT_MS = 30_000;
const ATTEMPT_TIMEOUT_MS = 10_000;

export interface ScaleStats {
  /** Sessions opened and not yet closed by the bench. */
  readonly sessionsOpen: number;
  /** Of those, the ones whose signal has not fired. */
  readonly sessionsAlive: number;
  /** KeepAlive calls answered. One call refreshes up to keepAliveBatchMax sessions. */
  readonly keepAliveCallsAnswered: number;
  /** Sessions those calls refreshed: what a session's lease lives on. */
  readonly sessionsRefreshed: number;
  readonly keepAliveErrors: number;
  /**
   * Sessions the cluster answered as ended although this client kept them alive: a
   * one-session KeepAlive answered NOT_FOUND, or an id a batch's answer lists in
   * expired_session_ids.
   */
  readonly sessionsAnsweredExpired: number;
  readonly keepAliveErrorMessages: BenchErrors;
  /** Sessions whose signal fired while the bench still kept them, by reason. */
  readonly sessionsLost: BenchErrors;
  /** A KeepAlive call sent → answered, ms; a uniform sample of those since the last reset. */
  readonly keepAliveMsSample: readonly number[];
  /** This process so far: CPU (user + system) and event-loop time, ms. */
  readonly cpuMs: number;
  readonly loopActiveMs: number;
  readonly loopIdleMs: number;
  /** This process's resident memory now, MB: the load generator's own bound. */
  readonly rssMb: number;
}

/** Algorithm R: a uniform sample of at most `size` values from a stream of any length. */
export class Reservoir {
  private readonly values: number[] = [];
  private seen = 0;

  constructor(private readonly size: number) {}

  add(value: number): void {
    this.seen++;
    if (this.values.length < this.size) this.values.push(value);
    else {
      const slot = Math.floor(Math.random() * this.seen);
      if (slot < this.size) this.values[slot] = value;
    }
  }

  sample(): number[] {
    return [...this.values];
  }
}

class ScaleClients {
  private client: DlmClient | null = null;
  private sessions: Session[] = [];
  private closing = false;
  private keepAliveCallsAnswered = 0;
  private sessionsRefreshed = 0;
  private keepAliveErrors = 0;
  private sessionsAnsweredExpired = 0;
  private keepAliveMessages = new ErrorTally();
  private lost = new ErrorTally();
  private latency = new Reservoir(LATENCY_SAMPLE_MAX);

  /**
   * Counts every KeepAlive call the sessions' connection sends (retries' final outcome
   * included), and the sessions each refreshed: the client batches a connection's
   * sessions into one call (src/client/keepalive.ts).
   */
  private readonly observe: CallObserver = (call) => {
    if (call.method !== 'KeepAlive') return () => {};
    const sessions = sessionsIn(call.request);
    const sentMs = performance.now();
    return (end) => {
      if ('response' in end) {
        const expired = expiredIn(end.response);
        this.keepAliveCallsAnswered++;
        this.sessionsRefreshed += sessions - expired;
        this.sessionsAnsweredExpired += expired;
        this.latency.add(performance.now() - sentMs);
        return;
      }
      this.keepAliveErrors++;
      this.keepAliveMessages.note('keepalive', numbersOut(end.error));
      // Only a one-session call is answered NOT_FOUND; a batch lists its ended ids.
      if (end.error.status === grpc.status.NOT_FOUND) this.sessionsAnsweredExpired += sessions;
    };
  };

  async open(message: Extract<ScaleToWorker, { kind: 'scaleOpen' }>): Promise<{
    opened: number;
    errors: BenchErrors;
  }> {
    // A long attempt: 128 calls in flight on a busy machine wait long, and retrying them
    // elsewhere would only add forwarded copies of the same work. KeepAlives keep their
    // own short attempts (the session sets them).
    this.client ??= new DlmClient({
      endpoints: message.endpoints,
      onCall: this.observe,
      attemptTimeoutMs: ATTEMPT_TIMEOUT_MS,
    });
    const client = this.client;
    const errors = new ErrorTally();
    const first = this.sessions.length;
    await forEachLimited(message.count, message.concurrency, async (n) => {
      try {
        const session = await client.openSession({
          ttlMs: message.ttlMs,
          clientName: `${message.namePrefix}${first + n}`,
          callTimeoutMs: CALL_TIMEOUT_MS,
        });
        session.signal.addEventListener('abort', () => {
          if (!this.closing) this.lost.note('session', numbersOut(session.signal.reason));
        });
        this.sessions.push(session);
      } catch (error) {
        errors.note('open', numbersOut(error));
      }
    });
    return { opened: this.sessions.length - first, errors: errors.snapshot() };
  }

  async fill(
    message: Extract<ScaleToWorker, { kind: 'scaleFill' }>,
    onProgress: (acquired: number) => void,
  ): Promise<{ acquired: number; errors: BenchErrors }> {
    const errors = new ErrorTally();
    const sessions = this.sessions;
    let acquired = 0;
    await forEachLimited(
      sessions.length * message.locksPerSession,
      message.concurrency,
      async (n) => {
        // Session by session, so that each session's locks are taken close together.
        const sessionIndex = Math.floor(n / message.locksPerSession);
        const session = sessions[sessionIndex];
        if (session === undefined) return;
        const lock = `${message.lockPrefix}/s${session.id}/${n % message.locksPerSession}`;
        try {
          await session.acquire(lock, { waitMs: 0 });
          acquired++;
          if (acquired % 1_000 === 0) onProgress(acquired);
        } catch (error) {
          errors.note('acquire', numbersOut(error));
        }
      },
    );
    return { acquired, errors: errors.snapshot() };
  }

  stats(resetLatency: boolean): ScaleStats {
    const cpu = process.cpuUsage();
    const loop = performance.eventLoopUtilization();
    const stats: ScaleStats = {
      sessionsOpen: this.sessions.length,
      sessionsAlive: this.sessions.filter((session) => session.alive).length,
      keepAliveCallsAnswered: this.keepAliveCallsAnswered,
      sessionsRefreshed: this.sessionsRefreshed,
      keepAliveErrors: this.keepAliveErrors,
      sessionsAnsweredExpired: this.sessionsAnsweredExpired,
      keepAliveErrorMessages: this.keepAliveMessages.snapshot(),
      sessionsLost: this.lost.snapshot(),
      keepAliveMsSample: this.latency.sample(),
      cpuMs: (cpu.user + cpu.system) / 1000,
      loopActiveMs: loop.active,
      loopIdleMs: loop.idle,
      rssMb: process.memoryUsage.rss() / 2 ** 20,
    };
    if (resetLatency) this.latency = new Reservoir(LATENCY_SAMPLE_MAX);
    return stats;
  }

  /** Closes every session (freeing its locks), `concurrency` at once, then the client. */
  async close(concurrency: number): Promise<BenchErrors> {
    this.closing = true;
    const closing = this.sessions;
    this.sessions = [];
    const errors = new ErrorTally();
    await forEachLimited(closing.length, concurrency, async (n) => {
      await closing[n]?.close().catch((error: unknown) => {
        // A session the cluster already ended has nothing to close.
        if (!(error instanceof DlmClientError && error.errorCode === 'sessionNotFound'))
          errors.note('close', numbersOut(error));
      });
    });
    this.client?.close();
    this.client = null;
    this.closing = false;
    // The next cell counts from zero (the rates are deltas; these are totals).
    this.keepAliveCallsAnswered = 0;
    this.sessionsRefreshed = 0;
    this.keepAliveErrors = 0;
    this.sessionsAnsweredExpired = 0;
    this.keepAliveMessages = new ErrorTally();
    this.lost = new ErrorTally();
    return errors.snapshot();
  }
}

/** The sessions a KeepAlive request names: `session_ids`, or the one `session_id`. */
function sessionsIn(request: object): number {
  const ids = (request as { session_ids?: unknown }).session_ids;
  return Array.isArray(ids) ? ids.length : 1;
}

/** The sessions a KeepAlive answer says had ended (`expired_session_ids`). */
function expiredIn(response: Record<string, unknown>): number {
  const ids = response.expired_session_ids;
  return Array.isArray(ids) ? ids.length : 0;
}

/** Error text with its numbers as N, so that a storm of one error is one line in the tally. */
function numbersOut(error: unknown): Error {
  const text = error instanceof Error ? error.message : String(error);
  return new Error(text.replace(/\d+/g, 'N'));
}

/** Runs `task(0..count-1)` with at most `limit` in flight; each task handles its own errors. */
export async function forEachLimited(
  count: number,
  limit: number,
  task: (n: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) {
      const n = next++;
      await task(n);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, count)) }, lane));
}

export const scaleClients = new ScaleClients();
