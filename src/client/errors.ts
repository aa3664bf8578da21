import * as grpc from '@grpc/grpc-js';
import type { GrantMode } from './mode.ts';

/** Trailing-metadata keys of the contract (proto/dlm.proto). */
export const ERROR_CODE_KEY = 'dlm-error-code';
export const LEADER_HINT_KEY = 'dlm-leader-hint';
export const RETRY_AFTER_KEY = 'dlm-retry-after-ms';

/**
 * A call that failed, with what the server said: the gRPC status, the stable
 * `dlm-error-code` (e.g. sessionNotFound, staleToken, UNAVAILABLE), the leader hint and
 * the backpressure retry hint when they were sent.
 */
export class DlmClientError extends Error {
  override readonly name: string = 'DlmClientError';

  constructor(
    message: string,
    readonly status: grpc.status,
    /** The server's `dlm-error-code`; null when the error did not come from a dlm node. */
    readonly errorCode: string | null,
    readonly leaderHint: string | null,
    readonly retryAfterMs: number | null,
    /**
     * For a mutation: whether it may have applied although the call failed. Set by the
     * connection from every attempt of the call; see Connection.call for the rule.
     */
    readonly outcomeUnknown = false,
  ) {
    super(message);
  }

  /** The same error, saying whether the call's mutation may have applied. */
  withOutcomeUnknown(outcomeUnknown: boolean): DlmClientError {
    if (outcomeUnknown === this.outcomeUnknown) return this;
    const copy = new DlmClientError(
      this.message,
      this.status,
      this.errorCode,
      this.leaderHint,
      this.retryAfterMs,
      outcomeUnknown,
    );
    if (this.stack !== undefined) copy.stack = this.stack;
    return copy;
  }

  static from(error: unknown, what: string): DlmClientError {
    if (error instanceof DlmClientError) return error;
    const serviceError = error as Partial<grpc.ServiceError>;
    if (typeof serviceError.code !== 'number') {
      const message = error instanceof Error ? error.message : String(error);
      return new DlmClientError(`${what}: ${message}`, grpc.status.UNKNOWN, null, null, null);
    }
    const trailer = (key: string): string | null => {
      const value = serviceError.metadata?.get(key)[0];
      return value === undefined ? null : String(value);
    };
    const retryAfter = trailer(RETRY_AFTER_KEY);
    const statusName = grpc.status[serviceError.code] ?? String(serviceError.code);
    return new DlmClientError(
      `${what}: ${statusName}: ${serviceError.details ?? ''}`,
      serviceError.code,
      trailer(ERROR_CODE_KEY),
      trailer(LEADER_HINT_KEY),
      retryAfter === null ? null : Number(retryAfter),
    );
  }

  /**
   * Whether sending the same request again is safe and may succeed: no leader or a node
   * down (UNAVAILABLE), or backpressure (RESOURCE_EXHAUSTED with a retry hint; a lock
   * limit, limitReached, has none and is final).
   */
  get retryable(): boolean {
    if (this.status === grpc.status.UNAVAILABLE) return true;
    return this.backpressure;
  }

  /** The runtime refused the call before it reached the state machine: nothing was done. */
  get backpressure(): boolean {
    return this.status === grpc.status.RESOURCE_EXHAUSTED && this.retryAfterMs !== null;
  }

  /**
   * The state machine's own answer to the request (a refusal, or the session or grant is
   * gone). It deduplicates by request id before anything else, so this is also what any
   * earlier attempt with the same request id came to: after it, the outcome is known.
   * (limitReached is the state machine's; the runtime's backpressure is not, nor is a
   * RESOURCE_EXHAUSTED with no dlm-error-code, which no node sent: grpc-js fails a call
   * so when its answer is over the receive limit, and that answer may have been a grant.)
   */
  get decisive(): boolean {
    switch (this.status) {
      case grpc.status.INVALID_ARGUMENT:
      case grpc.status.NOT_FOUND:
      case grpc.status.FAILED_PRECONDITION:
        return true;
      case grpc.status.RESOURCE_EXHAUSTED:
        return this.errorCode !== null && !this.backpressure;
      // The state machine refused a wait that would close a wait-for cycle (issue 17):
      // nothing was queued, and a retry of the request would get the same answer. Other
      // ABORTED answers (a Watch's gap) are not about a mutation.
      case grpc.status.ABORTED:
        return this.errorCode === 'deadlock';
      default:
        return false;
    }
  }

  /**
   * Whether this attempt did not apply, without telling anything of earlier attempts:
   * a decisive answer, backpressure, or a refusal before any handler ran.
   */
  get notApplied(): boolean {
    switch (this.status) {
      case grpc.status.UNIMPLEMENTED:
      case grpc.status.UNAUTHENTICATED:
      case grpc.status.PERMISSION_DENIED:
        return true;
      default:
        return this.decisive || this.backpressure;
    }
  }
}

/**
 * The cluster refused an Acquire or AcquireAll because its wait would close a wait-for
 * cycle between sessions (dlm-error-code deadlock): nothing was queued or granted, so the
 * outcome is known (decisive) and nothing is settled. `cycle` is the cluster's account
 * of it ("session 5 waits for "a" held by session 7, ..."). Waiting again in the same
 * way would be refused again: release what the session holds, or take the locks
 * together in one acquireAll, which cannot deadlock.
 */
export class DeadlockError extends DlmClientError {
  override readonly name = 'DeadlockError';
  /** The cycle, as the cluster named it. */
  readonly cycle: string;

  constructor(
    /** The locks the refused request asked for. */
    readonly locks: readonly string[],
    refusal: DlmClientError,
  ) {
    const cycle = cycleOf(refusal.message);
    super(
      `acquiring ${locks.map((lock) => JSON.stringify(lock)).join(', ')} would deadlock, so the cluster refused it (nothing was queued or granted): ${cycle}`,
      refusal.status,
      refusal.errorCode,
      refusal.leaderHint,
      refusal.retryAfterMs,
      false,
    );
    this.cycle = cycle;
  }
}

/** The cycle out of the server's message ("...: ABORTED: waiting would ...: <cycle>"). */
function cycleOf(message: string): string {
  const marker = 'wait-for cycle';
  const at = message.indexOf(marker);
  if (at === -1) return message;
  const colon = message.indexOf(': ', at);
  return colon === -1 ? message.slice(at) : message.slice(colon + 2);
}

/**
 * The cluster refused a request because its name is another kind of record than the
 * request asks for (dlm-error-code kindMismatch, issue 17): a lock asked for as a
 * semaphore or an election, or the other way round, or a semaphore asked with another
 * limit than its holders and waiters named. Nothing was applied (decisive), and asking
 * again the same way is refused again until the name's record is gone (no holder, no
 * waiter, no lock-delay). The message says what the name is.
 */
export class KindMismatchError extends DlmClientError {
  override readonly name = 'KindMismatchError';

  constructor(
    /** The name the refused request asked for. */
    readonly lock: string,
    refusal: DlmClientError,
  ) {
    super(
      `${JSON.stringify(lock)} cannot be used this way now (nothing was applied): ${refusal.message}`,
      refusal.status,
      refusal.errorCode,
      refusal.leaderHint,
      refusal.retryAfterMs,
      false,
    );
  }
}

/**
 * The error to give a caller of acquire/acquireAll/semaphore/campaign: a deadlock
 * refusal as a DeadlockError, a kind refusal as a KindMismatchError.
 */
export function acquireError(error: unknown, locks: readonly string[]): unknown {
  if (!(error instanceof DlmClientError)) return error;
  if (error instanceof DeadlockError || error instanceof KindMismatchError) return error;
  if (error.status === grpc.status.ABORTED && error.errorCode === 'deadlock') {
    return new DeadlockError(locks, error);
  }
  if (error.status === grpc.status.FAILED_PRECONDITION && error.errorCode === 'kindMismatch') {
    return new KindMismatchError(locks.join(', '), error);
  }
  return error;
}

/** An Acquire that did not get the lock within its wait: not an error of the cluster. */
export class LockNotAcquiredError extends Error {
  override readonly name: string = 'LockNotAcquiredError';

  constructor(
    readonly lock: string,
    /** Who held it when the wait ended. */
    readonly holders: readonly { readonly sessionId: string; readonly owner: string }[],
  ) {
    super(
      `${lock} was not acquired: held by ${holders.map((holder) => holder.owner || `session ${holder.sessionId}`).join(', ') || 'nobody, but not free (a lock-delay, or waiters ahead)'}`,
    );
  }
}

/**
 * An acquireAll that did not get its set within its wait: it holds none of the locks.
 * `lock` lists the set; `holders` are those of the locks that were not free, and
 * `blocked` says which lock each blocker holds.
 */
export class LockSetNotAcquiredError extends LockNotAcquiredError {
  override readonly name = 'LockSetNotAcquiredError';

  constructor(
    readonly locks: readonly string[],
    readonly blocked: readonly {
      readonly lock: string;
      readonly holders: readonly { readonly sessionId: string; readonly owner: string }[];
    }[],
  ) {
    super(
      locks.join(', '),
      blocked.flatMap((each) => each.holders),
    );
    const held = blocked
      .filter((each) => each.holders.length > 0)
      .map(
        (each) =>
          `${each.lock} held by ${each.holders.map((holder) => holder.owner || `session ${holder.sessionId}`).join(', ')}`,
      );
    this.message = `the set ${locks.join(', ')} was not acquired (none of it is held): ${held.join('; ') || 'no lock of it is held, but not all were free (a lock-delay, or waiters ahead)'}`;
  }
}

/** The session ended (expired, closed, or its safe deadline passed without a keepalive). */
export class SessionLostError extends Error {
  override readonly name = 'SessionLostError';
}

/**
 * The cluster answered an Acquire with a grant in another mode than asked for (as when
 * the session holds the lock already, in the other mode). No handle is given out for
 * it; a grant nobody else has a handle for is given back, as in a settle.
 */
export class LockModeError extends Error {
  override readonly name = 'LockModeError';

  constructor(
    readonly lock: string,
    readonly asked: GrantMode,
    readonly granted: GrantMode,
    /** The token of that grant. */
    readonly token: string,
  ) {
    super(
      `${lock}: asked for a ${asked} grant, the cluster answered with a ${granted} one (token ${token})`,
    );
  }
}

/**
 * Semaphore.acquire did not get its permits within its wait: not an error of the
 * cluster. `holders` are the semaphore's holders when the wait ended.
 */
export class PermitsNotAcquiredError extends LockNotAcquiredError {
  override readonly name = 'PermitsNotAcquiredError';

  constructor(
    readonly semaphore: string,
    /** The permits asked for. */
    readonly permits: number,
    holders: readonly { readonly sessionId: string; readonly owner: string }[],
  ) {
    super(semaphore, holders);
    this.message = `${permits} permits of ${semaphore} were not acquired: held by ${holders.map((holder) => holder.owner || `session ${holder.sessionId}`).join(', ') || 'nobody, but not free (a lock-delay, or waiters ahead)'}`;
  }
}

/**
 * Session.campaign did not lead within its wait: not an error of the cluster. `leader`
 * is who led when the wait ended (null: nobody, as during a lock-delay).
 */
export class NotElectedError extends Error {
  override readonly name = 'NotElectedError';

  constructor(
    readonly election: string,
    readonly leader: {
      readonly sessionId: string;
      readonly owner: string;
      readonly value: string;
    } | null,
  ) {
    super(
      `${election}: not elected within the wait; ${leader === null ? 'nobody leads' : `led by ${leader.owner || `session ${leader.sessionId}`} (value ${JSON.stringify(leader.value)})`}`,
    );
  }
}
