import type * as grpc from '@grpc/grpc-js';
import type { Holder, LockCommand, LockEvent, LockResult } from '../lock/index.ts';
import { DlmError } from '../node/errors.ts';
import { REAL_SCHEDULER } from '../node/scheduler.ts';
import type { FencingToken, LogIndex } from '../util/ids.ts';
import { type ApiContext, header, wireHolder } from './context.ts';
import { ApiError, rejectionError } from './errors.ts';
import { type AcquireResponse, toUint64 } from './proto.ts';
import { parseAcquire } from './validate.ts';

type AcquireCommand = Extract<LockCommand, { type: 'Acquire' }>;
type AcquireCall = grpc.ServerUnaryCall<unknown, AcquireResponse>;

/** How a queued Acquire ended, seen from the entry that ended it. */
type Turn =
  | {
      readonly kind: 'granted';
      readonly index: number;
      readonly token: FencingToken;
      /** The Acquire entry this grant answers; equal to ours only for our own waiter. */
      readonly requestIndex: LogIndex;
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
  private readonly stop: () => void;

  constructor(
    private readonly context: ApiContext,
    private readonly command: AcquireCommand,
  ) {
    this.stop = context.events.onSession(command.sessionId, (index, event) =>
      this.observe(index, event),
    );
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
    this.stop();
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
    const holders = () => this.context.node.locks.describe(this.command.lock).holders;
    if (event.type === 'granted' && event.holder.sessionId === this.command.sessionId) {
      const { token, requestIndex } = event.holder;
      return { kind: 'granted', index, token, requestIndex, holders: holders() };
    }
    if (event.type === 'waitEnded' && event.reason !== 'granted') {
      return { kind: 'ended', index, reason: event.reason, holders: holders() };
    }
    return null;
  }
}

/**
 * Acquire: propose it; if it queued, wait for the entry that grants it or ends the
 * wait. If the caller gives up first (deadline or cancel), withdraw the waiter through
 * the log, and give back a grant that raced with the withdrawal.
 */
export async function acquire(
  context: ApiContext,
  raw: unknown,
  call: AcquireCall,
): Promise<AcquireResponse> {
  const command = parseAcquire(raw, context.node.locks.limits);
  const watch = new TurnWatch(context, command);
  let watchHandedOver = false;
  try {
    const { index, result } = await context.node.write(command);
    if (result.type !== 'Queued') return answerAtOnce(context, command, call, index, result);
    const turn =
      watch.after(index) ??
      currentTurn(context, command) ??
      (await waitForTurn(watch, index, call));
    if (turn !== null) return turnResponse(context, command, index, turn, call);
    // The withdrawal outlives the call, and needs the watch to see a racing grant.
    watchHandedOver = true;
    void withdraw(context, command, index, watch).finally(() => watch.close());
    throw new DlmError('DEADLINE_EXCEEDED', `gave up waiting for ${command.lock}`);
  } finally {
    if (!watchHandedOver) watch.close();
  }
}

function answerAtOnce(
  context: ApiContext,
  command: AcquireCommand,
  call: AcquireCall,
  index: number,
  result: LockResult,
): AcquireResponse {
  switch (result.type) {
    case 'Acquired':
      // A grant made by this very entry that nobody will learn of is given back.
      if (call.cancelled && sameIndex(result.token, index))
        giveBack(context, command, result.token);
      return acquiredResponse(context, index, result.token, result.holders);
    case 'NotAcquired':
      return notAcquiredResponse(context, index, result.holders);
    case 'Rejected':
      throw rejectionError(result);
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
  const description = locks.describe(command.lock);
  const index = locks.lastAppliedIndex;
  const holder = description.holders.find((each) => each.sessionId === command.sessionId);
  if (holder !== undefined) {
    const { token, requestIndex } = holder;
    return { kind: 'granted', index, token, requestIndex, holders: description.holders };
  }
  if (description.waiters.some((waiter) => waiter.sessionId === command.sessionId)) return null;
  const reason = locks.session(command.sessionId) === null ? 'sessionEnded' : 'expired';
  return { kind: 'ended', index, reason, holders: description.holders };
}

/** The turn, or null if the caller gave up (deadline passed or call cancelled) first. */
async function waitForTurn(
  watch: TurnWatch,
  index: number,
  call: AcquireCall,
): Promise<Turn | null> {
  let onCancelled = (): void => {};
  const abandoned = new Promise<null>((resolve) => {
    onCancelled = () => resolve(null);
    if (call.cancelled) resolve(null);
    call.once('cancelled', onCancelled);
  });
  try {
    return await Promise.race([watch.next(index), abandoned]);
  } finally {
    call.off('cancelled', onCancelled);
  }
}

function turnResponse(
  context: ApiContext,
  command: AcquireCommand,
  acquireIndex: number,
  turn: Turn,
  call: AcquireCall,
): AcquireResponse {
  if (turn.kind === 'granted') {
    if (call.cancelled && turn.requestIndex === acquireIndex)
      giveBack(context, command, turn.token);
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
    holders: holders.map(wireHolder),
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
    holders: holders.map(wireHolder),
  };
}

// ------------------------------------------------------------------ giving up

/**
 * Withdraws the waiter of an abandoned Acquire. If the grant was applied before the
 * CancelWait (so the cancel is refused), the grant came from our own waiter and nobody
 * will learn its token: release it. The watch saw every entry up to the CancelWait.
 */
async function withdraw(
  context: ApiContext,
  command: AcquireCommand,
  acquireIndex: number,
  watch: TurnWatch,
): Promise<void> {
  const { lock, sessionId, requestId } = command;
  const cancelled = await writeWithRetry(context, {
    type: 'CancelWait',
    lock,
    sessionId,
    requestId,
  });
  if (!cancelled) return;
  const turn = watch.after(acquireIndex);
  if (turn?.kind === 'granted' && turn.requestIndex === acquireIndex) {
    await writeWithRetry(context, {
      type: 'Release',
      lock,
      sessionId,
      token: turn.token,
      requestId,
    });
  }
}

function giveBack(context: ApiContext, command: AcquireCommand, token: FencingToken): void {
  const { lock, sessionId, requestId } = command;
  void writeWithRetry(context, { type: 'Release', lock, sessionId, token, requestId });
}

/**
 * Cleanup writes retry with the same request id, which the state machine's dedupe makes
 * safe. They run after the call has ended, so failures can only be logged.
 */
async function writeWithRetry(context: ApiContext, command: LockCommand): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    try {
      await context.node.write(command);
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
      await (context.scheduler ?? REAL_SCHEDULER).sleep(50 * attempt);
    }
  }
}

/** A token is the index of the entry that made the grant. */
function sameIndex(token: FencingToken, index: number): boolean {
  return (token as number) === index;
}
