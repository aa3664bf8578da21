import { status } from '@grpc/grpc-js';
import type { LockMode } from '../../../lock/index.ts';
import type { Prng } from '../../../util/prng.ts';
import type { RuntimeChecker, Told } from './checker.ts';
import type { VirtualTime } from './scheduler.ts';

/**
 * Simulated clients of the public API. Each has one session at a time, kept alive by a
 * loop of its own, and one operation in flight: Acquire (try-lock and waits, exclusive
 * and shared, some abandoned by deadline or cancel), Release, Describe, ValidateFence,
 * CloseSession; and semaphore permits (AcquirePermits, given back by Release) and
 * elections (Campaign, Proclaim, Resign, Leader). A failed attempt is retried with the same request id, on the leader it
 * was pointed to or on any node, as the client library does. Everything a client is
 * told goes to the checker, and so does what it then believes: that it holds a lock
 * from its Acquired answer until it starts to release it, closes its session, or
 * passes its safe deadline (the send time of the last confirmed keepalive plus the TTL,
 * less the clock drift the cluster may have).
 */
export type LockMethod =
  | 'OpenSession'
  | 'KeepAlive'
  | 'CloseSession'
  | 'Acquire'
  | 'AcquireAll'
  | 'AcquirePermits'
  | 'Campaign'
  | 'Proclaim'
  | 'Resign'
  | 'Leader'
  | 'Release'
  | 'Describe'
  | 'ValidateFence';

export type CallResult =
  | {
      readonly ok: true;
      readonly node: string;
      // biome-ignore lint/suspicious/noExplicitAny: the wire shape depends on the method
      readonly response: any;
    }
  | {
      readonly ok: false;
      readonly node: string | null;
      readonly code: status;
      readonly dlmCode: string | null;
      readonly leaderHint: string | null;
      /** The client gave up (deadline or cancel) while the server still worked on it. */
      readonly serverSawGiveUp: boolean;
      /** Which process served the call, to tell later whether it lived on. */
      readonly process: { readonly node: string; readonly incarnation: number } | null;
    };

export interface CallOptions {
  readonly target: string;
  readonly deadlineMs: number;
  /** The client cancels the call this long after sending it. */
  readonly cancelAfterMs: number | null;
}

/** How clients reach the cluster; the runner implements it. */
export interface ClientTransport {
  call(method: LockMethod, request: object, options: CallOptions): Promise<CallResult>;
  readonly nodeIds: readonly string[];
}

export interface ClientOptions {
  readonly locks: readonly string[];
  readonly attemptsMax: number;
  /** Nodes' clock rates are within 1 ± this; the safe deadline allows for it. */
  readonly clockDriftMax: number;
  /**
   * The share of acquires that take 2–3 locks at once (AcquireAll). 0 draws nothing for
   * it, so that a seed's run stays what it was before sets were added.
   */
  readonly lockSetShare: number;
  /**
   * The shares of acquires that take semaphore permits, and that act in an election.
   * Both 0 draw nothing for them (a seed's run before them).
   */
  readonly semaphoreShare: number;
  readonly electionShare: number;
  /**
   * The share of waits given up (half by deadline, half by cancel). Absent: 2 in 5, drawn
   * as before it was an option, so that a seed's run stays what it was.
   */
  readonly giveUpShare?: number | undefined;
  /**
   * Clients neither close their sessions nor crash (the roll that would is spent idle),
   * so a grant left behind stays with a live session to the end of the run, where the
   * abandoned-acquire check looks. Absent: they do, as before it was an option.
   */
  readonly sessionsKept?: boolean | undefined;
  /**
   * Every read is a Leader read of an election (no Describe or ValidateFence), so that
   * the first stale read a run finds is one of an election. Absent: reads are mixed.
   */
  readonly leaderReadsOnly?: boolean | undefined;
  /**
   * A wait given up is given up within this many ms of sending (1 up to it, and up to the
   * wait), by deadline or cancel, often before its entry commits: the server grants what
   * its caller no longer hears of, and withdraws it. Absent: a deadline from 20 ms and a
   * cancel from 10 ms, up to the wait, drawn as before it was an option.
   */
  readonly giveUpAfterMsMax?: number | undefined;
  /**
   * Once an Acquire of one lock is given up with the server knowing, the client at once
   * asks for the same lock in the same mode under a new request, so the new request may
   * be told the given-up one's grant before that is withdrawn, and may be given up too.
   * Absent: it does not, and draws nothing for it.
   */
  readonly reacquiresGivenUp?: boolean | undefined;
}

/** The semaphores clients use, each with the limit every request of it names. */
export const SEMAPHORES: ReadonlyMap<string, number> = new Map([
  ['sem/0', 2],
  ['sem/1', 3],
]);
export const ELECTIONS: readonly string[] = ['elect/0', 'elect/1'];

/** An Acquire the client gave up on, after it was told it failed. */
export interface GivenUp {
  readonly client: string;
  readonly sessionId: number;
  readonly requestId: string;
  /** For a set, its first lock in code-unit order: every lock of it is held or none. */
  readonly lock: string;
  readonly atMs: number;
  /**
   * The processes that took an attempt of the request and answered with an error (the
   * last one had the call when the client gave up, if the server knew): each owes the
   * Withdraw of its attempt if that attempt applies.
   */
  readonly processes: readonly { readonly node: string; readonly incarnation: number }[];
}

export interface ClientStats {
  calls: number;
  retries: number;
  acquired: number;
  notAcquired: number;
  /** Of `acquired`, the sets (AcquireAll) granted. */
  setsAcquired: number;
  /** Of `acquired`, semaphore permits granted (AcquirePermits). */
  permitsAcquired: number;
  /** Of `acquired`, elections won (Campaign answered elected). */
  elected: number;
  /** Proclaims answered (the leader's new value in force). */
  proclaimed: number;
  /** Leader reads answered. */
  leaderReads: number;
  abandonedWaits: number;
  sessionsLost: number;
  reads: number;
  errors: Record<string, number>;
}

interface Session {
  readonly id: number;
  readonly ttlMs: number;
  safeUntilMs: number;
}

/** What one acquiring request is to attemptAcquire: what differs between the four. */
interface Acquiring {
  readonly method: 'Acquire' | 'AcquireAll' | 'AcquirePermits' | 'Campaign';
  /** The name a given-up request is recorded under (a set's: its first lock). */
  readonly lock: string;
  /** The request, sent the same on every attempt. */
  readonly request: (requestId: string, waitMs: number) => object;
  /** Tells the checker the answer and sets beliefs; true if it acquired. */
  readonly answered: (result: Extract<CallResult, { ok: true }>, requestId: string) => boolean;
}

const SAFE_MARGIN_MS = 2;

export class SimClient {
  private session: Session | null = null;
  private readonly toldGrants = new Set<string>();
  /** What it believes it holds; a set's locks each map to the set's grant (`set`). */
  private readonly held = new Map<
    string,
    {
      token: number;
      mode: LockMode;
      set?: readonly string[];
      /** A semaphore's permits, or an election the client leads. */
      kind?: 'semaphore' | 'election';
    }
  >();
  private leaderHint: string | null = null;
  private requestSequence = 0;
  private busy = false;
  private stopped = false;
  private crashed = false;
  private sessionEpoch = 0;

  constructor(
    readonly name: string,
    private readonly time: VirtualTime,
    private readonly prng: Prng,
    private readonly transport: ClientTransport,
    private readonly checker: RuntimeChecker,
    private readonly options: ClientOptions,
    private readonly stats: ClientStats,
    private readonly givenUp: GivenUp[],
  ) {}

  /** True while an operation (retries included) is in flight. */
  get idle(): boolean {
    return !this.busy;
  }

  /** Believes it holds `lock` with `token` (for the final check of abandoned Acquires). */
  holds(lock: string, token: number): boolean {
    return this.held.get(lock)?.token === token && this.sessionSafe();
  }

  /**
   * Whether this client was ever told it acquired `lock` with `token`, even when it did
   * not act on it (its session was past its safe deadline): such a grant is one its
   * caller learned of, not one left behind by a request it gave up.
   */
  wasTold(lock: string, token: number): boolean {
    return this.toldGrants.has(`${lock}/${token}`);
  }

  start(): void {
    this.loop().catch((error: unknown) => this.checker.harnessError(error));
  }

  /** No new operations from now on; the current one finishes, keepalives go on. */
  stop(): void {
    this.stopped = true;
  }

  /** Silent from now on: no keepalives either, so the cluster can go quiet. */
  halt(): void {
    this.stopped = true;
    this.sessionEpoch++;
  }

  // ------------------------------------------------------------ the two loops

  private async loop(): Promise<void> {
    while (!this.stopped && !this.crashed) {
      await this.sleep(this.prng.intBetween(1, 60));
      if (this.stopped || this.crashed) return;
      this.busy = true;
      try {
        await this.act();
      } finally {
        this.busy = false;
      }
    }
  }

  private async act(): Promise<void> {
    this.checkSafe();
    const session = this.session;
    if (session === null) {
      await this.openSession();
      return;
    }
    const roll = this.prng.nextFloat();
    if (roll < 0.45) {
      const { semaphoreShare, electionShare } = this.options;
      // Drawn only when there are kinds to draw, so that shares of 0 keep the seed's run.
      const kind = semaphoreShare + electionShare > 0 ? this.prng.nextFloat() : 1;
      const share = this.options.lockSetShare;
      if (kind < semaphoreShare) await this.acquirePermits(session);
      else if (kind < semaphoreShare + electionShare) await this.elect(session);
      else if (share > 0 && this.prng.chance(share)) await this.acquireAll(session);
      else await this.acquire(session);
    } else if (roll < 0.7) await this.release(session);
    else if (roll < 0.88 && this.options.leaderReadsOnly === true)
      await this.leader(this.prng.pick(ELECTIONS));
    else if (roll < 0.8) await this.describe();
    else if (roll < 0.88) await this.validateFence();
    else if (this.options.sessionsKept === true) return;
    else if (roll < 0.91) await this.closeSession(session);
    else if (roll < 0.92) this.crash();
  }

  /** Keeps one session alive: a keepalive every ttl/3, each attempt timed out at ttl/3. */
  private async keepAliveLoop(session: Session, epoch: number): Promise<void> {
    for (;;) {
      await this.sleep(Math.floor(session.ttlMs / 3));
      if (this.sessionEpoch !== epoch || this.crashed) return;
      this.checkSafe();
      if (this.session !== session) return;
      const sentMs = this.time.nowMs;
      const result = await this.transport.call(
        'KeepAlive',
        { session_id: String(session.id) },
        { target: this.pickNode(), deadlineMs: Math.floor(session.ttlMs / 3), cancelAfterMs: null },
      );
      this.stats.calls++;
      if (this.session !== session) return;
      if (result.ok) {
        this.tell(result, { kind: 'KeepAlive', sessionId: session.id });
        this.extend(session, sentMs);
      } else {
        this.noteError('KeepAlive', result);
        if (result.code === status.NOT_FOUND) this.loseSession('keepalive: NOT_FOUND');
      }
    }
  }

  // ------------------------------------------------------------ operations

  private async openSession(): Promise<void> {
    const ttlMs = this.prng.pick([600, 1_000, 2_000]);
    const requestId = this.requestId();
    // The lease may start at the first attempt's entry: time it from the first send.
    const firstSentMs = this.time.nowMs;
    const result = await this.withRetries('OpenSession', {
      ttl_ms: String(ttlMs),
      client_name: this.name,
      request_id: requestId,
    });
    if (result === null || !result.ok) return;
    const sessionId = Number(result.response.session_id);
    this.tell(result, { kind: 'OpenSession', requestId, sessionId });
    const session: Session = { id: sessionId, ttlMs, safeUntilMs: 0 };
    this.session = session;
    this.extend(session, firstSentMs);
    this.sessionEpoch++;
    this.keepAliveLoop(session, this.sessionEpoch).catch((error: unknown) =>
      this.checker.harnessError(error),
    );
  }

  private async acquire(session: Session): Promise<void> {
    const lock = this.prng.pick(this.options.locks);
    if (this.held.has(lock)) return;
    const mode: LockMode = this.prng.chance(0.25) ? 'shared' : 'exclusive';
    const gaveUp = await this.acquireLock(session, lock, mode);
    // At most once per request drawn: a re-acquire given up is not re-acquired again.
    if (gaveUp && this.options.reacquiresGivenUp === true && this.session === session)
      await this.acquireLock(session, lock, mode);
  }

  /** One Acquire of `lock`; true if the client gave it up with the server knowing. */
  private acquireLock(session: Session, lock: string, mode: LockMode): Promise<boolean> {
    return this.attemptAcquire(session, {
      method: 'Acquire',
      lock,
      request: (requestId, waitMs) => ({
        lock,
        session_id: String(session.id),
        mode: mode === 'shared' ? 'SHARED' : 'EXCLUSIVE',
        wait_ms: String(waitMs),
        request_id: requestId,
        owner: this.name,
      }),
      answered: (result, requestId) => {
        const acquired: boolean = result.response.acquired;
        const token = Number(result.response.fencing_token);
        this.tell(result, {
          kind: 'Acquire',
          sessionId: session.id,
          requestId,
          lock,
          mode,
          acquired,
          token,
        });
        if (acquired) this.toldGrants.add(`${lock}/${token}`);
        if (acquired && this.sessionSafe()) {
          this.stats.acquired++;
          this.held.set(lock, { token, mode });
          this.checker.beliefStarted(this.name, session.id, lock, token, mode, this.time.nowMs);
        }
        return acquired;
      },
    });
  }

  /**
   * Two or three locks at once, in a random order (taken one by one, two such clients
   * could deadlock), mostly exclusive. Retried, abandoned and checked as an Acquire is.
   */
  private async acquireAll(session: Session): Promise<void> {
    const count = Math.min(this.options.locks.length, this.prng.intBetween(2, 3));
    const names = this.prng.shuffle([...this.options.locks]).slice(0, count);
    if (names.some((name) => this.held.has(name))) return;
    const locks = names.map((lock) => ({
      lock,
      mode: (this.prng.chance(0.2) ? 'shared' : 'exclusive') as LockMode,
    }));
    await this.attemptAcquire(session, {
      method: 'AcquireAll',
      lock: [...names].sort()[0] as string,
      request: (requestId, waitMs) => ({
        locks: locks.map(({ lock, mode }) => ({
          lock,
          mode: mode === 'shared' ? 'SHARED' : 'EXCLUSIVE',
        })),
        session_id: String(session.id),
        wait_ms: String(waitMs),
        request_id: requestId,
        owner: this.name,
      }),
      answered: (result, requestId) => {
        const acquired: boolean = result.response.acquired;
        const token = Number(result.response.fencing_token);
        this.tell(result, {
          kind: 'AcquireAll',
          sessionId: session.id,
          requestId,
          locks,
          acquired,
          token,
        });
        if (acquired) for (const name of names) this.toldGrants.add(`${name}/${token}`);
        if (acquired && this.sessionSafe()) {
          this.stats.acquired++;
          this.stats.setsAcquired++;
          for (const { lock, mode } of locks) {
            this.held.set(lock, { token, mode, set: names });
            this.checker.beliefStarted(this.name, session.id, lock, token, mode, this.time.nowMs);
          }
        }
        return acquired;
      },
    });
  }

  /**
   * Permits of a semaphore, 1 up to its limit, try or wait (some waits abandoned), as an
   * Acquire is retried, abandoned and checked; told acquired, the client believes it
   * holds them until it gives them back.
   */
  private async acquirePermits(session: Session): Promise<void> {
    const lock = this.prng.pick([...SEMAPHORES.keys()]);
    const limit = SEMAPHORES.get(lock) ?? 1;
    if (this.held.has(lock)) return;
    const permits = this.prng.intBetween(1, limit);
    await this.attemptAcquire(session, {
      method: 'AcquirePermits',
      lock,
      request: (requestId, waitMs) => ({
        name: lock,
        permits: String(permits),
        limit: String(limit),
        session_id: String(session.id),
        wait_ms: String(waitMs),
        request_id: requestId,
        owner: this.name,
      }),
      answered: (result, requestId) => {
        const acquired: boolean = result.response.acquired;
        const token = Number(result.response.fencing_token);
        this.tell(result, {
          kind: 'AcquirePermits',
          sessionId: session.id,
          requestId,
          lock,
          permits,
          limit,
          acquired,
          token,
        });
        if (acquired) {
          // Counted as acquired when told, even past the safe deadline (unlike a lock).
          this.stats.acquired++;
          this.toldGrants.add(`${lock}/${token}`);
          if (this.sessionSafe()) {
            this.stats.permitsAcquired++;
            this.held.set(lock, { token, mode: 'shared', kind: 'semaphore' });
            this.checker.permitsBeliefStarted(
              this.name,
              session.id,
              lock,
              token,
              permits,
              limit,
              this.time.nowMs,
            );
          }
        }
        return acquired;
      },
    });
  }

  /**
   * In an election: while it leads, proclaim a new value, resign (through release) or
   * ask who leads; else campaign (try or wait, some abandoned) or ask who leads.
   */
  private async elect(session: Session): Promise<void> {
    const leads = ELECTIONS.filter((name) => this.held.has(name));
    const lock = this.prng.pick(leads.length > 0 && this.prng.chance(0.7) ? leads : ELECTIONS);
    const led = this.held.get(lock);
    if (led !== undefined) {
      if (this.prng.chance(0.6)) await this.proclaim(session, lock, led.token);
      else await this.leader(lock);
      return;
    }
    if (this.prng.chance(0.25)) {
      await this.leader(lock);
      return;
    }
    const value = `${this.name}.${this.requestSequence}`;
    await this.attemptAcquire(session, {
      method: 'Campaign',
      lock,
      request: (requestId, waitMs) => ({
        election: lock,
        value,
        session_id: String(session.id),
        wait_ms: String(waitMs),
        request_id: requestId,
        owner: this.name,
      }),
      answered: (result, requestId) => {
        const elected: boolean = result.response.elected;
        const token = Number(result.response.fencing_token);
        this.tell(result, {
          kind: 'Campaign',
          sessionId: session.id,
          requestId,
          lock,
          value,
          acquired: elected,
          token,
        });
        if (elected) {
          // Counted as acquired when told, even past the safe deadline (unlike a lock).
          this.stats.acquired++;
          this.toldGrants.add(`${lock}/${token}`);
          if (this.sessionSafe()) {
            this.stats.elected++;
            this.held.set(lock, { token, mode: 'exclusive', kind: 'election' });
            this.checker.leadBeliefStarted(this.name, session.id, lock, token, this.time.nowMs);
          }
        }
        return elected;
      },
    });
  }

  /** The leader's new value; an answer names the leader with it. */
  private async proclaim(session: Session, lock: string, token: number): Promise<void> {
    const value = `${this.name}.${this.requestSequence}`;
    const requestId = this.requestId();
    const result = await this.withRetries('Proclaim', {
      election: lock,
      session_id: String(session.id),
      fencing_token: String(token),
      value,
      request_id: requestId,
    });
    if (result?.ok !== true || this.session !== session) return;
    this.stats.proclaimed++;
    const leader = result.response.leader;
    this.tell(result, {
      kind: 'Proclaim',
      sessionId: session.id,
      requestId,
      lock,
      token,
      value,
      leader: leaderOf(leader),
    });
  }

  /** Who leads an election now (a linearizable read). */
  private async leader(lock: string): Promise<void> {
    const ackedBeforeIndex = this.checker.maxAckedIndex;
    const result = await this.readOnce('Leader', { election: lock });
    if (result === null) return;
    this.stats.leaderReads++;
    this.tell(result, {
      kind: 'Leader',
      lock,
      leader: result.response.has_leader === true ? leaderOf(result.response.leader) : null,
      ackedBeforeIndex,
    });
  }

  /**
   * One acquiring request (Acquire, AcquireAll, AcquirePermits, Campaign) with its
   * retries and give-ups. It draws a wait (some abandoned, by a deadline shorter than the
   * wait or by a cancel) and sends one request, with one request id, on every attempt.
   * An answer goes to `answered`, which tells the checker and sets beliefs; one that did
   * not acquire, or an attempt the server knew was abandoned, leaves a request given up
   * under `lock`.
   */
  private async attemptAcquire(session: Session, acquiring: Acquiring): Promise<boolean> {
    const { method, lock } = acquiring;
    const waitMs = this.prng.chance(0.35) ? 0 : this.prng.intBetween(50, 1_500);
    const giveUp = waitMs > 0 ? this.giveUpDraw() : 'no';
    const deadlineMs =
      giveUp === 'deadline'
        ? this.giveUpAfterMs(20, waitMs)
        : waitMs + 400 + this.prng.intBetween(0, 400);
    const cancelAfterMs = giveUp === 'cancel' ? this.giveUpAfterMs(10, waitMs) : null;
    const requestId = this.requestId();
    const request = acquiring.request(requestId, waitMs);
    const attempts: GivenUp['processes'][number][] = [];
    for (let attempt = 1; attempt <= this.options.attemptsMax; attempt++) {
      if (attempt > 1) this.stats.retries++;
      const result = await this.callOnce(method, request, deadlineMs, cancelAfterMs);
      if (this.session !== session) return false;
      if (!result.ok && result.process !== null) attempts.push(result.process);
      if (result.ok) {
        if (!acquiring.answered(result, requestId)) {
          this.stats.notAcquired++;
          this.gaveUp(session, requestId, lock, []);
        }
        return false;
      }
      this.noteError(method, result);
      if (giveUp !== 'no' && result.serverSawGiveUp) {
        // The client meant to give up; the server knew and must withdraw the wait.
        this.stats.abandonedWaits++;
        this.gaveUp(session, requestId, lock, attempts);
        return true;
      }
      if (result.code === status.NOT_FOUND) {
        this.loseSession(`${method}: NOT_FOUND`);
        return false;
      }
      if (!retryable(result.code)) return false;
      await this.sleep(this.backoffMs(attempt));
      if (!this.sessionSafe()) return false;
    }
    return false;
  }

  /** When a wait is given up, in ms after sending: one draw, early or not. */
  private giveUpAfterMs(fromMs: number, waitMs: number): number {
    const early = this.options.giveUpAfterMsMax;
    if (early === undefined) return this.prng.intBetween(fromMs, waitMs);
    return this.prng.intBetween(1, Math.min(early, waitMs));
  }

  /** How a wait ends if not granted: 'no' (it waits it out), by deadline, or by cancel. */
  private giveUpDraw(): 'no' | 'deadline' | 'cancel' {
    const share = this.options.giveUpShare;
    if (share === undefined) return this.prng.pick(['no', 'no', 'no', 'deadline', 'cancel']);
    if (!this.prng.chance(share)) return 'no';
    return this.prng.chance(0.5) ? 'deadline' : 'cancel';
  }

  private async release(session: Session): Promise<void> {
    const entry = this.prng.pick([...this.held.entries(), null]);
    if (entry === null) return;
    const [lock, { token, set, kind }] = entry;
    // It stops acting on the lock (on every lock of its set) before it asks to release it.
    for (const each of set ?? [lock]) {
      this.held.delete(each);
      this.checker.beliefEnded(this.name, each, this.time.nowMs);
    }
    const requestId = this.requestId();
    this.checker.releaseSent(session.id, requestId);
    // An election's leader resigns: a Release of its grant by another RPC.
    const result =
      kind === 'election'
        ? await this.withRetries('Resign', {
            election: lock,
            session_id: String(session.id),
            fencing_token: String(token),
            request_id: requestId,
          })
        : await this.withRetries('Release', {
            lock,
            session_id: String(session.id),
            fencing_token: String(token),
            request_id: requestId,
          });
    if (result?.ok === true && this.session === session) {
      this.tell(result, { kind: 'Release', sessionId: session.id, requestId, lock, token });
    }
  }

  private async closeSession(session: Session): Promise<void> {
    this.endBeliefs();
    this.session = null;
    this.sessionEpoch++;
    const requestId = this.requestId();
    const result = await this.withRetries('CloseSession', {
      session_id: String(session.id),
      request_id: requestId,
    });
    if (result?.ok === true) {
      this.tell(result, { kind: 'CloseSession', sessionId: session.id, requestId });
    }
  }

  private async describe(): Promise<void> {
    const lock = this.prng.pick(this.options.locks);
    const ackedBeforeIndex = this.checker.maxAckedIndex;
    const result = await this.readOnce('Describe', { lock });
    if (result === null) return;
    this.stats.reads++;
    const holders = (
      result.response.holders as { session_id: string; fencing_token: string }[]
    ).map((holder) => ({
      sessionId: Number(holder.session_id),
      token: Number(holder.fencing_token),
    }));
    this.tell(result, { kind: 'Describe', lock, holders, ackedBeforeIndex });
  }

  private async validateFence(): Promise<void> {
    const held = this.prng.pick([...this.held.entries(), null]);
    const lock = held?.[0] ?? this.prng.pick(this.options.locks);
    const token =
      held?.[1].token ?? this.prng.intBetween(1, Math.max(1, this.checker.appliedIndex));
    const ackedBeforeIndex = this.checker.maxAckedIndex;
    const result = await this.readOnce('ValidateFence', { lock, fencing_token: String(token) });
    if (result === null) return;
    this.stats.reads++;
    this.tell(result, {
      kind: 'ValidateFence',
      lock,
      token,
      valid: result.response.valid,
      currentToken: Number(result.response.current_token),
      ackedBeforeIndex,
    });
  }

  /** A client process dies: it stops, and its session is left to expire. */
  private crash(): void {
    this.endBeliefs();
    this.crashed = true;
    this.session = null;
    this.sessionEpoch++;
  }

  // ------------------------------------------------------------ calls

  private async readOnce(method: 'Describe' | 'ValidateFence' | 'Leader', request: object) {
    const result = await this.callOnce(method, request, 1_000, null);
    if (!result.ok) {
      this.noteError(method, result);
      return null;
    }
    return result;
  }

  /** Retries on transient errors with the same request, up to attemptsMax attempts. */
  private async withRetries(method: LockMethod, request: object): Promise<CallResult | null> {
    let last: CallResult | null = null;
    for (let attempt = 1; attempt <= this.options.attemptsMax; attempt++) {
      if (attempt > 1) this.stats.retries++;
      last = await this.callOnce(method, request, 1_000, null);
      if (last.ok) return last;
      this.noteError(method, last);
      if (last.code === status.NOT_FOUND) {
        if (method !== 'OpenSession') this.loseSession(`${method}: NOT_FOUND`);
        return last;
      }
      if (!retryable(last.code)) return last;
      await this.sleep(this.backoffMs(attempt));
    }
    return last;
  }

  private async callOnce(
    method: LockMethod,
    request: object,
    deadlineMs: number,
    cancelAfterMs: number | null,
  ): Promise<CallResult> {
    this.stats.calls++;
    const result = await this.transport.call(method, request, {
      target: this.pickNode(),
      deadlineMs,
      cancelAfterMs,
    });
    if (result.ok) {
      const leader: string = result.response.header?.leader_id ?? '';
      this.leaderHint = leader === '' ? this.leaderHint : leader;
    } else {
      this.leaderHint = result.leaderHint;
    }
    return result;
  }

  /** Half the calls go where the last answer said the leader is, the rest anywhere. */
  private pickNode(): string {
    if (this.leaderHint !== null && this.prng.chance(0.5)) return this.leaderHint;
    return this.prng.pick(this.transport.nodeIds);
  }

  private tell(result: Extract<CallResult, { ok: true }>, told: Told): void {
    this.checker.told({
      client: this.name,
      node: result.node,
      atMs: this.time.nowMs,
      index: Number(result.response.header.index),
      told,
    });
  }

  // ------------------------------------------------------------ session safety

  private extend(session: Session, sentMs: number): void {
    // A session once lost stays lost: the client does not act on it again.
    if (this.session !== session) return;
    const safeMs = sentMs + session.ttlMs * (1 - this.options.clockDriftMax) - SAFE_MARGIN_MS;
    session.safeUntilMs = Math.max(session.safeUntilMs, safeMs);
    this.checker.safeUntil(this.name, session.safeUntilMs);
  }

  private sessionSafe(): boolean {
    return this.session !== null && this.time.nowMs < this.session.safeUntilMs;
  }

  /** Past the safe deadline the client treats its session as lost, as the library does. */
  private checkSafe(): void {
    if (this.session !== null && !this.sessionSafe()) this.loseSession('safe deadline passed');
  }

  private loseSession(_why: string): void {
    if (this.session === null) return;
    this.stats.sessionsLost++;
    this.endBeliefs();
    this.session = null;
    this.sessionEpoch++;
  }

  private endBeliefs(): void {
    for (const lock of this.held.keys()) this.checker.beliefEnded(this.name, lock, this.time.nowMs);
    this.held.clear();
  }

  private gaveUp(
    session: Session,
    requestId: string,
    lock: string,
    processes: GivenUp['processes'],
  ): void {
    this.givenUp.push({
      client: this.name,
      sessionId: session.id,
      requestId,
      lock,
      atMs: this.time.nowMs,
      processes,
    });
  }

  // ------------------------------------------------------------ helpers

  private requestId(): string {
    // Numeric, as the API's uint64 request ids are; unique per client.
    const client = Number(this.name.replace(/\D/g, '')) + 1;
    return String(client * 1_000_000 + ++this.requestSequence);
  }

  private backoffMs(attempt: number): number {
    return this.prng.intBetween(0, Math.min(400, 20 * 2 ** attempt));
  }

  private noteError(method: string, result: Extract<CallResult, { ok: false }>): void {
    const key = `${method}:${status[result.code]}${result.dlmCode === null ? '' : `/${result.dlmCode}`}`;
    this.stats.errors[key] = (this.stats.errors[key] ?? 0) + 1;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.time.after(ms, `${this.name} wakes`, resolve));
  }
}

/** A LeaderInfo off the wire. */
// biome-ignore lint/suspicious/noExplicitAny: the wire shape of LeaderInfo
function leaderOf(leader: any): { sessionId: number; token: number; value: string } | null {
  if (leader === null || leader === undefined) return null;
  return {
    sessionId: Number(leader.session_id),
    token: Number(leader.fencing_token),
    value: String(leader.value ?? ''),
  };
}

function retryable(code: status): boolean {
  return (
    code === status.UNAVAILABLE ||
    code === status.DEADLINE_EXCEEDED ||
    code === status.RESOURCE_EXHAUSTED ||
    code === status.INTERNAL ||
    code === status.CANCELLED
  );
}
