import { Connection, type ConnectionOptions } from './connection.ts';
import { type AcquireOptions, type LockHandle, Session, type SessionOptions } from './session.ts';

export type { MonotonicClock } from './clock.ts';
export type { CallEnd, CallObserver, ConnectionOptions } from './connection.ts';
export {
  DeadlockError,
  DlmClientError,
  ERROR_CODE_KEY,
  LEADER_HINT_KEY,
  LockModeError,
  LockNotAcquiredError,
  LockSetNotAcquiredError,
  RETRY_AFTER_KEY,
  SessionLostError,
} from './errors.ts';
export { FenceGuard, FenceMisuseError, StaleTokenError } from './fence-guard.ts';
export type { GrantMode, LockMode } from './mode.ts';
export {
  type AcquireAllOptions,
  type AcquireOptions,
  type LockClaim,
  LockHandle,
  LockSetHandle,
  newRequestId,
  Session,
  type SessionOptions,
} from './session.ts';
export type { SettleOutcome, SettleResult } from './settle.ts';

/** A call's budget, retries included, unless the caller gives one. */
const DEFAULT_CALL_TIMEOUT_MS = 10_000;

export interface LockState {
  readonly holders: readonly { sessionId: string; owner: string; token: string }[];
  readonly waiters: readonly { sessionId: string; owner: string; mode: string }[];
  readonly mode: string;
}

/**
 * A dlm client (TypeScript). Give it any nodes' client addresses:
 *
 *   const client = new DlmClient({ endpoints: ['127.0.0.1:7101', '127.0.0.1:7102'] });
 *   await client.withLock('inventory/42', async ({ token, signal }) => { ... });
 *
 * or, for more than one lock per lease:
 *
 *   const session = await client.openSession({ ttlMs: 10_000 });
 *   const lock = await session.acquire('inventory/42', { waitMs: 5_000 });
 *   ... lock.token, session.signal ...
 *   await lock.release();
 *   await session.close();
 */
export class DlmClient {
  private readonly connection: Connection;

  constructor(options: ConnectionOptions) {
    this.connection = new Connection(options);
  }

  openSession(options: SessionOptions): Promise<Session> {
    return Session.open(this.connection, options);
  }

  /**
   * Runs `fn` while holding `lock` in a session of its own, then releases the lock and
   * closes the session, whatever `fn` does. `signal` fires if the lease may be lost:
   * stop work then.
   */
  async withLock<T>(
    lock: string,
    fn: (held: { token: string; signal: AbortSignal }) => Promise<T>,
    options: AcquireOptions & Partial<SessionOptions> = {},
  ): Promise<T> {
    const session = await this.openSession({ ...options, ttlMs: options.ttlMs ?? 10_000 });
    try {
      const handle: LockHandle = await session.acquire(lock, options);
      try {
        return await fn({ token: handle.token, signal: session.signal });
      } finally {
        if (session.alive) await handle.release();
      }
    } finally {
      await session.close();
    }
  }

  /** Whether `token` is the current grant of `lock` (what a protected resource may ask). */
  async validateFence(
    lock: string,
    token: string,
    options: { timeoutMs?: number } = {},
  ): Promise<{ valid: boolean; currentToken: string }> {
    const answer = await this.connection.call(
      'Lock',
      'ValidateFence',
      { lock, fencing_token: token },
      {
        deadlineMs: this.connection.clock.nowMs() + (options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS),
      },
    );
    return { valid: answer.valid === true, currentToken: String(answer.current_token) };
  }

  /** Who holds and who waits for `lock`; linearizable unless `stale`. */
  async describe(
    lock: string,
    options: { stale?: boolean; timeoutMs?: number } = {},
  ): Promise<LockState> {
    const answer = await this.connection.call(
      'Lock',
      'Describe',
      { lock, stale: options.stale ?? false },
      {
        deadlineMs: this.connection.clock.nowMs() + (options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS),
      },
    );
    const holders = (answer.holders ?? []) as Record<string, string>[];
    const waiters = (answer.waiters ?? []) as Record<string, string>[];
    return {
      holders: holders.map((each) => ({
        sessionId: String(each.session_id),
        owner: String(each.owner),
        token: String(each.fencing_token),
      })),
      waiters: waiters.map((each) => ({
        sessionId: String(each.session_id),
        owner: String(each.owner),
        mode: String(each.mode),
      })),
      mode: String(answer.mode),
    };
  }

  close(): void {
    this.connection.close();
  }
}
