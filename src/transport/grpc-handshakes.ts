import type { Server as NetServer } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type * as grpc from '@grpc/grpc-js';
import type { AuthFailureListener } from './peer-identity.ts';

/**
 * Reports every TLS handshake a gRPC server refused (no client certificate, another CA,
 * an expired one, plaintext on a TLS port). grpc-js has no hook for these: its HTTP/2
 * servers are reached through a private field, read defensively, so that a grpc-js
 * without it only loses the report (returns false), never a connection. Call after
 * bindAsync: each bound port has its own HTTP/2 server.
 */
export function watchTlsHandshakeFailures(
  server: grpc.Server,
  listener: AuthFailureListener,
): boolean {
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map)) return false;
  for (const http2 of servers.keys() as Iterable<NetServer>) {
    if (typeof (http2 as { on?: unknown }).on !== 'function') continue;
    http2.on('tlsClientError', (error: Error, socket: TLSSocket) => {
      const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
      listener(peer, 'tls_handshake', `TLS handshake refused: ${error.message}`);
    });
  }
  return true;
}
