import { createServer } from 'node:net';

/**
 * Below the kernel's ephemeral range (32768-60999 on Linux by default), so an outgoing
 * connection, which takes an ephemeral port, cannot grab a port between the moment it
 * is picked here and the moment a node binds it.
 */
const PORT_MIN = 20_000;
const PORT_MAX = 32_000;
const ATTEMPTS_MAX = 200;
/** Never the same port twice from one process: a cluster picks all its ports before binding any. */
const handedOut = new Set<number>();

/** A loopback port that was free a moment ago; tests bind servers to it. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < ATTEMPTS_MAX; attempt++) {
    const port = PORT_MIN + Math.floor(Math.random() * (PORT_MAX - PORT_MIN));
    if (handedOut.has(port) || !(await bindable(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port in ${PORT_MIN}..${PORT_MAX} after ${ATTEMPTS_MAX} attempts`);
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
