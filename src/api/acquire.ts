import {
  BEHAVIOUR_MULTI_LOCK,
  BEHAVIOUR_SEMAPHORES_ELECTIONS,
  deadlockDetail,
  type Holder,
  type LockCommand,
  type LockEvent,
  type LockMode,
  type LockResult,
  lockSetNames,
} from '../lock/index.ts';
import { DlmError } from '../node/errors.ts';
import type { AppliedProposal } from '../node/proposals.ts';
import { REAL_SCHEDULER } from '../node/scheduler.ts';
import type { TraceContext } from '../node/trace.ts';
import { type FencingToken, type LogIndex, logIndex } from '../util/ids.ts';
import { withFields } from '../util/objects.ts';
import { askerFields, mayRead, requirePermission } from './auth/guard.ts';
import { clientWrite } from './client-write.ts';
import { type ApiContext, type CallScope, header, wireHolder } from './context.ts';
import { ApiError, ELECTION_WIRE_NAMES, rejectionError, SEMAPHORE_WIRE_NAMES } from './errors.ts';
import { wireLeader } from './leader-info.ts';
import {
  type AcquireAllResponse,
  type AcquirePermitsResponse,
  type AcquireResponse,
  type CampaignResponse,
  toUint64,
  wireMode,
} from './proto.ts';
import { parseAcquire, parseAcquireAll, parseAcquirePermits, parseCampaign } from './validate.ts';

type AcquireCommand = Extract<LockCommand, { type: 'Acquire' }>;
type AcquireAllCommand = Extract<LockCommand, { type: 'AcquireAll' }>;
type AcquirePermitsCommand = Extract<LockCommand, { type: 'AcquirePermits' }>;
type CampaignCommand = Extract<LockCommand, { type: 'Campaign' }>;
/**
 * What an attempt proposes: one lock (Acquire), a set of them (AcquireAll), permits of
 * a semaphore (AcquirePermits) or the leadership of an election (Campaign). The last
 * two are answered as an Acquire is (Acquired, Queued, NotAcquired), by the same flow.
 */
type AttemptCommand = AcquireCommand | AcquireAllCommand | AcquirePermitsCommand | CampaignCommand;

/** The holders of one lock the attempt names, as of one applied index. */
interface LockHolders {
  readonly lock: string;
  readonly holders: readonly Holder[];
}

/**
 * One Acquire or AcquireAll as the waiting, withdrawing and giving back below see it.
 * Both are answered the same way (at once, or once the entry that grants or ends the
 * wait applies), so one flow serves both; only the locks they name differ.
 */
interface Attempt {
  readonly command: AttemptCommand;
  /** Every lock it names, in code-unit order (the order a set's answer lists them in). */
  readonly names: readonly string[];
  /**
   * The lock whose events tell how the attempt's wait ends. A set is granted by one
   * entry, and its wait ends by one entry, on every lock of it at once: its first lock
   * tells for all. A Withdraw names it too, which gives back the whole set.
   */
  readonly watched: string;
  /** The request message's name, for errors naming its fields. */
  readonly request: `${AttemptCommand['type']}Request`;
  /** Where the request message names a command field otherwise (see rejectionError). */
  readonly wireNames: Readonly<Record<string, string>>;
}

function attemptOf(command: AttemptCommand): Attempt {
  if (command.type !== 'AcquireAll') {
    const wireNames =
      command.type === 'AcquirePermits'
        ? SEMAPHORE_WIRE_NAMES
        : command.type === 'Campaign'
          ? ELECTION_WIRE_NAMES
          : {};
    const request = `${command.type}Request` as const;
    return { command, names: [command.lock], watched: command.lock, request, wireNames };
  }
  const names = lockSetNames(command);
  const [watched] = names;
  // parseAcquireAll refuses an empty set before anything is proposed.
  if (watched === undefined) throw new Error('AcquireAll names no lock');
  return { command, names, watched, request: 'AcquireAllRequest', wireNames: {} };
}

/** How an attempt ended, whichever message carries the answer. */
type Outcome =
  | {
      readonly kind: 'granted';
      readonly index: number;
      readonly token: FencingToken;
      readonly locks: readonly LockHolders[];
    }
  | { readonly kind: 'notGranted'; readonly index: number; readonly locks: readonly LockHolders[] };

/** How a queued attempt ended, seen from the entry that ended it. */
type Turn =
  | {
      readonly kind: 'granted';
      readonly index: number;
      readonly token: FencingToken;
      readonly locks: readonly LockHolders[];
    }
  | {
      readonly kind: 'ended';
      readonly index: number;
      readonly reason: 'expired' | 'cancelled' | 'sessionEnded';
      readonly locks: readonly LockHolders[];
    };

/** The holders of each lock of the attempt, as the applied state shows them now. */
function holdersNow(context: ApiContext, attempt: Attempt): LockHolders[] {
  return attempt.names.map((lock) => ({ lock, holders: context.node.locks.holdersOf(lock) }));
}

/**
 * Collects how this session's wait for this attempt ends. It listens from before the
 * attempt is proposed: the grant can be applied in the same batch as the attempt, before
 * the write's promise continues, and must not be missed.
 */
class TurnWatch {
  private readonly turns: Turn[] = [];
  private waiting: { after: number; resolve: (turn: Turn) => void } | null = null;
  private readonly stops: (() => void)[];

  constructor(
    private readonly context: ApiContext,
    private readonly attempt: Attempt,
  ) {
    this.stops = [
      context.events.onSession(attempt.command.sessionId, (index, event) =>
        this.observe(index, event),
      ),
      context.events.onRestored((index) => this.restored(index)),
    ];
  }

  /** The first turn applied after the entry at `index`, if one was. */
  after(index: number): Turn | undefined {
    return this.turns.find((turn) => turn.index > index);
  }

  next(index: number): Promise<Turn> {
    const turn = this.after(index);
    if (turn !== undefined) return Promise.resolve(turn);
    return new Promise((resolve) => {
      this.waiting = { after: index, resolve };
    });
  }

  close(): void {
    for (const stop of this.stops) stop();
  }

  /**
   * A snapshot replaced the state: the entry that ended the wait, if any, was never
   * applied here one by one, so the restored state says where the wait stands.
   */
  private restored(index: LogIndex): void {
    const turn = currentTurn(this.context, this.attempt);
    if (turn === null) return;
    const restoredTurn = { ...turn, index };
    this.turns.push(restoredTurn);
    if (this.waiting !== null && index > this.waiting.after) {
      this.waiting.resolve(restoredTurn);
      this.waiting = null;
    }
  }

  private observe(index: LogIndex, event: LockEvent): void {
    if (!('lock' in event) || event.lock !== this.attempt.watched) return;
    const turn = this.turnOf(index, event);
    if (turn === null) return;
    // Bounded: a session's wait for one lock ends at most once per Acquire entry.
    this.turns.push(turn);
    if (this.waiting !== null && index > this.waiting.after) {
      this.waiting.resolve(turn);
      this.waiting = null;
    }
  }

  /**
   * Holders are read now, once the entry at `index` has applied (the hub dispatches an
   * entry's events after its apply): the state right after that entry.
   */
  private turnOf(index: LogIndex, event: LockEvent): Turn | null {
    const { command } = this.attempt;
    if (event.type === 'granted' && event.holder.sessionId === command.sessionId) {
      const locks = holdersNow(this.context, this.attempt);
      return { kind: 'granted', index, token: event.holder.token, locks };
    }
    if (event.type === 'waitEnded' && event.reason !== 'granted') {
      const locks = holdersNow(this.context, this.attempt);
      return { kind: 'ended', index, reason: event.reason, locks };
    }
    return null;
  }
}

/**
 * Acquire: propose it; if it queued, wait for the entry that grants it or ends the
 * wait. Whenever the caller cannot learn what this attempt got (it gave up: deadline or
 * cancel; its answer could not be delivered; or it was told the write failed, and the
 * write applied after all), the attempt is withdrawn through the log, which gives back
 * its grant or its place in the queue (see `withdraw`).
 */
export async function acquire(
  context: ApiContext,
  raw: unknown,
  call: CallScope,
): Promise<AcquireResponse> {
  const request = parseAcquire(raw);
  requirePermission(context.auth, call.caller, 'lock', request.lock);
  const command: AcquireCommand = withFields(request, askerFields(context.auth, call.caller));
  const outcome = await runAttempt(context, attemptOf(command), call);
  const [only] = outcome.locks;
  // Holders' owner metadata is what `read` shows: a caller with `lock` only sees tokens.
  const holders = only === undefined ? [] : visibleHolders(context, call, only);
  return {
    header: header(context.node, outcome.index),
    acquired: outcome.kind === 'granted',
    fencing_token: outcome.kind === 'granted' ? toUint64(outcome.token) : '0',
    holders,
  };
}

/**
 * AcquireAll (issue 17): every lock of the set at once, or none, by the same flow as
 * Acquire. Every lock it names needs the `lock` permission, checked before anything is
 * proposed, so a set cannot reach a lock its caller may not take.
 */
export async function acquireAll(
  context: ApiContext,
  raw: unknown,
  call: CallScope,
): Promise<AcquireAllResponse> {
  const request = parseAcquireAll(raw);
  for (const claim of request.locks) {
    requirePermission(context.auth, call.caller, 'lock', claim.lock);
  }
  const command: AcquireAllCommand = withFields(request, askerFields(context.auth, call.caller));
  const outcome = await runAttempt(context, attemptOf(command), call);
  const modes = new Map<string, LockMode>(request.locks.map((claim) => [claim.lock, claim.mode]));
  return {
    header: header(context.node, outcome.index),
    acquired: outcome.kind === 'granted',
    fencing_token: outcome.kind === 'granted' ? toUint64(outcome.token) : '0',
    locks: outcome.locks.map((each) => ({
      lock: each.lock,
      mode: wireMode(modes.get(each.lock) ?? 'exclusive'),
      holders: visibleHolders(context, call, each),
    })),
  };
}

/**
 * AcquirePermits (issue 17): permits of a semaphore, by the same flow as Acquire (turn
 * watching, withdraw and give-back): each grant is one holder with a token of its own.
 */
export async function acquirePermits(
  context: ApiContext,
  raw: unknown,
  call: CallScope,
): Promise<AcquirePermitsResponse> {
  const request = parseAcquirePermits(raw);
  requirePermission(context.auth, call.caller, 'lock', request.lock);
  const command: AcquirePermitsCommand = withFields(
    request,
    askerFields(context.auth, call.caller),
  );
  const outcome = await runAttempt(context, attemptOf(command), call);
  const [only] = outcome.locks;
  return {
    header: header(context.node, outcome.index),
    acquired: outcome.kind === 'granted',
    fencing_token: outcome.kind === 'granted' ? toUint64(outcome.token) : '0',
    holders: only === undefined ? [] : visibleHolders(context, call, only),
  };
}

/**
 * Campaign (issue 17): the leadership of an election, an exclusive grant by the same
 * flow as Acquire. The answer names the leader now: the caller once elected, else the
 * one that led when the try or the wait ended (none if nobody did).
 */
export async function campaign(
  context: ApiContext,
  raw: unknown,
  call: CallScope,
): Promise<CampaignResponse> {
  const request = parseCampaign(raw);
  requirePermission(context.auth, call.caller, 'lock', request.lock);
  const command: CampaignCommand = withFields(request, askerFields(context.auth, call.caller));
  const outcome = await runAttempt(context, attemptOf(command), call);
  const [only] = outcome.locks;
  const [leader] = only?.holders ?? [];
  const readable = mayRead(context.auth, call.caller, request.lock);
  return {
    header: header(context.node, outcome.index),
    elected: outcome.kind === 'granted',
    fencing_token: outcome.kind === 'granted' ? toUint64(outcome.token) : '0',
    leader: leader === undefined ? null : wireLeader(leader, 0, readable),
  };
}

/** A lock's holders on the wire; their owners only for a caller who may read the lock. */
function visibleHolders(context: ApiContext, call: CallScope, each: LockHolders) {
  const wire = each.holders.map((holder) => wireHolder(holder));
  if (mayRead(context.auth, call.caller, each.lock)) return wire;
  return wire.map((holder) => ({ ...holder, owner: '' }));
}

async function runAttempt(
  context: ApiContext,
  attempt: Attempt,
  call: CallScope,
): Promise<Outcome> {
  const watch = new TurnWatch(context, attempt);
  try {
    const lateApply = (late: AppliedProposal): void => {
      // Called inside the node's apply loop: propose once that loop has moved on.
      if (gotSomething(late.result))
        queueMicrotask(() => withdraw(context, call, attempt, late.index));
    };
    const applied = await clientWrite(context, call, attempt.command, lateApply);
    const { index, result } = applied;
    if (result.type !== 'Queued' && result.type !== 'QueuedAll') {
      return answerAtOnce(context, attempt, call, applied.attemptIndex ?? index, index, result);
    }
    const turn =
      watch.after(index) ??
      currentTurn(context, attempt) ??
      (await waitForTurn(watch, index, call));
    if (turn !== null) return turnOutcome(context, attempt, index, turn, call);
    withdraw(context, call, attempt, index);
    throw new DlmError('DEADLINE_EXCEEDED', `gave up waiting for ${describeLocks(attempt)}`);
  } finally {
    watch.close();
  }
}

/** A grant or a place in a queue: what must be given back if nobody learns of it. */
function gotSomething(result: LockResult): boolean {
  switch (result.type) {
    case 'Acquired':
    case 'Queued':
    case 'AcquiredAll':
    case 'QueuedAll':
      return true;
    default:
      return false;
  }
}

function describeLocks(attempt: Attempt): string {
  const { command } = attempt;
  switch (command.type) {
    case 'Acquire':
      return command.lock;
    case 'AcquirePermits':
      return `${command.permits} permits of the semaphore ${JSON.stringify(command.lock)}`;
    case 'Campaign':
      return `the leadership of ${JSON.stringify(command.lock)}`;
    case 'AcquireAll':
      break;
  }
  return `the set ${attempt.names.map((name) => JSON.stringify(name)).join(', ')}`;
}

/** `attemptIndex`: the attempt's entry; `index`: where `result` is true (see AppliedProposal). */
function answerAtOnce(
  context: ApiContext,
  attempt: Attempt,
  call: CallScope,
  attemptIndex: number,
  index: number,
  result: LockResult,
): Outcome {
  switch (result.type) {
    case 'Acquired':
      giveBackUnlessDelivered(context, attempt, call, attemptIndex);
      return {
        kind: 'granted',
        index,
        token: result.token,
        locks: [{ lock: result.lock, holders: result.holders }],
      };
    case 'AcquiredAll':
      giveBackUnlessDelivered(context, attempt, call, attemptIndex);
      return { kind: 'granted', index, token: result.token, locks: result.locks };
    case 'NotAcquired':
      return { kind: 'notGranted', index, locks: [{ lock: result.lock, holders: result.holders }] };
    case 'NotAcquiredAll':
      return { kind: 'notGranted', index, locks: result.locks };
    case 'Rejected':
      throw refusalOf(context, attempt, result, call);
    default:
      throw new Error(`${attempt.command.type} was answered with ${result.type}`);
  }
}

function refusalOf(
  context: ApiContext,
  attempt: Attempt,
  result: Extract<LockResult, { type: 'Rejected' }>,
  call: CallScope,
): Error {
  return (
    behaviourRefusal(context, attempt.command.type, result) ??
    rejectionError(withReadableCycle(context, result, call), attempt.request, attempt.wireNames)
  );
}

/** The lock behaviour version from which the state machine applies each newer command. */
const COMMAND_SINCE: Partial<Readonly<Record<LockCommand['type'], number>>> = {
  AcquireAll: BEHAVIOUR_MULTI_LOCK,
  AcquirePermits: BEHAVIOUR_SEMAPHORES_ELECTIONS,
  Campaign: BEHAVIOUR_SEMAPHORES_ELECTIONS,
  Proclaim: BEHAVIOUR_SEMAPHORES_ELECTIONS,
};

/** What a caller can do meanwhile, where the older commands do the same job. */
const UNTIL_THEN: Partial<Readonly<Record<LockCommand['type'], string>>> = {
  AcquireAll: ', until then take the locks with Acquire',
};

/**
 * Below the version a command needs, the state machine does not know it and refuses it
 * as a malformed command (invalidArgument "unknown command type"), which would send a
 * caller looking for a fault in its request: it is told instead that the cluster has not
 * raised its lock behaviour version yet (some node runs an older binary), which no retry
 * fixes. Null for any other refusal.
 */
export function behaviourRefusal(
  context: ApiContext,
  type: LockCommand['type'],
  result: Extract<LockResult, { type: 'Rejected' }>,
): ApiError | null {
  const behaviour = context.node.locks.behaviour;
  const since = COMMAND_SINCE[type];
  if (
    since === undefined ||
    result.code !== 'invalidArgument' ||
    !result.detail.startsWith('unknown command type') ||
    behaviour >= since
  ) {
    return null;
  }
  return new ApiError(
    'FAILED_PRECONDITION',
    `${type} needs lock behaviour version ${since}, and the cluster applies version ${behaviour}: it raises the version once every member runs a release that supports it (upgrade the nodes)${UNTIL_THEN[type] ?? ''}`,
  );
}

/**
 * A deadlock refusal names every lock of the cycle; a caller that may not read some of
 * them (auth on) learns only that a lock it may not read is there, as Describe would
 * tell it nothing of it (review test rev4-deadlock-names-unreadable).
 */
function withReadableCycle(
  context: ApiContext,
  result: Extract<LockResult, { type: 'Rejected' }>,
  call: CallScope,
): Extract<LockResult, { type: 'Rejected' }> {
  const { cycle } = result;
  if (result.code !== 'deadlock' || cycle === undefined) return result;
  const readable = (lock: string): boolean => mayRead(context.auth, call.caller, lock);
  if (cycle.every((hop) => readable(hop.lock))) return result;
  const nameOf = (lock: string) =>
    readable(lock) ? JSON.stringify(lock) : 'a lock you may not read';
  return { ...result, detail: deadlockDetail(cycle, nameOf), cycle: [] };
}

/**
 * The turn as the applied state shows it, when no entry after the attempt changed it:
 * null while still waiting. A retried attempt returns its first result (Queued) even if
 * that wait has ended since, so the state, not the result, says where it stands.
 */
function currentTurn(context: ApiContext, attempt: Attempt): Turn | null {
  const locks = context.node.locks;
  const status = locks.requestStatus(attempt.command);
  if (status !== undefined) return turnOfRequest(context, attempt, status);
  // Not remembered (left the window): where the session stands on the watched lock.
  const { sessionId } = attempt.command;
  // Not describe(): it copies the queue, and every waiting Acquire asks this.
  const watchedHolders = locks.holdersOf(attempt.watched);
  const index = locks.lastAppliedIndex;
  const holder = watchedHolders.find((each) => each.sessionId === sessionId);
  if (holder !== undefined) {
    return { kind: 'granted', index, token: holder.token, locks: holdersNow(context, attempt) };
  }
  if (locks.isWaiting(attempt.watched, sessionId)) return null;
  const reason = locks.session(sessionId) === null ? 'sessionEnded' : 'expired';
  return { kind: 'ended', index, reason, locks: holdersNow(context, attempt) };
}

/**
 * The turn as the request's own status says (LockStateMachine.requestStatus): granted
 * only with the token this request was told of, never another request's grant of the
 * same session, nor a set the session holds only part of (review test
 * rev4-set-restored-turn). Null while it waits.
 */
function turnOfRequest(
  context: ApiContext,
  attempt: Attempt,
  status: LockResult | null,
): Turn | null {
  const locks = context.node.locks;
  const index = locks.lastAppliedIndex;
  if (status?.type === 'Acquired' || status?.type === 'AcquiredAll') {
    return { kind: 'granted', index, token: status.token, locks: holdersNow(context, attempt) };
  }
  if (status?.type === 'Queued' || status?.type === 'QueuedAll') return null;
  const reason = locks.session(attempt.command.sessionId) === null ? 'sessionEnded' : 'expired';
  return { kind: 'ended', index, reason, locks: holdersNow(context, attempt) };
}

/** The turn, or null if the caller gave up (deadline passed or call cancelled) first. */
async function waitForTurn(watch: TurnWatch, index: number, call: CallScope): Promise<Turn | null> {
  let stopListening = (): void => {};
  const abandoned = new Promise<null>((resolve) => {
    if (call.cancelled) resolve(null);
    stopListening = call.onCancelled(() => resolve(null));
  });
  try {
    return await Promise.race([watch.next(index), abandoned]);
  } finally {
    stopListening();
  }
}

function turnOutcome(
  context: ApiContext,
  attempt: Attempt,
  attemptIndex: number,
  turn: Turn,
  call: CallScope,
): Outcome {
  if (turn.kind === 'granted') {
    giveBackUnlessDelivered(context, attempt, call, attemptIndex);
    return { kind: 'granted', index: turn.index, token: turn.token, locks: turn.locks };
  }
  if (turn.reason === 'sessionEnded') {
    throw new ApiError(
      'sessionNotFound',
      `session ${attempt.command.sessionId} ended while waiting for ${describeLocks(attempt)}`,
    );
  }
  return { kind: 'notGranted', index: turn.index, locks: turn.locks };
}

// ------------------------------------------------------------------ giving up

/**
 * A grant nobody learns of would stay with the session until it ends, served to no one:
 * if the answer carrying it never reaches the caller (the caller went first, or its
 * Session stream could not take the answer), the attempt is withdrawn.
 */
function giveBackUnlessDelivered(
  context: ApiContext,
  attempt: Attempt,
  call: CallScope,
  attemptIndex: number,
): void {
  call.onUndelivered(() => withdraw(context, call, attempt, attemptIndex));
}

/**
 * Gives back what the Acquire attempt in the entry at `attemptIndex` got, through the
 * log: the state machine removes its waiter or releases its grant, matched on the
 * request, not on an entry index (a retry answered from the remembered result wrote an
 * entry of its own). The Withdraw is void if a later attempt of the same request was
 * applied since: that one's caller may have been told Acquired. It outlives the call,
 * and carries the call's trace if it is forwarded.
 */
function withdraw(
  context: ApiContext,
  call: CallScope,
  attempt: Attempt,
  attemptIndex: number,
): void {
  const { sessionId, requestId } = attempt.command;
  // For a set, any lock of it names the whole set: the state machine gives it back whole.
  const withdrawal: LockCommand = {
    type: 'Withdraw',
    lock: attempt.watched,
    sessionId,
    requestId,
    attemptIndex: logIndex(attemptIndex),
  };
  void writeWithRetry(context, withdrawal, call.trace);
}

/**
 * Cleanup writes retry with the same request id, which the state machine's dedupe makes
 * safe. They run after the call has ended, so failures can only be logged. A refusal
 * is a failure too: what the Acquire got then stays with its session, though its
 * caller was told it failed.
 */
async function writeWithRetry(
  context: ApiContext,
  command: LockCommand,
  trace: TraceContext,
): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    try {
      const { result } = await context.node.write(command, { trace });
      if (result.type === 'Rejected') {
        context.logger('warn', `the ${command.type} for an abandoned Acquire was refused`, {
          command,
          code: result.code,
          detail: result.detail,
        });
        return false;
      }
      return true;
    } catch (error) {
      const retryable = error instanceof DlmError && error.code !== 'INTERNAL';
      if (!retryable || attempt >= context.options.withdrawAttemptsMax) {
        context.logger('warn', `could not ${command.type} for an abandoned Acquire`, {
          command,
          error: String(error),
        });
        return false;
      }
      await waitToRetry(context, attempt, error.code === 'UNAVAILABLE' ? leaderNow(context) : null);
    }
  }
}

/** Who this node takes for the leader, and in which term. */
function leaderNow(context: ApiContext): { leaderId: string | null; term: number } {
  const { leaderId, term } = context.node.status();
  return { leaderId, term };
}

/**
 * Sleeps out the backoff of `attempt`, but for a write that failed as UNAVAILABLE
 * (`failedUnder`: the leader this node knew then) no longer than until this node knows
 * a leader it did not know then (another one, or the same in a new term).
 *
 * Without that early wake, a node cut off from the leader burns its first attempts at
 * once ("knows no leader" fails a write without waiting), so the backoff has grown to
 * 1.6-2 s by the time the cluster is whole again; the grant or the place in the queue
 * that the caller was told it did not get then stays with its session for up to 2 s
 * more, served to nobody while others wait for it. The wake polls at the shortest
 * backoff, so attempts are not spent faster than without it.
 */
async function waitToRetry(
  context: ApiContext,
  attempt: number,
  failedUnder: { leaderId: string | null; term: number } | null,
): Promise<void> {
  const scheduler = context.scheduler ?? REAL_SCHEDULER;
  let leftMs = withdrawBackoffMs(attempt);
  while (leftMs > 0) {
    const stepMs = Math.min(leftMs, WITHDRAW_BACKOFF_FIRST_MS);
    await scheduler.sleep(stepMs);
    leftMs -= stepMs;
    if (failedUnder === null) continue;
    const now = leaderNow(context);
    if (
      now.leaderId !== null &&
      (now.leaderId !== failedUnder.leaderId || now.term !== failedUnder.term)
    )
      return;
  }
}

const WITHDRAW_BACKOFF_FIRST_MS = 50;

/** 50 ms doubling per attempt, at most 2 s. */
function withdrawBackoffMs(attempt: number): number {
  return Math.min(2_000, WITHDRAW_BACKOFF_FIRST_MS * 2 ** (attempt - 1));
}
