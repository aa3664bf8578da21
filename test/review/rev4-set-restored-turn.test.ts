/**
 * Review 4 (multi-api, 0b56a02): a set watched "through its first lock" after a
 * snapshot restore.
 *
 * TurnWatch.restored() asks currentTurn(), which for a set looks only at the first
 * lock's holders and matches the session, not the request or the set: if the session
 * holds the first lock under another grant when the snapshot lands, the waiting
 * AcquireAll is answered acquired=true with that other grant's token, although the
 * set's wait ended (here: wait_ms ran out) and its other lock is held by someone else.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { BEHAVIOUR_MULTI_LOCK } from '../../src/lock/index.ts';
import type { PeerMessage } from '../../src/node/peer-message.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { ApiCluster, eventually, IDS, sleep } from '../api/harness.ts';

let cluster: ApiCluster | null = null;
afterEach(async () => {
  cluster?.network.releaseHeld();
  await cluster?.stop();
  cluster = null;
});

function starve(c: ApiCluster, leader: NodeId, follower: NodeId): void {
  c.network.hold(
    (message: PeerMessage) =>
      message.kind === 'raft' &&
      message.message.type === 'AppendEntries' &&
      message.message.from === leader &&
      message.message.to === follower,
  );
}

describe('rev4: a waiting set answered from a restored snapshot', () => {
  it('is not told acquired when its session holds only its first lock, under another grant', async () => {
    const c = await ApiCluster.start(
      {},
      { snapshotEntriesThreshold: 20, compactionRetainEntries: 2 },
    );
    cluster = c;
    const leader = await c.leaderId();
    const follower = await c.followerId();
    await eventually(() =>
      [...c.nodes.values()].every((node) => node.locks.behaviour >= BEHAVIOUR_MULTI_LOCK),
    );
    const other = await c.openSession(leader, 60_000);
    const me = await c.openSession(leader, 60_000);
    // `other` holds the set's second lock, so the set must wait.
    const heldB = await c.at(leader).lock.call('Acquire', {
      lock: 'r4/b',
      session_id: other,
      request_id: c.requestId(),
    });
    expect(heldB.acquired).toBe(true);
    await sleep(100);
    // The set waits through the follower, whose TurnWatch watches r4/a.
    const waiting = c.at(follower).lock.call(
      'AcquireAll',
      {
        locks: [
          { lock: 'r4/a', mode: 'EXCLUSIVE' },
          { lock: 'r4/b', mode: 'EXCLUSIVE' },
        ],
        session_id: me,
        request_id: c.requestId(),
        wait_ms: '1500',
      },
      { deadlineMs: 12_000 },
    );
    await eventually(async () => {
      const described = await c.at(leader).lock.call('Describe', { lock: 'r4/b' });
      return described.waiters.length === 1;
    });
    await sleep(200); // the follower applied the QueuedAll and its caller waits
    // Cut the follower off: it will catch up by a snapshot.
    starve(c, leader, follower);
    c.network.isolate(
      follower,
      IDS.filter((id) => id !== follower),
    );
    c.network.hold(() => false);
    // The set's wait runs out on the cluster...
    await eventually(async () => {
      const described = await c.at(leader).lock.call('Describe', { lock: 'r4/b' });
      return described.waiters.length === 0;
    }, 5_000);
    // ...and the same session then takes r4/a alone (another request of its client).
    const aloneA = await c.at(leader).lock.call('Acquire', {
      lock: 'r4/a',
      session_id: me,
      request_id: c.requestId(),
    });
    expect(aloneA.acquired).toBe(true);
    for (let i = 0; i < 30; i++) await c.at(leader).lock.call('KeepAlive', { session_id: me });
    c.network.heal();

    let answer: Record<string, unknown> | null = null;
    let error: unknown = null;
    try {
      answer = await waiting;
    } catch (caught) {
      error = caught;
    }
    // r4/b is held by `other` throughout: the set was never granted.
    const b = await c.at(leader).lock.call('Describe', { lock: 'r4/b' });
    expect(b.holders.map((h: { session_id: string }) => h.session_id)).toEqual([other]);
    expect(
      answer?.acquired,
      `the set was told acquired=${String(answer?.acquired)} token ${String(answer?.fencing_token)} (r4/a's lone grant is ${aloneA.fencing_token}); error: ${String(error)}`,
    ).not.toBe(true);
  }, 30_000);
});
