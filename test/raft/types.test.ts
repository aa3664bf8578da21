/**
 * The message and entry helpers of types.ts, checked on messages a real cluster sends.
 */
import { describe, expect, it } from 'vitest';
import { entrySizeBytes, isResponse, type MessageType } from '../../src/raft/types.ts';
import { logIndex as idx, term as tm } from '../../src/util/ids.ts';
import { Prng } from '../../src/util/prng.ts';
import { entry, ids, Network } from './harness.ts';

const [a, b, c] = ids('a', 'b', 'c');

describe('message kinds', () => {
  it('a cluster that elects, replicates, snapshots, reads and transfers sends every kind, and isResponse tells answers from requests', () => {
    const network = new Network({
      prng: new Prng(120),
      voters: [a, b, c],
      options: { snapshotChunkBytesMax: 16 },
    });
    network.elect(a);
    network.isolate(c);
    for (let i = 0; i < 5; i++) network.propose(a, `v${i}`);
    network.stabilize();
    network.snapshotAndCompact(a);
    network.heal();
    network.tickAll(3);
    network.raft(b).readIndex('read');
    network.stabilize();
    network.raft(a).transferLeadership(c);
    network.stabilize();

    const kinds = new Map<MessageType, boolean>();
    for (const message of network.sent) kinds.set(message.type, isResponse(message));

    expect(Object.fromEntries([...kinds].sort())).toEqual({
      AppendEntries: false,
      AppendEntriesResponse: true,
      Heartbeat: false,
      HeartbeatResponse: true,
      InstallSnapshot: false,
      InstallSnapshotResponse: true,
      ReadIndexRequest: false,
      ReadIndexResponse: true,
      RequestVote: false,
      RequestVoteResponse: true,
      TimeoutNow: false,
    });
    expect(network.leaders()).toEqual([c]);
  });
});

describe('entrySizeBytes (the unit of appendBatchBytesMax and committedEntriesBytesMax)', () => {
  it('is a fixed header plus the data of a normal entry, and the header alone otherwise', () => {
    expect(entrySizeBytes(entry(2, 1, ''))).toBe(24);
    expect(entrySizeBytes(entry(2, 1, 'x'.repeat(100)))).toBe(124);
    expect(entrySizeBytes({ kind: 'noop', index: idx(2), term: tm(1) })).toBe(24);
    expect(
      entrySizeBytes({
        kind: 'config',
        index: idx(2),
        term: tm(1),
        change: { type: 'addLearner', nodeId: a },
      }),
    ).toBe(24);
  });
});
