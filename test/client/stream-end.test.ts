import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient, DlmClientError, LockHandle } from '../../src/client/index.ts';
import type { DlmNode } from '../../src/node/node.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { ApiCluster, eventually, NODE_OPTIONS, sleep, TRANSPORTS } from '../api/harness.ts';
import { DelayProxy } from '../support/delay-proxy.ts';

/**
 * A Session stream's end is no answer to the calls it carried. grpc-js ends the whole
 * stream RESOURCE_EXHAUSTED when one answer on it is over the receive limit (a legal
 * Describe of a lock with many waiters), and the client used to pass that status on to
 * every call in flight, where it reads as the state machine's own "not applied"
 * (DlmClientError.decisive): an applied Release was reported failed, a grant answered
 * behind the big message was held unknown to its client (no settle), a session lost its
 * KeepAlives. Those calls' outcome is unknown: they are retried with the same request id
 * (on unary calls, so the answer that ended the stream fails only its own call). Unary
 * calls were never affected: each is a stream of its own. (Review finding 1 of the
 * stream-fix branch; the tests are the reviewer's, moved here.)
 *
 * The clients here take answers of at most RECEIVE_LIMIT bytes (the default client has
 * no limit, see the last test), so a few waiters make a Describe too big.
 */
let cluster: ApiCluster | null = null;
let proxy: DelayProxy | null = null;
const clients: DlmClient[] = [];
const pendingCalls: Promise<unknown>[] = [];

afterEach(async () => {
  for (const each of clients.splice(0)) each.close();
  await proxy?.close();
  proxy = null;
  cluster?.network.releaseHeld();
  await cluster?.stop();
  cluster = null;
  await Promise.allSettled(pendingCalls.splice(0));
});

const RECEIVE_LIMIT = 64 * 1024;
const OWNER = 'o'.repeat(16_384);

/** Lock rules that let one lock's Describe answer grow past grpc-js's 4 MiB default. */
const BIG_RULES = {
  pendingProposalsMax: 2_000,
  lock: { ...NODE_OPTIONS.lock, waitersPerLockMax: 1_000, ownerBytesMax: OWNER.length },
};

function node(c: ApiCluster, id: NodeId): DlmNode {
  const found = c.nodes.get(id);
  if (found === undefined) throw new Error(`no node ${id}`);
  return found;
}

/**
 * `lock` held by one session and waited for by `waiters` others, each with a 16 KiB
 * owner, so its Describe answer is about 16 KiB per waiter. A legal state under
 * BIG_RULES (nothing refused it).
 */
async function bigLock(c: ApiCluster, leader: NodeId, lock: string, waiters: number) {
  const api = c.at(leader).lock;
  const holder = await c.openSession(leader, 120_000);
  await api.call('Acquire', { lock, session_id: holder, request_id: c.requestId() });
  const sessions = await Promise.all(
    Array.from({ length: waiters }, () => c.openSession(leader, 120_000)),
  );
  for (const sessionId of sessions) {
    const request = { lock, session_id: sessionId, request_id: c.requestId() };
    // Never answered within the test: each waits in the queue.
    pendingCalls.push(
      api.call('Acquire', { ...request, wait_ms: '120000', owner: OWNER }).catch(() => {}),
    );
  }
  await eventually(() => node(c, leader).locks.describe(lock).waiters.length === waiters, 20_000);
}

/** Big enough that its Describe is over RECEIVE_LIMIT. */
const OVER_LIMIT_WAITERS = 8;

function limitedClient(endpoint: string, transport: 'stream' | 'unary' = 'stream'): DlmClient {
  const dlm = new DlmClient({
    endpoints: [endpoint],
    transport,
    channelOptions: { 'grpc.max_receive_message_length': RECEIVE_LIMIT },
  });
  clients.push(dlm);
  return dlm;
}

function holderSessions(c: ApiCluster, id: NodeId, lock: string): string[] {
  return node(c, id)
    .locks.describe(lock)
    .holders.map((holder) => String(holder.sessionId));
}

describe('an answer over the receive limit', () => {
  it('fails its own call, not a Release in flight on the same stream, which applied', async () => {
    const c = await ApiCluster.start({}, BIG_RULES);
    cluster = c;
    const leader = await c.leaderId();
    const follower = await c.followerId();
    await bigLock(c, leader, 'big', OVER_LIMIT_WAITERS);
    // One Session stream to the follower for every call.
    const dlm = limitedClient(`127.0.0.1:${c.at(follower).server.port}`);
    const session = await dlm.openSession({ ttlMs: 60_000 });
    const handle = await session.acquire('victim');
    // The follower forwards the Release to the leader; that forward is held back, so the
    // Release is still in flight when the stream ends.
    c.network.hold((message) => message.kind === 'forward' && message.from === follower);
    const release = handle.release().then(
      () => 'released' as const,
      (error: unknown) => error,
    );
    await eventually(() => c.network.heldCount === 1, 5_000);
    // Another call on the same stream, whose answer is over what the client takes.
    const described = await dlm.describe('big').catch((error: unknown) => error);
    expect(described).toBeInstanceOf(DlmClientError);
    // The Release reaches the leader and applies; the client's retry learns so.
    c.network.releaseHeld();
    expect(await release).toBe('released');
    expect(holderSessions(c, leader, 'victim')).toEqual([]);
  }, 60_000);

  it.each(TRANSPORTS)(
    '(%s) does not cost a grant answered behind it on the same connection',
    async (transport) => {
      const c = await ApiCluster.start({}, BIG_RULES);
      cluster = c;
      const leader = await c.leaderId();
      await bigLock(c, leader, 'big', OVER_LIMIT_WAITERS);
      const api = c.at(leader).lock;
      const holder = await c.openSession(leader, 120_000);
      const held = await api.call('Acquire', {
        lock: 'victim',
        session_id: holder,
        request_id: c.requestId(),
      });
      // The client reaches the leader through a proxy that can slow its answers down.
      proxy = await DelayProxy.start(c.at(leader).server.port);
      const dlm = limitedClient(proxy.address, transport);
      const session = await dlm.openSession({ ttlMs: 60_000 });
      const acquiring = session
        .acquire('victim', { waitMs: 30_000 })
        .catch((error: unknown) => error);
      await eventually(() => node(c, leader).locks.describe('victim').waiters.length === 1, 5_000);
      // Answers now take 1.5 s to reach the client (a slow path; nothing is lost).
      proxy.answerDelayMs = 1_500;
      const described = dlm.describe('big').catch((error: unknown) => error);
      // The node has answered the Describe by now; its answer is in the connection.
      await sleep(300);
      // The holder lets go: the waiting Acquire is granted and answered behind it.
      await api.call('Release', {
        lock: 'victim',
        session_id: holder,
        fencing_token: held.fencing_token,
        request_id: c.requestId(),
      });
      expect(holderSessions(c, leader, 'victim')).toEqual([session.id]);
      expect(await described).toBeInstanceOf(DlmClientError);
      // The client holds the grant it got (the retry with its request id is answered so).
      const handle = await acquiring;
      expect(handle).toBeInstanceOf(LockHandle);
      expect(await session.settled()).toEqual([]);
      expect(
        node(c, leader)
          .locks.describe('victim')
          .holders.map((each) => [String(each.sessionId), String(each.token)]),
      ).toEqual([[session.id, (handle as LockHandle).token]]);
      expect(session.alive).toBe(true);
    },
    60_000,
  );

  it.each(TRANSPORTS)(
    '(%s) asked for over and over does not cost the session its KeepAlives',
    async (transport) => {
      const c = await ApiCluster.start({}, BIG_RULES);
      cluster = c;
      const leader = await c.leaderId();
      await bigLock(c, leader, 'big', OVER_LIMIT_WAITERS);
      // A path with 50 ms each way, so each call is in flight for a while.
      proxy = await DelayProxy.start(c.at(leader).server.port);
      proxy.requestDelayMs = 50;
      proxy.answerDelayMs = 50;
      const dlm = limitedClient(proxy.address, transport);
      const session = await dlm.openSession({ ttlMs: 2_000 });
      // The application asks who waits for the busy lock, over and over (bounded).
      let failed = 0;
      const endMs = performance.now() + 6_000;
      for (let i = 0; i < 300 && performance.now() < endMs && session.alive; i++) {
        await dlm.describe('big').catch(() => failed++);
        await sleep(20);
      }
      // Every Describe failed (its answer is too big), which is that call's own business.
      expect(failed).toBeGreaterThan(5);
      // Three TTLs: only KeepAlives that got through kept the session.
      expect({ alive: session.alive, why: String(session.signal.reason) }).toEqual({
        alive: true,
        why: 'undefined',
      });
    },
    60_000,
  );
});

describe('a Describe answer over grpc-js’s default 4 MiB receive limit', () => {
  it.each(TRANSPORTS)(
    '(%s) reaches the default client',
    async (transport) => {
      const c = await ApiCluster.start({}, BIG_RULES);
      cluster = c;
      const leader = await c.leaderId();
      // About 4.2 MB: 260 waiters with 16 KiB owners.
      await bigLock(c, leader, 'big', 260);
      const dlm = new DlmClient({
        endpoints: [`127.0.0.1:${c.at(leader).server.port}`],
        transport,
      });
      clients.push(dlm);
      const described = await dlm.describe('big');
      expect(described.waiters.length).toBe(260);
    },
    60_000,
  );
});

describe('a grant whose answer dies with the connection', () => {
  it('(stream) is retried with the same request id and the client holds exactly that grant; releasing frees the lock', async () => {
    const c = await ApiCluster.start();
    cluster = c;
    const leader = await c.leaderId();
    proxy = await DelayProxy.start(c.at(leader).server.port);
    const dlm = new DlmClient({ endpoints: [proxy.address], retryDelayMsMax: 50 });
    clients.push(dlm);
    const session = await dlm.openSession({ ttlMs: 60_000 });
    const path = proxy;
    // The answer is on its way (held in the path) when the connection is reset.
    path.answerDelayMs = 600;
    const acquiring = session.acquire('lost-answer').catch((error: unknown) => error);
    await eventually(() => holderSessions(c, leader, 'lost-answer').length === 1, 5_000);
    await path.cut();
    path.answerDelayMs = 0;
    await path.restore();
    const outcome = await acquiring;
    expect(outcome).toBeInstanceOf(LockHandle);
    const handle = outcome as LockHandle;
    await session.settled();
    expect(
      node(c, leader)
        .locks.describe('lost-answer')
        .holders.map((each) => [String(each.sessionId), String(each.token)]),
    ).toEqual([[session.id, handle.token]]);
    await handle.release();
    await sleep(300);
    expect(holderSessions(c, leader, 'lost-answer')).toEqual([]);
  }, 30_000);
});
