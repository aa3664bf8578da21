/**
 * PeerTraffic (src/node/peer-traffic.ts): per-peer message counts that the fault
 * injection tests read from /metrics to prove a cut link carries nothing.
 */
import { describe, expect, it } from 'vitest';
import type { PeerMessage } from '../../src/node/peer-message.ts';
import { OTHER_PEER, PEER_NAMES_MAX, PeerTraffic } from '../../src/node/peer-traffic.ts';
import type { Transport } from '../../src/node/transport.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';

class FakeTransport implements Transport {
  readonly id = nodeId('n1');
  readonly sentMessages: PeerMessage[] = [];
  handler: ((message: PeerMessage) => void) | null = null;
  send(message: PeerMessage): void {
    this.sentMessages.push(message);
  }
  onMessage(handler: (message: PeerMessage) => void): void {
    this.handler = handler;
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function addresses(from: string, to: string): PeerMessage {
  return { kind: 'peerAddresses', from: nodeId(from), to: nodeId(to), addresses: [] };
}

describe('PeerTraffic', () => {
  it('counts arrivals by sender and sends by recipient, and passes everything through', () => {
    const inner = new FakeTransport();
    const traffic = new PeerTraffic(inner);
    const seen: PeerMessage[] = [];
    traffic.onMessage((message) => seen.push(message));
    inner.handler?.(addresses('n2', 'n1'));
    inner.handler?.(addresses('n2', 'n1'));
    inner.handler?.({
      kind: 'raft',
      message: { from: 'n3', to: 'n1' } as unknown as Extract<
        PeerMessage,
        { kind: 'raft' }
      >['message'],
    });
    traffic.send(addresses('n1', 'n3'));
    expect(seen).toHaveLength(3);
    expect(inner.sentMessages).toHaveLength(1);
    expect(Object.fromEntries(traffic.received)).toEqual({ n2: 2, n3: 1 });
    expect(Object.fromEntries(traffic.sent)).toEqual({ n3: 1 });
    expect(traffic.id).toBe('n1');
  });

  // A peer port decodes whatever arrives; a batch of [null] used to throw here, inside
  // the transport's data handler, and kill the process (found by the peer-tcp review).
  it('passes on messages that are not objects, counted under the catch-all name', () => {
    const inner = new FakeTransport();
    const traffic = new PeerTraffic(inner);
    const seen: unknown[] = [];
    traffic.onMessage((message) => seen.push(message));
    for (const junk of [null, 7, 'x', { kind: 'raft', message: null }]) {
      expect(() => inner.handler?.(junk as unknown as PeerMessage)).not.toThrow();
    }
    expect(seen).toHaveLength(4);
    expect(Object.fromEntries(traffic.received)).toEqual({ [OTHER_PEER]: 4 });
  });

  it('keeps the number of peer names bounded whatever senders claim to be', () => {
    const inner = new FakeTransport();
    const traffic = new PeerTraffic(inner);
    traffic.onMessage(() => {});
    for (let i = 0; i < PEER_NAMES_MAX + 50; i++) inner.handler?.(addresses(`x${i}`, 'n1'));
    // A message without a sender still counts, under the catch-all name.
    inner.handler?.({ kind: 'raft' } as unknown as PeerMessage);
    expect(traffic.received.size).toBe(PEER_NAMES_MAX);
    // 63 names of their own; the other 51 and the sender-less message share the catch-all.
    expect(traffic.received.get(OTHER_PEER)).toBe(PEER_NAMES_MAX + 50 - (PEER_NAMES_MAX - 1) + 1);
    const total = [...traffic.received.values()].reduce((sum, count) => sum + count, 0);
    expect(total).toBe(PEER_NAMES_MAX + 51);
  });

  it('forwards peer changes to the wrapped transport', () => {
    const calls: string[] = [];
    const inner = Object.assign(new FakeTransport(), {
      addPeer: (id: NodeId, address: string) => calls.push(`add ${id} ${address}`),
      removePeer: (id: NodeId) => calls.push(`remove ${id}`),
    });
    const traffic = new PeerTraffic(inner);
    traffic.addPeer(nodeId('n4'), '127.0.0.1:1');
    traffic.removePeer(nodeId('n4'));
    expect(calls).toEqual(['add n4 127.0.0.1:1', 'remove n4']);
  });
});
