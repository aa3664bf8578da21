import type { Holder, LockCommand, LockEvent, LockResult } from '../lock/index.ts';
import { DlmError } from '../node/errors.ts';
import type { AppliedProposal } from '../node/proposals.ts';
import { REAL_SCHEDULER } from '../node/scheduler.ts';
import type { TraceContext } from '../node/trace.ts';
import { type FencingToken, type LogIndex, logIndex } from '../util/ids.ts';
import { askerFields, mayRead, requirePermission } from './auth/guard.ts';
import { clientWrite } from './client-write.ts';
import { type ApiContext, type CallScope, header, wireHolder } from './context.ts';
import { ApiError, rejectionError } from './errors.ts';
import { type AcquireResponse, toUint64 } from './proto.ts';
import { parseAcquire } from './validate.ts';

type AcquireCommand = Extract<LockCommand, { type: 'Acquire' }>;

/** How a queued Acquire ended, seen from the entry that ended it. */
type Turn =
  | {
      readonly kind: 'granted';
      readonly index: number;
      readonly token: FencingToken;
      readonly holders: readonly Holder[];
    }
  | {
      readonly kind: 'ended';
      readonly index: number;
      readonly reason: 'expired' | 'cancelled' | 'sessionEnded';
      readonly holders: readonly Holder[];
    };

/**
 * Collects how this session's wait for this lock ends. It listens from before the
 * Acquire is proposed: the grant can be applied in the same batch as the Acquire, before
 * the write's promise continues, and must not be missed.
 */
class TurnWatch {
  private readonly turns: Turn[] = [];
  private waiting: { after: number; resolve: (turn: Turn) => void } | null = null;
  private readonly stops: (() => void)[];

  constructor(
    private readonly context: ApiContext,
    private readonly command: AcquireCommand,
  ) {
    this.stops = [
      context.events.onSession(command.sessionId, (index, event) => this.observe(index, event)),
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
    const turn = currentTurn(this.context, this.command);
    if (turn === null) return;
    const restoredTurn = { ...turn, index };
    this.turns.push(restoredTurn);
    if (this.waiting !== null && index > this.waiting.after) {
      this.waiting.resolve(restoredTurn);
      this.waiting = null;
    }
  }

  private observe(index: LogIndex, event: LockEvent): void {
    if (!('lock' in event) || event.lock !== this.command.lock) return;
    const turn = this.turnOf(index, event);
    if (turn === null) return;
    // Bounded: a session's wait for one lock ends at most once per Acquire entry.
    this.turns.push(turn);
    if (this.waiting !== null && index > this.waiting.after) {
      this.waiting.resolve(turn);
      this.waiting = null;
    }
  }

  /** Holders are read now, inside the apply of `index`: the state right after that entry. */
  private turnOf(index: LogIndex, event: LockEvent): Turn | null {
    const holders = () => this.context.node.locks.holdersOf(this.command.lock);
    if (event.type === 'granted' && event.holder.sessionId === this.command.sessionId) {
      return { kind: 'granted', index, token: event.holder.token, holders: holders() };
    }
    if (event.type === 'waitEnded' && event.reason !== 'granted') {
      return { kind: 'ended', index, reason: event.reason, holders: holders() };
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
  const command: AcquireCommand = { ...request, ...askerFields(context.auth, call.caller) };
  const response = await acquireAs(context, command, call);
  // Holders' owner metadata is what `read` shows: a caller with `lock` only sees tokens.
  if (mayRead(context.auth, call.caller, request.lock)) return response;
  return { ...response, holders: response.holders.map((holder) => ({ ...holder, owner: '' })) };
}

async function acquireAs(
  context: ApiContext,
  command: AcquireCommand,
  call: CallScope,
): Promise<AcquireResponse> {
  const watch = new TurnWatch(context, command);
  try {
    const lateApply = (late: AppliedProposal): void => {
      // Called inside the node's apply loop: propose once that loop has moved on.
      if (late.result.type === 'Acquired' || late.result.type === 'Queued')
        queueMicrotask(() => withdraw(context, call, command, late.index));
    };
    const applied = await clientWrite(context, call, command, lateApply);
    const { index, result } = applied;
    if (result.type !== 'Queued') {
      return answerAtOnce(context, command, call, applied.attemptIndex ?? index, index, result);
    }
    const turn =
      watch.after(index) ??
      currentTurn(context, command) ??
      (await waitForTurn(watch, index, call));
    if (turn !== null) return turnResponse(context, command, index, turn, call);
    withdraw(context, call, command, index);
    throw new DlmError('DEADLINE_EXCEEDED', `gave up waiting for ${command.lock}`);
  } finally {
    watch.close();
  }
}

/** `attemptIndex`: the Acquire's entry; `index`: where `result` is true (see AppliedProposal). */
function answerAtOnce(
  context: ApiContext,
  command: AcquireCommand,
  call: CallScope,
  attemptIndex: number,
  index: number,
  result: LockResult,
): AcquireResponse {
  switch (result.type) {
    case 'Acquired':
      giveBackUnlessDelivered(context, command, call, attemptIndex);
      return acquiredResponse(context, index, result.token, result.holders);
    case 'NotAcquired':
      return notAcquiredResponse(context, index, result.holders);
    case 'Rejected':
      throw rejectionError(result, 'AcquireRequest');
    default:
      throw new Error(`Acquire was answered with ${result.type}`);
  }
}

/**
 * The turn as the applied state shows it, when no entry after the Acquire changed it:
 * null while still waiting. A retried Acquire returns its first result (Queued) even if
 * that wait has ended since, so the state, not the result, says where it stands.
 */
function currentTurn(context: ApiContext, command: AcquireCommand): Turn | null {
  const locks = context.node.locks;
  // Not describe(): it copies the queue, and every waiting Acquire asks this.
  const holders = locks.holdersOf(command.lock);
  const index = locks.lastAppliedIndex;
  const holder = holders.find((each) => each.sessionId === command.sessionId);
  if (holder !== undefined) return { kind: 'granted', index, token: holder.token, holders };
  if (locks.isWaiting(command.lock, command.sessionId)) return null;
  const reason = locks.session(command.sessionId) === null ? 'sessionEnded' : 'expired';
  return { kind: 'ended', index, reason, holders };
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

function turnResponse(
  context: ApiContext,
  command: AcquireCommand,
  acquireIndex: number,
  turn: Turn,
  call: CallScope,
): AcquireResponse {
  if (turn.kind === 'granted') {
    giveBackUnlessDelivered(context, command, call, acquireIndex);
    return acquiredResponse(context, turn.index, turn.token, turn.holders);
  }
  if (turn.reason === 'sessionEnded') {
    throw new ApiError(
      'sessionNotFound',
      `session ${command.sessionId} ended while waiting for ${command.lock}`,
    );
  }
  return notAcquiredResponse(context, turn.index, turn.holders);
}

function acquiredResponse(
  context: ApiContext,
  index: number,
  token: FencingToken,
  holders: readonly Holder[],
): AcquireResponse {
  return {
    header: header(context.node, index),
    acquired: true,
    fencing_token: toUint64(token),
    holders: holders.map((holder) => wireHolder(holder)),
  };
}

/** A try-lock that found the lock held, or a wait that ran out: an answer, not an error. */
function notAcquiredResponse(
  context: ApiContext,
  index: number,
  holders: readonly Holder[],
): AcquireResponse {
  return {
    header: header(context.node, index),
    acquired: false,
    fencing_token: '0',
    holders: holders.map((holder) => wireHolder(holder)),
  };
}

// ------------------------------------------------------------------ giving up

/**
 * A grant nobody learns of would stay with the session until it ends, served to no one:
 * if the answer carrying it never reaches the caller (the caller went first, or its
 * Session stream could not take the answer), the attempt is withdrawn.
 */
function giveBackUnlessDelivered(
  context: ApiContext,
  command: AcquireCommand,
  call: CallScope,
  attemptIndex: number,
): void {
  call.onUndelivered(() => withdraw(context, call, command, attemptIndex));
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
  command: AcquireCommand,
  attemptIndex: number,
): void {
  const { lock, sessionId, requestId } = command;
  const withdrawal: LockCommand = {
    type: 'Withdraw',
    lock,
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
