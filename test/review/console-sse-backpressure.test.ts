import type { Server, ServerResponse } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ConsoleActivity } from '../../src/node/console/activity.ts';
import { startMetricsServer } from '../../src/node/console/http.ts';
import { ConsoleServer } from '../../src/node/console/server.ts';
import { NodeMetrics } from '../../src/node/metrics.ts';
import { TestCluster, writeVia } from '../node/cluster-harness.ts';

/**
 * Review of the console merge: ConsoleServer.send() writes every changed frame to each
 * Server-Sent Events stream with response.write() and never looks at its return value or
 * waits for 'drain'. A frame always changes (holders' "held" durations are in ms), so a
 * watcher that does not read (a stalled browser tab, a slow link, a client that opens
 * the stream and stops reading) makes the node buffer one whole frame per refreshMs, for
 * as long as the connection stays open: consoleStreamsMax bounds the streams, not what
 * each one queues. On a leader with many locks (a frame is ~1 KiB per holder with
 * default owners, times consoleRowsMax rows and 20 waiters each) that grows by MBs a
 * second until the process runs out of memory.
 */
const LOCKS = 150;
const OWNER = 'o'.repeat(1_000);
const WATCH_MS = 6_000;

let cluster: TestCluster | null = null;
let server: Server | null = null;
let consoleServer: ConsoleServer | null = null;
let socket: Socket | null = null;

afterEach(async () => {
  socket?.destroy();
  consoleServer?.close();
  await new Promise<void>((resolve) =>
    server === null ? resolve() : server.close(() => resolve()),
  );
  server?.closeAllConnections();
  await cluster?.stopAll();
  cluster = null;
  server = null;
  consoleServer = null;
  socket = null;
});

describe('review: console SSE stream to a watcher that does not read', () => {
  it('keeps what it queues for one stream bounded (a few frames), not one frame per refresh', async () => {
    cluster = new TestCluster();
    const c = cluster;
    const leader = await c.leader();
    const opened = await writeVia(() => c.leader(), {
      type: 'OpenSession',
      ttlMs: 60_000,
      clientName: 'holder',
      requestId: 'review-sse-session',
    });
    if (opened.type !== 'SessionOpened') throw new Error(`OpenSession: ${opened.type}`);
    for (let i = 0; i < LOCKS; i++) {
      const acquired = await writeVia(() => c.leader(), {
        type: 'Acquire',
        lock: `orders/${String(i).padStart(4, '0')}`,
        sessionId: opened.sessionId,
        mode: 'exclusive',
        waitMs: 0,
        owner: OWNER,
        requestId: `review-sse-${i}`,
        maxHoldMs: 0,
        lockDelayMs: 0,
      });
      expect(acquired.type).toBe('Acquired');
    }
    consoleServer = new ConsoleServer(leader, new ConsoleActivity(leader), '127.0.0.1:1', [], {
      streamsMax: 4,
      refreshMs: 50,
      rowsMax: 200,
    });
    server = await startMetricsServer('127.0.0.1:0', new NodeMetrics(leader), consoleServer);
    const port = (server.address() as AddressInfo).port;
    const frameBytes = (await (await fetch(`http://127.0.0.1:${port}/console/view.json`)).text())
      .length;
    expect(frameBytes).toBeGreaterThan(LOCKS * OWNER.length);

    let stream: ServerResponse | null = null;
    server.prependListener('request', (request, response) => {
      if (request.url?.startsWith('/console/events')) stream = response;
    });
    // A watcher that sends its request and then never reads a byte.
    socket = connect(port, '127.0.0.1');
    socket.write('GET /console/events HTTP/1.1\r\nHost: x\r\n\r\n');
    socket.pause();

    await new Promise((resolve) => setTimeout(resolve, WATCH_MS));
    const queued = (stream as ServerResponse | null)?.writableLength ?? 0;
    const bound = 4 * frameBytes;
    expect(
      queued,
      `queued ${queued} bytes for one stream after ${WATCH_MS} ms (frame ${frameBytes} bytes, refresh 50 ms)`,
    ).toBeLessThanOrEqual(bound);
  });
});
