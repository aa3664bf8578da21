import { assert, assertNever } from '../util/assert.ts';
import {
  type FencingToken,
  fencingToken,
  type LogIndex,
  type SessionId,
  sessionId as toSessionId,
} from '../util/ids.ts';
import { withFields } from '../util/objects.ts';
import {
  BEHAVIOUR_ATTEMPT_PROPOSALS,
  BEHAVIOUR_BASE,
  BEHAVIOUR_LATEST,
  BEHAVIOUR_MULTI_LOCK,
  BEHAVIOUR_SEMAPHORES_ELECTIONS,
  BehaviourUnsupportedError,
  isBehaviourVersion,
} from './behaviour.ts';
import { checkCeilings, checkDuration, checkLockName, checkText } from './checks.ts';
import { type IdentityQuota, IdentityTally } from './identity-quota.ts';
import { checkStateInvariants } from './invariants.ts';
import { heldPermits, type KindHost, LockKinds, type OneLockRequest } from './kinds.ts';
import {
  canonicalLockRules,
  DEFAULT_LOCK_LIMITS,
  type LockLimits,
  lockRulesProblem,
  validateLockLimits,
} from './limits.ts';
import { type GrantRequest, type LockSetHost, LockSets } from './lock-set.ts';
import {
  compareStrings,
  type Grant,
  hasKeysInOrder,
  internedMode,
  KindRecord,
  type LockDelay,
  LockRecord,
  leftDelays,
  leftWaiters,
  namesOf,
  ownDelays,
  ownWaiters,
  publicHolder,
  Rejection,
  reject,
  rejectField,
  type SessionRecord,
  TOLD_NO_OTHERS,
  toldAlso,
  toldOf,
  waiterPosition,
} from './records.ts';
import {
  type AttemptsOfProposal,
  dedupeKey,
  type RememberedHost,
  type RememberedResult,
  RememberedResults,
} from './remembered.ts';
import { Retries, type RetryHost } from './retries.ts';
import { checkOwner, type SessionHost, SessionLifecycle } from './sessions.ts';
import { commandShapeProblem } from './shape.ts';
import { smallestNames } from './smallest.ts';
import {
  type CarriedOver,
  type LockSnapshot,
  type LockSnapshotV1,
  type LockSnapshotV2,
  type LockSnapshotV6,
  NOTHING_CARRIED_OVER,
  type SnapshotLockV6,
  type SnapshotSession,
  snapshotHolds,
  upgradeSnapshot,
} from './snapshot.ts';
import type {
  ApplyOutput,
  Holder,
  LockClaim,
  LockCommand,
  LockEvent,
  LockKind,
  LockMode,
  LockResult,
  ReleaseReason,
  Waiter,
} from './types.ts';
import {
  countNames,
  describeLock,
  describeSession,
  type FenceValidation,
  fenceOf,
  type LockDescription,
  namesUnder,
  type SessionDescription,
  type SessionSummary,
  summariseSession,
} from './views.ts';
import { type CycleSearch, findWaitCycle } from './wait-for.ts';

export type { AttemptsOfProposal, RememberedResult } from './remembered.ts';
export type {
  CarriedOver,
  LockSnapshot,
  LockSnapshotV1,
  LockSnapshotV2,
  LockSnapshotV3,
  LockSnapshotV4,
  LockSnapshotV5,
  LockSnapshotV6,
} from './snapshot.ts';
export type {
  FenceValidation,
  LockDescription,
  SessionDescription,
  SessionSummary,
} from './views.ts';

export interface LockStateMachineOptions {
  /**
   * The highest behaviour version this machine applies; absent: BEHAVIOUR_LATEST. Lower
   * only to stand in for an older binary in a test.
   */
  readonly behaviourMax?: number;
}

/**
 * The lock state machine: a deterministic reducer over the Raft log. It never reads
 * a clock: timed events (session expiry, wait deadlines, lock-delay, max-hold) arrive
 * as guarded commands that the leader proposed, so every replica decides the same.
 *
 * Invariants, asserted after every command in tests and on demand here:
 * - a lock has at most one exclusive holder, and never an exclusive holder beside
 *   shared ones;
 * - tokens of successive grants of one lock strictly increase (a token is the index
 *   of the entry that made the grant);
 * - every holder and waiter belongs to a live session;
 * - no state grows past the limit in force when it was added (rules lowered later end
 *   nothing: see setRules).
 */
export class LockStateMachine {
  /** The rules this machine applies until a SetRules entry applies (see the constructor). */
  private readonly startRules: LockLimits;
  /** The rules in force: replicated state, changed only by a SetRules entry. */
  private rulesInForce: LockLimits;
  /** The index of the SetRules entry that put them in force; null before any. */
  private rulesSetAt: LogIndex | null = null;
  /** The behaviour version in force (behaviour.ts): replicated state, raised only by SetBehaviour. */
  private behaviourInForce = BEHAVIOUR_BASE;
  /** The highest behaviour version this machine applies (its binary's, see the options). */
  readonly behaviourMax: number;
  private carriedOver: CarriedOver = NOTHING_CARRIED_OVER;
  private appliedIndex = 0;
  private readonly sessions = new Map<SessionId, SessionRecord>();
  private readonly locks = new Map<string, LockRecord>();
  /** Sessions' opening, refreshes and ends (sessions.ts), over this machine's state. */
  private readonly lifecycle: SessionLifecycle;
  /** The dedupe window: results remembered for retries (remembered.ts). */
  private readonly remembered: RememberedResults;
  /** Retries' answers and withdrawals (retries.ts). */
  private readonly retries: Retries;
  /** Sessions, holds and waits per identity, for the per-identity limits. Derived state. */
  private readonly tally = new IdentityTally();
  /** The proposal id of the entry being applied (null: a timer's, or none given). */
  private entryProposalId: string | null = null;
  /** Events of the command being applied, in order. */
  private events: LockEvent[] = [];
  /** Grants made by the command being applied, per lock name. */
  private readonly grantsInEntry = new Map<string, number>();
  private index: LogIndex = 0 as LogIndex;
  /** Atomic multi-lock and deadlock detection (issue 17), over this machine's state. */
  private readonly sets: LockSets;
  /** Semaphores and elections (issue 17), over this machine's state. */
  private readonly kinds: LockKinds;

  /**
   * `startRules` are in force until a SetRules entry applies. A node passes its config
   * file's: that is what nodes applied before the rules were replicated, so a log (or a
   * snapshot of version 1 or 2) written then replays as it first ran. Nothing else
   * depends on them: a leader takes no client write and proposes no timer command until
   * rules were set (see DlmNode), so on a cluster that started replicated, only Raft's
   * own entries and SetRules come before the first SetRules.
   */
  constructor(startRules: Partial<LockLimits> = {}, options: LockStateMachineOptions = {}) {
    this.startRules = canonicalLockRules({ ...DEFAULT_LOCK_LIMITS, ...startRules });
    validateLockLimits(this.startRules);
    this.rulesInForce = this.startRules;
    this.behaviourMax = options.behaviourMax ?? BEHAVIOUR_LATEST;
    this.sets = new LockSets(this.lockSetHost());
    this.kinds = new LockKinds(this.kindHost());
    this.remembered = new RememberedResults(this.rememberedHost());
    this.lifecycle = new SessionLifecycle(this.sessionHost());
    this.retries = new Retries(this.retryHost());
    assert(
      isBehaviourVersion(this.behaviourMax) && this.behaviourMax <= BEHAVIOUR_LATEST,
      `behaviourMax ${this.behaviourMax} is not a version this binary knows`,
    );
  }

  /** The behaviour version in force at the applied index; every gated rule reads it. */
  get behaviour(): number {
    return this.behaviourInForce;
  }

  /**
   * The rules in force at the applied index, which apply checks requests against.
   * A getter on the prototype, so that a test can make it return others.
   */
  get rules(): LockLimits {
    return this.rulesInForce;
  }

  /** The index of the SetRules entry behind `rules`; null while none has applied. */
  get rulesSetIndex(): LogIndex | null {
    return this.rulesSetAt;
  }

  /** How many results are remembered for retries; a SetRules may not shrink the window below it. */
  get rememberedCount(): number {
    return this.remembered.size;
  }

  get lastAppliedIndex(): number {
    return this.appliedIndex;
  }
  get sessionCount(): number {
    return this.sessions.size;
  }
  get waiterCount(): number {
    let waiters = 0;
    for (const lock of this.locks.values()) waiters += lock.waiters.length;
    return waiters;
  }

  get lockCount(): number {
    return this.locks.size;
  }

  /**
   * Applies the command in the entry at `index`. Indexes strictly increase. Throws
   * BehaviourUnsupportedError, changing nothing, for a raise past what this binary knows.
   */
  apply(index: LogIndex, command: LockCommand, proposalId: string | null = null): ApplyOutput {
    assert(index > this.appliedIndex, `apply(${index}) after ${this.appliedIndex}`);
    const shapeProblem = commandShapeProblem(command, this.behaviourInForce);
    if (shapeProblem === null) this.checkBehaviourKnown(command, index);
    this.appliedIndex = index;
    this.index = index;
    this.entryProposalId = proposalId;
    this.events = [];
    this.grantsInEntry.clear();
    if (shapeProblem !== null) {
      return {
        result: { type: 'Rejected', code: 'invalidArgument', detail: shapeProblem },
        events: [],
      };
    }
    const result = this.applyCommand(command);
    const events = this.events;
    this.events = [];
    return { result, events };
  }

  /**
   * A raise to a version this binary does not know: the entries after it apply by rules
   * it does not have. Refusing it as a Rejected result would leave this replica at the
   * older rules while the others go on by the newer: stop instead. (Binaries older than
   * SetBehaviour reject it as an unknown command; the leader proposes a raise only once
   * every member is past them.)
   */
  private checkBehaviourKnown(command: LockCommand, index: LogIndex): void {
    if (command.type !== 'SetBehaviour') return;
    const { version } = command;
    if (isBehaviourVersion(version) && version > this.behaviourMax) {
      throw new BehaviourUnsupportedError(
        version,
        this.behaviourMax,
        `the entry at index ${index}`,
      );
    }
  }

  /**
   * What a retry of the Acquire or AcquireAll `command`'s request would be told now
   * (remembered.ts); undefined when the request is not remembered.
   */
  requestStatus(command: LockCommand): LockResult | null | undefined {
    return this.remembered.requestStatus(command);
  }

  /**
   * The open attempts of the Acquire `command` that entries with `proposalId` carried,
   * and what a retry of its request would be told now (remembered.ts).
   */
  attemptsOf(command: LockCommand, proposalId: string): AttemptsOfProposal | null {
    return this.remembered.attemptsOf(command, proposalId);
  }

  /** The proposal id of the entry being applied, when attempts record theirs. */
  private attemptProposal(): string | null {
    return this.behaviourInForce >= BEHAVIOUR_ATTEMPT_PROPOSALS ? this.entryProposalId : null;
  }

  /** Records that entries up to `index` carried no lock command (Raft no-ops, config changes). */
  skipTo(index: LogIndex): void {
    assert(index >= this.appliedIndex, `skipTo(${index}) goes back from ${this.appliedIndex}`);
    this.appliedIndex = index;
  }

  /**
   * A retry is answered from what the request's first application left, whatever the
   * rules became since: so only the ceilings, which no rules exceed and which keep the
   * lookup cheap, are checked before it, and the rules in force only after (here for the
   * request id, in each command for the rest).
   */
  private applyCommand(command: LockCommand): LockResult {
    const key = dedupeKey(command);
    try {
      checkCeilings(command);
      // Before a retry is answered: another identity must not learn a session's results.
      checkOwner(this.sessions, command);
      const remembered = key === null ? undefined : this.rememberedResult(key);
      if (key !== null && remembered !== undefined)
        return this.answerRetry(command, key, remembered);
      // A request to remember: the rules bound how large a key the window keeps.
      if (key !== null && 'requestId' in command) {
        const { requestIdBytesMax } = this.rules;
        checkText('requestId', command.requestId, requestIdBytesMax, 'requestIdBytesMax');
      }
    } catch (error) {
      return this.rejected(error);
    }
    let result: LockResult;
    try {
      result = this.dispatch(command);
    } catch (error) {
      result = this.rejected(error);
    }
    if (key !== null && this.remembered.worthRemembering(command, result)) {
      this.remembered.remember(key, result);
    }
    return result;
  }

  /**
   * A retry is not applied again, and it is told only what is still true (retries.ts).
   * Protected so that a test can break it.
   */
  protected answerRetry(
    command: LockCommand,
    key: string,
    remembered: RememberedResult,
  ): LockResult {
    return this.retries.answer(command, key, remembered);
  }

  private rejected(error: unknown): LockResult {
    if (!(error instanceof Rejection)) throw error;
    const { code, detail, field, cycle } = error;
    if (cycle !== null) return { type: 'Rejected', code, detail, cycle };
    return field === null
      ? { type: 'Rejected', code, detail }
      : { type: 'Rejected', code, detail, field };
  }

  private dispatch(command: LockCommand): LockResult {
    switch (command.type) {
      case 'OpenSession':
        return this.lifecycle.open(command);
      case 'KeepAlive':
        return this.lifecycle.keepAlive(command.sessionIds);
      case 'CloseSession':
        this.lifecycle.end(this.requireSession(command.sessionId), 'close');
        return { type: 'SessionClosed', sessionId: command.sessionId };
      case 'ExpireSession':
        return this.lifecycle.expire(command.sessionId, command.lastRefreshIndex);
      case 'Acquire':
        return this.acquire(command);
      case 'AcquireAll':
        return this.sets.acquireAll(command);
      // commandShapeProblem refuses these three below BEHAVIOUR_SEMAPHORES_ELECTIONS.
      case 'AcquirePermits':
        return this.kinds.acquirePermits(command);
      case 'Campaign':
        return this.kinds.campaign(command);
      case 'Proclaim':
        return this.kinds.proclaim(command);
      case 'Release':
        return this.release(command);
      case 'CancelWait':
        return this.cancelWait(command.lock, command.sessionId, command.requestId);
      case 'Withdraw':
        return this.retries.withdraw(command);
      case 'WaitExpired':
        return this.waitExpired(command.lock, command.sessionId, command.waiterIndex);
      case 'LockDelayEnded':
        return this.lockDelayEnded(command.lock, command.delayIndex);
      case 'MaxHoldReached':
        return this.maxHoldReached(command.lock, command.sessionId, command.token);
      case 'Promote':
        return this.promoteHead(command.lock);
      case 'Revoke':
        return this.revoke(command.lock);
      case 'SetRules':
        return this.setRules(command.rules, command.onlyIfUnset, command.onlyIfSetAt);
      case 'SetBehaviour':
        return this.setBehaviour(command.version);
      default:
        return assertNever(command, 'lock command');
    }
  }

  /** Raises only (apply() stopped on a version this binary does not know). */
  private setBehaviour(version: number): LockResult {
    if (!isBehaviourVersion(version)) {
      rejectField('version', `must be an integer from ${BEHAVIOUR_BASE} up, got ${version}`);
    }
    if (version <= this.behaviourInForce) return { type: 'Stale' };
    this.behaviourInForce = version;
    return { type: 'BehaviourSet', version };
  }

  // ------------------------------------------------------------------ rules

  /**
   * Lowered limits end nothing: sessions, locks and waiters past them stay, and new
   * ones are refused until the counts fall below; locks keep names longer than a lowered
   * lockNameBytesMax (it bounds only new locks). The dedupe window is not shrunk below
   * the results it remembers: forgetting one early would let its retry apply twice, so
   * such rules are refused whole, naming the count.
   */
  private setRules(
    rules: LockLimits,
    onlyIfUnset: boolean,
    onlyIfSetAt: LogIndex | undefined,
  ): LockResult {
    if (onlyIfUnset && this.rulesSetAt !== null) return { type: 'Stale' };
    const guarded = onlyIfSetAt !== undefined;
    if (guarded && this.behaviourInForce >= BEHAVIOUR_SEMAPHORES_ELECTIONS) {
      if (this.rulesSetAt !== onlyIfSetAt) return { type: 'Stale' };
    }
    const found = lockRulesProblem(rules, this.behaviourInForce);
    if (found !== null) {
      rejectField(found.field === '' ? 'rules' : `rules.${found.field}`, found.problem);
    }
    if (rules.dedupeWindowMax < this.remembered.size) {
      rejectField(
        'rules.dedupeWindowMax',
        `(${rules.dedupeWindowMax}) is below the ${this.remembered.size} results remembered now for retries; forgetting them early would apply a retry twice`,
      );
    }
    this.rulesInForce = canonicalLockRules(rules);
    this.rulesSetAt = this.index;
    this.noteCarriedOver();
    return { type: 'RulesSet', rules: this.rulesInForce };
  }

  private noteCarriedOver(): void {
    let waitersPerLock = 0;
    for (const lock of this.locks.values()) {
      waitersPerLock = Math.max(waitersPerLock, lock.waiters.length);
    }
    this.carriedOver = { sessions: this.sessions.size, locks: this.locks.size, waitersPerLock };
  }

  // ------------------------------------------------------------------ sessions

  /**
   * The notSessionOwner refusal `command` would get were it the next entry applied,
   * when this state already decides it (issue 15): the API answers it without writing
   * an entry, so another identity's session ids cost the cluster no log. Owners never
   * change and session ids (log indexes) are never reused, so a session here keeps its
   * owner for as long as it lives, and an id at or below the applied index that no
   * session has will never be one: the answer is never untrue. An id above it may be a
   * session this node has not applied yet (a lagging follower): from there only the log
   * can tell, so null. The checks that come first when the command applies (shape,
   * ceilings) must pass too, else null. Should the session end before the entry would
   * apply, the answer is still what this state, at its applied index, gives (as a
   * stale read is). The state machine's own check, when an entry applies, stays the
   * authority.
   */
  ownerRefusal(command: LockCommand): Extract<LockResult, { type: 'Rejected' }> | null {
    if (commandShapeProblem(command, this.behaviourInForce) !== null) return null;
    try {
      checkCeilings(command);
    } catch {
      return null;
    }
    try {
      checkOwner(this.sessions, command, (id) => id > this.appliedIndex);
      return null;
    } catch (error) {
      const result = this.rejected(error);
      assert(result.type === 'Rejected', 'checkOwner throws only refusals');
      return result;
    }
  }

  /** The identity that opened session `id`, '' anonymous; null when no session has the id. */
  ownerOf(id: SessionId): string | null {
    return this.sessions.get(id)?.identity ?? null;
  }

  private requireSession(id: SessionId): SessionRecord {
    const session = this.sessions.get(id);
    if (session === undefined) reject('sessionNotFound', `session ${id} is unknown or expired`);
    return session;
  }

  // ------------------------------------------------------------------ locks

  private acquire(command: Extract<LockCommand, { type: 'Acquire' }>): LockResult {
    const { type: _type, identity: _identity, ...request } = command;
    return this.acquireOne(withFields(request, { kind: 'lock' as const }));
  }

  /**
   * One name's Acquire, of any kind (kinds.ts turns AcquirePermits and Campaign into
   * one): granted at once if it fits and no one queues, else queued or refused.
   */
  private acquireOne(command: OneLockRequest): LockResult {
    // lockNameBytesMax bounds the locks that exist: it is checked when this would add one.
    if (!this.locks.has(command.lock)) {
      const { lockNameBytesMax } = this.rules;
      checkText('lock', command.lock, lockNameBytesMax, 'lockNameBytesMax');
    }
    checkText('owner', command.owner, this.rules.ownerBytesMax, 'ownerBytesMax', true);
    if (command.mode !== 'exclusive' && command.mode !== 'shared') {
      rejectField('mode', `must be exclusive or shared, got ${String(command.mode)}`);
    }
    checkDuration('waitMs', command.waitMs, this.rules.waitMsMax, 'waitMsMax');
    checkDuration('maxHoldMs', command.maxHoldMs, this.rules.maxHoldMsMax, 'maxHoldMsMax');
    const { lockDelayMsMax } = this.rules;
    checkDuration('lockDelayMs', command.lockDelayMs, lockDelayMsMax, 'lockDelayMsMax');
    const session = this.requireSession(command.sessionId);
    const existing = this.locks.get(command.lock);
    if (existing !== undefined) this.kinds.checkKind(existing, command);
    const held = existing?.holders.get(session.id);
    if (existing !== undefined && held !== undefined) {
      // A grant keeps its mode: a shared holder told `Acquired` for exclusive would
      // act beside other holders, and an exclusive one told `shared` would not know
      // others may join. Re-acquiring in the same mode returns the grant it has; so
      // for a semaphore's permits.
      if (!this.kinds.sameAsk(held, command))
        this.rejectModeMismatch(session.id, existing, 'holds', held, command);
      if (held.lockSet !== undefined && this.behaviourInForce >= BEHAVIOUR_SEMAPHORES_ELECTIONS)
        this.rejectHeldInSet(session.id, existing.name, held);
      this.sets.retell(session.id, existing.name, toldAlso(held, command.requestId));
      return this.acquiredResult(existing, this.holderOf(existing, session.id));
    }
    // Most Acquires come from sessions not already in this queue: ask the session before
    // scanning the queue, so a hot lock's re-acquire costs O(1), not O(waiters).
    const position = session.waiting.has(command.lock)
      ? (existing?.waiters.findIndex((waiter) => waiter.sessionId === session.id) ?? -1)
      : -1;
    const waiting = existing?.waiters[position];
    if (existing !== undefined && waiting !== undefined) {
      // The wait will end in a grant of the mode it asked for, not this one.
      if (!this.kinds.sameAsk(waiting, command))
        this.rejectModeMismatch(session.id, existing, 'waits for', waiting, command);
      // The request's own retry, whose remembered result left the window: still its
      // wait. Both the attempt that queued it and this one may withdraw it.
      if (waiting.requestId === command.requestId && waiting.lockSet === undefined) {
        this.remembered.noteEvictedWait(waiting);
        return { type: 'Queued', lock: command.lock, position };
      }
      // The wait belongs to its own request: that request's withdrawal must be able to
      // give it back, and must not take away a grant this one would be told of.
      reject(
        'alreadyWaiting',
        `session ${session.id} already waits for ${command.lock} under request ${waiting.requestId}: retry that request (same request id) for its answer, or give it up first`,
      );
    }
    if (existing === undefined && this.locks.size >= this.rules.locksMax) {
      reject('limitReached', `locksMax (${this.rules.locksMax}) locks are in use`);
    }
    const lock = existing ?? this.createLock(command.lock, command.kind, command.limit);
    if (this.grantable(lock, command.mode, command.permits)) {
      this.checkQuota(lock, session, command.quota, false);
      const grant = this.grant(lock, session, withFields(command, { requestIndex: this.index }));
      return this.acquiredResult(lock, grant);
    }
    if (command.waitMs === 0) {
      this.dropIfIdle(lock);
      return this.notAcquired(command.lock);
    }
    if (lock.waiters.length >= this.rules.waitersPerLockMax) {
      reject(
        'limitReached',
        `waitersPerLockMax (${this.rules.waitersPerLockMax}) waiters queue for ${command.lock}`,
      );
    }
    this.kinds.checkQueueRoom(lock);
    this.checkQuota(lock, session, command.quota, true);
    // A semaphore wait closes no sure cycle (kinds.ts): it is not searched.
    if (this.behaviourInForce >= BEHAVIOUR_MULTI_LOCK && command.kind !== 'semaphore') {
      this.sets.checkNoDeadlock(session, [{ lock: command.lock, mode: command.mode }]);
    }
    const proposalId = this.attemptProposal();
    const waiter: Waiter = {
      sessionId: session.id,
      owner: command.owner,
      mode: internedMode(command.mode),
      requestIndex: this.index,
      requestId: command.requestId,
      waitMs: command.waitMs,
      maxHoldMs: command.maxHoldMs,
      lockDelayMs: command.lockDelayMs,
      ...kindFields(command),
      // So that the wait can be found after its remembered result left the window.
      ...(proposalId === null ? {} : { proposalId }),
    };
    this.enqueue(lock, session, waiter);
    return { type: 'Queued', lock: lock.name, position: lock.waiters.length - 1 };
  }

  /** The per-identity limits of a new grant or wait; a lock it would have created is dropped. */
  private checkQuota(
    lock: LockRecord,
    session: SessionRecord,
    quota: IdentityQuota | undefined,
    wait: boolean,
  ): void {
    if (quota === undefined) return;
    const counts = this.tally.of(session.identity);
    const who = `identity ${JSON.stringify(session.identity)}`;
    let problem: string | null = null;
    if (wait && counts.waiting >= quota.waitersMax) {
      problem = `waitersPerIdentityMax (${quota.waitersMax}) Acquires wait for ${who}`;
    } else if (counts.held + counts.waiting >= quota.locksHeldMax) {
      problem = `locksHeldPerIdentityMax (${quota.locksHeldMax}) locks are held or awaited by ${who}`;
    }
    if (problem === null) return;
    this.dropIfIdle(lock);
    reject('limitReached', problem);
  }

  private enqueue(lock: LockRecord, session: SessionRecord, waiter: Waiter): void {
    ownWaiters(lock).push(waiter);
    this.addWaiting(session, lock.name);
    this.emit({ type: 'queued', lock: lock.name, waiter });
  }

  private addWaiting(session: SessionRecord, name: string): void {
    if (session.waiting.has(name)) return;
    session.waiting.add(name);
    this.tally.change(session.identity, 'waiting', 1);
  }

  private deleteWaiting(session: SessionRecord | undefined, name: string): void {
    if (session?.waiting.delete(name) === true) this.tally.change(session.identity, 'waiting', -1);
  }

  private rejectModeMismatch(
    id: SessionId,
    lock: LockRecord,
    relation: 'holds' | 'waits for',
    had: Pick<Holder, 'mode' | 'permits'>,
    asked: Pick<Holder, 'mode' | 'permits'>,
  ): never {
    const what = relation === 'holds' ? 'release it' : 'cancel that wait';
    const [mode, askedMode] = [this.kinds.describeAsk(had), this.kinds.describeAsk(asked)];
    return reject(
      'modeMismatch',
      `session ${id} ${relation} ${lock.name} ${mode}; ${what} before asking for ${askedMode}`,
    );
  }

  /**
   * A single-lock request for a lock the session holds within a set (from version 5).
   * Told `Acquired`, its caller would take the set's grant for a grant of this lock alone,
   * and the release of another lock of the set (which frees the set) would take this one
   * away under it: runtime seed 41365, where a client that thought it had released a set
   * re-acquired two of its locks one by one and released one.
   */
  private rejectHeldInSet(id: SessionId, name: string, held: Grant): never {
    const names = (held.lockSet ?? []).map((each) => JSON.stringify(each)).join(', ');
    return reject(
      'alreadyHolding',
      `session ${id} holds ${JSON.stringify(name)} within the set ${names} (token ${held.token}), whose release frees every lock of it; release the set before asking for ${JSON.stringify(name)} alone`,
    );
  }

  private release(command: Extract<LockCommand, { type: 'Release' }>): LockResult {
    checkLockName(command.lock);
    const session = this.requireSession(command.sessionId);
    const lock = this.locks.get(command.lock);
    const grant = lock?.holders.get(session.id);
    if (lock === undefined || grant === undefined) {
      reject('notHolder', `session ${session.id} does not hold ${command.lock}`);
    }
    if (grant.token !== command.token) {
      reject(
        'staleToken',
        `token ${command.token} is not the current grant ${grant.token} of ${command.lock}`,
      );
    }
    this.endGrant(lock, grant, 'release');
    const released: LockResult = { type: 'Released', lock: command.lock };
    return grant.lockSet === undefined ? released : { ...released, lockSet: grant.lockSet };
  }

  private cancelWait(name: string, id: SessionId, requestId: string): LockResult {
    checkLockName(name);
    const session = this.requireSession(id);
    const lock = this.locks.get(name);
    // Only the wait this request queued: a CancelWait retried after its result left the
    // window must not cancel a later wait of the same session.
    if (lock === undefined || waiterPosition(lock, session.id, requestId) < 0) {
      reject('notHolder', `session ${id} is not waiting for ${name} under request ${requestId}`);
    }
    this.endWait(lock, id, 'cancelled');
    return { type: 'WaitCancelled', lock: name };
  }

  private waitExpired(name: string, id: SessionId, waiterIndex: LogIndex): LockResult {
    const lock = this.locks.get(name);
    const waiter = lock?.waiters.find((candidate) => candidate.sessionId === id);
    if (lock === undefined || waiter === undefined || waiter.requestIndex !== waiterIndex)
      return { type: 'Stale' };
    this.endWait(lock, id, 'expired');
    return { type: 'WaitExpired', lock: name, sessionId: id };
  }

  private lockDelayEnded(name: string, delayIndex: LogIndex): LockResult {
    const lock = this.locks.get(name);
    const position = lock?.delays.findIndex((delay) => delay.index === delayIndex) ?? -1;
    if (lock === undefined || position < 0) return { type: 'Stale' };
    // Ends only its own delay; the lock reopens when the last one ends.
    ownDelays(lock).splice(position, 1);
    leftDelays(lock);
    this.emit({ type: 'delayEnded', lock: name, delayIndex });
    this.promote(lock);
    return { type: 'LockDelayEnded', lock: name };
  }

  private maxHoldReached(name: string, id: SessionId, token: FencingToken): LockResult {
    const lock = this.locks.get(name);
    const grant = lock?.holders.get(id);
    if (lock === undefined || grant === undefined || grant.token !== token)
      return { type: 'Stale' };
    this.endGrant(lock, grant, 'maxHold');
    return { type: 'MaxHoldReached', lock: name, token };
  }

  /** Guarded by the state alone: a duplicate or late Promote finds nothing to grant. */
  private promoteHead(name: string): LockResult {
    const lock = this.locks.get(name);
    if (lock === undefined || !this.promotionPendingOn(lock)) return { type: 'Stale' };
    const grant = this.promote(lock);
    assert(grant !== null, `a pending promotion of ${name} granted nothing`);
    return { type: 'Promoted', lock: name, sessionId: grant.sessionId, token: grant.token };
  }

  private revoke(name: string): LockResult {
    checkLockName(name);
    const lock = this.locks.get(name);
    if (lock === undefined || lock.holders.size === 0)
      return { type: 'Revoked', lock: name, freed: 0 };
    const grants = [...lock.holders.values()];
    // A grant of a set ends whole: its other locks are freed with this one.
    const touched = new Set([name]);
    for (const grant of grants) {
      for (const member of namesOf(grant, name)) {
        const memberLock = this.lockRecord(member);
        this.removeHolder(memberLock, this.holderOf(memberLock, grant.sessionId), 'revoke');
        touched.add(member);
      }
    }
    for (const member of [...touched].sort(compareStrings)) this.promote(this.lockRecord(member));
    return { type: 'Revoked', lock: name, freed: grants.length };
  }

  /** A new grant must not jump the queue, and shared grants join only shared holders. */
  private grantable(lock: LockRecord, mode: LockMode, permits?: number): boolean {
    if (lock.delays.length > 0 || lock.waiters.length > 0) return false;
    return this.compatible(lock, mode, permits);
  }

  /** `permits`: a semaphore request's (kinds.ts); a lock's holders are judged by mode. */
  private compatible(lock: LockRecord, mode: LockMode, permits = 0): boolean {
    if (lock.kind === 'semaphore') {
      return this.permitsFit(heldPermits(lock), permits, lock.limit ?? 0);
    }
    if (lock.kind === 'election') return this.leaderSeatFree(lock.holders.size);
    const holderModes = [...lock.holders.values()].map((holder) => holder.mode);
    return this.modesCompatible(mode, holderModes);
  }

  // The rules below are protected so that tests can break each one in a subclass
  // and prove the property tests notice. Nothing else overrides them.

  /** A grant in `mode` can join holders in `holderModes`: none, or all shared with a shared request. */
  protected modesCompatible(mode: LockMode, holderModes: readonly LockMode[]): boolean {
    if (holderModes.length === 0) return true;
    return mode === 'shared' && holderModes.every((holderMode) => holderMode === 'shared');
  }

  /** A semaphore's request for `permits` fits beside the `held` ones: within its limit. */
  protected permitsFit(held: number, permits: number, limit: number): boolean {
    return held + permits <= limit;
  }

  /** An election has one leader: a candidate is granted only while no one leads. */
  protected leaderSeatFree(leaders: number): boolean {
    return leaders === 0;
  }

  /** The fencing token of a grant: the index of the entry making it, not of the request. */
  protected grantToken(_requestIndex: LogIndex): FencingToken {
    return fencingToken(this.index);
  }

  /** An expiry applies only if no refresh came after the one the leader timed. */
  protected expiryGuardHolds(lastRefreshIndex: LogIndex, expiryRefreshIndex: LogIndex): boolean {
    return lastRefreshIndex === expiryRefreshIndex;
  }

  /** A new lock-delay joins those in force: a later, shorter one must not end an earlier one. */
  protected placeDelay(delays: LockDelay[], delay: LockDelay): void {
    delays.push(delay);
  }

  /**
   * Whether a Withdraw names `grant`: by its request (and the later requests told of
   * it), never by an entry index, since a retry answered from memory wrote an entry of
   * its own.
   */
  protected withdrawFinds(
    grant: Grant,
    command: Extract<LockCommand, { type: 'Withdraw' }>,
  ): boolean {
    return toldOf(grant, command.requestId);
  }

  /** What a retried request is answered from. */
  protected rememberedResult(key: string): RememberedResult | undefined {
    return this.remembered.get(key);
  }

  /**
   * One entry grants at most one holder per lock, so that a token (the index of the
   * granting entry) names exactly one grant: two shared holders granted by one entry
   * would share a token, and the fence would stay valid for the one whose session
   * ended. Protected so that a test can break it.
   */
  protected grantsPerEntryPerLockMax(): number {
    return 1;
  }

  /** The wait-for search (wait-for.ts) deadlock detection asks before queuing a wait. */
  protected waitCycleOf(
    requester: SessionId,
    claims: readonly LockClaim[],
    stepsMax: number,
  ): CycleSearch {
    return findWaitCycle(this.sets.view, requester, claims, stepsMax);
  }

  /** The locks of a waiting set that the entry granting it at `_at` grants: every one. */
  protected grantedTogether(names: readonly string[], _at: string): readonly string[] {
    return names;
  }

  /** What semaphores and elections (kinds.ts) use of this machine. */
  private kindHost(): KindHost {
    return {
      locks: this.locks,
      rules: () => this.rules,
      requireSession: (id) => this.requireSession(id),
      acquireOne: (request) => this.acquireOne(request),
      checkLockName,
      emit: (event) => this.emit(event),
    };
  }

  /** What the multi-lock rules (lock-set.ts) use of this machine. */
  private lockSetHost(): LockSetHost {
    return {
      locks: this.locks,
      sessions: this.sessions,
      index: () => this.index,
      rules: () => this.rules,
      requireSession: (id) => this.requireSession(id),
      checkKinds: (names) => this.kinds.checkSetKinds(names),
      lockFor: (name) => this.locks.get(name) ?? this.createLock(name),
      compatible: (lock, mode) => this.compatible(lock, mode),
      mayGrant: (lock) => this.mayGrant(lock),
      grant: (lock, session, request) => this.grant(lock, session, request),
      enqueue: (lock, session, waiter) => this.enqueue(lock, session, waiter),
      dequeueGranted: (lock, session) => this.dequeueGranted(lock, session),
      promotionPendingOn: (lock) => this.promotionPendingOn(lock),
      checkText,
      checkDuration,
      identityCounts: (identity) => this.tally.of(identity),
      attemptProposal: () => this.attemptProposal(),
      noteEvictedWait: (wait) => this.remembered.noteEvictedWait(wait),
      findWaitCycle: (requester, claims, stepsMax) => this.waitCycleOf(requester, claims, stepsMax),
      grantedTogether: (names, at) => this.grantedTogether(names, at),
      emit: (event) => this.emit(event),
    };
  }

  /** What sessions (sessions.ts) use of this machine. */
  private sessionHost(): SessionHost {
    return {
      sessions: this.sessions,
      tally: this.tally,
      index: () => this.index,
      rules: () => this.rules,
      lockRecord: (name) => this.lockRecord(name),
      removeWaiter: (lock, id, reason) => this.removeWaiter(lock, id, reason),
      removeHolder: (lock, grant, reason) => this.removeHolder(lock, grant, reason),
      promote: (lock) => this.promote(lock),
      placeDelay: (delays, delay) => this.placeDelay(delays, delay),
      expiryGuardHolds: (last, timed) => this.expiryGuardHolds(last, timed),
      emit: (event) => this.emit(event),
    };
  }

  /** What retries and withdrawals (retries.ts) use of this machine. */
  private retryHost(): RetryHost {
    return {
      locks: this.locks,
      sessions: this.sessions,
      remembered: this.remembered,
      requireSession: (id) => this.requireSession(id),
      acquiredResult: (lock, grant) => this.acquiredResult(lock, grant),
      notAcquired: (name) => this.notAcquired(name),
      holderOf: (lock, id) => this.holderOf(lock, id),
      endWait: (lock, id, reason) => this.endWait(lock, id, reason),
      endGrant: (lock, grant, reason) => this.endGrant(lock, grant, reason),
      retell: (id, lock, told) => this.sets.retell(id, lock, told),
      retriedSet: (requestId, session, first) => this.sets.retried(requestId, session, first),
      withdrawFinds: (grant, command) => this.withdrawFinds(grant, command),
    };
  }

  /** What the dedupe window (remembered.ts) uses of this machine. */
  private rememberedHost(): RememberedHost {
    return {
      locks: this.locks,
      index: () => this.index,
      behaviour: () => this.behaviourInForce,
      rules: () => this.rules,
      attemptProposal: () => this.attemptProposal(),
      acquiredResult: (lock, grant) => this.acquiredResult(lock, grant),
      acquiredAll: (id, names) => this.sets.acquiredAll(id, names),
      queuedAll: (id, names) => this.sets.queuedAll(id, names),
    };
  }

  /**
   * Grants the head waiter if it fits and this entry may still grant the lock, and
   * returns the grant. If another compatible waiter is then at the head, it is left for
   * a Promote entry (event promotionPending). Every change to a lock's holders, waiters
   * or delays ends with a call here, which the timers rely on.
   */
  private promote(lock: LockRecord): Grant | null {
    let granted: Grant | null = null;
    while (this.promotionPendingOn(lock) && this.mayGrantHead(lock)) {
      granted = this.grantHead(lock);
    }
    if (this.promotionPendingOn(lock)) this.emit({ type: 'promotionPending', lock: lock.name });
    this.dropIfIdle(lock);
    return granted;
  }

  /** Grants the head waiter (a set on every one of its locks) and remembers the outcome. */
  private grantHead(lock: LockRecord): Grant {
    const head = lock.waiters[0];
    assert(head !== undefined, `pending promotion of ${lock.name} without a waiter`);
    const session = this.sessions.get(head.sessionId);
    assert(session !== undefined, `waiter of ${lock.name} has no session ${head.sessionId}`);
    if (head.lockSet !== undefined) {
      const { grant, answer } = this.sets.grantWaitingSet(lock, head);
      this.remembered.rememberOutcome(lock.name, head, answer);
      return grant;
    }
    this.dequeueGranted(lock, session);
    // The token is this entry's index, above every index of the previous tenure.
    const granted = this.grant(lock, session, head);
    this.remembered.rememberOutcome(lock.name, head, this.acquiredResult(lock, granted));
    return granted;
  }

  /** Takes the session's place at the head of the queue out, as granted. */
  private dequeueGranted(lock: LockRecord, session: SessionRecord): Waiter {
    const head = ownWaiters(lock).shift();
    leftWaiters(lock);
    assert(head?.sessionId === session.id, `${lock.name} is not headed by session ${session.id}`);
    this.deleteWaiting(session, lock.name);
    this.emit({
      type: 'waitEnded',
      lock: lock.name,
      sessionId: head.sessionId,
      requestIndex: head.requestIndex,
      reason: 'granted',
    });
    return head;
  }

  /**
   * The head waiter could be granted now: no lock-delay, and it fits the holders; a set
   * heads each of its queues and fits there too.
   */
  private promotionPendingOn(lock: LockRecord): boolean {
    const head = lock.waiters[0];
    if (
      lock.delays.length > 0 ||
      head === undefined ||
      !this.compatible(lock, head.mode, head.permits)
    ) {
      return false;
    }
    return head.lockSet === undefined || this.sets.setGrantable(head);
  }

  private mayGrantHead(lock: LockRecord): boolean {
    const head = lock.waiters[0];
    if (head?.lockSet !== undefined) return this.sets.mayGrantSet(head);
    return this.mayGrant(lock);
  }

  private mayGrant(lock: LockRecord): boolean {
    return (this.grantsInEntry.get(lock.name) ?? 0) < this.grantsPerEntryPerLockMax();
  }

  private grant(lock: LockRecord, session: SessionRecord, request: GrantRequest): Grant {
    assert(
      this.compatible(lock, request.mode, request.permits),
      `grant of ${lock.name} conflicts with its holders`,
    );
    assert(this.mayGrant(lock), `entry ${this.index} already granted ${lock.name}`);
    this.grantsInEntry.set(lock.name, (this.grantsInEntry.get(lock.name) ?? 0) + 1);
    const grant = this.grantRecord(session, request);
    lock.holders.set(session.id, grant);
    if (!session.held.has(lock.name)) this.tally.change(session.identity, 'held', 1);
    session.held.add(lock.name);
    this.emit({
      type: 'granted',
      lock: lock.name,
      holder: publicHolder(grant),
      requestId: grant.requestId,
      maxHoldMs: grant.maxHoldMs,
    });
    return grant;
  }

  /**
   * A plain lock's grant is one object literal: built with spreads (even of {}) it got
   * two more in-object slots, 16 bytes per held lock (heap snapshot, issue 12). Its
   * mode is the interned constant. Key order is the snapshot's, byte for byte.
   */
  private grantRecord(session: SessionRecord, request: GrantRequest): Grant {
    const grant: Grant = {
      sessionId: session.id,
      owner: request.owner,
      mode: internedMode(request.mode),
      token: this.grantToken(request.requestIndex),
      requestIndex: request.requestIndex,
      maxHoldMs: request.maxHoldMs,
      lockDelayMs: request.lockDelayMs,
      requestId: request.requestId,
      alsoFor: TOLD_NO_OTHERS,
    };
    const { lockSet, permits, value } = request;
    if (lockSet === undefined && permits === undefined && value === undefined) return grant;
    return {
      ...grant,
      // Only a set's grant has the key, so that other grants stay as they were, byte for byte.
      ...(lockSet === undefined ? {} : { lockSet }),
      ...kindFields(request),
    };
  }

  private removeHolder(lock: LockRecord, grant: Grant, reason: ReleaseReason): void {
    lock.holders.delete(grant.sessionId);
    const holder = this.sessions.get(grant.sessionId);
    if (holder?.held.delete(lock.name) === true) this.tally.change(holder.identity, 'held', -1);
    this.emit({
      type: 'released',
      lock: lock.name,
      sessionId: grant.sessionId,
      token: grant.token,
      reason,
    });
  }

  private removeWaiter(
    lock: LockRecord,
    id: SessionId,
    reason: 'expired' | 'cancelled' | 'sessionEnded',
  ): void {
    const position = lock.waiters.findIndex((waiter) => waiter.sessionId === id);
    const waiter = lock.waiters[position];
    assert(waiter !== undefined, `session ${id} is not waiting for ${lock.name}`);
    ownWaiters(lock).splice(position, 1);
    leftWaiters(lock);
    this.deleteWaiting(this.sessions.get(id), lock.name);
    // The request's outcome, for its retries; a session that ended has none to ask.
    if (reason !== 'sessionEnded') {
      const outcome =
        waiter.lockSet === undefined
          ? this.notAcquired(lock.name)
          : this.sets.notAcquiredAll(waiter.lockSet);
      this.remembered.rememberOutcome(lock.name, waiter, outcome);
    }
    this.emit({
      type: 'waitEnded',
      lock: lock.name,
      sessionId: id,
      requestIndex: waiter.requestIndex,
      reason,
    });
  }

  /**
   * Ends `grant` of `lock` and, for a set's grant, of every other lock of the set; then
   * promotes on each (a set is held whole or not at all).
   */
  private endGrant(lock: LockRecord, grant: Grant, reason: ReleaseReason): void {
    const names = namesOf(grant, lock.name);
    for (const name of names) {
      const member = this.lockRecord(name);
      this.removeHolder(member, this.holderOf(member, grant.sessionId), reason);
    }
    for (const name of names) this.promote(this.lockRecord(name));
  }

  /** Ends the session's wait for `lock` and, for a set's wait, in every queue of the set. */
  private endWait(lock: LockRecord, id: SessionId, reason: 'expired' | 'cancelled'): void {
    const place = lock.waiters.find((waiter) => waiter.sessionId === id);
    assert(place !== undefined, `session ${id} is not waiting for ${lock.name}`);
    const names = namesOf(place, lock.name);
    for (const name of names) this.removeWaiter(this.lockRecord(name), id, reason);
    for (const name of names) this.promote(this.lockRecord(name));
  }

  private holderOf(lock: LockRecord, id: SessionId): Grant {
    const grant = lock.holders.get(id);
    assert(grant !== undefined, `session ${id} does not hold ${lock.name}`);
    return grant;
  }

  /** A lock's record has no kind key; a semaphore's or election's has it (kinds.ts). */
  private createLock(name: string, kind: LockKind = 'lock', limit?: number): LockRecord {
    const lock = kind === 'lock' ? new LockRecord(name) : new KindRecord(name, kind, limit);
    this.locks.set(name, lock);
    return lock;
  }

  /** A free lock with no waiters and no delay costs nothing: forget it. */
  private dropIfIdle(lock: LockRecord): void {
    if (lock.holders.size === 0 && lock.waiters.length === 0 && lock.delays.length === 0) {
      this.locks.delete(lock.name);
    }
  }

  private lockRecord(name: string): LockRecord {
    const lock = this.locks.get(name);
    assert(lock !== undefined, `lock ${name} is missing`);
    return lock;
  }

  /** Not granted: names the lock's current holders. */
  private notAcquired(name: string): LockResult {
    const holders = [...(this.locks.get(name)?.holders.values() ?? [])].map(publicHolder);
    return { type: 'NotAcquired', lock: name, holders };
  }

  private acquiredResult(lock: LockRecord, grant: Grant): LockResult {
    return {
      type: 'Acquired',
      lock: lock.name,
      token: grant.token,
      mode: grant.mode,
      holders: [...lock.holders.values()].map(publicHolder),
    };
  }

  private emit(event: LockEvent): void {
    this.events.push(event);
  }

  // ------------------------------------------------------------------ queries

  describe(name: string): LockDescription {
    return describeLock(name, this.locks.get(name));
  }

  /** The holders of `name`, as describe() gives them, without copying its queue. */
  holdersOf(name: string): Holder[] {
    return [...(this.locks.get(name)?.holders.values() ?? [])].map(publicHolder);
  }

  /** Whether session `id` waits in the queue of `name`; O(1), for a waiting Acquire. */
  isWaiting(name: string, id: SessionId): boolean {
    return this.sessions.get(id)?.waiting.has(name) === true;
  }

  /**
   * Names of locks in use that start with `prefix`, in code-unit order, at most `limit`;
   * with `after`, only names that sort after it (the next page).
   */
  listLocks(prefix: string, limit: number, after = ''): string[] {
    return smallestNames(namesUnder(this.locks, prefix, after), limit);
  }

  /** How many locks in use start with `prefix`; a count, no names copied or sorted. */
  countLocks(prefix: string): number {
    return countNames(this.locks, prefix);
  }

  /**
   * session(), with only the first `namesMax` locks it holds and waits for (code-unit
   * order) and how many in all: bounded for a display, whatever the session holds.
   */
  sessionSummary(id: SessionId, namesMax: number): SessionSummary | null {
    const session = this.sessions.get(id);
    return session === undefined ? null : summariseSession(session, namesMax);
  }

  /** Chubby's CheckSequencer: is `token` a current grant of `lock`? */
  validateFence(name: string, token: FencingToken): FenceValidation {
    return fenceOf(this.locks.get(name), token);
  }

  session(id: SessionId): SessionDescription | null {
    const session = this.sessions.get(id);
    return session === undefined ? null : describeSession(session);
  }

  /** The max-hold of a session's grant of `lock`, or 0 (none or not held); for the runtime's timers. */
  maxHoldOf(name: string, id: SessionId): number {
    return this.locks.get(name)?.holders.get(id)?.maxHoldMs ?? 0;
  }

  /** The lock-delays closing `lock`, oldest first; for the runtime's timers. */
  delaysOf(name: string): readonly LockDelay[] {
    return [...(this.locks.get(name)?.delays ?? [])];
  }

  /** Whether `lock` waits for a Promote: its head waiter could be granted now. For the timers. */
  promotionPending(name: string): boolean {
    const lock = this.locks.get(name);
    return lock !== undefined && this.promotionPendingOn(lock);
  }

  /** Every session id, ascending. */
  sessionIds(): SessionId[] {
    return [...this.sessions.keys()].sort((a, b) => a - b);
  }

  // ------------------------------------------------------------------ snapshots

  /**
   * Version 3 until the behaviour was raised, so that binaries older than it read it;
   * version 5 from BEHAVIOUR_MULTI_LOCK, whose state binaries before it cannot read.
   */
  snapshot(): LockSnapshot {
    const state = this.snapshotState();
    const behaviour = this.behaviourInForce;
    if (behaviour === BEHAVIOUR_BASE) return { version: 3, ...state };
    if (behaviour < BEHAVIOUR_MULTI_LOCK) return { version: 4, behaviour, ...state };
    if (behaviour < BEHAVIOUR_SEMAPHORES_ELECTIONS) return { version: 5, behaviour, ...state };
    return { version: 6, behaviour, ...state };
  }

  private snapshotState(): Omit<LockSnapshotV6, 'version' | 'behaviour'> {
    return {
      appliedIndex: this.appliedIndex,
      // Unset, the rules are each machine's own start rules, not the log's: not state.
      rules: this.rulesSetAt === null ? null : this.rulesInForce,
      rulesSetIndex: this.rulesSetAt,
      carriedOver: this.carriedOver,
      sessions: this.sessionIds().map((id) => {
        const session = this.sessions.get(id);
        assert(session !== undefined, `session ${id} vanished`);
        const { ttlMs, clientName, lastRefreshIndex, identity } = session;
        const saved: SnapshotSession = { id, ttlMs, clientName, lastRefreshIndex };
        return identity === '' ? saved : { ...saved, identity };
      }),
      locks: [...this.locks.keys()].sort(compareStrings).map((name) => {
        const lock = this.lockRecord(name);
        const saved = {
          name,
          holders: [...lock.holders.values()],
          waiters: [...lock.waiters],
          delays: [...lock.delays],
        };
        // Only a semaphore's or election's entry has the keys (format 6).
        const { kind, limit } = lock;
        if (kind === undefined) return saved;
        return { ...saved, kind, ...(limit === undefined ? {} : { limit }) };
      }),
      dedupe: [...this.remembered.entries()],
    };
  }

  /**
   * Replaces all state with a snapshot's. Throws BehaviourUnsupportedError, changing
   * nothing, for a snapshot of a behaviour version this binary does not know.
   */
  restore(saved: LockSnapshot | LockSnapshotV2 | LockSnapshotV1): void {
    const version: number = saved.version;
    assert(version >= 1 && version <= 6, `unknown lock snapshot version ${version}`);
    const snapshot = upgradeSnapshot(saved);
    assert(
      isBehaviourVersion(snapshot.behaviour) && snapshotHolds(version, snapshot.behaviour),
      `the snapshot's behaviour version ${snapshot.behaviour} is not one a version ${version} snapshot holds`,
    );
    if (snapshot.behaviour > this.behaviourMax) {
      const where = `the snapshot at index ${snapshot.appliedIndex}`;
      throw new BehaviourUnsupportedError(snapshot.behaviour, this.behaviourMax, where);
    }
    this.behaviourInForce = snapshot.behaviour;
    assert(
      (snapshot.rules === null) === (snapshot.rulesSetIndex === null),
      `the snapshot has rules ${JSON.stringify(snapshot.rules)} set at ${snapshot.rulesSetIndex}: both or neither`,
    );
    const found =
      snapshot.rules === null ? null : lockRulesProblem(snapshot.rules, snapshot.behaviour);
    assert(found === null, `the snapshot's rules are invalid: ${found?.field} ${found?.problem}`);
    this.rulesInForce =
      snapshot.rules === null ? this.startRules : canonicalLockRules(snapshot.rules);
    this.rulesSetAt = snapshot.rulesSetIndex === null ? null : (snapshot.rulesSetIndex as LogIndex);
    this.sessions.clear();
    this.locks.clear();
    this.remembered.clear();
    this.tally.clear();
    this.appliedIndex = snapshot.appliedIndex;
    for (const session of snapshot.sessions) {
      const id = toSessionId(session.id);
      this.sessions.set(id, {
        id,
        ttlMs: session.ttlMs,
        clientName: session.clientName,
        identity: session.identity ?? '',
        lastRefreshIndex: session.lastRefreshIndex as LogIndex,
        held: new Set(),
        waiting: new Set(),
      });
      this.tally.change(session.identity ?? '', 'sessions', 1);
    }
    for (const saved of snapshot.locks) this.restoreLock(saved);
    this.remembered.load(snapshot.dedupe);
    this.carriedOver = snapshot.carriedOver;
    // Before version 3 the rules came from each node's file, which may have been lowered
    // across the restart: what is there now was within the rules it was added under.
    if (saved.version < 3) this.noteCarriedOver();
  }

  private restoreLock(saved: SnapshotLockV6): void {
    const lock = this.createLock(saved.name, saved.kind, saved.limit);
    for (const stored of saved.holders) {
      // Snapshots written before alsoFor existed lack it.
      const told = stored.alsoFor ?? TOLD_NO_OTHERS;
      const alsoFor = told.length === 0 ? TOLD_NO_OTHERS : told;
      const grant = restoredGrant(stored, alsoFor);
      lock.holders.set(grant.sessionId, grant);
      const holder = this.restoredSession(grant.sessionId, saved.name);
      holder.held.add(saved.name);
      this.tally.change(holder.identity, 'held', 1);
    }
    for (const stored of saved.waiters) {
      const waiter: Waiter = { ...stored, mode: internedMode(stored.mode) };
      ownWaiters(lock).push(waiter);
      this.addWaiting(this.restoredSession(waiter.sessionId, saved.name), saved.name);
    }
    for (const delay of saved.delays) {
      ownDelays(lock).push({ index: delay.index as LogIndex, delayMs: delay.delayMs });
    }
  }

  private restoredSession(id: SessionId, lock: string): SessionRecord {
    const session = this.sessions.get(id);
    assert(session !== undefined, `snapshot lists session ${id} on ${lock} but not among sessions`);
    return session;
  }

  /** Checks the invariants over the whole state; tests call it after every command. */
  checkInvariants(): void {
    const { locks, sessions, tally, rules, carriedOver } = this;
    checkStateInvariants({ locks, sessions, tally, rules, carriedOver });
    this.remembered.checkInvariants(this.sessions);
    const setProblem = this.sets.invariantProblem();
    assert(setProblem === null, `a lock set is not whole: ${setProblem}`);
    const kindProblem = this.kinds.invariantProblem();
    assert(kindProblem === null, `a semaphore or election breaks its rules: ${kindProblem}`);
  }
}

/** A plain lock's grant, its keys in grantRecord's order. */
const PLAIN_GRANT_KEYS: readonly string[] = [
  'sessionId',
  'owner',
  'mode',
  'token',
  'requestIndex',
  'maxHoldMs',
  'lockDelayMs',
  'requestId',
  'alsoFor',
];

/**
 * A decoded grant as the record it was, its mode the interned constant (the decoded one
 * is a copy of its own). A plain lock's grant is built as grantRecord builds it, one
 * literal: a spread of the decoded object kept its properties out of the object, some
 * 10 MB more heap on a node restored at 100,000 held locks (issue 12). Any other grant
 * (a set's, a semaphore's, an older snapshot's) keeps its decoded keys in their order,
 * so that its next snapshot is the same bytes.
 */
function restoredGrant(stored: Grant, alsoFor: readonly string[]): Grant {
  const mode = internedMode(stored.mode);
  if (!hasKeysInOrder(stored, PLAIN_GRANT_KEYS)) return { ...stored, mode, alsoFor };
  return {
    sessionId: stored.sessionId,
    owner: stored.owner,
    mode,
    token: stored.token,
    requestIndex: stored.requestIndex,
    maxHoldMs: stored.maxHoldMs,
    lockDelayMs: stored.lockDelayMs,
    requestId: stored.requestId,
    alsoFor,
  };
}

/** A grant's or place's permits and value, each only where its request has it. */
function kindFields(request: { readonly permits?: number; readonly value?: string }): {
  readonly permits?: number;
  readonly value?: string;
} {
  const { permits, value } = request;
  if (permits === undefined && value === undefined) return {};
  return {
    ...(permits === undefined ? {} : { permits }),
    ...(value === undefined ? {} : { value }),
  };
}
