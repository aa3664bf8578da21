import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../support/free-port.ts';
import { newRequestId, ProcessCluster } from '../support/process-cluster.ts';

/**
 * With `tracing.otlpEndpoint` set, real `dlm serve` processes export their spans over
 * OTLP/HTTP (the official @opentelemetry SDK and exporter) to a receiver in this test:
 * one Acquire made through a follower arrives as the follower's call span (child of the
 * client's span from `traceparent`), its write span, and the leader's span of the
 * forwarded write, linked parent to child.
 */
interface ReceivedSpan {
  readonly node: string;
  readonly name: string;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly startNs: bigint;
  readonly endNs: bigint;
}

interface OtlpJson {
  resourceSpans?: {
    resource?: { attributes?: { key: string; value: { stringValue?: string } }[] };
    scopeSpans?: {
      spans?: {
        name: string;
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        startTimeUnixNano: string | number;
        endTimeUnixNano: string | number;
      }[];
    }[];
  }[];
}

/** An OTLP/HTTP traces receiver (JSON, as the SDK's http exporter sends it). */
class Receiver {
  readonly spans: ReceivedSpan[] = [];
  readonly contentTypes = new Set<string>();
  private server: Server | null = null;

  async start(port: number): Promise<void> {
    this.server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        this.contentTypes.add(String(request.headers['content-type']));
        if (request.url === '/v1/traces')
          this.take(JSON.parse(Buffer.concat(chunks).toString('utf8')) as OtlpJson);
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    const server = this.server;
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  }

  private take(body: OtlpJson): void {
    for (const resource of body.resourceSpans ?? []) {
      const node =
        resource.resource?.attributes?.find((attribute) => attribute.key === 'service.instance.id')
          ?.value.stringValue ?? '?';
      for (const scope of resource.scopeSpans ?? []) {
        for (const span of scope.spans ?? []) {
          this.spans.push({
            node,
            name: span.name,
            traceId: span.traceId,
            spanId: span.spanId,
            parentSpanId: span.parentSpanId ?? '',
            startNs: BigInt(span.startTimeUnixNano),
            endNs: BigInt(span.endTimeUnixNano),
          });
        }
      }
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) =>
      this.server === null ? resolve() : this.server.close(() => resolve()),
    );
  }
}

let cluster: ProcessCluster | null = null;
let receiver: Receiver | null = null;

afterEach(async () => {
  await cluster?.stopAll();
  cluster?.remove();
  cluster = null;
  await receiver?.close();
  receiver = null;
});

describe('OpenTelemetry export', () => {
  it('sends the spans of an Acquire made through a follower, parent and child linked', async () => {
    receiver = new Receiver();
    const port = await freePort();
    await receiver.start(port);
    cluster = await ProcessCluster.create(3, {
      tracing: { otlpEndpoint: `http://127.0.0.1:${port}/v1/traces` },
    });
    const c = cluster;
    c.startAll();
    const leader = await c.waitForLeader(30_000);
    const follower = c.nodes.find((node) => node.id !== leader)?.id ?? '';
    const session = await c.callNode(follower, 'OpenSession', {
      ttl_ms: '60000',
      client_name: 'traced',
      request_id: newRequestId(),
    });
    const traceId = randomBytes(16).toString('hex');
    const clientSpanId = randomBytes(8).toString('hex');
    const metadata = new grpc.Metadata();
    metadata.set('traceparent', `00-${traceId}-${clientSpanId}-01`);
    const acquired = await c.call(
      follower,
      'Acquire',
      {
        lock: 'traced/1',
        session_id: String(session.session_id),
        wait_ms: '0',
        request_id: newRequestId(),
        owner: 't',
      },
      10_000,
      'Lock',
      metadata,
    );
    expect(acquired.acquired).toBe(true);

    const ofTrace = () => receiver?.spans.filter((span) => span.traceId === traceId) ?? [];
    const deadline = Date.now() + 20_000;
    while (ofTrace().length < 3 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const spans = ofTrace();
    const call = spans.find((span) => span.name === 'dlm.v1.Lock/Acquire');
    expect(
      call,
      `spans received: ${JSON.stringify(spans.map((s) => [s.node, s.name]))}`,
    ).toBeDefined();
    if (call === undefined) return;
    // The follower's span of the call continues the client's trace.
    expect(call.node).toBe(follower);
    expect(call.parentSpanId).toBe(clientSpanId);
    const write = spans.find((span) => span.name === 'dlm.write');
    expect(write?.node).toBe(follower);
    expect(write?.parentSpanId).toBe(call.spanId);
    // The leader's span of the forwarded write is a child of the follower's call span.
    const forward = spans.find((span) => span.name === 'dlm.forward');
    expect(forward?.node).toBe(leader);
    expect(forward?.parentSpanId).toBe(call.spanId);
    // Children lie within their parent.
    if (write === undefined) return;
    expect(write.startNs).toBeGreaterThanOrEqual(call.startNs);
    expect(write.endNs).toBeLessThanOrEqual(call.endNs);
    expect(new Set(spans.map((span) => span.spanId)).size).toBe(spans.length);
  });
});
