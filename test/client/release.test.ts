import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient, DlmClientError } from '../../src/client/index.ts';
import { ApiCluster, eventually, IDS } from '../api/harness.ts';
import { DelayProxy } from '../support/delay-proxy.ts';

/**
 * Giving a lock back: a handle's release() can be retried after a failure (with the
 * same request id, so a release that did apply is not refused as a stranger's), and
 * disposing a handle releases the lock even after the session's signal fired, since
 * the signal fires before the lease can end.
 */
let cluster: ApiCluster | null = null;
let proxy: DelayProxy | null = null;
const clients: DlmClient[] = [];

afterEach(async () => {
  for (const each of clients.splice(0)) each.close();
  await proxy?.close();
  proxy = null;
  await cluster?.stop();
  cluster = null;
});

async function start(): Promise<{ direct: DlmClient; c: ApiCluster }> {
  cluster = await ApiCluster.start();
  const endpoints = IDS.map((id) => `127.0.0.1:${cluster?.at(id).server.port}`);
  const direct = new DlmClient({ endpoints, attemptTimeoutMs: 500 });
  clients.push(direct);
  return { direct, c: cluster };
}

/** A client that reaches the leader only through a proxy the test controls. */
async function proxied(c: ApiCluster): Promise<{ dlm: DlmClient; path: DelayProxy }> {
  const leader = await c.leaderId();
  proxy = await DelayProxy.start(c.at(leader).server.port);
  const dlm = new DlmClient({ endpoints: [proxy.address], retryDelayMsMax: 50 });
  clients.push(dlm);
  return { dlm, path: proxy };
}

async function holdersOf(dlm: DlmClient, lock: string): Promise<string[]> {
  return (await dlm.describe(lock)).holders.map((holder) => holder.sessionId);
}

describe('LockHandle release', () => {
  it('dispose releases the lock after the signal fired, while the lease is still live', async () => {
    const { direct } = await start();
    // The signal fires 500 ms after the last confirmed keepalive (every 1 s); the lease
    // itself runs 3 s.
    const session = await direct.openSession({ ttlMs: 3_000, safetyMarginMs: 2_500 });
    const handle = await session.acquire('release/after-signal');
    // It may have fired already, if opening and acquiring took longer than the 500 ms.
    if (!session.signal.aborted) {
      await new Promise((resolve) => session.signal.addEventListener('abort', resolve));
    }
    expect(await holdersOf(direct, 'release/after-signal')).toEqual([session.id]);
    await handle[Symbol.asyncDispose]();
    expect(await holdersOf(direct, 'release/after-signal')).toEqual([]);
  });

  it('a release that never reached the cluster can be called again, and then releases', async () => {
    const { direct, c } = await start();
    const { dlm, path } = await proxied(c);
    const session = await dlm.openSession({ ttlMs: 10_000, callTimeoutMs: 400 });
    const handle = await session.acquire('release/unreached');
    await path.cut();
    await expect(handle.release()).rejects.toBeInstanceOf(DlmClientError);
    expect(await holdersOf(direct, 'release/unreached')).toEqual([session.id]);
    await path.restore();
    // grpc-js reconnects after its own backoff.
    await eventually(() =>
      dlm.describe('release/unreached').then(
        () => true,
        () => false,
      ),
    );
    await handle.release();
    expect(await holdersOf(direct, 'release/unreached')).toEqual([]);
  });

  it('a release whose answer was lost is retried with the same request id, then is a no-op', async () => {
    const { direct, c } = await start();
    const { dlm, path } = await proxied(c);
    const session = await dlm.openSession({ ttlMs: 10_000, callTimeoutMs: 400 });
    const handle = await session.acquire('release/lost-answer');
    path.answerDelayMs = 800;
    await expect(handle.release()).rejects.toMatchObject({ message: /DEADLINE_EXCEEDED/ });
    // It did apply: with a new request id, the retry would be refused (notHolder).
    expect(await holdersOf(direct, 'release/lost-answer')).toEqual([]);
    path.answerDelayMs = 0;
    await eventually(() =>
      dlm.describe('release/lost-answer').then(
        () => true,
        () => false,
      ),
    );
    await handle.release();
    // Done: later calls resolve without asking the cluster, even when it is unreachable.
    await path.cut();
    const startedMs = performance.now();
    await handle.release();
    await handle[Symbol.asyncDispose]();
    expect(performance.now() - startedMs).toBeLessThan(50);
  });
});
