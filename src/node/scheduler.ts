import { TIMER_MS_MAX } from '../lock/limits.ts';

/** What a timer call returns; only the scheduler that made it knows what is inside. */
export type TimerHandle = object;

/**
 * Where the node runtime and the API get their timers. Injected beside the Clock so a
 * deterministic simulation can run the real runtime in virtual time; production uses
 * REAL_SCHEDULER, which is Node's own timers.
 */
export interface Scheduler {
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  setInterval(callback: () => void, intervalMs: number): TimerHandle;
  clearInterval(handle: TimerHandle): void;
  sleep(delayMs: number): Promise<void>;
  /**
   * Runs `callback` once the I/O that is ready now has been handled (setImmediate): work
   * gathered over one turn of the event loop goes out together.
   */
  soon(callback: () => void): void;
}

export const REAL_SCHEDULER: Scheduler = {
  setTimeout: (callback, delayMs) => setTimeout(callback, delayMs),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
  setInterval: (callback, intervalMs) => setInterval(callback, intervalMs),
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
  sleep: (delayMs) => new Promise((resolve) => setTimeout(resolve, delayMs)),
  soon: (callback) => {
    setImmediate(callback);
  },
};

/**
 * `scheduler.setTimeout` for a delay of any length. Node fires a timer asked to wait
 * more than TIMER_MS_MAX (about 24.8 days) after 1 ms instead, and a call's deadline
 * can lie further off (a Session call's timeout_ms covers an Acquire's wait_ms, which
 * the lock rules allow up to TIMER_MS_MAX, plus the time to answer). So a longer delay
 * is waited out as a chain of timers. Returns what cancels it.
 */
export function setLongTimeout(
  scheduler: Scheduler,
  callback: () => void,
  delayMs: number,
): () => void {
  let handle: TimerHandle;
  const wait = (leftMs: number): void => {
    const stepMs = Math.min(leftMs, TIMER_MS_MAX);
    handle = scheduler.setTimeout(
      () => (leftMs > stepMs ? wait(leftMs - stepMs) : callback()),
      stepMs,
    );
  };
  wait(delayMs);
  return () => scheduler.clearTimeout(handle);
}
