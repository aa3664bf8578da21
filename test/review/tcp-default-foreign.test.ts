/**
 * Review of 634bca8 (peerTransport defaults to tcp): a node of another cluster must not
 * be able to feed messages into this one over the new default any more than over gRPC.
 * The cluster-id filter lives in the node (cluster-identity.ts), not in a transport, and
 * test/node/cluster-identity.test.ts runs it over a hand-made transport; this runs it
 * end to end over each real transport on loopback: a stranger that also calls itself n1
 * (node ids are names operators reuse) sends a RequestVote with a far higher term, once
 * with its own cluster's id and once with none. Without the filter n2 would adopt that
 * term (and drop its leader); with it, n2 counts the messages as foreign and carries on.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DlmNode, type NodeRuntimeOptions } from '../../src/node/node.ts';
import type { PeerMessage } from '../../src/node/peer-message.ts';
import type { Transport } from '../../src/node/transport.ts';
import type { Message } from '../../src/raft/types.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { logIndex, type NodeId, nodeId, term } from '../../src/util/ids.ts';
import { freePort } from '../support/free-port.ts';
import { PEER_TRANSPORTS, startPeerTransport } from '../support/peer-transports.ts';

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
const OURS = 'c-ours';
const LINK = {
  queueMessagesMax: 1000,
  batchMessagesMax: 64,
  reconnectDelayMsMin: 20,
  reconnectDelayMsMax: 200,
};

let nodes: DlmNode[] = [];
let stranger: Transport | null = null;
afterEach(async () => {
  await stranger?.close();
  stranger = null;
  await Promise.all(nodes.map((node) => node.stop()));
  nodes = [];
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await sleep(10);
  }
}

function vote(from: NodeId, to: NodeId, atTerm: number): Message {
  return {
    type: 'RequestVote',
    from,
    to,
    term: term(atTerm),
    preVote: false,
    lastLogIndex: logIndex(1_000_000),
    lastLogTerm: term(atTerm - 1),
    leadershipTransfer: true,
  };
}

describe.each(PEER_TRANSPORTS)('a stranger on the peer port (%s)', (kind) => {
  it("cannot feed another cluster's messages, or id-less ones, into the cluster", async () => {
    const ports = await Promise.all(ids.map(() => freePort()));
    const peers = new Map<NodeId, string>(ids.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
    const transports = await Promise.all(
      ids.map((id) =>
        startPeerTransport(kind, { id, listenAddress: peers.get(id) ?? '', peers, ...LINK }),
      ),
    );
    const foreign: { from: string; clusterId: string }[] = [];
    nodes = ids.map((id, i) => {
      const storage = MemoryWritableStorage.bootstrap(
        { voters: ids, learners: [] },
        { clusterId: OURS, nodeId: id },
      );
      const node = new DlmNode(id, storage, transports[i] as Transport, OPTIONS, undefined, i + 1);
      if (id === 'n2')
        node.observe({ peerMessageForeign: (from, c) => foreign.push({ from, clusterId: c }) });
      node.start();
      return node;
    });
    await until(() => nodes.some((node) => node.status().role === 'leader'), 'a leader');
    const n2 = nodes[1] as DlmNode;
    const termBefore = n2.status().term;
    stranger = await startPeerTransport(kind, {
      id: nodeId('n1'),
      listenAddress: `127.0.0.1:${await freePort()}`,
      peers: new Map([[nodeId('n2'), peers.get(nodeId('n2')) ?? '']]),
      ...LINK,
    });
    const high = termBefore + 1000;
    const send = (message: PeerMessage) => stranger?.send(message);
    for (let k = 0; k < 20; k++) {
      send({
        kind: 'raft',
        message: vote(nodeId('n1'), nodeId('n2'), high),
        clusterId: 'c-theirs',
      });
      send({ kind: 'raft', message: vote(nodeId('n1'), nodeId('n2'), high + 1) });
      await sleep(25);
    }
    await until(
      () =>
        foreign.some((each) => each.clusterId === 'c-theirs') &&
        foreign.some((each) => each.clusterId === ''),
      "n2 reports the stranger's messages of both kinds as foreign",
    );
    expect(n2.status().term).toBeLessThan(high);
    expect(nodes.every((node) => node.status().term < high)).toBe(true);
  }, 30_000);
});
