import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenEntry } from '../../src/api/auth/tokens.ts';
import { LOCK_SERVICE_NAME } from '../../src/api/proto.ts';
import { bearerInterceptor } from '../../src/client/bearer.ts';
import { parseClusterConfig } from '../../src/config/index.ts';
import { BEHAVIOUR_MULTI_LOCK } from '../../src/lock/index.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { ApiCluster, eventually, IDS, rpcError, ServiceClient } from './harness.ts';

/**
 * Lock.AcquireAll (issue 17) through real gRPC against three in-process nodes: a set is
 * granted whole with one token, a try-lock of a set takes nothing, a queued set is
 * granted when its blocker goes and released whole, a real wait-for cycle of three
 * sessions is refused ABORTED naming it, and a malformed set names its field.
 */
let cluster: ApiCluster;
let leader: NodeId;
let follower: NodeId;

beforeAll(async () => {
  cluster = await ApiCluster.start();
  leader = await cluster.leaderId();
  follower = await cluster.followerId();
  // A new cluster raises itself to the latest behaviour once its members agree.
  await eventually(() =>
    [...cluster.nodes.values()].every((node) => node.locks.behaviour >= BEHAVIOUR_MULTI_LOCK),
  );
});

afterAll(async () => {
  await cluster?.stop();
});

function acquireAll(
  via: NodeId,
  session: string,
  locks: readonly (string | { lock: string; mode: string })[],
  extra: object = {},
) {
  return cluster.at(via).lock.call('AcquireAll', {
    locks: locks.map((each) =>
      typeof each === 'string' ? { lock: each, mode: 'EXCLUSIVE' } : each,
    ),
    session_id: session,
    request_id: cluster.requestId(),
    owner: `owner-of-${session}`,
    ...extra,
  });
}

function describeLock(name: string) {
  return cluster.at(leader).lock.call('Describe', { lock: name });
}

describe('Lock.AcquireAll', () => {
  it('grants every lock of the set at once, with one token, through a follower', async () => {
    const session = await cluster.openSession(follower);
    const answer = await acquireAll(follower, session, [
      'all/b',
      { lock: 'all/a', mode: 'SHARED' },
    ]);
    expect(answer.acquired).toBe(true);
    const token = answer.fencing_token as string;
    expect(Number(token)).toBeGreaterThan(0);
    // Code-unit order, each with its asked mode and the caller among its holders.
    expect(
      answer.locks.map((each: { lock: string; mode: string }) => [each.lock, each.mode]),
    ).toEqual([
      ['all/a', 'SHARED'],
      ['all/b', 'EXCLUSIVE'],
    ]);
    for (const each of answer.locks) {
      expect(each.holders).toEqual([
        expect.objectContaining({ session_id: session, fencing_token: token }),
      ]);
    }
    for (const name of ['all/a', 'all/b']) {
      const described = await describeLock(name);
      expect(
        described.holders.map((holder: { fencing_token: string }) => holder.fencing_token),
      ).toEqual([token]);
    }
  });

  it('a try-lock of a set with one lock held takes none of them and names the holder', async () => {
    const holder = await cluster.openSession(leader);
    const other = await cluster.openSession(leader);
    const held = await cluster.at(leader).lock.call('Acquire', {
      lock: 'try/b',
      session_id: holder,
      request_id: cluster.requestId(),
      owner: 'holder',
    });
    expect(held.acquired).toBe(true);
    const answer = await acquireAll(leader, other, ['try/a', 'try/b']);
    expect(answer.acquired).toBe(false);
    expect(answer.fencing_token).toBe('0');
    const byLock = Object.fromEntries(
      answer.locks.map((each: { lock: string; holders: { session_id: string }[] }) => [
        each.lock,
        each.holders.map((h) => h.session_id),
      ]),
    );
    expect(byLock).toEqual({ 'try/a': [], 'try/b': [holder] });
    // Not partly granted: try/a stays free.
    expect((await describeLock('try/a')).holders).toEqual([]);
  });

  it('a queued set is granted whole when its blocker releases, and releasing one lock frees the set', async () => {
    const blocker = await cluster.openSession(leader);
    const waiter = await cluster.openSession(follower);
    const held = await cluster.at(leader).lock.call('Acquire', {
      lock: 'queue/y',
      session_id: blocker,
      request_id: cluster.requestId(),
    });
    const waiting = acquireAll(follower, waiter, ['queue/x', 'queue/y'], { wait_ms: '5000' });
    // While it waits it holds nothing, not even the free queue/x.
    await eventually(async () => (await describeLock('queue/y')).waiters.length === 1);
    expect((await describeLock('queue/x')).holders).toEqual([]);
    await cluster.at(leader).lock.call('Release', {
      lock: 'queue/y',
      session_id: blocker,
      fencing_token: held.fencing_token,
      request_id: cluster.requestId(),
    });
    const answer = await waiting;
    expect(answer.acquired).toBe(true);
    const token = answer.fencing_token as string;
    expect(BigInt(token)).toBeGreaterThan(BigInt(held.fencing_token));
    expect((await describeLock('queue/x')).holders[0]?.fencing_token).toBe(token);

    const released = await cluster.at(follower).lock.call('Release', {
      lock: 'queue/y',
      session_id: waiter,
      fencing_token: token,
      request_id: cluster.requestId(),
    });
    expect(released.released).toBe(true);
    await eventually(async () => (await describeLock('queue/x')).holders.length === 0);
    expect((await describeLock('queue/y')).holders).toEqual([]);
  });

  it('a real wait-for cycle of three sessions is refused ABORTED (deadlock), naming the cycle', async () => {
    const [s1, s2, s3] = [
      await cluster.openSession(leader),
      await cluster.openSession(leader),
      await cluster.openSession(leader),
    ] as [string, string, string];
    for (const [session, name] of [
      [s1, 'cycle/a'],
      [s2, 'cycle/b'],
      [s3, 'cycle/c'],
    ] as const) {
      expect((await acquireAll(leader, session, [name])).acquired).toBe(true);
    }
    // s1 waits for b (held by s2), s2 waits for c (held by s3): no cycle yet.
    const w1 = acquireAll(leader, s1, ['cycle/b'], { wait_ms: '5000' });
    const w2 = acquireAll(leader, s2, ['cycle/c'], { wait_ms: '5000' });
    await eventually(async () => (await describeLock('cycle/c')).waiters.length === 1);
    await eventually(async () => (await describeLock('cycle/b')).waiters.length === 1);
    // s3 waiting for a (held by s1) would close s3 → s1 → s2 → s3.
    const refused = await rpcError(acquireAll(leader, s3, ['cycle/a'], { wait_ms: '5000' }));
    expect(refused.code).toBe(status.ABORTED);
    expect(refused.trailer('dlm-error-code')).toBe('deadlock');
    for (const session of [s1, s2, s3]) expect(refused.details).toContain(`session ${session}`);
    for (const name of ['cycle/a', 'cycle/b', 'cycle/c']) expect(refused.details).toContain(name);
    // Nothing was queued for s3.
    expect((await describeLock('cycle/a')).waiters).toEqual([]);
    // Closing s3 frees c for s2, and then the others finish.
    await cluster.at(leader).lock.call('CloseSession', {
      session_id: s3,
      request_id: cluster.requestId(),
    });
    expect((await w2).acquired).toBe(true);
    await cluster.at(leader).lock.call('CloseSession', {
      session_id: s2,
      request_id: cluster.requestId(),
    });
    expect((await w1).acquired).toBe(true);
  });

  it('a malformed set is INVALID_ARGUMENT naming the field', async () => {
    const session = await cluster.openSession(leader);
    const twice = await rpcError(acquireAll(leader, session, ['bad/a', 'bad/b', 'bad/a']));
    expect(twice.code).toBe(status.INVALID_ARGUMENT);
    expect(twice.details).toContain('AcquireAllRequest.locks[2].lock');
    expect(twice.details).toContain('locks[0]');
    const none = await rpcError(acquireAll(leader, session, []));
    expect(none.code).toBe(status.INVALID_ARGUMENT);
    expect(none.details).toContain('AcquireAllRequest.locks');
    const empty = await rpcError(acquireAll(leader, session, ['']));
    expect(empty.details).toContain('AcquireAllRequest.locks[0].lock: must not be empty');
  });
});

describe('Lock.AcquireAll below behaviour version 4', () => {
  it('is FAILED_PRECONDITION naming the behaviour version, not a malformed request', async () => {
    const old = await ApiCluster.start({}, { behaviourMax: BEHAVIOUR_MULTI_LOCK - 1 });
    try {
      const id = await old.leaderId();
      const session = await old.openSession(id);
      const refused = await rpcError(
        old.at(id).lock.call('AcquireAll', {
          locks: [{ lock: 'old/a', mode: 'EXCLUSIVE' }],
          session_id: session,
          request_id: old.requestId(),
        }),
      );
      expect(refused.code).toBe(status.FAILED_PRECONDITION);
      expect(refused.details).toContain(`lock behaviour version ${BEHAVIOUR_MULTI_LOCK}`);
    } finally {
      await old.stop();
    }
  });
});

describe('Lock.AcquireAll under auth', () => {
  it('needs the lock permission on every lock of the set: one it lacks refuses the set, naming that lock', async () => {
    const token = 'alice-token-0123456789';
    const section = {
      tokens: [await tokenEntry('alice', token, 'sha256')],
      roles: { mine: [{ prefix: 'mine/', grant: ['read', 'lock'] }] },
      identities: { alice: ['mine'] },
    };
    const nodes = IDS.map((id, k) => ({
      id,
      peerAddress: `127.0.0.1:${7101 + k}`,
      clientAddress: `127.0.0.1:${8101 + k}`,
      metricsAddress: `127.0.0.1:${9101 + k}`,
    }));
    const auth = parseClusterConfig({ nodes, dataDir: 'data', auth: section }, '/tmp').auth;
    const secured = await ApiCluster.start({}, {}, auth);
    const alice = new ServiceClient(
      LOCK_SERVICE_NAME,
      secured.at(await secured.leaderId()).server.port,
      {
        interceptors: [bearerInterceptor(token)],
      },
    );
    try {
      await eventually(() =>
        [...secured.nodes.values()].every((node) => node.locks.behaviour >= BEHAVIOUR_MULTI_LOCK),
      );
      const opened = await alice.call('OpenSession', {
        ttl_ms: '5000',
        client_name: 'authz',
        request_id: secured.requestId(),
      });
      const set = (names: string[]) =>
        alice.call('AcquireAll', {
          locks: names.map((lock) => ({ lock, mode: 'EXCLUSIVE' })),
          session_id: opened.session_id,
          request_id: secured.requestId(),
        });
      const denied = await rpcError(set(['mine/a', 'theirs/b']));
      expect(denied.code).toBe(status.PERMISSION_DENIED);
      expect(denied.details).toContain('theirs/b');
      // Nothing of the set was taken.
      const free = await alice.call('Describe', { lock: 'mine/a' });
      expect(free.holders).toEqual([]);
      expect((await set(['mine/a', 'mine/b'])).acquired).toBe(true);
    } finally {
      alice.raw.close();
      await secured.stop();
    }
  });
});
