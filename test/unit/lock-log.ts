/**
 * A lock state machine fed consecutive log indexes, with shorthands for the usual
 * commands; shared by the lock unit tests.
 */
import { expect } from 'vitest';
import {
  type ApplyOutput,
  type LockCommand,
  type LockLimits,
  type LockMode,
  type LockResult,
  LockStateMachine,
} from '../../src/lock/index.ts';
import type { FencingToken, LogIndex, SessionId } from '../../src/util/ids.ts';

export const asIndex = (n: number) => n as LogIndex;
export const asSession = (n: number) => n as SessionId;
export const asToken = (n: number) => n as FencingToken;

export interface AcquireOptions {
  mode?: LockMode;
  waitMs?: number;
  requestId?: string;
  owner?: string;
  maxHoldMs?: number;
  lockDelayMs?: number;
}

/** A state machine fed consecutive log indexes, with shorthands for the usual commands. */
export class Log {
  readonly sm: LockStateMachine;
  index = 0;
  private requests = 0;

  constructor(limits: Partial<LockLimits> = {}) {
    this.sm = new LockStateMachine(limits);
  }

  applyFull(command: LockCommand): ApplyOutput {
    this.index += 1;
    return this.sm.apply(asIndex(this.index), command);
  }

  apply(command: LockCommand): LockResult {
    return this.applyFull(command).result;
  }

  nextRequestId(): string {
    this.requests += 1;
    return `q${this.requests}`;
  }

  open(ttlMs = 10_000, clientName = 'c'): SessionId {
    const result = this.apply({
      type: 'OpenSession',
      ttlMs,
      clientName,
      requestId: this.nextRequestId(),
    });
    if (result.type !== 'SessionOpened') throw new Error(`open failed: ${JSON.stringify(result)}`);
    return result.sessionId;
  }

  acquireCommand(sessionId: SessionId, lock: string, options: AcquireOptions = {}): LockCommand {
    return {
      type: 'Acquire',
      lock,
      sessionId,
      mode: options.mode ?? 'exclusive',
      waitMs: options.waitMs ?? 0,
      requestId: options.requestId ?? this.nextRequestId(),
      owner: options.owner ?? 'o',
      maxHoldMs: options.maxHoldMs ?? 0,
      lockDelayMs: options.lockDelayMs ?? 0,
    };
  }

  acquire(sessionId: SessionId, lock: string, options: AcquireOptions = {}): LockResult {
    return this.apply(this.acquireCommand(sessionId, lock, options));
  }

  release(sessionId: SessionId, lock: string, token: number, requestId?: string): LockResult {
    return this.apply({
      type: 'Release',
      lock,
      sessionId,
      token: asToken(token),
      requestId: requestId ?? this.nextRequestId(),
    });
  }

  holders(lock: string): [number, LockMode, number][] {
    return this.sm
      .describe(lock)
      .holders.map((holder) => [holder.sessionId, holder.mode, holder.token]);
  }

  waiters(lock: string): number[] {
    return this.sm.describe(lock).waiters.map((waiter) => waiter.sessionId);
  }
}

export function tokenOf(result: LockResult): number {
  if (result.type !== 'Acquired') throw new Error(`not acquired: ${JSON.stringify(result)}`);
  return result.token;
}

export function expectRejected(result: LockResult, code: string, ...detailParts: string[]): void {
  expect(result.type).toBe('Rejected');
  if (result.type !== 'Rejected') return;
  expect(result.code).toBe(code);
  for (const part of detailParts) expect(result.detail).toContain(part);
}
