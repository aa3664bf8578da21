import { randomBytes } from 'node:crypto';
import type { TraceContext } from '../trace.ts';

/**
 * OpenTelemetry export of dlm's spans, with the official SDK and OTLP/HTTP exporter,
 * when `tracing.otlpEndpoint` is set. Loaded with import() only then: a node without it
 * never loads the SDK, and its hooks are not even registered (no cost when off).
 *
 * The spans keep the ids dlm already carries in W3C `traceparent` (src/node/trace.ts),
 * so the logs and the exported spans name the same spans:
 *   - `dlm.v1.Lock/<Method>` (server) on the node that served a call: the caller's span
 *     is its parent;
 *   - `dlm.write` (internal), its child: from the write reaching this node to it being
 *     applied here (forward to the leader, proposal, commit, apply);
 *   - `dlm.forward` (server) on the leader, also a child of the call's span: the leader
 *     taking a write a follower forwarded, and proposing it.
 * Spans are made when their work ends, with their real start time.
 */
export interface SpanExport {
  callEnded(method: string, trace: TraceContext, startedMs: number, grpcCode: number): void;
  writeEnded(trace: TraceContext, seconds: number, outcome: string): void;
  forwardTaken(trace: TraceContext, from: string, outcome: string): void;
  /** Sends what is buffered, then stops. */
  shutdown(): Promise<void>;
}

/** The SDK picks ids through this: set just before a span starts, the span gets dlm's own. */
class ChosenIds {
  traceId: string | null = null;
  spanId: string | null = null;

  generateTraceId(): string {
    const id = this.traceId ?? randomBytes(16).toString('hex');
    this.traceId = null;
    return id;
  }

  generateSpanId(): string {
    const id = this.spanId ?? randomBytes(8).toString('hex');
    this.spanId = null;
    return id;
  }
}

export async function startSpanExport(endpoint: string, nodeId: string): Promise<SpanExport> {
  const api = await import('@opentelemetry/api');
  const { BasicTracerProvider, BatchSpanProcessor } = await import('@opentelemetry/sdk-trace-base');
  const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http');
  const { resourceFromAttributes } = await import('@opentelemetry/resources');
  const ids = new ChosenIds();
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'dlm', 'service.instance.id': nodeId }),
    idGenerator: ids,
    spanProcessors: [
      new BatchSpanProcessor(new OTLPTraceExporter({ url: endpoint }), {
        // Bounded: past it spans are dropped, never queued without end.
        maxQueueSize: 4_096,
        scheduledDelayMillis: 1_000,
      }),
    ],
  });
  const tracer = provider.getTracer('dlm');
  const epochMs = (performanceMs: number): number => performance.timeOrigin + performanceMs;

  /** A finished span: `spanId` null gets a fresh id; the parent is `parentSpanId` of `trace`. */
  const record = (
    name: string,
    kind: number,
    trace: TraceContext,
    parentSpanId: string | null,
    spanId: string | null,
    startMs: number,
    endMs: number,
    attributes: Record<string, string | number>,
    failed: boolean,
  ): void => {
    const parent =
      parentSpanId === null
        ? api.ROOT_CONTEXT
        : api.trace.setSpanContext(api.ROOT_CONTEXT, {
            traceId: trace.traceId,
            spanId: parentSpanId,
            traceFlags: trace.sampled ? api.TraceFlags.SAMPLED : api.TraceFlags.NONE,
            isRemote: true,
          });
    ids.traceId = trace.traceId;
    ids.spanId = spanId;
    const span = tracer.startSpan(
      name,
      { kind, startTime: epochMs(startMs), attributes: { 'dlm.node': nodeId, ...attributes } },
      parent,
    );
    if (failed) span.setStatus({ code: api.SpanStatusCode.ERROR });
    span.end(epochMs(endMs));
  };

  return {
    callEnded(method, trace, startedMs, grpcCode) {
      record(
        `dlm.v1.Lock/${method}`,
        api.SpanKind.SERVER,
        trace,
        trace.parentSpanId,
        trace.spanId,
        startedMs,
        performance.now(),
        { 'rpc.system': 'grpc', 'rpc.method': method, 'rpc.grpc.status_code': grpcCode },
        grpcCode !== 0,
      );
    },
    writeEnded(trace, seconds, outcome) {
      const endMs = performance.now();
      record(
        'dlm.write',
        api.SpanKind.INTERNAL,
        trace,
        trace.spanId,
        null,
        endMs - seconds * 1000,
        endMs,
        { 'dlm.write.outcome': outcome },
        outcome !== 'applied',
      );
    },
    forwardTaken(trace, from, outcome) {
      const atMs = performance.now();
      record(
        'dlm.forward',
        api.SpanKind.SERVER,
        trace,
        trace.parentSpanId,
        trace.spanId,
        atMs,
        atMs,
        { 'dlm.forward.from': from, 'dlm.forward.outcome': outcome },
        outcome !== 'proposed',
      );
    },
    shutdown: () => provider.shutdown(),
  };
}
