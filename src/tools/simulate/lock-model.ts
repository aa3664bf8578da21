import type {
  ApplyOutput,
  Holder,
  LockCommand,
  LockEvent,
  LockKind,
  LockMode,
  LockResult,
  LockStateMachine,
} from '../../lock/index.ts';
import type { LogIndex, NodeId, SessionId } from '../../util/ids.ts';
import { SafetyViolation } from './checker.ts';

/**
 * The checker's own model of the lock service, written from the promises made to
 * users rather than from the state machine's code:
 *
 * - mutual exclusion: an exclusive grant stands alone, shared grants only beside
 *   shared ones, and only live sessions hold or wait;
 * - a grant's fencing token is the index of the entry that made it (so tokens rise
 *   per lock), and a re-acquire returns the grant the session has;
 * - a lease lives its TTL from its last refresh (OpenSession or a KeepAlive naming it),
 *   timed from the virtual moment that refresh was first applied anywhere; an expiry
 *   applies only if no refresh came after the one it names, and frees everything the
 *   session held; a lock-delay, max-hold or wait deadline is never cut short;
 * - a release by a non-holder or with a stale token is refused, and a refusal names
 *   the right cause;
 * - a retried request (same request id) whose first result changed state gets that
 *   result back and changes nothing, for as long as the dedupe window must hold it;
 * - a lock set (AcquireAll) is granted whole, by one entry, with one token, or not at
 *   all: after every entry each lock of a granted set is held by its session under the
 *   set's token, and a waiting set has its place in every one of its queues; releasing
 *   or ending any lock of a set ends the set;
 * - tokens rise per lock name, grant after grant;
 * - a wait refused as `deadlock` would really have closed a cycle: every hop of the
 *   cycle it names is a session waiting for a lock that the next one holds in a mode
 *   that excludes it, or waits for ahead of it in a way that must be granted first;
 * - a semaphore's holders hold at most its limit of permits between them, each grant
 *   the permits it asked for; a request that fits (no waiter ahead, no lock-delay) is
 *   not made to wait or refused, and waiters are served in order;
 * - an election has at most one leader, who leads with the value it campaigned with or
 *   last proclaimed; a Proclaim is accepted only from the current leader with its
 *   term's token; a candidate finding no leader, no candidate ahead and no lock-delay
 *   leads at once;
 * - a name keeps its kind (and a semaphore its limit) while it has holders, waiters or
 *   a lock-delay: a request of another kind is refused kindMismatch then, and only then.
 *
 * It is fed every lock command once, at its first application anywhere, in log order.
 * Where the state machine has a free choice (to queue, to refuse at a limit, whom to
 * promote when several could be), the model follows its output but checks that the
 * choice was allowed. It records its state after every command, and every replica's
 * state after applying an index must equal it: a bug that all replicas share (so they
 * agree with each other) still disagrees with the model.
 */
export interface LockModelOptions {
  /** Clock rates differ from 1 by at most this much. */
  readonly clockDriftMax: number;
  /** The state machine's dedupe window (remembered results). */
  readonly dedupeWindowMax: number;
  /** The cluster's default lock-delay, used when an Acquire asks for none. */
  readonly lockDelayMs: number;
}

interface ModelSession {
  readonly ttlMs: number;
  lastRefreshIndex: number;
  lastRefreshAtMs: number;
}

interface ModelGrant {
  readonly mode: LockMode;
  /** A semaphore's grant: its permits. */
  readonly permits: number | undefined;
  /** An election's grant (its leader): its value. */
  value: string | undefined;
  /** Granted as part of a set (AcquireAll): its names, in code-unit order. */
  readonly lockSet: readonly string[] | undefined;
  readonly token: number;
  readonly grantedAtMs: number;
  readonly maxHoldMs: number;
  readonly lockDelayMs: number;
}

interface ModelWaiter {
  /** Queued as part of a set (AcquireAll): its names, in code-unit order. */
  readonly lockSet: readonly string[] | undefined;
  readonly sessionId: SessionId;
  readonly requestIndex: number;
  readonly mode: LockMode;
  readonly permits: number | undefined;
  readonly value: string | undefined;
  readonly queuedAtMs: number;
  readonly waitMs: number;
  readonly maxHoldMs: number;
  readonly lockDelayMs: number;
}

interface ModelLock {
  /** The token of the lock's last grant: the next must be higher. */
  lastToken: number;
  readonly holders: Map<SessionId, ModelGrant>;
  readonly waiters: ModelWaiter[];
  /** No new grant before this virtual time: a lock-delay placed by an expiry. */
  closedUntilMs: number;
  /** The kind the name has while it has a record (see kindOf), and a semaphore's limit. */
  kind: LockKind;
  limit: number | undefined;
  /** Lock-delays in force, by the index that placed them (from the delay events). */
  readonly delays: Set<number>;
}

interface Remembered {
  readonly encoded: string;
  readonly changedState: boolean;
  /** Requests with ids applied before this one; the window is counted in these. */
  readonly sequence: number;
}

function violation(property: string, detail: string): never {
  throw new SafetyViolation(`${property}: ${detail}`);
}

export class LockModel {
  private readonly sessions = new Map<SessionId, ModelSession>();
  private readonly locks = new Map<string, ModelLock>();
  private readonly remembered = new Map<string, Remembered>();
  private requestSequence = 0;
  /** The model's state after each lock command's index, for comparing replicas. */
  private readonly stateAt = new Map<number, string>();
  private readonly stateIndexes: number[] = [];
  private readonly slack: number;
  checks = 0;

  constructor(private readonly options: LockModelOptions) {
    // A node whose clock runs fast by the drift bound measures a duration d in
    // d × (1 − drift) of real time; nothing may end sooner than that.
    this.slack = 1 - options.clockDriftMax;
  }

  // ------------------------------------------------------------ feeding the model

  /** The first application anywhere of the lock command at `index`, at virtual `nowMs`. */
  applied(index: LogIndex, command: LockCommand, output: ApplyOutput, nowMs: number): void {
    this.checks++;
    const at = `entry ${index} (${command.type})`;
    if (!this.answeredFromMemory(at, command, output)) {
      const step = new Step(this, index, command, output, nowMs, at);
      step.run();
    }
    if (output.result.type === 'BehaviourSet') this.behaviour = output.result.version;
    this.rememberResult(command, output.result);
    this.stateAt.set(index, this.describeState());
    this.stateIndexes.push(index);
  }

  /** A replica's lock state after it applied `index` must be the model's. */
  checkReplica(node: NodeId, index: number, locks: LockStateMachine): void {
    this.checks++;
    const expected = this.expectedStateAt(index);
    if (expected === undefined) return;
    const actual = describeReplica(locks);
    if (actual !== expected) {
      violation(
        'Lock model',
        `${node} after ${index} holds ${actual || 'nothing'}; the model holds ${expected || 'nothing'}`,
      );
    }
  }

  private expectedStateAt(index: number): string | undefined {
    // The newest lock command at or below `index`; entries in between changed nothing.
    let low = 0;
    let high = this.stateIndexes.length - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      if ((this.stateIndexes[middle] ?? 0) <= index) {
        found = middle;
        low = middle + 1;
      } else high = middle - 1;
    }
    if (found < 0) return '';
    return this.stateAt.get(this.stateIndexes[found] ?? 0);
  }

  // ------------------------------------------------------------ exactly once

  /**
   * A retry of a request whose first result changed state must get that result back
   * and change nothing. A first result that was a refusal may be remembered or not;
   * if it is given back, nothing else is checked.
   */
  private answeredFromMemory(at: string, command: LockCommand, output: ApplyOutput): boolean {
    const key = requestKey(command);
    if (key === null) return false;
    const first = this.remembered.get(key);
    if (first === undefined) return false;
    const encoded = JSON.stringify(output.result);
    // Counting every request applied since (retries too) can only overcount what the
    // state machine's window holds, so inside this bound it must still remember.
    const mustRemember =
      first.changedState && this.requestSequence - first.sequence < this.options.dedupeWindowMax;
    if (command.type === 'Proclaim' && first.changedState && output.events.length === 0) {
      if (this.proclaimRetryToldTruth(command, first, output.result)) return true;
      if (mustRemember)
        violation(
          'Exactly once',
          `${at}: retry of ${key} returned ${encoded}, first result was ${first.encoded}, and the term it proclaimed in ${this.locks.get(command.lock)?.holders.has(command.sessionId) ? 'is' : 'is not'} held`,
        );
      return false;
    }
    if (encoded === first.encoded && output.events.length === 0) return true;
    if (output.events.length === 0 && this.retryToldTruth(command, first, output.result))
      return true;
    if (mustRemember) {
      violation(
        'Exactly once',
        `${at}: retry of ${key} returned ${encoded} with ${output.events.length} events, first result was ${first.encoded}`,
      );
    }
    return false;
  }

  /**
   * A retry is told what is true now, not what was (the promise since remembered
   * results stopped being handed out verbatim): a session that ended is not found; a
   * grant is Acquired only while the session holds it with that token, and otherwise
   * has ended; a wait is Queued while it waits and NotAcquired once it ended ungranted.
   */
  private retryToldTruth(command: LockCommand, first: Remembered, result: LockResult): boolean {
    if (!('sessionId' in command) || command.type === 'CloseSession') return false;
    const live = this.sessions.has(command.sessionId);
    if (!live) return result.type === 'Rejected' && result.code === 'sessionNotFound';
    if (command.type === 'AcquireAll') return this.setRetryToldTruth(command, first, result);
    if (
      command.type !== 'Acquire' &&
      command.type !== 'AcquirePermits' &&
      command.type !== 'Campaign'
    )
      return false;
    const lock = this.locks.get(command.lock);
    const grant = lock?.holders.get(command.sessionId);
    const waiting = lock?.waiters.some((waiter) => waiter.sessionId === command.sessionId) ?? false;
    const firstResult = JSON.parse(first.encoded) as LockResult;
    const firstType = firstResult.type;
    switch (result.type) {
      case 'Acquired':
        return (
          grant !== undefined &&
          grant.token === result.token &&
          grant.mode === result.mode &&
          grant.permits === askOf(command).permits
        );
      case 'Queued':
        return waiting;
      case 'NotAcquired':
        return firstType === 'Queued' && grant === undefined && !waiting;
      case 'Rejected':
        return (
          result.code === 'grantEnded' &&
          firstType !== 'NotAcquired' &&
          (grant === undefined ||
            (firstResult.type === 'Acquired' && grant.token !== firstResult.token))
        );
      default:
        return false;
    }
  }

  /**
   * A retried Proclaim is told Proclaimed (its first answer) while the term it proclaimed
   * in lasts, the term has ended (grantEnded) once it has, even if the session leads
   * again under a newer token, and sessionNotFound once the session ended.
   */
  private proclaimRetryToldTruth(
    command: Extract<LockCommand, { type: 'Proclaim' }>,
    first: Remembered,
    result: LockResult,
  ): boolean {
    if (!this.sessions.has(command.sessionId))
      return result.type === 'Rejected' && result.code === 'sessionNotFound';
    const firstResult = JSON.parse(first.encoded) as LockResult;
    if (firstResult.type !== 'Proclaimed') return false;
    const grant = this.locks.get(command.lock)?.holders.get(command.sessionId);
    const lasts = grant?.token === firstResult.token;
    if (result.type === 'Proclaimed') return lasts && JSON.stringify(result) === first.encoded;
    return result.type === 'Rejected' && result.code === 'grantEnded' && !lasts;
  }

  /** The same promise for a set: its grant while it stands, its places while it waits. */
  private setRetryToldTruth(
    command: Extract<LockCommand, { type: 'AcquireAll' }>,
    first: Remembered,
    result: LockResult,
  ): boolean {
    const id = command.sessionId;
    const names = setNames(command.locks.map((claim) => claim.lock));
    const grants = names.map((name) => this.locks.get(name)?.holders.get(id));
    const places = names.map((name) =>
      this.locks.get(name)?.waiters.find((waiter) => waiter.sessionId === id),
    );
    const firstResult = JSON.parse(first.encoded) as LockResult;
    const holdsFirst =
      firstResult.type === 'AcquiredAll' &&
      grants.every((grant) => grant?.token === firstResult.token);
    switch (result.type) {
      case 'AcquiredAll':
        return grants.every(
          (grant) =>
            grant !== undefined && grant.token === result.token && grant.lockSet !== undefined,
        );
      case 'QueuedAll':
        return places.every((place) => place !== undefined && place.lockSet !== undefined);
      case 'NotAcquiredAll':
        return (
          firstResult.type === 'QueuedAll' &&
          grants.every((grant) => grant === undefined) &&
          places.every((place) => place === undefined)
        );
      case 'Rejected':
        return result.code === 'grantEnded' && firstResult.type === 'AcquiredAll' && !holdsFirst;
      default:
        return false;
    }
  }

  private rememberResult(command: LockCommand, result: LockResult): void {
    const key = requestKey(command);
    if (key === null) return;
    const sequence = this.requestSequence++;
    const changedState =
      result.type !== 'Rejected' &&
      result.type !== 'NotAcquired' &&
      result.type !== 'NotAcquiredAll';
    const first = this.remembered.get(key);
    // A retry after a refusal is evaluated afresh; its result is the one to keep.
    if (first !== undefined && (first.changedState || !changedState)) return;
    this.remembered.set(key, { encoded: JSON.stringify(result), changedState, sequence });
  }

  // ------------------------------------------------------------ state, for Step

  session(id: SessionId): ModelSession | undefined {
    return this.sessions.get(id);
  }

  openSession(id: SessionId, ttlMs: number, index: number, nowMs: number): void {
    this.sessions.set(id, { ttlMs, lastRefreshIndex: index, lastRefreshAtMs: nowMs });
  }

  endSession(id: SessionId): void {
    this.sessions.delete(id);
  }

  lock(name: string): ModelLock {
    let lock = this.locks.get(name);
    if (lock === undefined) {
      lock = {
        lastToken: 0,
        holders: new Map(),
        waiters: [],
        closedUntilMs: 0,
        kind: 'lock',
        limit: undefined,
        delays: new Set(),
      };
      this.locks.set(name, lock);
    }
    return lock;
  }

  holdings(id: SessionId): string[] {
    const names: string[] = [];
    for (const [name, lock] of this.locks) {
      if (lock.holders.has(id) || lock.waiters.some((waiter) => waiter.sessionId === id))
        names.push(name);
    }
    return names;
  }

  /**
   * A set is whole after every entry: each of its grants stands on every lock of the set
   * under one token, and each of its waits has its place in every queue of the set.
   */
  setProblem(): string | null {
    for (const [name, lock] of this.locks) {
      for (const [id, grant] of lock.holders) {
        const names = grant.lockSet;
        if (names === undefined) continue;
        if (!names.includes(name)) return `${id} holds ${name} in a set without it: ${names}`;
        for (const member of names) {
          const other = this.locks.get(member)?.holders.get(id);
          if (other?.token !== grant.token || other.lockSet?.join() !== names.join())
            return `${id} holds ${name} of the set ${names} under token ${grant.token}, but ${member} under ${other?.token ?? 'nothing'}: a partial grant`;
        }
      }
      for (const place of lock.waiters) {
        const names = place.lockSet;
        if (names === undefined) continue;
        for (const member of names) {
          const queue = this.locks.get(member)?.waiters ?? [];
          if (!queue.some((each) => samePlace(each, place)))
            return `${place.sessionId} waits for ${name} as part of the set ${names} (request ${place.requestIndex}) but not for ${member}`;
        }
      }
    }
    return null;
  }

  /**
   * The kinds' promises after every entry: a semaphore's holders hold at most its limit
   * of permits, an election has at most one leader, and every grant and place of a name
   * is of its kind.
   */
  kindProblem(): readonly [property: string, detail: string] | null {
    for (const [name, lock] of this.locks) {
      const entries = [...lock.holders.values(), ...lock.waiters];
      if (lock.kind === 'semaphore') {
        let held = 0;
        for (const grant of lock.holders.values()) held += grant.permits ?? 0;
        if (held > (lock.limit ?? 0))
          return ['Semaphore', `${name} has ${held} permits held, over its limit ${lock.limit}`];
      }
      if (lock.kind === 'election' && lock.holders.size > 1)
        return [
          'Election',
          `${name} has ${lock.holders.size} leaders: ${[...lock.holders.keys()]}`,
        ];
      const wrong = entries.find(
        (each) =>
          (each.permits !== undefined) !== (lock.kind === 'semaphore') ||
          (each.value !== undefined) !== (lock.kind === 'election'),
      );
      if (wrong !== undefined)
        return ['Lock model', `${name}, a ${lock.kind}, has a grant or place not of its kind`];
    }
    return null;
  }

  /** The behaviour version in force (from the SetBehaviour entries applied). */
  behaviour = 1;

  get lockDelayMs(): number {
    return this.options.lockDelayMs;
  }

  /** The shortest real time a duration measured on a drifting clock may take. */
  minimumMs(durationMs: number): number {
    return durationMs * this.slack - 1e-6;
  }

  private describeState(): string {
    const sessions = [...this.sessions.entries()]
      .sort(([a], [b]) => a - b)
      .map(([id, session]) => `${id}:${session.ttlMs}:${session.lastRefreshIndex}`);
    const locks = [...this.locks.entries()]
      .filter(([, lock]) => lock.holders.size + lock.waiters.length > 0)
      .sort(([a], [b]) => compareStrings(a, b))
      .map(([name, lock]) =>
        describeLock(
          kindTag(name, lock.kind, lock.limit),
          [...lock.holders.entries()].map(([id, grant]) => ({ sessionId: id, ...grant })),
          lock.waiters,
        ),
      );
    return [...sessions, ...locks].join(' ');
  }
}

/** The same canonical text as the model's, read through the state machine's queries. */
function describeReplica(locks: LockStateMachine): string {
  const sessions = locks.sessionIds().map((id) => {
    const session = locks.session(id);
    return `${id}:${session?.ttlMs}:${session?.lastRefreshIndex}`;
  });
  const described = locks
    .listLocks('', Number.MAX_SAFE_INTEGER)
    .map((name) => locks.describe(name))
    .filter((lock) => lock.holders.length + lock.waiters.length > 0)
    .map((lock) =>
      describeLock(kindTag(lock.lock, lock.kind ?? 'lock', lock.limit), lock.holders, lock.waiters),
    );
  return [...sessions, ...described].join(' ');
}

/** A name with its kind (and a semaphore's limit), as the replicas' text shows it. */
function kindTag(name: string, kind: LockKind, limit: number | undefined): string {
  if (kind === 'lock') return name;
  return `${name}:${kind}${limit === undefined ? '' : `/${limit}`}`;
}

/** Whether a name has a record now (holders, waiters or a lock-delay), so keeps its kind. */
function hasRecord(lock: ModelLock): boolean {
  return lock.holders.size > 0 || lock.waiters.length > 0 || lock.delays.size > 0;
}

/** The kind a request asks for, and a semaphore's limit. */
function askedKind(command: LockCommand): { kind: LockKind; limit: number | undefined } | null {
  switch (command.type) {
    case 'Acquire':
    case 'AcquireAll':
      return { kind: 'lock', limit: undefined };
    case 'AcquirePermits':
      return { kind: 'semaphore', limit: command.limit };
    case 'Campaign':
    case 'Proclaim':
      return { kind: 'election', limit: undefined };
    default:
      return null;
  }
}

/** The names a request names. */
function namesOf(command: LockCommand): readonly string[] {
  if (command.type === 'AcquireAll') return command.locks.map((claim) => claim.lock);
  return 'lock' in command ? [command.lock] : [];
}

function describeLock(
  name: string,
  holders: readonly {
    sessionId: SessionId;
    mode: LockMode;
    token: number;
    permits?: number | undefined;
    value?: string | undefined;
  }[],
  waiters: readonly {
    sessionId: SessionId;
    requestIndex: number;
    permits?: number | undefined;
    value?: string | undefined;
  }[],
): string {
  const extra = (each: { permits?: number | undefined; value?: string | undefined }): string =>
    (each.permits === undefined ? '' : `/p${each.permits}`) +
    (each.value === undefined ? '' : `/v${JSON.stringify(each.value)}`);
  const held = [...holders]
    .sort((a, b) => a.sessionId - b.sessionId)
    .map((holder) => `${holder.sessionId}/${holder.mode}/${holder.token}${extra(holder)}`);
  const queue = waiters.map(
    (waiter) => `${waiter.sessionId}@${waiter.requestIndex}${extra(waiter)}`,
  );
  return `${name}[${held.join(',')}|${queue.join(',')}]`;
}

/** One command's application, checked against the model and then folded into it. */
class Step {
  /** Waiters this entry promoted, by lock, whose grant must follow. */
  private readonly promoted = new Map<string, ModelWaiter[]>();
  private readonly endedSessions: SessionId[] = [];

  constructor(
    private readonly model: LockModel,
    private readonly index: LogIndex,
    private readonly command: LockCommand,
    private readonly output: ApplyOutput,
    private readonly nowMs: number,
    private readonly at: string,
  ) {}

  run(): void {
    const result = this.output.result;
    if (result.type === 'Rejected') this.checkRefusal(result.code);
    else this.checkBefore(result);
    for (const event of this.output.events) this.event(event);
    for (const [lock, waiters] of this.promoted) {
      if (waiters.length > 0)
        this.fail(`promoted ${waiters[0]?.sessionId} on ${lock} without a grant`);
    }
    for (const id of this.endedSessions) {
      const left = this.model.holdings(id);
      if (left.length > 0) this.fail(`session ${id} ended but still holds or waits for ${left}`);
      this.model.endSession(id);
    }
    if (result.type !== 'Rejected') this.checkAfter(result);
    const broken = this.model.setProblem();
    if (broken !== null) violation('Multi-lock', `${this.at}: ${broken}`);
    const kindBroken = this.model.kindProblem();
    if (kindBroken !== null) violation(kindBroken[0], `${this.at}: ${kindBroken[1]}`);
  }

  fail(detail: string): never {
    violation('Lock model', `${this.at}: ${detail}`);
  }

  private checkSetAfter(
    command: Extract<LockCommand, { type: 'AcquireAll' }>,
    result: Exclude<LockResult, { type: 'Rejected' }>,
  ): void {
    checkSetAnswer(this, this.model, this.index, this.nowMs, command, result);
  }

  private live(id: SessionId): boolean {
    return this.model.session(id) !== undefined;
  }

  /** A refusal must have the cause it names. */
  private checkRefusal(code: string): void {
    const command = this.command;
    if (this.output.events.length > 0) this.fail(`refused (${code}) but changed state`);
    if (code === 'sessionNotFound' && 'sessionId' in command && this.live(command.sessionId))
      this.fail(`refused as sessionNotFound, but session ${command.sessionId} is live`);
    if (code === 'deadlock') this.checkCycle();
    if (code === 'kindMismatch') this.checkKindMismatch();
    const kinds = ['AcquirePermits', 'Campaign', 'Proclaim'];
    if (code === 'invalidArgument' && kinds.includes(command.type) && this.model.behaviour >= 5)
      this.fail(`refused ${command.type} as invalidArgument at behaviour ${this.model.behaviour}`);
    if (command.type === 'Proclaim') {
      const held = this.model.lock(command.lock).holders.get(command.sessionId);
      if (code === 'notHolder' && held !== undefined)
        this.fail(`Proclaim refused as notHolder, but ${command.sessionId} leads ${command.lock}`);
      if (code === 'staleToken' && (held === undefined || held.token === command.token))
        this.fail(`Proclaim token ${command.token} refused as stale, the term is ${held?.token}`);
    }
    if (code === 'alreadyHolding' && command.type === 'AcquireAll') {
      const held = command.locks.some(({ lock }) =>
        this.model.lock(lock).holders.has(command.sessionId),
      );
      if (!held)
        this.fail(`refused as alreadyHolding, but ${command.sessionId} holds none of the set`);
    }
    if (command.type !== 'Release') return;
    const held = this.model.lock(command.lock).holders.get(command.sessionId);
    if (code === 'notHolder' && held !== undefined)
      this.fail(`refused as notHolder, but ${command.sessionId} holds ${command.lock}`);
    if (code === 'staleToken' && (held === undefined || held.token === command.token))
      this.fail(`refused token ${command.token} as stale, the grant is ${held?.token ?? 'none'}`);
  }

  /** A kindMismatch names a name whose record is of another kind (or limit) now. */
  private checkKindMismatch(): void {
    const asked = askedKind(this.command);
    if (asked === null) this.fail(`refused ${this.command.type} as kindMismatch`);
    const other = namesOf(this.command).some((name) => {
      const lock = this.model.lock(name);
      if (!hasRecord(lock)) return false;
      if (this.command.type === 'Proclaim') return lock.kind !== 'election';
      return lock.kind !== asked.kind || lock.limit !== asked.limit;
    });
    if (!other) this.fail(`refused as kindMismatch, but every name is free or of its kind`);
  }

  /**
   * An accepted request's names are free or of its kind; one it names that is free takes
   * the kind (it matters only if the request leaves a record).
   */
  private checkKindAccepted(): void {
    const asked = askedKind(this.command);
    if (asked === null) return;
    if (this.model.behaviour < 5 && asked.kind !== 'lock')
      this.fail(`accepted ${this.command.type} at behaviour ${this.model.behaviour}`);
    for (const name of namesOf(this.command)) {
      const lock = this.model.lock(name);
      if (!hasRecord(lock)) {
        lock.kind = asked.kind;
        lock.limit = asked.limit;
      } else if (lock.kind !== asked.kind || lock.limit !== asked.limit)
        this.fail(
          `accepted a ${asked.kind} request on ${name}, a ${lock.kind} ${lock.limit ?? ''}`,
        );
    }
  }

  /**
   * A `deadlock` refusal must name a real cycle, checked hop by hop in the model's own
   * state: it starts and ends at the requester, each hop's blocker is the next hop's
   * waiter, and each waiter really cannot go on before its blocker does. A holder blocks
   * a waiter whose mode it excludes. A place ahead in the queue blocks it when either
   * of the two is exclusive or the place is a set's (granted only with the rest of its
   * set); two shared single-lock places are granted one after the other, so the one
   * behind does not wait for the other to finish.
   */
  private checkCycle(): void {
    const command = this.command;
    // An election's wait is an exclusive lock's; a semaphore's never closes a sure cycle.
    if (
      command.type !== 'Acquire' &&
      command.type !== 'AcquireAll' &&
      command.type !== 'Campaign'
    ) {
      this.fail(`refused ${command.type} as deadlock`);
    }
    const result = this.output.result;
    const cycle = result.type === 'Rejected' ? (result.cycle ?? []) : [];
    const requester = command.sessionId;
    const claims =
      command.type === 'AcquireAll'
        ? command.locks
        : [{ lock: command.lock, mode: askOf(command).mode }];
    const text = JSON.stringify(cycle);
    if (cycle.length === 0) this.fail('refused as deadlock without naming a cycle');
    cycle.forEach((hop, k) => {
      const next = cycle[(k + 1) % cycle.length];
      if (k === 0 && hop.waiter !== requester) this.fail(`deadlock cycle ${text} starts elsewhere`);
      if (next !== undefined && hop.blocker !== next.waiter)
        this.fail(`deadlock cycle ${text} is broken at hop ${k}`);
      const lock = this.model.lock(hop.lock);
      const claim =
        hop.waiter === requester ? claims.find((each) => each.lock === hop.lock) : undefined;
      const waiterAt = lock.waiters.findIndex((waiter) => waiter.sessionId === hop.waiter);
      const place = lock.waiters[waiterAt];
      // The requester's new claim would join the queue at its end.
      const mode = claim?.mode ?? place?.mode;
      const position = claim !== undefined ? lock.waiters.length : waiterAt;
      if (mode === undefined)
        this.fail(`deadlock hop ${k}: ${hop.waiter} does not wait for ${hop.lock}`);
      const held = lock.holders.get(hop.blocker);
      const blocks = hop.blockerHolds
        ? held !== undefined && (held.mode === 'exclusive' || mode === 'exclusive')
        : lock.waiters
            .slice(0, position)
            .some(
              (ahead) =>
                ahead.sessionId === hop.blocker &&
                (ahead.mode === 'exclusive' || mode === 'exclusive' || ahead.lockSet !== undefined),
            );
      if (!blocks || hop.blocker === hop.waiter)
        this.fail(`deadlock hop ${k} (${JSON.stringify(hop)}) is no wait in the model`);
    });
  }

  /** What the result claims about the state before the command. */
  private checkBefore(result: Exclude<LockResult, { type: 'Rejected' }>): void {
    const command = this.command;
    switch (command.type) {
      case 'OpenSession':
        if (result.type === 'SessionOpened') {
          if ((result.sessionId as number) !== this.index || result.ttlMs !== command.ttlMs)
            this.fail(`opened ${JSON.stringify(result)}, not session ${this.index}`);
          this.model.openSession(result.sessionId, command.ttlMs, this.index, this.nowMs);
        }
        return;
      case 'KeepAlive':
        this.keepAlive(command.sessionIds, result);
        return;
      case 'CloseSession':
        if (!this.live(command.sessionId)) this.fail(`closed unknown ${command.sessionId}`);
        this.endedSessions.push(command.sessionId);
        return;
      case 'ExpireSession':
        this.expire(command.sessionId, command.lastRefreshIndex, result);
        return;
      case 'Acquire':
      case 'AcquireAll':
      case 'AcquirePermits':
      case 'Campaign':
        if (!this.live(command.sessionId)) this.fail(`acquired for dead ${command.sessionId}`);
        this.checkKindAccepted();
        return;
      case 'Proclaim': {
        this.checkKindAccepted();
        const lock = this.model.lock(command.lock);
        const grant = lock.holders.get(command.sessionId);
        if (grant?.token !== command.token) {
          const leaders = [...lock.holders].map(([id, each]) => `${id}/${each.token}`);
          violation(
            'Election',
            `${this.at}: Proclaim by ${command.sessionId} with token ${command.token} accepted, but ${command.lock} is led by ${leaders.join() || 'no one'}`,
          );
        }
        grant.value = command.value;
        return;
      }
      case 'Release': {
        const held = this.model.lock(command.lock).holders.get(command.sessionId);
        if (held?.token !== command.token)
          this.fail(`released ${command.lock} token ${command.token}, model grant ${held?.token}`);
        return;
      }
      case 'MaxHoldReached': {
        const held = this.model.lock(command.lock).holders.get(command.sessionId);
        const current = held?.token === command.token;
        if (result.type === 'Stale' && current) this.fail('stale, but the grant is current');
        if (result.type !== 'Stale' && !current) this.fail('ended a grant that is not current');
        if (result.type !== 'Stale' && held !== undefined) {
          const heldMs = this.nowMs - held.grantedAtMs;
          if (heldMs < this.model.minimumMs(held.maxHoldMs))
            this.fail(`max-hold ${held.maxHoldMs} ms ended after ${heldMs.toFixed(1)} ms`);
        }
        return;
      }
      case 'WaitExpired': {
        const waiter = this.model
          .lock(command.lock)
          .waiters.find((each) => each.sessionId === command.sessionId);
        const current = waiter?.requestIndex === command.waiterIndex;
        if (result.type === 'Stale' && current) this.fail('stale, but the wait is current');
        if (result.type !== 'Stale' && !current) this.fail('ended a wait that is not current');
        if (result.type !== 'Stale' && waiter !== undefined) {
          const waitedMs = this.nowMs - waiter.queuedAtMs;
          if (waitedMs < this.model.minimumMs(waiter.waitMs))
            this.fail(`wait of ${waiter.waitMs} ms ended after ${waitedMs.toFixed(1)} ms`);
        }
        return;
      }
      default:
        return;
    }
  }

  private keepAlive(ids: readonly SessionId[], result: LockResult): void {
    if (result.type !== 'KeptAlive') this.fail(`answered ${result.type}`);
    const live = ids.filter((id) => this.live(id));
    const dead = ids.filter((id) => !this.live(id));
    if (!sameSet(result.refreshed, live) || !sameSet(result.missing, dead))
      this.fail(`refreshed ${result.refreshed} missing ${result.missing}; model: live ${live}`);
    for (const id of live) {
      const session = this.model.session(id);
      if (session === undefined) continue;
      session.lastRefreshIndex = this.index;
      session.lastRefreshAtMs = this.nowMs;
    }
  }

  /**
   * The guard and the lease, from the model's own record of refreshes: an expiry that
   * names an older refresh than the last one must be stale, and a lease never ends
   * before its TTL has run from its last refresh.
   */
  private expire(id: SessionId, namedRefresh: LogIndex, result: LockResult): void {
    const session = this.model.session(id);
    const current = session !== undefined && session.lastRefreshIndex === namedRefresh;
    if (result.type === 'Stale') {
      if (current) this.fail(`expiry of ${id} timed from its last refresh was stale`);
      return;
    }
    if (session === undefined) this.fail(`expired unknown session ${id}`);
    if (!current) {
      this.fail(
        `expired ${id} timed from refresh ${namedRefresh}, but it was refreshed at ${session.lastRefreshIndex}`,
      );
    }
    const livedMs = this.nowMs - session.lastRefreshAtMs;
    if (livedMs < this.model.minimumMs(session.ttlMs)) {
      violation(
        'Lease',
        `${this.at}: session ${id} (ttl ${session.ttlMs} ms) expired ${livedMs.toFixed(1)} ms after its last refresh at ${session.lastRefreshIndex}`,
      );
    }
    this.endedSessions.push(id);
  }

  private event(event: LockEvent): void {
    switch (event.type) {
      case 'granted':
        this.granted(event.lock, event.holder);
        return;
      case 'proclaimed': {
        const command = this.command;
        if (
          command.type !== 'Proclaim' ||
          command.lock !== event.lock ||
          command.sessionId !== event.sessionId ||
          (command.token as number) !== (event.token as number) ||
          command.value !== event.value
        )
          this.fail(`proclaimed ${JSON.stringify(event)} for ${command.type}`);
        return;
      }
      case 'delayStarted':
        this.model.lock(event.lock).delays.add(event.delayIndex);
        return;
      case 'delayEnded':
        this.model.lock(event.lock).delays.delete(event.delayIndex);
        return;
      case 'released':
        this.released(event.lock, event.sessionId, event.token, event.reason);
        return;
      case 'waitEnded':
        this.waitEnded(event.lock, event.sessionId, event.requestIndex, event.reason);
        return;
      case 'sessionEnded':
        if (!this.endedSessions.includes(event.sessionId))
          this.fail(`session ${event.sessionId} ended by ${this.command.type}`);
        return;
      default:
        return;
    }
  }

  private granted(name: string, holder: Holder): void {
    const { sessionId: id, mode, token } = holder;
    const lock = this.model.lock(name);
    if (!this.live(id)) this.fail(`granted ${name} to dead session ${id}`);
    if ((token as number) !== (this.index as number))
      this.fail(`grant of ${name} carries token ${token}`);
    if (token <= lock.lastToken)
      violation(
        'Fencing',
        `${this.at}: ${name} granted with token ${token} after ${lock.lastToken}`,
      );
    lock.lastToken = token;
    if (lock.holders.has(id)) this.fail(`granted ${name} again to its holder ${id}`);
    const promoted = this.promoted.get(name)?.shift();
    const request = promoted ?? this.directRequest(name, id, mode, lock);
    this.checkKindGrant(name, lock, holder, request);
    const modes = [...lock.holders.values()].map((grant) => grant.mode);
    if (modes.length > 0 && (mode === 'exclusive' || modes.includes('exclusive'))) {
      violation('Mutual exclusion', `${this.at}: ${name} granted ${mode} to ${id} beside ${modes}`);
    }
    if (this.nowMs < lock.closedUntilMs)
      this.fail(`granted ${name} ${(lock.closedUntilMs - this.nowMs).toFixed(1)} ms early`);
    if (request.mode !== mode) this.fail(`granted ${name} ${mode}, asked ${request.mode}`);
    lock.holders.set(id, {
      mode,
      permits: request.permits,
      value: request.value,
      lockSet: request.lockSet,
      token,
      grantedAtMs: this.nowMs,
      maxHoldMs: request.maxHoldMs,
      lockDelayMs: request.lockDelayMs,
    });
  }

  /**
   * A grant of a semaphore or an election: what was asked (its permits, its value), of
   * the name's kind; a semaphore's permits held stay within its limit, and an election
   * gets a leader only while it has none.
   */
  private checkKindGrant(
    name: string,
    lock: ModelLock,
    holder: Holder,
    request: { permits: number | undefined; value: string | undefined },
  ): void {
    const kind: LockKind =
      request.permits !== undefined
        ? 'semaphore'
        : request.value !== undefined
          ? 'election'
          : 'lock';
    if (kind !== lock.kind) this.fail(`granted ${name}, a ${lock.kind}, as a ${kind}`);
    if (holder.permits !== request.permits || holder.value !== request.value)
      this.fail(
        `granted ${name} to ${holder.sessionId} with permits ${holder.permits} value ${holder.value}, asked ${request.permits} ${request.value}`,
      );
    if (kind === 'election' && lock.holders.size > 0) {
      const leaders = [...lock.holders].map(([id, grant]) => `${id}/${grant.token}`);
      violation(
        'Election',
        `${this.at}: ${name} elected ${holder.sessionId} (token ${holder.token}) while ${leaders} leads`,
      );
    }
    if (kind === 'semaphore') {
      let held = 0;
      for (const grant of lock.holders.values()) held += grant.permits ?? 0;
      if (held + (request.permits ?? 0) > (lock.limit ?? 0))
        violation(
          'Semaphore',
          `${this.at}: ${name} granted ${request.permits} permits to ${holder.sessionId} beside ${held} held, over its limit ${lock.limit}`,
        );
    }
  }

  /** A grant without a promotion is the Acquire's own, and must not jump the queue. */
  private directRequest(
    name: string,
    id: SessionId,
    mode: LockMode,
    lock: ModelLock,
  ): {
    mode: LockMode;
    maxHoldMs: number;
    lockDelayMs: number;
    lockSet: readonly string[] | undefined;
    permits: number | undefined;
    value: string | undefined;
  } {
    const command = this.command;
    if (lock.waiters.length > 0)
      this.fail(`granted ${name} to ${id} ahead of ${lock.waiters.length} waiters`);
    if (command.type === 'AcquireAll' && command.sessionId === id) {
      const claim = command.locks.find((each) => each.lock === name);
      if (claim === undefined) this.fail(`granted ${name} to ${id} outside the set it asked`);
      const lockSet = setNames(command.locks.map((each) => each.lock));
      return { ...command, mode: claim.mode, lockSet, permits: undefined, value: undefined };
    }
    const single =
      command.type === 'Acquire' ||
      command.type === 'AcquirePermits' ||
      command.type === 'Campaign';
    if (!single || command.lock !== name || command.sessionId !== id)
      this.fail(`granted ${name} to ${id} who did not ask (${mode})`);
    return { ...command, ...askOf(command), lockSet: undefined };
  }

  private released(name: string, id: SessionId, token: number, reason: string): void {
    const lock = this.model.lock(name);
    const grant = lock.holders.get(id);
    if (grant?.token !== token)
      this.fail(`released ${name} token ${token} of ${id}; model grant ${grant?.token}`);
    const causes: Record<string, LockCommand['type']> = {
      release: 'Release',
      close: 'CloseSession',
      expire: 'ExpireSession',
      maxHold: 'MaxHoldReached',
      revoke: 'Revoke',
    };
    if (causes[reason] !== this.command.type) this.fail(`released ${name} for ${reason}`);
    lock.holders.delete(id);
    const delayMs = grant.lockDelayMs > 0 ? grant.lockDelayMs : this.model.lockDelayMs;
    if (reason === 'expire' && delayMs > 0) {
      lock.closedUntilMs = Math.max(lock.closedUntilMs, this.nowMs + this.model.minimumMs(delayMs));
    }
  }

  private waitEnded(name: string, id: SessionId, requestIndex: number, reason: string): void {
    const lock = this.model.lock(name);
    const position = lock.waiters.findIndex((waiter) => waiter.sessionId === id);
    const waiter = lock.waiters[position];
    if (waiter?.requestIndex !== requestIndex)
      this.fail(`ended wait ${id}@${requestIndex} on ${name}, model has ${waiter?.requestIndex}`);
    lock.waiters.splice(position, 1);
    if (reason === 'granted') {
      if (position !== 0) this.fail(`promoted ${id} from position ${position} of ${name}`);
      const promoted = this.promoted.get(name) ?? [];
      promoted.push(waiter);
      this.promoted.set(name, promoted);
    } else if (reason === 'expired' && this.command.type !== 'WaitExpired') {
      this.fail(`wait of ${id} on ${name} expired by ${this.command.type}`);
    } else if (reason === 'sessionEnded' && !this.endedSessions.includes(id)) {
      this.fail(`wait of ${id} on ${name} ended with a session that did not end`);
    }
  }

  /**
   * Permits that fit (no waiter ahead, no lock-delay, within the limit beside those held)
   * are granted, and so is a candidacy that finds no leader, no candidate ahead and no
   * lock-delay: a semaphore that is not full, or an election without a leader, does not
   * make a request wait or refuse it.
   */
  private checkNotWaitingForNothing(
    command: Extract<LockCommand, { type: 'Acquire' | 'AcquirePermits' | 'Campaign' }>,
    lock: ModelLock,
  ): void {
    if (command.type === 'Acquire') return;
    if (lock.waiters.length > 0 || lock.delays.size > 0 || this.nowMs < lock.closedUntilMs) return;
    let held = 0;
    for (const grant of lock.holders.values()) held += grant.permits ?? 0;
    const free =
      command.type === 'AcquirePermits'
        ? held + command.permits <= command.limit
        : lock.holders.size === 0;
    if (free) {
      violation(
        command.type === 'Campaign' ? 'Election' : 'Semaphore',
        `${this.at}: ${command.type} by ${command.sessionId} not granted although ${command.type === 'Campaign' ? 'no one leads' : `${held} of ${command.limit} permits are held`} and no one waits`,
      );
    }
  }

  /** What the result claims about the state after the command. */
  private checkAfter(result: Exclude<LockResult, { type: 'Rejected' }>): void {
    const command = this.command;
    if (command.type === 'AcquireAll') {
      this.checkSetAfter(command, result);
      return;
    }
    if (
      command.type !== 'Acquire' &&
      command.type !== 'AcquirePermits' &&
      command.type !== 'Campaign'
    )
      return;
    const lock = this.model.lock(command.lock);
    const holders = [...lock.holders.entries()].map(([id, grant]) => ({ sessionId: id, ...grant }));
    const expected = describeLock(command.lock, holders, []);
    const ask = askOf(command);
    switch (result.type) {
      case 'Acquired': {
        const grant = lock.holders.get(command.sessionId);
        if (grant === undefined || grant.token !== result.token || grant.mode !== result.mode)
          this.fail(`answered Acquired ${result.token}, model grant ${grant?.token}`);
        if (grant.permits !== ask.permits)
          this.fail(`answered Acquired for ${ask.permits} permits, model grant ${grant.permits}`);
        if (describeLock(command.lock, result.holders, []) !== expected)
          this.fail(`answered holders ${JSON.stringify(result.holders)}, model ${expected}`);
        return;
      }
      case 'NotAcquired':
        if (command.waitMs > 0) this.fail('a waiting Acquire was refused at once');
        this.checkNotWaitingForNothing(command, lock);
        if (describeLock(command.lock, result.holders, []) !== expected)
          this.fail(`answered holders ${JSON.stringify(result.holders)}, model ${expected}`);
        return;
      case 'Queued': {
        if (command.waitMs === 0) this.fail('a try-lock was queued');
        if (lock.holders.has(command.sessionId)) this.fail('queued a holder');
        if (lock.waiters.some((waiter) => waiter.sessionId === command.sessionId)) return;
        this.checkNotWaitingForNothing(command, lock);
        lock.waiters.push({
          lockSet: undefined,
          sessionId: command.sessionId,
          requestIndex: this.index,
          ...ask,
          queuedAtMs: this.nowMs,
          waitMs: command.waitMs,
          maxHoldMs: command.maxHoldMs,
          lockDelayMs: command.lockDelayMs,
        });
        return;
      }
      default:
        this.fail(`answered ${result.type}`);
    }
  }
}

/**
 * What an AcquireAll's answer claims: the whole set granted under one token, its
 * places in every queue, or (a try-lock) nothing; each lock's holders as the model's.
 */
function checkSetAnswer(
  step: { fail(detail: string): never },
  model: LockModel,
  index: number,
  nowMs: number,
  command: Extract<LockCommand, { type: 'AcquireAll' }>,
  result: Exclude<LockResult, { type: 'Rejected' }>,
): void {
  const id = command.sessionId;
  const names = setNames(command.locks.map((claim) => claim.lock));
  const modeOf = new Map(command.locks.map((claim) => [claim.lock, claim.mode]));
  const holdersOf = (name: string): string => {
    const holders = [...model.lock(name).holders.entries()].map(([sessionId, grant]) => ({
      sessionId,
      ...grant,
    }));
    return describeLock(name, holders, []);
  };
  const answered = (locks: readonly { lock: string }[]): void => {
    if (locks.map((each) => each.lock).join() !== names.join())
      step.fail(`answered for ${locks.map((each) => each.lock)}, the set is ${names}`);
  };
  switch (result.type) {
    case 'AcquiredAll':
      answered(result.locks);
      for (const each of result.locks) {
        const grant = model.lock(each.lock).holders.get(id);
        if (grant?.token !== result.token || grant.mode !== modeOf.get(each.lock))
          step.fail(
            `answered AcquiredAll ${result.token}, model holds ${each.lock} under ${grant?.token}`,
          );
        if (grant.lockSet?.join() !== names.join())
          step.fail(`answered AcquiredAll, but ${each.lock} is held outside the set`);
        if (describeLock(each.lock, each.holders, []) !== holdersOf(each.lock))
          step.fail(
            `answered holders ${JSON.stringify(each.holders)}, model ${holdersOf(each.lock)}`,
          );
      }
      return;
    case 'NotAcquiredAll':
      answered(result.locks);
      if (command.waitMs > 0) step.fail('a waiting AcquireAll was refused at once');
      for (const each of result.locks) {
        if (model.lock(each.lock).holders.has(id))
          step.fail(`NotAcquiredAll, but ${id} holds ${each.lock}`);
        if (describeLock(each.lock, each.holders, []) !== holdersOf(each.lock))
          step.fail(
            `answered holders ${JSON.stringify(each.holders)}, model ${holdersOf(each.lock)}`,
          );
      }
      return;
    case 'QueuedAll': {
      answered(result.locks);
      if (command.waitMs === 0) step.fail('a try-lock set was queued');
      const waiting = names.filter((name) =>
        model.lock(name).waiters.some((waiter) => waiter.sessionId === id),
      );
      // Told its places again (a retry): they must all be there already.
      if (waiting.length > 0) {
        if (waiting.length !== names.length) step.fail(`QueuedAll, but waits only for ${waiting}`);
        return;
      }
      for (const name of names) {
        const lock = model.lock(name);
        if (lock.holders.has(id)) step.fail(`queued the set for ${name}, which ${id} holds`);
        lock.waiters.push({
          lockSet: names,
          sessionId: id,
          requestIndex: index,
          mode: modeOf.get(name) ?? 'exclusive',
          permits: undefined,
          value: undefined,
          queuedAtMs: nowMs,
          waitMs: command.waitMs,
          maxHoldMs: command.maxHoldMs,
          lockDelayMs: command.lockDelayMs,
        });
      }
      const told = result.locks.map((each) => {
        const position = model.lock(each.lock).waiters.findIndex((w) => w.sessionId === id);
        return position === each.position;
      });
      if (!told.every(Boolean)) step.fail(`answered places ${JSON.stringify(result.locks)}`);
      return;
    }
    default:
      step.fail(`answered ${result.type} to AcquireAll`);
  }
}

/** What a single-name request asks: its mode, and a semaphore's permits or an election's value. */
function askOf(
  command: Extract<LockCommand, { type: 'Acquire' | 'AcquirePermits' | 'Campaign' }>,
): {
  mode: LockMode;
  permits: number | undefined;
  value: string | undefined;
} {
  switch (command.type) {
    case 'Acquire':
      return { mode: command.mode, permits: undefined, value: undefined };
    case 'AcquirePermits':
      return { mode: 'shared', permits: command.permits, value: undefined };
    case 'Campaign':
      return { mode: 'exclusive', permits: undefined, value: command.value };
  }
}

/** A set's names as the promise orders them: code-unit order. */
function setNames(names: readonly string[]): string[] {
  return [...names].sort(compareStrings);
}

function samePlace(a: ModelWaiter, b: ModelWaiter): boolean {
  return a.sessionId === b.sessionId && a.requestIndex === b.requestIndex;
}

/**
 * Retries are recognised by request id within the command's type and session, as the
 * API promises; OpenSession by its request id alone.
 */
function requestKey(command: LockCommand): string | null {
  if (!('requestId' in command)) return null;
  if (command.type === 'OpenSession') return `OpenSession/${command.requestId}`;
  return `${command.type}/${command.sessionId}/${command.requestId}`;
}

function sameSet(a: readonly number[], b: readonly number[]): boolean {
  const left = new Set(a);
  return left.size === new Set(b).size && b.every((item) => left.has(item));
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
