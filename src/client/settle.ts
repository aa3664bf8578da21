import * as grpc from '@grpc/grpc-js';
import type { Connection } from './connection.ts';
import { DlmClientError } from './errors.ts';
import { newRequestId } from './request-id.ts';

/**
 * Settling an Acquire whose outcome the caller could not be told.
 *
 * An Acquire can fail on the client while it succeeds on the cluster: the client's
 * deadline passes a hop before the server's, so a grant applied in between is answered
 * to a call nobody listens to; a commit can time out or a leader change mid-request
 * after the entry is in the log. The caller was told it failed and holds no handle, yet
 * the session would hold the lock for as long as it lives. So the session asks again,
 * in the background, with the same request id (the cluster answers a retry with the
 * first outcome) and wait_ms 0:
 *
 * - `acquired`: the grant is ours and nobody has a handle for it: release it (unless a
 *   live handle of this session carries that very token: re-acquiring a held lock
 *   returns the grant the session has).
 * - `not acquired`, NOT_FOUND (session gone), FAILED_PRECONDITION (the grant ended, or
 *   the release found it ended), INVALID_ARGUMENT, limitReached: nothing is held.
 * - DEADLINE_EXCEEDED, UNAVAILABLE, backpressure, anything else: ask again after a
 *   backoff. A retry of a wait the server still has queued waits; the short deadline
 *   of the attempt cancels it, the server withdraws the waiter, and the next attempt
 *   finds no grant (or one given to the withdrawn wait, which it then releases).
 *
 * An AcquireAll (Session.acquireAll) is settled the same way, as one: it is asked
 * again as an AcquireAll, a grant found is given back by one Release of its first lock
 * (which releases the set), and it runs after the settles of each of its locks.
 *
 * Bounded: settleAttemptsMax attempts, each settleAttemptTimeoutMs, all within
 * settleTimeoutMs. Closing the session ends a settle at once (a closed session frees
 * every lock it holds), as does the session ending on the cluster; closing the client
 * ends it before its next attempt (the session, no longer kept alive, expires with its
 * locks). One that runs
 * out is reported to the session's onError: the session may hold the lock until it is
 * closed or expires.
 */
export type SettleResult =
  | 'released'
  | 'notHeld'
  | 'heldByHandle'
  | 'sessionClosed'
  | 'sessionEnded'
  | 'clientClosed'
  | 'unsettled';

export interface SettleOutcome {
  /** The lock, or for an AcquireAll the first of its set in code-unit order. */
  readonly lock: string;
  /** The Acquire's request id. */
  readonly requestId: string;
  readonly result: SettleResult;
}

/** The Acquire as it was sent (wire field names); only wait_ms changes. */
export interface AcquireWire {
  readonly lock: string;
  readonly session_id: string;
  readonly mode: string;
  readonly wait_ms: string;
  readonly request_id: string;
  readonly owner: string;
}

/** An AcquireAll as it was sent (wire field names); only wait_ms changes. */
export interface AcquireAllWire {
  readonly locks: readonly { readonly lock: string; readonly mode: string }[];
  readonly session_id: string;
  readonly wait_ms: string;
  readonly request_id: string;
  readonly owner: string;
}

/** An AcquirePermits as it was sent (wire field names); only wait_ms changes. */
export interface AcquirePermitsWire {
  readonly name: string;
  readonly permits: string;
  readonly limit: string;
  readonly session_id: string;
  readonly wait_ms: string;
  readonly request_id: string;
  readonly owner: string;
}

/** A Campaign as it was sent (wire field names); only wait_ms changes. */
export interface CampaignWire {
  readonly election: string;
  readonly value: string;
  readonly session_id: string;
  readonly wait_ms: string;
  readonly request_id: string;
  readonly owner: string;
}

/**
 * Any attempt a session settles: one lock, a set taken together, permits of a semaphore,
 * or a campaign (issue 17). Each is asked again by its own RPC; what it got is given
 * back by a Release of its name (a Resign is one).
 */
export type SettleRequest = AcquireWire | AcquireAllWire | AcquirePermitsWire | CampaignWire;

/** The RPC that made (and settles) the attempt. */
export function methodOf(
  request: SettleRequest,
): 'Acquire' | 'AcquireAll' | 'AcquirePermits' | 'Campaign' {
  if ('locks' in request) return 'AcquireAll';
  if ('permits' in request) return 'AcquirePermits';
  if ('election' in request) return 'Campaign';
  return 'Acquire';
}

/** The locks an attempt names, in code-unit order; for a set, the first stands for all. */
export function namesOf(request: SettleRequest): string[] {
  if ('locks' in request) {
    return request.locks.map((claim) => claim.lock).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }
  if ('permits' in request) return [request.name];
  if ('election' in request) return [request.election];
  return [request.lock];
}

/** What a settle needs of its session. */
export interface SettleHost {
  readonly id: string;
  readonly connection: Connection;
  /** Why settling is pointless or impossible now, or null. */
  moot(): 'sessionClosed' | 'sessionEnded' | 'clientClosed' | null;
  /** Whether a live handle of the session carries this grant. */
  holdsGrant(lock: string, token: string): boolean;
  /**
   * Resolves once no acquire() of `lock` started before now is in flight: one of them
   * may be answered with the very grant a settle finds (re-acquiring returns it).
   */
  acquiresDone(lock: string): Promise<void>;
  report(error: Error): void;
}

export class Settler {
  /**
   * Per lock, the last settle started that names it: the settles of a lock run one after
   * another, and a set's waits for those of each of its locks.
   */
  private readonly running = new Map<string, Promise<SettleOutcome>>();
  /** Every settle not yet ended, once each (a set's is under several locks above). */
  private readonly inFlight = new Set<Promise<SettleOutcome>>();
  private readonly abort = new AbortController();

  constructor(private readonly host: SettleHost) {}

  /** Starts settling `request` once the settles of its locks before it are done. */
  start(request: SettleRequest): void {
    const names = namesOf(request);
    const before = Promise.all(names.map((name) => this.running.get(name)));
    const settle = before.then(() => this.settle(request));
    this.inFlight.add(settle);
    for (const name of names) this.running.set(name, settle);
    void settle.then(() => {
      this.inFlight.delete(settle);
      for (const name of names) {
        if (this.running.get(name) === settle) this.running.delete(name);
      }
    });
  }

  /** Resolves when no settle of `lock` runs. */
  async idle(lock: string): Promise<void> {
    for (let chain = this.running.get(lock); chain !== undefined; chain = this.running.get(lock)) {
      await chain;
    }
  }

  /** Resolves, with their outcomes, once every settle has ended (including ones started meanwhile). */
  async settled(): Promise<SettleOutcome[]> {
    const outcomes: SettleOutcome[] = [];
    while (this.inFlight.size > 0) outcomes.push(...(await Promise.all([...this.inFlight])));
    return outcomes;
  }

  /** Cancels the calls in flight; the settles then end as moot. */
  stop(): void {
    this.abort.abort();
  }

  private async settle(request: SettleRequest): Promise<SettleOutcome> {
    const [lock = ''] = namesOf(request);
    const { connection } = this.host;
    const { attemptTimeoutMs, attemptsMax, timeoutMs } = connection.settle;
    const endMs = connection.clock.nowMs() + timeoutMs;
    const outcome = (result: SettleResult): SettleOutcome => ({
      lock,
      requestId: request.request_id,
      result,
    });
    /** One Release request id per grant found, so its retries are deduplicated. */
    const releaseIds = new Map<string, string>();
    let lastError: unknown = null;
    for (let attempt = 0; attempt < attemptsMax; attempt++) {
      if (attempt > 0) await this.pause(connection.retryDelayMs(attempt - 1), endMs);
      const moot = this.host.moot();
      if (moot !== null) return outcome(moot);
      const deadlineMs = Math.min(endMs, connection.clock.nowMs() + attemptTimeoutMs);
      if (deadlineMs <= connection.clock.nowMs()) break;
      try {
        return outcome(await this.attempt(request, deadlineMs, releaseIds));
      } catch (error) {
        if (error instanceof DlmClientError && error.decisive) {
          return outcome(error.status === grpc.status.NOT_FOUND ? 'sessionEnded' : 'notHeld');
        }
        lastError = error;
      }
    }
    const moot = this.host.moot();
    if (moot !== null) return outcome(moot);
    this.host.report(
      new Error(
        `could not settle ${methodOf(request)} ${request.request_id} of ${namesOf(request).join(', ')}: session ${this.host.id} may hold it until it is closed or expires`,
        { cause: lastError },
      ),
    );
    return outcome('unsettled');
  }

  private async attempt(
    request: SettleRequest,
    deadlineMs: number,
    releaseIds: Map<string, string>,
  ): Promise<SettleResult> {
    const { connection } = this.host;
    const options = { deadlineMs, attemptTimeoutMs: connection.settle.attemptTimeoutMs };
    const signal = { signal: this.abort.signal };
    const answer = await connection.call(
      'Lock',
      methodOf(request),
      { ...request, wait_ms: '0' },
      { ...options, ...signal },
    );
    // A Campaign answers `elected`, the others `acquired`.
    if (answer.acquired !== true && answer.elected !== true) return 'notHeld';
    const token = String(answer.fencing_token);
    const names = namesOf(request);
    await Promise.all(names.map((name) => this.host.acquiresDone(name)));
    // A live handle of any lock of the set carries the grant (a re-acquire of one lock
    // of a held set is told the set's token): releasing the set would free it from under
    // that handle (review test rev4-settle-set-vs-live-handle).
    if (names.some((name) => this.host.holdsGrant(name, token))) return 'heldByHandle';
    const [lock = ''] = names;
    let releaseId = releaseIds.get(token);
    if (releaseId === undefined) {
      releaseId = newRequestId();
      releaseIds.set(token, releaseId);
    }
    // Releasing any lock of a set releases the set.
    await connection.call(
      'Lock',
      'Release',
      {
        lock,
        session_id: request.session_id,
        fencing_token: token,
        request_id: releaseId,
      },
      { ...options, ...signal },
    );
    return 'released';
  }

  /** Waits `delayMs`, but not past `endMs` nor past stop(). */
  private pause(delayMs: number, endMs: number): Promise<void> {
    const waitMs = Math.max(0, Math.min(delayMs, endMs - this.host.connection.clock.nowMs()));
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.abort.signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      this.abort.signal.addEventListener('abort', done, { once: true });
    });
  }
}
