import { afterEach, describe, expect, it } from 'vitest';
import { DlmNode } from '../../src/node/node.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';
import { OPTIONS, until } from './cluster-harness.ts';

/**
 * A member removed and added back under the same id, learned of through a snapshot: the
 * node that installs the snapshot must link to it again, or once it leads, that voter
 * hears nothing (and with one more node down it could not commit). The network here,
 * like gRPC, drops messages to peers a node has not linked with.
 */
const ids = ['n1', 'n2', 'n3', 'n4'].map(nodeId);
const SNAPSHOTTING = { ...OPTIONS, snapshotEntriesThreshold: 20, compactionRetainEntries: 2 };
const running = new Map<NodeId, DlmNode>();

afterEach(async () => {
  await Promise.all([...running.values()].map((node) => node.stop()));
  running.clear();
});

function start(network: MemoryNetwork, id: NodeId, storage: MemoryWritableStorage): DlmNode {
  const others = ids.filter((other) => other !== id);
  const node = new DlmNode(id, storage, network.connect(id, others), SNAPSHOTTING, undefined, 7);
  node.learnAddresses(
    ids.map((each) => ({ id: each, peerAddress: `mem:${each}`, clientAddress: '' })),
  );
  node.start();
  running.set(id, node);
  return node;
}

async function leader(): Promise<DlmNode> {
  let found: DlmNode | undefined;
  await until(() => {
    found = [...running.values()].find((node) => node.status().role === 'leader');
    return found !== undefined;
  }, 'a leader');
  return found as DlmNode;
}

describe('a member added back while a node was cut off', () => {
  it('is linked again by the node that learns of it from a snapshot', async () => {
    const network = new MemoryNetwork(true);
    for (const id of ids) {
      start(network, id, MemoryWritableStorage.bootstrap({ voters: ids, learners: [] }));
    }
    const first = await leader();
    const [x, readded] = ids.filter((id) => id !== first.id) as [NodeId, NodeId, NodeId];
    const nodeX = running.get(x) as DlmNode;

    // X applies the removal, which closes its link to the removed node.
    await first.removeMember(readded);
    await until(() => !nodeX.status().voters.includes(readded), 'X applied the removal');
    await running.get(readded)?.stop();
    running.delete(readded);

    // While X is cut off, the node comes back under the same id and address, and the
    // leader compacts its log past all of it.
    network.isolate(x, ids);
    start(network, readded, MemoryWritableStorage.joining());
    await first.addMember({ id: readded, peerAddress: `mem:${readded}`, clientAddress: '' });
    for (let i = 0; i < 30; i++) {
      await first.write({
        type: 'OpenSession',
        ttlMs: 60_000,
        clientName: 'c',
        requestId: `r${i}`,
      });
    }
    network.heal();
    await until(
      () =>
        nodeX.status().voters.includes(readded) &&
        nodeX.status().appliedIndex >= first.status().commitIndex,
      'X caught up from the snapshot',
    );

    // X leads; the re-added node must hear from it like every other voter.
    await first.transferLeadership(x);
    await until(() => nodeX.status().role === 'leader', 'X leads');
    const opened = await nodeX.write({
      type: 'OpenSession',
      ttlMs: 60_000,
      clientName: 'after',
      requestId: 'after-1',
    });
    expect(opened.result.type).toBe('SessionOpened');
    const readdedNode = running.get(readded) as DlmNode;
    await until(
      () => readdedNode.status().appliedIndex >= opened.index,
      'the re-added node applied what X leads',
      2_000,
    );
    expect(readdedNode.status().leaderId).toBe(x);
  });
});
