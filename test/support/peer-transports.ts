import { serverCredentials } from '../../src/cli/target.ts';
import type { TlsMaterial } from '../../src/config/index.ts';
import type { Transport } from '../../src/node/transport.ts';
import {
  CertificateStore,
  reloadableChannelCredentials,
} from '../../src/transport/certificate-store.ts';
import { GrpcTransport, type GrpcTransportOptions } from '../../src/transport/grpc.ts';
import { checkServerNode } from '../../src/transport/peer-identity.ts';
import { TcpTransport } from '../../src/transport/tcp.ts';
import type { NodeId } from '../../src/util/ids.ts';

/** Both peer transports, for tests that run over each (TCP is the default). */
export const PEER_TRANSPORTS = ['grpc', 'tcp'] as const;
export type PeerTransportName = (typeof PEER_TRANSPORTS)[number];

/**
 * Plaintext, or mutual TLS with `tls` (as dlm serve sets it up: each gRPC link checks
 * the node it reaches), with the TCP transport's own limits at their defaults' order of
 * magnitude.
 */
export function startPeerTransport(
  kind: PeerTransportName,
  options: Omit<GrpcTransportOptions, 'credentials'>,
  tls: TlsMaterial | null = null,
): Promise<Transport> {
  if (kind === 'tcp') {
    return TcpTransport.start({
      ...options,
      frameBytesMax: 16 << 20,
      connectTimeoutMs: 2_000,
      frameTimeoutMs: 10_000,
      inboundConnectionsMax: 128,
      ...(tls === null ? {} : { tls }),
    });
  }
  if (tls === null) return GrpcTransport.start(options);
  const store = new CertificateStore(tls);
  return GrpcTransport.start({
    ...options,
    credentials: {
      server: serverCredentials(tls),
      client: (peer: NodeId) => reloadableChannelCredentials(store, checkServerNode(peer)),
    },
  });
}
