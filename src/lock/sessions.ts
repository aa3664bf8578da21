import { assert } from '../util/assert.ts';
import { type LogIndex, type SessionId, sessionId as toSessionId } from '../util/ids.ts';
import { checkText } from './checks.ts';
import type { IdentityTally } from './identity-quota.ts';
import type { LockLimits } from './limits.ts';
import {
  compareStrings,
  type Grant,
  isIntegerIn,
  type LockDelay,
  type LockRecord,
  ownDelays,
  reject,
  rejectField,
  type SessionRecord,
} from './records.ts';
import type { LockCommand, LockEvent, LockResult, ReleaseReason } from './types.ts';

/**
 * Sessions: OpenSession, KeepAlive, CloseSession and ExpireSession, and the rule that a
 * command on a session comes from the identity that opened it (issue 15). A session's
 * end releases what it holds and withdraws its waits through the state machine's own
 * paths, so that every lock it touched is promoted as after any other release.
 */

/** What of the state machine sessions use; closures over its state and helpers. */
export interface SessionHost {
  readonly sessions: Map<SessionId, SessionRecord>;
  readonly tally: IdentityTally;
  index(): LogIndex;
  rules(): LockLimits;
  lockRecord(name: string): LockRecord;
  /** Takes the session's place out of the lock's queue (event `waitEnded`). */
  removeWaiter(lock: LockRecord, id: SessionId, reason: 'sessionEnded'): void;
  removeHolder(lock: LockRecord, grant: Grant, reason: ReleaseReason): void;
  /** Grants what the lock's queue may have now (the state machine's promote). */
  promote(lock: LockRecord): void;
  /** A test seam of the state machine: how a new lock-delay joins those in force. */
  placeDelay(delays: LockDelay[], delay: LockDelay): void;
  /** A test seam of the state machine: whether an expiry still applies. */
  expiryGuardHolds(lastRefreshIndex: LogIndex, expiryRefreshIndex: LogIndex): boolean;
  emit(event: LockEvent): void;
}

/** The sessions' lifecycle, over the state machine's session records. */
export class SessionLifecycle {
  constructor(private readonly host: SessionHost) {}

  open(command: Extract<LockCommand, { type: 'OpenSession' }>): LockResult {
    const rules = this.host.rules();
    const { sessionTtlMsMin, sessionTtlMsMax } = rules;
    if (!isIntegerIn(command.ttlMs, sessionTtlMsMin, sessionTtlMsMax)) {
      rejectField(
        'ttlMs',
        `must be within [${sessionTtlMsMin}, ${sessionTtlMsMax}], got ${command.ttlMs}`,
      );
    }
    const { clientNameBytesMax } = rules;
    checkText('clientName', command.clientName, clientNameBytesMax, 'clientNameBytesMax', true);
    if (this.host.sessions.size >= rules.sessionsMax) {
      reject('limitReached', `sessionsMax (${rules.sessionsMax}) sessions are open`);
    }
    const identity = command.identity ?? '';
    const quota = command.quota;
    if (quota !== undefined && this.host.tally.of(identity).sessions >= quota.sessionsMax) {
      reject(
        'limitReached',
        `sessionsPerIdentityMax (${quota.sessionsMax}) sessions are open for identity ${JSON.stringify(identity)}`,
      );
    }
    const index = this.host.index();
    const id = toSessionId(index);
    this.host.sessions.set(id, {
      id,
      ttlMs: command.ttlMs,
      clientName: command.clientName,
      identity,
      lastRefreshIndex: index,
      held: new Set(),
      waiting: new Set(),
    });
    this.host.tally.change(identity, 'sessions', 1);
    this.host.emit({ type: 'sessionRefreshed', sessionId: id, ttlMs: command.ttlMs });
    return { type: 'SessionOpened', sessionId: id, ttlMs: command.ttlMs };
  }

  keepAlive(sessionIds: readonly SessionId[]): LockResult {
    const { keepAliveBatchMax } = this.host.rules();
    if (sessionIds.length === 0 || sessionIds.length > keepAliveBatchMax) {
      rejectField(
        'sessionIds',
        `must hold 1 to ${keepAliveBatchMax} ids (keepAliveBatchMax), got ${sessionIds.length}`,
      );
    }
    const refreshed: SessionId[] = [];
    const missing: SessionId[] = [];
    for (const id of sessionIds) {
      const session = this.host.sessions.get(id);
      if (session === undefined) {
        missing.push(id);
        continue;
      }
      session.lastRefreshIndex = this.host.index();
      refreshed.push(id);
      this.host.emit({ type: 'sessionRefreshed', sessionId: id, ttlMs: session.ttlMs });
    }
    return { type: 'KeptAlive', refreshed, missing };
  }

  /** Guarded: a refresh applied after the leader decided to expire the session wins. */
  expire(id: SessionId, lastRefreshIndex: LogIndex): LockResult {
    const session = this.host.sessions.get(id);
    if (
      session === undefined ||
      !this.host.expiryGuardHolds(session.lastRefreshIndex, lastRefreshIndex)
    ) {
      return { type: 'Stale' };
    }
    this.end(session, 'expire');
    return { type: 'SessionExpired', sessionId: id };
  }

  /** Releases everything the session holds and withdraws its waiters, then promotes. */
  end(session: SessionRecord, reason: 'close' | 'expire'): void {
    const index = this.host.index();
    const touched = new Set<string>();
    for (const name of [...session.waiting].sort(compareStrings)) {
      const lock = this.host.lockRecord(name);
      this.host.removeWaiter(lock, session.id, 'sessionEnded');
      touched.add(name);
    }
    for (const name of [...session.held].sort(compareStrings)) {
      const lock = this.host.lockRecord(name);
      const grant = lock.holders.get(session.id);
      assert(grant !== undefined, `session ${session.id} lists ${name} but does not hold it`);
      this.host.removeHolder(lock, grant, reason);
      const delayMs = grant.lockDelayMs > 0 ? grant.lockDelayMs : this.host.rules().lockDelayMs;
      if (reason === 'expire' && delayMs > 0) {
        this.host.placeDelay(ownDelays(lock), { index, delayMs });
        this.host.emit({ type: 'delayStarted', lock: name, delayIndex: index, delayMs });
      }
      touched.add(name);
    }
    this.host.sessions.delete(session.id);
    this.host.tally.change(session.identity, 'sessions', -1);
    this.host.emit({ type: 'sessionEnded', sessionId: session.id, reason });
    for (const name of [...touched].sort(compareStrings))
      this.host.promote(this.host.lockRecord(name));
  }
}

/**
 * A command on a session must come from the identity that opened it. A session that
 * does not exist is left to the command's own lookup (sessionNotFound). `undecided`
 * (for ownerRefusal) says of an id no session has here that one may yet have it: the
 * check then stops, as it cannot tell what that id will turn out to be.
 */
export function checkOwner(
  sessions: ReadonlyMap<SessionId, SessionRecord>,
  command: LockCommand,
  undecided?: (id: SessionId) => boolean,
): void {
  const asked = askedOnSessions(command);
  if (asked === null) return;
  const { identity, ids } = asked;
  for (const id of ids) {
    const owner = sessions.get(id)?.identity;
    if (owner === undefined) {
      if (undecided?.(id) === true) return;
      continue;
    }
    if (owner !== identity) {
      reject(
        'notSessionOwner',
        `session ${id} belongs to another identity than ${JSON.stringify(identity)}`,
      );
    }
  }
}

/** The sessions a command uses, which must be its identity's (issue 15); null: none. */
function askedOnSessions(
  command: LockCommand,
): { readonly identity: string; readonly ids: readonly SessionId[] } | null {
  switch (command.type) {
    case 'KeepAlive':
      return { identity: command.identity ?? '', ids: command.sessionIds };
    case 'CloseSession':
    case 'Acquire':
    case 'AcquireAll':
    case 'AcquirePermits':
    case 'Campaign':
    case 'Proclaim':
    case 'Release':
      return { identity: command.identity ?? '', ids: [command.sessionId] };
    default:
      return null;
  }
}
