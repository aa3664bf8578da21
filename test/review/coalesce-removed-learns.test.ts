import { afterEach, describe, expect, it } from 'vitest';
import { DlmNode } from '../../src/node/node.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';
import { OPTIONS, until } from '../node/cluster-harness.ts';

/**
 * Review of coalesce (5e8f637). FAILS on the branch (3/3 runs), passes on main (3/3).
 *
 * The leader's AppendEntries carrying the commit of "remove X" now waits in the
 * RaftOutbox for the end of the turn; in the same turn the leader applies the entry and
 * membership.ts configApplied calls transport.removePeer(X) (gRPC/TCP close the link; the
 * MemoryNetwork with linkedOnly models that). The flush then finds no link and X never
 * learns it was removed: it stays a voter in its own eyes and campaigns forever.
 * In production LevelStorage's commit-index write goes through the thread pool, so the
 * turn ends (and the outbox flushes) before the apply; with MemoryWritableStorage (tests,
 * nodes that need no durability) it does not. Correctness now rests on that I/O boundary.
 */
const ids = ['n1', 'n2', 'n3', 'n4'].map(nodeId);
const running = new Map<NodeId, DlmNode>();

afterEach(async () => {
  await Promise.all([...running.values()].map((node) => node.stop()));
  running.clear();
});

function start(network: MemoryNetwork, id: NodeId): DlmNode {
  const others = ids.filter((other) => other !== id);
  const storage = MemoryWritableStorage.bootstrap({ voters: ids, learners: [] });
  const node = new DlmNode(id, storage, network.connect(id, others), OPTIONS, undefined, 7);
  node.learnAddresses(
    ids.map((each) => ({ id: each, peerAddress: `mem:${each}`, clientAddress: '' })),
  );
  node.start();
  running.set(id, node);
  return node;
}

describe('review coalesce: a removed node learns its removal', () => {
  it('applies the config entry that removed it', async () => {
    const network = new MemoryNetwork(true);
    for (const id of ids) start(network, id);
    let leader: DlmNode | undefined;
    await until(() => {
      leader = [...running.values()].find((node) => node.status().role === 'leader');
      return leader !== undefined;
    }, 'a leader');
    const first = leader as DlmNode;
    const removed = ids.find((id) => id !== first.id) as NodeId;
    const removedNode = running.get(removed) as DlmNode;
    await first.removeMember(removed);
    await until(
      () => !removedNode.status().voters.includes(removed),
      `${removed} applied its own removal`,
      3_000,
    );
    expect(removedNode.status().voters).not.toContain(removed);
  });
});
