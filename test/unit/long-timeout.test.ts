import { afterEach, describe, expect, it, vi } from 'vitest';
import { setLongTimeout as clientSetLongTimeout } from '../../src/client/clock.ts';
import { TIMER_MS_MAX } from '../../src/lock/limits.ts';
import { REAL_SCHEDULER, setLongTimeout } from '../../src/node/scheduler.ts';

/**
 * A delay longer than one Node timer waits (TIMER_MS_MAX) is waited out in full, by the
 * node's timer (on its scheduler) and the client's. vitest's fake timers behave as
 * Node's do: a timer asked to wait longer fires after 1 ms.
 */
afterEach(() => {
  vi.useRealTimers();
});

const TIMERS = [
  [
    'node',
    (callback: () => void, delayMs: number) => setLongTimeout(REAL_SCHEDULER, callback, delayMs),
  ],
  ['client', clientSetLongTimeout],
] as const;

describe('a bare Node timer', () => {
  it('fires after 1 ms when asked to wait past TIMER_MS_MAX (why the long timers exist)', () => {
    vi.useFakeTimers();
    const fired = vi.fn();
    setTimeout(fired, TIMER_MS_MAX + 1);
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledOnce();
  });
});

describe.each(TIMERS)('the %s long timer', (_name, setLong) => {
  it('waits out a delay of several Node timers, to the millisecond', () => {
    vi.useFakeTimers();
    const fired = vi.fn();
    const delayMs = 2 * TIMER_MS_MAX + 5;
    setLong(fired, delayMs);
    vi.advanceTimersByTime(delayMs - 1);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledOnce();
  });

  it('waits out a short delay as one timer', () => {
    vi.useFakeTimers();
    const fired = vi.fn();
    setLong(fired, 10);
    vi.advanceTimersByTime(9);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledOnce();
  });

  it('is cancelled in any link of its chain', () => {
    vi.useFakeTimers();
    const fired = vi.fn();
    const stop = setLong(fired, 3 * TIMER_MS_MAX);
    vi.advanceTimersByTime(TIMER_MS_MAX + 1);
    stop();
    vi.advanceTimersByTime(3 * TIMER_MS_MAX);
    expect(fired).not.toHaveBeenCalled();
  });
});
