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
