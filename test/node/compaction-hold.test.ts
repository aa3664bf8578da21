/**
 * A follower receiving a snapshot holds the leader's log after it (Raft's
 * compactionFloor), up to runtime.compactionHoldEntriesMax entries beyond what
 * compaction would keep; see src/node/snapshotter.ts. Without the hold, a follower
 * whose snapshots stream slower than the log outgrows the retained entries never
 * catches up (simulator seed 222161048).
 */
import { describe, expect, it } from 'vitest';
import { LockStateMachine } from '../../src/lock/index.ts';
import { Snapshotter } from '../../src/node/snapshotter.ts';
import { MemoryWritableStorage } from '../../src/storage/memory-writable-storage.ts';
import { type LogIndex, logIndex, nodeId } from '../../src/util/ids.ts';
import { entry, hardState } from '../raft/harness.ts';

const n1 = nodeId('n1');
const CONFIG = { voters: [n1], learners: [] };
const RETAIN = 10;

async function leaderWithSnapshotAt(
  applied: number,
  floor: LogIndex | null,
  holdMax: number | undefined,
) {
  const storage = MemoryWritableStorage.bootstrap(CONFIG);
  const entries = Array.from({ length: applied - 1 }, (_, i) => entry(i + 2, 1));
  await storage.persist({ entries, hardState: hardState(1, n1, applied) });
  const snapshotter = new Snapshotter(
    {
      storage,
      appliedIndex: () => logIndex(applied),
      installPending: () => false,
      compactionFloor: () => floor,
      config: () => CONFIG,
      captureState: () => new LockStateMachine().snapshot(),
      failed: (error) => {
        throw error;
      },
      snapshotted: () => {},
    },
    {
      snapshotEntriesThreshold: 50,
      compactionRetainEntries: RETAIN,
      compactionSliceEntries: 1_000,
      ...(holdMax === undefined ? {} : { compactionHoldEntriesMax: holdMax }),
    },
  );
  snapshotter.maybeStart();
  for (let i = 0; i < 200 && storage.snapshot().metadata.index < applied; i++) {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  expect(storage.snapshot().metadata.index).toBe(applied);
  // Let the stored snapshot's bookkeeping finish, then compact as the Ready loop does.
  while (snapshotter.busy) await new Promise((resolve) => setTimeout(resolve, 1));
  await snapshotter.compactStep();
  return storage.firstIndex() - 1;
}

describe('compaction holds the log a follower receiving a snapshot needs', () => {
  it('without a floor, compacts to the snapshot less the retained entries', async () => {
    expect(await leaderWithSnapshotAt(100, null, 1_000)).toBe(100 - RETAIN);
  });

  it('with a floor within the hold limit, compacts only up to the floor', async () => {
    expect(await leaderWithSnapshotAt(100, logIndex(40), 1_000)).toBe(40);
    expect(await leaderWithSnapshotAt(100, logIndex(40), 50)).toBe(40);
  });

  it('a floor further back than the hold limit allows is not honoured', async () => {
    expect(await leaderWithSnapshotAt(100, logIndex(40), 49)).toBe(100 - RETAIN);
    expect(await leaderWithSnapshotAt(100, logIndex(40), undefined)).toBe(100 - RETAIN);
  });

  it('a floor above the usual target changes nothing', async () => {
    expect(await leaderWithSnapshotAt(100, logIndex(95), 1_000)).toBe(100 - RETAIN);
  });
});
