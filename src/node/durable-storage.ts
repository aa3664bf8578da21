import type {
  ClusterConfig,
  Entry,
  HardState,
  MemoryStorage,
  Snapshot,
  Storage,
} from '../raft/index.ts';
import type { LogIndex } from '../util/ids.ts';

/** One synced write: everything a Ready asks to persist. */
export interface PersistRequest {
  readonly snapshot: Snapshot | null;
  readonly entries: readonly Entry[];
  readonly hardState: HardState | null;
}

/**
 * Storage the node runtime writes to. Reads are synchronous (the Raft core reads
 * through `Storage`); writes are asynchronous and durable when their promise resolves.
 */
export interface DurableStorage extends Storage {
  persist(request: PersistRequest): Promise<void>;
  createSnapshot(index: LogIndex, config: ClusterConfig, data: Uint8Array): Promise<Snapshot>;
  compact(index: LogIndex): Promise<void>;
  close(): Promise<void>;
}

/** MemoryStorage behind the durable interface, for tests of the runtime. */
export class MemoryDurableStorage implements DurableStorage {
  constructor(readonly memory: MemoryStorage) {}

  initialState() {
    return this.memory.initialState();
  }
  entries(lo: LogIndex, hi: LogIndex, bytesMax: number) {
    return this.memory.entries(lo, hi, bytesMax);
  }
  term(index: LogIndex) {
    return this.memory.term(index);
  }
  firstIndex() {
    return this.memory.firstIndex();
  }
  lastIndex() {
    return this.memory.lastIndex();
  }
  snapshot() {
    return this.memory.snapshot();
  }

  async persist(request: PersistRequest): Promise<void> {
    if (request.snapshot !== null) this.memory.applySnapshot(request.snapshot);
    this.memory.append(request.entries);
    if (request.hardState !== null) this.memory.setHardState(request.hardState);
  }

  async createSnapshot(
    index: LogIndex,
    config: ClusterConfig,
    data: Uint8Array,
  ): Promise<Snapshot> {
    return this.memory.createSnapshot(index, config, data);
  }

  async compact(index: LogIndex): Promise<void> {
    this.memory.compact(index);
  }

  async close(): Promise<void> {}
}
