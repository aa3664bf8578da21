/**
 * Review of the startup-id branch (f9b8852): a node that knows the cluster id answers a
 * member's id-less message with its address book, which carries the id. Two claims the
 * branch's own tests leave open (each survived a mutant there): learners are answered
 * too, and "once per tick" means once per tick, not once ever. Both hold; kept as
 * regression tests. Teeth (injected once each): answering voters only fails both;
 * never answering a member twice fails the second, and so does one limit shared by all
 * members instead of one per member.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type Clock, DlmNode } from '../../src/node/node.ts';
import { type PeerMessage, peerRecipient } from '../../src/node/peer-message.ts';
import type { Transport } from '../../src/node/transport.ts';
import type { Message } from '../../src/raft/types.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { logIndex, type NodeId, nodeId, term } from '../../src/util/ids.ts';
import { OPTIONS } from '../node/cluster-harness.ts';

const [n1, n2, n3, n4] = ['n1', 'n2', 'n3', 'n4'].map(nodeId) as [NodeId, NodeId, NodeId, NodeId];
const OURS = 'c-ours';
const TICK_MS = 60_000;

/** Records what the node sends; the test delivers by hand. */
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

let running: DlmNode | null = null;
afterEach(async () => {
  await running?.stop();
  running = null;
});

/** n1 with our id, voters n1+n2, learner n3; n4 is no member. Time moves only by hand. */
function start(): { transport: HandTransport; clock: { now: number } } {
  const storage = MemoryWritableStorage.bootstrap(
    { voters: [n1, n2], learners: [n3] },
    { clusterId: OURS, nodeId: n1 },
  );
  const transport = new HandTransport(n1);
  const clock = { now: 0 };
  const manual: Clock = { nowMs: () => clock.now };
  // Real ticks a minute apart: none fires during a test, so the node never campaigns.
  const node = new DlmNode(n1, storage, transport, { ...OPTIONS, tickIntervalMs: TICK_MS }, manual);
  node.start();
  running = node;
  transport.sent.length = 0;
  return { transport, clock };
}

function idless(from: NodeId): PeerMessage {
  const message: Message = {
    type: 'Heartbeat',
    from,
    to: n1,
    term: term(5),
    leaderCommit: logIndex(0),
    readSequence: 0,
  };
  return { kind: 'raft', message, clusterId: '' };
}

function answered(transport: HandTransport): [string, NodeId, string | undefined][] {
  return transport.sent.map((m) => [m.kind, peerRecipient(m), m.clusterId]);
}

describe('review startup-id: who is answered, and how often', () => {
  it("a learner's id-less message is answered with the id; a non-member's is not", () => {
    const { transport } = start();
    transport.deliver(idless(n3));
    transport.deliver(idless(n4));
    expect(answered(transport)).toEqual([['peerAddresses', n3, OURS]]);
  });

  it('a member is answered again once a tick has passed, not before', () => {
    const { transport, clock } = start();
    transport.deliver(idless(n2));
    clock.now = TICK_MS - 1;
    transport.deliver(idless(n2));
    expect(answered(transport)).toEqual([['peerAddresses', n2, OURS]]);
    clock.now = TICK_MS;
    transport.deliver(idless(n2));
    // Limits are per member: n3's first answer is not held back by n2's.
    transport.deliver(idless(n3));
    expect(answered(transport)).toEqual([
      ['peerAddresses', n2, OURS],
      ['peerAddresses', n2, OURS],
      ['peerAddresses', n3, OURS],
    ]);
  });
});
