import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';

/**
 * A TCP proxy for one upstream address that can hold back the upstream's answers for
 * `answerDelayMs` (bytes keep their order), and can be cut (connections reset, new ones
 * refused) and restored on the same port: a slow or broken network path for a client.
 * Requests are passed on at once, so a server sees a call's deadline start when the
 * client sent it, and its answer reaches the client `answerDelayMs` after it was sent.
 */
export class DelayProxy {
  /** Applies to answer bytes that arrive from the upstream from now on. */
  answerDelayMs = 0;
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
    const pending: { atMs: number; chunk: Buffer }[] = [];
    let timer: NodeJS.Timeout | null = null;
    let upstreamEnded = false;
    const pump = (): void => {
      timer = null;
      const nowMs = performance.now();
      for (let next = pending[0]; next !== undefined && next.atMs <= nowMs; next = pending[0]) {
        pending.shift();
        if (!client.destroyed) client.write(next.chunk);
      }
      const next = pending[0];
      if (next !== undefined) timer = setTimeout(pump, Math.max(0, next.atMs - nowMs));
      else if (upstreamEnded) client.destroy();
    };
    upstream.on('data', (chunk: Buffer) => {
      // Never before an earlier chunk, even if the delay was lowered in between.
      const lastAtMs = pending.at(-1)?.atMs ?? 0;
      pending.push({ atMs: Math.max(performance.now() + this.answerDelayMs, lastAtMs), chunk });
      if (timer === null) pump();
    });
    client.on('data', (chunk: Buffer) => upstream.write(chunk));
    const closeUpstream = (): void => {
      upstream.destroy();
      if (timer !== null) clearTimeout(timer);
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('close', closeUpstream);
    client.on('error', closeUpstream);
    const upstreamClosed = (): void => {
      upstreamEnded = true;
      if (timer === null) pump();
    };
    upstream.on('close', upstreamClosed);
    upstream.on('error', upstreamClosed);
  }
}
