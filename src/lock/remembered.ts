import { assert, assertNever } from '../util/assert.ts';
import { type LogIndex, logIndex, type SessionId, sessionId as toSessionId } from '../util/ids.ts';
import { BEHAVIOUR_BASE, BEHAVIOUR_SEMAPHORES_ELECTIONS } from './behaviour.ts';
import type { LockLimits } from './limits.ts';
import {
  acquireKey,
  flatKey,
  type Grant,
  hasKeysInOrder,
  internedMode,
  type LockRecord,
  lockSetNames,
  type SessionRecord,
  waiterPosition,
} from './records.ts';
import type { Holder, LockCommand, LockResult, Waiter } from './types.ts';

/**
 * The dedupe window (issue 12's remembered results): what a request's first application
 * left, by request id, so that its retry is answered from it rather than applied twice;
 * the attempts (entries) that carried each Acquire, so that a Withdraw gives back only
 * what no caller may have been told of; and what a retry would be told now
 * (requestStatus, attemptsOf). The state machine decides when to remember and how a
 * retry is answered; this module keeps the window and its records' shapes.
 */

/**
 * What a request's retry is answered from. For an Acquire the result follows the
 * request's real outcome (a wait that ends becomes Acquired or NotAcquired), and
 * `openAttempts` are the entries that carried the request (its first application and
 * retries answered from here) and were not withdrawn: any of their callers may have
 * been told the outcome, so it is given back only once every one was withdrawn.
 * Attempts do not apply in the order their calls were made (a forward can land late),
 * so "the latest attempt" would not tell who was answered.
 */
export interface RememberedResult {
  readonly result: LockResult;
  readonly openAttempts: readonly number[];
  /** Set once an attempt was dropped past OPEN_ATTEMPTS_MAX: its caller may hold the grant. */
  readonly attemptsDropped?: true;
  /**
   * From behaviour version 3: the proposal that carried each open attempt, as
   * [attempt index, proposal id], so that a node which never applied the entry (it caught
   * up by a snapshot) can still find its own attempt (`attemptsOf`). Absent (or, read
   * from a OneAttempt, undefined) when empty. Only attempts in `openAttempts` are listed.
   */
  readonly attemptProposals?: readonly (readonly [number, string])[] | undefined;
}

/**
 * Open attempts kept per request. Past it the oldest is dropped, and its Withdraw is
 * then void: the grant stays (until released or its session ends) rather than being
 * taken from a caller who may have been told of it.
 */
const OPEN_ATTEMPTS_MAX = 16;

/**
 * `[...items, item]` in an array of exactly that length. A spread into an array literal
 * leaves room to grow (17 elements, 152 bytes, for one), and nearly every remembered
 * result holds a one-element list: 14.6 MB of a 100,000-lock heap (issue 12).
 */
function appended<T>(items: readonly T[], item: T): T[] {
  return items.length === 0 ? [item] : items.concat([item]);
}

/** The [attempt index, proposal id] of each of `waits` that recorded its proposal. */
function proposalsOf(waits: readonly Waiter[]): (readonly [number, string])[] {
  return waits.flatMap((wait) =>
    wait.proposalId === undefined ? [] : [[wait.requestIndex, wait.proposalId] as const],
  );
}

/** `proposalId`: the proposal that carried the attempt, or null when not recorded. */
function withAttempt(
  remembered: RememberedResult,
  index: number,
  proposalId: string | null,
): RememberedResult {
  const next = appended(remembered.openAttempts, index);
  const proposals = remembered.attemptProposals ?? [];
  const withProposal =
    proposalId === null ? proposals : appended(proposals, [index, proposalId] as const);
  if (next.length <= OPEN_ATTEMPTS_MAX) {
    return rememberedOf(remembered.result, next, remembered.attemptsDropped, withProposal);
  }
  const kept = next.slice(next.length - OPEN_ATTEMPTS_MAX);
  return rememberedOf(remembered.result, kept, true, withProposal);
}

/** `remembered` with `openAttempts` as given and only their proposals kept. */
export function withOpenAttempts(
  remembered: RememberedResult,
  openAttempts: readonly number[],
): RememberedResult {
  return rememberedOf(
    remembered.result,
    openAttempts,
    remembered.attemptsDropped,
    remembered.attemptProposals ?? [],
  );
}

/**
 * A remembered result built from object literals, keys in the order the snapshot has
 * always written them (result, openAttempts, attemptsDropped, attemptProposals), and
 * only the proposals of open attempts kept, the field left out when none are. Literals,
 * not spreads: `{ ...rest }` after an object rest pattern gave every remembered result
 * a hidden class of its own, 100,000 of them with their descriptor arrays and enum
 * caches, some 26 MB of a 100,000-lock node's heap (heap snapshot, issue 12). The
 * proposals are kept as given when all are open, else filtered into an array of exactly
 * their length: a list built by push or filter leaves room to grow (17 slots, 152 bytes,
 * for one pair), 128 bytes per held lock from behaviour version 3 on.
 */
function rememberedOf(
  result: LockResult,
  openAttempts: readonly number[],
  attemptsDropped: true | undefined,
  proposals: readonly (readonly [number, string])[],
): RememberedResult {
  const open = proposals.every(([index]) => openAttempts.includes(index))
    ? proposals
    : proposals.filter(([index]) => openAttempts.includes(index)).slice();
  const [attempt] = openAttempts;
  const proposal = open.length === 1 ? (open[0]?.[1] ?? null) : null;
  // A listed proposal is the one open attempt's. Only what the writers make (one string
  // id, or none) is compact; a snapshot edited by hand keeps its literal form.
  const compact = open.length === 0 || (open.length === 1 && typeof proposal === 'string');
  if (openAttempts.length === 1 && attempt !== undefined && attemptsDropped !== true && compact) {
    return new OneAttempt(result, attempt, proposal);
  }
  if (open.length === 0) {
    return attemptsDropped === true
      ? { result, openAttempts, attemptsDropped: true }
      : { result, openAttempts };
  }
  return attemptsDropped === true
    ? { result, openAttempts, attemptsDropped: true, attemptProposals: open }
    : { result, openAttempts, attemptProposals: open };
}

/**
 * The remembered result nearly every request leaves: one open attempt, its proposal
 * recorded or not, none dropped. One object where the literal form is four (the record,
 * `openAttempts`, `attemptProposals` and its one pair): 420 bytes of heap per remembered
 * result fell to some 250 at 100,000 held locks (issue 12), and the window's churn under
 * load is fewer old objects for the GC. The lists are made when read (retries, Withdraws,
 * invariants), and `toJSON` gives the literal form, so a snapshot (msgpackr uses
 * `toJSON` for a class's instances) stays byte for byte what the literal records wrote.
 */
class OneAttempt implements RememberedResult {
  constructor(
    readonly result: LockResult,
    private readonly attempt: number,
    private readonly proposal: string | null,
  ) {}

  get openAttempts(): readonly number[] {
    return [this.attempt];
  }

  get attemptProposals(): readonly (readonly [number, string])[] | undefined {
    return this.proposal === null ? undefined : [[this.attempt, this.proposal]];
  }

  /** The literal record, its keys in the order rememberedOf writes them. */
  toJSON(): RememberedResult {
    const openAttempts = [this.attempt];
    return this.proposal === null
      ? { result: this.result, openAttempts }
      : { result: this.result, openAttempts, attemptProposals: [[this.attempt, this.proposal]] };
  }
}

/** `remembered` in its literal form, as a snapshot encodes it. */
export function plainRemembered(remembered: RememberedResult): RememberedResult {
  return remembered instanceof OneAttempt ? remembered.toJSON() : remembered;
}

/** What the state machine shows of one write's attempts: see `attemptsOf`. */
export interface AttemptsOfProposal {
  readonly indexes: readonly LogIndex[];
  readonly now: LockResult | null;
}

/** What of the state machine the dedupe window uses; closures over its state and helpers. */
export interface RememberedHost {
  readonly locks: ReadonlyMap<string, LockRecord>;
  index(): LogIndex;
  behaviour(): number;
  rules(): LockLimits;
  /** The proposal id of the entry being applied, when attempts record theirs. */
  attemptProposal(): string | null;
  acquiredResult(lock: LockRecord, grant: Grant): LockResult;
  /** A set's answers (lock-set.ts). */
  acquiredAll(id: SessionId, names: readonly string[]): LockResult;
  queuedAll(id: SessionId, names: readonly string[]): LockResult;
}

/**
 * The remembered results, oldest first: Map keeps insertion order, the same on every
 * replica, and the oldest leave first once the window (dedupeWindowMax) is full.
 */
export class RememberedResults {
  private readonly window = new Map<string, RememberedResult>();
  /**
   * Where eviction reads the oldest key: one iterator kept across evictions. Each key it
   * passed was evicted, and a Map adds (and re-adds) keys only at its end, so the next
   * key it yields is the oldest in the window. Asking a new iterator instead
   * (`window.keys().next()`) walks from the start of V8's table over every key deleted
   * since its last rehash: with the window full at 100,000 that was some 40 µs a write on
   * every node, a write's cost growing with the window (issue 12).
   *
   * Made at the first eviction and dropped by a delete (a withdrawn wait's): V8 moves an
   * iterator to the Map's new table only when it is advanced, so one left waiting kept
   * every table the Map outgrew or rehashed meanwhile (a review measured 52 bytes per
   * queued-and-withdrawn wait, without bound, in a window that never filled). A new one
   * after a delete walks the deleted keys once.
   */
  private oldest: Iterator<string> | null = null;
  /** Set by acquire() for one command: earlier attempts of a wait whose memory was evicted. */
  /** The wait a retry found after its remembered result left the window (see remember). */
  private attemptsOfEvictedWait: Waiter[] = [];

  constructor(private readonly host: RememberedHost) {}

  /** How many results are remembered for retries; a SetRules may not shrink the window below it. */
  get size(): number {
    return this.window.size;
  }

  get(key: string): RememberedResult | undefined {
    return this.window.get(key);
  }

  /** Replaces `key`'s record, keeping its place in the window. */
  set(key: string, remembered: RememberedResult): void {
    const { result, openAttempts, attemptsDropped, attemptProposals } = remembered;
    this.window.set(
      key,
      rememberedOf(result, openAttempts, attemptsDropped, attemptProposals ?? []),
    );
  }

  delete(key: string): void {
    this.window.delete(key);
    this.oldest = null;
  }

  clear(): void {
    this.window.clear();
    this.oldest = null;
  }

  /** Oldest first, as a snapshot keeps them. */
  entries(): IterableIterator<[string, RememberedResult]> {
    return this.window.entries();
  }

  /** The earlier attempt of a wait whose remembered result left the window. */
  noteEvictedWait(wait: Waiter): void {
    this.attemptsOfEvictedWait = [wait];
  }

  /** A retry answered from `remembered` (under `key`) is an attempt of its own. */
  addAttempt(key: string, remembered: RememberedResult): void {
    this.window.set(key, withAttempt(remembered, this.host.index(), this.host.attemptProposal()));
  }

  /**
   * Only results that changed state are remembered: a refusal or a failed try-lock left
   * nothing to protect from a second application, so its retry simply runs again. A
   * session asking again while it already waits is told its place, but that answer is
   * not remembered either: the wait belongs to the request that queued it.
   */
  worthRemembering(command: LockCommand, result: LockResult): boolean {
    const refused = result.type === 'Rejected' || result.type === 'NotAcquired';
    if (refused || result.type === 'NotAcquiredAll') return false;
    if (isAcquire(command) && command.type !== 'AcquireAll' && result.type === 'Queued') {
      const lock = this.host.locks.get(command.lock);
      // The waiter at the told position, not a scan for it: a session waits at most once
      // per lock (checkInvariants), so that is the same test in O(1) per hand-off.
      const waiter = lock?.waiters[result.position];
      return waiter?.sessionId === command.sessionId && waiter.requestId === command.requestId;
    }
    return true;
  }

  remember(key: string, result: LockResult): void {
    const earlier = this.attemptsOfEvictedWait;
    this.attemptsOfEvictedWait = [];
    const isAttempt =
      result.type === 'Acquired' ||
      result.type === 'Queued' ||
      result.type === 'AcquiredAll' ||
      result.type === 'QueuedAll';
    const proposalId = isAttempt ? this.host.attemptProposal() : null;
    const index = this.host.index();
    const earlierProposals = proposalsOf(earlier);
    const proposals =
      proposalId === null ? earlierProposals : appended(earlierProposals, [index, proposalId]);
    const openAttempts = appended(
      earlier.map((wait) => wait.requestIndex),
      index,
    );
    this.window.set(
      key,
      rememberedOf(toRemember(result, this.host.behaviour()), openAttempts, undefined, proposals),
    );
    // Oldest first: Map keeps insertion order, the same on every replica.
    while (this.window.size > this.host.rules().dedupeWindowMax) {
      const oldest = this.nextOldest();
      if (oldest === undefined) break;
      this.window.delete(oldest);
    }
  }

  /** The oldest key in the window (see `oldest`), or undefined when it is empty. */
  private nextOldest(): string | undefined {
    this.oldest ??= this.window.keys();
    const next = this.oldest.next();
    // A finished iterator stays finished, even once keys are added.
    if (next.done === true) this.oldest = null;
    return next.done === true ? undefined : next.value;
  }

  /**
   * Rewrites the remembered result of the Acquire that queued `waiter` on `lock`,
   * keeping its place in the window. Only a Queued for that lock is the waiter's: a
   * client that reused the request id after it left the window has another request
   * under the key now.
   */
  rememberOutcome(lock: string, waiter: Waiter, result: LockResult): void {
    const key = acquireKey(waiter.sessionId, waiter.requestId);
    const remembered = this.window.get(key);
    const first = remembered?.result;
    const waits =
      (first?.type === 'Queued' && first.lock === lock) ||
      (first?.type === 'QueuedAll' && first.locks.some((each) => each.lock === lock));
    if (remembered !== undefined && waits) {
      this.window.set(
        key,
        rememberedOf(
          toRemember(result, this.host.behaviour()),
          remembered.openAttempts,
          remembered.attemptsDropped,
          remembered.attemptProposals ?? [],
        ),
      );
    }
  }

  /** Adds a snapshot's remembered results, in its order. */
  load(saved: Iterable<readonly [string, RememberedResult]>): void {
    // An older binary's snapshot kept every Acquired's holders; kept as this one keeps them.
    // A NotAcquired keeps what it was remembered with: its holders went only from version
    // 5 on, and one remembered before the raise keeps them on every replica that applied
    // it, so taking them away here would make this state differ from theirs.
    for (const [key, remembered] of saved) {
      this.window.set(
        key,
        rememberedOf(
          this.sharingWords(toRemember(remembered.result, BEHAVIOUR_BASE)),
          remembered.openAttempts,
          remembered.attemptsDropped,
          remembered.attemptProposals ?? [],
        ),
      );
    }
  }

  /**
   * A decoded Acquired or Queued (one per held lock or waiter) with its type and mode
   * the constants and its lock name the lock record's, not strings of their own that a
   * restored node would keep per held lock. The same keys, in the same order.
   */
  private sharingWords(result: LockResult): LockResult {
    if (result.type === 'Acquired') {
      const { token, holders } = result;
      const lock = this.nameOf(result.lock);
      const mode = internedMode(result.mode);
      // One literal, as acquiredResult builds it, where the keys are its: a spread of the
      // decoded object kept its properties out of the object (issue 12, restored heap).
      return hasKeysInOrder(result, ACQUIRED_KEYS)
        ? { type: 'Acquired', lock, token, mode, holders }
        : { ...result, type: 'Acquired', lock, mode };
    }
    if (result.type === 'Queued')
      return { ...result, type: 'Queued', lock: this.nameOf(result.lock) };
    return result;
  }

  /** `name` as the lock record of that name keeps it, when there is one. */
  private nameOf(name: string): string {
    return this.host.locks.get(name)?.name ?? name;
  }

  /**
   * What a retry of the Acquire or AcquireAll `command`'s request would be told now,
   * read-only: its grant (with today's holders) while the grant it was told of is held,
   * its place while it waits, null once that ended; undefined when the request is not
   * remembered (it left the window, or never applied). Asks by request, not by session:
   * the session may hold or wait for the same locks under another request.
   */
  requestStatus(command: LockCommand): LockResult | null | undefined {
    if (!isAcquire(command)) return undefined;
    const remembered = this.window.get(acquireKey(command.sessionId, command.requestId));
    if (remembered === undefined) return undefined;
    return command.type !== 'AcquireAll'
      ? this.requestNow(command, remembered.result)
      : this.setRequestNow(command, remembered.result);
  }

  /**
   * The open attempts (entry indexes) of the Acquire `command` that entries with
   * `proposalId` carried (more than one if a forward was delivered twice), and what a
   * retry of its request would be told now: its grant or its place in the queue, or
   * null once it ended (nothing is held or awaited to give back). Null when there is no
   * such attempt: the write did not apply, its attempts were withdrawn or left the
   * window, or it applied before behaviour version 3 (BEHAVIOUR_ATTEMPT_PROPOSALS).
   */
  attemptsOf(command: LockCommand, proposalId: string): AttemptsOfProposal | null {
    if (!isAcquire(command)) return null;
    const remembered = this.window.get(acquireKey(command.sessionId, command.requestId));
    if (remembered === undefined) return this.evictedWaitOf(command, proposalId);
    const indexes = (remembered.attemptProposals ?? [])
      .filter(([, id]) => id === proposalId)
      .map(([index]) => logIndex(index));
    if (indexes.length === 0) return null;
    return { indexes, now: this.requestStatus(command) ?? null };
  }

  /** A wait whose remembered result left the window, found by the proposal that queued it. */
  private evictedWaitOf(command: AnyAcquire, proposalId: string): AttemptsOfProposal | null {
    const names = command.type !== 'AcquireAll' ? [command.lock] : lockSetNames(command);
    const lock = this.host.locks.get(names[0] as string);
    const position = waiterPosition(lock, command.sessionId, command.requestId);
    const waiter = lock?.waiters[position];
    if (waiter === undefined || waiter.proposalId !== proposalId) return null;
    const now: LockResult =
      command.type !== 'AcquireAll'
        ? { type: 'Queued', lock: command.lock, position }
        : this.host.queuedAll(command.sessionId, names);
    return { indexes: [waiter.requestIndex], now };
  }

  /** What is true now of a request whose first result was `first`; null once it ended. */
  private requestNow(command: OneLockAcquire, first: LockResult): LockResult | null {
    const lock = this.host.locks.get(command.lock);
    const grant = lock?.holders.get(command.sessionId);
    if (first.type === 'Acquired' && lock !== undefined && grant?.token === first.token) {
      return this.host.acquiredResult(lock, grant);
    }
    const position = waiterPosition(lock, command.sessionId, command.requestId);
    return first.type === 'Queued' && position >= 0
      ? { type: 'Queued', lock: command.lock, position }
      : null;
  }

  /** requestNow for a set: all of it held with the set's token, or all of it awaited. */
  private setRequestNow(
    command: Extract<LockCommand, { type: 'AcquireAll' }>,
    first: LockResult,
  ): LockResult | null {
    const { sessionId: id, requestId } = command;
    const names = lockSetNames(command);
    const { locks } = this.host;
    const holds = (name: string): boolean =>
      first.type === 'AcquiredAll' && locks.get(name)?.holders.get(id)?.token === first.token;
    if (names.every(holds)) return this.host.acquiredAll(id, names);
    const waits = (name: string): boolean => waiterPosition(locks.get(name), id, requestId) >= 0;
    return first.type === 'QueuedAll' && names.every(waits) ? this.host.queuedAll(id, names) : null;
  }

  /** Asserts the window's invariants; `sessions` are the live ones. */
  checkInvariants(sessions: ReadonlyMap<SessionId, SessionRecord>): void {
    assert(this.window.size <= this.host.rules().dedupeWindowMax, 'dedupe window overflow');
    for (const [key, { openAttempts, attemptProposals }] of this.window) {
      // attemptsOf trusts a listed proposal to name an attempt still open.
      assert(
        (attemptProposals ?? []).every(([index]) => openAttempts.includes(index)),
        `${key} lists the proposal of an attempt that is not open`,
      );
    }
    // A remembered Queued is rewritten when its wait ends, so it always has its waiter.
    for (const [key, { result }] of this.window) {
      if (!key.startsWith('Acquire/')) continue;
      const lock =
        result.type === 'Queued'
          ? result.lock
          : result.type === 'QueuedAll'
            ? result.locks[0]?.lock
            : undefined;
      if (lock === undefined) continue;
      const id = toSessionId(Number(key.split('/')[1]));
      const requestId = key.slice(`Acquire/${id}/`.length);
      assert(
        !sessions.has(id) || waiterPosition(this.host.locks.get(lock), id, requestId) >= 0,
        `${key} is remembered as ${result.type} but does not wait for ${lock}`,
      );
    }
  }
}

/**
 * Retries are recognised by request id, within the command's type and session, so a
 * client that reuses an id for a different request does not get a stranger's answer.
 */
export function dedupeKey(command: LockCommand): string | null {
  switch (command.type) {
    case 'OpenSession':
      // Per identity: another tenant's request id must not answer with this one's session.
      return command.identity === undefined || command.identity === ''
        ? flatKey('OpenSession', command.requestId)
        : flatKey(`OpenSession@${JSON.stringify(command.identity)}`, command.requestId);
    case 'Acquire':
    case 'AcquireAll':
      // One key space: a request id names one request of the session, single or set.
      return acquireKey(command.sessionId, command.requestId);
    case 'AcquirePermits':
    case 'Campaign':
      return acquireKey(command.sessionId, command.requestId);
    case 'CloseSession':
    case 'Release':
    case 'CancelWait':
    case 'Proclaim':
      return flatKey(command.type, command.sessionId, command.requestId);
    case 'Withdraw':
    case 'KeepAlive':
    case 'ExpireSession':
    case 'WaitExpired':
    case 'LockDelayEnded':
    case 'MaxHoldReached':
    case 'Promote':
    case 'Revoke':
    case 'SetRules':
    case 'SetBehaviour':
      // Idempotent or guarded already.
      return null;
    default:
      return assertNever(command, 'lock command');
  }
}

const NO_HOLDERS: readonly Holder[] = Object.freeze([]);

/** An Acquired's keys in the order acquiredResult writes them. */
const ACQUIRED_KEYS: readonly string[] = ['type', 'lock', 'token', 'mode', 'holders'];

/**
 * What the dedupe window keeps of a result. A retried Acquire is answered from the grant
 * it still holds and today's holders (retriedAcquire reads only the remembered type, lock
 * and token), so a remembered Acquired keeps no holders: at 100,000 held locks the list
 * and its holder were about a fifth of the state machine's heap (issue 12).
 */
function toRemember(result: LockResult, behaviour: number): LockResult {
  // From version 5 a NotAcquired keeps no holders either (retriedAcquire rebuilds it from
  // today's): an election's would carry its leader's value, up to electionValueBytesMax,
  // in every remembered answer of a candidate whose wait ran out. Before it, snapshots
  // stay byte for byte what the release before wrote.
  if (result.type === 'NotAcquired' && behaviour >= BEHAVIOUR_SEMAPHORES_ELECTIONS) {
    return result.holders.length === 0 ? result : { ...result, holders: NO_HOLDERS };
  }
  if (result.type === 'AcquiredAll') {
    return { ...result, locks: result.locks.map((each) => ({ ...each, holders: NO_HOLDERS })) };
  }
  if (result.type !== 'Acquired' || result.holders.length === 0) return result;
  return { ...result, holders: NO_HOLDERS };
}

type OneLockAcquire = Extract<LockCommand, { type: 'Acquire' | 'AcquirePermits' | 'Campaign' }>;
type AnyAcquire = OneLockAcquire | Extract<LockCommand, { type: 'AcquireAll' }>;

/** The commands that acquire (and whose retries, attempts and waits the runtime asks about). */
function isAcquire(command: LockCommand): command is AnyAcquire {
  switch (command.type) {
    case 'Acquire':
    case 'AcquireAll':
    case 'AcquirePermits':
    case 'Campaign':
      return true;
    default:
      return false;
  }
}
