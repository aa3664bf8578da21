/**
 * A lock state machine at BEHAVIOUR_SEMAPHORES_ELECTIONS fed consecutive indexes, with
 * shorthands for AcquirePermits, Campaign and Proclaim; shared by the kinds tests.
 */
import {
  BEHAVIOUR_SEMAPHORES_ELECTIONS,
  type LockCommand,
  type LockLimits,
  type LockResult,
  type LockStateMachineOptions,
} from '../../src/lock/index.ts';
import type { FencingToken, LogIndex, SessionId } from '../../src/util/ids.ts';
import { SetLog } from './multi-lock-log.ts';

export interface KindOptions {
  waitMs?: number;
  requestId?: string;
  maxHoldMs?: number;
  lockDelayMs?: number;
}

export class KindLog extends SetLog {
  constructor(limits: Partial<LockLimits> = {}, options: LockStateMachineOptions = {}) {
    super(limits, options);
    this.apply({ type: 'SetBehaviour', version: BEHAVIOUR_SEMAPHORES_ELECTIONS });
  }

  permitsCommand(
    sessionId: SessionId,
    lock: string,
    permits: number,
    limit: number,
    options: KindOptions = {},
  ): LockCommand {
    return {
      type: 'AcquirePermits',
      lock,
      permits,
      limit,
      sessionId,
      waitMs: options.waitMs ?? 1_000,
      requestId: options.requestId ?? this.nextRequestId(),
      owner: 'o',
      maxHoldMs: options.maxHoldMs ?? 0,
      lockDelayMs: options.lockDelayMs ?? 0,
    };
  }

  permits(
    sessionId: SessionId,
    lock: string,
    permits: number,
    limit: number,
    options: KindOptions = {},
  ): LockResult {
    return this.apply(this.permitsCommand(sessionId, lock, permits, limit, options));
  }

  campaignCommand(
    sessionId: SessionId,
    lock: string,
    value: string,
    options: KindOptions = {},
  ): LockCommand {
    return {
      type: 'Campaign',
      lock,
      value,
      sessionId,
      waitMs: options.waitMs ?? 1_000,
      requestId: options.requestId ?? this.nextRequestId(),
      owner: 'o',
      maxHoldMs: options.maxHoldMs ?? 0,
      lockDelayMs: options.lockDelayMs ?? 0,
    };
  }

  campaign(
    sessionId: SessionId,
    lock: string,
    value: string,
    options: KindOptions = {},
  ): LockResult {
    return this.apply(this.campaignCommand(sessionId, lock, value, options));
  }

  proclaim(
    sessionId: SessionId,
    lock: string,
    token: number,
    value: string,
    requestId = this.nextRequestId(),
  ): LockResult {
    return this.apply({
      type: 'Proclaim',
      lock,
      sessionId,
      token: token as FencingToken,
      value,
      requestId,
    });
  }

  /** Applies Promote entries while `lock` owes one, as the leader's timers would. */
  settle(lock: string): void {
    while (this.sm.promotionPending(lock)) {
      this.apply({ type: 'Promote', lock, afterIndex: this.index as LogIndex });
    }
  }

  permitsOf(lock: string): (number | undefined)[] {
    return this.sm.describe(lock).holders.map((holder) => holder.permits);
  }
}

export function tokenOf(result: LockResult): number {
  if (result.type !== 'Acquired') throw new Error(`not acquired: ${JSON.stringify(result)}`);
  return result.token;
}

export function rejection(result: LockResult): Extract<LockResult, { type: 'Rejected' }> {
  if (result.type !== 'Rejected') throw new Error(`not rejected: ${JSON.stringify(result)}`);
  return result;
}
