/**
 * Review of 5df2042 (Raft.compactionFloor). The floor holds the leader's log after a
 * snapshot only while the snapshot streams: it is gone the moment the follower reports
 * the snapshot installed, and for a round trip whenever one chunk is lost. Either way a
 * host that honours it (the simulator's maybeSnapshot, the node's Snapshotter, which
 * compacts at every Ready) deletes the held entries while the follower still needs them,
 * and the follower gets another snapshot: the treadmill of seed 222161048 again.
 * Fixed by holding for any follower that answered anything lately, from its snapshot
 * while one streams and from its match after (both tests failed before).
 *
 * The host here is the node's Snapshotter reduced to its policy: snapshot every
 * INTERVAL applied entries, compact after every Ready to the snapshot less RETAIN, but
 * never past compactionFloor() (no hold limit).
 */
import { describe, expect, it } from 'vitest';
import { logIndex as idx } from '../../src/util/ids.ts';
import { Prng } from '../../src/util/prng.ts';
import { encodeState, ids, Network } from './harness.ts';

const [a, b, c] = ids('a', 'b', 'c');
const INTERVAL = 2;
const RETAIN = 4;
const PADDING = 'x'.repeat(50);

function cluster(seed: number) {
  const network = new Network({
    prng: new Prng(seed),
    voters: [a, b, c],
    options: {
      snapshotChunkBytesMax: 64,
      snapshotChunksInFlightMax: 1,
      // One entry per AppendEntries, one in flight: replication after the snapshot is
      // slower than streaming, but faster than the load below.
      appendBatchBytesMax: 1,
      inflightMessagesMax: 1,
    },
  });
  network.elect(a);
  network.isolate(c);
  for (let i = 0; i < 30; i++) network.propose(a, `v${i}-${PADDING}`);
  network.stabilize();
  network.snapshotAndCompact(a);
  network.heal();

  /** The leader's host after each step: snapshot, then compact no further than the floor. */
  const hostCompact = (): void => {
    network.processReadies();
    const node = network.node(a);
    const storage = node.storage;
    if (node.lastAppliedIndex - storage.snapshot().metadata.index >= INTERVAL) {
      storage.createSnapshot(node.lastAppliedIndex, node.raft.config, encodeState(node.state));
    }
    const target = storage.snapshot().metadata.index - RETAIN;
    const floor = node.raft.compactionFloor();
    storage.compact(idx(Math.max(0, floor === null ? target : Math.min(target, floor))));
  };

  let proposed = 30;
  /** One step: maybe a proposal (every 4th), maybe a tick (every 4th), one delivery round. */
  const step = (n: number, load: boolean): void => {
    if (load && n % 4 === 0) network.propose(a, `v${proposed++}-${PADDING}`);
    if (n % 4 === 2) for (const id of network.ids()) network.raft(id).tick();
    network.deliverAll();
    hostCompact();
  };
  return { network, step, hostCompact };
}

describe('review 5df2042: the compaction floor lets go before the follower can use the log it held', () => {
  it('a follower that installed the streamed snapshot continues from the held log, without a second snapshot', () => {
    const { network, step } = cluster(90);
    // Steady load for a while, then none, then let everything settle.
    for (let n = 0; n < 1_200; n++) step(n, true);
    for (let n = 0; n < 800; n++) step(n, false);
    network.tickAll(5);
    const snapshots = network.node(c).appliedSnapshots.map((m) => m.index);
    // The first snapshot streams while the floor holds the log after it; once it is
    // installed, c should need nothing but that log. It got one snapshot after another.
    expect(snapshots).toHaveLength(1);
  });

  it('one lost snapshot chunk does not drop the hold of a follower that answers heartbeats', () => {
    const { network, step } = cluster(91);
    // Stream a few chunks under load so that the floor holds entries past the snapshot.
    let n = 0;
    for (; n < 16; n++) step(n, true);
    const leader = network.raft(a);
    expect(leader.progressOf(c)?.state).toBe('snapshot');
    expect(leader.compactionFloor()).toBe(32);
    // The next chunk is lost, once. c still answers every heartbeat meanwhile.
    let lost = false;
    const drop = network.dropIf((m) => {
      if (lost || m.type !== 'InstallSnapshot' || m.to !== c) return false;
      lost = true;
      return true;
    });
    let released = -1;
    for (let k = 0; k < 60 && released < 0; k++, n++) {
      step(n, true);
      if (leader.compactionFloor() === null && leader.progressOf(c)?.state === 'snapshot')
        released = k;
    }
    drop();
    expect(lost).toBe(true);
    // The resend timer and the silence timer run out on the same tick: the hold is
    // dropped exactly when the lost chunk goes out again, until c answers it.
    expect(released).toBe(-1);
  });
});
