import { afterEach, describe, expect, it } from 'vitest';
import type { PeerMessage } from '../../src/node/peer-message.ts';
import { GrpcTransport } from '../../src/transport/grpc.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';
import { until } from '../node/cluster-harness.ts';

/**
 * Review of perf-cpu (570efcc, a296afe): a link with an open, writable stream now holds
 * everything one event-loop turn sends to its peer until setImmediate, and writes early
 * only at batchMessagesMax (256, fixed in serve.ts). runtime.peerQueueMessagesMax
 * (default 1024) may be configured anywhere from 1: below 256 the early write never
 * happens, and a turn that sends more than peerQueueMessagesMax messages to one peer
 * drops the oldest ones (counted as 'queue full') though the stream could take them all,
 * as it did when every send wrote at once. The queue bound was meant for a peer that
 * does not keep up, not for one busy turn.
 */
const A = nodeId('a');
const B = nodeId('b');
const started: GrpcTransport[] = [];

afterEach(async () => {
  await Promise.all(started.splice(0).map((transport) => transport.close()));
});

function note(serial: number): PeerMessage {
  return {
    kind: 'peerAddresses',
    from: A,
    to: B,
    addresses: [{ id: A, peerAddress: `serial-${serial}`, clientAddress: '' }],
  };
}

describe('review perf-cpu: the per-turn queue and peerQueueMessagesMax', () => {
  it('a turn that sends 20 messages over a healthy link with a queue of 10 loses none', async () => {
    const receiver = await GrpcTransport.start({
      id: B,
      listenAddress: '127.0.0.1:0',
      peers: new Map(),
      queueMessagesMax: 10,
      batchMessagesMax: 256,
      reconnectDelayMsMin: 20,
      reconnectDelayMsMax: 200,
    });
    started.push(receiver);
    const drops: string[] = [];
    const sender = await GrpcTransport.start({
      id: A,
      listenAddress: '127.0.0.1:0',
      peers: new Map<NodeId, string>([[B, `127.0.0.1:${receiver.port}`]]),
      queueMessagesMax: 10,
      batchMessagesMax: 256,
      reconnectDelayMsMin: 20,
      reconnectDelayMsMax: 200,
      onDrop: (_peer, reason) => drops.push(reason),
    });
    started.push(sender);
    const received: number[] = [];
    receiver.onMessage((message) => {
      if (message.kind !== 'peerAddresses') return;
      received.push(Number(message.addresses[0]?.peerAddress.slice('serial-'.length)));
    });
    // Open the stream and see it work first (resent until one arrives: the very first
    // connect may race the server).
    for (let serial = -1; !received.includes(-1); ) {
      sender.send(note(serial));
      await until(() => received.length > 0, 'the link is up', 1_000).catch(() => {});
    }
    received.length = 0;

    for (let serial = 0; serial < 20; serial++) sender.send(note(serial));
    await until(() => received.length >= 10, 'some messages arrive', 3_000);
    await new Promise((resolve) => setTimeout(resolve, 200));

    expect(drops).toEqual([]);
    expect(received).toEqual([...Array(20).keys()]);
  });
});
