import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DlmClient,
  DlmClientError,
  LockNotAcquiredError,
  newRequestId,
  SessionLostError,
} from '../../src/client/index.ts';
import { ApiCluster, IDS, sleep } from '../api/harness.ts';

/**
 * The TypeScript client (src/client) against three nodes serving the real API over
 * gRPC: sessions that keep themselves alive, locks with tokens, waiting, withLock, the
 * safe-deadline signal, retries across nodes, and errors that say what was wrong.
 */
let cluster: ApiCluster | null = null;
let client: DlmClient | null = null;

afterEach(async () => {
  client?.close();
  client = null;
  await cluster?.stop();
  cluster = null;
});

async function start(): Promise<{ c: ApiCluster; dlm: DlmClient }> {
  cluster = await ApiCluster.start();
  const endpoints = IDS.map((id) => `127.0.0.1:${cluster?.at(id).server.port}`);
  client = new DlmClient({ endpoints, attemptTimeoutMs: 500 });
  return { c: cluster, dlm: client };
}

describe('DlmClient', () => {
  it('withLock runs the function under the lock with its token, then releases and closes', async () => {
    const { dlm } = await start();
    let seen: { token: string; aborted: boolean } | null = null;
    const result = await dlm.withLock(
      'client/with',
      async ({ token, signal }) => {
        seen = { token, aborted: signal.aborted };
        const during = await dlm.describe('client/with');
        expect(during.holders.map((holder) => holder.token)).toEqual([token]);
        return 42;
      },
      { owner: 'worker-1' },
    );
    expect(result).toBe(42);
    expect(seen).toMatchObject({ aborted: false });
    expect(BigInt((seen as unknown as { token: string }).token)).toBeGreaterThan(0n);
    expect((await dlm.describe('client/with')).holders).toEqual([]);
  });

  it('a held lock: a try fails naming the holder; a wait is granted on release with a higher token', async () => {
    const { dlm } = await start();
    const a = await dlm.openSession({ ttlMs: 5_000, clientName: 'a' });
    const b = await dlm.openSession({ ttlMs: 5_000, clientName: 'b' });
    const held = await a.acquire('client/x', { owner: 'alice' });
    const refused = await b.acquire('client/x', { owner: 'bob' }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(LockNotAcquiredError);
    expect((refused as LockNotAcquiredError).holders).toEqual([
      { sessionId: a.id, owner: 'alice' },
    ]);
    expect((refused as Error).message).toContain('held by alice');
    const waiting = b.acquire('client/x', { owner: 'bob', waitMs: 5_000 });
    await sleep(100);
    await held.release();
    const granted = await waiting;
    expect(BigInt(granted.token)).toBeGreaterThan(BigInt(held.token));
    expect(await dlm.validateFence('client/x', held.token)).toEqual({
      valid: false,
      currentToken: granted.token,
    });
    await granted.release();
    await a.close();
    await b.close();
  });

  it('keeps its session alive past the TTL; await using releases at the end of the block', async () => {
    const { dlm } = await start();
    const session = await dlm.openSession({ ttlMs: 600 });
    const lock = await session.acquire('client/long');
    await sleep(1_500);
    expect(session.alive).toBe(true);
    expect((await dlm.validateFence('client/long', lock.token)).valid).toBe(true);
    await lock[Symbol.asyncDispose]();
    expect((await dlm.describe('client/long')).holders).toEqual([]);
    await session.close();
    expect(session.alive).toBe(false);
    await expect(session.acquire('client/after')).rejects.toBeInstanceOf(SessionLostError);
  });

  it('signals before the lease can end when no keepalive gets through', async () => {
    const { c, dlm } = await start();
    const ttlMs = 800;
    const session = await dlm.openSession({ ttlMs, safetyMarginMs: 200 });
    await session.acquire('client/lost');
    const fired = new Promise<number>((resolve) =>
      session.signal.addEventListener('abort', () => resolve(Date.now())),
    );
    const stoppedAtMs = Date.now();
    await c.stop();
    cluster = null;
    const firedAtMs = await fired;
    // The last keepalive confirmed was sent before the stop, so the safe deadline is
    // less than ttl - margin after it.
    expect(firedAtMs - stoppedAtMs).toBeLessThan(ttlMs - 200 + 50);
    expect(session.signal.reason).toBeInstanceOf(SessionLostError);
    expect(String(session.signal.reason.message)).toMatch(/no keepalive confirmed in time/);
  });

  it('a node going down costs a retry on another endpoint, not an error', async () => {
    const { c, dlm } = await start();
    const session = await dlm.openSession({ ttlMs: 5_000 });
    // The first endpoint is the one the client tries first.
    const first = IDS[0];
    if (first === undefined) throw new Error('no node');
    await c.at(first).server.close(0);
    await c.nodes.get(first)?.stop();
    const lock = await session.acquire('client/failover', { waitMs: 0 });
    expect(BigInt(lock.token)).toBeGreaterThan(0n);
    await lock.release();
    await session.close();
  });

  it('a malformed request is not retried: it fails at once, naming the field', async () => {
    const { dlm } = await start();
    const startedMs = Date.now();
    const error = await dlm.describe('').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DlmClientError);
    expect(error).toMatchObject({ status: status.INVALID_ARGUMENT, errorCode: 'invalidArgument' });
    expect((error as Error).message).toMatch(/lock/);
    expect((error as DlmClientError).retryable).toBe(false);
    expect(Date.now() - startedMs).toBeLessThan(1_000);
  });

  it('refuses options that cannot work, naming them', () => {
    expect(() => new DlmClient({ endpoints: [] })).toThrow(/endpoints/);
    expect(() => new DlmClient({ endpoints: ['h:1'], attemptTimeoutMs: 0 })).toThrow(
      /attemptTimeoutMs must be a positive/,
    );
    expect(() => new DlmClient({ endpoints: ['h:1'], settleAttemptsMax: 0 })).toThrow(
      /settleAttemptsMax must be a positive integer/,
    );
    expect(() => new DlmClient({ endpoints: ['h:1'], settleTimeoutMs: -1 })).toThrow(
      /settleTimeoutMs must be a positive/,
    );
    const ids = new Set(Array.from({ length: 1_000 }, () => newRequestId()));
    expect(ids.size).toBe(1_000);
    expect([...ids].every((id) => BigInt(id) > 0n && BigInt(id) < 2n ** 64n)).toBe(true);
  });
});
