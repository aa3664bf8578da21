/**
 * A tiny reference model of the lock state machine (DESIGN.md §4, issue 3), written
 * independently of src/lock: plain arrays and objects, linear scans, no indexes, no
 * cleverness. The property tests apply every command to both and compare results and
 * queries. It imports only types and the limits record from src.
 *
 * Rejected results are modelled by `type` and `code` only; `detail` is free text that
 * the unit tests check instead.
 */
import {
  LOCK_LIMIT_CEILINGS,
  type LockLimits,
  type RequiredLockLimitName,
} from '../../src/lock/limits.ts';
import type { LockCommand, LockMode } from '../../src/lock/types.ts';

const CEILINGS = LOCK_LIMIT_CEILINGS;

export interface ModelHolder {
  sessionId: number;
  owner: string;
  mode: LockMode;
  token: number;
  requestIndex: number;
}

export interface ModelWaiter {
  sessionId: number;
  owner: string;
  mode: LockMode;
  requestIndex: number;
  requestId: string;
  waitMs: number;
  maxHoldMs: number;
  lockDelayMs: number;
}

interface ModelGrant extends ModelHolder {
  maxHoldMs: number;
  lockDelayMs: number;
  /** The request the grant was made for. */
  requestId: string;
  /** Later requests told of the grant (re-acquires): each must be withdrawn too. */
  alsoFor: string[];
}

export interface ModelSession {
  id: number;
  ttlMs: number;
  clientName: string;
  /** Who opened it ('' anonymous): only commands of that identity may use it. */
  identity: string;
  lastRefreshIndex: number;
}

export interface ModelLock {
  name: string;
  /** In the order they were granted. */
  holders: ModelGrant[];
  /** In the order they queued. */
  waiters: ModelWaiter[];
  /**
   * Every lock-delay placed and not yet ended. Each expired holder's delay runs its full
   * length, so the lock stays closed while any is here.
   */
  delays: { index: number; delayMs: number }[];
}

/** What the model says a command returns. Rejected carries no detail. */
export type ModelResult =
  | { type: 'SessionOpened'; sessionId: number; ttlMs: number }
  | { type: 'KeptAlive'; refreshed: number[]; missing: number[] }
  | { type: 'SessionClosed'; sessionId: number }
  | { type: 'SessionExpired'; sessionId: number }
  | { type: 'Acquired'; lock: string; token: number; mode: LockMode; holders: ModelHolder[] }
  | { type: 'Queued'; lock: string; position: number }
  | { type: 'NotAcquired'; lock: string; holders: ModelHolder[] }
  | { type: 'Released'; lock: string }
  | { type: 'WaitCancelled'; lock: string }
  | { type: 'Withdrawn'; lock: string; undid: 'wait' | 'grant' | 'nothing' }
  | { type: 'Revoked'; lock: string; freed: number }
  | { type: 'WaitExpired'; lock: string; sessionId: number }
  | { type: 'LockDelayEnded'; lock: string }
  | { type: 'MaxHoldReached'; lock: string; token: number }
  | { type: 'Promoted'; lock: string; sessionId: number; token: number }
  | { type: 'RulesSet'; rules: LockLimits }
  | { type: 'BehaviourSet'; version: number }
  | { type: 'Stale' }
  | { type: 'Rejected'; code: string };

export interface ModelDescription {
  lock: string;
  mode: LockMode | null;
  holders: ModelHolder[];
  waiters: ModelWaiter[];
  delayIndex: number | null;
  delays: { index: number; delayMs: number }[];
}

export interface ModelSessionDescription {
  sessionId: number;
  ttlMs: number;
  clientName: string;
  identity: string;
  lastRefreshIndex: number;
  held: string[];
  waiting: string[];
}

function rejected(code: string): ModelResult {
  return { type: 'Rejected', code };
}

function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

function sortStrings(names: string[]): string[] {
  return [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function isIntIn(value: number, min: number, max: number): boolean {
  return Number.isSafeInteger(value) && value >= min && value <= max;
}

function publicHolder(grant: ModelGrant): ModelHolder {
  return {
    sessionId: grant.sessionId,
    owner: grant.owner,
    mode: grant.mode,
    token: grant.token,
    requestIndex: grant.requestIndex,
  };
}

export class LockModel {
  sessions: ModelSession[] = [];
  /** Every lock ever named; only those `inUse` exist as far as the state machine is concerned. */
  locks: ModelLock[] = [];
  /**
   * Remembered results, oldest first. An Acquire's result follows what became of the
   * request: a wait that ends turns into Acquired or NotAcquired.
   */
  dedupe: {
    key: string;
    result: ModelResult;
    openAttempts: number[];
    /** An attempt was dropped past 16: its caller may hold the outcome, so none gives it back. */
    dropped?: boolean;
    command: LockCommand;
  }[] = [];
  /** The index of the entry being applied. */
  index = 0;
  /** Of the last command: the command first applied under its key, if it was a retry. */
  lastRetried: LockCommand | null = null;

  /** The index of the SetRules that set `limits`; null while they are the initial ones. */
  rulesSetAt: number | null = null;

  /**
   * The behaviour version: 1 (the base) until a SetBehaviour raises it. No rule differs
   * between 1 and 2 (the promise made to clients is the same); a retry told of a grant
   * from memory is again among the requests told of it at every version.
   */
  behaviour = 1;

  constructor(public limits: LockLimits) {}

  // ------------------------------------------------------------------ helpers

  findSession(id: number): ModelSession | undefined {
    return this.sessions.find((session) => session.id === id);
  }

  lock(name: string): ModelLock {
    let lock = this.locks.find((candidate) => candidate.name === name);
    if (lock === undefined) {
      lock = { name, holders: [], waiters: [], delays: [] };
      this.locks.push(lock);
    }
    return lock;
  }

  inUse(lock: ModelLock): boolean {
    return lock.holders.length > 0 || lock.waiters.length > 0 || lock.delays.length > 0;
  }

  locksInUse(): ModelLock[] {
    return this.locks.filter((lock) => this.inUse(lock));
  }

  private textOk(value: string, bytesMax: number, emptyAllowed: boolean): boolean {
    if (typeof value !== 'string') return false;
    if (!emptyAllowed && value.length === 0) return false;
    return utf8Bytes(value) <= bytesMax;
  }

  /** No holders, or all shared and the request is shared. */
  private compatible(lock: ModelLock, mode: LockMode): boolean {
    if (lock.holders.length === 0) return true;
    if (mode !== 'shared') return false;
    return lock.holders.every((holder) => holder.mode === 'shared');
  }

  private addHolder(lock: ModelLock, request: Omit<ModelGrant, 'token' | 'alsoFor'>): ModelGrant {
    const grant: ModelGrant = { ...request, token: this.index, alsoFor: [] };
    lock.holders.push(grant);
    return grant;
  }

  /** The head waiter fits the holders and no lock-delay is in force. */
  headGrantable(lock: ModelLock): boolean {
    const head = lock.waiters[0];
    return lock.delays.length === 0 && head !== undefined && this.compatible(lock, head.mode);
  }

  /**
   * Grants the head waiter if it fits, unless this entry already granted the lock: a
   * token is the granting entry's index, and every grant gets a token of its own. A
   * second compatible waiter waits for a Promote entry.
   */
  private promote(lock: ModelLock): ModelGrant | null {
    if (!this.headGrantable(lock)) return null;
    if (lock.holders.some((holder) => holder.token === this.index)) return null;
    const head = lock.waiters.shift() as ModelWaiter;
    const grant = this.addHolder(lock, {
      sessionId: head.sessionId,
      owner: head.owner,
      mode: head.mode,
      requestIndex: head.requestIndex,
      requestId: head.requestId,
      maxHoldMs: head.maxHoldMs,
      lockDelayMs: head.lockDelayMs,
    });
    this.outcome(lock, head, this.acquired(lock, grant));
    return grant;
  }

  /**
   * The request that queued `waiter` on `lock` now has this result, for its retries. The
   * key holds that request only while it says Queued for this lock (an id reused after
   * it left the window names another request).
   */
  private outcome(lock: ModelLock, waiter: ModelWaiter, result: ModelResult): void {
    const key = `Acquire/${waiter.sessionId}/${waiter.requestId}`;
    const entry = this.dedupe.find((e) => e.key === key);
    if (entry?.result.type === 'Queued' && entry.result.lock === lock.name) entry.result = result;
  }

  /** A wait that ended without a grant (ran out, or cancelled). */
  private waitEnded(lock: ModelLock, waiter: ModelWaiter): void {
    lock.waiters = lock.waiters.filter((candidate) => candidate !== waiter);
    this.outcome(lock, waiter, this.notAcquired(lock));
  }

  private acquired(lock: ModelLock, grant: ModelGrant): ModelResult {
    return {
      type: 'Acquired',
      lock: lock.name,
      token: grant.token,
      mode: grant.mode,
      holders: lock.holders.map(publicHolder),
    };
  }

  private notAcquired(lock: ModelLock): ModelResult {
    return { type: 'NotAcquired', lock: lock.name, holders: lock.holders.map(publicHolder) };
  }

  /**
   * A retry is never applied twice, and is told only what is true now: a session that
   * ended has nothing; a grant is current only while the session holds it with the
   * same token; a wait is reported where it stands.
   */
  private retried(
    command: LockCommand,
    entry: { result: ModelResult; openAttempts: number[]; dropped?: boolean },
  ): ModelResult {
    if (command.type === 'OpenSession' || command.type === 'CloseSession') return entry.result;
    if (!('sessionId' in command) || this.findSession(command.sessionId) === undefined) {
      return rejected('sessionNotFound');
    }
    if (command.type !== 'Acquire') return entry.result;
    // Every attempt may have been answered; a Withdraw gives back only after all of them.
    const attempts = [...entry.openAttempts, this.index];
    if (attempts.length > 16) entry.dropped = true;
    entry.openAttempts = attempts.slice(-16);
    const first = entry.result;
    if (first.type !== 'Acquired' && first.type !== 'Queued' && first.type !== 'NotAcquired') {
      return first;
    }
    const lock = this.lock(first.lock);
    if (first.type === 'Acquired') {
      const mine = lock.holders.find((holder) => holder.sessionId === command.sessionId);
      if (mine === undefined || mine.token !== first.token) return rejected('grantEnded');
      const told = mine.requestId === command.requestId || mine.alsoFor.includes(command.requestId);
      if (!told) mine.alsoFor.push(command.requestId);
      return this.acquired(lock, mine);
    }
    const position = lock.waiters.findIndex(
      (waiter) => waiter.sessionId === command.sessionId && waiter.requestId === command.requestId,
    );
    if (first.type === 'Queued' && position >= 0) {
      return { type: 'Queued', lock: lock.name, position };
    }
    return this.notAcquired(lock);
  }

  private endSession(session: ModelSession, expired: boolean): void {
    const touched: ModelLock[] = [];
    for (const lock of this.locks) {
      const waitersBefore = lock.waiters.length;
      lock.waiters = lock.waiters.filter((waiter) => waiter.sessionId !== session.id);
      const grant = lock.holders.find((holder) => holder.sessionId === session.id);
      lock.holders = lock.holders.filter((holder) => holder.sessionId !== session.id);
      if (grant !== undefined && expired) {
        const delayMs = grant.lockDelayMs > 0 ? grant.lockDelayMs : this.limits.lockDelayMs;
        if (delayMs > 0) lock.delays.push({ index: this.index, delayMs });
      }
      if (grant !== undefined || lock.waiters.length !== waitersBefore) touched.push(lock);
    }
    this.sessions = this.sessions.filter((candidate) => candidate.id !== session.id);
    for (const lock of touched) this.promote(lock);
  }

  // ------------------------------------------------------------------ apply

  apply(index: number, command: LockCommand): ModelResult {
    this.index = index;
    this.lastRetried = null;
    let key: string | null = null;
    if (command.type === 'OpenSession') {
      const who = command.identity ?? '';
      key =
        who === ''
          ? `OpenSession/${command.requestId}`
          : `OpenSession@${JSON.stringify(who)}/${command.requestId}`;
    }
    if (
      command.type === 'CloseSession' ||
      command.type === 'Acquire' ||
      command.type === 'Release' ||
      command.type === 'CancelWait'
    ) {
      key = `${command.type}/${command.sessionId}/${command.requestId}`;
    }
    // A retry gets its first outcome whatever the rules became: only the ceiling comes
    // before the lookup, the rules after.
    if (
      'requestId' in command &&
      !this.textOk(command.requestId, CEILINGS.requestIdBytesMax, false)
    ) {
      return rejected('invalidArgument');
    }
    // A live session is only its opener's: checked before a retry is answered.
    if (this.foreignSession(command)) return rejected('notSessionOwner');
    if (key !== null) {
      const seen = this.dedupe.find((entry) => entry.key === key);
      if (seen !== undefined) {
        this.lastRetried = seen.command;
        return this.retried(command, seen);
      }
      const requestId = (command as { requestId: string }).requestId;
      if (!this.textOk(requestId, this.limits.requestIdBytesMax, false)) {
        return rejected('invalidArgument');
      }
    }
    const result = this.run(command);
    // Refusals and failed try-locks change nothing, so they are not remembered; nor is
    // a Queued told to a session that already waited under another request id (the
    // wait is that request's).
    const joined =
      command.type === 'Acquire' &&
      result.type === 'Queued' &&
      !this.lock(command.lock).waiters.some(
        (waiter) =>
          waiter.sessionId === command.sessionId && waiter.requestId === command.requestId,
      );
    if (key !== null && result.type !== 'Rejected' && result.type !== 'NotAcquired' && !joined) {
      // A wait's own retry whose memory was evicted: the attempt that queued it counts too.
      const queuedAt =
        command.type === 'Acquire' && result.type === 'Queued'
          ? this.lock(command.lock).waiters.find(
              (w) => w.sessionId === command.sessionId && w.requestId === command.requestId,
            )?.requestIndex
          : undefined;
      const earlier = queuedAt !== undefined && queuedAt !== index ? [queuedAt] : [];
      this.dedupe.push({ key, result, openAttempts: [...earlier, index], command });
      while (this.dedupe.length > this.limits.dedupeWindowMax) this.dedupe.shift();
    }
    return result;
  }

  private foreignSession(command: LockCommand): boolean {
    let ids: readonly number[] = [];
    if (command.type === 'KeepAlive') ids = command.sessionIds;
    if (
      command.type === 'CloseSession' ||
      command.type === 'Acquire' ||
      command.type === 'Release'
    ) {
      ids = [command.sessionId];
    }
    const who = 'identity' in command ? (command.identity ?? '') : '';
    return ids.some((id) => {
      const session = this.findSession(id);
      return session !== undefined && session.identity !== who;
    });
  }

  /** Counted afresh each time: the sessions of `identity`, and its holds and waits. */
  private countsOf(identity: string): { sessions: number; held: number; waiting: number } {
    const mine = new Set(
      this.sessions.filter((session) => session.identity === identity).map((s) => s.id),
    );
    let held = 0;
    let waiting = 0;
    for (const lock of this.locks) {
      held += lock.holders.filter((holder) => mine.has(holder.sessionId)).length;
      waiting += lock.waiters.filter((waiter) => mine.has(waiter.sessionId)).length;
    }
    return { sessions: mine.size, held, waiting };
  }

  /** The per-identity limits of a new grant (wait false) or wait (wait true). */
  private overQuota(command: Extract<LockCommand, { type: 'Acquire' }>, wait: boolean): boolean {
    const quota = command.quota;
    if (quota === undefined) return false;
    const session = this.findSession(command.sessionId) as ModelSession;
    const counts = this.countsOf(session.identity);
    if (wait && counts.waiting >= quota.waitersMax) return true;
    return counts.held + counts.waiting >= quota.locksHeldMax;
  }

  private run(command: LockCommand): ModelResult {
    const limits = this.limits;
    switch (command.type) {
      case 'OpenSession': {
        if (!isIntIn(command.ttlMs, limits.sessionTtlMsMin, limits.sessionTtlMsMax)) {
          return rejected('invalidArgument');
        }
        if (!this.textOk(command.clientName, limits.clientNameBytesMax, true)) {
          return rejected('invalidArgument');
        }
        if (this.sessions.length >= limits.sessionsMax) return rejected('limitReached');
        const identity = command.identity ?? '';
        const quota = command.quota;
        if (quota !== undefined && this.countsOf(identity).sessions >= quota.sessionsMax) {
          return rejected('limitReached');
        }
        this.sessions.push({
          id: this.index,
          ttlMs: command.ttlMs,
          clientName: command.clientName,
          identity,
          lastRefreshIndex: this.index,
        });
        return { type: 'SessionOpened', sessionId: this.index, ttlMs: command.ttlMs };
      }

      case 'KeepAlive': {
        const ids = command.sessionIds;
        if (ids.length === 0 || ids.length > limits.keepAliveBatchMax) {
          return rejected('invalidArgument');
        }
        const refreshed: number[] = [];
        const missing: number[] = [];
        for (const id of ids) {
          const session = this.findSession(id);
          if (session === undefined) {
            missing.push(id);
          } else {
            session.lastRefreshIndex = this.index;
            refreshed.push(id);
          }
        }
        return { type: 'KeptAlive', refreshed, missing };
      }

      case 'CloseSession': {
        const session = this.findSession(command.sessionId);
        if (session === undefined) return rejected('sessionNotFound');
        this.endSession(session, false);
        return { type: 'SessionClosed', sessionId: command.sessionId };
      }

      case 'AcquirePermits':
      case 'Campaign':
      case 'Proclaim':
      case 'AcquireAll':
        // This model stays below BEHAVIOUR_MULTI_LOCK: an unknown command type there.
        return rejected('invalidArgument');

      case 'ExpireSession': {
        const session = this.findSession(command.sessionId);
        if (session === undefined) return { type: 'Stale' };
        if (session.lastRefreshIndex !== command.lastRefreshIndex) return { type: 'Stale' };
        this.endSession(session, true);
        return { type: 'SessionExpired', sessionId: command.sessionId };
      }

      case 'Acquire': {
        // lockNameBytesMax bounds only the locks a request would add.
        const exists = this.locks.some((each) => each.name === command.lock && this.inUse(each));
        if (!exists && !this.textOk(command.lock, limits.lockNameBytesMax, false)) {
          return rejected('invalidArgument');
        }
        if (!this.textOk(command.owner, limits.ownerBytesMax, true)) {
          return rejected('invalidArgument');
        }
        if (command.mode !== 'exclusive' && command.mode !== 'shared') {
          return rejected('invalidArgument');
        }
        if (!isIntIn(command.waitMs, 0, limits.waitMsMax)) return rejected('invalidArgument');
        if (!isIntIn(command.maxHoldMs, 0, limits.maxHoldMsMax)) return rejected('invalidArgument');
        if (!isIntIn(command.lockDelayMs, 0, limits.lockDelayMsMax)) {
          return rejected('invalidArgument');
        }
        if (this.findSession(command.sessionId) === undefined) return rejected('sessionNotFound');
        const lock = this.lock(command.lock);
        const mine = lock.holders.find((holder) => holder.sessionId === command.sessionId);
        // A session gets what it asked for or a refusal: never a grant of the other mode.
        if (mine !== undefined && mine.mode !== command.mode) return rejected('modeMismatch');
        if (mine !== undefined) {
          // Told to a second request: it is given back only once both were withdrawn.
          if (mine.requestId !== command.requestId && !mine.alsoFor.includes(command.requestId))
            mine.alsoFor.push(command.requestId);
          return {
            type: 'Acquired',
            lock: lock.name,
            token: mine.token,
            mode: mine.mode,
            holders: lock.holders.map(publicHolder),
          };
        }
        for (let position = 0; position < lock.waiters.length; position++) {
          const waiter = lock.waiters[position] as ModelWaiter;
          if (waiter.sessionId !== command.sessionId) continue;
          if (waiter.mode !== command.mode) return rejected('modeMismatch');
          // Its own retry (its memory evicted) is still its wait; another request is not
          // folded in: one wait, one request.
          if (waiter.requestId === command.requestId)
            return { type: 'Queued', lock: lock.name, position };
          return rejected('alreadyWaiting');
        }
        if (!this.inUse(lock) && this.locksInUse().length >= limits.locksMax) {
          return rejected('limitReached');
        }
        const canGrant =
          lock.delays.length === 0 &&
          lock.waiters.length === 0 &&
          this.compatible(lock, command.mode);
        if (canGrant) {
          if (this.overQuota(command, false)) return rejected('limitReached');
          const grant = this.addHolder(lock, {
            sessionId: command.sessionId,
            owner: command.owner,
            mode: command.mode,
            requestIndex: this.index,
            requestId: command.requestId,
            maxHoldMs: command.maxHoldMs,
            lockDelayMs: command.lockDelayMs,
          });
          return {
            type: 'Acquired',
            lock: lock.name,
            token: grant.token,
            mode: grant.mode,
            holders: lock.holders.map(publicHolder),
          };
        }
        if (command.waitMs === 0) {
          return { type: 'NotAcquired', lock: lock.name, holders: lock.holders.map(publicHolder) };
        }
        if (lock.waiters.length >= limits.waitersPerLockMax) return rejected('limitReached');
        if (this.overQuota(command, true)) return rejected('limitReached');
        lock.waiters.push({
          sessionId: command.sessionId,
          owner: command.owner,
          mode: command.mode,
          requestIndex: this.index,
          requestId: command.requestId,
          waitMs: command.waitMs,
          maxHoldMs: command.maxHoldMs,
          lockDelayMs: command.lockDelayMs,
        });
        return { type: 'Queued', lock: lock.name, position: lock.waiters.length - 1 };
      }

      case 'Release': {
        if (!this.textOk(command.lock, CEILINGS.lockNameBytesMax, false)) {
          return rejected('invalidArgument');
        }
        if (this.findSession(command.sessionId) === undefined) return rejected('sessionNotFound');
        const lock = this.lock(command.lock);
        const mine = lock.holders.find((holder) => holder.sessionId === command.sessionId);
        if (mine === undefined) return rejected('notHolder');
        if (mine.token !== command.token) return rejected('staleToken');
        lock.holders = lock.holders.filter((holder) => holder !== mine);
        this.promote(lock);
        return { type: 'Released', lock: lock.name };
      }

      case 'CancelWait': {
        if (!this.textOk(command.lock, CEILINGS.lockNameBytesMax, false)) {
          return rejected('invalidArgument');
        }
        if (this.findSession(command.sessionId) === undefined) return rejected('sessionNotFound');
        const lock = this.lock(command.lock);
        // Only the wait that this request queued.
        const waiter = lock.waiters.find(
          (candidate) =>
            candidate.sessionId === command.sessionId && candidate.requestId === command.requestId,
        );
        if (waiter === undefined) return rejected('notHolder');
        this.waitEnded(lock, waiter);
        this.promote(lock);
        return { type: 'WaitCancelled', lock: lock.name };
      }

      case 'Withdraw': {
        // The caller of one attempt went away: give back what that attempt got, unless
        // a later attempt of the same request came (its caller may have been told).
        if (this.findSession(command.sessionId) === undefined) return { type: 'Stale' };
        const key = `Acquire/${command.sessionId}/${command.requestId}`;
        const entry = this.dedupe.find((e) => e.key === key);
        if (entry === undefined) {
          // Forgotten (left the window): the attempt that queued a wait still withdraws it.
          const lock = this.lock(command.lock);
          const queued = lock.waiters.find(
            (w) =>
              w.sessionId === command.sessionId &&
              w.requestId === command.requestId &&
              w.requestIndex === command.attemptIndex,
          );
          if (queued === undefined) return { type: 'Stale' };
          lock.waiters = lock.waiters.filter((w) => w !== queued);
          this.promote(lock);
          return { type: 'Withdrawn', lock: lock.name, undid: 'wait' };
        }
        const named = 'lock' in entry.result ? entry.result.lock : null;
        if (named !== command.lock) return { type: 'Stale' };
        if (!entry.openAttempts.includes(command.attemptIndex)) return { type: 'Stale' };
        entry.openAttempts = entry.openAttempts.filter((each) => each !== command.attemptIndex);
        if (entry.openAttempts.length > 0 || entry.dropped === true) {
          return { type: 'Withdrawn', lock: command.lock, undid: 'nothing' };
        }
        const lock = this.lock(command.lock);
        const mine = (w: { sessionId: number; requestId: string }) =>
          w.sessionId === command.sessionId && w.requestId === command.requestId;
        const waiter = lock.waiters.find(mine);
        const grant = lock.holders.find(
          (holder) =>
            holder.sessionId === command.sessionId &&
            (holder.requestId === command.requestId || holder.alsoFor.includes(command.requestId)),
        );
        let undid: 'wait' | 'grant' | 'nothing' = 'nothing';
        if (waiter !== undefined) {
          lock.waiters = lock.waiters.filter((candidate) => candidate !== waiter);
          undid = 'wait';
        } else if (grant !== undefined) {
          const rest = [grant.requestId, ...grant.alsoFor].filter((r) => r !== command.requestId);
          if (rest.length === 0) {
            lock.holders = lock.holders.filter((holder) => holder !== grant);
            undid = 'grant';
          } else {
            grant.requestId = rest[0] as string;
            grant.alsoFor = rest.slice(1);
          }
        }
        if (undid !== 'nothing') this.promote(lock);
        // A request that was granted is never granted again: its retry hears grantEnded.
        // One that only waited told nobody anything, so it may run again.
        if (entry.result.type !== 'Acquired') this.dedupe = this.dedupe.filter((e) => e !== entry);
        return { type: 'Withdrawn', lock: lock.name, undid };
      }

      case 'WaitExpired': {
        const lock = this.lock(command.lock);
        const waiter = lock.waiters.find((candidate) => candidate.sessionId === command.sessionId);
        if (waiter === undefined || waiter.requestIndex !== command.waiterIndex) {
          return { type: 'Stale' };
        }
        this.waitEnded(lock, waiter);
        this.promote(lock);
        return { type: 'WaitExpired', lock: lock.name, sessionId: command.sessionId };
      }

      case 'LockDelayEnded': {
        const lock = this.lock(command.lock);
        const mine = lock.delays.find((delay) => delay.index === command.delayIndex);
        if (mine === undefined) return { type: 'Stale' };
        lock.delays = lock.delays.filter((delay) => delay !== mine);
        this.promote(lock);
        return { type: 'LockDelayEnded', lock: lock.name };
      }

      case 'MaxHoldReached': {
        const lock = this.lock(command.lock);
        const grant = lock.holders.find((holder) => holder.sessionId === command.sessionId);
        if (grant === undefined || grant.token !== command.token) return { type: 'Stale' };
        lock.holders = lock.holders.filter((holder) => holder !== grant);
        this.promote(lock);
        return { type: 'MaxHoldReached', lock: lock.name, token: command.token };
      }

      case 'Promote': {
        const lock = this.lock(command.lock);
        const grant = this.promote(lock);
        if (grant === null) return { type: 'Stale' };
        return {
          type: 'Promoted',
          lock: lock.name,
          sessionId: grant.sessionId,
          token: grant.token,
        };
      }

      case 'SetRules': {
        if (command.onlyIfUnset && this.rulesSetAt !== null) return { type: 'Stale' };
        if (!this.rulesValid(command.rules)) return rejected('invalidArgument');
        // Never forgets a remembered result early.
        if (command.rules.dedupeWindowMax < this.dedupe.length) return rejected('invalidArgument');
        this.limits = { ...command.rules };
        this.rulesSetAt = this.index;
        return { type: 'RulesSet', rules: { ...command.rules } };
      }

      case 'SetBehaviour': {
        const { version } = command;
        if (!Number.isSafeInteger(version) || version < 1) return rejected('invalidArgument');
        if (version <= this.behaviour) return { type: 'Stale' };
        this.behaviour = version;
        return { type: 'BehaviourSet', version };
      }

      case 'Revoke': {
        if (!this.textOk(command.lock, CEILINGS.lockNameBytesMax, false)) {
          return rejected('invalidArgument');
        }
        const lock = this.lock(command.lock);
        const freed = lock.holders.length;
        if (freed === 0) return { type: 'Revoked', lock: lock.name, freed: 0 };
        lock.holders = [];
        this.promote(lock);
        return { type: 'Revoked', lock: lock.name, freed };
      }
    }
  }

  /** Exactly the fields the initial limits have, integers >= 1 (>= 0 for the delay) within the ceilings, ranges in order. */
  private rulesValid(rules: LockLimits): boolean {
    const fields = Object.keys(this.limits).sort();
    if (JSON.stringify(Object.keys(rules).sort()) !== JSON.stringify(fields)) return false;
    const record = rules as unknown as Record<string, unknown>;
    for (const field of fields) {
      const value = record[field];
      const min = field === 'lockDelayMs' ? 0 : 1;
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) return false;
      if (value > CEILINGS[field as RequiredLockLimitName]) return false;
    }
    return (
      rules.sessionTtlMsMin <= rules.sessionTtlMsMax && rules.lockDelayMs <= rules.lockDelayMsMax
    );
  }

  // ------------------------------------------------------------------ queries

  describe(name: string): ModelDescription {
    const lock = this.locks.find((candidate) => candidate.name === name);
    if (lock === undefined || !this.inUse(lock)) {
      return { lock: name, mode: null, holders: [], waiters: [], delayIndex: null, delays: [] };
    }
    return {
      lock: name,
      mode: lock.holders.length > 0 ? (lock.holders[0] as ModelGrant).mode : null,
      holders: lock.holders.map(publicHolder),
      waiters: lock.waiters.map((waiter) => ({ ...waiter })),
      delayIndex: lock.delays.length === 0 ? null : Math.max(...lock.delays.map((d) => d.index)),
      delays: lock.delays.map((delay) => ({ ...delay })),
    };
  }

  session(id: number): ModelSessionDescription | null {
    const session = this.findSession(id);
    if (session === undefined) return null;
    const held = this.locks
      .filter((lock) => lock.holders.some((holder) => holder.sessionId === id))
      .map((lock) => lock.name);
    const waiting = this.locks
      .filter((lock) => lock.waiters.some((waiter) => waiter.sessionId === id))
      .map((lock) => lock.name);
    return {
      sessionId: session.id,
      ttlMs: session.ttlMs,
      clientName: session.clientName,
      identity: session.identity,
      lastRefreshIndex: session.lastRefreshIndex,
      held: sortStrings(held),
      waiting: sortStrings(waiting),
    };
  }

  sessionIds(): number[] {
    return this.sessions.map((session) => session.id).sort((a, b) => a - b);
  }

  listLocks(prefix: string, limit: number): string[] {
    const names = this.locksInUse()
      .map((lock) => lock.name)
      .filter((name) => name.startsWith(prefix));
    return sortStrings(names).slice(0, limit);
  }

  validateFence(name: string, token: number): { valid: boolean; currentToken: number | null } {
    const holders = this.describe(name).holders;
    if (holders.length === 0) return { valid: false, currentToken: null };
    return {
      valid: holders.some((holder) => holder.token === token),
      currentToken: Math.max(...holders.map((holder) => holder.token)),
    };
  }
}

/** The state machine's result, with a Rejected one cut down to what the model predicts. */
export function comparableResult(result: { type: string; code?: string }): unknown {
  if (result.type === 'Rejected') return { type: 'Rejected', code: result.code };
  return result;
}
