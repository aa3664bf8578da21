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
}

export const REAL_SCHEDULER: Scheduler = {
  setTimeout: (callback, delayMs) => setTimeout(callback, delayMs),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
  setInterval: (callback, intervalMs) => setInterval(callback, intervalMs),
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
  sleep: (delayMs) => new Promise((resolve) => setTimeout(resolve, delayMs)),
};
