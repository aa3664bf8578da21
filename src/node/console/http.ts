import {
  createServer as createHttpServer,
  type Server as HttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { MetricsTls } from '../../config/index.ts';
import type { CertificateStore } from '../../transport/certificate-store.ts';
import type { AuthFailureListener } from '../../transport/peer-identity.ts';
import { splitHostPort } from '../../util/host-port.ts';
import type { NodeMetrics } from '../metrics.ts';
import type { ConsoleServer } from './server.ts';

export interface MetricsTlsOptions {
  /** tls.metrics: plaintext, tls (HTTPS) or mutual (HTTPS with a client certificate of the CA). */
  readonly mode: MetricsTls;
  /** The node's certificates; null (no tls section): always plaintext. */
  readonly store: CertificateStore | null;
  readonly onAuthFailure?: AuthFailureListener;
}

const PLAINTEXT: MetricsTlsOptions = { mode: 'plaintext', store: null };

/**
 * The metrics address: /metrics for Prometheus, the rest for the web console. Over HTTP,
 * or HTTPS with the node's certificate (reloaded with it on SIGHUP) when tls.metrics says.
 */
export async function startMetricsServer(
  address: string,
  metrics: NodeMetrics,
  console: ConsoleServer,
  tls: MetricsTlsOptions = PLAINTEXT,
): Promise<HttpServer> {
  const { host, port } = splitHostPort(address);
  // A throw inside a request listener is uncaught and ends the process: whatever a
  // request carries must cost it at most a 500.
  const handle = (request: IncomingMessage, response: ServerResponse): void => {
    try {
      route(request, response);
    } catch (error) {
      if (response.headersSent) response.destroy();
      else response.writeHead(500).end(`internal error: ${String(error)}\n`);
    }
  };
  const route = (request: IncomingMessage, response: ServerResponse): void => {
    if (request.url === '/metrics') {
      metrics.render().then(
        ({ contentType, body }) =>
          response.writeHead(200, { 'content-type': contentType }).end(body),
        (error: unknown) => response.writeHead(500).end(String(error)),
      );
      return;
    }
    if (console.handle(request, response)) return;
    response.writeHead(404).end('not found: try /metrics, or / for the console\n');
  };
  const store = tls.store;
  // An HTTPS server listens and closes as an HTTP one does; callers need only that.
  let server: HttpServer;
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
    server = https as unknown as HttpServer;
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
