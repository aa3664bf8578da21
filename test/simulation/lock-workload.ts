import type { LockCommand, LockLimits, LockResult } from '../../src/lock/index.ts';
import type { FencingToken, LogIndex, SessionId } from '../../src/util/ids.ts';
import type { Prng } from '../../src/util/prng.ts';
import { SafetyViolation } from './checker.ts';
import type { AppliedLockCommand } from './replica.ts';

/**
 * Simulated lock clients and the lock-level checks. Clients open sessions, keep them
 * alive, acquire (try and wait), release and close; they also crash (abandoning their
 * session, which must expire), pause past their TTL (and come back believing they hold
 * locks), release with stale tokens, and retry every request with its request id
 * until they see a result.
 *
 * The checks run on the first application of each entry anywhere in the cluster:
 * tokens are the granting entry's index and increase per lock; no session expires
 * before its TTL has run (allowing for clock drift) from the first apply of the
 * refresh it was timed from; and a retried request returns its first result.
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
  retriesDeduplicated: number;
  clientCrashes: number;
  clientPauses: number;
}

export class LockWorkload {
  private readonly clients: LockClient[];
  private readonly sessionOwner = new Map<SessionId, number>();
  private readonly sessionTtl = new Map<SessionId, number>();
  /** Virtual time at which each refreshing entry was first applied anywhere. */
  private readonly refreshAppliedAtMs = new Map<number, number>();
  private readonly lastGrantToken = new Map<string, number>();
  private readonly firstResults = new Map<string, string>();
  private acceptingNewWork = true;
  readonly stats: LockWorkloadStats = {
    sessionsOpened: 0,
    sessionsExpired: 0,
    grants: 0,
    releases: 0,
    staleRejections: 0,
    retriesDeduplicated: 0,
    clientCrashes: 0,
    clientPauses: 0,
  };

  constructor(
    private readonly prng: Prng,
    clientCount: number,
    /** Clock rates differ by at most this much from 1. */
    private readonly clockDriftMax: number,
    private readonly propose: (client: number, command: LockCommand) => void,
  ) {
    this.clients = Array.from({ length: clientCount }, (_, index) => newClient(index));
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
    if (roll < 0.4) this.acquire(client, client.session, nowMs);
    else if (roll < 0.7) this.release(client, client.session, nowMs);
    else if (roll < 0.74)
      this.send(
        client,
        { type: 'CloseSession', sessionId: client.session, requestId: this.requestId(client) },
        nowMs,
      );
    else if (roll < 0.77) this.staleRelease(client, client.session, nowMs);
    else if (roll < 0.79) this.crashClient(client);
    else if (roll < 0.82) this.pauseClient(client, nowMs);
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
    const fresh = newClient(client.index);
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
    if (client.session !== null && nowMs - client.lastKeepAliveMs >= client.ttlMs / 3) {
      client.lastKeepAliveMs = nowMs;
      this.propose(client.index, { type: 'KeepAlive', sessionIds: [client.session] });
    }
    for (const request of client.pending.values()) {
      if (nowMs - request.sentAtMs < RETRY_INTERVAL_MS) continue;
      request.sentAtMs = nowMs;
      this.propose(client.index, request.command);
    }
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

  /** Called once per entry: the first time any node applies it. */
  firstApplied(index: LogIndex, applied: AppliedLockCommand, nowMs: number): void {
    const { command, output } = applied;
    this.checkExactlyOnce(command, output.result);
    for (const event of output.events) {
      switch (event.type) {
        case 'granted':
          this.checkToken(index, event.lock, event.holder.token);
          this.clientOf(event.holder.sessionId)?.held.set(event.lock, event.holder.token);
          this.clientOf(event.holder.sessionId)?.waiting.delete(event.lock);
          this.stats.grants++;
          break;
        case 'released':
          this.clientOf(event.sessionId)?.held.delete(event.lock);
          this.stats.releases++;
          break;
        case 'waitEnded':
          if (event.reason !== 'granted')
            this.clientOf(event.sessionId)?.waiting.delete(event.lock);
          break;
        case 'sessionRefreshed':
          this.refreshAppliedAtMs.set(index, nowMs);
          break;
        case 'sessionEnded':
          this.sessionEnded(event.sessionId);
          break;
        default:
          break;
      }
    }
    if (command.type === 'ExpireSession' && output.result.type === 'SessionExpired') {
      this.checkExpiryNotEarly(command.sessionId, command.lastRefreshIndex, nowMs);
    }
    if ('requestId' in command) this.deliverResult(command, output.result);
  }

  /** A token is the index of the entry that made the grant, so it rises with every new grant. */
  private checkToken(index: LogIndex, lock: string, token: FencingToken): void {
    if (token !== (index as number)) {
      throw new SafetyViolation(`Fencing: grant of ${lock} at ${index} carries token ${token}`);
    }
    const last = this.lastGrantToken.get(lock) ?? 0;
    if (token < last)
      throw new SafetyViolation(`Fencing: ${lock} token went from ${last} to ${token}`);
    this.lastGrantToken.set(lock, token);
  }

  /**
   * The leader times a session from its own apply of the refresh, which is no earlier
   * than the first apply anywhere. A clock running fast by the drift bound measures the
   * TTL in (1 - drift) of real time; nothing may expire sooner than that.
   */
  private checkExpiryNotEarly(id: SessionId, refreshIndex: LogIndex, nowMs: number): void {
    const refreshedAtMs = this.refreshAppliedAtMs.get(refreshIndex);
    const ttlMs = this.sessionTtl.get(id);
    this.stats.sessionsExpired++;
    if (refreshedAtMs === undefined || ttlMs === undefined) return;
    const livedMs = nowMs - refreshedAtMs;
    const minimumMs = ttlMs * (1 - this.clockDriftMax) - 1e-6;
    if (livedMs < minimumMs) {
      throw new SafetyViolation(
        `Lease: session ${id} (ttl ${ttlMs} ms) expired ${livedMs.toFixed(1)} ms after its refresh at ${refreshIndex}`,
      );
    }
  }

  /** Exactly once: a request applied again (a retry) returns its first result. */
  private checkExactlyOnce(command: LockCommand, result: LockResult): void {
    if (!('requestId' in command)) return;
    const key =
      command.type === 'OpenSession'
        ? `${command.type}/${command.requestId}`
        : `${command.type}/${command.sessionId}/${command.requestId}`;
    const encoded = JSON.stringify(result);
    const first = this.firstResults.get(key);
    if (first === undefined) {
      // Only a request that changed state must be answered the same way when retried.
      if (result.type !== 'Rejected' && result.type !== 'NotAcquired') {
        this.firstResults.set(key, encoded);
      }
      return;
    }
    this.stats.retriesDeduplicated++;
    if (first !== encoded) {
      throw new SafetyViolation(
        `Exactly once: retry of ${key} returned ${encoded}, first result was ${first}`,
      );
    }
  }

  private deliverResult(
    command: Extract<LockCommand, { requestId: string }>,
    result: LockResult,
  ): void {
    const client = this.clients.find((each) => each.pending.has(command.requestId));
    if (client === undefined) return;
    client.pending.delete(command.requestId);
    switch (result.type) {
      case 'SessionOpened':
        client.session = result.sessionId;
        client.ttlMs = result.ttlMs;
        this.sessionOwner.set(result.sessionId, client.index);
        this.sessionTtl.set(result.sessionId, result.ttlMs);
        this.stats.sessionsOpened++;
        return;
      case 'NotAcquired':
        client.waiting.delete(result.lock);
        return;
      case 'Rejected':
        if (result.code === 'sessionNotFound') this.forgetSession(client);
        if (result.code === 'staleToken' || result.code === 'notHolder')
          this.stats.staleRejections++;
        if (command.type === 'Acquire') client.waiting.delete(command.lock);
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

function newClient(index: number): LockClient {
  return {
    index,
    generation: 0,
    session: null,
    ttlMs: 0,
    held: new Map(),
    waiting: new Set(),
    pending: new Map(),
    lastKeepAliveMs: 0,
    pausedUntilMs: null,
    crashed: false,
    requestSequence: 0,
  };
}
