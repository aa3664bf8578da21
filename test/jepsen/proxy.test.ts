/**
 * The user-space link proxy (src/tools/jepsen/proxy.ts) against a loopback echo server:
 * each fault does what it says, bytes keep their order, and the counters add up.
 */
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkedFaults, LinkProxy } from '../../src/tools/jepsen/proxy.ts';

let echo: Server;
let echoPort = 0;
const proxies: LinkProxy[] = [];
const sockets: Socket[] = [];

beforeEach(async () => {
  echo = createServer((socket) => {
    // The proxy resets connections on purpose.
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', () => resolve()));
  const address = echo.address();
  echoPort = address !== null && typeof address === 'object' ? address.port : 0;
});

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const proxy of proxies.splice(0)) await proxy.close();
  await new Promise<void>((resolve) => echo.close(() => resolve()));
});

async function startProxy(seed = 1): Promise<LinkProxy> {
  const proxy = await LinkProxy.start({
    listen: '127.0.0.1:0',
    target: `127.0.0.1:${echoPort}`,
    seed,
  });
  proxies.push(proxy);
  return proxy;
}

interface Client {
  readonly socket: Socket;
  received(): Buffer;
  /** Resolves with the error code the connection ended with ('' for a clean close). */
  readonly closed: Promise<string>;
}

async function connectTo(proxy: LinkProxy): Promise<Client> {
  const [host, port] = proxy.address.split(':') as [string, string];
  const socket = tcpConnect({ host, port: Number(port) });
  sockets.push(socket);
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  let code = '';
  socket.on('error', (error: NodeJS.ErrnoException) => {
    code = error.code ?? error.message;
  });
  const closed = new Promise<string>((resolve) => socket.on('close', () => resolve(code)));
  // A connection the proxy refuses may be reset before it counts as connected.
  await Promise.race([new Promise((resolve) => socket.once('connect', resolve)), closed]);
  return { socket, received: () => Buffer.concat(chunks), closed };
}

/** Waits until `bytes` came back, or fails after `timeoutMs`; returns the elapsed ms. */
async function waitForBytes(client: Client, bytes: number, timeoutMs: number): Promise<number> {
  const startMs = performance.now();
  while (client.received().length < bytes) {
    if (performance.now() - startMs > timeoutMs) {
      throw new Error(`got ${client.received().length} of ${bytes} bytes in ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return performance.now() - startMs;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('LinkProxy', () => {
  it('passes bytes through both ways and counts them', async () => {
    const proxy = await startProxy();
    const client = await connectTo(proxy);
    client.socket.write('hello');
    await waitForBytes(client, 5, 2_000);
    expect(client.received().toString()).toBe('hello');
    const stats = proxy.stats();
    expect(stats).toMatchObject({ connectionsAccepted: 1, connectionsOpen: 1, bytesToTarget: 5 });
    expect(stats.bytesToSource).toBe(5);
  });

  it('delays each direction, with jitter, and never reorders bytes', async () => {
    const proxy = await startProxy(7);
    proxy.setFaults({ delayMs: 100, jitterMs: 60 });
    const client = await connectTo(proxy);
    const parts: string[] = [];
    for (let i = 0; i < 200; i++) parts.push(`<${i}>`);
    const startMs = performance.now();
    for (const part of parts) {
      client.socket.write(part);
      await sleep(1);
    }
    const expected = parts.join('');
    await waitForBytes(client, expected.length, 5_000);
    // Out and back: at least twice the smallest delay (100 - 60 ms).
    expect(performance.now() - startMs).toBeGreaterThanOrEqual(80);
    expect(client.received().toString()).toBe(expected);
    // No fault: a round trip is fast again.
    proxy.setFaults({});
    const before = client.received().length;
    client.socket.write('x');
    expect(await waitForBytes(client, before + 1, 2_000)).toBeLessThan(60);
  });

  it('a slow link delivers at about its rate', async () => {
    const proxy = await startProxy();
    proxy.setFaults({ bytesPerSecond: 64 * 1024 });
    const client = await connectTo(proxy);
    const payload = Buffer.alloc(32 * 1024, 7);
    client.socket.write(payload);
    // 32 KiB at 64 KiB/s takes 0.5 s; the echo streams back while it arrives.
    const elapsedMs = await waitForBytes(client, payload.length, 5_000);
    expect(elapsedMs).toBeGreaterThanOrEqual(450);
    expect(client.received().equals(payload)).toBe(true);
  });

  it('a blackhole forwards nothing, and the connections it touched are reset when it lifts', async () => {
    const proxy = await startProxy();
    const client = await connectTo(proxy);
    proxy.setFaults({ blackhole: true });
    client.socket.write('lost');
    const late = await connectTo(proxy);
    late.socket.write('also lost');
    await sleep(300);
    expect(client.received().length).toBe(0);
    expect(late.received().length).toBe(0);
    expect(proxy.stats().bytesDiscarded).toBe('lost'.length + 'also lost'.length);
    proxy.setFaults({});
    expect(await client.closed).toBe('ECONNRESET');
    expect(await late.closed).toBe('ECONNRESET');
    const fresh = await connectTo(proxy);
    fresh.socket.write('back');
    await waitForBytes(fresh, 4, 2_000);
    expect(proxy.stats().connectionsReset).toBe(2);
  });

  it('drops whole connections with the given probability', async () => {
    const proxy = await startProxy(3);
    const open = await connectTo(proxy);
    proxy.setFaults({ dropProbability: 1 });
    const refused = await connectTo(proxy);
    expect(await refused.closed).toBe('ECONNRESET');
    // Open connections are reset within one check interval.
    expect(await open.closed).toBe('ECONNRESET');
    proxy.setFaults({ dropProbability: 0 });
    const client = await connectTo(proxy);
    client.socket.write('ok');
    await waitForBytes(client, 2, 2_000);
  });

  it('refuses faults that make no sense, naming them', () => {
    expect(() => checkedFaults({ delayMs: -1 })).toThrow('delayMs must be a finite number >= 0');
    expect(() => checkedFaults({ dropProbability: 2 })).toThrow(
      'dropProbability must be within [0, 1]',
    );
    expect(() => checkedFaults({ bytesPerSecond: 0 })).toThrow(
      'bytesPerSecond must be a finite number > 0',
    );
    expect(() => checkedFaults({ delay: 5 } as never)).toThrow('unknown fault "delay"');
  });
});
