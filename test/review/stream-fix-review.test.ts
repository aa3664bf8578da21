import { afterEach, describe, expect, it } from 'vitest';
import { wireLockRules } from '../../src/api/rules.ts';
import { DlmClient, DlmClientError, LockHandle } from '../../src/client/index.ts';
import { DEFAULT_LOCK_LIMITS } from '../../src/lock/index.ts';
import { TIMER_MS_MAX } from '../../src/lock/limits.ts';
import { decodeEntry } from '../../src/node/entry-codec.ts';
import type { DlmNode } from '../../src/node/node.ts';
import type { PeerMessage } from '../../src/node/peer-message.ts';
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

describe('finding: a stream-level status is read as every call’s own decisive answer (session)', () => {
  it.each(['stream', 'unary'] as const)(
    '(%s) a session whose KeepAlives share a connection with too-big Describes is not lost',
    async (transport) => {
      const c = await ApiCluster.start({}, BIG_RULES);
      cluster = c;
      const leader = await c.leaderId();
      await bigLock(c, leader, 'big');
      // A path with 50 ms each way, so each call is in flight for a while.
      proxy = await DelayProxy.start(c.at(leader).server.port);
      proxy.requestDelayMs = 50;
      proxy.answerDelayMs = 50;
      const dlm = new DlmClient({ endpoints: [proxy.address], transport });
      clients.push(dlm);
      const keepAliveErrors = recordKeepAliveErrors(dlm);
      const session = await dlm.openSession({ ttlMs: 4_000 });
      // The application asks who waits for the busy lock, over and over (bounded).
      let failed = 0;
      const endMs = performance.now() + 12_000;
      for (let i = 0; i < 300 && performance.now() < endMs && session.alive; i++) {
        await dlm.describe('big').catch(() => failed++);
        await sleep(20);
      }
      // Every Describe failed (its answer is too big), which is that call's own business.
      expect(failed).toBeGreaterThan(5);
      // Twelve seconds are three TTLs: only KeepAlives that got through kept the session.
      expect({
        alive: session.alive,
        why: session.alive ? [] : [String(session.signal.reason), ...keepAliveErrors],
      }).toEqual({ alive: true, why: [] });
    },
    60_000,
  );
});

/** The errors the session's KeepAlives failed with (the client reports them nowhere). */
function recordKeepAliveErrors(dlm: DlmClient): string[] {
  const errors: string[] = [];
  const connection = (
    dlm as unknown as { connection: { call: (...args: unknown[]) => Promise<unknown> } }
  ).connection;
  const call = connection.call.bind(connection);
  connection.call = async (...args: unknown[]) => {
    try {
      return await call(...args);
    } catch (error) {
      if (args[1] === 'KeepAlive') errors.push(String((error as Error).message));
      throw error;
    }
  };
  return errors;
}

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

/** A write `from` forwards to the leader, carrying a command of `type`. */
function forwardOf(from: NodeId, type: string): (message: PeerMessage) => boolean {
  return (message) =>
    message.kind === 'forward' &&
    message.from === from &&
    decodeEntry(message.data).command.type === type;
}

describe('held: give-back of an undelivered grant vs. a retry of its request and a later grant', () => {
  it('(stream) a Withdraw that lands after the settle released the grant and a new Acquire was granted leaves the new grant alone', async () => {
    const c = await ApiCluster.start();
    cluster = c;
    const follower = await c.followerId();
    const leader = await c.leaderId();
    const dlm = new DlmClient({ endpoints: [`127.0.0.1:${c.at(follower).server.port}`] });
    clients.push(dlm);
    const session = await dlm.openSession({ ttlMs: 60_000 });
    // The Acquire and the settle's re-ask both wait at the follower's door.
    c.network.hold(forwardOf(follower, 'Acquire'));
    const abort = new AbortController();
    const acquiring = session.acquire('giveback', { signal: abort.signal }).then(
      () => 'acquired',
      (error: unknown) => error,
    );
    await eventually(() => c.network.heldCount === 1, 5_000);
    // The caller gives up: the node's call is cancelled while its write is in flight.
    abort.abort();
    expect(await acquiring).toMatchObject({ outcomeUnknown: true });
    await eventually(() => c.network.heldCount === 2, 5_000);
    // Both apply: the first grants, the re-ask is answered from it (same grant).
    c.network.releaseHeld();
    // The node gives back the first attempt, whose answer never went out: held back.
    c.network.hold(forwardOf(follower, 'Withdraw'));
    expect(await session.settled()).toMatchObject([{ lock: 'giveback', result: 'released' }]);
    await eventually(() => c.network.heldCount === 1, 5_000);
    // A new request of the same session takes the lock again.
    const handle = await session.acquire('giveback');
    // Now the stale give-back lands.
    c.network.releaseHeld();
    await sleep(500);
    expect(holderSessions(c, leader, 'giveback')).toEqual([session.id]);
    expect(
      node(c, leader)
        .locks.describe('giveback')
        .holders.map((each) => String(each.token)),
    ).toEqual([handle.token]);
    await handle.release();
    expect(holderSessions(c, leader, 'giveback')).toEqual([]);
  }, 30_000);
});

describe('held: a unary Acquire sent with no deadline (wait near the ceiling)', () => {
  it('is given back by the node when its connection is reset, though the node had no deadline for it', async () => {
    const c = await ApiCluster.start();
    cluster = c;
    const leader = await c.leaderId();
    const api = c.at(leader).lock;
    await c.at(leader).cluster.call('SetLockRules', {
      rules: wireLockRules({
        ...DEFAULT_LOCK_LIMITS,
        ...NODE_OPTIONS.lock,
        waitMsMax: TIMER_MS_MAX,
      }),
    });
    const holder = await c.openSession(leader, 120_000);
    const held = await api.call('Acquire', {
      lock: 'ceiling',
      session_id: holder,
      request_id: c.requestId(),
    });
    proxy = await DelayProxy.start(c.at(leader).server.port);
    const dlm = new DlmClient({ endpoints: [proxy.address], transport: 'unary' });
    clients.push(dlm);
    const session = await dlm.openSession({ ttlMs: 60_000 });
    // waitMs + the attempt timeout is past what a grpc-js server reads: no deadline sent.
    const acquiring = session.acquire('ceiling', { waitMs: TIMER_MS_MAX }).then(
      () => 'acquired',
      (error: unknown) => error,
    );
    pendingCalls.push(acquiring);
    await eventually(() => node(c, leader).locks.describe('ceiling').waiters.length === 1, 5_000);
    await proxy.cut();
    // The node learns of the reset, cancels the call and withdraws the wait.
    await eventually(() => node(c, leader).locks.describe('ceiling').waiters.length === 0, 5_000);
    await api.call('Release', {
      lock: 'ceiling',
      session_id: holder,
      fencing_token: held.fencing_token,
      request_id: c.requestId(),
    });
    await sleep(300);
    expect(holderSessions(c, leader, 'ceiling')).toEqual([]);
  }, 30_000);
});

describe('held: a grant whose answer dies with the connection', () => {
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
    const acquiring = session.acquire('lost-answer').then(
      (handle) => handle,
      (error: unknown) => error,
    );
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
