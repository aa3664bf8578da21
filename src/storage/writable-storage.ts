import type { Storage } from '../raft/storage.ts';
import type { ClusterConfig, Entry, HardState, Snapshot } from '../raft/types.ts';
import type { LogIndex, NodeId } from '../util/ids.ts';

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
  /**
   * False when the batch may be written without an fsync: the core says so of a Ready
   * whose only change is the commit index (see `Ready.mustSync`). Absent means synced.
   */
  readonly mustSync?: boolean;
}

/**
 * Where a member is reached. Kept beside the Raft state but outside it: config entries
 * name only node ids, so without this a node whose cluster moved on to members its
 * config file does not list could not find them after a restart.
 */
export interface StoredAddress {
  readonly id: NodeId;
  /** host:port of the peer (Raft) endpoint; empty when unknown. */
  readonly peerAddress: string;
  /** host:port of the public API; empty when unknown. */
  readonly clientAddress: string;
}

/**
 * Which cluster and which node a database belongs to (see src/node/cluster-identity.ts).
 * Kept beside the Raft state but outside it, like the addresses: a database restored
 * into the wrong cluster, or started under another member's id, must be recognised
 * before any of its Raft state is trusted.
 */
export interface StoredIdentity {
  /** The cluster's id; '' while this node has not learned it yet (a joiner, say). */
  readonly clusterId: string;
  readonly nodeId: NodeId;
}

/**
 * Storage the node runtime writes to. Reads stay synchronous (the core's `Storage`);
 * writes are async and durable when their promise resolves. Raft writes (persist,
 * compact) must not overlap: the Ready loop issues one at a time. A createSnapshot may
 * run beside them (never beside another createSnapshot).
 */
export interface WritableStorage extends Storage {
  /**
   * Persists a Ready's snapshot, entries and hard state in one atomic write, durable when
   * the promise resolves unless `batch.mustSync` is false.
   */
  persist(batch: PersistBatch): Promise<void>;
  /**
   * Records a snapshot of the state machine at `index`, which must be applied. Resolves
   * null, storing nothing, if a newer snapshot is on its way to disk (being installed);
   * going back from the stored snapshot is an error.
   */
  createSnapshot(
    index: LogIndex,
    config: ClusterConfig,
    data: Uint8Array,
  ): Promise<Snapshot | null>;
  /** Drops entries up to and including `index`, which a snapshot must already cover. */
  compact(index: LogIndex): Promise<void>;
  /** The size of the latest snapshot's data, without reading it (a store may keep it on disk). */
  snapshotDataBytes(): number;
  /**
   * Replaces the stored member addresses, durably. Not Raft state: it may run while a
   * Raft write is in flight, and saves take effect in the order they were called.
   */
  saveAddresses(addresses: readonly StoredAddress[]): Promise<void>;
  /** The member addresses as of open, then as of the last save that completed. */
  readonly savedAddresses: readonly StoredAddress[];
  /** The identity as of open, then as of the last save; null when none was ever stored. */
  readonly identity: StoredIdentity | null;
  /** Replaces the stored identity, durably (one synced write). */
  saveIdentity(identity: StoredIdentity): Promise<void>;
  /** Waits for address saves in flight; a save or Raft write after close is refused. */
  close(): Promise<void>;
}
