import * as grpc from '@grpc/grpc-js';

/**
 * A call's deadline on the monotonic clock.
 *
 * grpc-js turns the `grpc-timeout` header (a relative timeout) into a wall-clock
 * deadline, `Date.now() + timeout`, and drops the header, so a handler sees only
 * wall-clock time. Subtracting `Date.now()` in the handler reads the wall clock a second
 * time, possibly much later (the request message arrives after the headers), and a step
 * of the clock in between (NTP, an operator) would turn the budget into 0 ms or hours.
 *
 * This interceptor runs in the same synchronous turn in which grpc-js read the clock
 * (grpc-js hands interceptors the metadata as it starts the call), turns the deadline
 * into a time on `performance.now()` at once, and passes it to the handler in the call's
 * metadata. From then on only the monotonic clock is read.
 */
export const MONOTONIC_DEADLINE_KEY = 'dlm-monotonic-deadline-ms';

export const monotonicDeadlineInterceptor: grpc.ServerInterceptor = (_method, call) =>
  new grpc.ServerInterceptingCall(call, {
    start: (next) =>
      next({
        onReceiveMetadata: (metadata, nextMetadata) => {
          // Only this interceptor may set it: a client's value would fake the budget.
          metadata.remove(MONOTONIC_DEADLINE_KEY);
          const deadline = call.getDeadline();
          const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
          if (Number.isFinite(deadlineMs)) {
            const leftMs = Math.max(0, deadlineMs - Date.now());
            metadata.set(MONOTONIC_DEADLINE_KEY, String(performance.now() + leftMs));
          }
          nextMetadata(metadata);
        },
      }),
  });

/**
 * How long the call has left, on the monotonic clock; undefined when it has no
 * deadline (or came through a server without the interceptor).
 */
export function monotonicTimeLeftMs(
  metadata: grpc.Metadata,
  nowMs: number = performance.now(),
): number | undefined {
  const value = metadata.get(MONOTONIC_DEADLINE_KEY)[0];
  if (typeof value !== 'string') return undefined;
  const deadlineMs = Number(value);
  return Number.isFinite(deadlineMs) ? Math.max(0, deadlineMs - nowMs) : undefined;
}
