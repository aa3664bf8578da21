import type { PeerCertificate } from 'node:tls';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Packr } from 'msgpackr';
import type { PeerMessage } from '../node/peer-message.ts';
import { peerRecipient } from '../node/peer-message.ts';
import type { Transport } from '../node/transport.ts';
import type { NodeId } from '../util/ids.ts';
import { ReconnectBackoff } from './backoff.ts';
import { watchTlsHandshakeFailures } from './grpc-handshakes.ts';
import {
  type AuthFailureListener,
  claimedSender,
  describeCertificate,
  peerIdentityProblem,
} from './peer-identity.ts';

/**
 * Peer traffic over gRPC: one long-lived stream from each node to each peer, carrying
 * batches of msgpack-encoded messages. Sending never blocks: each peer has a bounded
 * queue, and when it is full the oldest message is dropped (Raft retransmits what
 * matters). A broken stream is reopened with exponential backoff and jitter.
 */
export interface GrpcTransportOptions {
  readonly id: NodeId;
  /** host:port to listen on; port 0 picks a free one. */
  readonly listenAddress: string;
  readonly peers: ReadonlyMap<NodeId, string>;
  readonly queueMessagesMax: number;
  readonly batchMessagesMax: number;
  readonly reconnectDelayMsMin: number;
  readonly reconnectDelayMsMax: number;
  /**
   * Mutual TLS. `client` may depend on the peer dialled, so that a node checks that the
   * server it reaches is that node (see peer-identity.ts). Under TLS the server side
   * checks every stream: its certificate must name the node its messages come from.
   */
  readonly credentials?: {
    readonly server: grpc.ServerCredentials;
    readonly client: grpc.ChannelCredentials | ((peer: NodeId) => grpc.ChannelCredentials);
  };
  /**
   * The largest gRPC message (one batch) sent or received; a bigger one fails its stream
   * (and is resent by Raft on the next). Unset: grpc-js's defaults (4 MiB received).
   */
  readonly messageBytesMax?: number;
  /** A stream refused for its certificate (not a node's, or another node's). */
  readonly onAuthFailure?: AuthFailureListener;
  readonly onDrop?: (peer: NodeId, reason: string) => void;
  /**
   * A batch from `peer` that does not decode was dropped whole. The node checks each
   * decoded message itself (see peer-message-check.ts); this is for bytes that never
   * become messages.
   */
  readonly onRejected?: (peer: string, problem: string) => void;
}

interface WirePeerMessage {
  readonly from: string;
  readonly to: string;
  readonly payload: Uint8Array;
}

type RaftClient = grpc.Client & {
  Stream(): grpc.ClientDuplexStream<WirePeerMessage, WirePeerMessage>;
};

// Pinned options: both ends of a stream must agree on the encoding.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

const PROTO_PATH = fileURLToPath(new URL('../../proto/raft.proto', import.meta.url));

function loadRaftService(): {
  service: grpc.ServiceDefinition;
  Client: grpc.ServiceClientConstructor;
} {
  const definition = protoLoader.loadSync(PROTO_PATH, {
    keepCase: true,
    longs: String,
    defaults: true,
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    dlm: { raft: { v1: { Raft: grpc.ServiceClientConstructor } } };
  };
  const Client = loaded.dlm.raft.v1.Raft;
  return { service: Client.service, Client };
}

export class GrpcTransport implements Transport {
  readonly id: NodeId;
  private handler: ((message: PeerMessage) => void) | null = null;
  private readonly links = new Map<NodeId, PeerLink>();
  private readonly inbound = new Set<grpc.ServerDuplexStream<WirePeerMessage, WirePeerMessage>>();
  private closed = false;

  private constructor(
    private readonly options: GrpcTransportOptions,
    private readonly server: grpc.Server,
    readonly port: number,
    private readonly Client: grpc.ServiceClientConstructor,
  ) {
    this.id = options.id;
    for (const [peer, address] of options.peers) this.addPeer(peer, address);
  }

  static async start(options: GrpcTransportOptions): Promise<GrpcTransport> {
    const { service, Client } = loadRaftService();
    const server = new grpc.Server(messageSizeOptions(options.messageBytesMax));
    let transport: GrpcTransport | null = null;
    server.addService(service, {
      Stream: (call: grpc.ServerDuplexStream<WirePeerMessage, WirePeerMessage>) =>
        transport?.accept(call),
    });
    const credentials = options.credentials?.server ?? grpc.ServerCredentials.createInsecure();
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(options.listenAddress, credentials, (error, bound) =>
        error ? reject(error) : resolve(bound),
      );
    });
    if (options.onAuthFailure !== undefined) {
      watchTlsHandshakeFailures(server, options.onAuthFailure);
    }
    transport = new GrpcTransport(options, server, port, Client);
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
    const client = this.options.credentials?.client;
    const credentials =
      client === undefined
        ? grpc.credentials.createInsecure()
        : typeof client === 'function'
          ? client(id)
          : client;
    // grpc-js keeps its own reconnect backoff per channel (1 s, x1.6, up to 120 s) and,
    // while it waits, fails every new stream at once with UNAVAILABLE: the messages
    // written into it are lost, so a peer that came up (late start, restart) stayed
    // unreachable for seconds (2.6-5.9 s measured). Its backoff follows the link's own.
    const raftClient = new this.Client(address, credentials, {
      'grpc.initial_reconnect_backoff_ms': this.options.reconnectDelayMsMin,
      'grpc.max_reconnect_backoff_ms': this.options.reconnectDelayMsMax,
      ...messageSizeOptions(this.options.messageBytesMax),
    }) as unknown as RaftClient;
    this.links.set(id, new PeerLink(id, address, raftClient, this.options));
  }

  removePeer(id: NodeId): void {
    this.links.get(id)?.close();
    this.links.delete(id);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const link of this.links.values()) link.close();
    for (const call of this.inbound) call.end();
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
  }

  private accept(call: grpc.ServerDuplexStream<WirePeerMessage, WirePeerMessage>): void {
    this.inbound.add(call);
    const auth = call.getAuthContext();
    // Under TLS, which node this stream may speak for is settled by its first write
    // (the first `from` its certificate names); plaintext streams are not checked here
    // (the node's cluster-id check still applies to every message).
    const certificate = auth?.transportSecurityType === 'ssl' ? auth.sslPeerCertificate : null;
    let verifiedAs: string | null = null;
    call.on('data', (wire: WirePeerMessage) => {
      if (certificate !== null && verifiedAs !== wire.from) {
        const problem = peerIdentityProblem(certificate, wire.from);
        if (problem !== null) {
          this.options.onAuthFailure?.(call.getPeer(), problem.reason, problem.detail);
          call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: problem.detail });
          return;
        }
        verifiedAs = wire.from;
      }
      this.deliver(wire, certificate);
    });
    call.on('end', () => {
      this.inbound.delete(call);
      call.end();
    });
    call.on('error', () => this.inbound.delete(call));
  }

  /**
   * `certified`: under TLS, the certificate that vouched for wire.from (null: plaintext);
   * described only when a message is refused, not for every batch.
   */
  private deliver(wire: WirePeerMessage, certified: PeerCertificate | null | undefined): void {
    if (this.closed || wire.to !== this.id) return;
    // The payload is whatever the peer sent: a throw here would escape into grpc-js's
    // event handler. The messages in a batch that decodes are checked by the node.
    let batch: unknown;
    try {
      batch = packr.unpack(wire.payload);
    } catch (error) {
      this.options.onRejected?.(wire.from, `undecodable batch: ${String(error)}`);
      return;
    }
    if (!Array.isArray(batch)) {
      this.options.onRejected?.(wire.from, 'batch: expected an array');
      return;
    }
    for (const message of batch as PeerMessage[]) {
      // The certificate vouches for wire.from only: a message claiming another sender
      // inside the batch would let one node speak for another.
      const sender = claimedSender(message);
      if (certified !== null && sender !== wire.from) {
        this.options.onAuthFailure?.(
          wire.from,
          'wrong_node_id',
          `a message from ${wire.from} (certificate ${describeCertificate(certified)}) claims to come from ${String(sender)}; dropped`,
        );
        continue;
      }
      this.handler?.(message);
    }
  }
}

/** grpc-js channel and server options bounding message sizes both ways. */
export function messageSizeOptions(bytesMax: number | undefined): grpc.ChannelOptions {
  return bytesMax === undefined
    ? {}
    : { 'grpc.max_send_message_length': bytesMax, 'grpc.max_receive_message_length': bytesMax };
}

/** The outbound side towards one peer: a bounded queue and one stream. */
class PeerLink {
  private readonly queue: PeerMessage[] = [];
  private stream: grpc.ClientDuplexStream<WirePeerMessage, WirePeerMessage> | null = null;
  private readonly backoff: ReconnectBackoff;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private writable = true;
  private closed = false;
  /** The flush that takes what this turn of the event loop enqueued (see `enqueue`). */
  private flushScheduled = false;

  constructor(
    private readonly peer: NodeId,
    readonly address: string,
    private readonly client: RaftClient,
    private readonly options: GrpcTransportOptions,
  ) {
    this.backoff = new ReconnectBackoff(options.reconnectDelayMsMin, options.reconnectDelayMsMax);
  }

  enqueue(message: PeerMessage): void {
    if (this.queue.length >= this.options.queueMessagesMax) {
      this.queue.shift();
      this.options.onDrop?.(this.peer, 'queue full');
    }
    this.queue.push(message);
    // One stream write per peer per turn of the event loop, not one per message: the
    // leader appends for every proposal, each in the callback of its own client call,
    // and a follower acknowledges every append; each gRPC message costs both ends far
    // more CPU than its msgpack bytes. setImmediate takes what every I/O callback of
    // this turn enqueued. A link with no stream yet flushes on a microtask instead, as
    // soon as before. Opening on setImmediate made test/node/grpc-membership.test.ts lose
    // a start-up address announcement, though not because the open came later: n1 and n2
    // then elected sooner, so n1's announcement to n3 (started last) fell inside grpc-js's
    // channel backoff towards n3, which failed the stream and lost what was written. That
    // backoff now follows the link's own (see addPeer); the microtask keeps the old timing.
    // A full batch leaves at once: waiting for the turn to end would gain nothing, and
    // a turn that enqueued past queueMessagesMax would drop messages that could have gone.
    // A queue bound below the batch size fills first, so it counts as full too; over a
    // link that cannot take them (not writable, reconnecting) flush writes nothing and
    // the bound drops the oldest as before.
    if (
      this.queue.length >= Math.min(this.options.batchMessagesMax, this.options.queueMessagesMax)
    ) {
      this.flushScheduled = false;
      this.flush();
      return;
    }
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    const flushNow = () => {
      if (!this.flushScheduled) return;
      this.flushScheduled = false;
      this.flush();
    };
    if (this.stream === null) queueMicrotask(flushNow);
    else setImmediate(flushNow);
  }

  close(): void {
    // What was enqueued before the close goes out first, as when every enqueue wrote at
    // once: a link replaced for a new address (addPeer) still delivers it on the old one.
    if (this.flushScheduled) {
      this.flushScheduled = false;
      this.flush();
    }
    this.closed = true;
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.stream?.end();
    this.client.close();
  }

  private flush(): void {
    if (this.closed || this.reconnectTimer !== null) return;
    const stream = this.stream ?? this.open();
    while (this.writable && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.options.batchMessagesMax);
      const payload = packr.pack(batch);
      this.writable = stream.write({ from: this.options.id, to: this.peer, payload });
    }
  }

  private open(): grpc.ClientDuplexStream<WirePeerMessage, WirePeerMessage> {
    const stream = this.client.Stream();
    this.stream = stream;
    this.writable = true;
    stream.on('drain', () => {
      this.writable = true;
      this.flush();
    });
    // The peer never answers on this stream; reading keeps grpc-js flow control happy.
    stream.on('data', () => {});
    stream.on('error', () => this.broken(stream));
    stream.on('end', () => this.broken(stream));
    this.backoff.opened();
    return stream;
  }

  /** Drops the stream and schedules a reconnect, doubling the delay each time (full jitter). */
  private broken(stream: grpc.ClientDuplexStream<WirePeerMessage, WirePeerMessage>): void {
    if (this.stream !== stream || this.closed) return;
    this.stream = null;
    const delayMs = this.backoff.nextDelayMs();
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.flush();
    }, delayMs);
  }
}
