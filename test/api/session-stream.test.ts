import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeId } from '../../src/util/ids.ts';
import {
  ApiCluster,
  eventually,
  type NodeEndpoints,
  retrying,
  rpcError,
  serve,
} from './harness.ts';

/**
 * What only a Lock.Session stream has: many calls in flight on one stream, answered as
 * they complete; cancel by call id; the stream's end giving up its calls; protocol
 * errors that end the stream. (Every session call's answers and errors are checked over
 * both transports in lock-api.test.ts and errors.test.ts; the bounds on calls in flight
 * in session-stream-waits.test.ts, on unread answers in session-stream-unread.test.ts.)
 */
let cluster: ApiCluster;
let leader: NodeId;
let follower: NodeId;

beforeAll(async () => {
  cluster = await ApiCluster.start();
  leader = await cluster.leaderId();
  follower = await cluster.followerId();
});

afterAll(async () => {
  await cluster?.stop();
});

/** A session holding `name`, and a second session (long lease) to wait for it. */
async function heldLock(name: string): Promise<{ holder: string; token: string; waiter: string }> {
  const holder = await cluster.openSession(leader);
  const waiter = await cluster.openSession(leader, 120_000);
  const granted = await cluster.at(leader).lock.call('Acquire', {
    lock: name,
    session_id: holder,
    request_id: cluster.requestId(),
  });
  expect(granted.acquired).toBe(true);
  return { holder, token: granted.fencing_token, waiter };
}

function waitingAcquire(name: string, session: string, waitMs = 60_000) {
  return {
    lock: name,
    session_id: session,
    request_id: cluster.requestId(),
    wait_ms: String(waitMs),
  };
}

async function describeLock(name: string) {
  return cluster.at(leader).lock.call('Describe', { lock: name });
}

/** Releases the holder's grant, then requires the lock to stay free: no withdrawn wait got it. */
async function expectGivenBack(name: string, holder: string, token: string): Promise<void> {
  await eventually(async () => (await describeLock(name)).waiters.length === 0, 5_000);
  await cluster.at(leader).lock.call('Release', {
    lock: name,
    session_id: holder,
    fencing_token: token,
    request_id: cluster.requestId(),
  });
  // A waiter still queued would be granted by that Release's entry; one withdrawn after a
  // grant would be released again: either way the lock ends up free, and stays free.
  await eventually(async () => {
    const described = await describeLock(name);
    return described.holders.length === 0 && described.waiters.length === 0;
  }, 5_000);
}

describe('calls on one stream', () => {
  it('are independent: a KeepAlive is answered while an Acquire before it waits', async () => {
    const { waiter } = await heldLock('order/1');
    const session = cluster.at(leader).session;
    let acquireAnswered = false;
    const acquire = session
      .call('Acquire', waitingAcquire('order/1', waiter, 1_500))
      .finally(() => {
        acquireAnswered = true;
      });
    await eventually(async () => (await describeLock('order/1')).waiters.length === 1);
    const startedMs = performance.now();
    const kept = await session.call('KeepAlive', { session_id: waiter });
    expect(kept.ttl_ms).toBe('120000');
    expect(acquireAnswered).toBe(false);
    expect(performance.now() - startedMs).toBeLessThan(1_000);
    expect((await acquire).acquired).toBe(false);
  });

  it('a follower forwards the writes of its stream to the leader, answering from its own state', async () => {
    const session = cluster.at(follower).session;
    // A forward can time out on a loaded machine: retried with the same request id, as a client does.
    const openRequest = { ttl_ms: '5000', request_id: cluster.requestId() };
    const opened = await retrying(() => session.call('OpenSession', openRequest));
    expect(opened.header.node_id).toBe(follower);
    const acquireRequest = {
      lock: 'forward/1',
      session_id: opened.session_id,
      request_id: cluster.requestId(),
    };
    const granted = await retrying(() => session.call('Acquire', acquireRequest));
    expect(granted.header).toMatchObject({ node_id: follower, leader_id: leader });
    const onLeader = await describeLock('forward/1');
    expect(onLeader.holders[0]?.fencing_token).toBe(granted.fencing_token);
  });

  it('carry a traceparent each, and each answer names its trace', async () => {
    const session = cluster.at(leader).session;
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const callId = session.nextId;
    const answer = session.send(callId, {
      call_id: callId,
      traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
      describe: { lock: 'trace/1' },
    });
    expect((await answer).holders).toEqual([]);
    expect(session.traceIds.get(callId)).toBe(traceId);
    // Without one, a call gets a trace of its own, errors included.
    const untraced = await rpcError(session.call('KeepAlive', { session_id: '999999' }));
    expect(untraced.trailer('dlm-trace-id')).toMatch(/^[0-9a-f]{32}$/);
    expect(untraced.trailer('dlm-trace-id')).not.toBe(traceId);
  });
});

describe('giving a waiting Acquire up', () => {
  it('a cancel message withdraws it: its place in the queue is given back through the log', async () => {
    const { holder, token, waiter } = await heldLock('cancel/1');
    const session = cluster.at(leader).session;
    const callId = session.nextId;
    // No answer follows the cancel: the promise stays pending.
    void session.call('Acquire', waitingAcquire('cancel/1', waiter));
    await eventually(async () => (await describeLock('cancel/1')).waiters.length === 1);
    session.cancel(callId);
    await expectGivenBack('cancel/1', holder, token);
    // The stream goes on serving after a cancel.
    expect((await session.call('KeepAlive', { session_id: waiter })).ttl_ms).toBe('120000');
  });

  it('the stream ending withdraws every call in flight on it', async () => {
    const first = await heldLock('end/1');
    const second = await heldLock('end/2');
    const node = cluster.nodes.get(leader);
    if (node === undefined) throw new Error('no leader');
    const own = await serve(node, cluster.logs);
    try {
      void own.session.call('Acquire', waitingAcquire('end/1', first.waiter)).catch(() => {});
      void own.session.call('Acquire', waitingAcquire('end/2', second.waiter)).catch(() => {});
      await eventually(async () => {
        const [a, b] = await Promise.all([describeLock('end/1'), describeLock('end/2')]);
        return a.waiters.length === 1 && b.waiters.length === 1;
      });
      own.session.end();
      await expectGivenBack('end/1', first.holder, first.token);
      await expectGivenBack('end/2', second.holder, second.token);
      await eventually(() => own.server.callsInFlight() === 0, 5_000);
    } finally {
      await close(own);
    }
  });

  it('timeout_ms ends a wait with DEADLINE_EXCEEDED and withdraws it', async () => {
    const { holder, token, waiter } = await heldLock('timeout/1');
    const session = cluster.at(leader).session;
    const startedMs = performance.now();
    const error = await rpcError(
      session.call('Acquire', waitingAcquire('timeout/1', waiter), { deadlineMs: 300 }),
    );
    expect(error.code).toBe(status.DEADLINE_EXCEEDED);
    expect(error.trailer('dlm-error-code')).toBe('DEADLINE_EXCEEDED');
    expect(error.details).toContain('timeout_ms (300 ms)');
    expect(performance.now() - startedMs).toBeGreaterThanOrEqual(250);
    await expectGivenBack('timeout/1', holder, token);
  });
});

describe('limits and protocol errors', () => {
  it('ends the stream with INVALID_ARGUMENT for a call_id 0 or one still in flight, giving up its calls', async () => {
    const { holder, token, waiter } = await heldLock('protocol/1');
    const node = cluster.nodes.get(leader);
    if (node === undefined) throw new Error('no leader');
    const own = await serve(node, cluster.logs);
    try {
      const zero = await rpcError(own.session.send('0', { call_id: '0', describe: { lock: 'x' } }));
      expect(zero.code).toBe(status.INVALID_ARGUMENT);
      expect(zero.details).toBe('SessionRequest.call_id: must not be 0');

      const waiting = own.session.send('7', {
        call_id: '7',
        acquire: waitingAcquire('protocol/1', waiter),
      });
      await eventually(async () => (await describeLock('protocol/1')).waiters.length === 1);
      own.session.write({ call_id: '7', describe: { lock: 'x' } });
      const duplicate = await rpcError(waiting);
      expect(duplicate.code).toBe(status.INVALID_ARGUMENT);
      expect(duplicate.details).toBe(
        'SessionRequest.call_id: "7" names a call still in flight on this stream',
      );
      await expectGivenBack('protocol/1', holder, token);

      const empty = await rpcError(own.session.send('9', { call_id: '9' }));
      expect(empty.details).toContain('SessionRequest.call: call 9 sets none of open_session');
    } finally {
      await close(own);
    }
  });

  it("honours a timeout_ms beyond a Node timer's reach: the call is not timed out early", async () => {
    // A wait at the rules' ceiling needs a timeout_ms past it. Node fires a timer asked
    // to wait longer than 2^31 - 1 ms after 1 ms: this call would end DEADLINE_EXCEEDED
    // at once instead of when its wait runs out.
    const { waiter } = await heldLock('timeout/range');
    const session = cluster.at(leader).session;
    const startedMs = performance.now();
    const answer = await session.call('Acquire', waitingAcquire('timeout/range', waiter, 300), {
      deadlineMs: 2 ** 31,
    });
    expect(answer.acquired).toBe(false);
    expect(performance.now() - startedMs).toBeGreaterThanOrEqual(250);
  });

  it('answers a timeout_ms a number cannot hold with INVALID_ARGUMENT, for that call only', async () => {
    const session = cluster.at(leader).session;
    const callId = session.nextId;
    const error = await rpcError(
      session.send(callId, {
        call_id: callId,
        timeout_ms: '9007199254740992',
        describe: { lock: 'timeout/huge' },
      }),
    );
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(error.details).toBe(
      'SessionRequest.timeout_ms: 9007199254740992 is above 2^53 - 1, the largest value dlm supports',
    );
    expect((await session.call('Describe', { lock: 'timeout/huge' })).holders).toEqual([]);
  });

  it('a server shutting down refuses new calls UNAVAILABLE with the leader hint, answers those in flight, then ends the stream', async () => {
    const { waiter } = await heldLock('drain/1');
    const node = cluster.nodes.get(follower);
    if (node === undefined) throw new Error('no follower');
    const own = await serve(node, cluster.logs);
    try {
      // A Describe first, so the stream is open before the shutdown begins.
      await own.session.call('Describe', { lock: 'drain/1' });
      const ended = own.session.ended();
      const waiting = own.session.call('Acquire', waitingAcquire('drain/1', waiter, 500));
      await eventually(async () => (await describeLock('drain/1')).waiters.length === 1);
      const startedMs = performance.now();
      const closed = own.server.close(10_000);
      const refused = await rpcError(own.session.call('KeepAlive', { session_id: waiter }));
      expect(refused.code).toBe(status.UNAVAILABLE);
      expect(refused.details).toBe(`${follower} is shutting down`);
      expect(refused.trailer('dlm-leader-hint')).toBe(leader);
      expect((await waiting).acquired).toBe(false);
      expect((await ended).code).toBe(status.OK);
      await closed;
      // Not held for the 10 s grace: the stream ended as soon as its calls were answered.
      expect(performance.now() - startedMs).toBeLessThan(5_000);
    } finally {
      await close(own);
    }
  });

  it('a half-closed stream answers what is in flight, then ends', async () => {
    const { waiter } = await heldLock('half/1');
    const session = cluster.at(leader).session;
    const answer = session.call('Acquire', waitingAcquire('half/1', waiter, 300));
    const ended = session.halfClose();
    expect((await answer).acquired).toBe(false);
    expect((await ended).code).toBe(status.OK);
  });
});

async function close(endpoints: NodeEndpoints): Promise<void> {
  endpoints.lock.close();
  endpoints.session.close();
  endpoints.cluster.close();
  endpoints.health.close();
  await endpoints.server.close(100);
}
