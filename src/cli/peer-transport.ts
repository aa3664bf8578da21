import type { Logger } from 'pino';
import type { ClusterFileConfig, NodeConfig, TlsMaterial } from '../config/index.ts';
import type { Transport } from '../node/transport.ts';
import { GrpcTransport } from '../transport/grpc.ts';
import { TcpTransport } from '../transport/tcp.ts';
import { type NodeId, nodeId } from '../util/ids.ts';
import { channelCredentials, serverCredentials } from './target.ts';

/** Messages per frame (TCP) or stream write (gRPC). */
const PEER_BATCH_MESSAGES_MAX = 256;

/**
 * The peer transport the config names (`peerTransport`), listening on this node's peer
 * port, with the same mutual TLS material either way.
 */
export function startPeerTransport(
  config: ClusterFileConfig,
  self: NodeConfig,
  tls: TlsMaterial | null,
  logger: Logger,
): Promise<Transport> {
  const common = {
    id: nodeId(self.id),
    // Others dial peerAddress; it leads here through whatever forwards (NAT, a proxy).
    listenAddress: self.peerListenAddress,
    peers: new Map<NodeId, string>(config.nodes.map((node) => [nodeId(node.id), node.peerAddress])),
    queueMessagesMax: config.runtime.peerQueueMessagesMax,
    batchMessagesMax: PEER_BATCH_MESSAGES_MAX,
    reconnectDelayMsMin: config.runtime.peerReconnectDelayMsMin,
    reconnectDelayMsMax: config.runtime.peerReconnectDelayMsMax,
  };
  const rejected =
    (message: string) =>
    (from: string, problem: string): void =>
      logger.warn({ from, problem }, message);
  if (config.peerTransport === 'tcp') {
    return TcpTransport.start({
      ...common,
      frameBytesMax: config.runtime.peerFrameBytesMax,
      connectTimeoutMs: config.runtime.peerConnectTimeoutMs,
      frameTimeoutMs: config.runtime.peerFrameTimeoutMs,
      inboundConnectionsMax: config.runtime.peerInboundConnectionsMax,
      // Framing, hellos and TLS handshakes too, not only batches.
      onRejected: rejected('refused peer traffic'),
      // A message over peerFrameBytesMax is dropped for ever (Raft resends the same), so
      // it must be seen. 'queue full' is not logged: it is what a peer that is down costs
      // every message, and Raft resends those.
      onDrop: (peer: NodeId, reason: string) => {
        if (reason !== 'queue full') logger.warn({ peer, reason }, 'dropped a peer message');
      },
      ...(tls === null ? {} : { tls }),
    });
  }
  return GrpcTransport.start({
    ...common,
    onRejected: rejected('dropped a malformed peer batch'),
    credentials: { server: serverCredentials(tls), client: channelCredentials(tls) },
  });
}
