import { type Metadata, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiNode } from '../../src/api/context.ts';
import { unavailable } from '../../src/node/errors.ts';
import type { NodeId } from '../../src/util/ids.ts';
import {
  ApiCluster,
  eventually,
  IDS,
  rpcError,
  serve,
  sleep,
  TRANSPORTS,
  type Transport,
} from './harness.ts';

/**
 * Every RPC of dlm.v1.Lock and dlm.v1.Cluster through a real gRPC client against a
 * 3-node in-process cluster, each node serving the API on its own loopback port.
 * Tests share one cluster and use distinct lock names. The session calls run over both
 * transports, unary RPCs and a Lock.Session stream, with the same expectations.
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

function lock(id: NodeId) {
  return cluster.at(id).lock;
}

async function acquire(id: NodeId, name: string, session: string, extra: object = {}) {
  return lock(id).call('Acquire', {
    lock: name,
    session_id: session,
    request_id: cluster.requestId(),
    owner: `owner-of-${session}`,
    ...extra,
  });
}

/** `lock` and `acquire` over `transport`, for the describes that run on both. */
function over(transport: Transport) {
  const via = (id: NodeId) => cluster.via(id, transport);
  return {
    lock: via,
    acquire: (id: NodeId, name: string, session: string, extra: object = {}) =>
      via(id).call('Acquire', {
        lock: name,
        session_id: session,
        request_id: cluster.requestId(),
        owner: `owner-of-${session}`,
        ...extra,
      }),
  };
}

describe.each(TRANSPORTS)('sessions (%s)', (transport: Transport) => {
  const { lock } = over(transport);
  it('OpenSession, KeepAlive and CloseSession work through a follower, with a header on each', async () => {
    const opened = await lock(follower).call('OpenSession', {
      ttl_ms: '5000',
      client_name: 'sessions-test',
      request_id: cluster.requestId(),
    });
    expect(opened.ttl_ms).toBe('5000');
    expect(opened.header).toMatchObject({ node_id: follower, leader_id: leader });
    expect(opened.header.index).toBe(opened.session_id);
    expect(Number(opened.header.term)).toBeGreaterThan(0);

    const kept = await lock(follower).call('KeepAlive', { session_id: opened.session_id });
    expect(kept.ttl_ms).toBe('5000');
    expect(Number(kept.header.index)).toBeGreaterThan(Number(opened.session_id));

    const closed = await lock(leader).call('CloseSession', {
      session_id: opened.session_id,
      request_id: cluster.requestId(),
    });
    expect(closed.header.node_id).toBe(leader);
    const error = await rpcError(lock(leader).call('KeepAlive', { session_id: opened.session_id }));
    expect(error.code).toBe(status.NOT_FOUND);
  });

  it('KeepAlive of session_ids refreshes a batch in one entry and lists the expired ones without failing', async () => {
    const live = [await cluster.openSession(leader), await cluster.openSession(follower)];
    const closed = await cluster.openSession(leader);
    await lock(leader).call('CloseSession', {
      session_id: closed,
      request_id: cluster.requestId(),
    });
    const unknown = '999997';
    const kept = await lock(follower).call('KeepAlive', {
      session_ids: [live[0], closed, live[1], unknown],
    });
    expect(kept.expired_session_ids).toEqual([closed, unknown]);
    expect(kept.ttl_ms).toBe('0');
    expect(kept.header.node_id).toBe(follower);
    // Every id in one entry: the next entry's index is just past it.
    const single = await lock(leader).call('KeepAlive', { session_id: live[0] });
    expect(Number(single.header.index)).toBe(Number(kept.header.index) + 1);
    expect(single.expired_session_ids).toEqual([]);
    // Every id expired is still an answer, not NOT_FOUND.
    const gone = await lock(leader).call('KeepAlive', { session_ids: [closed, unknown] });
    expect(gone.expired_session_ids).toEqual([closed, unknown]);
  });

  it('KeepAlive refuses both forms at once, a repeated id, and a batch past keepAliveBatchMax', async () => {
    const a = await cluster.openSession(leader);
    const both = await rpcError(
      lock(leader).call('KeepAlive', { session_id: a, session_ids: [a] }),
    );
    expect(both.code).toBe(status.INVALID_ARGUMENT);
    expect(both.details).toMatch(/set session_id or session_ids, not both/);
    const twice = await rpcError(lock(leader).call('KeepAlive', { session_ids: [a, '5', a] }));
    expect(twice.code).toBe(status.INVALID_ARGUMENT);
    expect(twice.details).toBe(`KeepAliveRequest.session_ids[2]: session ${a} is listed twice`);
    const zero = await rpcError(lock(leader).call('KeepAlive', { session_ids: [a, '0'] }));
    expect(zero.details).toBe('KeepAliveRequest.session_ids[1]: must not be 0');
    const many = Array.from({ length: 1_001 }, (_, i) => String(900_000 + i));
    const tooMany = await rpcError(lock(follower).call('KeepAlive', { session_ids: many }));
    expect(tooMany.code).toBe(status.INVALID_ARGUMENT);
    expect(tooMany.trailer('dlm-error-code')).toBe('invalidArgument');
    expect(tooMany.details).toBe(
      'KeepAliveRequest.session_ids: must hold 1 to 1000 ids (keepAliveBatchMax), got 1001',
    );
    // At the bound it is served.
    const atMax = await lock(follower).call('KeepAlive', { session_ids: [a, ...many.slice(2)] });
    expect(atMax.expired_session_ids).toHaveLength(999);
    // Neither form set: the single form's refusal, as before.
    const neither = await rpcError(lock(leader).call('KeepAlive', {}));
    expect(neither.details).toBe('KeepAliveRequest.session_id: must not be 0');
  });

  it('a retried OpenSession with the same request_id returns the first session', async () => {
    const request = { ttl_ms: '5000', client_name: 'retry', request_id: cluster.requestId() };
    const first = await lock(leader).call('OpenSession', request);
    const second = await lock(follower).call('OpenSession', request);
    expect(second.session_id).toBe(first.session_id);
  });
});

describe.each(TRANSPORTS)('Acquire and Release (%s)', (transport: Transport) => {
  const { lock, acquire } = over(transport);
  it('grants a free lock with its fencing token and holders; a try-lock on a held lock is an answer, not an error', async () => {
    const a = await cluster.openSession(follower);
    const b = await cluster.openSession(leader);
    const granted = await acquire(follower, `try/1-${transport}`, a);
    expect(granted.acquired).toBe(true);
    expect(granted.fencing_token).toBe(granted.header.index);
    expect(granted.holders).toEqual([
      {
        session_id: a,
        owner: `owner-of-${a}`,
        fencing_token: granted.fencing_token,
        acquired_index: granted.fencing_token,
        // Set by Describe and ListLocks only.
        held_ms: '0',
        // A lock's grant: no permits (a semaphore's), no value (an election's).
        permits: '0',
        value: '',
      },
    ]);

    const refused = await acquire(leader, `try/1-${transport}`, b);
    expect(refused.acquired).toBe(false);
    expect(refused.fencing_token).toBe('0');
    expect(refused.holders.map((holder: { session_id: string }) => holder.session_id)).toEqual([a]);
  });

  it('shared grants coexist', async () => {
    const a = await cluster.openSession(leader);
    const b = await cluster.openSession(leader);
    await acquire(leader, `shared/1-${transport}`, a, { mode: 'SHARED' });
    const second = await acquire(follower, `shared/1-${transport}`, b, { mode: 'SHARED' });
    expect(second.acquired).toBe(true);
    expect(second.holders).toHaveLength(2);
  });

  it('a blocking Acquire waits until a release grants it, with a higher token', async () => {
    const a = await cluster.openSession(leader);
    const b = await cluster.openSession(follower);
    const first = await acquire(leader, `block/1-${transport}`, a);
    const waiting = acquire(follower, `block/1-${transport}`, b, { wait_ms: '30000' });
    await eventually(async () => {
      const described = await lock(leader).call('Describe', { lock: `block/1-${transport}` });
      return described.waiters.length === 1;
    });
    const released = await lock(leader).call('Release', {
      lock: `block/1-${transport}`,
      session_id: a,
      fencing_token: first.fencing_token,
      request_id: cluster.requestId(),
    });
    expect(released.released).toBe(true);
    const granted = await waiting;
    expect(granted.acquired).toBe(true);
    expect(Number(granted.fencing_token)).toBeGreaterThan(Number(first.fencing_token));
    // The token is the index of the Release entry that promoted the waiter.
    expect(granted.fencing_token).toBe(released.header.index);
    expect(granted.holders).toHaveLength(1);
    expect(granted.holders[0].session_id).toBe(b);
    expect(Number(granted.holders[0].acquired_index)).toBeLessThan(Number(granted.fencing_token));
  });

  it('a wait that runs out (wait_ms) answers acquired = false with the holders', async () => {
    const a = await cluster.openSession(leader);
    const b = await cluster.openSession(leader);
    await acquire(leader, `wait/1-${transport}`, a);
    const startedMs = performance.now();
    const answer = await acquire(follower, `wait/1-${transport}`, b, { wait_ms: '300' });
    expect(performance.now() - startedMs).toBeGreaterThanOrEqual(250);
    expect(answer.acquired).toBe(false);
    expect(answer.holders.map((holder: { session_id: string }) => holder.session_id)).toEqual([a]);
  });

  it('an Acquire whose call deadline passes gets DEADLINE_EXCEEDED and its waiter is withdrawn', async () => {
    const a = await cluster.openSession(leader);
    // A long lease: only the withdrawal, not an expiry, can remove the waiter within the test.
    const b = await cluster.openSession(follower, 120_000);
    await acquire(leader, `deadline/1-${transport}`, a);
    const error = await rpcError(
      lock(follower).call(
        'Acquire',
        {
          lock: `deadline/1-${transport}`,
          session_id: b,
          request_id: cluster.requestId(),
          wait_ms: '600000',
        },
        { deadlineMs: 500 },
      ),
    );
    expect(error.code).toBe(status.DEADLINE_EXCEEDED);
    await eventually(async () => {
      const described = await lock(leader).call('Describe', { lock: `deadline/1-${transport}` });
      return described.waiters.length === 0;
    }, 5_000);
    // The withdrawn waiter never becomes a holder once the lock is free.
    const description = await lock(follower).call('Describe', { lock: `deadline/1-${transport}` });
    expect(description.holders.map((holder: { session_id: string }) => holder.session_id)).toEqual([
      a,
    ]);
  });

  it('a grant that races with the withdrawal of an abandoned Acquire is given back', async () => {
    const node = cluster.nodes.get(follower);
    if (node === undefined) throw new Error('no follower');
    // Holds the Withdraw back until the lock has been granted to the waiter it withdraws.
    let cancelSeen = (): void => {};
    const cancelProposed = new Promise<void>((resolve) => {
      cancelSeen = resolve;
    });
    let proceed = (): void => {};
    const released = new Promise<void>((resolve) => {
      proceed = resolve;
    });
    const racing: ApiNode = {
      id: node.id,
      locks: node.locks,
      read: (query) => node.read(query),
      subscribe: (listener) => node.subscribe(listener),
      onRestored: (listener) => node.onRestored(listener),
      observe: (observer) => node.observe(observer),
      status: () => node.status(),
      write: async (command) => {
        if (command.type === 'Withdraw') {
          cancelSeen();
          await released;
        }
        return node.write(command);
      },
    };
    const slow = await serve(racing, cluster.logs);
    try {
      const a = await cluster.openSession(leader);
      // A long lease: only the give-back, not an expiry, can free the lock within the test.
      const b = await cluster.openSession(leader, 120_000);
      const first = await acquire(leader, `race/1-${transport}`, a);
      const error = await rpcError(
        (transport === 'unary' ? slow.lock : slow.session).call(
          'Acquire',
          {
            lock: `race/1-${transport}`,
            session_id: b,
            request_id: cluster.requestId(),
            wait_ms: '60000',
          },
          { deadlineMs: 400 },
        ),
      );
      expect(error.code).toBe(status.DEADLINE_EXCEEDED);
      await cancelProposed;
      await lock(leader).call('Release', {
        lock: `race/1-${transport}`,
        session_id: a,
        fencing_token: first.fencing_token,
        request_id: cluster.requestId(),
      });
      // The waiter was granted before the withdrawal: B holds the lock for a moment.
      await eventually(async () => {
        const described = await lock(leader).call('Describe', { lock: `race/1-${transport}` });
        return described.holders[0]?.session_id === b;
      });
      proceed();
      await eventually(async () => {
        const described = await lock(leader).call('Describe', { lock: `race/1-${transport}` });
        return described.holders.length === 0 && described.waiters.length === 0;
      }, 5_000);
    } finally {
      proceed();
      slow.lock.close();
      slow.session.close();
      await slow.server.close(100);
    }
  });

  it('the give-back of an abandoned Acquire is retried as soon as its node knows a leader again, not after the grown backoff', async () => {
    // Seed 239 of the runtime simulation: the node that served the Acquire was cut off
    // from the leader when the caller gave up, so each Withdraw failed at once ("knows
    // no leader") and the backoff grew to 1.6 s; once a leader was known again the retry
    // still slept that out, past the time the cluster had to give the grant back.
    const node = cluster.nodes.get(follower);
    if (node === undefined) throw new Error('no follower');
    let cutOff = true;
    let withdrawAttempts = 0;
    const isolated: ApiNode = {
      id: node.id,
      locks: node.locks,
      read: (query) => node.read(query),
      subscribe: (listener) => node.subscribe(listener),
      onRestored: (listener) => node.onRestored(listener),
      observe: (observer) => node.observe(observer),
      status: () => (cutOff ? { ...node.status(), leaderId: null } : node.status()),
      write: async (command, options) => {
        if (command.type === 'Withdraw') {
          withdrawAttempts++;
          if (cutOff) throw unavailable(`${node.id} knows no leader`);
        }
        return node.write(command, options);
      },
    };
    const cut = await serve(isolated, cluster.logs);
    try {
      const a = await cluster.openSession(leader);
      // A long lease: only the give-back, not an expiry, can remove the waiter in the test.
      const b = await cluster.openSession(leader, 120_000);
      await acquire(leader, 'cut-off/1', a);
      const error = await rpcError(
        cut.lock.call(
          'Acquire',
          { lock: 'cut-off/1', session_id: b, request_id: cluster.requestId(), wait_ms: '60000' },
          { deadlineMs: 300 },
        ),
      );
      expect(error.code).toBe(status.DEADLINE_EXCEEDED);
      // Attempts at 0, 50, 150, 350, 750 and 1550 ms: the next one is 1.6 s away.
      await eventually(() => withdrawAttempts >= 6, 5_000);
      await sleep(100);
      cutOff = false;
      const healedMs = performance.now();
      await eventually(async () => {
        const described = await lock(leader).call('Describe', { lock: 'cut-off/1' });
        return described.waiters.length === 0;
      }, 5_000);
      expect(performance.now() - healedMs).toBeLessThan(800);
    } finally {
      cutOff = false;
      cut.lock.close();
      await cut.server.close(100);
    }
  });

  it('Release by a non-holder and with a stale token are refused with FAILED_PRECONDITION', async () => {
    const a = await cluster.openSession(leader);
    const b = await cluster.openSession(leader);
    const first = await acquire(leader, `release/1-${transport}`, a);
    const notHolder = await rpcError(
      lock(follower).call('Release', {
        lock: `release/1-${transport}`,
        session_id: b,
        fencing_token: first.fencing_token,
        request_id: cluster.requestId(),
      }),
    );
    expect(notHolder.code).toBe(status.FAILED_PRECONDITION);
    expect(notHolder.trailer('dlm-error-code')).toBe('notHolder');

    const stale = await rpcError(
      lock(follower).call('Release', {
        lock: `release/1-${transport}`,
        session_id: a,
        fencing_token: String(Number(first.fencing_token) - 1),
        request_id: cluster.requestId(),
      }),
    );
    expect(stale.code).toBe(status.FAILED_PRECONDITION);
    expect(stale.trailer('dlm-error-code')).toBe('staleToken');
  });
});

describe.each(TRANSPORTS)('reads (%s)', (transport: Transport) => {
  const { lock, acquire } = over(transport);
  it('ValidateFence says whether a token is the current grant', async () => {
    const a = await cluster.openSession(leader);
    const granted = await acquire(leader, `fence/1-${transport}`, a);
    const valid = await lock(follower).call('ValidateFence', {
      lock: `fence/1-${transport}`,
      fencing_token: granted.fencing_token,
    });
    expect(valid).toMatchObject({ valid: true, current_token: granted.fencing_token });
    const old = await lock(follower).call('ValidateFence', {
      lock: `fence/1-${transport}`,
      fencing_token: '1',
    });
    expect(old).toMatchObject({ valid: false, current_token: granted.fencing_token });
    const free = await lock(follower).call('ValidateFence', {
      lock: `fence/free-${transport}`,
      fencing_token: '1',
    });
    expect(free).toMatchObject({ valid: false, current_token: '0' });
  });

  it('Describe right after a grant shows it on every node (linearizable reads)', async () => {
    for (const via of IDS) {
      const session = await cluster.openSession(via);
      const name = `linear/${via}-${transport}`;
      const granted = await acquire(via, name, session, { mode: 'SHARED' });
      // Immediately, with no waiting, from every node including the two that did not take the write.
      const reads = await Promise.all(IDS.map((id) => lock(id).call('Describe', { lock: name })));
      for (const [position, read] of reads.entries()) {
        expect(read.header.node_id).toBe(IDS[position]);
        expect(Number(read.header.index)).toBeGreaterThanOrEqual(Number(granted.fencing_token));
        expect(read.mode).toBe('SHARED');
        // The same grant; Describe adds how long this node has seen it held.
        const withoutHeld = read.holders.map(({ held_ms, ...rest }: { held_ms: string }) => {
          expect(held_ms).toMatch(/^\d+$/);
          return rest;
        });
        expect(withoutHeld).toEqual(
          granted.holders.map(({ held_ms: _, ...rest }: { held_ms: string }) => rest),
        );
      }
    }
  });

  it('Describe lists waiters in FIFO order, and stale reads answer from local state', async () => {
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => cluster.openSession(leader)));
    await acquire(leader, `fifo/1-${transport}`, a ?? '');
    const waits = [b, c].map((session) =>
      acquire(leader, `fifo/1-${transport}`, session ?? '', { wait_ms: '300' }),
    );
    await eventually(async () => {
      const described = await lock(follower).call('Describe', { lock: `fifo/1-${transport}` });
      return described.waiters.length === 2;
    });
    const described = await lock(follower).call('Describe', { lock: `fifo/1-${transport}` });
    expect(described.waiters.map((waiter: { session_id: string }) => waiter.session_id)).toEqual([
      b,
      c,
    ]);
    expect(described.waiters[0]).toMatchObject({ mode: 'EXCLUSIVE', owner: `owner-of-${b}` });
    await eventually(async () => {
      const stale = await lock(follower).call('Describe', {
        lock: `fifo/1-${transport}`,
        stale: true,
      });
      return stale.waiters.length === 2;
    });
    await Promise.all(waits);
  });
});

describe('Watch', () => {
  it('streams grant, release and expire events under its prefix, and nothing else', async () => {
    const stream = lock(follower).stream('Watch', { prefix: 'watched/' });
    const events: { type: string; lock: string; session_id: string; fencing_token: string }[] = [];
    stream.on('data', (event) => events.push(event));
    stream.on('error', () => {});
    await new Promise((resolve) => stream.once('metadata', resolve));

    const a = await cluster.openSession(leader);
    const granted = await acquire(leader, 'watched/1', a);
    await acquire(leader, 'unwatched/1', a);
    await lock(leader).call('Release', {
      lock: 'watched/1',
      session_id: a,
      fencing_token: granted.fencing_token,
      request_id: cluster.requestId(),
    });
    const short = await cluster.openSession(leader, 200);
    const doomed = await acquire(leader, 'watched/2', short);
    await eventually(() => events.length >= 4);
    stream.cancel();

    expect(
      events.map(({ type, lock, session_id, fencing_token }) => ({
        type,
        lock,
        session_id,
        fencing_token,
      })),
    ).toEqual([
      { type: 'GRANT', lock: 'watched/1', session_id: a, fencing_token: granted.fencing_token },
      { type: 'RELEASE', lock: 'watched/1', session_id: a, fencing_token: granted.fencing_token },
      { type: 'GRANT', lock: 'watched/2', session_id: short, fencing_token: doomed.fencing_token },
      { type: 'EXPIRE', lock: 'watched/2', session_id: short, fencing_token: doomed.fencing_token },
    ]);
  });

  it('ends a stream that falls too far behind with RESOURCE_EXHAUSTED instead of buffering without bound', async () => {
    const node = cluster.nodes.get(follower);
    if (node === undefined) throw new Error('no follower');
    const tight = await serve(node, cluster.logs, { watchEventsBufferedMax: 2 });
    try {
      const stream = tight.lock.stream('Watch', { prefix: 'burst/' });
      const received: unknown[] = [];
      stream.on('data', (event) => received.push(event));
      const ended = new Promise<{ code: number; metadata?: Metadata }>((resolve) =>
        stream.on('error', resolve),
      );
      await new Promise((resolve) => stream.once('metadata', resolve));
      const session = await cluster.openSession(leader);
      for (let i = 0; i < 8; i++) await acquire(leader, `burst/${i}`, session, { mode: 'SHARED' });
      // One entry (the close) releases all eight locks: a burst the stream cannot take.
      await lock(leader).call('CloseSession', {
        session_id: session,
        request_id: cluster.requestId(),
      });
      const error = await Promise.race([
        ended,
        sleep(5_000).then(() => ({ code: -1, metadata: undefined })),
      ]);
      expect(error.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(error.metadata?.get('dlm-retry-after-ms')).toEqual(['100']);
      expect(received.length).toBeLessThan(16);
    } finally {
      tight.lock.close();
      await tight.server.close(100);
    }
  });
});

describe('Cluster.Status', () => {
  it('answers on every node with the same leader and all members', async () => {
    for (const id of IDS) {
      const answer = await cluster.at(id).cluster.call('Status', {});
      expect(answer.node_id).toBe(id);
      expect(answer.leader_id).toBe(leader);
      expect(answer.header).toMatchObject({ node_id: id, leader_id: leader });
      expect(Number(answer.applied_index)).toBeLessThanOrEqual(Number(answer.commit_index));
      expect(answer.members.map((member: { id: string }) => member.id).sort()).toEqual(
        [...IDS].sort(),
      );
      expect(answer.members.every((member: { learner: boolean }) => !member.learner)).toBe(true);
    }
  });

  it('keeps answering while waiting Acquires hold calls open', async () => {
    const a = await cluster.openSession(leader);
    const b = await cluster.openSession(leader);
    await acquire(leader, 'busy/1', a);
    const waiting = acquire(leader, 'busy/1', b, { wait_ms: '400' });
    await sleep(50);
    const answer = await cluster.at(leader).cluster.call('Status', {});
    expect(answer.leader_id).toBe(leader);
    expect((await waiting).acquired).toBe(false);
  });
});
