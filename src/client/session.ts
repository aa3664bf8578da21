import * as grpc from '@grpc/grpc-js';
import type { Connection } from './connection.ts';
import {
  acquireError,
  DlmClientError,
  LockModeError,
  LockNotAcquiredError,
  LockSetNotAcquiredError,
  NotElectedError,
  PermitsNotAcquiredError,
  SessionLostError,
} from './errors.ts';
import type { KeepAliveMember } from './keepalive.ts';
import { leaderFromWire, observeLeader } from './leader.ts';
import { type GrantMode, grantedMode, grantModeOf, type LockMode, wireModeOf } from './mode.ts';
import { newRequestId } from './request-id.ts';
import {
  type AcquireAllWire,
  type AcquirePermitsWire,
  type AcquireWire,
  type CampaignWire,
  methodOf,
  namesOf,
  type SettleOutcome,
  type SettleRequest,
  Settler,
} from './settle.ts';

export { newRequestId } from './request-id.ts';

export interface AcquireOptions {
  /** Exclusive unless given; either spelling. */
  readonly mode?: LockMode | GrantMode;
  /** How long the server may queue the request before answering "not acquired"; 0 = try once. */
  readonly waitMs?: number;
  /** Shown to others in Describe and in their LockNotAcquiredError. */
  readonly owner?: string;
  /** Gives up the Acquire (CANCELLED); like any failure of unknown outcome, it is then settled. */
  readonly signal?: AbortSignal;
}

/** One lock of an acquireAll, in its mode (exclusive unless given). */
export interface LockClaim {
  readonly name: string;
  readonly mode?: LockMode | GrantMode;
}

/** As AcquireOptions, for a set: the wait, owner and signal are the set's. */
export type AcquireAllOptions = Omit<AcquireOptions, 'mode'>;

/** Semaphore.acquire's options: as AcquireOptions, with the permits instead of a mode. */
export interface PermitOptions extends Omit<AcquireOptions, 'mode'> {
  /** How many permits this grant holds: 1 (the default) to the semaphore's limit. */
  readonly permits?: number;
}

/** Session.campaign's options: the wait (0 = lead now or not at all), owner and signal. */
export type CampaignOptions = Omit<AcquireOptions, 'mode'>;

export interface SessionOptions {
  /** Lease length; the cluster config bounds it (lock.sessionTtlMsMin..Max). */
  readonly ttlMs: number;
  readonly clientName?: string;
  /**
   * How long before the lease could end that `signal` fires: it covers clock-rate
   * drift between this process and the cluster, and the time work takes to notice.
   * Default: a tenth of the TTL, at least 200 ms.
   */
  readonly safetyMarginMs?: number;
  /** Per-call budget, retries included. Default 10 s. */
  readonly callTimeoutMs?: number;
  /**
   * Hears of failures in work the session does in the background, which no caller is
   * waiting for: a handle disposed after the signal fired that could not release, an
   * Acquire of unknown outcome that could not be settled.
   */
  readonly onError?: (error: Error) => void;
}

/**
 * A lease on the cluster that keeps itself alive. `signal` aborts at the safe deadline:
 * the send time of the last keepalive the cluster confirmed, plus the TTL, less the
 * safety margin. The cluster counts the TTL from when it applies a keepalive, which is
 * after it was sent, so until then the lease cannot have ended (clock drift aside,
 * which the margin covers). Work done under a lock should stop when it fires, and must
 * pass the fencing token to whatever it changes.
 */
export class Session {
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private deadlineTimer: NodeJS.Timeout | null = null;
  private ended = false;
  /** The cluster said the session is gone (a keepalive answered NOT_FOUND). */
  private goneOnCluster = false;
  private closing: Promise<void> | null = null;
  /** Handles not yet released, to tell a grant someone holds from one nobody does. */
  private readonly handles = new Set<LockHandle>();
  private readonly settler: Settler;
  /** acquire() calls in flight, by lock (see SettleHost.acquiresDone). */
  private readonly acquiring = new Map<string, Set<Promise<unknown>>>();
  /** How the connection's keepalive scheduler (shared by its sessions) sees this one. */
  private readonly keepAliveMember: KeepAliveMember;

  private constructor(
    private readonly connection: Connection,
    readonly id: string,
    readonly ttlMs: number,
    private readonly safetyMarginMs: number,
    private readonly callTimeoutMs: number,
    private readonly onError: (error: Error) => void,
    openedSendMs: number,
  ) {
    this.signal = this.controller.signal;
    this.settler = new Settler({
      id,
      connection,
      moot: () => {
        if (this.closing !== null) return 'sessionClosed';
        if (this.goneOnCluster) return 'sessionEnded';
        return connection.isClosed ? 'clientClosed' : null;
      },
      holdsGrant: (lock, token) => this.handleOf(lock, token) !== undefined,
      acquiresDone: (lock) =>
        Promise.allSettled([...(this.acquiring.get(lock) ?? [])]).then(() => {}),
      report: (error) => this.report(error),
    });
    this.keepAliveMember = {
      id,
      ttlMs,
      deadlineMs: () => this.deadlineMs,
      confirmed: (sentMs) => this.confirmed(sentMs),
      gone: () => {
        this.goneOnCluster = true;
        this.end(new SessionLostError(`session ${this.id} expired on the cluster`));
      },
    };
    this.confirmed(openedSendMs);
    connection.keepAlives.add(this.keepAliveMember);
  }

  static async open(connection: Connection, options: SessionOptions): Promise<Session> {
    const callTimeoutMs = options.callTimeoutMs ?? 10_000;
    const marginFor = (ttlMs: number): number =>
      options.safetyMarginMs ?? Math.max(200, Math.floor(ttlMs / 10));
    if (marginFor(options.ttlMs) >= options.ttlMs) {
      throw new Error(
        `safetyMarginMs (${marginFor(options.ttlMs)}) must be less than ttlMs (${options.ttlMs})`,
      );
    }
    const sentMs = connection.clock.nowMs();
    const opened = await connection.call(
      'Lock',
      'OpenSession',
      {
        ttl_ms: String(options.ttlMs),
        client_name: options.clientName ?? '',
        request_id: newRequestId(),
      },
      { deadlineMs: sentMs + callTimeoutMs },
    );
    // The cluster grants the TTL asked for (or refuses it), so the margin checked above holds.
    const ttlMs = Number(opened.ttl_ms);
    const margin = Math.min(marginFor(ttlMs), ttlMs - 1);
    return new Session(
      connection,
      String(opened.session_id),
      ttlMs,
      margin,
      callTimeoutMs,
      options.onError ?? (() => {}),
      sentMs,
    );
  }

  /** Whether the lease is still known good (the signal has not fired). */
  get alive(): boolean {
    return !this.signal.aborted;
  }

  /**
   * The safe deadline now: when `signal` fires unless a keepalive is confirmed first,
   * on the connection's clock (performance.now() unless one was given). A process that
   * is frozen (SIGSTOP, a long GC pause) past it runs its timers late, so its signal
   * fires late: this says when it should have.
   */
  get safeDeadlineMs(): number {
    return this.deadlineMs;
  }

  /**
   * Takes `lock`, waiting up to `waitMs` on the server. Resolves with a handle that holds
   * the fencing token; rejects with LockNotAcquiredError when the wait ends without it.
   *
   * If it fails with a DlmClientError whose outcomeUnknown is true (the cluster may have
   * granted it anyway: a deadline, UNAVAILABLE, CANCELLED, INTERNAL...), the session
   * settles it in the background and gives back a grant it finds; `settled()` waits for
   * that. Another acquire() of the same lock in this session waits for it too.
   */
  async acquire(lock: string, options: AcquireOptions = {}): Promise<LockHandle> {
    this.requireAlive();
    // While a settle of this lock may still release the session's grant of it, an
    // Acquire would be answered with that same grant (re-acquiring returns it), and the
    // settle would take it from under the new handle.
    await this.settler.idle(lock);
    this.requireAlive();
    const waitMs = options.waitMs ?? 0;
    const asked = grantModeOf(options.mode);
    const request: AcquireWire = {
      lock,
      session_id: this.id,
      mode: wireModeOf(asked),
      wait_ms: String(waitMs),
      request_id: newRequestId(),
      owner: options.owner ?? '',
    };
    const answer = await this.attempt(request, waitMs, options.signal);
    if (answer.acquired !== true) {
      const holders = (answer.holders ?? []) as { session_id: string; owner: string }[];
      throw new LockNotAcquiredError(
        lock,
        holders.map((holder) => ({ sessionId: holder.session_id, owner: holder.owner })),
      );
    }
    const token = String(answer.fencing_token);
    const sameGrant = this.handleOf(lock, token);
    const granted = grantedMode(answer, this.id, asked, sameGrant?.mode ?? null);
    if (granted !== asked) {
      // Nobody has a handle for a grant we refuse, unless a live one carries it.
      if (sameGrant === undefined) this.settler.start(request);
      throw new LockModeError(lock, asked, granted, token);
    }
    const handle = new LockHandle(this, lock, token, granted);
    this.handles.add(handle);
    return handle;
  }

  /**
   * Takes every lock of `claims` at once, each in its mode, or none (issue 17), waiting
   * up to `waitMs` on the server. While it waits it holds none of them, and it cannot
   * deadlock with another set over the same names, whatever order either names them
   * in. Resolves with one handle for the set: one fencing token, and release() frees
   * every lock of it. Rejects with LockSetNotAcquiredError when the wait ends without
   * the set, with DeadlockError (decisive: nothing was queued) when waiting would close
   * a wait-for cycle with other sessions, naming the cycle.
   *
   * As acquire(): a failure of unknown outcome is settled in the background (the set is
   * asked for again with wait_ms 0 and the same request id, and a grant found is given
   * back), and another acquire or acquireAll of any of these locks waits for that.
   */
  async acquireAll(
    claims: readonly LockClaim[],
    options: AcquireAllOptions = {},
  ): Promise<LockSetHandle> {
    this.requireAlive();
    const asked = claims.map((claim) => ({ name: claim.name, mode: grantModeOf(claim.mode) }));
    const request: AcquireAllWire = {
      locks: asked.map((claim) => ({ lock: claim.name, mode: wireModeOf(claim.mode) })),
      session_id: this.id,
      wait_ms: String(options.waitMs ?? 0),
      request_id: newRequestId(),
      owner: options.owner ?? '',
    };
    const names = namesOf(request);
    // As in acquire(): a settle that may still release one of these locks goes first.
    for (const name of names) await this.settler.idle(name);
    this.requireAlive();
    const answer = await this.attempt(request, options.waitMs ?? 0, options.signal);
    const locks = (answer.locks ?? []) as {
      lock: string;
      holders: { session_id: string; owner: string }[];
    }[];
    if (answer.acquired !== true) {
      throw new LockSetNotAcquiredError(
        names,
        locks.map((each) => ({
          lock: each.lock,
          holders: each.holders.map((holder) => ({
            sessionId: holder.session_id,
            owner: holder.owner,
          })),
        })),
      );
    }
    const token = String(answer.fencing_token);
    // The cluster grants a set in the modes asked or refuses it (alreadyHolding), so
    // unlike acquire() there is no other mode to be answered with.
    const byName = new Map(asked.map((claim) => [claim.name, claim.mode]));
    const held = names.map((name) => ({ name, mode: byName.get(name) ?? grantModeOf(undefined) }));
    const handle = new LockSetHandle(this, held, token);
    this.handles.add(handle);
    return handle;
  }

  /**
   * A semaphore of this session (issue 17): `name` allows at most `limit` permits held
   * at once, across all sessions. Every request of one semaphore must name the same
   * limit while it is in use (else KindMismatchError). Nothing is asked of the cluster
   * until acquire().
   */
  semaphore(name: string, limit: number): Semaphore {
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new Error(
        `semaphore ${JSON.stringify(name)}: limit must be an integer >= 1, got ${limit}`,
      );
    }
    return new Semaphore(this, name, limit);
  }

  /**
   * @internal Semaphore.acquire: `permits` of `name`, as acquire() takes a lock (the
   * same settling of an unknown outcome, the same waiting for earlier settles).
   */
  async acquirePermits(name: string, limit: number, options: PermitOptions): Promise<PermitHandle> {
    this.requireAlive();
    const permits = options.permits ?? 1;
    if (!Number.isSafeInteger(permits) || permits < 1 || permits > limit) {
      throw new Error(
        `semaphore ${JSON.stringify(name)}: permits must be an integer within [1, ${limit}] (its limit), got ${permits}`,
      );
    }
    await this.settler.idle(name);
    this.requireAlive();
    const waitMs = options.waitMs ?? 0;
    const request: AcquirePermitsWire = {
      name,
      permits: String(permits),
      limit: String(limit),
      session_id: this.id,
      wait_ms: String(waitMs),
      request_id: newRequestId(),
      owner: options.owner ?? '',
    };
    const answer = await this.attempt(request, waitMs, options.signal);
    const holders = (answer.holders ?? []) as { session_id: string; owner: string }[];
    if (answer.acquired !== true) {
      throw new PermitsNotAcquiredError(
        name,
        permits,
        holders.map((holder) => ({ sessionId: holder.session_id, owner: holder.owner })),
      );
    }
    const handle = new PermitHandle(this, name, String(answer.fencing_token), permits, limit);
    this.handles.add(handle);
    return handle;
  }

  /**
   * Campaigns to lead `election` with `value` (issue 17), waiting up to `waitMs` on the
   * server behind the candidates before it (FIFO). Resolves with a handle once this
   * session leads: its `token` is the term's fencing token, higher than every earlier
   * leader's, and its `signal` (the session's) fires before the lease, and with it the
   * leadership, can end. Rejects with NotElectedError when the wait ends first (naming
   * the leader then), KindMismatchError when the name is a lock or a semaphore.
   * A failure of unknown outcome is settled as for acquire().
   */
  async campaign(
    election: string,
    value: string,
    options: CampaignOptions = {},
  ): Promise<LeadershipHandle> {
    this.requireAlive();
    await this.settler.idle(election);
    this.requireAlive();
    const waitMs = options.waitMs ?? 0;
    const request: CampaignWire = {
      election,
      value,
      session_id: this.id,
      wait_ms: String(waitMs),
      request_id: newRequestId(),
      owner: options.owner ?? '',
    };
    const answer = await this.attempt(request, waitMs, options.signal);
    if (answer.elected !== true) {
      throw new NotElectedError(election, leaderFromWire(answer.leader));
    }
    // The value in force is the answer's: a session already leading is told of its term
    // as it stands, with the value it has (Proclaim changes it), not the one asked for.
    const inForce = leaderFromWire(answer.leader)?.value ?? value;
    const token = String(answer.fencing_token);
    const handle = new LeadershipHandle(this, election, token, inForce, this.connection);
    this.handles.add(handle);
    return handle;
  }

  /** @internal LeadershipHandle.proclaim: the leader's new value, through the log. */
  async proclaim(election: string, token: string, value: string, requestId: string): Promise<void> {
    await this.connection.call(
      'Lock',
      'Proclaim',
      { election, session_id: this.id, fencing_token: token, value, request_id: requestId },
      { deadlineMs: this.nowMs() + this.callTimeoutMs },
    );
  }

  /**
   * One attempt (Acquire, AcquireAll, AcquirePermits, Campaign) as every kind makes it:
   * counted in flight under each name it names (a settle waits for those), an outcome
   * the caller cannot be told settled in the background, a refusal as its error class.
   */
  private async attempt(
    request: SettleRequest,
    waitMs: number,
    signal: AbortSignal | undefined,
  ): Promise<Record<string, unknown>> {
    const names = namesOf(request);
    const call = this.connection.call('Lock', methodOf(request), request, {
      deadlineMs: this.nowMs() + this.callTimeoutMs + waitMs,
      waitMs,
      ...(signal === undefined ? {} : { signal }),
    });
    const inFlight = names.map((name) => {
      const set = this.acquiring.get(name) ?? new Set<Promise<unknown>>();
      this.acquiring.set(name, set);
      set.add(call);
      return [name, set] as const;
    });
    try {
      return await call;
    } catch (error) {
      if (error instanceof DlmClientError && error.outcomeUnknown) this.settler.start(request);
      throw acquireError(error, names);
    } finally {
      for (const [name, set] of inFlight) {
        set.delete(call);
        if (set.size === 0 && this.acquiring.get(name) === set) this.acquiring.delete(name);
      }
    }
  }

  /**
   * Resolves once every settle of an Acquire of unknown outcome has ended, with how
   * each ended ('unsettled' ones were also reported to onError). Never rejects.
   */
  settled(): Promise<SettleOutcome[]> {
    return this.settler.settled();
  }

  /**
   * Ends the session: its locks are released and its waits cancelled. Also after the
   * signal fired (the lease may still be live on the cluster, holding its locks until
   * it expires). Calling it again returns the same promise.
   */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    this.end(new SessionLostError(`session ${this.id} was closed`));
    // Closing frees every lock the session holds: settles have nothing left to do,
    // and no handle stands for a grant any more.
    this.settler.stop();
    this.handles.clear();
    await this.connection
      .call(
        'Lock',
        'CloseSession',
        { session_id: this.id, request_id: newRequestId() },
        { deadlineMs: this.nowMs() + this.callTimeoutMs },
      )
      .catch((error: unknown) => {
        // Already gone (expired): nothing left to close.
        if (!(error instanceof DlmClientError && error.errorCode === 'sessionNotFound'))
          throw error;
      });
  }

  /** Whether close() was called: the cluster then frees (or expires) all the session holds. */
  get closed(): boolean {
    return this.closing !== null;
  }

  /**
   * @internal Used by LockHandle, which keeps `requestId` for its retries: a Release
   * that applied but whose answer was lost is then answered by its first outcome
   * instead of being refused because the lock is no longer held.
   */
  async release(lock: string, token: string, requestId: string): Promise<void> {
    await this.connection.call(
      'Lock',
      'Release',
      { lock, session_id: this.id, fencing_token: token, request_id: requestId },
      { deadlineMs: this.nowMs() + this.callTimeoutMs },
    );
  }

  private handleOf(lock: string, token: string): LockHandle | undefined {
    for (const handle of this.handles) {
      if (handle.covers(lock) && handle.token === token) return handle;
    }
    return undefined;
  }

  /** @internal A handle whose lock was released no longer stands for a grant. */
  forget(handle: LockHandle): void {
    this.handles.delete(handle);
  }

  /** @internal Reports a failure of background work, which no caller awaits. */
  report(error: Error): void {
    try {
      this.onError(error);
    } catch {
      // A failing hook must not break the session's own work.
    }
  }

  private nowMs(): number {
    return this.connection.clock.nowMs();
  }

  private requireAlive(): void {
    if (this.signal.aborted) {
      throw this.signal.reason instanceof Error
        ? this.signal.reason
        : new SessionLostError(`session ${this.id} is lost`);
    }
  }

  private deadlineMs = 0;

  private confirmed(sentMs: number): void {
    if (this.ended) return;
    this.deadlineMs = Math.max(this.deadlineMs, sentMs + this.ttlMs - this.safetyMarginMs);
    if (this.deadlineTimer !== null) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = setTimeout(
      () =>
        this.end(
          new SessionLostError(
            `session ${this.id}: no keepalive confirmed in time; the lease may have ended`,
          ),
        ),
      Math.max(0, this.deadlineMs - this.nowMs()),
    );
  }

  private end(reason: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.connection.keepAlives.remove(this.keepAliveMember);
    if (this.deadlineTimer !== null) clearTimeout(this.deadlineTimer);
    this.controller.abort(reason);
  }
}

/** A held lock: its fencing token, and how to give it back. */
export class LockHandle {
  private released = false;
  private releasing: Promise<void> | null = null;
  /** Chosen at the first release() and kept for its retries. */
  private releaseRequestId: string | null = null;

  constructor(
    private readonly session: Session,
    readonly lock: string,
    /** The fencing token (a uint64 as a decimal string): pass it to what the lock protects. */
    readonly token: string,
    /** The mode of the grant: from the cluster's answer where it says, else as asked. */
    readonly mode: GrantMode,
  ) {}

  /** Whether this handle's grant includes `lock`. */
  covers(lock: string): boolean {
    return this.lock === lock;
  }

  /** Fires when the session that holds the lock may have lost it. */
  get signal(): AbortSignal {
    return this.session.signal;
  }

  /**
   * Releases the lock. If it fails, calling it again retries the same request, so a
   * release that applied but whose answer was lost resolves. Once it has resolved,
   * further calls resolve at once; concurrent calls share one attempt.
   */
  release(): Promise<void> {
    if (this.released) return Promise.resolve();
    this.releasing ??= this.releaseOnce().finally(() => {
      this.releasing = null;
    });
    return this.releasing;
  }

  /**
   * `await using lock = await session.acquire(...)` releases it at the end of the
   * block. Also after the signal fired: the signal fires before the lease can end, so
   * the lock may still be held, and would stay held until the lease expires. A lock
   * that is no longer held (the session ended, the grant is gone) is not an error here.
   * Bounded by the session's callTimeoutMs. After the signal fired, a failure goes to
   * the session's onError instead: the caller was told already that the lease may be
   * gone, and the lock goes with the lease, which is no longer kept alive.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    // close() frees every lock of the session, or the lease expiry does.
    if (this.session.closed) return;
    try {
      await this.release();
    } catch (error) {
      if (noLongerHeld(error)) return;
      if (this.session.alive) throw error;
      this.session.report(
        new Error(`could not release ${this.lock} (token ${this.token}) after the signal fired`, {
          cause: error,
        }),
      );
    }
  }

  private async releaseOnce(): Promise<void> {
    this.releaseRequestId ??= newRequestId();
    await this.session.release(this.lock, this.token, this.releaseRequestId);
    this.released = true;
    this.session.forget(this);
  }
}

/**
 * A set of locks held together by one grant (Session.acquireAll). `lock` and `mode` are
 * those of its first lock in code-unit order; `locks` lists them all. The cluster
 * releases the whole set on a Release of any of its locks, so release() and dispose
 * work as for one lock.
 */
export class LockSetHandle extends LockHandle {
  readonly locks: readonly { readonly name: string; readonly mode: GrantMode }[];

  constructor(
    session: Session,
    locks: readonly { readonly name: string; readonly mode: GrantMode }[],
    token: string,
  ) {
    const [first] = locks;
    if (first === undefined) throw new Error('a lock set holds at least one lock');
    super(session, first.name, token, first.mode);
    this.locks = locks;
  }

  override covers(lock: string): boolean {
    return this.locks.some((each) => each.name === lock);
  }
}

/** Refusals that say the grant is gone: the session ended, or another grant replaced it. */
function noLongerHeld(error: unknown): boolean {
  return (
    error instanceof DlmClientError &&
    (error.status === grpc.status.NOT_FOUND || error.status === grpc.status.FAILED_PRECONDITION)
  );
}

/**
 * A semaphore as a session sees it (Session.semaphore): its name and limit. acquire()
 * takes permits, each grant with a fencing token of its own.
 */
export class Semaphore {
  constructor(
    private readonly session: Session,
    readonly name: string,
    /** At most this many permits are held at once, across every session. */
    readonly limit: number,
  ) {}

  /**
   * Takes `permits` (default 1) of the semaphore, waiting up to `waitMs` on the server
   * behind the requests before it (FIFO, head of line). Resolves with a handle holding
   * this grant's own fencing token; rejects with PermitsNotAcquiredError when the wait
   * ends first, KindMismatchError when the name is a lock or an election, or a
   * semaphore others use with another limit. A failure of unknown outcome is settled
   * in the background, as for Session.acquire.
   */
  acquire(options: PermitOptions = {}): Promise<PermitHandle> {
    return this.session.acquirePermits(this.name, this.limit, options);
  }
}

/**
 * Permits of a semaphore held by one grant: `token` is this grant's own fencing token
 * (ValidateFence(name, token) tells whether it is still current), release() gives the
 * permits back. Its `signal` is the session's, as for a lock.
 */
export class PermitHandle extends LockHandle {
  constructor(
    session: Session,
    name: string,
    token: string,
    /** How many permits this grant holds. */
    readonly permits: number,
    /** The semaphore's limit. */
    readonly limit: number,
  ) {
    // A semaphore's grants are held in shared mode: several coexist.
    super(session, name, token, 'shared');
  }
}

/**
 * Leadership of an election (Session.campaign): `token` is the term's fencing token
 * (pass it to whatever the leader changes, so a deposed leader's writes are refused),
 * `signal` fires when the term may be over (stop leading then), proclaim() changes the
 * value others see, resign() steps down (the next candidate in line is elected).
 * `await using` resigns at the end of the block.
 */
export class LeadershipHandle extends LockHandle {
  private currentValue: string;
  private readonly term = new AbortController();
  private readonly watching = new AbortController();

  constructor(
    private readonly owning: Session,
    election: string,
    token: string,
    value: string,
    connection: Connection,
  ) {
    super(owning, election, token, 'exclusive');
    this.currentValue = value;
    const lease = owning.signal;
    const onLease = (): void => this.endTerm(lease.reason);
    // Removed when the term ends: a long-lived session campaigns many times.
    this.watching.signal.addEventListener('abort', () =>
      lease.removeEventListener('abort', onLease),
    );
    if (lease.aborted) this.endTerm(lease.reason);
    else lease.addEventListener('abort', onLease, { once: true });
    if (!this.term.signal.aborted) void this.watchTerm(connection);
  }

  /**
   * Fires before the session's lease can end, as a lock handle's does, and also once
   * this term is seen to have ended while the session lives on: an operator's Revoke, a
   * max hold, a release of the grant elsewhere. Those end the term at once, so the
   * signal comes after it (the next leader may already act): the token is what stops a
   * deposed leader's writes. The term is followed by an Observe of the election, which
   * needs the `read` right on it: without it (or if the election can no longer be
   * followed at all) the signal fires at once, since the term can no longer be vouched
   * for. A node cut off from the leader ends the Observe, which is then reopened at
   * another node: at once when it knows no leader, or once its confirming read fails
   * when it still hears the leader but cannot reach it or gets no entries (within the
   * cluster's runtime.observeConfirmIntervalMs plus twice its proposalTimeoutMs, about
   * 12 s by default: a confirmation that succeeded late covers only what was committed
   * when it began).
   */
  override get signal(): AbortSignal {
    return this.term.signal;
  }

  /**
   * Follows the election (Observe) until this term ends, then fires `signal`. A change
   * below the grant's index comes from a node that has not applied the grant yet.
   */
  private async watchTerm(connection: Connection): Promise<void> {
    const since = BigInt(this.token);
    try {
      const changes = observeLeader(connection, this.lock, { signal: this.watching.signal });
      for await (const change of changes) {
        if (BigInt(change.index) < since) continue;
        if (change.leader?.token === this.token) continue;
        const next = change.leader === null ? 'nobody leads' : `token ${change.leader.token} leads`;
        this.endTerm(
          new Error(`the term of ${this.lock} under token ${this.token} has ended: ${next}`),
        );
        return;
      }
    } catch (error) {
      if (this.watching.signal.aborted) return;
      // The election cannot be followed: the caller may not read it, or the name is no
      // longer an election (someone took it as a lock). Either way this handle can no
      // longer tell that the term lasts, so it says the term may be over (review rev4).
      const why = error instanceof Error ? error.message : String(error);
      this.endTerm(new Error(`the term of ${this.lock} can no longer be followed: ${why}`));
    }
  }

  private endTerm(reason: unknown): void {
    this.watching.abort();
    if (!this.term.signal.aborted) this.term.abort(reason);
  }

  /** The election's name. */
  get election(): string {
    return this.lock;
  }

  /** The value the cluster last confirmed for this leader. */
  get value(): string {
    return this.currentValue;
  }

  /**
   * Announces `value` as the leader's (Leader and Observe show it). Rejects with a
   * DlmClientError FAILED_PRECONDITION (notHolder, staleToken) once this term has ended.
   * A retry after an unknown outcome is safe: the connection retries with the same
   * request id, which the cluster applies once.
   */
  async proclaim(value: string): Promise<void> {
    await this.owning.proclaim(this.lock, this.token, value, newRequestId());
    this.currentValue = value;
  }

  /**
   * Steps down: the Release of the term's grant (see LockHandle.release). A handle from
   * DlmClient.campaign closes its own session instead, which releases the grant in the
   * same entry and ends the keepalives.
   */
  async resign(): Promise<void> {
    try {
      if (this.ownsSession) await this.owning.close();
      else await this.release();
    } finally {
      this.watching.abort();
    }
  }

  override async [Symbol.asyncDispose](): Promise<void> {
    try {
      if (this.ownsSession) await this.owning.close();
      else await super[Symbol.asyncDispose]();
    } finally {
      this.watching.abort();
    }
  }

  /** Whether resign() closes the session: it was opened for this campaign alone. */
  private ownsSession = false;

  /** @internal DlmClient.campaign: the session was opened for this leadership alone. */
  ownSession(): void {
    this.ownsSession = true;
  }
}
