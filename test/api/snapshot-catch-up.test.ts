import { Metadata, status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import type { NodeId } from '../../src/util/ids.ts';
import { ApiCluster, eventually, IDS, RpcError, sleep } from './harness.ts';

/**
 * A node that catches up by installing a snapshot never applied the commands it covers
 * one by one, so their events never happened on it. Whoever follows events there must
 * hear of it: a Watch ends with ABORTED, and a waiting Acquire answers from the state.
 */
let cluster: ApiCluster | null = null;
afterEach(async () => {
  await cluster?.stop();
  cluster = null;
});

async function start(): Promise<{ c: ApiCluster; leader: NodeId; follower: NodeId }> {
  const c = await ApiCluster.start(
    {},
    { snapshotEntriesThreshold: 20, compactionRetainEntries: 2 },
  );
  cluster = c;
  return { c, leader: await c.leaderId(), follower: await c.followerId() };
}

/** Enough writes through the leader for it to snapshot and compact its log past them. */
async function churn(c: ApiCluster, leader: NodeId, session: string): Promise<void> {
  for (let i = 0; i < 30; i++) await c.at(leader).lock.call('KeepAlive', { session_id: session });
}

describe('catching up from a snapshot', () => {
  it('ends a Watch with ABORTED instead of skipping the events the snapshot covers', async () => {
    const { c, leader, follower } = await start();
    const session = await c.openSession(leader, 60_000);
    const stream = c.at(follower).lock.stream('Watch', { prefix: 'w/' });
    const events: string[] = [];
    const ended: RpcError[] = [];
    stream.on('data', (event) => events.push(`${event.type} ${event.lock}`));
    stream.on('error', (error: { code: number; details: string }) => {
      ended.push(new RpcError(error.code, error.details, new Metadata()));
    });
    await new Promise((resolve) => stream.once('metadata', resolve));

    c.network.isolate(
      follower,
      IDS.filter((id) => id !== follower),
    );
    const granted = await c.at(leader).lock.call('Acquire', {
      lock: 'w/1',
      session_id: session,
      request_id: c.requestId(),
    });
    await c.at(leader).lock.call('Release', {
      lock: 'w/1',
      session_id: session,
      fencing_token: granted.fencing_token,
      request_id: c.requestId(),
    });
    await churn(c, leader, session);
    c.network.heal();

    await eventually(() => ended.length > 0);
    expect(events).toEqual([]);
    expect(ended[0]?.code).toBe(status.ABORTED);
    expect(ended[0]?.details).toMatch(/snapshot at index \d+.*watch again/);
  });

  it('answers a waiting Acquire whose grant the snapshot covers, instead of waiting out its deadline', async () => {
    const { c, leader, follower } = await start();
    const holder = await c.openSession(leader, 60_000);
    const waiter = await c.openSession(leader, 60_000);
    const held = await c.at(leader).lock.call('Acquire', {
      lock: 'w/2',
      session_id: holder,
      request_id: c.requestId(),
    });
    const waiting = c
      .at(follower)
      .lock.call(
        'Acquire',
        { lock: 'w/2', session_id: waiter, request_id: c.requestId(), wait_ms: '30000' },
        { deadlineMs: 8_000 },
      );
    await eventually(async () => {
      const described = await c.at(leader).lock.call('Describe', { lock: 'w/2' });
      return described.waiters.length === 1;
    });
    await sleep(50);

    c.network.isolate(
      follower,
      IDS.filter((id) => id !== follower),
    );
    await c.at(leader).lock.call('Release', {
      lock: 'w/2',
      session_id: holder,
      fencing_token: held.fencing_token,
      request_id: c.requestId(),
    });
    await churn(c, leader, holder);
    const startedMs = performance.now();
    c.network.heal();

    const answer = await waiting;
    expect(answer.acquired).toBe(true);
    expect(Number(answer.fencing_token)).toBeGreaterThan(Number(held.fencing_token));
    expect(performance.now() - startedMs).toBeLessThan(5_000);
  });
});
