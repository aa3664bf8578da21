import type { SessionId } from '../util/ids.ts';
import { withFields } from '../util/objects.ts';
import { utf8ByteLength } from '../util/utf8.ts';
import type { IdentityQuota } from './identity-quota.ts';
import { type KindLimitName, kindRule, type LockLimits } from './limits.ts';
import {
  isIntegerIn,
  type LockRecord,
  reject,
  rejectField,
  type SessionRecord,
} from './records.ts';
import type { Holder, LockCommand, LockEvent, LockKind, LockMode, LockResult } from './types.ts';

/**
 * Semaphores and leader elections (issue 17), from BEHAVIOUR_SEMAPHORES_ELECTIONS. A
 * name's record has a kind, fixed by the request that created it, for as long as the
 * record lives (a holder, a waiter or a lock-delay): a plain lock (Acquire, AcquireAll),
 * a semaphore (AcquirePermits) or an election (Campaign). A request of another kind is
 * refused (kindMismatch); once the record is gone the name is free for any kind.
 *
 * Both are single-name acquires that go through the state machine's one Acquire path
 * (queue, timers, retries, withdrawals, promotions), with what differs here:
 * - a semaphore's holders hold `permits` each (mode shared), and a request fits while
 *   the permits held plus its own stay within the semaphore's `limit`. Its queue is
 *   FIFO like any: a new request is never granted past a waiter, so a large request at
 *   the head is not starved by small ones behind it. Every grant has its own token.
 *   Its wait-for edges are not followed by deadlock detection (wait-for.ts): any
 *   holder's release may free a waiter, so a cycle through a semaphore is not surely a
 *   deadlock, and a semaphore wait is never refused `deadlock`;
 * - an election is an exclusive lock whose grant (its leader) carries a `value`, which
 *   Proclaim replaces; its queue (the candidates) is bounded by candidatesPerElectionMax
 *   too. Elections take part in deadlock detection as exclusive locks.
 */

type AcquirePermits = Extract<LockCommand, { type: 'AcquirePermits' }>;
type Campaign = Extract<LockCommand, { type: 'Campaign' }>;
type Proclaim = Extract<LockCommand, { type: 'Proclaim' }>;

/** A request for one name, of any kind: what the state machine's Acquire path runs. */
export interface OneLockRequest {
  readonly kind: LockKind;
  readonly lock: string;
  readonly sessionId: SessionId;
  readonly mode: LockMode;
  readonly waitMs: number;
  readonly requestId: string;
  readonly owner: string;
  readonly maxHoldMs: number;
  readonly lockDelayMs: number;
  readonly quota?: IdentityQuota;
  /** A semaphore's: its limit, and the permits asked for. */
  readonly limit?: number;
  readonly permits?: number;
  /** An election's: the value its leader will carry. */
  readonly value?: string;
}

/** What of the state machine the kinds use; closures over its state and helpers. */
export interface KindHost {
  readonly locks: ReadonlyMap<string, LockRecord>;
  rules(): LockLimits;
  requireSession(id: SessionId): SessionRecord;
  /** The state machine's one Acquire path (see OneLockRequest). */
  acquireOne(request: OneLockRequest): LockResult;
  /** Checks a name a client looks up against its ceiling. */
  checkLockName(name: string): void;
  emit(event: LockEvent): void;
}

export class LockKinds {
  constructor(private readonly host: KindHost) {}

  acquirePermits(command: AcquirePermits): LockResult {
    const max = this.rule('semaphoreLimitMax');
    const { permits, limit } = command;
    if (!isIntegerIn(limit, 1, max)) {
      rejectField(
        'limit',
        `must be an integer within [1, ${max}] (semaphoreLimitMax), got ${limit}`,
      );
    }
    if (!isIntegerIn(permits, 1, limit)) {
      rejectField('permits', `must be an integer within [1, limit ${limit}], got ${permits}`);
    }
    const { type: _type, identity: _identity, ...request } = command;
    return this.host.acquireOne(
      withFields(request, { kind: 'semaphore' as const, mode: 'shared' as const }),
    );
  }

  campaign(command: Campaign): LockResult {
    this.checkValue(command.value);
    const { type: _type, identity: _identity, ...request } = command;
    return this.host.acquireOne(
      withFields(request, { kind: 'election' as const, mode: 'exclusive' as const }),
    );
  }

  /**
   * The leader's new value. Refused as a Release by a non-holder or with a stale token
   * would be; a name of another kind is refused kindMismatch whoever holds it.
   */
  proclaim(command: Proclaim): LockResult {
    this.host.checkLockName(command.lock);
    this.checkValue(command.value);
    const session = this.host.requireSession(command.sessionId);
    const election = this.host.locks.get(command.lock);
    if (election !== undefined && election.kind !== 'election') {
      reject('kindMismatch', `${kindOf(election)}, not an election: only a leader proclaims`);
    }
    const grant = election?.holders.get(session.id);
    if (election === undefined || grant === undefined) {
      reject('notHolder', `session ${session.id} does not lead ${JSON.stringify(command.lock)}`);
    }
    if (grant.token !== command.token) {
      reject(
        'staleToken',
        `token ${command.token} is not the current term ${grant.token} of ${JSON.stringify(command.lock)}`,
      );
    }
    // A Map set of a present key keeps its place: the holder order is unchanged.
    election.holders.set(session.id, { ...grant, value: command.value });
    const { lock, value, token } = command;
    this.host.emit({ type: 'proclaimed', lock, sessionId: session.id, token, value });
    return { type: 'Proclaimed', lock, token, value };
  }

  /**
   * A request of `request`'s kind may use `lock`'s record: of its kind, and for a
   * semaphore of the same limit. Refused kindMismatch naming what the record is.
   */
  checkKind(lock: LockRecord, request: OneLockRequest): void {
    const kind = lock.kind ?? 'lock';
    if (kind === request.kind && lock.limit === request.limit) return;
    const asked =
      request.kind === 'semaphore'
        ? `a semaphore of limit ${request.limit}`
        : request.kind === 'election'
          ? 'an election'
          : 'a lock';
    reject(
      'kindMismatch',
      `${kindOf(lock)}, not ${asked}: a name keeps its kind (and a semaphore its limit) while it has holders, waiters or a lock-delay`,
    );
  }

  /** A set's names are plain locks (lock-set.ts). */
  checkSetKinds(names: readonly string[]): void {
    for (const name of names) {
      const lock = this.host.locks.get(name);
      if (lock?.kind !== undefined) {
        reject('kindMismatch', `${kindOf(lock)}: an AcquireAll names plain locks only`);
      }
    }
  }

  /** An election's candidates are bounded besides waitersPerLockMax. */
  checkQueueRoom(lock: LockRecord): void {
    if (lock.kind !== 'election') return;
    const max = this.rule('candidatesPerElectionMax');
    if (lock.waiters.length >= max) {
      reject(
        'limitReached',
        `candidatesPerElectionMax (${max}) candidates wait in the election ${JSON.stringify(lock.name)}`,
      );
    }
  }

  /**
   * Whether a session that holds or waits for `lock` as `had` (its grant or place) asks
   * for the same again with `request`: then it is told of it, as a lock re-acquire is.
   * A semaphore's other permit count is a modeMismatch, as a lock's other mode is.
   */
  sameAsk(had: Pick<Holder, 'mode' | 'permits'>, request: OneLockRequest): boolean {
    return had.mode === request.mode && had.permits === request.permits;
  }

  /** What a modeMismatch says a session holds or waits for: a mode, or permits. */
  describeAsk(had: Pick<Holder, 'mode' | 'permits'>): string {
    return had.permits === undefined ? had.mode : `${had.permits} permits`;
  }

  /** The kinds' rules over the whole state; null when they hold. */
  invariantProblem(): string | null {
    for (const lock of this.host.locks.values()) {
      const problem = recordProblem(lock);
      if (problem !== null) return `${JSON.stringify(lock.name)}: ${problem}`;
    }
    return null;
  }

  private checkValue(value: string): void {
    const max = this.rule('electionValueBytesMax');
    const bytes = utf8ByteLength(value);
    if (bytes > max) {
      rejectField('value', `is ${bytes} bytes, the limit is ${max} (electionValueBytesMax)`);
    }
  }

  private rule(name: KindLimitName): number {
    return kindRule(this.host.rules(), name);
  }
}

/** The permits a semaphore's holders hold now (0 for a record of another kind). */
export function heldPermits(lock: LockRecord): number {
  let held = 0;
  for (const grant of lock.holders.values()) held += grant.permits ?? 0;
  return held;
}

/** What a record is, for a refusal: `"x" is a semaphore of limit 5`. */
function kindOf(lock: LockRecord): string {
  const name = JSON.stringify(lock.name);
  const kind: LockKind = lock.kind ?? 'lock';
  switch (kind) {
    case 'lock':
      return `${name} is a lock`;
    case 'semaphore':
      return `${name} is a semaphore of limit ${lock.limit}`;
    case 'election':
      return `${name} is an election`;
  }
}

/** Every grant and place of a record is of its kind, and a kind's bounds hold. */
function recordProblem(lock: LockRecord): string | null {
  const entries = [...lock.holders.values(), ...lock.waiters];
  const kind: LockKind = lock.kind ?? 'lock';
  switch (kind) {
    case 'lock':
      if (lock.limit !== undefined) return `a lock has a limit ${lock.limit}`;
      if (entries.some((each) => each.permits !== undefined || each.value !== undefined)) {
        return 'a lock has a grant or place with permits or a value';
      }
      return null;
    case 'semaphore': {
      const limit = lock.limit;
      if (limit === undefined || !isIntegerIn(limit, 1, Number.MAX_SAFE_INTEGER)) {
        return `a semaphore has limit ${limit}`;
      }
      const wrong = entries.find(
        (each) =>
          each.mode !== 'shared' ||
          each.lockSet !== undefined ||
          each.value !== undefined ||
          each.permits === undefined ||
          !isIntegerIn(each.permits, 1, limit),
      );
      if (wrong !== undefined) return `session ${wrong.sessionId}'s grant or place is not a permit`;
      const held = heldPermits(lock);
      return held <= limit ? null : `${held} permits are held, over the limit ${limit}`;
    }
    case 'election': {
      if (lock.limit !== undefined) return `an election has a limit ${lock.limit}`;
      if (lock.holders.size > 1) return `${lock.holders.size} leaders at once`;
      const wrong = entries.find(
        (each) =>
          each.mode !== 'exclusive' ||
          each.lockSet !== undefined ||
          each.permits !== undefined ||
          typeof each.value !== 'string',
      );
      if (wrong !== undefined) return `session ${wrong.sessionId}'s grant or place is no candidacy`;
      return null;
    }
  }
}
