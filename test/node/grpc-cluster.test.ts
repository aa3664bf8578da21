import { afterEach, describe, expect, it } from 'vitest';
import { DlmError } from '../../src/node/errors.ts';
import { DlmNode, type NodeRuntimeOptions } from '../../src/node/node.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';
import { freePort } from '../support/free-port.ts';
import {
  PEER_TRANSPORTS,
  type PeerTransportName,
  startPeerTransport,
} from '../support/peer-transports.ts';

/** Three nodes in one process, talking over real peer links on loopback (gRPC, then TCP). */
const OPTIONS: NodeRuntimeOptions = {
  tickIntervalMs: 10,
  raft: { electionTimeoutTicks: 15, heartbeatIntervalTicks: 1 },
  lock: { sessionTtlMsMin: 100 },
  pendingProposalsMax: 1000,
  proposalTimeoutMs: 3_000,
  snapshotEntriesThreshold: 50,
  compactionRetainEntries: 10,
  shutdownTransferMs: 500,
};

const ids = [nodeId('n1'), nodeId('n2'), nodeId('n3')];
let nodes: DlmNode[] = [];

afterEach(async () => {
  await Promise.all(nodes.map((node) => node.stop()));
  nodes = [];
});

async function startCluster(kind: PeerTransportName): Promise<DlmNode[]> {
  // Bind every node first (port 0), then tell each the others' addresses.
  const ports = await Promise.all(ids.map(() => freePort()));
  const peers = new Map<NodeId, string>(ids.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
  const transports = await Promise.all(
    ids.map((id) =>
      startPeerTransport(kind, {
        id,
        listenAddress: peers.get(id) ?? '',
        peers,
        queueMessagesMax: 10_000,
        batchMessagesMax: 256,
        reconnectDelayMsMin: 20,
        reconnectDelayMsMax: 500,
      }),
    ),
  );
  return ids.map((id, i) => {
    const storage = MemoryWritableStorage.bootstrap({ voters: ids, learners: [] });
    const transport = transports[i];
    if (transport === undefined) throw new Error('transport missing');
    const node = new DlmNode(id, storage, transport, OPTIONS, undefined, i + 1);
    node.start();
    return node;
  });
}

async function leaderOf(cluster: DlmNode[]): Promise<DlmNode> {
  for (let attempt = 0; attempt < 500; attempt++) {
    const leader = cluster.find((node) => node.status().role === 'leader');
    if (leader !== undefined) return leader;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('no leader within 5 s');
}

describe.each(PEER_TRANSPORTS)('DlmNode over real peer links (%s)', (kind) => {
  it('elects a leader, forwards a follower write, and agrees on the result everywhere', async () => {
    nodes = await startCluster(kind);
    const leader = await leaderOf(nodes);
    const follower = nodes.find((node) => node !== leader);
    if (follower === undefined) throw new Error('no follower');
    let opened = null;
    for (let attempt = 0; attempt < 50 && opened === null; attempt++) {
      try {
        opened = await follower.write({
          type: 'OpenSession',
          ttlMs: 5_000,
          clientName: 'grpc',
          requestId: 'g1',
        });
      } catch (error) {
        if (!(error instanceof DlmError)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    expect(opened?.result.type).toBe('SessionOpened');
    for (const node of nodes) {
      const sessions = await node.read((locks) => locks.sessionIds());
      expect(sessions).toHaveLength(1);
    }
  });
});
