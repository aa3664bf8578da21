import type { Transport } from '../../src/node/transport.ts';
import { GrpcTransport, type GrpcTransportOptions } from '../../src/transport/grpc.ts';
import { TcpTransport } from '../../src/transport/tcp.ts';

/** Both peer transports, for tests that run over each (TCP is the default). */
export const PEER_TRANSPORTS = ['grpc', 'tcp'] as const;
export type PeerTransportName = (typeof PEER_TRANSPORTS)[number];

/** Plaintext, with the TCP transport's own limits at their defaults' order of magnitude. */
export function startPeerTransport(
  kind: PeerTransportName,
  options: Omit<GrpcTransportOptions, 'credentials'>,
): Promise<Transport> {
  return kind === 'tcp'
    ? TcpTransport.start({
        ...options,
        frameBytesMax: 16 << 20,
        connectTimeoutMs: 2_000,
        frameTimeoutMs: 10_000,
        inboundConnectionsMax: 128,
      })
    : GrpcTransport.start(options);
}
