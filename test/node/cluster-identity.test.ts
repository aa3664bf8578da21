import { afterEach, describe, expect, it } from 'vitest';
import { BEHAVIOUR_LATEST } from '../../src/lock/index.ts';
import { NodeMetrics } from '../../src/node/metrics.ts';
import { DlmNode } from '../../src/node/node.ts';
import { type PeerMessage, peerRecipient } from '../../src/node/peer-message.ts';
import type { Transport } from '../../src/node/transport.ts';
import type { Message } from '../../src/raft/types.ts';
import { MemoryWritableStorage, type StoredIdentity } from '../../src/storage/index.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { logIndex, type NodeId, nodeId, term } from '../../src/util/ids.ts';
import { ids, OPTIONS, sleep, until } from './cluster-harness.ts';

/**
 * Peer messages carry the sender's cluster id. A node drops, reports and counts what
 * comes from another cluster before the Raft core sees it, learns the id from the first
 * peer that has one when it has none yet, and stops when a majority of its own voters
 * turn out to belong to another cluster (it runs on a foreign data directory).
 */
const [n1, n2, n3] = ids as [NodeId, NodeId, NodeId];
const OURS = 'c-ours';
const THEIRS = 'c-theirs';

/** A transport that records what the node sends and lets the test deliver by hand. */
class HandTransport implements Transport {
  readonly sent: PeerMessage[] = [];
  private handler: ((message: PeerMessage) => void) | null = null;
  constructor(readonly id: NodeId) {}
  send(message: PeerMessage): void {
    this.sent.push(message);
  }
  onMessage(handler: (message: PeerMessage) => void): void {
    this.handler = handler;
  }
  deliver(message: PeerMessage): void {
    this.handler?.(message);
  }
  async close(): Promise<void> {}
}

interface Started {
  readonly node: DlmNode;
  readonly transport: HandTransport;
  readonly storage: MemoryWritableStorage;
  readonly foreign: { from: string; clusterId: string }[];
  readonly failures: Error[];
}

let running: DlmNode | null = null;
afterEach(async () => {
  await running?.stop();
  running = null;
});

function startNode(self: NodeId, identity: StoredIdentity | undefined): Started {
  const storage = MemoryWritableStorage.bootstrap({ voters: ids, learners: [] }, identity);
  const transport = new HandTransport(self);
  // Ticks far apart: the node must not campaign on its own while the test talks to it.
  const node = new DlmNode(self, storage, transport, { ...OPTIONS, tickIntervalMs: 60_000 });
  const foreign: { from: string; clusterId: string }[] = [];
  const failures: Error[] = [];
  node.observe({
    peerMessageForeign: (from, clusterId) => foreign.push({ from, clusterId }),
    failed: (error) => failures.push(error),
  });
  node.start();
  running = node;
  return { node, transport, storage, foreign, failures };
}

function heartbeat(from: NodeId, to: NodeId, atTerm: number): Message {
  return {
    type: 'Heartbeat',
    from,
    to,
    term: term(atTerm),
    leaderCommit: logIndex(0),
    readSequence: 0,
  };
}

function raft(message: Message, clusterId?: string): PeerMessage {
  return clusterId === undefined ? { kind: 'raft', message } : { kind: 'raft', message, clusterId };
}

describe('cluster identity on peer messages', () => {
  it('every message the node sends carries its cluster id', async () => {
    const { node, transport } = startNode(n1, { clusterId: OURS, nodeId: n1 });
    // The address book announces itself; a forwarded write goes to the leader.
    node.learnAddresses([{ id: n2, peerAddress: '127.0.0.1:1', clientAddress: '' }]);
    expect(transport.sent.length).toBeGreaterThan(0);
    for (const message of transport.sent) expect(message.clusterId).toBe(OURS);
  });

  it("another cluster's message is dropped before Raft sees it, and reported", async () => {
    const { node, transport, foreign, failures } = startNode(n1, { clusterId: OURS, nodeId: n1 });
    // A leader of another cluster at a much higher term, as a foreign n2 would be.
    transport.deliver(raft(heartbeat(n2, n1, 50), THEIRS));
    await sleep(20);
    expect(node.status()).toMatchObject({ term: 1, leaderId: null });
    expect(foreign).toEqual([{ from: n2, clusterId: THEIRS }]);
    expect(failures).toEqual([]);
  });

  it('each dropped message is counted in dlm_peer_messages_foreign_total', async () => {
    const { node, transport } = startNode(n1, { clusterId: OURS, nodeId: n1 });
    const metrics = new NodeMetrics(node);
    for (let i = 0; i < 3; i++) transport.deliver(raft(heartbeat(n2, n1, 50), THEIRS));
    transport.deliver(raft(heartbeat(n3, n1, 50)));
    transport.deliver(raft(heartbeat(n2, n1, 2), OURS));
    const { body } = await metrics.render();
    expect(body).toMatch(
      /^dlm_peer_messages_foreign_total\{reason="other_cluster",node="n1"\} 3$/m,
    );
    expect(body).toMatch(
      /^dlm_peer_messages_foreign_total\{reason="no_cluster_id",node="n1"\} 1$/m,
    );
  });

  it('a message without a cluster id is foreign to a node that has one', async () => {
    const { node, transport, foreign } = startNode(n1, { clusterId: OURS, nodeId: n1 });
    transport.deliver(raft(heartbeat(n2, n1, 50)));
    await sleep(20);
    expect(node.status().term).toBe(1);
    expect(foreign).toEqual([{ from: n2, clusterId: '' }]);
  });

  it("a member's message with an empty id is still refused, and answered with the id", async () => {
    const { node, transport, foreign } = startNode(n1, { clusterId: OURS, nodeId: n1 });
    const metrics = new NodeMetrics(node);
    transport.sent.length = 0;
    transport.deliver(raft(heartbeat(n2, n1, 50), ''));
    await sleep(20);
    expect(node.status().term).toBe(1);
    expect(foreign).toEqual([{ from: n2, clusterId: '' }]);
    expect((await metrics.render()).body).toMatch(
      /^dlm_peer_messages_foreign_total\{reason="no_cluster_id",node="n1"\} 1$/m,
    );
    // One message that n2, which has no id yet, takes the id from.
    expect(transport.sent).toEqual([
      {
        kind: 'peerAddresses',
        from: n1,
        to: n2,
        addresses: [],
        clusterId: OURS,
        behaviour: BEHAVIOUR_LATEST,
      },
    ]);
  });

  it('answers only members that sent an empty id, at most once per tick each', async () => {
    const { transport, foreign } = startNode(n1, { clusterId: OURS, nodeId: n1 });
    transport.sent.length = 0;
    // Another cluster's id, no id at all (a peer older than ids: it would not learn),
    // and a name that is no member: refused, not answered.
    transport.deliver(raft(heartbeat(n2, n1, 50), THEIRS));
    transport.deliver(raft(heartbeat(n2, n1, 50)));
    transport.deliver(raft(heartbeat(nodeId('n9'), n1, 50), ''));
    // The node ticks once a minute here: n3's second message falls in the same tick.
    transport.deliver(raft(heartbeat(n3, n1, 50), ''));
    transport.deliver(raft(heartbeat(n3, n1, 50), ''));
    await sleep(20);
    expect(foreign).toHaveLength(5);
    expect(transport.sent.map((message) => [message.kind, peerRecipient(message)])).toEqual([
      ['peerAddresses', n3],
    ]);
  });

  it('a message of its own cluster goes to Raft', async () => {
    const { node, transport, foreign } = startNode(n1, { clusterId: OURS, nodeId: n1 });
    transport.deliver(raft(heartbeat(n2, n1, 5), OURS));
    await until(() => node.status().leaderId === n2, 'n1 follows n2');
    expect(node.status().term).toBe(5);
    expect(foreign).toEqual([]);
  });

  it('a node that has no cluster id yet learns it from the first message that carries one, and saves it first', async () => {
    const { node, transport, storage } = startNode(n3, { clusterId: '', nodeId: n3 });
    // Before it knows the id, it takes what comes without one (founders that do not know it either).
    transport.deliver(raft(heartbeat(n2, n3, 2)));
    await until(() => node.status().term === 2, 'n3 takes an unidentified message');
    transport.deliver(raft(heartbeat(n1, n3, 3), OURS));
    await until(() => storage.identity?.clusterId === OURS, 'n3 saves the cluster id');
    // The message that taught it was dropped (the leader resends); the next one is taken.
    expect(node.status().term).toBe(2);
    transport.deliver(raft(heartbeat(n1, n3, 3), OURS));
    await until(() => node.status().term === 3, 'n3 takes the next message');
    // From now on it speaks the id, and refuses other clusters.
    transport.deliver(raft(heartbeat(n2, n3, 9), THEIRS));
    await sleep(20);
    expect(node.status().term).toBe(3);
    expect(storage.identity).toEqual({ clusterId: OURS, nodeId: n3 });
  });

  it('a node whose voters, a majority of them, all belong to one other cluster stops, naming both ids', async () => {
    const { node, transport, failures } = startNode(n3, { clusterId: THEIRS, nodeId: n3 });
    transport.deliver(raft(heartbeat(n1, n3, 2), OURS));
    await sleep(20);
    // One voter is not a majority of three: it may be a misrouted message.
    expect(failures).toEqual([]);
    transport.deliver(raft(heartbeat(n2, n3, 2), OURS));
    await until(() => failures.length > 0, 'n3 stops');
    expect(failures[0]?.message).toContain(THEIRS);
    expect(failures[0]?.message).toContain(OURS);
    expect(failures[0]?.message).toContain('n1, n2');
    expect(node.running).toBe(false);
  });

  it('a node that heard its own cluster since it started does not stop on foreign messages', async () => {
    const { transport, failures } = startNode(n3, { clusterId: OURS, nodeId: n3 });
    transport.deliver(raft(heartbeat(n1, n3, 2), OURS));
    await sleep(10);
    transport.deliver(raft(heartbeat(n1, n3, 9), THEIRS));
    transport.deliver(raft(heartbeat(n2, n3, 9), THEIRS));
    await sleep(20);
    expect(failures).toEqual([]);
  });

  it('a node without a stored identity (an older database) takes every message, as before', async () => {
    const { node, transport } = startNode(n1, undefined);
    transport.deliver(raft(heartbeat(n2, n1, 4)));
    await until(() => node.status().term === 4, 'n1 takes the message');
  });

  it('a joining node learns the cluster id from the leader, saves it, and becomes a voter', async () => {
    const network = new MemoryNetwork();
    const n4 = nodeId('n4');
    const nodes = new Map<NodeId, DlmNode>();
    const storages = new Map<NodeId, MemoryWritableStorage>();
    for (const [position, id] of [...ids, n4].entries()) {
      const storage =
        id === n4
          ? MemoryWritableStorage.joining({ clusterId: '', nodeId: n4 })
          : MemoryWritableStorage.bootstrap(
              { voters: ids, learners: [] },
              { clusterId: OURS, nodeId: id },
            );
      storages.set(id, storage);
      const node = new DlmNode(id, storage, network.connect(id), OPTIONS, undefined, position + 1);
      node.start();
      nodes.set(id, node);
    }
    try {
      const leaderOf = () => [...nodes.values()].find((node) => node.status().role === 'leader');
      await until(() => leaderOf() !== undefined, 'a leader');
      const leader = leaderOf() as DlmNode;
      await leader.addMember({ id: n4, peerAddress: '', clientAddress: '' }, { timeoutMs: 10_000 });
      expect(storages.get(n4)?.identity).toEqual({ clusterId: OURS, nodeId: n4 });
      expect(leader.status().voters).toContain(n4);
    } finally {
      await Promise.all([...nodes.values()].map((node) => node.stop()));
    }
  });
});

describe('a new cluster whose founders learn the generated id at different times', () => {
  /**
   * n1 generates the id; n2 and n3 start without one and elect a leader while n1's
   * messages do not reach them (its gRPC links still in reconnect backoff, say). Then
   * n1 reaches only the follower: the follower learns the id before its leader does.
   * Its leader must keep the lead: the follower must not go deaf to it and elect another.
   */
  it('keeps the leader it was born with when a follower learns the id first', async () => {
    const network = new MemoryNetwork();
    const nodes = new Map<NodeId, DlmNode>();
    const storages = new Map<NodeId, MemoryWritableStorage>();
    const failures: Error[] = [];
    for (const [position, id] of ids.entries()) {
      const storage = MemoryWritableStorage.bootstrap(
        { voters: ids, learners: [] },
        { clusterId: id === n1 ? OURS : '', nodeId: id },
      );
      storages.set(id, storage);
      const node = new DlmNode(id, storage, network.connect(id), OPTIONS, undefined, position + 1);
      node.observe({ failed: (error) => failures.push(error) });
      nodes.set(id, node);
    }
    network.cut(n1, n2);
    network.cut(n1, n3);
    for (const node of nodes.values()) node.start();
    try {
      const leaders = () => [...nodes.values()].filter((node) => node.status().role === 'leader');
      await until(() => leaders().length === 1, 'n2 or n3 leads without n1');
      const born = leaders()[0] as DlmNode;
      const bornTerm = born.status().term;
      expect(born.id).not.toBe(n1);
      const follower = born.id === n2 ? n3 : n2;
      // n1 now reaches the follower only; the leader hears the id from nobody but it.
      network.heal();
      network.cut(n1, born.id);
      await until(
        () => storages.get(follower)?.identity?.clusterId === OURS,
        `${follower} learns the id from n1`,
      );
      // Thirty election timeouts: every node follows the leader the cluster was born with.
      const timeoutMs = OPTIONS.tickIntervalMs * (OPTIONS.raft.electionTimeoutTicks ?? 10);
      const watchUntilMs = performance.now() + 30 * timeoutMs;
      const changes: string[] = [];
      while (performance.now() < watchUntilMs) {
        for (const node of nodes.values()) {
          const { role, term: at } = node.status();
          const isBorn = node.id === born.id;
          if (at > bornTerm || (role === 'leader') !== isBorn) {
            changes.push(`${node.id} ${role} in term ${at}`);
          }
        }
        await sleep(5);
      }
      expect(changes.slice(0, 3)).toEqual([]);
      await until(
        () => [...nodes.values()].every((node) => node.status().leaderId === born.id),
        `every node follows ${born.id}`,
      );
      for (const id of ids) expect(storages.get(id)?.identity?.clusterId).toBe(OURS);
      expect(failures).toEqual([]);
    } finally {
      await Promise.all([...nodes.values()].map((node) => node.stop()));
    }
  });
});
