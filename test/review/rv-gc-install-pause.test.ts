/**
 * A follower installing the leader's snapshot holds its event loop for the collection
 * (here a stand-in that blocks 5 election timeouts, 500 ms, like a 100,000-lock install
 * on a loaded machine). Checks: no election follows (term unchanged, same leader), no
 * session expires, and the follower answers a forwarded write afterwards.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DlmNode } from '../../src/node/node.ts';
import { OPTIONS, TestCluster, until, writeVia } from '../node/cluster-harness.ts';

let cluster: TestCluster | null = null;
const extra: DlmNode[] = [];
afterEach(async () => {
  await Promise.all(extra.splice(0).map((node) => node.stop()));
  await cluster?.stopAll();
  cluster = null;
});

function block(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {}
}

describe('a follower paused by the post-install collection', () => {
  it('does not cause an election, a session expiry, or a failed write', async () => {
    const running = new TestCluster();
    cluster = running;
    const follower = await running.follower();
    const id = follower.id;
    await follower.stop();
    running.nodes.delete(id);
    for (let i = 0; i < 80; i++)
      await writeVia(() => running.leader(), {
        type: 'OpenSession',
        ttlMs: 2_000,
        clientName: `c${i}`,
        requestId: running.requestId(),
      });
    const leader = await running.leader();
    const term = leader.status().term;
    const storage = running.storages.get(id);
    if (storage === undefined) throw new Error('no storage');
    let pauses = 0;
    const node = new DlmNode(
      id,
      storage,
      running.network.connect(id),
      {
        ...OPTIONS,
        restoreCollectBytesMin: 1,
        collectGarbage: () => {
          pauses++;
          block(500);
        },
      },
      undefined,
      11,
    );
    extra.push(node);
    const atStart = pauses;
    node.start();
    await until(() => node.status().appliedIndex >= leader.status().commitIndex, 'caught up');
    expect(pauses).toBeGreaterThan(atStart);
    await new Promise((r) => setTimeout(r, 300));
    expect(leader.status().role).toBe('leader');
    expect(leader.status().term).toBe(term);
    expect(node.status().term).toBe(term);
    expect(node.locks.sessionIds().length).toBe(leader.locks.sessionIds().length);
    const result = await writeVia(async () => node, {
      type: 'OpenSession',
      ttlMs: 60_000,
      clientName: 'after',
      requestId: running.requestId(),
    });
    expect(result.type).toBe('SessionOpened');
  });
});
