import { Connection, type ConnectionOptions } from './connection.ts';
import { acquireError } from './errors.ts';
import {
  type Leader,
  type LeaderChange,
  leaderFromWire,
  type ObserveOptions,
  observeLeader,
} from './leader.ts';
import {
  type AcquireOptions,
  type CampaignOptions,
  type LeadershipHandle,
  type LockHandle,
  Session,
  type SessionOptions,
} from './session.ts';

export type { MonotonicClock } from './clock.ts';
export type { CallEnd, CallObserver, ConnectionOptions } from './connection.ts';
export {
  DeadlockError,
  DlmClientError,
  ERROR_CODE_KEY,
  KindMismatchError,
  LEADER_HINT_KEY,
  LockModeError,
  LockNotAcquiredError,
  LockSetNotAcquiredError,
  NotElectedError,
  PermitsNotAcquiredError,
  RETRY_AFTER_KEY,
  SessionLostError,
} from './errors.ts';
export { FenceGuard, FenceMisuseError, StaleTokenError } from './fence-guard.ts';
export type { Leader, LeaderChange, ObserveOptions } from './leader.ts';
export type { GrantMode, LockMode } from './mode.ts';
export {
  type AcquireAllOptions,
  type AcquireOptions,
  type CampaignOptions,
  LeadershipHandle,
  type LockClaim,
  LockHandle,
  LockSetHandle,
  newRequestId,
  PermitHandle,
  type PermitOptions,
  Semaphore,
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

  /**
   * Campaigns to lead `election` with `value` in a session of its own (issue 17), waiting
   * up to `waitMs` behind the candidates before it. The handle's `token` is the term's
   * fencing token, its `signal` fires before the session's lease (and the leadership)
   * can end: stop acting as leader then. resign() (or `await using`) closes the session,
   * which steps down. For several elections or locks under one lease, use
   * `session.campaign()` on a session of your own.
   */
  async campaign(
    election: string,
    value: string,
    options: CampaignOptions & Partial<SessionOptions> = {},
  ): Promise<LeadershipHandle> {
    const session = await this.openSession({ ...options, ttlMs: options.ttlMs ?? 10_000 });
    try {
      const handle = await session.campaign(election, value, options);
      handle.ownSession();
      return handle;
    } catch (error) {
      // Nobody else will close it: a candidate's wait ends with the session.
      await session.close().catch(() => {});
      throw error;
    }
  }

  /**
   * Who leads `election` now, or null; linearizable unless `stale`. A name held as a
   * lock or a semaphore is refused with KindMismatchError.
   */
  async leader(
    election: string,
    options: { stale?: boolean; timeoutMs?: number } = {},
  ): Promise<Leader | null> {
    const answer = await this.connection
      .call(
        'Lock',
        'Leader',
        { election, stale: options.stale ?? false },
        {
          deadlineMs:
            this.connection.clock.nowMs() + (options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS),
        },
      )
      .catch((error: unknown) => {
        throw acquireError(error, [election]);
      });
    return answer.has_leader === true ? leaderFromWire(answer.leader) : null;
  }

  /**
   * The leadership of `election` as it changes: first the leader now (`current`), then
   * each change as a node applies it (`elected`, `proclaimed`, `vacant`), until
   * `signal` fires, the client closes or the loop breaks. When the stream breaks it is
   * opened again (at the next node if this one went away) and starts with a new
   * `current`: changes in between are summed up by it, not replayed.
   */
  observe(election: string, options: ObserveOptions = {}): AsyncIterable<LeaderChange> {
    return observeLeader(this.connection, election, options);
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
