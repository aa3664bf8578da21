import { createInterface } from 'node:readline';
import { LinkProxy } from './proxy.ts';
import { type HostReply, type HostRequest, READY_LINE } from './proxy-host.ts';

/**
 * Entry point of a proxy host process (see proxy-host.ts): answers one JSON request
 * per stdin line with one JSON reply per stdout line, and exits when stdin closes.
 */
const proxies = new Map<string, LinkProxy>();

function reply(message: HostReply): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

async function handle(id: number, request: HostRequest): Promise<void> {
  switch (request.op) {
    case 'start': {
      if (proxies.has(request.name)) throw new Error(`a proxy named ${request.name} already runs`);
      const proxy = await LinkProxy.start(request);
      proxies.set(request.name, proxy);
      reply({ id, ok: true, address: proxy.address });
      return;
    }
    case 'set':
      named(request.name).setFaults(request.faults);
      reply({ id, ok: true });
      return;
    case 'reset':
      named(request.name).resetConnections();
      reply({ id, ok: true });
      return;
    case 'stats':
      reply({
        id,
        ok: true,
        stats: Object.fromEntries([...proxies].map(([name, proxy]) => [name, proxy.stats()])),
      });
      return;
    case 'close':
      await closeAll();
      reply({ id, ok: true });
      process.exit(0);
  }
}

function named(name: string): LinkProxy {
  const proxy = proxies.get(name);
  if (proxy === undefined)
    throw new Error(`no proxy named ${name} (have: ${[...proxies.keys()].join(', ') || 'none'})`);
  return proxy;
}

async function closeAll(): Promise<void> {
  await Promise.all([...proxies.values()].map((proxy) => proxy.close()));
  proxies.clear();
}

createInterface({ input: process.stdin })
  .on('line', (line) => {
    let parsed: { id?: unknown } & Partial<HostRequest>;
    try {
      parsed = JSON.parse(line) as typeof parsed;
    } catch (error) {
      process.stderr.write(`proxy host: not JSON: ${(error as Error).message}\n`);
      return;
    }
    const id = typeof parsed.id === 'number' ? parsed.id : -1;
    handle(id, parsed as HostRequest).catch((error: unknown) =>
      reply({ id, ok: false, error: error instanceof Error ? error.message : String(error) }),
    );
  })
  .on('close', () => {
    void closeAll().then(() => process.exit(0));
  });
process.stdout.write(`${READY_LINE}\n`);
