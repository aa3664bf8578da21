import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiNode, ApiOptions } from '../../src/api/context.ts';
import { DlmClient } from '../../src/client/index.ts';
import type { NodeId } from '../../src/util/ids.ts';
import {
  ApiCluster,
  eventually,
  type NodeEndpoints,
  rpcError,
  serve,
  sleep,
  TRANSPORTS,
} from './harness.ts';

/**
 * Acquires that wait in a lock's queue hold their call open for up to wait_ms (a retry
 * with wait_ms 0 of a request still queued, too). On a Session stream every Acquire is
 * bounded apart from the other calls
 * (runtime.sessionStreamWaitsInFlightMax, runtime.sessionStreamCallsInFlightMax), so
 * however many of a client's Acquires wait, its KeepAlives on the same stream still get
 * in: the session is not lost because its client waits for locks. (Review finding 1 of
 * the Session stream: counted together, waits filled the stream and every KeepAlive was
 * refused until the session expired. Review finding 2 of the fix: Acquires with wait_ms 0
 * still counted among the other calls, though a retry of a queued request waits.)
 */
let cluster: ApiCluster;
let leader: NodeId;
const servers: NodeEndpoints[] = [];

beforeAll(async () => {
  cluster = await ApiCluster.start();
  leader = await cluster.leaderId();
});

afterAll(async () => {
  for (const each of servers.splice(0)) {
    each.lock.close();
    each.session.close();
    await each.server.close(100);
  }
  await cluster?.stop();
});

/** Another API server on the leader's node (or on `node`), with its own limits. */
async function serveLeader(options: Partial<ApiOptions>, node?: ApiNode): Promise<NodeEndpoints> {
  const leaderNode = cluster.nodes.get(leader);
  if (leaderNode === undefined) throw new Error('no leader');
  const endpoints = await serve(node ?? leaderNode, cluster.logs, options);
  servers.push(endpoints);
  return endpoints;
}

/** Locks `prefix/0..count-1`, held by a session of their own. */
async function heldLocks(prefix: string, count: number): Promise<string[]> {
  const holder = await cluster.openSession(leader, 60_000);
  const names = Array.from({ length: count }, (_, i) => `${prefix}/${i}`);
  for (const lock of names) {
    const held = await cluster.at(leader).lock.call('Acquire', {
      lock,
      session_id: holder,
      request_id: cluster.requestId(),
    });
    expect(held.acquired).toBe(true);
  }
  return names;
}

async function waiting(names: readonly string[]): Promise<number> {
  let count = 0;
  for (const lock of names) {
    count += (await cluster.at(leader).lock.call('Describe', { lock })).waiters.length;
  }
  return count;
}

function waitingAcquire(lock: string, sessionId: string, waitMs: number) {
  return { lock, session_id: sessionId, request_id: cluster.requestId(), wait_ms: String(waitMs) };
}

describe('a client whose Acquires wait on its stream', () => {
  it.each(TRANSPORTS)(
    '(%s) keeps its session alive: waits do not crowd out its KeepAlives',
    async (transport) => {
      const server = await serveLeader({ sessionStreamCallsInFlightMax: 4 });
      const names = await heldLocks(`crowd-${transport}`, 4);
      const client = new DlmClient({
        endpoints: [`127.0.0.1:${server.server.port}`],
        transport,
      });
      try {
        const session = await client.openSession({ ttlMs: 1_500 });
        // As many waits as the stream takes calls: before the fix they filled it.
        for (const lock of names) void session.acquire(lock, { waitMs: 6_000 }).catch(() => {});
        await eventually(async () => (await waiting(names)) === 4, 5_000);
        // Three TTLs: only KeepAlives that got through keep the session alive that long.
        await sleep(4_500);
        expect(session.alive).toBe(true);
      } finally {
        // Its waits end with the client.
        client.close();
      }
    },
    30_000,
  );
});

describe('the bounds of one Session stream', () => {
  it('past sessionStreamWaitsInFlightMax an Acquire is refused as backpressure, naming it; other calls still get in', async () => {
    const narrow = await serveLeader({
      sessionStreamCallsInFlightMax: 1,
      sessionStreamWaitsInFlightMax: 2,
    });
    const names = await heldLocks('waits-bound', 3);
    const waiter = await cluster.openSession(leader, 120_000);
    const [first = '', second = '', third = ''] = names;
    const waits = [first, second].map((lock) =>
      narrow.session.call('Acquire', waitingAcquire(lock, waiter, 800)),
    );
    await eventually(async () => (await waiting(names)) === 2, 5_000);
    const refused = await rpcError(
      narrow.session.call('Acquire', waitingAcquire(third, waiter, 800)),
    );
    expect(refused.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(refused.trailer('dlm-retry-after-ms')).toBe('100');
    expect(refused.details).toBe(
      'this Session stream has 2 Acquires in flight (runtime.sessionStreamWaitsInFlightMax)',
    );
    // Both waits still queued, the calls that are not Acquires are served. A try-lock
    // (wait_ms 0) counts as an Acquire: a retry of a queued request with wait_ms 0 waits.
    expect((await narrow.session.call('KeepAlive', { session_id: waiter })).ttl_ms).toBe('120000');
    const tried = await rpcError(narrow.session.call('Acquire', waitingAcquire(third, waiter, 0)));
    expect(tried.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(await waiting(names)).toBe(2);
    for (const answer of await Promise.all(waits)) expect(answer.acquired).toBe(false);
    // Once the waits were answered the stream takes waits again.
    const again = await narrow.session.call('Acquire', waitingAcquire(third, waiter, 100));
    expect(again.acquired).toBe(false);
  });

  it('past sessionStreamCallsInFlightMax another call is refused as backpressure, naming it; waits still get in', async () => {
    const node = cluster.nodes.get(leader);
    if (node === undefined) throw new Error('no leader');
    // Reads held back, so Describes stay in flight as long as the test needs.
    let releaseReads = (): void => {};
    const readsReleased = new Promise<void>((resolve) => {
      releaseReads = resolve;
    });
    const slowReads: ApiNode = {
      id: node.id,
      locks: node.locks,
      write: (command, lateApply) => node.write(command, lateApply),
      read: async (query) => {
        await readsReleased;
        return node.read(query);
      },
      subscribe: (listener) => node.subscribe(listener),
      onRestored: (listener) => node.onRestored(listener),
      observe: (observer) => node.observe(observer),
      status: () => node.status(),
    };
    const narrow = await serveLeader(
      { sessionStreamCallsInFlightMax: 2, sessionStreamWaitsInFlightMax: 1 },
      slowReads,
    );
    const [held = ''] = await heldLocks('calls-bound', 1);
    const waiter = await cluster.openSession(leader, 120_000);
    try {
      const reads = [1, 2].map(() => narrow.session.call('Describe', { lock: held }));
      const refused = await rpcError(narrow.session.call('Describe', { lock: held }));
      expect(refused.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(refused.trailer('dlm-retry-after-ms')).toBe('100');
      expect(refused.details).toBe(
        'this Session stream has 2 calls in flight besides Acquires (runtime.sessionStreamCallsInFlightMax)',
      );
      // Acquires have a bound of their own, so they are admitted while those calls are in
      // flight, waiting or not.
      const wait = await narrow.session.call('Acquire', waitingAcquire(held, waiter, 300));
      expect(wait.acquired).toBe(false);
      releaseReads();
      for (const described of await Promise.all(reads)) expect(described.holders.length).toBe(1);
    } finally {
      releaseReads();
    }
  });
});

describe('a retry with wait_ms 0 of a request still queued', () => {
  it('waits like the first, and counts among the Acquires: the KeepAlives of its stream still get in', async () => {
    const narrow = await serveLeader({
      sessionStreamCallsInFlightMax: 2,
      sessionStreamWaitsInFlightMax: 2,
    });
    const [lock = ''] = await heldLocks('queued-retry', 1);
    const waiter = await cluster.openSession(leader, 120_000);
    const first = waitingAcquire(lock, waiter, 60_000);
    const firstWait = cluster
      .at(leader)
      .lock.call('Acquire', first)
      .catch(() => {});
    await eventually(async () => (await waiting([lock])) === 1, 5_000);
    // The same request again with wait_ms 0, as a client's settle re-asks: answered from
    // the remembered result (Queued), each waits for the queue like the first.
    const retries = [1, 2].map(() =>
      narrow.session.call('Acquire', { ...first, wait_ms: '0' }, { deadlineMs: 30_000 }),
    );
    let answered = 0;
    for (const retry of retries)
      void retry.then(
        () => answered++,
        () => answered++,
      );
    await sleep(500);
    expect(answered).toBe(0);
    // Before the fix they counted toward sessionStreamCallsInFlightMax and filled it.
    expect((await narrow.session.call('KeepAlive', { session_id: waiter })).ttl_ms).toBe('120000');
    // The session ends: its wait, and with it the retries, end NOT_FOUND.
    await cluster.at(leader).lock.call('CloseSession', {
      session_id: waiter,
      request_id: cluster.requestId(),
    });
    await Promise.allSettled([firstWait, ...retries]);
  }, 30_000);
});
