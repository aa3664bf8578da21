import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient, type Session } from '../../src/client/index.ts';
import { FakeDlmServer } from '../support/fake-dlm-server.ts';

/**
 * REVIEW (keepalive-batch): a batch takes the earliest safe deadline and the shortest
 * attempt timeout (ttl/6) of its sessions. A cluster answering KeepAlive in 250 ms is
 * fast enough for a 3 s session alone (attempt timeout 500 ms) but not for a 900 ms one
 * (150 ms). Per-session keepalives (main) keep the 3 s session alive; batched, every
 * call that carries it also carries a short session and times out, so it is lost while
 * short sessions keep being opened on the same connection (a worker pool reopening).
 */
let server: FakeDlmServer | null = null;
const clients: DlmClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await server?.close();
  server = null;
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function slowKeepAliveServer(delayMs: number): Promise<FakeDlmServer> {
  let next = 0;
  return FakeDlmServer.start(async (method, request) => {
    switch (method) {
      case 'OpenSession':
        next++;
        return { response: { session_id: String(next), ttl_ms: request.ttl_ms } };
      case 'KeepAlive':
        await sleep(delayMs);
        return { response: { ttl_ms: '0', expired_session_ids: [] } };
      case 'CloseSession':
        return { response: {} };
      default:
        return { status: 12 };
    }
  });
}

async function longSessionSurvives(withShortOnes: boolean): Promise<boolean> {
  server = await slowKeepAliveServer(250);
  const client = new DlmClient({
    endpoints: [`127.0.0.1:${server.port}`],
    transport: 'unary',
    attemptTimeoutMs: 500,
  });
  clients.push(client);
  const long = await client.openSession({ ttlMs: 3_000 });
  let short: Session | null = null;
  const until = Date.now() + 6_000;
  while (Date.now() < until && long.alive) {
    if (withShortOnes && (short === null || !short.alive)) {
      short = await client.openSession({ ttlMs: 900 });
    }
    await sleep(50);
  }
  return long.alive;
}

describe('REVIEW keepalive-batch: sessions of different TTLs on one connection', () => {
  it('control: a 3 s session alone survives a cluster answering KeepAlive in 250 ms', async () => {
    expect(await longSessionSurvives(false)).toBe(true);
  }, 20_000);

  it('a 3 s session survives while short (900 ms) sessions come and go on its connection', async () => {
    expect(await longSessionSurvives(true)).toBe(true);
  }, 20_000);
});
