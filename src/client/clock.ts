/**
 * The client's only clock. Deadlines and intervals are differences between two of its
 * readings, so it must be monotonic: a wall clock can be stepped (NTP, an operator,
 * a VM resumed), and a safe deadline read from one could then fire after the lease
 * has ended. Tests may inject their own.
 */
export interface MonotonicClock {
  /** Milliseconds since an arbitrary origin; never goes back. */
  nowMs(): number;
}

export const performanceClock: MonotonicClock = { nowMs: () => performance.now() };

/**
 * grpc-js takes a call's deadline as a wall-clock time and turns it back into a
 * relative timeout as the call starts, reading `new Date()` itself. Built from that same
 * clock just before the call, the pair cancels out, so a step of the wall clock can
 * move no deadline by more than the few microseconds in between.
 */
export function grpcDeadline(remainingMs: number): Date {
  // biome-ignore lint/complexity/useDateNow: the clock grpc-js reads, whatever mocks Date.now
  return new Date(new Date().getTime() + Math.max(0, remainingMs));
}

/** Node fires a timer asked to wait longer than this after 1 ms instead. */
const NODE_TIMER_MS_MAX = 2 ** 31 - 1;

/**
 * setTimeout for a delay of any length. A call's deadline can lie beyond what one Node
 * timer waits (about 24.8 days): its timeout plus an Acquire's waitMs, which the lock
 * rules allow up to that same bound. So a longer delay is a chain of timers. Returns what
 * cancels it. (The node has its own, on its injectable scheduler; the client imports
 * nothing of the server.)
 */
export function setLongTimeout(callback: () => void, delayMs: number): () => void {
  let timer: NodeJS.Timeout;
  const wait = (leftMs: number): void => {
    const stepMs = Math.min(leftMs, NODE_TIMER_MS_MAX);
    timer = setTimeout(() => (leftMs > stepMs ? wait(leftMs - stepMs) : callback()), stepMs);
  };
  wait(delayMs);
  return () => clearTimeout(timer);
}
