import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient, DlmClientError } from '../../src/client/index.ts';
import { ApiCluster, IDS, sleep } from '../api/harness.ts';
import { DelayProxy } from '../support/delay-proxy.ts';

/**
 * An Acquire whose outcome the client does not know (it gave up, or the cluster could
 * not say) must not leave the session holding a lock nobody has a handle for: the
 * session settles it in the background, and gives back a grant it finds.
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

interface WatchEvent {
  readonly type: string;
  readonly session_id: string;
  readonly fencing_token: string;
}

describe('settling an Acquire of unknown outcome', () => {
  it('gives back a grant answered after the client had given up (answers delayed 300 ms)', async () => {
    cluster = await ApiCluster.start();
    const leader = await cluster.leaderId();
    const direct = new DlmClient({
      endpoints: IDS.map((id) => `127.0.0.1:${cluster?.at(id).server.port}`),
    });
    proxy = await DelayProxy.start(cluster.at(leader).server.port);
    const dlm = new DlmClient({ endpoints: [proxy.address], settleAttemptTimeoutMs: 1_000 });
    clients.push(direct, dlm);
    const lock = 'settle/late-grant';
    const events: WatchEvent[] = [];
    const watch = cluster.at(leader).lock.stream('Watch', { prefix: lock });
    watch.on('data', (event: WatchEvent) => events.push(event));
    watch.on('error', () => {});
    await new Promise((resolve) => watch.once('metadata', resolve));

    const holder = await direct.openSession({ ttlMs: 10_000 });
    const held = await holder.acquire(lock);
    const session = await dlm.openSession({ ttlMs: 10_000, callTimeoutMs: 100 });
    proxy.answerDelayMs = 300;
    proxy.requestDelayMs = 100;
    const startedMs = performance.now();
    // The client gives up 2.1 s after sending; the server, one hop (100 ms) later. The
    // grant of 1.85 s is answered at once and reaches the client 300 ms later: too late.
    const acquiring = session.acquire(lock, { waitMs: 2_000 }).then(
      () => null,
      (error: unknown) => error,
    );
    await sleep(1_850 - (performance.now() - startedMs));
    await held.release();
    const error = await acquiring;
    expect(error).toBeInstanceOf(DlmClientError);
    expect((error as DlmClientError).status).toBe(status.DEADLINE_EXCEEDED);
    expect(await session.settled()).toMatchObject([{ lock, result: 'released' }]);
    watch.cancel();
    // The grant did happen, and the session gave it back.
    expect(events.filter((event) => event.session_id === session.id).map((e) => e.type)).toEqual([
      'GRANT',
      'RELEASE',
    ]);
    expect((await direct.describe(lock)).holders).toEqual([]);
  });

  it('an Acquire aborted while it waits rejects at once, and the settle finds nothing held', async () => {
    cluster = await ApiCluster.start();
    const direct = new DlmClient({
      endpoints: IDS.map((id) => `127.0.0.1:${cluster?.at(id).server.port}`),
    });
    clients.push(direct);
    const lock = 'settle/aborted';
    const holder = await direct.openSession({ ttlMs: 10_000 });
    const held = await holder.acquire(lock);
    const session = await direct.openSession({ ttlMs: 10_000 });
    const abort = new AbortController();
    const acquiring = session.acquire(lock, { waitMs: 10_000, signal: abort.signal });
    await sleep(200);
    const abortedAtMs = performance.now();
    abort.abort();
    const error = await acquiring.then(
      () => null,
      (caught: unknown) => caught,
    );
    expect(performance.now() - abortedAtMs).toBeLessThan(200);
    expect(error).toMatchObject({ status: status.CANCELLED, outcomeUnknown: true });
    expect(await session.settled()).toMatchObject([{ lock, result: 'notHeld' }]);
    await held.release();
    const state = await direct.describe(lock);
    expect([...state.holders, ...state.waiters].map((each) => each.sessionId)).not.toContain(
      session.id,
    );
  });
});
