import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Packr } from 'msgpackr';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { channelCredentials, serverCredentials } from '../../src/cli/target.ts';
import { parseClusterConfig, type TlsMaterial } from '../../src/config/index.ts';
import type { PeerMessage } from '../../src/node/peer-message.ts';
import { LinkProxy } from '../../src/tools/jepsen/proxy.ts';
import { ProcessCluster } from '../../src/tools/process-cluster.ts';
import { encodeFrame, FrameReader, FrameType } from '../../src/transport/frame.ts';
import { GrpcTransport } from '../../src/transport/grpc.ts';
import { TcpTransport, type TcpTransportOptions } from '../../src/transport/tcp.ts';
import { nodeId } from '../../src/util/ids.ts';
import { makeCerts } from '../support/certs.ts';
import { freePort } from '../support/free-port.ts';

/**
 * Review of branch peer-tcp (TCP peer transport). Each test here states what the
 * Transport contract / the brief asks for; the ones marked FAILS-ON-BRANCH fail on
 * 436fdfa and are the findings of the review.
 */
const N2 = nodeId('n2');
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });
const CONNECT_TIMEOUT_MS = 500;
const ROOT = new URL('../../', import.meta.url).pathname;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const hello = (from: string, to: string): Buffer =>
  encodeFrame(FrameType.hello, packr.pack({ from, to }));
const batch = (messages: unknown): Buffer => encodeFrame(FrameType.batch, packr.pack(messages));
const forward = (proposalId: string, to = N2, bytes = 1): PeerMessage => ({
  kind: 'forward',
  from: nodeId('n1'),
  to,
  proposalId,
  data: new Uint8Array(bytes),
});

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Listening {
  readonly transport: TcpTransport;
  readonly received: string[];
  readonly rejected: string[];
}

async function listening(options: Partial<TcpTransportOptions> = {}): Promise<Listening> {
  const received: string[] = [];
  const rejected: string[] = [];
  const transport = await TcpTransport.start({
    id: N2,
    listenAddress: `127.0.0.1:${await freePort()}`,
    peers: new Map(),
    queueMessagesMax: 1_000,
    batchMessagesMax: 256,
    frameBytesMax: 1024 * 1024,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    frameTimeoutMs: CONNECT_TIMEOUT_MS,
    inboundConnectionsMax: 64,
    reconnectDelayMsMin: 10,
    reconnectDelayMsMax: 100,
    onRejected: (_from, problem) => rejected.push(problem),
    ...options,
  });
  transport.onMessage((message) => {
    if (message.kind === 'forward') received.push(message.proposalId);
  });
  cleanups.push(() => transport.close());
  return { transport, received, rejected };
}

function dial(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.on('error', reject);
    socket.resume();
    cleanups.push(() => socket.destroy());
  });
}

/** Writes `bytes` one byte every `everyMs` until stopped or the socket closes. */
function trickle(socket: net.Socket, bytes: Buffer, everyMs: number): () => void {
  let i = 0;
  const timer = setInterval(() => {
    if (socket.destroyed || i >= bytes.length) return;
    socket.write(bytes.subarray(i, i + 1));
    i++;
  }, everyMs);
  const stop = (): void => clearInterval(timer);
  cleanups.push(stop);
  return stop;
}

describe('review peer-tcp: inbound connections are bounded in time and memory', () => {
  // FAILS-ON-BRANCH: socket.setTimeout is an idle timeout; every byte restarts it.
  it('a connection that trickles its hello is dropped within peerConnectTimeoutMs', async () => {
    const b = await listening();
    const socket = await dial(b.transport.port);
    socket.on('error', () => {});
    // A hello announcing 1000 bytes, its bytes then sent one every 100 ms (never a whole hello).
    const slowHello = encodeFrame(FrameType.hello, new Uint8Array(1_000));
    trickle(socket, slowHello, 100);
    await sleep(CONNECT_TIMEOUT_MS * 6);
    expect(socket.destroyed, 'still connected after 6x peerConnectTimeoutMs, without a hello').toBe(
      true,
    );
  });

  // FAILS-ON-BRANCH: after the hello there is no timeout at all, and no cap on connections;
  // each one can hold up to peerFrameBytesMax (16 MiB by default) of an unfinished frame.
  it('connections stalled in the middle of a frame do not hold their buffers for ever', async () => {
    const frameBytesMax = 256 * 1024;
    const b = await listening({ frameBytesMax });
    const sockets: net.Socket[] = [];
    for (let i = 0; i < 20; i++) {
      const socket = await dial(b.transport.port);
      socket.on('error', () => {});
      // Distinct senders, so that none replaces another; a frame of exactly the limit,
      // all but its last byte.
      socket.write(hello(`x${i}`, 'n2'));
      socket.write(encodeFrame(FrameType.batch, new Uint8Array(frameBytesMax)).subarray(0, -1));
      sockets.push(socket);
    }
    await sleep(CONNECT_TIMEOUT_MS * 6);
    const open = sockets.filter((socket) => !socket.destroyed).length;
    // 20 x 256 KiB held for ever here; with the defaults, 16 MiB each, any number.
    expect(open, 'connections still holding a partial frame').toBe(0);
  });
});

describe('review peer-tcp: per-peer order across connections', () => {
  // FAILS-ON-BRANCH: "newer" is decided by whose hello is read last, not by which
  // connection came last, so an older connection whose bytes arrive late (a delaying
  // forwarder, a retransmitted segment) closes the newer one and delivers older messages
  // after newer ones.
  it('messages from one peer are never delivered out of order, whatever connection carried them', async () => {
    const b = await listening();
    const older = await dial(b.transport.port);
    const newer = await dial(b.transport.port);
    for (const socket of [older, newer]) socket.on('error', () => {});
    newer.write(hello('n1', 'n2'));
    newer.write(batch([forward('p5'), forward('p6')]));
    await until(() => b.received.length === 2);
    // The older connection's bytes, delayed on the way, arrive now.
    older.write(hello('n1', 'n2'));
    older.write(batch([forward('p1'), forward('p2')]));
    await sleep(200);
    const numbers = b.received.map((id) => Number(id.slice(1)));
    expect(numbers, 'arrival order of p1..p6 from n1').toEqual([...numbers].sort((x, y) => x - y));
  });
  // FAILS-ON-BRANCH: the same through the real sender. A peer removed and re-added (or
  // given a new address) closes its old connection and opens a new one; through a link
  // with jitter (the Jepsen LinkProxy: bytes keep their order within a connection, not
  // across connections), the old connection's hello can arrive second and win.
  it('a peer removed and re-added through a jittery link: its messages still arrive in order', async () => {
    const b = await listening();
    const proxy = await LinkProxy.start({
      listen: '127.0.0.1:0',
      target: `127.0.0.1:${b.transport.port}`,
      seed: 7,
      faults: { delayMs: 100, jitterMs: 90 },
    });
    cleanups.push(() => proxy.close());
    const a = await TcpTransport.start({
      id: nodeId('n1'),
      listenAddress: `127.0.0.1:${await freePort()}`,
      peers: new Map([[N2, proxy.address]]),
      queueMessagesMax: 1_000,
      batchMessagesMax: 256,
      frameBytesMax: 1024 * 1024,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      frameTimeoutMs: CONNECT_TIMEOUT_MS,
      inboundConnectionsMax: 64,
      reconnectDelayMsMin: 10,
      reconnectDelayMsMax: 100,
    });
    cleanups.push(() => a.close());
    let next = 0;
    for (let round = 0; round < 20; round++) {
      // Two fresh connections, 20 ms apart, one message each.
      for (const pauseMs of [20, 250]) {
        a.removePeer(N2);
        a.addPeer(N2, proxy.address);
        a.send(forward(`p${next++}`));
        await sleep(pauseMs);
      }
    }
    const numbers = b.received.map((id) => Number(id.slice(1)));
    expect(numbers, 'arrival order').toEqual([...numbers].sort((x, y) => x - y));
  });
});

const certDir = mkdtempSync(join(tmpdir(), 'dlm-review-certs-'));
/** Node n2's certificate (the receiver), n1's (the sender), and a lock client's. */
interface Certs {
  readonly node: TlsMaterial;
  readonly n1: TlsMaterial;
  readonly client: TlsMaterial;
}
let cluster: Certs;
let misnamed: Certs;
beforeAll(() => {
  const generate = (name: string, sans?: string[]): Certs => {
    const certs = makeCerts(join(certDir, name), {
      nodes: ['n1', 'n2'],
      ...(sans ? { sans } : {}),
    });
    return { node: certs.node('n2'), n1: certs.node('n1'), client: certs.client() };
  };
  cluster = generate('cluster');
  // Signed by its own CA, names only a host that is not the one dialled.
  misnamed = generate('misnamed', ['DNS:elsewhere.example']);
});
afterAll(() => rmSync(certDir, { recursive: true, force: true }));

async function pair(
  aOptions: Partial<TcpTransportOptions>,
  bOptions: Partial<TcpTransportOptions>,
): Promise<{ a: TcpTransport; b: Listening }> {
  const b = await listening(bOptions);
  const a = await TcpTransport.start({
    id: nodeId('n1'),
    listenAddress: `127.0.0.1:${await freePort()}`,
    peers: new Map([[N2, `127.0.0.1:${b.transport.port}`]]),
    queueMessagesMax: 1_000,
    batchMessagesMax: 256,
    frameBytesMax: 1024 * 1024,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    frameTimeoutMs: CONNECT_TIMEOUT_MS,
    inboundConnectionsMax: 64,
    reconnectDelayMsMin: 10,
    reconnectDelayMsMax: 100,
    ...aOptions,
  });
  cleanups.push(() => a.close());
  return { a, b };
}

describe('review peer-tcp: TLS handshakes', () => {
  it('sound: the dialling side checks the server name against the certificate', async () => {
    const { a, b } = await pair({ tls: misnamed.n1 }, { tls: misnamed.node });
    for (let i = 0; i < 20; i++) {
      a.send(forward(`p${i}`));
      await sleep(20);
    }
    expect(b.received).toEqual([]);
    expect(b.rejected.join('\n')).toMatch(/TLS handshake refused/);
  });

  it('sound: a plaintext peer dialling a TLS peer port is refused at the handshake', async () => {
    const { a, b } = await pair({}, { tls: cluster.node });
    for (let i = 0; i < 20; i++) {
      a.send(forward(`p${i}`));
      await sleep(20);
    }
    expect(b.received).toEqual([]);
    expect(b.rejected.join('\n')).toMatch(/TLS handshake refused/);
  });

  // FAILS-ON-BRANCH: on a handshake timeout Node emits 'tlsClientError' and leaves the
  // socket to the listener (_tls_wrap.js onSocketTLSError); tcp.ts's listener only
  // reports it. So handshakeTimeout (436fdfa) never frees anything: a client that
  // connects and says nothing holds the socket, and close() waits for it, for ever.
  it('a TLS client that says nothing is dropped after peerConnectTimeoutMs, and close() returns', async () => {
    const b = await listening({ tls: cluster.node });
    const socket = await dial(b.transport.port);
    socket.on('error', () => {});
    await sleep(CONNECT_TIMEOUT_MS * 4);
    const reported = b.rejected.join('\n');
    const closing = b.transport.close();
    const outcome = await Promise.race([
      closing.then(() => 'closed'),
      sleep(3_000).then(() => 'hung'),
    ]);
    expect({
      reported: /handshake/i.test(reported),
      socketDestroyed: socket.destroyed,
      outcome,
    }).toEqual({
      reported: true,
      socketDestroyed: true,
      outcome: 'closed',
    });
  });

  // FAILS-ON-BRANCH: the same cause as above (the timed-out handshake is reported, not
  // destroyed). Checked: with socket.destroy() added to tcp.ts's tlsClientError
  // listener, this test and the two above pass; the TLS timer is not restarted by the
  // raw bytes, unlike the plaintext hello timer (first test of this file).
  it('close() returns promptly while a TLS handshake trickles', async () => {
    const b = await listening({ tls: cluster.node });
    const socket = await dial(b.transport.port);
    socket.on('error', () => {});
    // A TLS handshake record announcing 16 KiB, sent a byte every 100 ms.
    const record = Buffer.concat([Buffer.of(0x16, 0x03, 0x01, 0x40, 0x00), Buffer.alloc(16_384)]);
    trickle(socket, record, 100);
    await sleep(CONNECT_TIMEOUT_MS * 4);
    const startedMs = performance.now();
    const closing = b.transport.close();
    const outcome = await Promise.race([
      closing.then(() => 'closed'),
      sleep(3_000).then(() => 'hung'),
    ]);
    expect(
      { outcome, socketDestroyed: socket.destroyed },
      `close() after ${Math.round(performance.now() - startedMs)} ms`,
    ).toEqual({ outcome: 'closed', socketDestroyed: true });
  });
});

/**
 * Review finding 3: both peer ports (gRPC and TCP) took any certificate the cluster CA
 * signed, including the lock clients' (clientAuth only), so whoever held one could speak
 * Raft as any node id. Fixed with issue 15: a peer's certificate must name the node id
 * it claims (URI SAN dlm-node://ID), which a client's never does.
 */
describe('review peer-tcp: issue 15, a lock client certificate on the peer port', () => {
  // FAILS-ON-BRANCH, and the same on gRPC (pre-existing): shown here with the gRPC
  // transport dialling with the lock client's certificate.
  it('the gRPC peer port refuses a certificate that is not a node certificate (pre-existing)', async () => {
    const receiver = await GrpcTransport.start({
      id: N2,
      listenAddress: `127.0.0.1:${await freePort()}`,
      peers: new Map(),
      queueMessagesMax: 100,
      batchMessagesMax: 16,
      reconnectDelayMsMin: 10,
      reconnectDelayMsMax: 100,
      credentials: {
        server: serverCredentials(cluster.node),
        client: channelCredentials(cluster.node),
      },
    });
    cleanups.push(() => receiver.close());
    const received: string[] = [];
    receiver.onMessage((message) => {
      if (message.kind === 'forward') received.push(message.proposalId);
    });
    const sender = await GrpcTransport.start({
      id: nodeId('n1'),
      listenAddress: `127.0.0.1:${await freePort()}`,
      peers: new Map([[N2, `127.0.0.1:${receiver.port}`]]),
      queueMessagesMax: 100,
      batchMessagesMax: 16,
      reconnectDelayMsMin: 10,
      reconnectDelayMsMax: 100,
      credentials: {
        server: serverCredentials(cluster.node),
        client: channelCredentials(cluster.client),
      },
    });
    cleanups.push(() => sender.close());
    for (let i = 0; i < 20; i++) {
      sender.send(forward(`p${i}`));
      await sleep(25);
    }
    expect(received).toEqual([]);
  });

  // FAILS-ON-BRANCH (the gRPC peer port takes any certificate of the CA too): the peer
  // port accepted the *client* certificate that `dlm certs init` writes for lock clients
  // (clientAuth only), so whoever holds it can speak Raft as any node id.
  it('the peer port refuses a certificate that is not a node certificate', async () => {
    const b = await listening({ tls: cluster.node });
    const socket = tls.connect({
      host: '127.0.0.1',
      port: b.transport.port,
      ...cluster.client,
    });
    socket.on('error', () => {});
    cleanups.push(() => socket.destroy());
    socket.write(hello('n1', 'n2'));
    socket.write(batch([forward('from-a-lock-client')]));
    await sleep(500);
    expect(b.received).toEqual([]);
    expect(b.rejected.join('\n')).toMatch(/names no node/);
  });
});

describe('review peer-tcp: what a batch may contain', () => {
  // FAILS-ON-BRANCH (also on gRPC, pre-existing: PeerTraffic reads message.kind unchecked).
  // serve.ts wraps the transport in PeerTraffic; a [null] batch from anyone who can reach
  // the peer port (no TLS) throws in the socket's 'data' handler and ends the process.
  it.each(['tcp', 'grpc'] as const)(
    'a dlm serve node over %s survives a batch holding null',
    async (kind) => {
      const cluster = await ProcessCluster.create(1, { peerTransport: kind });
      cleanups.push(() => cluster.remove());
      cleanups.push(() => cluster.stopAll());
      cluster.startAll();
      await cluster.waitForLeader(20_000);
      const address = cluster.nodes[0]?.peerAddress ?? '';
      if (kind === 'tcp') {
        const socket = await dial(Number(address.split(':')[1]));
        socket.on('error', () => {});
        socket.write(hello('n9', 'n1'));
        socket.write(batch([null]));
      } else {
        const definition = protoLoader.loadSync(join(ROOT, 'proto/raft.proto'), {
          keepCase: true,
          longs: String,
          defaults: true,
        });
        const loaded = grpc.loadPackageDefinition(definition) as unknown as {
          dlm: { raft: { v1: { Raft: grpc.ServiceClientConstructor } } };
        };
        const client = new loaded.dlm.raft.v1.Raft(
          address,
          grpc.credentials.createInsecure(),
        ) as unknown as grpc.Client & { Stream(): grpc.ClientDuplexStream<unknown, unknown> };
        cleanups.push(() => client.close());
        const stream = client.Stream();
        stream.on('error', () => {});
        stream.on('data', () => {});
        stream.write({ from: 'n9', to: 'n1', payload: packr.pack([null]) });
      }
      await sleep(1_000);
      const log = readFileSync(cluster.logPath('n1'), 'utf8');
      const crash = log.split('\n').find((line) => line.includes('TypeError')) ?? '';
      expect({ running: cluster.isRunning('n1'), crash }).toEqual({ running: true, crash: '' });
    },
    40_000,
  );
});

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error('timed out');
    await sleep(10);
  }
}

describe('review peer-tcp: close() and removePeer release everything', () => {
  it('sound: no socket or timer outlives close(), with links down, backing off and removed; sends after close are dropped', async () => {
    const before = process.getActiveResourcesInfo().filter((kind) => kind !== 'TTYWrap');
    const downPort = await freePort();
    const drops: string[] = [];
    const { a, b } = await pair(
      {
        reconnectDelayMsMin: 5_000,
        reconnectDelayMsMax: 60_000,
        onDrop: (_peer, reason) => drops.push(reason),
      },
      {},
    );
    a.addPeer(nodeId('n3'), `127.0.0.1:${downPort}`);
    a.addPeer(nodeId('n4'), `127.0.0.1:${downPort}`);
    a.send(forward('p1'));
    a.send(forward('q1', nodeId('n3')));
    a.send(forward('q2', nodeId('n4')));
    await until(() => b.received.length === 1);
    await sleep(200); // n3 and n4 refused: their links wait 0..5 s to retry
    a.removePeer(nodeId('n3'));
    await a.close();
    await b.transport.close();
    a.send(forward('after-close'));
    await sleep(50);
    const after = process.getActiveResourcesInfo().filter((kind) => kind !== 'TTYWrap');
    const count = (list: string[]): Record<string, number> => {
      const counts: Record<string, number> = {};
      for (const kind of list) counts[kind] = (counts[kind] ?? 0) + 1;
      return counts;
    };
    // Nothing of a kind more than before it started (a link's 5 s backoff timer, an
    // outbound socket, the listener would each add one).
    const [was, now] = [count(before), count(after)];
    for (const kind of Object.keys(now)) {
      expect(now[kind], kind).toBeLessThanOrEqual(was[kind] ?? 0);
    }
    expect(b.received).toEqual(['p1']);
  });
});

describe('review peer-tcp: framing edges (sound)', () => {
  it('a frame of exactly peerFrameBytesMax passes, one byte more is refused; a zero-length batch is dropped and the connection goes on', async () => {
    const frameBytesMax = 64 * 1024;
    const b = await listening({ frameBytesMax });
    const socket = await dial(b.transport.port);
    socket.on('error', () => {});
    socket.write(hello('n1', 'n2'));
    socket.write(encodeFrame(FrameType.batch, new Uint8Array(0)));
    // A batch padded to exactly the limit: one message whose data fills the rest.
    let dataBytes = frameBytesMax;
    let padded = packr.pack([{ ...forward('p1'), data: new Uint8Array(dataBytes) }]);
    while (padded.length !== frameBytesMax) {
      dataBytes -= padded.length - frameBytesMax;
      padded = packr.pack([{ ...forward('p1'), data: new Uint8Array(dataBytes) }]);
    }
    expect(padded.length).toBe(frameBytesMax);
    const frame = encodeFrame(FrameType.batch, padded);
    // Header split across three writes.
    socket.write(frame.subarray(0, 3));
    await sleep(20);
    socket.write(frame.subarray(3, 7));
    await sleep(20);
    socket.write(frame.subarray(7));
    await until(() => b.received.length === 1);
    expect(socket.destroyed).toBe(false);
    const tooBig = encodeFrame(FrameType.batch, new Uint8Array(frameBytesMax + 1));
    socket.write(tooBig.subarray(0, 8));
    await until(() => socket.destroyed || socket.readyState === 'closed');
    expect(b.rejected.at(-1)).toMatch(/exceeds runtime.peerFrameBytesMax/);
  });
});

describe('review peer-tcp: runtime.peerFrameBytesMax against what Raft sends', () => {
  // FAILS-ON-BRANCH: any bound >= 1 is accepted, but InstallSnapshot chunks are a fixed
  // 256 KiB (raft/options.ts) and a message over the bound is dropped by its sender for
  // ever (and silently: startPeerTransport wires no onDrop), so a follower that needs a
  // snapshot never catches up. Below ~30 bytes not even the hello fits.
  it.each([1_000, 100_000])('refuses peerFrameBytesMax %i, below one snapshot chunk', (bytes) => {
    const config = {
      nodes: [
        {
          id: 'n1',
          peerAddress: '127.0.0.1:7001',
          clientAddress: '127.0.0.1:7101',
          metricsAddress: '127.0.0.1:9101',
        },
      ],
      dataDir: './data',
      peerTransport: 'tcp',
      runtime: { peerFrameBytesMax: bytes },
    };
    expect(() => parseClusterConfig(config, '/etc/dlm')).toThrow(/peerFrameBytesMax/);
  });
});

describe('review peer-tcp: order under backpressure and halving (sound)', () => {
  it('a slow reader: drain, halved batches and queue drops never reorder or duplicate', async () => {
    // A hand-made receiver that reads in bursts with pauses, so the sender's socket
    // fills, 'drain' resumes it and its bounded queue drops the oldest.
    const arrived: number[] = [];
    const server = net.createServer((socket) => {
      const reader = new FrameReader(1024 * 1024);
      let first = true;
      socket.on('data', (chunk: Buffer) => {
        reader.push(chunk, (frame) => {
          if (first) {
            first = false;
            return;
          }
          for (const message of packr.unpack(frame.payload) as { proposalId: string }[]) {
            arrived.push(Number(message.proposalId.slice(1)));
          }
        });
        socket.pause();
        // A long stall first (the kernel buffers fill), then bursts.
        setTimeout(() => socket.resume(), arrived.length === 0 ? 1_500 : 2);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    const port = (server.address() as net.AddressInfo).port;
    const drops: string[] = [];
    const a = await TcpTransport.start({
      id: nodeId('n1'),
      listenAddress: `127.0.0.1:${await freePort()}`,
      peers: new Map([[N2, `127.0.0.1:${port}`]]),
      queueMessagesMax: 500,
      batchMessagesMax: 64,
      frameBytesMax: 20_000,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      frameTimeoutMs: CONNECT_TIMEOUT_MS,
      inboundConnectionsMax: 64,
      reconnectDelayMsMin: 10,
      reconnectDelayMsMax: 100,
      onDrop: (_peer, reason) => drops.push(reason),
    });
    cleanups.push(() => a.close());
    const total = 20_000;
    for (let i = 0; i < total; i++) {
      // Sizes that make 64-message batches exceed 20 kB (halved) and a few too big alone.
      const bytes = i % 500 === 7 ? 30_000 : 500 + ((i * 37) % 900);
      a.send(forward(`p${i}`, N2, bytes));
      if (i % 500 === 0) await sleep(5);
    }
    await sleep(4_000);
    const queueFull = drops.filter((reason) => reason === 'queue full').length;
    expect({ queueFull: queueFull > 0, tooBig: drops.length - queueFull > 0 }).toEqual({
      queueFull: true,
      tooBig: true,
    });
    expect(arrived.length).toBeGreaterThan(100);
    for (let i = 1; i < arrived.length; i++) {
      expect(arrived[i], `after p${arrived[i - 1]}`).toBeGreaterThan(arrived[i - 1] as number);
    }
  });
});

describe('review peer-tcp: SIGTERM with a TLS handshake in progress on the peer port', () => {
  // FAILS-ON-BRANCH: DlmNode.stop awaits transport.close() before closing storage; the
  // TLS server's close waits for every unfinished handshake, and a timed-out one is never
  // destroyed (see above), so one idle unauthenticated connection keeps `dlm serve` from
  // exiting on SIGTERM. Plaintext peer ports are not affected (tracked, destroyed).
  it('dlm serve (tcp, TLS) exits on SIGTERM while a client that said nothing is connected to its peer port', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dlm-review-sigterm-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const certs = makeCerts(dir, { nodes: ['n1'] });
    const c = await ProcessCluster.create(1, { tls: certs.tlsSection, peerTransport: 'tcp' });
    cleanups.push(() => c.remove());
    cleanups.push(() => c.stopAll());
    const client = certs.client();
    c.credentials = grpc.credentials.createSsl(client.ca, client.key, client.cert);
    c.startAll();
    await c.waitForLeader(20_000);
    const socket = await dial(Number(c.nodes[0]?.peerAddress.split(':')[1]));
    socket.on('error', () => {});
    // Control: with the socket gone, the same SIGTERM exits in about 3 s.
    if (process.env.REVIEW_CONTROL === '1') socket.destroy();
    // It says nothing; peerConnectTimeoutMs (2 s) passes many times over below.
    await sleep(500);
    const exited = c.terminate('n1').then(() => 'exited');
    const outcome = await Promise.race([exited, sleep(15_000).then(() => 'still running')]);
    const logTail = readFileSync(c.logPath('n1'), 'utf8').split('\n').slice(-8).join('\n');
    expect(outcome, `dlm serve after SIGTERM (shutdownDrainMs 5 s); log:\n${logTail}`).toBe(
      'exited',
    );
  }, 60_000);
});
