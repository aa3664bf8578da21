import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { Packr } from 'msgpackr';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { serverCredentials } from '../../src/cli/target.ts';
import type { TlsMaterial } from '../../src/config/index.ts';
import type { PeerMessage } from '../../src/node/peer-message.ts';
import type { Transport } from '../../src/node/transport.ts';
import {
  CertificateStore,
  reloadableChannelCredentials,
} from '../../src/transport/certificate-store.ts';
import { encodeFrame, FrameType } from '../../src/transport/frame.ts';
import { GrpcTransport } from '../../src/transport/grpc.ts';
import { checkServerNode } from '../../src/transport/peer-identity.ts';
import { TcpTransport } from '../../src/transport/tcp.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';
import { makeCerts, type TestCerts } from '../support/certs.ts';
import { freePort } from '../support/free-port.ts';

/**
 * The Transport contract, on both real implementations over loopback: order per peer,
 * a peer that is down or restarts, the bounded queue, mutual TLS. Then what only the
 * TCP transport parses itself: frames, hellos, sizes.
 */
const N1 = nodeId('n1');
const N2 = nodeId('n2');
const N3 = nodeId('n3');
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

type Kind = 'grpc' | 'tcp';
type Started = Transport & { readonly port: number };

interface Endpoint {
  readonly transport: Started;
  readonly received: string[];
  readonly rejected: [string, string][];
  readonly drops: string[];
  /** Refused authentications: [reason, detail]. */
  readonly authFailures: [string, string][];
}

interface StartOptions {
  readonly queueMessagesMax?: number;
  readonly reconnectDelayMsMin?: number;
  readonly reconnectDelayMsMax?: number;
  readonly frameBytesMax?: number;
  readonly inboundConnectionsMax?: number;
  readonly tls?: TlsMaterial;
}

const started: Started[] = [];

afterEach(async () => {
  await Promise.all(started.splice(0).map((transport) => transport.close()));
});

async function startEndpoint(
  kind: Kind,
  id: NodeId,
  port: number,
  peers: ReadonlyMap<NodeId, string>,
  options: StartOptions = {},
): Promise<Endpoint> {
  const received: string[] = [];
  const rejected: [string, string][] = [];
  const drops: string[] = [];
  const authFailures: [string, string][] = [];
  const common = {
    id,
    listenAddress: `127.0.0.1:${port}`,
    peers,
    queueMessagesMax: options.queueMessagesMax ?? 10_000,
    batchMessagesMax: 256,
    reconnectDelayMsMin: options.reconnectDelayMsMin ?? 10,
    reconnectDelayMsMax: options.reconnectDelayMsMax ?? 100,
    onDrop: (_peer: NodeId, reason: string) => drops.push(reason),
    onRejected: (from: string, problem: string) => rejected.push([from, problem]),
    onAuthFailure: (_peer: string, reason: string, detail: string) =>
      authFailures.push([reason, detail]),
  };
  const tlsMaterial = options.tls ?? null;
  const transport: Started =
    kind === 'tcp'
      ? await TcpTransport.start({
          ...common,
          frameBytesMax: options.frameBytesMax ?? 1024 * 1024,
          connectTimeoutMs: 1_000,
          frameTimeoutMs: 1_000,
          inboundConnectionsMax: options.inboundConnectionsMax ?? 16,
          ...(tlsMaterial === null ? {} : { tls: tlsMaterial }),
        })
      : await GrpcTransport.start({
          ...common,
          ...(tlsMaterial === null
            ? {}
            : {
                // As dlm serve builds them: each link checks the node it reaches.
                credentials: {
                  server: serverCredentials(tlsMaterial),
                  client: (peer: NodeId) =>
                    reloadableChannelCredentials(
                      new CertificateStore(tlsMaterial),
                      checkServerNode(peer),
                    ),
                },
              }),
        });
  transport.onMessage((message) => {
    if (message.kind === 'forward') received.push(message.proposalId);
  });
  started.push(transport);
  return { transport, received, rejected, drops, authFailures };
}

function forward(to: NodeId, proposalId: string, bytes = 1): PeerMessage {
  return { kind: 'forward', from: N1, to, proposalId, data: new Uint8Array(bytes) };
}

async function until(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Distinct ids received, in arrival order, must be strictly increasing: order kept or lost. */
function expectInOrder(received: readonly string[]): void {
  const numbers = received.map((id) => Number(id.slice(1)));
  for (let i = 1; i < numbers.length; i++) {
    expect(numbers[i]).toBeGreaterThan(numbers[i - 1] as number);
  }
}

let certDir = '';
let certs: TestCerts;
let strangers: TestCerts;

beforeAll(() => {
  certDir = mkdtempSync(join(tmpdir(), 'dlm-transport-certs-'));
  certs = makeCerts(join(certDir, 'cluster'), { nodes: ['n1', 'n2', 'n3'] });
  strangers = makeCerts(join(certDir, 'strangers'), { nodes: ['n1', 'n2', 'n3'] });
});

afterAll(() => rmSync(certDir, { recursive: true, force: true }));

describe.each(['grpc', 'tcp'] as const)('%s peer transport', (kind) => {
  it('delivers every message to one peer in the order sent', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const peers = new Map([
      [N1, `127.0.0.1:${p1}`],
      [N2, `127.0.0.1:${p2}`],
    ]);
    const a = await startEndpoint(kind, N1, p1, peers);
    const b = await startEndpoint(kind, N2, p2, peers);
    // Bursts in one tick and messages spread over ticks, so that batches of every size go.
    for (let i = 0; i < 2_000; i++) {
      a.transport.send(forward(N2, `p${i}`));
      if (i % 97 === 0) await sleep(1);
    }
    await until(() => b.received.length === 2_000, 'all 2000 messages');
    expectInOrder(b.received);
    expect(a.drops).toEqual([]);
  });

  it('a peer that is down costs nothing; once it is up (and after it restarts) messages flow again, in order', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const peers = new Map([
      [N1, `127.0.0.1:${p1}`],
      [N2, `127.0.0.1:${p2}`],
    ]);
    const a = await startEndpoint(kind, N1, p1, peers);
    let next = 0;
    const startedAtMs = performance.now();
    for (; next < 100; next++) a.transport.send(forward(N2, `p${next}`));
    // Sending to a peer that is down never blocks the caller.
    expect(performance.now() - startedAtMs).toBeLessThan(500);
    await sleep(200);
    let b = await startEndpoint(kind, N2, p2, peers);
    const sendUntilReceived = async (target: Endpoint): Promise<void> => {
      await until(() => {
        a.transport.send(forward(N2, `p${next++}`));
        return target.received.length >= 20;
      }, 'messages after the peer came up');
      expectInOrder(target.received);
    };
    await sendUntilReceived(b);
    // The peer restarts on the same port: the link notices and reconnects.
    await b.transport.close();
    started.splice(started.indexOf(b.transport), 1);
    for (let i = 0; i < 50; i++) a.transport.send(forward(N2, `p${next++}`));
    await sleep(100);
    b = await startEndpoint(kind, N2, p2, peers);
    await sendUntilReceived(b);
  });

  it('bounds the queue to a peer that is down: the oldest are dropped and reported', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const peers = new Map([
      [N1, `127.0.0.1:${p1}`],
      [N2, `127.0.0.1:${p2}`],
    ]);
    // A long backoff: after the first failed connect the link waits, and the queue fills.
    const a = await startEndpoint(kind, N1, p1, peers, {
      queueMessagesMax: 8,
      reconnectDelayMsMin: 60_000,
      reconnectDelayMsMax: 60_000,
    });
    a.transport.send(forward(N2, 'first'));
    await sleep(300);
    for (let i = 0; i < 100; i++) a.transport.send(forward(N2, `p${i}`));
    expect(a.drops.filter((reason) => reason === 'queue full')).toHaveLength(92);
  });

  it('does not deliver a message meant for another node to the one at its address', async () => {
    const [p1, p3] = [await freePort(), await freePort()];
    // n1 believes n2 lives where n3 does.
    const peers = new Map([
      [N1, `127.0.0.1:${p1}`],
      [N2, `127.0.0.1:${p3}`],
    ]);
    const a = await startEndpoint(kind, N1, p1, peers);
    const c = await startEndpoint(kind, N3, p3, new Map([[N1, `127.0.0.1:${p1}`]]));
    for (let i = 0; i < 20; i++) {
      a.transport.send(forward(N2, `p${i}`));
      await sleep(10);
    }
    await sleep(200);
    expect(c.received).toEqual([]);
  });

  // Issue 15: a member's certificate vouches for its own id only.
  it("mutual TLS: a node presenting another node's certificate cannot speak as itself; a lock client cannot speak at all", async () => {
    const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];
    const peers = new Map([
      [N1, `127.0.0.1:${p1}`],
      [N2, `127.0.0.1:${p2}`],
    ]);
    const b = await startEndpoint(kind, N2, p2, peers, { tls: certs.node('n2') });
    // n1, with n3's certificate (a member's, of the right CA, for the right host).
    const impostor = await startEndpoint(kind, N1, p1, peers, { tls: certs.node('n3') });
    // A lock client's certificate (same CA, no node id), dialling as n1.
    const client = await startEndpoint(kind, N1, p3, peers, { tls: certs.client() });
    for (let i = 0; i < 20; i++) {
      impostor.transport.send(forward(N2, 'impostor'));
      client.transport.send(forward(N2, 'client'));
      await sleep(10);
    }
    await until(() => b.authFailures.length >= 2, 'both refusals to be reported');
    await sleep(200);
    expect(b.received).toEqual([]);
    const reasons = new Set(b.authFailures.map(([reason]) => reason));
    expect([...reasons].sort()).toEqual(['not_a_node', 'wrong_node_id']);
    expect(b.authFailures.find(([reason]) => reason === 'wrong_node_id')?.[1]).toMatch(
      /claims to be node n1, but its certificate \(CN=n3, serial \w+\) is node n3's/,
    );
  });

  it('mutual TLS: the dialling side refuses a server whose certificate names another node', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const peers = new Map([
      [N1, `127.0.0.1:${p1}`],
      [N2, `127.0.0.1:${p2}`],
    ]);
    const a = await startEndpoint(kind, N1, p1, peers, { tls: certs.node('n1') });
    // At n2's address, a member that is not n2 (its own id in the hello would be n2's).
    const b = await startEndpoint(kind, N2, p2, peers, { tls: certs.node('n3') });
    for (let i = 0; i < 20; i++) {
      a.transport.send(forward(N2, `p${i}`));
      await sleep(10);
    }
    await sleep(200);
    expect(b.received).toEqual([]);
  });

  it('mutual TLS: peers with the cluster CA talk; a peer of another CA is refused', async () => {
    const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];
    const peers = new Map([
      [N1, `127.0.0.1:${p1}`],
      [N2, `127.0.0.1:${p2}`],
    ]);
    const a = await startEndpoint(kind, N1, p1, peers, { tls: certs.node('n1') });
    const b = await startEndpoint(kind, N2, p2, peers, { tls: certs.node('n2') });
    await until(() => {
      a.transport.send(forward(N2, 'p0'));
      return b.received.length > 0;
    }, 'a message over mutual TLS');
    // A stranger dialling b with its own CA's certificate.
    const stranger = await startEndpoint(kind, N3, p3, peers, { tls: strangers.node('n3') });
    for (let i = 0; i < 20; i++) {
      stranger.transport.send(forward(N2, 'stranger'));
      await sleep(10);
    }
    await sleep(200);
    expect(b.received).not.toContain('stranger');
  });
});

describe('tcp peer transport: what it parses itself', () => {
  async function listening(options: StartOptions = {}): Promise<Endpoint> {
    return startEndpoint('tcp', N2, await freePort(), new Map(), options);
  }

  function dial(port: number): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(socket));
      socket.on('error', reject);
    });
  }

  /** Resolves when the server has closed the socket; fails after 5 s. */
  async function closed(socket: net.Socket): Promise<void> {
    socket.on('error', () => {});
    // Reading, so that the server's close (FIN or RST) is noticed.
    socket.resume();
    await until(() => socket.destroyed || socket.readyState === 'closed', 'the server to close');
  }

  const hello = (from: string, to: string): Buffer =>
    encodeFrame(FrameType.hello, packr.pack({ from, to }));
  const batch = (messages: unknown): Buffer => encodeFrame(FrameType.batch, packr.pack(messages));

  it('drops an undecodable batch or one that is not an array, reports it, and keeps the connection', async () => {
    const b = await listening();
    const socket = await dial(b.transport.port);
    socket.on('error', () => {});
    // An array header promising two items, with none after it; then a map, not a batch.
    socket.write(hello('n1', 'n2'));
    socket.write(encodeFrame(FrameType.batch, Uint8Array.of(0x92)));
    socket.write(batch({ kind: 'raft' }));
    // A good batch split across writes, byte by byte at the header.
    const good = batch([forward(N2, 'p1')]);
    for (let i = 0; i < 8; i++) socket.write(good.subarray(i, i + 1));
    socket.write(good.subarray(8));
    await until(() => b.received.length === 1, 'the good batch');
    expect(b.rejected).toHaveLength(2);
    expect(b.rejected[0]?.[0]).toBe('n1');
    expect(b.rejected[0]?.[1]).toMatch(/^undecodable batch: /);
    expect(b.rejected[1]).toEqual(['n1', 'batch: expected an array']);
    expect(socket.destroyed).toBe(false);
    socket.destroy();
  });

  it('closes a connection announcing a frame over peerFrameBytesMax, before buffering it; the server goes on', async () => {
    const b = await listening({ frameBytesMax: 1_000 });
    const socket = await dial(b.transport.port);
    const header = encodeFrame(FrameType.batch, new Uint8Array(1_001)).subarray(0, 8);
    socket.write(hello('n1', 'n2'));
    socket.write(header);
    await closed(socket);
    expect(b.rejected).toEqual([
      ['n1', 'frame of 1001 bytes exceeds runtime.peerFrameBytesMax (1000)'],
    ]);
    const again = await dial(b.transport.port);
    again.write(hello('n1', 'n2'));
    again.write(batch([forward(N2, 'p1')]));
    await until(() => b.received.length === 1, 'a batch on a new connection');
    again.destroy();
  });

  it('the sender drops (and reports) a message bigger than a frame, and sends the rest', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const peers = new Map([
      [N1, `127.0.0.1:${p1}`],
      [N2, `127.0.0.1:${p2}`],
    ]);
    const options = { frameBytesMax: 10_000 };
    const a = await startEndpoint('tcp', N1, p1, peers, options);
    const b = await startEndpoint('tcp', N2, p2, peers, options);
    // In one tick: one batch too big for a frame, halved until the big one stands alone.
    for (let i = 0; i < 10; i++) a.transport.send(forward(N2, `p${i}`, i === 4 ? 20_000 : 2_000));
    await until(() => b.received.length === 9, 'the nine that fit');
    expect(b.received).toEqual(['p0', 'p1', 'p2', 'p3', 'p5', 'p6', 'p7', 'p8', 'p9']);
    expect(a.drops).toHaveLength(1);
    expect(a.drops[0]).toMatch(/^message of \d+ bytes exceeds runtime\.peerFrameBytesMax/);
    expect(b.rejected).toEqual([]);
  });

  it('refuses garbage, a batch before the hello, and a hello meant for another node', async () => {
    const b = await listening();
    const cases: [Buffer, RegExp][] = [
      [Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), /^not a dlm peer frame/],
      [batch([forward(N2, 'early')]), /^expected a hello frame first/],
      [hello('n1', 'n9'), /^hello from n1 is meant for n9, this is n2$/],
      [encodeFrame(FrameType.hello, packr.pack({ to: 'n2' })), /^hello: expected/],
    ];
    for (const [bytes, problem] of cases) {
      const socket = await dial(b.transport.port);
      socket.write(bytes);
      socket.write(batch([forward(N2, 'after')]));
      await closed(socket);
      expect(b.rejected.at(-1)?.[1]).toMatch(problem);
    }
    expect(b.rejected).toHaveLength(cases.length);
    expect(b.received).toEqual([]);
  });

  it('a stream always mid-frame between writes is not cut while its frames keep ending (frame deadline 1 s)', async () => {
    const b = await listening();
    const socket = await dial(b.transport.port);
    socket.on('error', () => {});
    socket.write(hello('n1', 'n2'));
    // For 2.5 s, each write ends one frame and begins the next: never between frames.
    const frames = Array.from({ length: 51 }, (_, i) => batch([forward(N2, `p${i}`)]));
    const half = (frame: Buffer): number => Math.floor(frame.length / 2);
    socket.write((frames[0] as Buffer).subarray(0, half(frames[0] as Buffer)));
    for (let i = 1; i < frames.length; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const [previous, next] = [frames[i - 1] as Buffer, frames[i] as Buffer];
      socket.write(
        Buffer.concat([previous.subarray(half(previous)), next.subarray(0, half(next))]),
      );
    }
    await until(() => b.received.length === 50, 'every whole frame');
    expect(socket.destroyed).toBe(false);
    expect(b.rejected).toEqual([]);
    socket.destroy();
  });

  it('past inboundConnectionsMax a new connection is closed and reported; one freed lets the next in', async () => {
    const b = await listening({ inboundConnectionsMax: 2 });
    const first = await dial(b.transport.port);
    const second = await dial(b.transport.port);
    for (const socket of [first, second]) {
      socket.on('error', () => {});
      socket.write(hello(`x${socket.localPort}`, 'n2'));
    }
    const third = await dial(b.transport.port);
    await closed(third);
    await until(() => b.rejected.length > 0, 'the refusal to be reported');
    expect(b.rejected[0]?.[1]).toMatch(/runtime\.peerInboundConnectionsMax/);
    expect(first.destroyed || second.destroyed).toBe(false);
    first.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const fourth = await dial(b.transport.port);
    fourth.on('error', () => {});
    fourth.write(hello('n1', 'n2'));
    fourth.write(batch([forward(N2, 'p1')]));
    await until(() => b.received.length === 1, 'a batch on the freed slot');
    for (const socket of [second, fourth]) socket.destroy();
  });

  it('over TLS, the older of two connections from one peer stays older though its handshake ends last', async () => {
    const b = await listening({ tls: certs.node('n2') });
    // Accepted first, its handshake held back until the newer connection has delivered.
    const olderRaw = await dial(b.transport.port);
    olderRaw.on('error', () => {});
    const newer = tls.connect({ host: '127.0.0.1', port: b.transport.port, ...certs.node('n1') });
    newer.on('error', () => {});
    newer.write(hello('n1', 'n2'));
    newer.write(batch([forward(N2, 'p5'), forward(N2, 'p6')]));
    await until(() => b.received.length === 2, 'the newer connection to deliver');
    const older = tls.connect({ socket: olderRaw, host: '127.0.0.1', ...certs.node('n1') });
    older.on('error', () => {});
    older.write(hello('n1', 'n2'));
    older.write(batch([forward(N2, 'p1'), forward(N2, 'p2')]));
    await closed(older);
    expect(b.received).toEqual(['p5', 'p6']);
    expect(b.rejected.map(([, problem]) => problem).join('\n')).toMatch(/a newer connection/);
    newer.destroy();
  });

  it('mutual TLS: a client without a certificate is refused at the handshake', async () => {
    const b = await listening({ tls: certs.node('n2') });
    const socket = tls.connect({ host: '127.0.0.1', port: b.transport.port, ca: certs.ca });
    socket.on('error', () => {});
    socket.write(hello('n1', 'n2'));
    socket.write(batch([forward(N2, 'no-cert')]));
    await closed(socket);
    await until(() => b.authFailures.length > 0, 'the refusal to be reported');
    expect(b.authFailures[0]?.[0]).toBe('tls_handshake');
    expect(b.authFailures[0]?.[1]).toMatch(/^TLS handshake refused: /);
    expect(b.received).toEqual([]);
  });

  it('mutual TLS: a message in a batch naming another sender than the certificate is dropped', async () => {
    const b = await listening({ tls: certs.node('n2') });
    const socket = tls.connect({ host: '127.0.0.1', port: b.transport.port, ...certs.node('n1') });
    socket.on('error', () => {});
    socket.write(hello('n1', 'n2'));
    const spoofed = {
      kind: 'forward',
      from: N3,
      to: N2,
      proposalId: 'as-n3',
      data: new Uint8Array(1),
    };
    socket.write(batch([spoofed, forward(N2, 'as-n1')]));
    await until(() => b.received.length > 0, 'the genuine message');
    expect(b.received).toEqual(['as-n1']);
    expect(b.authFailures.map(([reason]) => reason)).toEqual(['wrong_node_id']);
    socket.destroy();
  });
});
