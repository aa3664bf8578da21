import type { Storage } from '../raft/storage.ts';
import type { ClusterConfig, Entry, HardState, Snapshot } from '../raft/types.ts';
import type { LogIndex } from '../util/ids.ts';

/**
 * What one Ready asks the host to persist (see `Ready`, rule 1). The fields match
 * Ready's, so a Ready can be passed as it is.
 */
export interface PersistBatch {
  /** Replaces the whole log; written first. */
  readonly snapshot?: Snapshot | null;
  /** Appended after the snapshot (or the log), replacing any suffix they conflict with. */
  readonly entries?: readonly Entry[];
  readonly hardState?: HardState | null;
}

/**
 * Storage the node runtime writes to. Reads stay synchronous (the core's `Storage`);
 * writes are async and durable when their promise resolves. Writes must not overlap:
 * the Ready loop issues one at a time.
 */
export interface WritableStorage extends Storage {
  /** Persists a Ready's snapshot, entries and hard state in one atomic, synced write. */
  persist(batch: PersistBatch): Promise<void>;
  /** Records a snapshot of the state machine at `index`, which must be applied. */
  createSnapshot(index: LogIndex, config: ClusterConfig, data: Uint8Array): Promise<Snapshot>;
  /** Drops entries up to and including `index`, which a snapshot must already cover. */
  compact(index: LogIndex): Promise<void>;
  close(): Promise<void>;
}
