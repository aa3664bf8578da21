import { MemoryStorage } from '../raft/storage.ts';
import type { ClusterConfig, Snapshot } from '../raft/types.ts';
import type { LogIndex } from '../util/ids.ts';
import { MirroredReads } from './mirrored-reads.ts';
import type {
  PersistBatch,
  StoredAddress,
  StoredIdentity,
  WritableStorage,
} from './writable-storage.ts';

/**
 * MemoryStorage behind the async write API, for tests and for nodes that need no
 * durability. Writes take effect at once; nothing survives the process. Closing keeps
 * everything, so a test restarts a node by handing it the same object, saved addresses
 * included.
 */
export class MemoryWritableStorage extends MirroredReads implements WritableStorage {
  private addresses: readonly StoredAddress[] = [];
  private storedIdentity: StoredIdentity | null;

  constructor(memory: MemoryStorage, identity: StoredIdentity | null = null) {
    super(memory);
    this.storedIdentity = identity === null ? null : { ...identity };
  }

  static bootstrap(config: ClusterConfig, identity?: StoredIdentity): MemoryWritableStorage {
    return new MemoryWritableStorage(MemoryStorage.bootstrap(config), identity ?? null);
  }

  static joining(identity?: StoredIdentity): MemoryWritableStorage {
    return new MemoryWritableStorage(MemoryStorage.joining(), identity ?? null);
  }

  async persist(batch: PersistBatch): Promise<void> {
    if (batch.snapshot) this.mirror.applySnapshot(batch.snapshot);
    this.appendToMirror(batch.entries ?? []);
    if (batch.hardState) this.mirror.setHardState(batch.hardState);
  }

  async createSnapshot(
    index: LogIndex,
    config: ClusterConfig,
    data: Uint8Array,
  ): Promise<Snapshot | null> {
    // Writes take effect at once: no newer snapshot is ever on its way to disk.
    return this.mirror.createSnapshot(index, config, data);
  }

  async compact(index: LogIndex): Promise<void> {
    this.mirror.compact(index);
  }

  get savedAddresses(): readonly StoredAddress[] {
    return this.addresses;
  }

  async saveAddresses(addresses: readonly StoredAddress[]): Promise<void> {
    // A copy, as a durable store keeps what was written, not the caller's array.
    this.addresses = addresses.map(({ id, peerAddress, clientAddress }) => ({
      id,
      peerAddress,
      clientAddress,
    }));
  }

  get identity(): StoredIdentity | null {
    return this.storedIdentity;
  }

  async saveIdentity(identity: StoredIdentity): Promise<void> {
    this.storedIdentity = { clusterId: identity.clusterId, nodeId: identity.nodeId };
  }

  async close(): Promise<void> {}
}
