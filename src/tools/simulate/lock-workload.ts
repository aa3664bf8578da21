import type { LockCommand, LockLimits, LockResult } from '../../lock/index.ts';
import type { FencingToken, SessionId } from '../../util/ids.ts';
import type { Prng } from '../../util/prng.ts';
import type { AppliedLockCommand } from './replica.ts';

/**
 * Simulated lock clients and the lock-level checks. Clients open sessions, keep them
 * alive, acquire (try and wait), release and close; they also crash (abandoning their
 * session, which must expire), pause past their TTL (and come back believing they hold
 * locks), release with stale tokens, and retry every request with its request id
 * until they see a result. Some clients are sluggish: they send each keepalive about
 * one TTL after the last, so that a refresh and the leader's expiry of the same
 * session race each other in the log, which is where the expiry guard matters.
 *
 * Clients also take several locks at once (AcquireAll, issue 17) over overlapping names
 * in varying orders, and take single locks while they hold others: taken one by one,
 * those would deadlock, so the cluster may refuse such a wait as `deadlock` (the model
 * checks the cycle it names is real).
 *
 * Semaphore clients take permits of `sem/0` and `sem/1` (each with its fixed limit, a
 * random count up to it, try or wait) and election clients campaign in `elect/0` and
 * `elect/1` with a value, proclaim while they lead (sometimes with a stale token, or in
 * an election they do not lead, which must be refused) and resign (a Release). Their
 * names are their own, and their shares of the client actions come out of the actions
 * that did nothing before, so a share of 0 leaves a seed's draws as they were.
 *
 * The checks live in LockModel; this class only drives the clients and tells them
 * what the cluster answered.
 */
export const SIM_LOCK_LIMITS: Partial<LockLimits> = {
  sessionTtlMsMin: 100,
  sessionTtlMsMax: 5_000,
  waitersPerLockMax: 4,
  waitMsMax: 5_000,
  maxHoldMsMax: 5_000,
  lockDelayMs: 0,
  lockDelayMsMax: 1_000,
  dedupeWindowMax: 200,
};

const LOCK_NAMES = ['inventory/1', 'inventory/2', 'coupon/a', 'leader'] as const;
/** Semaphores and their fixed limits: every request of a name names its limit. */
export const SEMAPHORE_LIMITS: ReadonlyMap<string, number> = new Map([
  ['sem/0', 2],
  ['sem/1', 3],
]);
const SEMAPHORE_NAMES = [...SEMAPHORE_LIMITS.keys()];
const ELECTION_NAMES = ['elect/0', 'elect/1'] as const;
const RETRY_INTERVAL_MS = 250;

interface PendingRequest {
  readonly command: LockCommand;
  sentAtMs: number;
}

interface LockClient {
  readonly index: number;
  generation: number;
  session: SessionId | null;
  ttlMs: number;
  readonly held: Map<string, FencingToken>;
  readonly waiting: Set<string>;
  readonly pending: Map<string, PendingRequest>;
  lastKeepAliveMs: number;
  /** Sluggish clients keep alive about once per TTL instead of three times. */
  readonly sluggish: boolean;
  nextKeepAliveMs: number;
  pausedUntilMs: number | null;
  crashed: boolean;
  requestSequence: number;
}

export interface LockWorkloadStats {
  sessionsOpened: number;
  sessionsExpired: number;
  grants: number;
  releases: number;
  staleRejections: number;
  /** Requests sent again after RETRY_INTERVAL_MS without a result (same request id). */
  retriesSent: number;
  /** Retries that reached the log after an earlier copy had applied: answered from the dedupe table. */
  retriesDeduplicated: number;
  clientCrashes: number;
  clientPauses: number;
  /** Lock sets granted whole (AcquireAll), at once or after a wait. */
  setGrants: number;
  /** AcquireAll requests that were queued in every queue of their set. */
  setsQueued: number;
  /** Waits refused because they would have closed a wait-for cycle. */
  deadlockRefusals: number;
  /** Semaphore grants (one per AcquirePermits granted, at once or after a wait). */
  permitGrants: number;
  /** Elections won: a candidate became leader (at once or after a wait). */
  leaderGrants: number;
  /** Proclaims applied (the leader's new value in force). */
  proclaims: number;
  /** Proclaims refused: not the leader, or a stale term's token. */
  proclaimRefusals: number;
  /** Requests refused because the name is of another kind now. */
  kindMismatches: number;
}

/** Every lock figure at zero: a workload's start, and the sum of none. */
export function noLockStats(): LockWorkloadStats {
  return {
    sessionsOpened: 0,
    sessionsExpired: 0,
    grants: 0,
    releases: 0,
    staleRejections: 0,
    retriesSent: 0,
    retriesDeduplicated: 0,
    clientCrashes: 0,
    clientPauses: 0,
    setGrants: 0,
    setsQueued: 0,
    deadlockRefusals: 0,
    permitGrants: 0,
    leaderGrants: 0,
    proclaims: 0,
    proclaimRefusals: 0,
    kindMismatches: 0,
  };
}

/** Client actions that take a lock set, of every action (0.4 acquire something). */
export const DEFAULT_LOCK_SET_SHARE = 0.15;
/**
 * Client actions that take semaphore permits, and that campaign, proclaim or resign in
 * an election, of every action; both come out of the 0.18 that did nothing before.
 */
export const DEFAULT_SEMAPHORE_SHARE = 0.07;
export const DEFAULT_ELECTION_SHARE = 0.07;
/** Where the actions that did nothing before begin. */
const IDLE_FROM = 0.82;

export class LockWorkload {
  private readonly clients: LockClient[];
  private readonly sessionOwner = new Map<SessionId, number>();
  /** Requests applied at least once, to count retries. */
  private readonly appliedRequests = new Set<string>();
  private acceptingNewWork = true;
  readonly stats: LockWorkloadStats = noLockStats();

  constructor(
    private readonly prng: Prng,
    clientCount: number,
    private readonly propose: (client: number, command: LockCommand) => void,
    /** The share of client actions that take a lock set (AcquireAll), out of 0.4 acquiring. */
    private readonly lockSetShare = DEFAULT_LOCK_SET_SHARE,
    /** The share of client actions on semaphores, out of those that did nothing before. */
    private readonly semaphoreShare = DEFAULT_SEMAPHORE_SHARE,
    /** The share of client actions on elections, out of those that did nothing before. */
    private readonly electionShare = DEFAULT_ELECTION_SHARE,
  ) {
    if (semaphoreShare < 0 || electionShare < 0 || semaphoreShare + electionShare > 1 - IDLE_FROM)
      throw new Error(`semaphore and election shares must fit in ${1 - IDLE_FROM}`);
    this.clients = Array.from({ length: clientCount }, (_, index) =>
      newClient(index, this.prng.chance(0.3)),
    );
  }

  // ------------------------------------------------------------ driving clients

  /** One client acts; every live client keeps its session alive and retries what is pending. */
  step(nowMs: number): void {
    const client = this.prng.pick(this.clients);
    if (this.acceptingNewWork) this.act(client, nowMs);
    for (const each of this.clients) this.maintain(each, nowMs);
  }

  private act(client: LockClient, nowMs: number): void {
    if (client.crashed) {
      if (this.prng.chance(0.2)) this.restartClient(client);
      return;
    }
    if (client.pausedUntilMs !== null) return;
    if (client.session === null) {
      if (client.pending.size === 0) {
        const ttlMs = this.prng.pick([300, 600, 1200, 2400]);
        this.send(
          client,
          {
            type: 'OpenSession',
            ttlMs,
            clientName: `client-${client.index}`,
            requestId: this.requestId(client),
          },
          nowMs,
        );
      }
      return;
    }
    const roll = this.prng.nextFloat();
    if (roll < 0.4 - this.lockSetShare) this.acquire(client, client.session, nowMs);
    else if (roll < 0.4) this.acquireAll(client, client.session, nowMs);
    else if (roll < 0.7) this.release(client, client.session, nowMs);
    else if (roll < 0.74)
      this.send(
        client,
        { type: 'CloseSession', sessionId: client.session, requestId: this.requestId(client) },
        nowMs,
      );
    else if (roll < 0.77) this.staleRelease(client, client.session, nowMs);
    else if (roll < 0.79) this.crashClient(client);
    else if (roll < IDLE_FROM) this.pauseClient(client, nowMs);
    else if (roll < IDLE_FROM + this.semaphoreShare)
      this.acquirePermits(client, client.session, nowMs);
    else if (roll < IDLE_FROM + this.semaphoreShare + this.electionShare)
      this.elect(client, client.session, nowMs);
  }

  /** Permits of a semaphore it neither holds nor waits for: 1 up to the limit, try or wait. */
  private acquirePermits(client: LockClient, session: SessionId, nowMs: number): void {
    const lock = this.prng.pick(SEMAPHORE_NAMES);
    const limit = SEMAPHORE_LIMITS.get(lock) ?? 1;
    if (client.held.has(lock) || client.waiting.has(lock)) return;
    const command: LockCommand = {
      type: 'AcquirePermits',
      lock,
      permits: this.prng.intBetween(1, limit),
      limit,
      sessionId: session,
      waitMs: this.prng.pick([0, 200, 1000, 1000]),
      requestId: this.requestId(client),
      owner: `client-${client.index}`,
      maxHoldMs: this.prng.chance(0.1) ? 400 : 0,
      lockDelayMs: this.prng.chance(0.1) ? 200 : 0,
    };
    client.waiting.add(lock);
    this.send(client, command, nowMs);
  }

  /**
   * In an election it leads, the client proclaims a new value (now and then with the
   * token of an earlier term, which must be refused); in one it does not lead, it
   * campaigns, or now and then proclaims anyway (refused: only the leader proclaims).
   * It resigns through the release actions.
   */
  private elect(client: LockClient, session: SessionId, nowMs: number): void {
    const leads = ELECTION_NAMES.filter((name) => client.held.has(name));
    const lock = this.prng.pick(leads.length > 0 && this.prng.chance(0.8) ? leads : ELECTION_NAMES);
    const token = client.held.get(lock);
    const value = `v${client.index}.${client.requestSequence}`;
    const proclaim = (told: FencingToken): void =>
      this.send(
        client,
        {
          type: 'Proclaim',
          lock,
          sessionId: session,
          token: told,
          value,
          requestId: this.requestId(client),
        },
        nowMs,
      );
    if (token !== undefined) {
      proclaim(this.prng.chance(0.15) && token > 1 ? ((token - 1) as FencingToken) : token);
      return;
    }
    if (client.waiting.has(lock)) return;
    if (this.prng.chance(0.1)) {
      proclaim(this.prng.intBetween(1, 1000) as FencingToken);
      return;
    }
    if (this.prng.chance(0.05)) {
      // Now and then a plain try-lock of the election's name: refused kindMismatch while
      // the election has a record, and while it is held so, campaigns there are refused.
      this.send(
        client,
        {
          type: 'Acquire',
          lock,
          sessionId: session,
          mode: 'exclusive',
          waitMs: 0,
          requestId: this.requestId(client),
          owner: `client-${client.index}`,
          maxHoldMs: 0,
          lockDelayMs: 0,
        },
        nowMs,
      );
      client.waiting.add(lock);
      return;
    }
    const command: LockCommand = {
      type: 'Campaign',
      lock,
      value,
      sessionId: session,
      waitMs: this.prng.pick([0, 200, 1000, 1000]),
      requestId: this.requestId(client),
      owner: `client-${client.index}`,
      maxHoldMs: this.prng.chance(0.1) ? 400 : 0,
      lockDelayMs: this.prng.chance(0.2) ? 200 : 0,
    };
    client.waiting.add(lock);
    this.send(client, command, nowMs);
  }

  private acquire(client: LockClient, session: SessionId, nowMs: number): void {
    const lock = this.prng.pick(LOCK_NAMES);
    if (client.held.has(lock) || client.waiting.has(lock)) return;
    const command: LockCommand = {
      type: 'Acquire',
      lock,
      sessionId: session,
      mode: this.prng.chance(0.3) ? 'shared' : 'exclusive',
      waitMs: this.prng.pick([0, 0, 200, 1000]),
      requestId: this.requestId(client),
      owner: `client-${client.index}`,
      maxHoldMs: this.prng.chance(0.1) ? 400 : 0,
      lockDelayMs: this.prng.chance(0.2) ? 200 : 0,
    };
    client.waiting.add(lock);
    this.send(client, command, nowMs);
  }

  /**
   * Two or three of the names, in an order of this client's choosing (the cluster sorts
   * them, so two clients naming the same locks in opposite orders must not deadlock),
   * mostly exclusive. Names the client holds or waits for are left out, as a careful
   * client would; what it still names overlaps with other clients' sets and holdings.
   */
  private acquireAll(client: LockClient, session: SessionId, nowMs: number): void {
    const free = LOCK_NAMES.filter((name) => !client.held.has(name) && !client.waiting.has(name));
    if (free.length < 2) return;
    const names = this.prng
      .shuffle(free)
      .slice(0, this.prng.intBetween(2, Math.min(3, free.length)));
    const command: LockCommand = {
      type: 'AcquireAll',
      locks: names.map((lock) => ({
        lock,
        mode: this.prng.chance(0.25) ? 'shared' : 'exclusive',
      })),
      sessionId: session,
      waitMs: this.prng.pick([0, 200, 1000, 1000]),
      requestId: this.requestId(client),
      owner: `client-${client.index}`,
      maxHoldMs: this.prng.chance(0.1) ? 400 : 0,
      lockDelayMs: this.prng.chance(0.2) ? 200 : 0,
    };
    for (const name of names) client.waiting.add(name);
    this.send(client, command, nowMs);
  }

  private release(client: LockClient, session: SessionId, nowMs: number): void {
    const held = [...client.held.entries()];
    if (held.length === 0) return;
    const [lock, token] = this.prng.pick(held);
    this.send(
      client,
      { type: 'Release', lock, sessionId: session, token, requestId: this.requestId(client) },
      nowMs,
    );
  }

  /** A release with a token the client never held must be refused. */
  private staleRelease(client: LockClient, session: SessionId, nowMs: number): void {
    const lock = this.prng.pick(LOCK_NAMES);
    const token = (client.held.get(lock) ?? 1) - 1;
    if (token <= 0) return;
    this.send(
      client,
      {
        type: 'Release',
        lock,
        sessionId: session,
        token: token as FencingToken,
        requestId: this.requestId(client),
      },
      nowMs,
    );
  }

  /** A crashed client abandons its session; the cluster must expire it and free its locks. */
  private crashClient(client: LockClient): void {
    client.crashed = true;
    client.pending.clear();
    this.stats.clientCrashes++;
  }

  private restartClient(client: LockClient): void {
    const fresh = newClient(client.index, client.sluggish);
    Object.assign(client, {
      ...fresh,
      generation: client.generation + 1,
      requestSequence: client.requestSequence,
    });
  }

  /** A paused client stops keeping its session alive, possibly past its TTL. */
  private pauseClient(client: LockClient, nowMs: number): void {
    client.pausedUntilMs = nowMs + Math.round(client.ttlMs * (0.5 + this.prng.nextFloat() * 1.5));
    this.stats.clientPauses++;
  }

  private maintain(client: LockClient, nowMs: number): void {
    if (client.crashed) return;
    if (client.pausedUntilMs !== null) {
      if (nowMs < client.pausedUntilMs) return;
      client.pausedUntilMs = null;
    }
    if (this.keepingAlive && client.session !== null && nowMs >= client.nextKeepAliveMs) {
      client.lastKeepAliveMs = nowMs;
      client.nextKeepAliveMs = nowMs + this.keepAliveIntervalMs(client);
      this.propose(client.index, { type: 'KeepAlive', sessionIds: [client.session] });
    }
    for (const request of client.pending.values()) {
      if (nowMs - request.sentAtMs < RETRY_INTERVAL_MS) continue;
      request.sentAtMs = nowMs;
      this.stats.retriesSent++;
      this.propose(client.index, request.command);
    }
  }

  /**
   * A third of the TTL, or for a sluggish client 0.9 to 1.1 TTL: sometimes just in
   * time, sometimes just too late, so the refresh meets the expiry in the log.
   */
  private keepAliveIntervalMs(client: LockClient): number {
    if (!client.sluggish) return client.ttlMs / 3;
    return client.ttlMs * (0.9 + this.prng.nextFloat() * 0.2);
  }

  private send(client: LockClient, command: LockCommand, nowMs: number): void {
    if (!('requestId' in command)) return;
    client.pending.set(command.requestId, { command, sentAtMs: nowMs });
    this.propose(client.index, command);
  }

  private requestId(client: LockClient): string {
    return `k${client.index}.${client.generation}.${client.requestSequence++}`;
  }

  /** Healing: paused clients wake up and no new work starts; what is pending must finish. */
  heal(): void {
    this.acceptingNewWork = false;
    for (const client of this.clients) client.pausedUntilMs = null;
  }

  /**
   * Late in the liveness window, with nothing pending: clients stop keeping their
   * sessions alive, the sessions expire, and the log goes quiet, so that the liveness
   * check can see every member apply the leader's last commit.
   */
  quiesce(): void {
    this.keepingAlive = false;
  }

  private keepingAlive = true;

  pendingCount(): number {
    let pending = 0;
    for (const client of this.clients)
      if (!client.crashed) pending += client.pending.size + client.waiting.size;
    return pending;
  }

  /** Sessions of crashed clients that the cluster has not expired yet. */
  abandonedSessions(sessionIds: readonly SessionId[]): SessionId[] {
    return sessionIds.filter((id) => {
      const owner = this.clients[this.sessionOwner.get(id) ?? -1];
      return owner === undefined || owner.crashed || owner.session !== id;
    });
  }

  // ------------------------------------------------------------ checks and results

  /** Called once per entry: the first time any node applies it. Tells clients the outcome. */
  firstApplied(applied: AppliedLockCommand, nowMs: number): void {
    const { command, output } = applied;
    for (const event of output.events) {
      switch (event.type) {
        case 'granted':
          this.clientOf(event.holder.sessionId)?.held.set(event.lock, event.holder.token);
          this.clientOf(event.holder.sessionId)?.waiting.delete(event.lock);
          this.stats.grants++;
          // A set's grant is one event per lock; count the set once.
          if (event.holder.lockSet?.[0] === event.lock) this.stats.setGrants++;
          if (event.holder.permits !== undefined) this.stats.permitGrants++;
          if (event.holder.value !== undefined) this.stats.leaderGrants++;
          break;
        case 'proclaimed':
          this.stats.proclaims++;
          break;
        case 'released':
          this.clientOf(event.sessionId)?.held.delete(event.lock);
          this.stats.releases++;
          break;
        case 'waitEnded':
          if (event.reason !== 'granted')
            this.clientOf(event.sessionId)?.waiting.delete(event.lock);
          break;
        case 'sessionEnded':
          if (event.reason === 'expire') this.stats.sessionsExpired++;
          this.sessionEnded(event.sessionId);
          break;
        default:
          break;
      }
    }
    if ('requestId' in command) {
      const key = `${command.type}/${'sessionId' in command ? command.sessionId : ''}/${command.requestId}`;
      if (this.appliedRequests.has(key)) this.stats.retriesDeduplicated++;
      this.appliedRequests.add(key);
      this.deliverResult(command, output.result, nowMs);
    }
  }

  private deliverResult(
    command: Extract<LockCommand, { requestId: string }>,
    result: LockResult,
    nowMs: number,
  ): void {
    const client = this.clients.find((each) => each.pending.has(command.requestId));
    if (client === undefined) return;
    client.pending.delete(command.requestId);
    switch (result.type) {
      case 'SessionOpened':
        client.session = result.sessionId;
        client.ttlMs = result.ttlMs;
        // A sluggish client counts from the open; others keep alive at once, as before.
        client.nextKeepAliveMs =
          (client.sluggish ? nowMs : client.lastKeepAliveMs) + this.keepAliveIntervalMs(client);
        this.sessionOwner.set(result.sessionId, client.index);
        this.stats.sessionsOpened++;
        return;
      case 'NotAcquired':
        client.waiting.delete(result.lock);
        return;
      case 'QueuedAll':
        this.stats.setsQueued++;
        return;
      case 'NotAcquiredAll':
        for (const { lock } of result.locks) client.waiting.delete(lock);
        return;
      case 'Rejected':
        if (result.code === 'sessionNotFound') this.forgetSession(client);
        if (
          command.type === 'Release' &&
          (result.code === 'staleToken' || result.code === 'notHolder')
        )
          this.stats.staleRejections++;
        if (result.code === 'deadlock') this.stats.deadlockRefusals++;
        if (command.type === 'Proclaim') this.stats.proclaimRefusals++;
        if (result.code === 'kindMismatch') this.stats.kindMismatches++;
        if (
          command.type === 'Acquire' ||
          command.type === 'AcquirePermits' ||
          command.type === 'Campaign'
        )
          client.waiting.delete(command.lock);
        if (command.type === 'AcquireAll')
          for (const { lock } of command.locks) client.waiting.delete(lock);
        return;
      default:
        return;
    }
  }

  private sessionEnded(id: SessionId): void {
    const client = this.clientOf(id);
    if (client !== undefined) this.forgetSession(client);
  }

  private forgetSession(client: LockClient): void {
    client.session = null;
    client.held.clear();
    client.waiting.clear();
  }

  private clientOf(id: SessionId): LockClient | undefined {
    const owner = this.sessionOwner.get(id);
    const client = owner === undefined ? undefined : this.clients[owner];
    return client?.session === id ? client : undefined;
  }
}

function newClient(index: number, sluggish: boolean): LockClient {
  return {
    index,
    generation: 0,
    session: null,
    ttlMs: 0,
    held: new Map(),
    waiting: new Set(),
    pending: new Map(),
    lastKeepAliveMs: 0,
    sluggish,
    nextKeepAliveMs: 0,
    pausedUntilMs: null,
    crashed: false,
    requestSequence: 0,
  };
}
