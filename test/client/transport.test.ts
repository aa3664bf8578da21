import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient, DlmClientError } from '../../src/client/index.ts';
import { ApiCluster, eventually, IDS } from '../api/harness.ts';
import { FakeDlmServer } from '../support/fake-dlm-server.ts';

/**
 * How the client's session calls travel: over a Lock.Session stream by default, over
 * unary calls at a node that has no stream (UNIMPLEMENTED) or when asked; and a stream
 * that breaks under a waiting Acquire is handled as a unary call cut off mid-flight.
 */
let client: DlmClient | null = null;
let cluster: ApiCluster | null = null;
let fake: FakeDlmServer | null = null;

afterEach(async () => {
  client?.close();
  client = null;
  await cluster?.stop();
  cluster = null;
  await fake?.close();
  fake = null;
});

describe('client transport', () => {
  it('falls back to unary calls at a node that answers the stream UNIMPLEMENTED', async () => {
    fake = await FakeDlmServer.start((method, request) => {
      switch (method) {
        case 'OpenSession':
          return { response: { session_id: '1', ttl_ms: request.ttl_ms } };
        case 'Acquire':
          return { response: { acquired: true, fencing_token: '7', holders: [] } };
        default:
          return { response: { released: true } };
      }
    });
    client = new DlmClient({ endpoints: [fake.address] });
    const session = await client.openSession({ ttlMs: 10_000 });
    const lock = await session.acquire('fallback/1');
    expect(lock.token).toBe('7');
    await lock.release();
    // Each call reached the node once, as a unary call: the refused stream applied nothing.
    expect([fake.count('OpenSession'), fake.count('Acquire'), fake.count('Release')]).toEqual([
      1, 1, 1,
    ]);
  });

  it('a program that forgot to close its client still exits: an idle stream is closed', async () => {
    const c = await ApiCluster.start();
    cluster = c;
    const leader = await c.leaderId();
    const script = fileURLToPath(new URL('./fixtures/forgets-close.ts', import.meta.url));
    const startedMs = performance.now();
    const run = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', script, `127.0.0.1:${c.at(leader).server.port}`],
        { timeout: 20_000 },
        (error, stdout) => resolve({ code: error === null ? 0 : (error.code as number), stdout }),
      );
    });
    expect(run.stdout).toMatch(/^held token \d+$/m);
    // An open stream would hold the process until the 20 s timeout killed it.
    expect(run.code).toBe(0);
    expect(performance.now() - startedMs).toBeLessThan(15_000);
  }, 30_000);

  it('refuses an unknown transport, naming it', () => {
    expect(
      () => new DlmClient({ endpoints: ['127.0.0.1:1'], transport: 'carrier-pigeon' as 'unary' }),
    ).toThrow("transport must be 'stream' or 'unary', got carrier-pigeon");
  });

  for (const transport of ['stream', 'unary'] as const) {
    it(`(${transport}) a waiting Acquire whose node goes away mid-call is retried elsewhere or settled`, async () => {
      const c = await ApiCluster.start();
      cluster = c;
      const [first, ...others] = IDS;
      if (first === undefined) throw new Error('no nodes');
      // The client starts at `first`; the others take over once its API is gone.
      const endpoints = [first, ...others].map((id) => `127.0.0.1:${c.at(id).server.port}`);
      client = new DlmClient({ endpoints, transport, attemptTimeoutMs: 500 });
      const holder = await client.openSession({ ttlMs: 10_000 });
      const waiter = await client.openSession({ ttlMs: 10_000 });
      const held = await holder.acquire('cut/1');
      const waiting = waiter.acquire('cut/1', { waitMs: 5_000 }).then(
        (handle) => ({ handle, error: null }),
        (error: unknown) => ({ handle: null, error }),
      );
      await eventually(async () => (await client?.describe('cut/1'))?.waiters.length === 1, 5_000);
      await c.at(first).server.close(0);
      await held.release();
      const outcome = await waiting;
      console.log(
        `${transport}: the cut-off Acquire ${outcome.handle === null ? `failed (${String(outcome.error)}) and was settled` : 'was granted through a retry'}`,
      );
      if (outcome.handle !== null) {
        // The retry (same request id) at another node was granted the lock.
        expect(BigInt(outcome.handle.token)).toBeGreaterThan(BigInt(held.token));
        await outcome.handle.release();
      } else {
        expect(outcome.error).toBeInstanceOf(DlmClientError);
        expect((outcome.error as DlmClientError).outcomeUnknown).toBe(true);
        await waiter.settled();
      }
      // Either way nothing is left held or queued for the waiter.
      await eventually(async () => {
        const state = await client?.describe('cut/1');
        return state?.holders.length === 0 && state.waiters.length === 0;
      }, 10_000);
    }, 30_000);
  }
});
