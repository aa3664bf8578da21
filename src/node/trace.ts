import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';

/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/), carried through a request:
 * the client's `traceparent` gRPC metadata (or a new trace when it sends none), one
 * span per call on the node that serves it, and a child span on the leader when a
 * follower forwards a write. Spans are written as log lines (traceId, spanId,
 * parentSpanId), so one trace id finds a request's lines on every node it touched.
 */
export interface TraceContext {
  /** 32 lower-case hex digits, not all zero. */
  readonly traceId: string;
  /** 16 lower-case hex digits: this span. */
  readonly spanId: string;
  /** The caller's span, when the request came with one. */
  readonly parentSpanId: string | null;
  readonly sampled: boolean;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** A child span of `traceparent` (version 00 or later), or of a new trace when it is absent or malformed. */
export function continueTrace(traceparent: string | null | undefined): TraceContext {
  const match =
    traceparent === null || traceparent === undefined ? null : TRACEPARENT.exec(traceparent);
  const [, version, traceId, parentSpanId, flags] = match ?? [];
  const valid =
    version !== undefined &&
    version !== 'ff' &&
    traceId !== undefined &&
    !/^0+$/.test(traceId) &&
    parentSpanId !== undefined &&
    !/^0+$/.test(parentSpanId);
  if (!valid) return { traceId: hex(16), spanId: hex(8), parentSpanId: null, sampled: true };
  return {
    traceId,
    spanId: hex(8),
    parentSpanId,
    sampled: (Number.parseInt(flags ?? '00', 16) & 1) === 1,
  };
}

export function traceparentOf(trace: TraceContext): string {
  return `00-${trace.traceId}-${trace.spanId}-${trace.sampled ? '01' : '00'}`;
}

/** The trace of the call being served, for code below the API (forwarding). */
const current = new AsyncLocalStorage<TraceContext>();

export function withTrace<T>(trace: TraceContext, fn: () => T): T {
  return current.run(trace, fn);
}

export function currentTrace(): TraceContext | undefined {
  return current.getStore();
}

function hex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}
