import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Server } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { MetricsTls } from '../config/index.ts';
import type { NodeMetrics } from '../node/metrics.ts';
import type { CertificateStore } from '../transport/certificate-store.ts';
import type { AuthFailureListener } from '../transport/peer-identity.ts';

export interface MetricsTlsOptions {
  /** tls.metrics: plaintext, tls (HTTPS) or mutual (HTTPS with a client certificate of the CA). */
  readonly mode: MetricsTls;
  /** The node's certificates; null (no tls section): always plaintext. */
  readonly store: CertificateStore | null;
  readonly onAuthFailure?: AuthFailureListener;
}

/**
 * Serves /metrics for Prometheus on the node's metricsAddress, over HTTP or HTTPS with
 * the node's certificate (reloaded with it on SIGHUP).
 */
export async function serveMetrics(
  address: string,
  metrics: NodeMetrics,
  tls: MetricsTlsOptions,
): Promise<Server> {
  const { host, port } = splitAddress(address);
  const handle = (request: IncomingMessage, response: ServerResponse): void => {
    if (request.url !== '/metrics') {
      response.writeHead(404).end('not found: try /metrics\n');
      return;
    }
    metrics.render().then(
      ({ contentType, body }) => response.writeHead(200, { 'content-type': contentType }).end(body),
      (error: unknown) => response.writeHead(500).end(String(error)),
    );
  };
  const store = tls.store;
  let server: Server;
  if (store === null || tls.mode === 'plaintext') server = createHttpServer(handle);
  else {
    const mutual = tls.mode === 'mutual';
    const https = createHttpsServer(
      { ...store.current, requestCert: mutual, rejectUnauthorized: mutual },
      handle,
    );
    const unsubscribe = store.subscribe((material) => https.setSecureContext({ ...material }));
    https.once('close', unsubscribe);
    https.on('tlsClientError', (error: Error, socket: TLSSocket) => {
      const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
      tls.onAuthFailure?.(peer, 'tls_handshake', `TLS handshake refused: ${error.message}`);
      socket.destroy();
    });
    server = https;
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  return {
    host: address.slice(0, colon).replace(/^\[|\]$/g, ''),
    port: Number(address.slice(colon + 1)),
  };
}
