import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeId } from '../../src/util/ids.ts';
import { ApiCluster, rpcError } from './harness.ts';

/**
 * ListLocks, ListSessions and Cluster.RevokeLock over real gRPC on a 3-node in-process
 * cluster whose runtime.listItemsMax is 3: pages are bounded, a larger limit is refused
 * naming the setting, stale and linearizable reads agree once applied, and a revoke ends
 * the grant through the log so the token no longer validates on any node.
 */
let cluster: ApiCluster;
let leader: NodeId;
let follower: NodeId;

beforeAll(async () => {
  cluster = await ApiCluster.start({ listItemsMax: 3 });
  leader = await cluster.leaderId();
  follower = await cluster.followerId();
});

afterAll(async () => {
  await cluster?.stop();
});

async function open(): Promise<string> {
  const opened = await cluster.at(leader).lock.call('OpenSession', {
    ttl_ms: '30000',
    client_name: 'list-test',
    request_id: cluster.requestId(),
  });
  return opened.session_id;
}

async function acquire(name: string, session: string) {
  const answer = await cluster.at(leader).lock.call('Acquire', {
    lock: name,
    session_id: session,
    request_id: cluster.requestId(),
  });
  expect(answer.acquired).toBe(true);
  return answer.fencing_token as string;
}

describe('ListLocks, ListSessions and RevokeLock', () => {
  it('pages locks by prefix within runtime.listItemsMax, and refuses a larger limit naming it', async () => {
    const session = await open();
    for (const name of ['page/1', 'page/2', 'page/3', 'page/4', 'other/1']) {
      await acquire(name, session);
    }
    const lock = cluster.at(follower).lock;
    // limit 0: the default page (100), capped by listItemsMax (3).
    const first = await lock.call('ListLocks', { prefix: 'page/' });
    expect(first.locks.map((each: { lock: string }) => each.lock)).toEqual([
      'page/1',
      'page/2',
      'page/3',
    ]);
    expect(first).toMatchObject({ truncated: true, last: 'page/3' });
    const second = await lock.call('ListLocks', { prefix: 'page/', limit: 3, after: 'page/3' });
    expect(second.locks.map((each: { lock: string }) => each.lock)).toEqual(['page/4']);
    expect(second).toMatchObject({ truncated: false, last: 'page/4' });
    expect(second.locks[0].holders[0]).toMatchObject({ session_id: session });
    const stale = await lock.call('ListLocks', { prefix: 'page/', after: 'page/3', stale: true });
    expect(stale.locks).toHaveLength(1);

    const refused = await rpcError(lock.call('ListLocks', { limit: 4 }));
    expect(refused.code).toBe(status.INVALID_ARGUMENT);
    expect(refused.details).toContain('ListLocksRequest.limit: 4 is over runtime.listItemsMax (3)');
    expect(refused.trailer('dlm-error-code')).toBe('invalidArgument');
  });

  it('pages sessions in id order with what each holds', async () => {
    const ids = [await open(), await open(), await open(), await open()];
    await acquire('sessions/held', ids[1] ?? '');
    const lock = cluster.at(follower).lock;
    const all: { session_id: string; held_locks: string[]; held_count: number }[] = [];
    let after = '0';
    for (let page = 0; page < 20; page++) {
      const answer = await lock.call('ListSessions', { limit: 2, after_session_id: after });
      expect(answer.sessions.length).toBeLessThanOrEqual(2);
      all.push(...answer.sessions);
      if (!answer.truncated) break;
      after = answer.last_session_id;
    }
    const listed = all.map((each) => Number(each.session_id));
    expect(listed).toEqual([...listed].sort((a, b) => a - b));
    for (const id of ids) expect(listed).toContain(Number(id));
    expect(all.find((each) => each.session_id === ids[1])).toMatchObject({
      held_locks: ['sessions/held'],
      held_count: 1,
    });
    const refused = await rpcError(lock.call('ListSessions', { limit: 1_000 }));
    expect(refused.details).toContain(
      'ListSessionsRequest.limit: 1000 is over runtime.listItemsMax',
    );
  });

  it('RevokeLock through a follower ends the grant everywhere; a free lock frees nothing', async () => {
    const session = await open();
    const token = await acquire('revoke/1', session);
    const revoked = await cluster.at(follower).cluster.call('RevokeLock', {
      lock: 'revoke/1',
      reason: 'stuck holder',
    });
    expect(revoked.freed).toBe(1);
    for (const id of [leader, follower]) {
      const fence = await cluster.at(id).lock.call('ValidateFence', {
        lock: 'revoke/1',
        fencing_token: token,
      });
      expect(fence.valid).toBe(false);
    }
    const again = await cluster.at(leader).cluster.call('RevokeLock', { lock: 'revoke/1' });
    expect(again.freed).toBe(0);
    const tooLong = await rpcError(
      cluster.at(leader).cluster.call('RevokeLock', { lock: 'revoke/1', reason: 'x'.repeat(257) }),
    );
    expect(tooLong.code).toBe(status.INVALID_ARGUMENT);
    expect(tooLong.details).toContain('RevokeLockRequest.reason');
    const noName = await rpcError(cluster.at(leader).cluster.call('RevokeLock', { lock: '' }));
    expect(noName.details).toContain('RevokeLockRequest.lock: must not be empty');
    expect(
      cluster.logs.some((entry) => entry.message === 'lock revoked' && entry.fields?.freed === 1),
    ).toBe(true);
  });
});
