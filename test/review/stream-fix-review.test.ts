import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient, DlmClientError } from '../../src/client/index.ts';
import type { DlmNode } from '../../src/node/node.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { ApiCluster, eventually, NODE_OPTIONS, sleep } from '../api/harness.ts';
import { DelayProxy } from '../support/delay-proxy.ts';

/**
 * Adversarial review of the `stream-fix` branch (Lock.Session stream as the TypeScript
 * client's default transport). Each test states the claim it checks; a failing test is
 * a finding, a passing one a probe that held.
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

/** Lock rules that let one lock's Describe answer grow past grpc-js's 4 MiB receive limit. */
const BIG_RULES = {
  pendingProposalsMax: 2_000,
  lock: { ...NODE_OPTIONS.lock, waitersPerLockMax: 1_000, ownerBytesMax: 16_384 },
};

function node(c: ApiCluster, id: NodeId): DlmNode {
  const found = c.nodes.get(id);
  if (found === undefined) throw new Error(`no node ${id}`);
  return found;
}

/**
 * `lock` held by one session and waited for by 260 others, each with a 16 KiB owner:
 * its Describe answer is about 4.2 MB, over the 4 MiB a grpc-js client takes by default.
 * A legitimate state under the rules above (nothing refused it).
 */
async function bigLock(c: ApiCluster, leader: NodeId, lock: string): Promise<void> {
  const api = c.at(leader).lock;
  const holder = await c.openSession(leader, 120_000);
  await api.call('Acquire', { lock, session_id: holder, request_id: c.requestId() });
  const owner = 'o'.repeat(16_384);
  const sessions = await Promise.all(
    Array.from({ length: 260 }, () => c.openSession(leader, 120_000)),
  );
  for (const sessionId of sessions) {
    // Never answered within the test: each waits in the queue.
    pendingCalls.push(
      api
        .call('Acquire', {
          lock,
          session_id: sessionId,
          request_id: c.requestId(),
          wait_ms: '120000',
          owner,
        })
        .catch(() => {}),
    );
  }
  await eventually(() => node(c, leader).locks.describe(lock).waiters.length === 260, 20_000);
}

function holderSessions(c: ApiCluster, id: NodeId, lock: string): string[] {
  return node(c, id)
    .locks.describe(lock)
    .holders.map((holder) => String(holder.sessionId));
}

describe('finding: a stream-level status is read as every call’s own decisive answer', () => {
  it('a Release that applied is reported as a decisive failure when a Describe on the same stream is too big to receive', async () => {
    const c = await ApiCluster.start({}, BIG_RULES);
    cluster = c;
    const leader = await c.leaderId();
    const follower = await c.followerId();
    await bigLock(c, leader, 'big');
    // The default transport: one Session stream to the follower for every call.
    const dlm = new DlmClient({ endpoints: [`127.0.0.1:${c.at(follower).server.port}`] });
    clients.push(dlm);
    const session = await dlm.openSession({ ttlMs: 60_000 });
    const handle = await session.acquire('victim');
    // The follower forwards the Release to the leader; hold that forward back so the
    // Release is still in flight when the stream ends.
    c.network.hold((message) => message.kind === 'forward' && message.from === follower);
    const release = handle.release().then(
      () => 'released' as const,
      (error: unknown) => error,
    );
    await eventually(() => c.network.heldCount === 1, 5_000);
    // Another call on the same stream: its answer (≈ 4.2 MB) is over what grpc-js takes.
    const described = await dlm.describe('big').then(
      () => 'described',
      (error: unknown) => error,
    );
    expect(described).toBeInstanceOf(DlmClientError);
    const released = await release;
    // The Release reaches the leader and applies.
    c.network.releaseHeld();
    await eventually(() => holderSessions(c, follower, 'victim').length === 0, 5_000);
    expect(holderSessions(c, leader, 'victim')).toEqual([]);
    // What the caller was told: either released, or a failure that does not claim to be
    // the state machine's own answer (decisive) and leaves the outcome open.
    if (released !== 'released') {
      const error = released as DlmClientError;
      expect({ message: error.message, decisive: error.decisive }).toEqual({
        message: error.message,
        decisive: false,
      });
    }
  }, 60_000);

  it.each(['stream', 'unary'] as const)(
    '(%s) a grant answered behind a too-big Describe on the same connection is held by the session, unknown to its client',
    async (transport) => {
      const c = await ApiCluster.start({}, BIG_RULES);
      cluster = c;
      const leader = await c.leaderId();
      await bigLock(c, leader, 'big');
      const api = c.at(leader).lock;
      const holder = await c.openSession(leader, 120_000);
      const held = await api.call('Acquire', {
        lock: 'victim',
        session_id: holder,
        request_id: c.requestId(),
      });
      // The client reaches the leader through a proxy that can slow its answers down.
      proxy = await DelayProxy.start(c.at(leader).server.port);
      const dlm = new DlmClient({ endpoints: [proxy.address], transport });
      clients.push(dlm);
      const session = await dlm.openSession({ ttlMs: 60_000 });
      const acquiring = session.acquire('victim', { waitMs: 30_000 }).then(
        (handle) => handle,
        (error: unknown) => error,
      );
      await eventually(() => node(c, leader).locks.describe('victim').waiters.length === 1, 5_000);
      // Answers now take 1.5 s to reach the client (a slow path; nothing is lost).
      proxy.answerDelayMs = 1_500;
      const described = dlm.describe('big').then(
        () => 'described',
        (error: unknown) => error,
      );
      // The node has answered the Describe by now; its 4.2 MB sit in the stream.
      await sleep(300);
      // The holder lets go: the waiting Acquire is granted and answered on the stream.
      await api.call('Release', {
        lock: 'victim',
        session_id: holder,
        fencing_token: held.fencing_token,
        request_id: c.requestId(),
      });
      expect(holderSessions(c, leader, 'victim')).toEqual([session.id]);
      expect(await described).toBeInstanceOf(DlmClientError);
      const outcome = await acquiring;
      await session.settled();
      await sleep(1_000);
      // Either the client was told it holds the lock, or the lock is not held by its session.
      if (outcome instanceof Error) {
        expect({
          told: `${outcome.name}: ${outcome.message}`,
          outcomeUnknown: (outcome as DlmClientError).outcomeUnknown,
          holders: holderSessions(c, leader, 'victim'),
        }).toEqual({
          told: `${outcome.name}: ${outcome.message}`,
          outcomeUnknown: (outcome as DlmClientError).outcomeUnknown,
          holders: [],
        });
      }
      expect(session.alive).toBe(true);
    },
    60_000,
  );
});

describe('finding: an Acquire with wait_ms 0 can wait in a lock queue, yet counts among the calls that do not', () => {
  it('retries of a still-queued request with wait_ms 0 (what the client’s settle sends) fill the stream, and its KeepAlive is refused', async () => {
    const c = await ApiCluster.start({
      sessionStreamCallsInFlightMax: 2,
      sessionStreamWaitsInFlightMax: 2,
    });
    cluster = c;
    const leader = await c.leaderId();
    const api = c.at(leader).lock;
    const holder = await c.openSession(leader, 120_000);
    await api.call('Acquire', { lock: 'queued', session_id: holder, request_id: c.requestId() });
    const waiter = await c.openSession(leader, 120_000);
    const first = {
      lock: 'queued',
      session_id: waiter,
      request_id: c.requestId(),
      wait_ms: '60000',
    };
    pendingCalls.push(api.call('Acquire', first).catch(() => {}));
    await eventually(() => node(c, leader).locks.describe('queued').waiters.length === 1, 5_000);
    const stream = c.at(leader).session;
    // The same request again with wait_ms 0, as Settler.attempt re-asks: answered from the
    // remembered result (Queued), each waits for the queue like the first.
    const answered: string[] = [];
    for (let i = 0; i < 2; i++) {
      pendingCalls.push(
        stream.call('Acquire', { ...first, wait_ms: '0' }, { deadlineMs: 30_000 }).then(
          () => answered.push('answer'),
          () => answered.push('error'),
        ),
      );
    }
    await sleep(500);
    expect(answered).toEqual([]);
    // Two calls wait in a lock queue; the proto says such waits never crowd out KeepAlives.
    const kept = await stream.call('KeepAlive', { session_id: waiter }).then(
      () => 'kept',
      (error: unknown) => String(error),
    );
    expect(kept).toBe('kept');
  }, 30_000);
});
