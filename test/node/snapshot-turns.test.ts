/**
 * The members take their snapshots in turns (Snapshotter.due): each one's fall every
 * threshold entries, offset by its place among the sorted member ids times threshold /
 * members, so that three nodes applying one log never all snapshot at the same index.
 */
import { describe, expect, it } from 'vitest';
import { LockStateMachine } from '../../src/lock/index.ts';
import { Snapshotter } from '../../src/node/snapshotter.ts';
import type { ClusterConfig, Entry } from '../../src/raft/types.ts';
import { MemoryWritableStorage } from '../../src/storage/memory-writable-storage.ts';
import { type LogIndex, logIndex, type NodeId, term } from '../../src/util/ids.ts';
import { ids } from '../raft/harness.ts';

const [n1, n2, n3, n4] = ids('n1', 'n2', 'n3', 'n4');
const THRESHOLD = 30;

/** Applies entries 2..`upTo` one at a time on a node, and lists the snapshots it took. */
async function snapshotIndexes(
  self: NodeId | undefined,
  config: ClusterConfig,
  upTo: number,
): Promise<number[]> {
  const storage = MemoryWritableStorage.bootstrap(config);
  const machine = new LockStateMachine();
  let applied = 1;
  const taken: LogIndex[] = [];
  const snapshotter = new Snapshotter(
    {
      storage,
      ...(self === undefined ? {} : { nodeId: self }),
      appliedIndex: () => logIndex(applied),
      installPending: () => false,
      config: () => config,
      captureState: () => machine.snapshot(),
      failed: (error) => {
        throw error;
      },
      snapshotted: (report) => taken.push(report.index),
    },
    { snapshotEntriesThreshold: THRESHOLD, compactionRetainEntries: 2, pause: async () => {} },
  );
  for (let index = 2; index <= upTo; index++) {
    const entry: Entry = {
      kind: 'normal',
      index: logIndex(index),
      term: term(1),
      data: new Uint8Array(),
    };
    await storage.persist({ entries: [entry] });
    applied = index;
    snapshotter.maybeStart();
    // Each snapshot finishes before the next entry, as when the log moves slowly.
    while (snapshotter.busy) await new Promise((resolve) => setImmediate(resolve));
  }
  return taken;
}

describe('snapshot turns', () => {
  const three: ClusterConfig = { voters: [n3, n1, n2], learners: [] };

  it('each of three voters snapshots every threshold entries, a third of one apart from the next', async () => {
    expect(await snapshotIndexes(n1, three, 100)).toEqual([30, 60, 90]);
    expect(await snapshotIndexes(n2, three, 100)).toEqual([10, 40, 70, 100]);
    expect(await snapshotIndexes(n3, three, 100)).toEqual([20, 50, 80]);
  });

  it('learners take turns too; a node that is not a member, or has no id, takes the first', async () => {
    const withLearner: ClusterConfig = { voters: [n1, n2, n3], learners: [n4] };
    expect(await snapshotIndexes(n4, withLearner, 100)).toEqual([22, 52, 82]);
    expect(await snapshotIndexes(n4, three, 100)).toEqual([30, 60, 90]);
    expect(await snapshotIndexes(undefined, three, 100)).toEqual([30, 60, 90]);
  });
});
