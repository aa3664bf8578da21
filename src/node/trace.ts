import { randomFillSync } from 'node:crypto';

/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/), carried through a request:
 * the client's `traceparent` gRPC metadata (or a new trace when it sends none), one
 * span per call on the node that serves it, and a child span on the leader when a
 * follower forwards a write. Spans are written as log lines (traceId, spanId,
 * parentSpanId), so one trace id finds a request's lines on every node it touched.
 *
 * The API hands a call's trace down explicitly (CallScope.trace, then DlmNode.write),
 * not through an AsyncLocalStorage: once one is in use, Node 20 runs hooks on every
 * promise and native callback of the process, grpc-js's and LevelDB's included (3 % of
 * a loaded leader's sampled CPU in async_hooks frames alone), for the one place that
 * reads the trace (forwarding a write).
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

/**
 * Ids come from a pool of random bytes, refilled from the CSPRNG in one call: two
 * `randomBytes` calls per request made continueTrace cost about 7 us, the pool 0.4 us.
 */
const RANDOM_POOL_BYTES = 4_096;
const randomPool = Buffer.alloc(RANDOM_POOL_BYTES);
let randomPoolOffset = RANDOM_POOL_BYTES;

/** `bytes` fresh random bytes as lower-case hex; every byte of the pool is used once. */
function hex(bytes: number): string {
  if (randomPoolOffset + bytes > RANDOM_POOL_BYTES) {
    randomFillSync(randomPool);
    randomPoolOffset = 0;
  }
  const text = randomPool.toString('hex', randomPoolOffset, randomPoolOffset + bytes);
  randomPoolOffset += bytes;
  return text;
}
