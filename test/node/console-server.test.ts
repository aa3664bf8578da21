import type { Server } from 'node:http';
import { type AddressInfo, connect, createServer, type Server as TcpServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ConsoleActivity } from '../../src/node/console/activity.ts';
import type { ConsoleMember } from '../../src/node/console/cluster.ts';
import { startMetricsServer } from '../../src/node/console/http.ts';
import { type ConsoleOptions, ConsoleServer } from '../../src/node/console/server.ts';
import { NodeMetrics } from '../../src/node/metrics.ts';
import { TestCluster, writeVia } from './cluster-harness.ts';

/** The console's HTTP side on a real node: read-only, bounded, same frame as the page gets. */
let cluster: TestCluster | null = null;
let server: Server | null = null;
let consoleServer: ConsoleServer | null = null;
/** A member that accepts connections and never answers. */
let silent: TcpServer | null = null;

afterEach(async () => {
  silent?.close();
  silent = null;
  consoleServer?.close();
  await new Promise<void>((resolve) =>
    server === null ? resolve() : server.close(() => resolve()),
  );
  await cluster?.stopAll();
  cluster = null;
  server = null;
  consoleServer = null;
});

async function start(
  options: Partial<ConsoleOptions> = {},
  members: readonly ConsoleMember[] = [],
): Promise<string> {
  cluster = new TestCluster();
  const c = cluster;
  const leader = await c.leader();
  const session = await writeVia(() => c.leader(), {
    type: 'OpenSession',
    ttlMs: 5_000,
    clientName: 'console-unit',
    requestId: 'c1',
  });
  expect(session.type).toBe('SessionOpened');
  consoleServer = new ConsoleServer(leader, new ConsoleActivity(leader), '127.0.0.1:1', members, {
    streamsMax: 1,
    refreshMs: 100,
    rowsMax: 10,
    ...options,
  });
  server = await startMetricsServer('127.0.0.1:0', new NodeMetrics(leader), consoleServer);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('console HTTP', () => {
  it('serves the page under a same-origin policy, the frame as JSON, and refuses writes', async () => {
    const base = await start();
    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(await page.text()).toContain('/console.js');
    expect((await fetch(`${base}/console.js`)).headers.get('content-type')).toContain('javascript');
    const frame = (await (await fetch(`${base}/console/view.json`)).json()) as {
      servedBy: string;
      view: { sessions: { total: number; rows: { clientName: string }[] } };
      cluster: { members: { id: string; health: string }[] };
    };
    expect(frame.view.sessions.total).toBe(1);
    expect(frame.view.sessions.rows[0]?.clientName).toBe('console-unit');
    expect(frame.cluster.members.map((member) => [member.id, member.health])).toEqual([
      [frame.servedBy, 'ok'],
    ]);
    for (const method of ['POST', 'PUT', 'DELETE']) {
      expect((await fetch(`${base}/`, { method })).status).toBe(405);
      expect((await fetch(`${base}/console/view.json`, { method })).status).toBe(405);
    }
    expect((await fetch(`${base}/console/nothing`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`)).status).toBe(200);
  });

  it('streams frames over Server-Sent Events, at most consoleStreamsMax at once', async () => {
    const base = await start();
    const controller = new AbortController();
    const first = await fetch(`${base}/console/events`, { signal: controller.signal });
    expect(first.headers.get('content-type')).toBe('text/event-stream');
    const reader = first.body?.getReader();
    let text = '';
    while (!text.includes('data: ') && reader !== undefined) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString('utf8');
    }
    expect(text).toContain('"servedBy"');
    const second = await fetch(`${base}/console/events`);
    expect(second.status).toBe(503);
    expect(await second.text()).toContain('runtime.consoleStreamsMax');
    controller.abort();
  });

  it('answers 400 to a request target that is no URL path, and keeps serving', async () => {
    const base = await start();
    const port = Number(new URL(base).port);
    for (const target of ['//', '///', '/\\', '//:99999']) {
      const answer = await rawGet(port, target);
      expect(answer, `GET ${target}`).toMatch(/^HTTP\/1\.1 400/);
    }
    expect((await fetch(`${base}/metrics`)).status).toBe(200);
  });

  it('builds at most consoleViewsMax view.json answers at once, refusing the next with 503', async () => {
    silent = createServer(() => {});
    await new Promise<void>((resolve) => silent?.listen(0, '127.0.0.1', resolve));
    const member = {
      id: 'n9',
      metricsAddress: `127.0.0.1:${(silent.address() as AddressInfo).port}`,
    };
    // The member never answers: each view waits refreshMs * 2 for it.
    const base = await start({ viewsMax: 1, refreshMs: 1_000 }, [member]);
    const first = fetch(`${base}/console/view.json?prefix=a`);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const second = await fetch(`${base}/console/view.json?prefix=b`);
    expect(second.status).toBe(503);
    expect(await second.text()).toContain('runtime.consoleViewsMax');
    const answered = await first;
    expect(answered.status).toBe(200);
    const frame = (await answered.json()) as { cluster: { members: { health: string }[] } };
    expect(frame.cluster.members.map((m) => m.health)).toContain('unreachable');
    expect((await fetch(`${base}/console/view.json`)).status).toBe(200);
  });

  it('hides owners and client names when told (an auth section is configured)', async () => {
    const base = await start({ namesHidden: true });
    const text = await (await fetch(`${base}/console/view.json`)).text();
    const frame = JSON.parse(text) as {
      view: { namesHidden: boolean; sessions: { rows: { clientName: string }[] } };
    };
    expect(frame.view.namesHidden).toBe(true);
    expect(frame.view.sessions.rows).toHaveLength(1);
    expect(text).not.toContain('console-unit');
  });

  it('cuts a stream whose reader has not taken its frames for consoleStreamStallMs', async () => {
    const base = await start({ refreshMs: 50, streamStallMs: 300, rowsMax: 150 });
    const c = cluster as TestCluster;
    const opened = await writeVia(() => c.leader(), {
      type: 'OpenSession',
      ttlMs: 60_000,
      clientName: 'holder',
      requestId: 'stall-session',
    });
    if (opened.type !== 'SessionOpened') throw new Error(`OpenSession: ${opened.type}`);
    // Frames of ~150 KB (150 rows) that change each refresh fill the socket buffers in
    // about a second; at the default 10 rows that took some 15 s.
    for (let i = 0; i < 150; i++) {
      await writeVia(() => c.leader(), {
        type: 'Acquire',
        lock: `big/${i}`,
        sessionId: opened.sessionId,
        mode: 'exclusive',
        waitMs: 0,
        owner: 'o'.repeat(1_000),
        requestId: `stall-${i}`,
        maxHoldMs: 0,
        lockDelayMs: 0,
      });
    }
    const reader = connect(Number(new URL(base).port), '127.0.0.1');
    reader.write('GET /console/events?prefix=big/ HTTP/1.1\r\nHost: x\r\n\r\n');
    reader.pause();
    try {
      // streamsMax is 1: a second stream is admitted once the stalled one was cut.
      let status = 0;
      for (let attempt = 0; attempt < 100 && status !== 200; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        const controller = new AbortController();
        status = (await fetch(`${base}/console/events`, { signal: controller.signal })).status;
        controller.abort();
      }
      expect(status, 'the stalled stream was never cut').toBe(200);
    } finally {
      reader.destroy();
    }
  }, 40_000);
});

/** Sends one raw request line; what came back before the close. */
function rawGet(port: number, target: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.setTimeout(5_000, () => socket.destroy());
    socket.on('data', (chunk) => {
      answer += chunk.toString('utf8');
    });
    socket.on('error', () => resolve(answer));
    socket.on('close', () => resolve(answer));
    socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  });
}
