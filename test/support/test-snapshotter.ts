/**
 * A real Snapshotter over a storage and a state machine that the test drives itself, one
 * applied entry at a time: every write resolves at once (no pause between slices), and a
 * failure is thrown into the test.
 */
import type { LockStateMachine } from '../../src/lock/index.ts';
import {
  type SnapshotReport,
  Snapshotter,
  type SnapshotterOptions,
} from '../../src/node/snapshotter.ts';
import type { ClusterConfig } from '../../src/raft/types.ts';
import type { WritableStorage } from '../../src/storage/writable-storage.ts';
import { type LogIndex, logIndex, type NodeId } from '../../src/util/ids.ts';

export interface TestSnapshotterSetup {
  readonly storage: WritableStorage;
  /** Absent: the node takes every turn at the grid's origin (no place among members). */
  readonly nodeId?: NodeId;
  readonly machine: LockStateMachine;
  appliedIndex(): number;
  config(): ClusterConfig;
  snapshotted?(report: SnapshotReport): void;
}

export function testSnapshotter(
  setup: TestSnapshotterSetup,
  options: Omit<SnapshotterOptions, 'pause'>,
): Snapshotter {
  return new Snapshotter(
    {
      storage: setup.storage,
      ...(setup.nodeId === undefined ? {} : { nodeId: setup.nodeId }),
      appliedIndex: (): LogIndex => logIndex(setup.appliedIndex()),
      installPending: () => false,
      config: () => setup.config(),
      captureState: () => setup.machine.snapshot(),
      failed: (error) => {
        throw error;
      },
      snapshotted: (report) => setup.snapshotted?.(report),
    },
    { ...options, pause: async () => {} },
  );
}
