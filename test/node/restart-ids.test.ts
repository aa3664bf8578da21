import { afterEach, describe, expect, it } from 'vitest';
import type { LockCommand } from '../../src/lock/index.ts';
import type { DlmNode } from '../../src/node/node.ts';
import type { PeerMessage } from '../../src/node/peer-message.ts';
import type { NodeId, SessionId } from '../../src/util/ids.ts';
import { sleep, TestCluster, until, writeVia } from './cluster-harness.ts';

/**
 * A node that restarts must not mistake an answer meant for its previous incarnation
 * for one of its own: proposal and read ids are unique across restarts, and a write
 * completes only with its own entry.
 */
let cluster: TestCluster | null = null;
afterEach(async () => {
  await cluster?.stopAll();
  cluster = null;
});

async function openSession(c: TestCluster): Promise<SessionId> {
  const result = await writeVia(() => c.leader(), {
    type: 'OpenSession',
    ttlMs: 60_000,
    clientName: 'test',
    requestId: c.requestId(),
  });
  if (result.type !== 'SessionOpened') throw new Error(`OpenSession gave ${result.type}`);
  return result.sessionId;
}

function acquire(c: TestCluster, sessionId: SessionId, lock: string): LockCommand {
  return {
    type: 'Acquire',
    lock,
    sessionId,
    mode: 'exclusive',
    waitMs: 0,
    requestId: c.requestId(),
    owner: `session-${sessionId}`,
    maxHoldMs: 0,
    lockDelayMs: 0,
  };
}

/** Restarts `id` on its own storage, with every Raft write taking `persistMs`. */
function restartSlow(c: TestCluster, id: NodeId, persistMs: number): DlmNode {
  const storage = c.storages.get(id);
  if (storage === undefined) throw new Error(`no storage for ${id}`);
  const persist = storage.persist.bind(storage);
  storage.persist = async (batch) => {
    await sleep(persistMs);
    return persist(batch);
  };
  return c.start(id, 99);
}

function isReadAnswerTo(id: NodeId) {
  return (message: PeerMessage): boolean =>
    message.kind === 'raft' &&
    message.message.type === 'ReadIndexResponse' &&
    message.message.to === id;
}

describe('a restarted node and answers meant for its previous incarnation', () => {
  it('a write through a restarted follower is answered with its own entry, not an older one', async () => {
    cluster = new TestCluster();
    const c = cluster;
    const s1 = await openSession(c);
    const s2 = await openSession(c);
    const leader = await c.leader();
    const follower = await c.follower();
    const followerId = follower.id;

    // S1's acquires go through the follower, which never hears back: the leader commits
    // them with the third node while the follower is cut off from the leader.
    c.network.cut(leader.id, followerId);
    const first = Array.from({ length: 5 }, () =>
      follower.write(acquire(c, s1, 'A')).catch((error: unknown) => error),
    );
    await until(
      () => leader.locks.describe('A').holders.some((holder) => holder.sessionId === s1),
      'the leader applied S1s acquire',
    );
    await sleep(50);
    await follower.stop();
    c.nodes.delete(followerId);
    await Promise.all(first);
    c.network.heal();

    // Restarted, the follower learns the leader, then spends 5 ms on each persist: the
    // write below is placed while the old entries are still on their way to being applied.
    const restarted = restartSlow(c, followerId, 5);
    await until(() => restarted.status().leaderId !== null, 'the restarted node knows the leader');
    const second = { result: await writeVia(async () => restarted, acquire(c, s2, 'A')) };

    expect(second.result).toMatchObject({ type: 'NotAcquired', lock: 'A' });
    const holders = await restarted.read((locks) => locks.describe('A').holders);
    expect(holders.map((holder) => holder.sessionId)).toEqual([s1]);
  });

  it('a read through a restarted follower is not confirmed by the answer to an older read', async () => {
    cluster = new TestCluster();
    const c = cluster;
    const session = await openSession(c);
    const leader = await c.leader();
    const follower = await c.follower();
    const followerId = follower.id;

    // The answer to this read is held back, and the follower restarts before it lands.
    c.network.hold(isReadAnswerTo(followerId));
    const oldRead = follower.read((locks) => locks.describe('A')).catch((error: unknown) => error);
    await until(() => c.network.heldCount > 0, 'the leader answered the old read');
    await follower.stop();
    c.nodes.delete(followerId);
    await oldRead;

    const restarted = c.start(followerId, 99);
    await until(
      () =>
        restarted.status().leaderId === leader.id &&
        restarted.status().appliedIndex >= leader.status().commitIndex,
      'the restarted follower caught up',
    );
    // A grant the follower does not see, acknowledged before the new read begins.
    c.network.cut(leader.id, followerId);
    const granted = await leader.write(acquire(c, session, 'A'));
    expect(granted.result.type).toBe('Acquired');

    const newRead = restarted.read((locks) => locks.describe('A').holders);
    await until(() => c.network.heldCount > 1, 'the leader answered the new read');
    c.network.releaseHeld();
    await sleep(50);
    c.network.heal();
    const holders = await newRead;
    expect(holders.map((holder) => holder.sessionId)).toEqual([session]);
  });
});
