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
  readonly keepAlivesAnswered: number;
  readonly keepAliveErrors: number;
  /** KeepAlives answered NOT_FOUND: the cluster had ended a session this client kept alive. */
  readonly keepAlivesNotFound: number;
  readonly keepAliveErrorMessages: BenchErrors;
  /** Sessions whose signal fired while the bench still kept them, by reason. */
  readonly sessionsLost: BenchErrors;
  /** KeepAlive sent → answered, ms; a uniform sample of those since the last reset. */
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
  private keepAlivesAnswered = 0;
  private keepAliveErrors = 0;
  private keepAlivesNotFound = 0;
  private keepAliveMessages = new ErrorTally();
  private lost = new ErrorTally();
  private latency = new Reservoir(LATENCY_SAMPLE_MAX);

  /** Counts every KeepAlive the sessions send, including retries' final outcome. */
  private readonly observe: CallObserver = (call) => {
    if (call.method !== 'KeepAlive') return () => {};
    const sentMs = performance.now();
    return (end) => {
      if ('response' in end) {
        this.keepAlivesAnswered++;
        this.latency.add(performance.now() - sentMs);
        return;
      }
      this.keepAliveErrors++;
      this.keepAliveMessages.note('keepalive', numbersOut(end.error));
      if (end.error.status === grpc.status.NOT_FOUND) this.keepAlivesNotFound++;
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
      keepAlivesAnswered: this.keepAlivesAnswered,
      keepAliveErrors: this.keepAliveErrors,
      keepAlivesNotFound: this.keepAlivesNotFound,
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
    this.keepAlivesAnswered = 0;
    this.keepAliveErrors = 0;
    this.keepAlivesNotFound = 0;
    this.keepAliveMessages = new ErrorTally();
    this.lost = new ErrorTally();
    return errors.snapshot();
  }
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
