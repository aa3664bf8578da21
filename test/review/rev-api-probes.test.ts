import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BEHAVIOUR_SEMAPHORES_ELECTIONS } from '../../src/lock/index.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { ApiCluster, eventually, IDS, rpcError, sleep } from '../api/harness.ts';

/**
 * Review of issue 17's election and semaphore RPCs (review-api): attacks that HELD on
 * main. Kept as passing probes.
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

function campaign(via: NodeId, session: string, election: string, value: string, extra = {}) {
  return cluster.at(via).lock.call(
    'Campaign',
    {
      election,
      value,
      session_id: session,
      request_id: cluster.requestId(),
      owner: `candidate-${session}`,
      ...extra,
    },
    'deadlineMs' in extra ? { deadlineMs: Number(extra.deadlineMs) } : {},
  );
}

function leaderOf(via: NodeId, election: string, stale = false) {
  return cluster.at(via).lock.call('Leader', { election, stale });
}

describe('probes that held', () => {
  it('a waiting Campaign abandoned at its deadline is withdrawn: it is not elected when the leader resigns', async () => {
    const [a, b] = [await cluster.openSession(leader), await cluster.openSession(follower)];
    const first = await campaign(leader, a, 'probe/abandon', 'a');
    expect(first.elected).toBe(true);
    const abandoned = await rpcError(
      cluster.at(follower).lock.call(
        'Campaign',
        {
          election: 'probe/abandon',
          value: 'b',
          session_id: b,
          request_id: cluster.requestId(),
          owner: 'b',
          wait_ms: '60000',
        },
        { deadlineMs: 300 },
      ),
    );
    expect(abandoned.code).toBe(status.DEADLINE_EXCEEDED);
    await eventually(async () => {
      const described = await cluster.at(leader).lock.call('Describe', { lock: 'probe/abandon' });
      return (described.waiters as unknown[]).length === 0;
    });
    await cluster.at(leader).lock.call('Resign', {
      election: 'probe/abandon',
      session_id: a,
      fencing_token: first.fencing_token,
      request_id: cluster.requestId(),
    });
    await sleep(200);
    expect((await leaderOf(leader, 'probe/abandon')).has_leader).toBe(false);
  });

  it('Resign and Proclaim with a stale token are refused (FAILED_PRECONDITION), the leader unchanged', async () => {
    const a = await cluster.openSession(leader);
    const first = await campaign(leader, a, 'probe/stale', 'a1');
    await cluster.at(leader).lock.call('Resign', {
      election: 'probe/stale',
      session_id: a,
      fencing_token: first.fencing_token,
      request_id: cluster.requestId(),
    });
    const again = await campaign(leader, a, 'probe/stale', 'a2');
    expect(Number(again.fencing_token)).toBeGreaterThan(Number(first.fencing_token));
    const resign = await rpcError(
      cluster.at(follower).lock.call('Resign', {
        election: 'probe/stale',
        session_id: a,
        fencing_token: first.fencing_token,
        request_id: cluster.requestId(),
      }),
    );
    expect(resign.code).toBe(status.FAILED_PRECONDITION);
    const proclaim = await rpcError(
      cluster.at(follower).lock.call('Proclaim', {
        election: 'probe/stale',
        session_id: a,
        fencing_token: first.fencing_token,
        value: 'zombie',
        request_id: cluster.requestId(),
      }),
    );
    expect(proclaim.code).toBe(status.FAILED_PRECONDITION);
    const now = await leaderOf(follower, 'probe/stale');
    expect(now.leader).toMatchObject({ fencing_token: again.fencing_token, value: 'a2' });
  });

  it('Leader (not stale) at a follower cut off from the others is not answered from its stale state', async () => {
    const a = await cluster.openSession(leader);
    const isolated = IDS.find((id) => id !== leader && id !== follower) as NodeId;
    cluster.network.isolate(
      isolated,
      IDS.filter((id) => id !== isolated),
    );
    try {
      const elected = await campaign(leader, a, 'probe/linear', 'a');
      expect(elected.elected).toBe(true);
      const read = await cluster
        .at(isolated)
        .lock.call('Leader', { election: 'probe/linear', stale: false }, { deadlineMs: 1_500 })
        .then(
          (answer) => ({ answer }),
          (error: unknown) => ({ error }),
        );
      // Either an error, or the truth; never "nobody leads".
      if ('answer' in read) expect(read.answer.has_leader).toBe(true);
      // stale = true may lag, by contract.
      expect((await leaderOf(isolated, 'probe/linear', true)).has_leader).toBe(false);
    } finally {
      cluster.network.heal();
    }
  });

  it('a semaphore request naming another limit is kindMismatch, never granted past the first limit', async () => {
    const [a, b] = [await cluster.openSession(leader), await cluster.openSession(follower)];
    const ask = (session: string, limit: string) =>
      cluster.at(follower).lock.call('AcquirePermits', {
        name: 'probe/sem',
        permits: '1',
        limit,
        session_id: session,
        request_id: cluster.requestId(),
        owner: '',
      });
    expect((await ask(a, '1')).acquired).toBe(true);
    const other = await rpcError(ask(b, '2'));
    expect(other.code).toBe(status.FAILED_PRECONDITION);
    const described = await cluster.at(leader).lock.call('Describe', { lock: 'probe/sem' });
    expect((described.holders as unknown[]).length).toBe(1);
  });
});
