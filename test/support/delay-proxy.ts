import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';

/**
 * A TCP proxy for one upstream address that can hold back the upstream's answers for
 * `answerDelayMs` and the client's requests for `requestDelayMs` (bytes keep their
 * order), and can be cut (connections reset, new ones refused) and restored on the same
 * port: a slow or broken network path for a client. A gRPC deadline travels as a
 * relative timeout, so the server's deadline for a call ends `requestDelayMs` after the
 * client's, and its answer reaches the client `answerDelayMs` after it was sent.
 */
export class DelayProxy {
  /** Applies to answer bytes that arrive from the upstream from now on. */
  answerDelayMs = 0;
  /** Applies to request bytes that arrive from the client from now on. */
  requestDelayMs = 0;
  private readonly sockets = new Set<Socket>();
  private server: Server | null = null;

  private constructor(
    private readonly upstreamPort: number,
    private listenPort: number,
  ) {}

  static async start(upstreamPort: number): Promise<DelayProxy> {
    const proxy = new DelayProxy(upstreamPort, 0);
    await proxy.listen();
    return proxy;
  }

  get port(): number {
    return this.listenPort;
  }

  get address(): string {
    return `127.0.0.1:${this.listenPort}`;
  }

  /** Resets every connection and refuses new ones until restore(). */
  async cut(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    const server = this.server;
    this.server = null;
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  restore(): Promise<void> {
    return this.listen();
  }

  close(): Promise<void> {
    return this.cut();
  }

  private listen(): Promise<void> {
    const server = createServer((client) => this.relay(client));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.listenPort, '127.0.0.1', () => {
        const address = server.address();
        if (address !== null && typeof address === 'object') this.listenPort = address.port;
        resolve();
      });
    });
  }

  private relay(client: Socket): void {
    const upstream = tcpConnect(this.upstreamPort, '127.0.0.1');
    this.sockets.add(client);
    this.sockets.add(upstream);
    const toClient = delayedPipe(upstream, client, () => this.answerDelayMs);
    const toUpstream = delayedPipe(client, upstream, () => this.requestDelayMs);
    const forget = (): void => {
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('close', () => {
      toClient.drop();
      toUpstream.drop();
      upstream.destroy();
      forget();
    });
  }
}

/**
 * Copies `from` to `to`, each chunk `delayMs()` after it arrived and never before an
 * earlier one (even if the delay was lowered in between); once `from` closes and all
 * is written, closes `to`.
 */
function delayedPipe(from: Socket, to: Socket, delayMs: () => number): { drop(): void } {
  const pending: { atMs: number; chunk: Buffer }[] = [];
  let timer: NodeJS.Timeout | null = null;
  let fromClosed = false;
  const pump = (): void => {
    timer = null;
    const nowMs = performance.now();
    for (let next = pending[0]; next !== undefined && next.atMs <= nowMs; next = pending[0]) {
      pending.shift();
      if (!to.destroyed) to.write(next.chunk);
    }
    const next = pending[0];
    if (next !== undefined) timer = setTimeout(pump, Math.max(0, next.atMs - nowMs));
    else if (fromClosed) to.destroy();
  };
  from.on('data', (chunk: Buffer) => {
    const lastAtMs = pending.at(-1)?.atMs ?? 0;
    pending.push({ atMs: Math.max(performance.now() + delayMs(), lastAtMs), chunk });
    if (timer === null) pump();
  });
  const closed = (): void => {
    fromClosed = true;
    if (timer === null) pump();
  };
  from.on('close', closed);
  from.on('error', closed);
  return {
    drop: () => {
      if (timer !== null) clearTimeout(timer);
      pending.length = 0;
    },
  };
}
