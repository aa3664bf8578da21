/**
 * Issue 15 on three in-process nodes with an `auth` section (bearer tokens): what a
 * tenant with `lock` rights cannot make the cluster write. Another identity's session,
 * when the node has applied it, is refused before anything is proposed (the commit index
 * does not move) with the state machine's own code and message; the writes an identity
 * can have refused when applied are bounded per node and per window, and another
 * identity is not held to that bound. Also, under auth: an owner's own refusals keep
 * their codes, Acquire hides holders' owners from a caller without `read`, and the
 * per-identity waiter limit holds end to end.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenEntry } from '../../src/api/auth/tokens.ts';
import { LOCK_SERVICE_NAME } from '../../src/api/proto.ts';
import { bearerInterceptor } from '../../src/client/bearer.ts';
import type { AuthConfig } from '../../src/config/auth.ts';
import { parseClusterConfig } from '../../src/config/index.ts';
import { type NodeId, sessionId } from '../../src/util/ids.ts';
import {
  ApiCluster,
  eventually,
  IDS,
  type LockCaller,
  type RpcError,
  rpcError,
  ServiceClient,
  StreamClient,
  TRANSPORTS,
  type Transport,
} from './harness.ts';

const BUDGET = 6;
const IDENTITIES = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank'] as const;
type Identity = (typeof IDENTITIES)[number];
const token = (identity: Identity): string => `${identity}-token-0123456789`;

/** The `auth` section, through the config parser as a node reads it. */
async function authSection(): Promise<AuthConfig> {
  const section = {
    tokens: await Promise.all(
      IDENTITIES.map((identity) => tokenEntry(identity, token(identity), 'sha256')),
    ),
    roles: {
      teamA: [
        { prefix: 'a/', grant: ['read', 'lock'] },
        { prefix: 'c/', grant: ['read', 'lock'] },
      ],
      teamB: [{ prefix: 'b/', grant: ['read', 'lock'] }],
      lockOnly: [{ prefix: 'c/', grant: ['lock'] }],
    },
    identities: {
      alice: ['teamA'],
      bob: ['teamB'],
      carol: ['lockOnly'],
      dave: ['teamB'],
      erin: ['teamB'],
      frank: ['teamA'],
    },
    limits: { sessionsPerIdentityMax: 20, locksHeldPerIdentityMax: 20, waitersPerIdentityMax: 1 },
    refusedWritesPerIdentityMax: BUDGET,
    // Longer than the file runs: refusals never age out mid-test.
    refusedWritesWindowMs: 600_000,
  };
  const nodes = IDS.map((id, k) => ({
    id,
    peerAddress: `127.0.0.1:${7001 + k}`,
    clientAddress: `127.0.0.1:${8001 + k}`,
    metricsAddress: `127.0.0.1:${9001 + k}`,
  }));
  const config = parseClusterConfig({ nodes, dataDir: 'data', auth: section }, '/tmp');
  if (config.auth === null) throw new Error('no auth section parsed');
  return config.auth;
}

describe('under auth, a tenant cannot make the cluster log writes that do nothing', () => {
  let cluster: ApiCluster;
  let leader: NodeId;
  let follower: NodeId;
  const clients: { close(): void }[] = [];
  let requests = 0;
  const requestId = (): string => String(++requests);

  beforeAll(async () => {
    cluster = await ApiCluster.start({}, {}, await authSection());
    leader = await cluster.leaderId();
    follower = await cluster.followerId();
  });

  afterAll(async () => {
    for (const client of clients) client.close();
    await cluster?.stop();
  });

  /** `identity`'s session calls at node `id` over `transport` (a client of its own). */
  function as(identity: Identity, id: NodeId, transport: Transport = 'unary'): LockCaller {
    const options = { interceptors: [bearerInterceptor(token(identity))] };
    const port = cluster.at(id).server.port;
    const client =
      transport === 'unary'
        ? new ServiceClient(LOCK_SERVICE_NAME, port, options)
        : new StreamClient(port, options);
    clients.push(client);
    return client;
  }

  async function openSession(caller: LockCaller): Promise<string> {
    const opened = await caller.call('OpenSession', {
      ttl_ms: '60000',
      client_name: 'authz-log',
      request_id: requestId(),
    });
    return String(opened.session_id);
  }

  function acquire(caller: LockCaller, lock: string, session: string, waitMs = 0) {
    return caller.call('Acquire', {
      lock,
      session_id: session,
      mode: 'EXCLUSIVE',
      wait_ms: String(waitMs),
      request_id: requestId(),
      owner: `owner-of-${lock}`,
    });
  }

  function release(caller: LockCaller, lock: string, session: string, fencingToken: string) {
    return caller.call('Release', {
      lock,
      session_id: session,
      fencing_token: fencingToken,
      request_id: requestId(),
    });
  }

  /** Every node's commit index, once all agree on it and have applied it. */
  async function commitIndexes(): Promise<number[]> {
    const statuses = () => IDS.map((id) => cluster.nodes.get(id)?.status());
    const leaderCommit = () => cluster.nodes.get(leader)?.status().commitIndex;
    await eventually(() =>
      statuses().every(
        (status) =>
          status !== undefined &&
          status.appliedIndex === status.commitIndex &&
          status.commitIndex === leaderCommit(),
      ),
    );
    return statuses().map((status) => status?.commitIndex ?? -1);
  }

  /** Until every node has applied the session (so that each can judge it). */
  async function appliedEverywhere(session: string): Promise<void> {
    await eventually(() =>
      IDS.every((id) => cluster.nodes.get(id)?.locks.ownerOf(sessionId(Number(session))) !== null),
    );
  }

  function isWaiting(lock: string, session: string): boolean {
    return cluster.nodes.get(leader)?.locks.isWaiting(lock, sessionId(Number(session))) === true;
  }

  function expectRefused(error: RpcError, code: grpc.status, errorCode: string): void {
    expect({ code: error.code, errorCode: error.trailer('dlm-error-code') }).toEqual({
      code,
      errorCode,
    });
  }

  it('refuses another identity’s session before proposing: the commit index does not move', async () => {
    const alice = as('alice', leader);
    const sessionA = await openSession(alice);
    const granted = await acquire(alice, 'a/db', sessionA);
    expect(granted.acquired).toBe(true);
    const fencingToken = String(granted.fencing_token);
    const sessionB = await openSession(as('bob', leader));
    await appliedEverywhere(sessionA);
    await appliedEverywhere(sessionB);

    const before = await commitIndexes();
    const foreign = `session ${sessionA} belongs to another identity than "bob"`;
    for (const id of [leader, follower]) {
      for (const transport of TRANSPORTS) {
        const bob = as('bob', id, transport);
        const calls: [string, Promise<unknown>][] = [
          ['KeepAlive', bob.call('KeepAlive', { session_id: sessionA })],
          ['KeepAlive batch', bob.call('KeepAlive', { session_ids: [sessionB, sessionA] })],
          [
            'CloseSession',
            bob.call('CloseSession', { session_id: sessionA, request_id: requestId() }),
          ],
          ['Acquire', acquire(bob, 'b/x', sessionA)],
          ['Release', release(bob, 'b/x', sessionA, fencingToken)],
        ];
        for (const [what, call] of calls) {
          const error = await rpcError(call);
          expectRefused(error, grpc.status.PERMISSION_DENIED, 'notSessionOwner');
          expect(error.details, `${what} at ${id} over ${transport}`).toBe(foreign);
        }
      }
    }
    expect(await commitIndexes()).toEqual(before);
    // Alice's session and grant are untouched.
    expect(await alice.call('KeepAlive', { session_id: sessionA })).toMatchObject({
      ttl_ms: '60000',
    });
    await release(alice, 'a/db', sessionA, fencingToken);
  });

  it('still writes a session id this node has not applied: only the log can tell', async () => {
    const bob = as('bob', follower);
    const before = await commitIndexes();
    // An id past every applied index: it may be a session the follower has yet to apply.
    const error = await rpcError(bob.call('KeepAlive', { session_id: '900000000' }));
    expectRefused(error, grpc.status.NOT_FOUND, 'sessionNotFound');
    const after = await commitIndexes();
    expect(after.map((index, k) => index - (before[k] ?? 0))).toEqual([1, 1, 1]);
  });

  it('bounds the writes an identity has refused when applied, per node; others are not held to it', async () => {
    const dave = as('dave', follower);
    const own = await openSession(dave);
    const granted = await acquire(dave, 'b/dave', own);
    expect(granted.acquired).toBe(true);
    // Each names a session no node has applied: written, then refused (sessionNotFound).
    for (let k = 0; k < BUDGET; k++) {
      const error = await rpcError(dave.call('KeepAlive', { session_id: String(900_000_000 + k) }));
      expectRefused(error, grpc.status.NOT_FOUND, 'sessionNotFound');
    }
    const before = await commitIndexes();
    for (const transport of TRANSPORTS) {
      const spent = as('dave', follower, transport);
      for (const call of [
        spent.call('KeepAlive', { session_id: '900000100' }),
        spent.call('OpenSession', { ttl_ms: '60000', client_name: 'x', request_id: requestId() }),
        acquire(spent, 'b/other', own),
      ]) {
        const error = await rpcError(call);
        expectRefused(error, grpc.status.RESOURCE_EXHAUSTED, 'RESOURCE_EXHAUSTED');
        expect(error.details).toContain(`auth.refusedWritesPerIdentityMax (${BUDGET})`);
        expect(error.details).toContain('"dave"');
        // The hint: when the oldest refusal leaves the window (600 s here).
        expect(Number(error.trailer('dlm-retry-after-ms'))).toBeGreaterThan(500_000);
      }
    }
    expect(await commitIndexes()).toEqual(before);
    // What keeps or gives back dave's own goes through: his session stays alive and he
    // can release and close.
    expect(await dave.call('KeepAlive', { session_id: own })).toMatchObject({ ttl_ms: '60000' });
    await release(dave, 'b/dave', own, String(granted.fencing_token));
    // Another identity, on the same node, is not held to dave's refusals.
    const erin = as('erin', follower);
    const sessionE = await openSession(erin);
    expect(await acquire(erin, 'b/erin', sessionE)).toMatchObject({ acquired: true });
    // Per node: dave's budget on another node is his own there.
    const elsewhere = as('dave', leader);
    expect(await acquire(elsewhere, 'b/dave', own)).toMatchObject({ acquired: true });
    await dave.call('CloseSession', { session_id: own, request_id: requestId() });
    expect(
      cluster.logs.some((entry) => entry.level === 'warn' && entry.fields?.identity === 'dave'),
    ).toBe(true);
  });

  for (const transport of TRANSPORTS) {
    it(`keeps an owner's own refusals as they were (${transport})`, async () => {
      const frank = as('frank', transport === 'unary' ? leader : follower, transport);
      const session = await openSession(frank);
      const granted = await acquire(frank, 'a/frank', session);
      const current = String(granted.fencing_token);
      expectRefused(
        await rpcError(release(frank, 'a/frank', session, String(Number(current) + 1))),
        grpc.status.FAILED_PRECONDITION,
        'staleToken',
      );
      await release(frank, 'a/frank', session, current);
      expectRefused(
        await rpcError(release(frank, 'a/frank', session, current)),
        grpc.status.FAILED_PRECONDITION,
        'notHolder',
      );
      await frank.call('CloseSession', { session_id: session, request_id: requestId() });
      for (const call of [
        frank.call('KeepAlive', { session_id: session }),
        acquire(frank, 'a/frank', session),
      ]) {
        expectRefused(await rpcError(call), grpc.status.NOT_FOUND, 'sessionNotFound');
      }
    });
  }

  it('Acquire shows holders’ owners only to a caller who may read the lock', async () => {
    const alice = as('alice', leader);
    const carol = as('carol', follower);
    const holder = await openSession(alice);
    const granted = await acquire(alice, 'c/shown', holder);
    expect(granted.acquired).toBe(true);
    const sessionC = await openSession(carol);
    const seen = await acquire(carol, 'c/shown', sessionC);
    expect(seen).toMatchObject({
      acquired: false,
      holders: [{ session_id: holder, fencing_token: granted.fencing_token, owner: '' }],
    });
    // Alice, who may read c/, sees the owner metadata of the same grant.
    const second = await openSession(alice);
    expect(await acquire(alice, 'c/shown', second)).toMatchObject({
      acquired: false,
      holders: [{ session_id: holder, owner: 'owner-of-c/shown' }],
    });
    for (const [caller, session] of [
      [alice, holder],
      [alice, second],
      [carol, sessionC],
    ] as const) {
      await caller.call('CloseSession', { session_id: session, request_id: requestId() });
    }
  });

  it('holds each identity to waitersPerIdentityMax; another identity may still wait', async () => {
    const alice = as('alice', leader);
    const frank = as('frank', follower);
    const holder = await openSession(alice);
    for (const lock of ['a/w1', 'a/w2']) {
      expect(await acquire(alice, lock, holder)).toMatchObject({ acquired: true });
    }
    const waiting = await openSession(alice);
    const firstWait = acquire(alice, 'a/w1', waiting, 30_000);
    await eventually(() => isWaiting('a/w1', waiting));
    const second = await openSession(alice);
    const refused = await rpcError(acquire(alice, 'a/w2', second, 30_000));
    expectRefused(refused, grpc.status.RESOURCE_EXHAUSTED, 'limitReached');
    expect(refused.details).toContain('waitersPerIdentityMax (1)');
    // Frank's count is his own.
    const sessionF = await openSession(frank);
    const frankWait = acquire(frank, 'a/w2', sessionF, 30_000);
    await eventually(() => isWaiting('a/w2', sessionF));
    // Closing the holder grants both waits.
    await alice.call('CloseSession', { session_id: holder, request_id: requestId() });
    expect(await firstWait).toMatchObject({ acquired: true });
    expect(await frankWait).toMatchObject({ acquired: true });
  });
});
