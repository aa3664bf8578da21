import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { MetricsTls, TlsMaterial } from '../../config/tls.ts';
import type { CertificateStore } from '../../transport/certificate-store.ts';
import { splitHostPort } from '../../util/host-port.ts';

/** How to reach another node's metrics address: its tls.metrics mode and our certificates. */
export interface MetricsClientTls {
  readonly mode: MetricsTls;
  /** The node's current certificates (they change on SIGHUP). */
  readonly material: () => TlsMaterial;
}

/** The node's way to the members' metrics addresses; null when they serve plain HTTP. */
export function metricsClientTls(
  mode: MetricsTls,
  store: CertificateStore | null,
): MetricsClientTls | null {
  if (mode === 'plaintext' || store === null) return null;
  return { mode, material: () => store.current };
}

export interface MetricsAnswer {
  readonly status: number;
  readonly body: string;
}

/** Answers past this are cut: a summary or /metrics page is far smaller. */
const BODY_BYTES_MAX = 8 * 1024 * 1024;

/**
 * GET `path` at a metrics address over HTTP, or over HTTPS checked against the cluster's
 * CA (with the node's own certificate when tls.metrics is mutual), as the address serves
 * it. fetch() takes no CA of its own, so a TLS metrics port needs node:https.
 */
export function metricsGet(
  address: string,
  path: string,
  timeoutMs: number,
  tls: MetricsClientTls | null,
): Promise<MetricsAnswer> {
  const { host, port } = splitHostPort(address);
  const secure = tls !== null && tls.mode !== 'plaintext';
  return new Promise((resolve, reject) => {
    const onAnswer = (response: IncomingMessage): void => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      response.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (bytes > BODY_BYTES_MAX) {
          response.destroy(new Error(`answer over ${BODY_BYTES_MAX} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
      );
      response.on('error', reject);
    };
    const options = { host, port, path, method: 'GET', timeout: timeoutMs };
    const call = secure
      ? httpsRequest({ ...options, ...clientMaterial(tls) }, onAnswer)
      : httpRequest(options, onAnswer);
    call.on('timeout', () => call.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    call.on('error', reject);
    call.end();
  });
}

function clientMaterial(tls: MetricsClientTls): { ca: Buffer; cert?: Buffer; key?: Buffer } {
  const { ca, cert, key } = tls.material();
  return tls.mode === 'mutual' ? { ca, cert, key } : { ca };
}
