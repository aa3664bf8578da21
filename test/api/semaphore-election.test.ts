import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenEntry } from '../../src/api/auth/tokens.ts';
import { LOCK_SERVICE_NAME } from '../../src/api/proto.ts';
import { bearerInterceptor } from '../../src/client/bearer.ts';
import { parseClusterConfig } from '../../src/config/index.ts';
import { BEHAVIOUR_MULTI_LOCK, BEHAVIOUR_SEMAPHORES_ELECTIONS } from '../../src/lock/index.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { ApiCluster, eventually, IDS, rpcError, ServiceClient, sleep } from './harness.ts';

/**
 * Semaphores and leader election (issue 17) through real gRPC against three nodes: the
 * RPCs AcquirePermits, Campaign, Proclaim, Resign, Leader and Observe, answered by the
 * state machine through the same attempt flow as Acquire.
 */
let cluster: ApiCluster;
let leader: NodeId;
let follower: NodeId;

beforeAll(async () => {
  cluster = await ApiCluster.start();
  leader = await cluster.leaderId();
  follower = await cluster.followerId();
  await eventually(() =>
    [...cluster.nodes.values()].every(
      (node) => node.locks.behaviour >= BEHAVIOUR_SEMAPHORES_ELECTIONS,
    ),
  );
});

afterAll(async () => {
  await cluster?.stop();
});

/** A decoded message, as the harness's calls give them. */
type Wire = Record<string, unknown>;

function permits(via: NodeId, session: string, name: string, extra: object = {}) {
  return cluster.at(via).lock.call('AcquirePermits', {
    name,
    permits: '1',
    limit: '2',
    session_id: session,
    request_id: cluster.requestId(),
    owner: `owner-of-${session}`,
    ...extra,
  });
}

function campaign(via: NodeId, session: string, election: string, value: string, extra = {}) {
  return cluster.at(via).lock.call('Campaign', {
    election,
    value,
    session_id: session,
    request_id: cluster.requestId(),
    owner: `candidate-${session}`,
    ...extra,
  });
}

function release(session: string, name: string, token: string) {
  return cluster.at(leader).lock.call('Release', {
    lock: name,
    session_id: session,
    fencing_token: token,
    request_id: cluster.requestId(),
  });
}

function validate(name: string, token: string) {
  return cluster.at(follower).lock.call('ValidateFence', { lock: name, fencing_token: token });
}

function describeLock(name: string) {
  return cluster.at(leader).lock.call('Describe', { lock: name });
}

/** Every message of a stream, as it arrives; `stop` cancels it. */
function collect(via: NodeId, method: string, request: object) {
  const seen: Wire[] = [];
  const stream = cluster.at(via).lock.stream(method, request);
  stream.on('data', (message: Wire) => seen.push(message));
  stream.on('error', () => {});
  return { seen, stop: () => stream.cancel() };
}

/** The most grants held at once, replaying a Watch's GRANT and RELEASE/EXPIRE events. */
function mostHeldAtOnce(events: readonly Wire[]): number {
  const held = new Set<string>();
  let most = 0;
  for (const event of events) {
    if (event.type === 'GRANT') held.add(String(event.fencing_token));
    else held.delete(String(event.fencing_token));
    most = Math.max(most, held.size);
  }
  return most;
}

describe('Lock.AcquirePermits', () => {
  it('holds at most `limit` permits at once, each grant with its own token that ValidateFence checks, waiters served FIFO', async () => {
    const name = 'sem/pool';
    const watch = collect(leader, 'Watch', { prefix: name });
    await sleep(50);
    const [s1, s2, s3, s4] = [
      await cluster.openSession(follower),
      await cluster.openSession(follower),
      await cluster.openSession(leader),
      await cluster.openSession(leader),
    ] as [string, string, string, string];
    const first = await permits(follower, s1, name);
    const second = await permits(follower, s2, name);
    expect([first.acquired, second.acquired]).toEqual([true, true]);
    const [t1, t2] = [String(first.fencing_token), String(second.fencing_token)];
    expect(Number(t2)).toBeGreaterThan(Number(t1));
    // Both holders, each with its permits; a third is not granted at once.
    expect(second.holders).toEqual([
      expect.objectContaining({ session_id: s1, fencing_token: t1, permits: '1', value: '' }),
      expect.objectContaining({ session_id: s2, fencing_token: t2, permits: '1', value: '' }),
    ]);
    const tried = await permits(leader, s3, name, { wait_ms: '0' });
    expect(tried.acquired).toBe(false);
    expect(tried.fencing_token).toBe('0');
    for (const token of [t1, t2]) expect((await validate(name, token)).valid).toBe(true);

    // s3 then s4 wait, in that order.
    const third = permits(leader, s3, name, { wait_ms: '10000' });
    await eventually(async () => (await describeLock(name)).waiters.length === 1);
    const fourth = permits(leader, s4, name, { wait_ms: '10000' });
    await eventually(async () => (await describeLock(name)).waiters.length === 2);
    const waiting = await describeLock(name);
    expect(waiting.waiters.map((each: Wire) => [each.session_id, each.permits])).toEqual([
      [s3, '1'],
      [s4, '1'],
    ]);

    // s1 gives its permit back: the head waiter (s3), not s4, gets one, with a new token.
    await release(s1, name, t1);
    const granted3 = await third;
    expect(granted3.acquired).toBe(true);
    const t3 = String(granted3.fencing_token);
    expect(Number(t3)).toBeGreaterThan(Number(t2));
    expect((await validate(name, t1)).valid).toBe(false);
    expect((await validate(name, t3)).valid).toBe(true);
    expect((await describeLock(name)).waiters.map((each: Wire) => each.session_id)).toEqual([s4]);

    await release(s2, name, t2);
    const granted4 = await fourth;
    expect(granted4.acquired).toBe(true);
    const t4 = String(granted4.fencing_token);
    expect(new Set([t1, t2, t3, t4]).size).toBe(4);
    expect((await validate(name, t2)).valid).toBe(false);
    expect((await validate(name, t4)).valid).toBe(true);
    await release(s3, name, t3);
    await release(s4, name, t4);

    await eventually(() => watch.seen.filter((event) => event.type === 'GRANT').length === 4);
    await eventually(() => watch.seen.filter((event) => event.type !== 'GRANT').length === 4);
    watch.stop();
    // Never more than the limit at once, as the log granted and released them.
    expect(mostHeldAtOnce(watch.seen)).toBe(2);
    expect(
      watch.seen.filter((event) => event.type === 'GRANT').map((e) => e.fencing_token),
    ).toEqual([t1, t2, t3, t4]);
  });

  it('a name that is a semaphore is refused FAILED_PRECONDITION kindMismatch to a lock, an election, and another limit', async () => {
    const name = 'sem/kinds';
    const a = await cluster.openSession(leader);
    const b = await cluster.openSession(leader);
    expect((await permits(leader, a, name, { limit: '3' })).acquired).toBe(true);
    const refusals = [
      await rpcError(permits(leader, b, name, { limit: '4' })),
      await rpcError(
        cluster.at(leader).lock.call('Acquire', {
          lock: name,
          session_id: b,
          request_id: cluster.requestId(),
        }),
      ),
      await rpcError(campaign(leader, b, name, 'v')),
      await rpcError(cluster.at(follower).lock.call('Leader', { election: name })),
    ];
    for (const refused of refusals) {
      expect(refused.code).toBe(status.FAILED_PRECONDITION);
      expect(refused.trailer('dlm-error-code')).toBe('kindMismatch');
    }
    expect(refusals[0]?.details).toContain('3');
    expect(refusals[3]?.details).toContain('LeaderRequest.election');
  });

  it('validates at the edge, naming the request field', async () => {
    const session = await cluster.openSession(leader);
    const cases: [object, string][] = [
      [{ permits: '3', limit: '2' }, 'AcquirePermitsRequest.permits'],
      [{ limit: '0' }, 'AcquirePermitsRequest.limit'],
      [{ name: '' }, 'AcquirePermitsRequest.name'],
    ];
    for (const [extra, field] of cases) {
      const refused = await rpcError(permits(leader, session, 'sem/bad', extra));
      expect(refused.code).toBe(status.INVALID_ARGUMENT);
      expect(refused.details).toContain(field);
    }
  });
});

describe('leader election', () => {
  it('three candidates: one leader at a time, tokens rising, Leader and Observe see every change, resign and expiry hand over', async () => {
    const election = 'elect/primary';
    const observed = collect(follower, 'Observe', { election });
    await eventually(() => observed.seen.length === 1);
    expect(observed.seen[0]).toMatchObject({ type: 'CURRENT', has_leader: false, leader: null });
    const none = await cluster.at(leader).lock.call('Leader', { election });
    expect(none).toMatchObject({ has_leader: false, leader: null });

    const c1 = await cluster.openSession(leader);
    const c2 = await cluster.openSession(follower);
    // c3's lease is short and never kept alive: its session expires while it leads.
    const c3 = await cluster.openSession(follower, 1_500);

    const first = await campaign(leader, c1, election, 'one:8080');
    expect(first).toMatchObject({ elected: true, leader: { session_id: c1, value: 'one:8080' } });
    const t1 = String(first.fencing_token);
    expect(first.leader.fencing_token).toBe(t1);
    const second = campaign(follower, c2, election, 'two:8080', { wait_ms: '10000' });
    await eventually(async () => (await describeLock(election)).waiters.length === 1);
    const third = campaign(follower, c3, election, 'three:8080', { wait_ms: '10000' });
    await eventually(async () => (await describeLock(election)).waiters.length === 2);
    // A try by a fourth is not elected, and is told who leads.
    const c4 = await cluster.openSession(leader);
    const tried = await campaign(leader, c4, election, 'four', { wait_ms: '0' });
    expect(tried).toMatchObject({ elected: false, fencing_token: '0', leader: { session_id: c1 } });

    const proclaimed = await cluster.at(follower).lock.call('Proclaim', {
      election,
      session_id: c1,
      fencing_token: t1,
      value: 'one:9090',
      request_id: cluster.requestId(),
    });
    expect(proclaimed.leader).toMatchObject({
      session_id: c1,
      value: 'one:9090',
      fencing_token: t1,
    });
    expect((await cluster.at(follower).lock.call('Leader', { election })).leader).toMatchObject({
      session_id: c1,
      value: 'one:9090',
      fencing_token: t1,
    });

    // c1 resigns: c2, the first in line, leads with a higher token.
    const resigned = await cluster.at(leader).lock.call('Resign', {
      election,
      session_id: c1,
      fencing_token: t1,
      request_id: cluster.requestId(),
    });
    expect(resigned.resigned).toBe(true);
    const elected2 = await second;
    const t2 = String(elected2.fencing_token);
    expect(elected2).toMatchObject({
      elected: true,
      leader: { session_id: c2, value: 'two:8080' },
    });
    expect(Number(t2)).toBeGreaterThan(Number(t1));
    // The deposed leader can neither proclaim nor resign again with its term's token.
    const stale = await rpcError(
      cluster.at(leader).lock.call('Proclaim', {
        election,
        session_id: c1,
        fencing_token: t1,
        value: 'zombie',
        request_id: cluster.requestId(),
      }),
    );
    expect(stale.code).toBe(status.FAILED_PRECONDITION);
    expect((await validate(election, t1)).valid).toBe(false);
    expect((await validate(election, t2)).valid).toBe(true);

    // c2 closes its session: c3 leads, then c3's session expires: nobody leads.
    await cluster.at(leader).lock.call('CloseSession', {
      session_id: c2,
      request_id: cluster.requestId(),
    });
    const elected3 = await third;
    const t3 = String(elected3.fencing_token);
    expect(Number(t3)).toBeGreaterThan(Number(t2));
    await eventually(async () => {
      const now = await cluster.at(leader).lock.call('Leader', { election });
      return now.has_leader === false;
    }, 10_000);

    await eventually(() => observed.seen.some((event) => event.type === 'VACANT'));
    observed.stop();
    const story = observed.seen.map((event) => [
      event.type,
      (event.leader as Wire | null)?.session_id ?? null,
      (event.leader as Wire | null)?.value ?? null,
      (event.leader as Wire | null)?.fencing_token ?? null,
    ]);
    expect(story).toEqual([
      ['CURRENT', null, null, null],
      ['ELECTED', c1, 'one:8080', t1],
      ['PROCLAIMED', c1, 'one:9090', t1],
      ['ELECTED', c2, 'two:8080', t2],
      ['ELECTED', c3, 'three:8080', t3],
      ['VACANT', null, null, null],
    ]);
    // Each event names the entry that made it, in log order.
    const indexes = observed.seen.slice(1).map((event) => Number(event.index));
    expect(indexes).toEqual([...indexes].sort((a, b) => a - b));
  });

  it('Observe starts with the leader now, on any node', async () => {
    const election = 'elect/late';
    const session = await cluster.openSession(leader);
    const elected = await campaign(leader, session, election, 'here');
    for (const id of IDS) {
      const observed = collect(id, 'Observe', { election });
      await eventually(() => observed.seen.length === 1);
      observed.stop();
      expect(observed.seen[0]).toMatchObject({
        type: 'CURRENT',
        election,
        has_leader: true,
        leader: { session_id: session, value: 'here', fencing_token: elected.fencing_token },
      });
    }
  });

  it('an election name is refused to a semaphore and a lock (kindMismatch); Leader of a lock too', async () => {
    const election = 'elect/kinds';
    const a = await cluster.openSession(leader);
    const b = await cluster.openSession(leader);
    expect((await campaign(leader, a, election, 'v')).elected).toBe(true);
    const lock = 'elect/plain-lock';
    await cluster.at(leader).lock.call('Acquire', {
      lock,
      session_id: b,
      request_id: cluster.requestId(),
    });
    const refusals = [
      await rpcError(permits(leader, b, election)),
      await rpcError(
        cluster.at(leader).lock.call('Acquire', {
          lock: election,
          session_id: b,
          request_id: cluster.requestId(),
        }),
      ),
      await rpcError(campaign(leader, a, lock, 'v')),
      await rpcError(cluster.at(leader).lock.call('Leader', { election: lock })),
    ];
    for (const refused of refusals) {
      expect(refused.code).toBe(status.FAILED_PRECONDITION);
      expect(refused.trailer('dlm-error-code')).toBe('kindMismatch');
    }
    const observe = collect(leader, 'Observe', { election: lock });
    await sleep(200);
    observe.stop();
    expect(observe.seen).toEqual([]);
  });

  it('validates at the edge, naming the request field', async () => {
    const session = await cluster.openSession(leader);
    const cases: [Promise<unknown>, string][] = [
      [campaign(leader, session, '', 'v'), 'CampaignRequest.election'],
      [campaign(leader, session, 'e', 'x'.repeat(20_000)), 'CampaignRequest.value'],
      [
        cluster.at(leader).lock.call('Proclaim', {
          election: 'e',
          session_id: session,
          fencing_token: '0',
          value: 'v',
          request_id: '5',
        }),
        'ProclaimRequest.fencing_token',
      ],
      [
        cluster.at(leader).lock.call('Resign', {
          election: 'e',
          session_id: session,
          fencing_token: '9',
          request_id: '0',
        }),
        'ResignRequest.request_id',
      ],
      [cluster.at(leader).lock.call('Leader', { election: '' }), 'LeaderRequest.election'],
    ];
    // The calls run together and are awaited one by one below: mark each rejection as
    // handled now, or one that comes before its turn is reported as unhandled.
    for (const [call] of cases) call.catch(() => {});
    for (const [call, field] of cases) {
      const refused = await rpcError(call);
      expect(refused.code).toBe(status.INVALID_ARGUMENT);
      expect(refused.details).toContain(field);
    }
  });
});

describe('before the cluster applies behaviour version 5', () => {
  it('AcquirePermits, Campaign and Proclaim are FAILED_PRECONDITION naming the version, not a malformed request', async () => {
    const old = await ApiCluster.start({}, { behaviourMax: BEHAVIOUR_MULTI_LOCK });
    try {
      const via = await old.leaderId();
      const session = await old.openSession(via);
      const calls: [string, object][] = [
        ['AcquirePermits', { name: 's', permits: '1', limit: '1' }],
        ['Campaign', { election: 'e', value: 'v' }],
        ['Proclaim', { election: 'e', fencing_token: '5', value: 'v' }],
      ];
      for (const [method, request] of calls) {
        const refused = await rpcError(
          old.at(via).lock.call(method, {
            ...request,
            session_id: session,
            request_id: old.requestId(),
          }),
        );
        expect(refused.code).toBe(status.FAILED_PRECONDITION);
        expect(refused.details).toContain(
          `${method} needs lock behaviour version ${BEHAVIOUR_SEMAPHORES_ELECTIONS}`,
        );
      }
    } finally {
      await old.stop();
    }
  });
});

describe('semaphores and elections under auth', () => {
  it('AcquirePermits, Campaign and Proclaim need `lock` on the name; Leader and Observe need `read`', async () => {
    const token = 'carol-token-0123456789';
    const section = {
      tokens: [await tokenEntry('carol', token, 'sha256')],
      roles: {
        mine: [{ prefix: 'mine/', grant: ['read', 'lock'] }],
        seer: [{ prefix: 'seen/', grant: ['read'] }],
      },
      identities: { carol: ['mine', 'seer'] },
    };
    const nodes = IDS.map((id, k) => ({
      id,
      peerAddress: `127.0.0.1:${7101 + k}`,
      clientAddress: `127.0.0.1:${8101 + k}`,
      metricsAddress: `127.0.0.1:${9101 + k}`,
    }));
    const auth = parseClusterConfig({ nodes, dataDir: 'data', auth: section }, '/tmp').auth;
    const secured = await ApiCluster.start({}, {}, auth);
    const carol = new ServiceClient(
      LOCK_SERVICE_NAME,
      secured.at(await secured.leaderId()).server.port,
      { interceptors: [bearerInterceptor(token)] },
    );
    try {
      await eventually(() =>
        [...secured.nodes.values()].every(
          (node) => node.locks.behaviour >= BEHAVIOUR_SEMAPHORES_ELECTIONS,
        ),
      );
      const opened = await carol.call('OpenSession', {
        ttl_ms: '5000',
        client_name: 'authz',
        request_id: secured.requestId(),
      });
      const asCarol = { session_id: opened.session_id };
      const denied = async (method: string, request: object, name: string) => {
        const refused = await rpcError(
          carol.call(method, { ...request, ...asCarol, request_id: secured.requestId() }),
        );
        expect(refused.code, method).toBe(status.PERMISSION_DENIED);
        expect(refused.details).toContain(name);
      };
      // `read` on seen/ is not `lock`.
      await denied('AcquirePermits', { name: 'seen/s', permits: '1', limit: '1' }, 'seen/s');
      await denied('Campaign', { election: 'seen/e', value: 'v' }, 'seen/e');
      await denied('Proclaim', { election: 'seen/e', fencing_token: '9', value: 'v' }, 'seen/e');
      await denied('Resign', { election: 'seen/e', fencing_token: '9' }, 'seen/e');
      await denied('Leader', { election: 'theirs/e' }, 'theirs/e');
      const observe = carol.stream('Observe', { election: 'theirs/e' });
      const ended = await new Promise<{ code: number }>((resolve) => {
        observe.on('data', () => {});
        observe.on('error', (error: { code: number }) => resolve(error));
      });
      expect(ended.code).toBe(status.PERMISSION_DENIED);

      // Within its rights: it campaigns on mine/, reads seen/.
      const elected = await carol.call('Campaign', {
        election: 'mine/e',
        value: 'v',
        ...asCarol,
        request_id: secured.requestId(),
      });
      expect(elected.elected).toBe(true);
      expect((await carol.call('Leader', { election: 'seen/e' })).has_leader).toBe(false);
    } finally {
      carol.raw.close();
      await secured.stop();
    }
  });
});
