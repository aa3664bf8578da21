import { createServer, type Server } from 'node:http';
import type { NodeMetrics } from '../metrics.ts';
import type { ConsoleServer } from './server.ts';

/** The metrics address: /metrics for Prometheus, the rest for the web console. */
export async function startMetricsServer(
  address: string,
  metrics: NodeMetrics,
  console: ConsoleServer,
): Promise<Server> {
  const { host, port } = splitAddress(address);
  const server = createServer((request, response) => {
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
  });
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
