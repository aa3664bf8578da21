import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient, type MonotonicClock, type Session } from '../../src/client/index.ts';
import { ApiCluster, IDS, sleep } from '../api/harness.ts';
import { type FakeAnswer, FakeDlmServer } from '../support/fake-dlm-server.ts';

/**
 * The sessions of one client share their keepalives (src/client/keepalive.ts): many
 * sessions cost one KeepAlive call per interval, one the cluster calls expired ends
 * alone, and each session's safe deadline still counts from the send time of the call
 * that confirmed it, never from a later reading.
 */
let server: FakeDlmServer | null = null;
let cluster: ApiCluster | null = null;
const clients: DlmClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await server?.close();
  server = null;
  await cluster?.stop();
  cluster = null;
});

type Wire = Record<string, unknown>;

/** The ids a KeepAlive request names, in either form. */
function idsOf(request: Wire): string[] {
  const batch = (request.session_ids ?? []) as string[];
  return batch.length > 0 ? batch : [String(request.session_id)];
}

/** A server that opens sessions 1, 2, ... and keeps them alive, except `expired` ones. */
async function fakeCluster(
  options: {
    expired?: Set<string>;
    /** Runs when a KeepAlive arrives, before it is answered. */
    onKeepAlive?: (request: Wire) => void;
    /** Answers a KeepAlive instead, if it returns an answer. */
    refuse?: (request: Wire) => FakeAnswer | null;
  } = {},
): Promise<FakeDlmServer> {
  let next = 0;
  server = await FakeDlmServer.start((method, request) => {
    switch (method) {
      case 'OpenSession':
        next++;
        return { response: { session_id: String(next), ttl_ms: request.ttl_ms } };
      case 'KeepAlive': {
        options.onKeepAlive?.(request);
        const refusal = options.refuse?.(request) ?? null;
        if (refusal !== null) return refusal;
        const expired = idsOf(request).filter((id) => options.expired?.has(id));
        if (request.session_ids === undefined || (request.session_ids as string[]).length === 0) {
          return expired.length > 0
            ? { status: grpc.status.NOT_FOUND, trailers: { 'dlm-error-code': 'sessionNotFound' } }
            : { response: { ttl_ms: '1000' } };
        }
        return { response: { ttl_ms: '0', expired_session_ids: expired } };
      }
      case 'CloseSession':
        return { response: {} };
      default:
        return { status: grpc.status.UNIMPLEMENTED };
    }
  });
  return server;
}

function connect(
  endpoints: string[],
  extra: { clock?: MonotonicClock; keepAliveBatchMax?: number } = {},
): DlmClient {
  const client = new DlmClient({ endpoints, transport: 'unary', attemptTimeoutMs: 500, ...extra });
  clients.push(client);
  return client;
}

/** Opened together, as a busy client would: their keepalives fall due together. */
function openMany(client: DlmClient, count: number, ttlMs: number): Promise<Session[]> {
  return Promise.all(Array.from({ length: count }, () => client.openSession({ ttlMs })));
}

function keepAlives(fake: FakeDlmServer): Wire[] {
  return fake.calls.filter((call) => call.method === 'KeepAlive').map((call) => call.request);
}

describe('batched keepalives', () => {
  it('N sessions of one client cost one KeepAlive call per interval, naming them all', async () => {
    const fake = await fakeCluster();
    const client = connect([fake.address]);
    const ttlMs = 900; // a keepalive every 300 ms
    const sessions = await openMany(client, 40, ttlMs);
    await sleep(1_600);
    const calls = keepAlives(fake);
    // One session each would have sent 40 per interval, 200 or so by now. Batched: one
    // call per interval (or two, if the opens were spread wider than the window: groups
    // that far apart stay apart).
    expect(calls.length).toBeGreaterThanOrEqual(3);
    expect(calls.length).toBeLessThanOrEqual(12);
    expect(Math.max(...calls.map((request) => idsOf(request).length))).toBeGreaterThan(1);
    // Every session was refreshed in every interval: at least 4 times in 1.6 s.
    const times = new Map<string, number>();
    for (const id of calls.flatMap(idsOf)) times.set(id, (times.get(id) ?? 0) + 1);
    expect(times.size).toBe(40);
    expect(Math.min(...times.values())).toBeGreaterThanOrEqual(4);
    expect(sessions.every((session) => session.alive)).toBe(true);
  });

  it('splits a round past keepAliveBatchMax', async () => {
    const fake = await fakeCluster();
    const client = connect([fake.address], { keepAliveBatchMax: 4 });
    await openMany(client, 10, 900);
    await sleep(1_000);
    const calls = keepAlives(fake);
    expect(calls.length).toBeGreaterThanOrEqual(6);
    for (const request of calls) expect(idsOf(request).length).toBeLessThanOrEqual(4);
    const named = new Set(calls.flatMap(idsOf));
    expect(named.size).toBe(10);
  });

  it('a session the answer lists as expired ends alone; the others stay alive', async () => {
    const expired = new Set<string>();
    const fake = await fakeCluster({ expired });
    const client = connect([fake.address]);
    const sessions = await openMany(client, 5, 900);
    const [, second] = sessions;
    if (second === undefined) throw new Error('no session');
    expired.add(second.id);
    await sleep(800);
    expect(second.alive).toBe(false);
    expect(String(second.signal.reason.message)).toMatch(/expired on the cluster/);
    expect(sessions.filter((session) => session.alive)).toHaveLength(4);
    // It is not sent again.
    const after = keepAlives(fake).length;
    await sleep(700);
    const later = keepAlives(fake).slice(after);
    expect(later.length).toBeGreaterThan(0);
    for (const request of later) expect(idsOf(request)).not.toContain(second.id);
  });

  it('credits every session of a batch with the send time, not a later reading', async () => {
    // A clock the test moves: the server's handling "takes" 400 ms of it.
    let offsetMs = 0;
    const clock: MonotonicClock = { nowMs: () => performance.now() + offsetMs };
    const received: number[] = [];
    const fake = await fakeCluster({
      onKeepAlive: (request) => {
        if (idsOf(request).length < 3) return;
        received.push(clock.nowMs());
        offsetMs += 400;
      },
    });
    const client = connect([fake.address], { clock });
    const ttlMs = 3_000;
    const marginMs = 300; // ttl / 10
    const sessions = await openMany(client, 3, ttlMs);
    await sleep(1_300); // one keepalive, at ~1 s
    const [receivedMs] = received;
    if (receivedMs === undefined) throw new Error('no batched keepalive arrived');
    for (const session of sessions) {
      // Sent at or before the server saw it, and never credited with the 400 ms after.
      expect(session.safeDeadlineMs).toBeLessThanOrEqual(receivedMs + ttlMs - marginMs);
      expect(session.safeDeadlineMs).toBeGreaterThan(receivedMs + ttlMs - marginMs - 100);
      expect(session.alive).toBe(true);
    }
  });

  it.each([
    {
      // An older server reads only session_id, which is 0 in a batch.
      why: 'the server refuses session_ids (an older server)',
      refusal: {
        status: grpc.status.INVALID_ARGUMENT,
        trailers: { 'dlm-error-code': 'invalidArgument' },
      },
    },
    {
      // What gRPC itself answers for a message past its size limit: no dlm-error-code.
      why: 'gRPC refuses the message as too large',
      refusal: { status: grpc.status.RESOURCE_EXHAUSTED },
    },
  ])('halves down to one session per call when $why', async ({ refusal }) => {
    const fake = await fakeCluster({
      refuse: (request) => (idsOf(request).length > 1 ? refusal : null),
    });
    const client = connect([fake.address]);
    const sessions = await openMany(client, 6, 900);
    await sleep(1_500);
    expect(sessions.every((session) => session.alive)).toBe(true);
    const singles = keepAlives(fake).filter((request) => idsOf(request).length === 1);
    expect(new Set(singles.flatMap(idsOf)).size).toBe(6);
  });

  it('against a real cluster: sessions closed elsewhere end, the rest stay alive past their TTL', async () => {
    cluster = await ApiCluster.start();
    const endpoints = IDS.map((id) => `127.0.0.1:${cluster?.at(id).server.port}`);
    const calls: string[] = [];
    const client = new DlmClient({
      endpoints,
      attemptTimeoutMs: 500,
      onCall: ({ method }) => {
        calls.push(method);
        return () => {};
      },
    });
    clients.push(client);
    const sessions = await openMany(client, 20, 1_200);
    const [gone] = sessions;
    if (gone === undefined) throw new Error('no session');
    // Closed through another client: this one learns it from a keepalive.
    const c = cluster;
    await c.at(await c.leaderId()).lock.call('CloseSession', {
      session_id: gone.id,
      request_id: c.requestId(),
    });
    await sleep(2_500);
    expect(gone.alive).toBe(false);
    expect(String(gone.signal.reason.message)).toMatch(/expired on the cluster/);
    expect(sessions.slice(1).every((session) => session.alive)).toBe(true);
    // 20 sessions over ~6 intervals: a few calls per interval, not 20 (120 in all).
    const keepAliveCalls = calls.filter((method) => method === 'KeepAlive').length;
    expect(keepAliveCalls).toBeLessThanOrEqual(24);
  });
});
