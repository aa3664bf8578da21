import * as net from 'node:net';
import * as tls from 'node:tls';
import { Packr } from 'msgpackr';
import type { TlsMaterial } from '../config/index.ts';
import type { PeerMessage } from '../node/peer-message.ts';
import { peerRecipient } from '../node/peer-message.ts';
import type { Transport } from '../node/transport.ts';
import { splitHostPort } from '../util/host-port.ts';
import type { NodeId } from '../util/ids.ts';
import { ReconnectBackoff } from './backoff.ts';
import { CertificateStore } from './certificate-store.ts';
import { encodeFrame, type Frame, FrameReader, FrameType } from './frame.ts';
import {
  type AuthFailureListener,
  type AuthFailureReason,
  checkServerNode,
  claimedSender,
  describeCertificate,
  peerIdentityProblem,
} from './peer-identity.ts';

/**
 * Peer traffic over plain TCP (or TLS): one connection from each node to each peer,
 * carrying length-prefixed frames of msgpack batches (see frame.ts). The same contract
 * as the gRPC transport, without HTTP/2 and protobuf in between: sending never blocks;
 * each peer has a bounded queue that drops its oldest message when full; what is sent
 * in one turn of the event loop goes out as one batch; a broken connection is reopened
 * with exponential backoff and full jitter.
 */
export interface TcpTransportOptions {
  readonly id: NodeId;
  /** host:port to listen on; port 0 picks a free one. */
  readonly listenAddress: string;
  readonly peers: ReadonlyMap<NodeId, string>;
  readonly queueMessagesMax: number;
  readonly batchMessagesMax: number;
  /** A frame announcing more payload than this closes the connection (and is reported). */
  readonly frameBytesMax: number;
  /**
   * A connection not established within this is dropped; so is an inbound one not
   * introduced by a hello within this of being accepted, however it trickles bytes.
   */
  readonly connectTimeoutMs: number;
  /**
   * An inbound frame begun but not whole within this (counted from its first byte, or
   * from the end of the frame before it) drops the connection and the bytes it held.
   */
  readonly frameTimeoutMs: number;
  /** Inbound connections open at once, TLS handshakes included; past it new ones are closed. */
  readonly inboundConnectionsMax: number;
  readonly reconnectDelayMsMin: number;
  readonly reconnectDelayMsMax: number;
  /**
   * Mutual TLS: present `cert`, require the other side's, both signed by `ca`; each side
   * checks that the other's certificate names the node it is (see peer-identity.ts). A
   * store may be replaced while running (SIGHUP): new connections use the new material.
   */
  readonly tls?: TlsMaterial | CertificateStore;
  /**
   * A refused handshake or a certificate that does not name the sender. Without it these
   * go to onRejected like any other refusal.
   */
  readonly onAuthFailure?: AuthFailureListener;
  readonly onDrop?: (peer: NodeId, reason: string) => void;
  /** Bytes from `peer` (its id, or its address before it said hello) that were refused. */
  readonly onRejected?: (peer: string, problem: string) => void;
}

interface Hello {
  readonly from: string;
  readonly to: string;
}

// Pinned options: both ends of a connection must agree on the encoding (as grpc.ts).
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export class TcpTransport implements Transport {
  readonly id: NodeId;
  private handler: ((message: PeerMessage) => void) | null = null;
  private readonly links = new Map<NodeId, PeerLink>();
  private readonly inbound = new Set<InboundConnection>();
  /** Per sender, the accept sequence of its newest introduced connection. */
  private readonly newestIntroduced = new Map<string, number>();
  private closed = false;

  private constructor(
    private readonly options: TcpTransportOptions,
    private readonly server: net.Server,
    private readonly sockets: AcceptedSockets,
    readonly port: number,
  ) {
    this.id = options.id;
    for (const [peer, address] of options.peers) this.addPeer(peer, address);
  }

  static async start(given: TcpTransportOptions): Promise<TcpTransport> {
    const store =
      given.tls === undefined || given.tls instanceof CertificateStore
        ? given.tls
        : new CertificateStore(given.tls);
    const options: TcpTransportOptions = store === undefined ? given : { ...given, tls: store };
    let transport: TcpTransport | null = null;
    const accept = (socket: net.Socket): void => transport?.accept(socket);
    const server =
      store === undefined
        ? net.createServer(accept)
        : tls.createServer(
            {
              ...store.current,
              requestCert: true,
              rejectUnauthorized: true,
              // Node's default (120 s) would let a stalled handshake hold close() that long.
              handshakeTimeout: options.connectTimeoutMs,
            },
            accept,
          );
    if (store !== undefined) {
      const unsubscribe = store.subscribe((material) =>
        (server as tls.Server).setSecureContext({ ...material }),
      );
      server.once('close', unsubscribe);
    }
    // A failed handshake (no client certificate, wrong CA, handshakeTimeout) never
    // reaches accept, and Node leaves the socket to this listener: not destroyed, it
    // would stay open and hold server.close() (and so dlm serve's exit) for ever.
    server.on('tlsClientError', (error: Error, socket: tls.TLSSocket) => {
      reportAuthFailure(
        options,
        remoteLabel(socket),
        'tls_handshake',
        `TLS handshake refused: ${error.message}`,
      );
      socket.destroy();
    });
    // Each may hold up to frameBytesMax of an unfinished frame: their number is bounded.
    // Past it Node closes the new connection and emits 'drop'.
    server.maxConnections = options.inboundConnectionsMax;
    server.on('drop', (data?: { remoteAddress?: string; remotePort?: number }) =>
      options.onRejected?.(
        `${data?.remoteAddress ?? '?'}:${data?.remotePort ?? '?'}`,
        `connection refused: already ${options.inboundConnectionsMax} inbound (runtime.peerInboundConnectionsMax)`,
      ),
    );
    // First of the listeners, so that a connection is numbered before anything reads it.
    const sockets = new AcceptedSockets();
    server.prependListener('connection', (socket: net.Socket) => sockets.add(socket));
    const { host, port } = splitHostPort(options.listenAddress);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Once listening, a server error (out of file descriptors while accepting) must not
    // end the process: connections are retried by their senders.
    server.on('error', (error) => options.onRejected?.('(listener)', String(error)));
    const bound = (server.address() as net.AddressInfo).port;
    transport = new TcpTransport(options, server, sockets, bound);
    return transport;
  }

  send(message: PeerMessage): void {
    if (this.closed) return;
    const link = this.links.get(peerRecipient(message));
    if (link === undefined) {
      this.options.onDrop?.(peerRecipient(message), 'unknown peer');
      return;
    }
    link.enqueue(message);
  }

  onMessage(handler: (message: PeerMessage) => void): void {
    this.handler = handler;
  }

  /** Opens a link to a peer added at run time; a known peer at a new address is reconnected. */
  addPeer(id: NodeId, address: string): void {
    if (this.closed || id === this.id) return;
    const existing = this.links.get(id);
    if (existing?.address === address) return;
    existing?.close();
    this.links.set(id, new PeerLink(id, address, this.options));
  }

  removePeer(id: NodeId): void {
    this.links.get(id)?.close();
    this.links.delete(id);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const link of this.links.values()) link.close();
    for (const connection of this.inbound) connection.close();
    const closing = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.sockets.destroyAll();
    await closing;
  }

  private accept(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    const sequence = this.sockets.sequenceOf(socket);
    const connection: InboundConnection = new InboundConnection(socket, sequence, this.options, {
      deliver: (message) => this.handler?.(message),
      introduced: (from) => this.introduce(connection, from),
      closed: () => this.inbound.delete(connection),
    });
    this.inbound.add(connection);
  }

  /**
   * A peer that reconnects leaves its old connection behind; only the newest is kept.
   * Newest by accept order, not by whose hello is read last: an older connection whose
   * hello arrives late (a delaying forwarder) would deliver older messages after newer
   * ones, so it is refused. Returns whether `connection` may go on.
   */
  private introduce(connection: InboundConnection, from: string): boolean {
    if (connection.sequence < (this.newestIntroduced.get(from) ?? -1)) return false;
    this.newestIntroduced.set(from, connection.sequence);
    for (const other of this.inbound) {
      if (other !== connection && other.from === from) other.close();
    }
    this.forgetSettled();
    return true;
  }

  /**
   * An entry matters only while a connection accepted before it may still say hello;
   * past inboundConnectionsMax entries (senders name themselves), the others go.
   */
  private forgetSettled(): void {
    if (this.newestIntroduced.size <= this.options.inboundConnectionsMax) return;
    let oldestPending = Number.POSITIVE_INFINITY;
    for (const connection of this.inbound) {
      if (connection.from === null) oldestPending = Math.min(oldestPending, connection.sequence);
    }
    for (const [from, sequence] of this.newestIntroduced) {
      if (sequence < oldestPending) this.newestIntroduced.delete(from);
    }
  }
}

/**
 * Raw connections in the order the listener accepted them, TLS handshakes included (so
 * close() can end those too: server.close() waits for each). The order is that of the
 * TCP accept, not of the handshake's end, which jitter can swap.
 */
class AcceptedSockets {
  private readonly sockets = new Set<net.Socket>();
  /** A TLS socket and the raw one under it share the remote address and port. */
  private readonly sequenceByRemote = new Map<string, number>();
  private acceptedCount = 0;

  add(socket: net.Socket): void {
    const sequence = this.acceptedCount++;
    const remote = remoteLabel(socket);
    this.sockets.add(socket);
    this.sequenceByRemote.set(remote, sequence);
    socket.once('close', () => {
      this.sockets.delete(socket);
      if (this.sequenceByRemote.get(remote) === sequence) this.sequenceByRemote.delete(remote);
    });
  }

  /** A socket whose raw connection is already gone counts as the newest (it closes anyway). */
  sequenceOf(socket: net.Socket): number {
    return this.sequenceByRemote.get(remoteLabel(socket)) ?? this.acceptedCount++;
  }

  destroyAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }
}

interface InboundEvents {
  deliver(message: PeerMessage): void;
  /** Whether a connection from `from` may go on (false: a newer one is already in). */
  introduced(from: string): boolean;
  closed(): void;
}

/** One connection a peer opened to this node: a hello, then batches. */
class InboundConnection {
  /** The sender, once its hello was accepted. */
  from: string | null = null;
  private readonly reader: FrameReader;
  /** Under TLS, the peer's certificate, which must name the sender of every message. */
  private readonly certificate: tls.PeerCertificate | null;
  private helloTimer: NodeJS.Timeout | null;
  private frameTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly socket: net.Socket,
    /** The accept order (see AcceptedSockets): which of two connections is newer. */
    readonly sequence: number,
    private readonly options: TcpTransportOptions,
    private readonly events: InboundEvents,
  ) {
    this.reader = new FrameReader(options.frameBytesMax);
    this.certificate = socket instanceof tls.TLSSocket ? socket.getPeerCertificate() : null;
    socket.setNoDelay(true);
    // A connection that never introduces itself would hold a slot for ever. A deadline
    // from accept, not socket.setTimeout: that restarts on every byte, so a trickle
    // would hold the slot for ever.
    this.helloTimer = setTimeout(
      () => this.refuse(`no hello within ${options.connectTimeoutMs} ms`),
      options.connectTimeoutMs,
    );
    socket.on('data', (chunk: Buffer) => this.read(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.clearTimers();
      events.closed();
    });
  }

  private read(chunk: Buffer): void {
    let frames = 0;
    const problem = this.reader.push(chunk, (frame) => {
      frames++;
      this.receive(frame);
    });
    if (problem !== null) {
      this.refuse(problem);
      return;
    }
    this.watchFrame(frames > 0);
  }

  /**
   * A frame begun must end within frameTimeoutMs: a peer that stalls (or trickles) in
   * the middle of one would otherwise hold up to frameBytesMax here for ever. The
   * deadline restarts with each frame that ends, so a busy stream is never cut.
   */
  private watchFrame(frameEnded: boolean): void {
    const begun = this.reader.bufferedBytes > 0;
    if (this.frameTimer !== null && (frameEnded || !begun)) {
      clearTimeout(this.frameTimer);
      this.frameTimer = null;
    }
    if (!begun || this.frameTimer !== null || this.socket.destroyed) return;
    const { frameTimeoutMs } = this.options;
    this.frameTimer = setTimeout(() => {
      const held = this.reader.bufferedBytes;
      this.refuse(`a frame begun ${frameTimeoutMs} ms ago is not whole (${held} bytes held)`);
    }, frameTimeoutMs);
  }

  private clearTimers(): void {
    if (this.helloTimer !== null) clearTimeout(this.helloTimer);
    if (this.frameTimer !== null) clearTimeout(this.frameTimer);
    this.helloTimer = null;
    this.frameTimer = null;
  }

  close(): void {
    this.socket.destroy();
  }

  private receive(frame: Frame): void {
    if (this.socket.destroyed) return;
    if (this.from === null) {
      this.hello(frame);
      return;
    }
    if (frame.type !== FrameType.batch) {
      this.refuse(`unexpected frame type ${frame.type} after the hello`);
      return;
    }
    const decoded = decodeBatch(frame.payload);
    // A batch that does not decode is dropped whole; the connection goes on, as the
    // framing around it was sound. The node checks each decoded message itself.
    if (typeof decoded === 'string') {
      this.options.onRejected?.(this.from, decoded);
      return;
    }
    for (const message of decoded) {
      // The certificate vouched for the hello's sender only: a message in the name of
      // another node would let one node speak for another.
      const sender = claimedSender(message);
      if (this.certificate !== null && sender !== this.from) {
        reportAuthFailure(
          this.options,
          this.from,
          'wrong_node_id',
          `a message from ${this.from} (certificate ${describeCertificate(this.certificate)}) claims to come from ${String(sender)}; dropped`,
        );
        continue;
      }
      this.events.deliver(message);
    }
  }

  private hello(frame: Frame): void {
    if (frame.type !== FrameType.hello) {
      this.refuse(`expected a hello frame first, got type ${frame.type}`);
      return;
    }
    const hello = decodeHello(frame.payload);
    if (typeof hello === 'string') {
      this.refuse(hello);
      return;
    }
    if (hello.to !== this.options.id) {
      this.refuse(`hello from ${hello.from} is meant for ${hello.to}, this is ${this.options.id}`);
      return;
    }
    if (this.certificate !== null) {
      const problem = peerIdentityProblem(this.certificate, hello.from);
      if (problem !== null) {
        reportAuthFailure(this.options, remoteLabel(this.socket), problem.reason, problem.detail);
        this.socket.destroy();
        return;
      }
    }
    this.from = hello.from;
    if (this.helloTimer !== null) clearTimeout(this.helloTimer);
    this.helloTimer = null;
    if (!this.events.introduced(hello.from)) {
      this.refuse(`a newer connection from ${hello.from} is already in; this older one is closed`);
    }
  }

  private refuse(problem: string): void {
    if (this.socket.destroyed) return;
    this.options.onRejected?.(this.from ?? remoteLabel(this.socket), problem);
    this.socket.destroy();
  }
}

function decodeHello(payload: Buffer): Hello | string {
  let hello: unknown;
  try {
    hello = packr.unpack(payload);
  } catch (error) {
    return `undecodable hello: ${String(error)}`;
  }
  const { from, to } = (hello ?? {}) as Record<string, unknown>;
  if (typeof from !== 'string' || typeof to !== 'string' || from === '') {
    return 'hello: expected { from, to } strings';
  }
  return { from, to };
}

function decodeBatch(payload: Buffer): PeerMessage[] | string {
  let batch: unknown;
  try {
    batch = packr.unpack(payload);
  } catch (error) {
    return `undecodable batch: ${String(error)}`;
  }
  return Array.isArray(batch) ? (batch as PeerMessage[]) : 'batch: expected an array';
}

/** The outbound side towards one peer: a bounded queue and one connection. */
class PeerLink {
  private readonly queue: PeerMessage[] = [];
  private socket: net.Socket | null = null;
  private flushScheduled = false;
  private writable = true;
  private readonly backoff: ReconnectBackoff;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly peer: NodeId,
    readonly address: string,
    private readonly options: TcpTransportOptions,
  ) {
    this.backoff = new ReconnectBackoff(options.reconnectDelayMsMin, options.reconnectDelayMsMax);
  }

  enqueue(message: PeerMessage): void {
    if (this.queue.length >= this.options.queueMessagesMax) {
      this.queue.shift();
      this.options.onDrop?.(this.peer, 'queue full');
    }
    this.queue.push(message);
    // Everything sent in this turn of the event loop (a leader's appends to one peer,
    // its answers to forwarded writes) leaves as one frame.
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  close(): void {
    this.closed = true;
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.socket?.destroy();
  }

  private flush(): void {
    if (this.closed || this.reconnectTimer !== null || this.queue.length === 0) return;
    const socket = this.socket ?? this.open();
    // Past the socket's buffer, messages wait in the (bounded) queue rather than in
    // Node's (unbounded) write buffer; 'drain' resumes.
    if (!this.writable) return;
    const frames: Buffer[] = [];
    while (this.queue.length > 0) {
      this.frame(this.queue.splice(0, this.options.batchMessagesMax), frames);
    }
    if (frames.length === 0) return;
    this.writable = socket.write(
      frames.length === 1 ? (frames[0] as Buffer) : Buffer.concat(frames),
    );
  }

  /** One frame per batch; a batch too big for a frame is halved, a single message dropped. */
  private frame(batch: PeerMessage[], into: Buffer[]): void {
    const payload = packr.pack(batch);
    if (payload.length <= this.options.frameBytesMax) {
      into.push(encodeFrame(FrameType.batch, payload));
      return;
    }
    if (batch.length === 1) {
      this.options.onDrop?.(
        this.peer,
        `message of ${payload.length} bytes exceeds runtime.peerFrameBytesMax (${this.options.frameBytesMax})`,
      );
      return;
    }
    const half = Math.ceil(batch.length / 2);
    this.frame(batch.slice(0, half), into);
    this.frame(batch.slice(half), into);
  }

  private open(): net.Socket {
    const { host, port } = splitHostPort(this.address);
    const { tls: store, connectTimeoutMs } = this.options;
    // Under TLS the server must be the node this link is for, not only a member.
    const socket =
      store === undefined
        ? net.connect({ host, port })
        : tls.connect({
            host,
            port,
            ...(store instanceof CertificateStore ? store.current : store),
            checkServerIdentity: checkServerNode(this.peer),
          });
    this.socket = socket;
    this.writable = true;
    // No Nagle: a frame is a whole batch, which must not wait for the previous one's ACK.
    // (tls.connect ignores a noDelay option; strace shows setNoDelay reaching both.)
    socket.setNoDelay(true);
    socket.setTimeout(connectTimeoutMs, () => socket.destroy());
    socket.once(store === undefined ? 'connect' : 'secureConnect', () => socket.setTimeout(0));
    // Written before the connection is up: the socket sends it first once it is.
    const hello: Hello = { from: this.options.id, to: this.peer };
    socket.write(encodeFrame(FrameType.hello, packr.pack(hello)));
    socket.on('drain', () => {
      if (this.socket !== socket) return;
      this.writable = true;
      this.flush();
    });
    // The peer never answers on this connection; reading discards whatever comes.
    socket.resume();
    socket.on('error', () => {});
    socket.on('close', () => this.broken(socket));
    this.backoff.opened();
    return socket;
  }

  /** Drops the connection and schedules a reconnect, doubling the delay each time (full jitter). */
  private broken(socket: net.Socket): void {
    if (this.socket !== socket || this.closed) return;
    this.socket = null;
    const delayMs = this.backoff.nextDelayMs();
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.flush();
    }, delayMs);
  }
}

function reportAuthFailure(
  options: TcpTransportOptions,
  peer: string,
  reason: AuthFailureReason,
  detail: string,
): void {
  if (options.onAuthFailure !== undefined) options.onAuthFailure(peer, reason, detail);
  else options.onRejected?.(peer, detail);
}

function remoteLabel(socket: net.Socket): string {
  return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
}
