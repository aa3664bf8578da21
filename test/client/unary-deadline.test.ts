import { type ServiceError, status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { GRPC_TIMEOUT_MS_MAX, unaryDeadline } from '../../src/client/connection.ts';

/**
 * How a unary call's deadline reaches grpc-js. One a grpc-js server reads right is sent;
 * one further off (an Acquire waiting near the rules' ceiling) would be read as already
 * passed, so it is kept on this side. (A real call at each side of the bound:
 * test/api/long-wait-deadline.test.ts.)
 */
afterEach(() => {
  vi.useRealTimers();
});

describe('a unary call deadline', () => {
  it('a grpc-js server reads right is sent with the call', () => {
    const cancel = vi.fn();
    const deadline = unaryDeadline(GRPC_TIMEOUT_MS_MAX, cancel);
    const sentMs = (deadline.options.deadline as Date).getTime();
    expect(sentMs - Date.now()).toBeGreaterThan(GRPC_TIMEOUT_MS_MAX - 1_000);
    expect(sentMs - Date.now()).toBeLessThanOrEqual(GRPC_TIMEOUT_MS_MAX);
  });

  it('further off is not sent: the call is cancelled here when it passes, failing DEADLINE_EXCEEDED', () => {
    vi.useFakeTimers();
    const cancel = vi.fn();
    const remainingMs = GRPC_TIMEOUT_MS_MAX + 10_000;
    const deadline = unaryDeadline(remainingMs, cancel);
    // What grpc-js fails a call with that this side cancelled.
    const cancelled = { code: status.CANCELLED, details: 'Cancelled on client' } as ServiceError;
    expect(deadline.options).toEqual({});
    vi.advanceTimersByTime(remainingMs - 1);
    expect(cancel).not.toHaveBeenCalled();
    expect(deadline.failure(cancelled)).toBe(cancelled);
    vi.advanceTimersByTime(1);
    expect(cancel).toHaveBeenCalledOnce();
    expect(deadline.failure(cancelled).code).toBe(status.DEADLINE_EXCEEDED);
    expect(deadline.failure(cancelled).details).toBe(`deadline of ${remainingMs} ms exceeded`);
  });

  it('kept here stops when the call ends first', () => {
    vi.useFakeTimers();
    const cancel = vi.fn();
    const deadline = unaryDeadline(GRPC_TIMEOUT_MS_MAX + 10_000, cancel);
    deadline.stop();
    vi.advanceTimersByTime(2 * GRPC_TIMEOUT_MS_MAX);
    expect(cancel).not.toHaveBeenCalled();
  });
});
