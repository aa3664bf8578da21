import type { Logger } from 'pino';
import type { ClusterFileConfig, NodeConfig } from '../config/index.ts';
import type { Transport } from '../node/transport.ts';
import { GrpcTransport } from '../transport/grpc.ts';
import { TcpTransport } from '../transport/tcp.ts';
import { type NodeId, nodeId } from '../util/ids.ts';
import type { NodeSecurity } from './node-security.ts';

/** Messages per frame (TCP) or stream write (gRPC). */
const PEER_BATCH_MESSAGES_MAX = 256;

/**
 * The peer transport the config names (`peerTransport`), listening on this node's peer
 * port, with the same mutual TLS material either way.
 */
export function startPeerTransport(
  config: ClusterFileConfig,
  self: NodeConfig,
  security: NodeSecurity,
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
    // Under TLS: refused handshakes, and certificates that do not name their sender.
    onAuthFailure: security.authFailures.listener('peer'),
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
      ...(security.store === null ? {} : { tls: security.store }),
    });
  }
  return GrpcTransport.start({
    ...common,
    onRejected: rejected('dropped a malformed peer batch'),
    messageBytesMax: config.runtime.peerMessageBytesMax,
    ...peerCredentials(security),
  });
}

function peerCredentials(
  security: NodeSecurity,
): Pick<Parameters<typeof GrpcTransport.start>[0], 'credentials'> {
  const credentials = security.peerCredentials();
  return credentials === undefined ? {} : { credentials };
}
