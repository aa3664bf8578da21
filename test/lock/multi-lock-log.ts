/**
 * A lock state machine at BEHAVIOUR_MULTI_LOCK fed consecutive indexes, with shorthands
 * for the commands of issue 17; shared by the multi-lock tests.
 */
import {
  BEHAVIOUR_MULTI_LOCK,
  type LockClaim,
  type LockCommand,
  type LockLimits,
  type LockMode,
  type LockResult,
  LockStateMachine,
  type LockStateMachineOptions,
} from '../../src/lock/index.ts';
import type { FencingToken, LogIndex, SessionId } from '../../src/util/ids.ts';

export interface SetOptions {
  waitMs?: number;
  requestId?: string;
  maxHoldMs?: number;
  lockDelayMs?: number;
}

export class SetLog {
  readonly sm: LockStateMachine;
  index = 0;
  private requests = 0;

  constructor(
    limits: Partial<LockLimits> = {},
    options: LockStateMachineOptions & { raise?: boolean } = {},
  ) {
    this.sm = new LockStateMachine(limits, options);
    if (options.raise !== false)
      this.apply({ type: 'SetBehaviour', version: BEHAVIOUR_MULTI_LOCK });
  }

  apply(command: LockCommand): LockResult {
    this.index += 1;
    const { result } = this.sm.apply(this.index as LogIndex, command);
    this.sm.checkInvariants();
    return result;
  }

  open(): SessionId {
    const result = this.apply({
      type: 'OpenSession',
      ttlMs: 10_000,
      clientName: 'c',
      requestId: this.nextRequestId(),
    });
    if (result.type !== 'SessionOpened') throw new Error(JSON.stringify(result));
    return result.sessionId;
  }

  nextRequestId(): string {
    this.requests += 1;
    return `q${this.requests}`;
  }

  setCommand(
    sessionId: SessionId,
    claims: readonly (string | LockClaim)[],
    options: SetOptions = {},
  ): LockCommand {
    return {
      type: 'AcquireAll',
      locks: claims.map((claim) =>
        typeof claim === 'string' ? { lock: claim, mode: 'exclusive' as LockMode } : claim,
      ),
      sessionId,
      waitMs: options.waitMs ?? 1_000,
      requestId: options.requestId ?? this.nextRequestId(),
      owner: 'o',
      maxHoldMs: options.maxHoldMs ?? 0,
      lockDelayMs: options.lockDelayMs ?? 0,
    };
  }

  acquireAll(
    sessionId: SessionId,
    claims: readonly (string | LockClaim)[],
    options: SetOptions = {},
  ): LockResult {
    return this.apply(this.setCommand(sessionId, claims, options));
  }

  acquire(
    sessionId: SessionId,
    lock: string,
    mode: LockMode = 'exclusive',
    waitMs = 1_000,
  ): LockResult {
    return this.apply({
      type: 'Acquire',
      lock,
      sessionId,
      mode,
      waitMs,
      requestId: this.nextRequestId(),
      owner: 'o',
      maxHoldMs: 0,
      lockDelayMs: 0,
    });
  }

  release(sessionId: SessionId, lock: string, token: number): LockResult {
    return this.apply({
      type: 'Release',
      lock,
      sessionId,
      token: token as FencingToken,
      requestId: this.nextRequestId(),
    });
  }

  holderIds(lock: string): number[] {
    return this.sm.describe(lock).holders.map((holder) => holder.sessionId);
  }

  waiterIds(lock: string): number[] {
    return this.sm.describe(lock).waiters.map((waiter) => waiter.sessionId);
  }
}

export function tokenOfSet(result: LockResult): number {
  if (result.type !== 'AcquiredAll' && result.type !== 'Acquired') {
    throw new Error(`not acquired: ${JSON.stringify(result)}`);
  }
  return result.token;
}
