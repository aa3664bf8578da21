import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ConsoleActivity } from '../../src/node/console/activity.ts';
import { startMetricsServer } from '../../src/node/console/http.ts';
import { ConsoleServer } from '../../src/node/console/server.ts';
import { NodeMetrics } from '../../src/node/metrics.ts';
import { TestCluster, writeVia } from './cluster-harness.ts';

/** The console's HTTP side on a real node: read-only, bounded, same frame as the page gets. */
let cluster: TestCluster | null = null;
let server: Server | null = null;
let consoleServer: ConsoleServer | null = null;

afterEach(async () => {
  consoleServer?.close();
  await new Promise<void>((resolve) =>
    server === null ? resolve() : server.close(() => resolve()),
  );
  await cluster?.stopAll();
  cluster = null;
  server = null;
  consoleServer = null;
});

async function start(): Promise<string> {
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
  consoleServer = new ConsoleServer(leader, new ConsoleActivity(leader), '127.0.0.1:1', [], {
    streamsMax: 1,
    refreshMs: 100,
    rowsMax: 10,
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
});
