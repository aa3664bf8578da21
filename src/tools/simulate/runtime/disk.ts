import { MemoryStorage } from '../../../raft/storage.ts';
import type { ClusterConfig, Entry, Snapshot } from '../../../raft/types.ts';
import { MirroredReads } from '../../../storage/mirrored-reads.ts';
import type {
  PersistBatch,
  StoredAddress,
  StoredIdentity,
  WritableStorage,
} from '../../../storage/writable-storage.ts';
import { type LogIndex, logIndex } from '../../../util/ids.ts';
import type { Prng } from '../../../util/prng.ts';
import type { ProcessClock } from './scheduler.ts';

/**
 * A node's simulated disk. What is on it survives crashes; a write reaches it only when
 * its simulated fsync completes, at a virtual time drawn from the seed. Writes complete
 * in the order they were issued (one LevelDB write-ahead log), each atomically, like
 * LevelStorage's batches. A write that needs no sync (a commit index alone) is queued
 * and lands like the others, but its caller does not wait for it: until it lands a crash
 * loses it, and with it every write queued after it.
 *
 * The disk also reports every entry that becomes committed *on disk*: when a write
 * lands whose hard state moves the durable commit index. The durable log up to the
 * durable commit index is the committed log (both went down in one atomic batch), so
 * the checker gets its ground truth from here rather than from the node's answers.
 */
export interface DiskOptions {
  readonly fsyncLatencyMsMin: number;
  readonly fsyncLatencyMsMax: number;
  /** Chance that a write still in flight at a crash had reached the platter anyway. */
  readonly landsAtCrashProbability: number;
}

export type CommitListener = (entries: readonly Entry[]) => void;

interface PendingWrite {
  readonly apply: () => void;
  readonly resolve: () => void;
}

export class SimDisk {
  readonly durable: MemoryStorage;
  addresses: readonly StoredAddress[] = [];
  /** No cluster id: every simulated node accepts every peer, as before identities. */
  identity: StoredIdentity | null = null;
  writes = 0;
  private pending: PendingWrite[] = [];
  private reportedCommit: number;
  private lastCompletionMs = 0;

  constructor(
    config: ClusterConfig,
    private readonly options: DiskOptions,
    private readonly prng: Prng,
    private readonly onCommitted: CommitListener,
  ) {
    this.durable = MemoryStorage.bootstrap(config);
    this.reportedCommit = this.durable.snapshot().metadata.index;
  }

  /** Storage for one process; `clock` is that process (a dead process's fsyncs never return). */
  open(clock: ProcessClock): SimStorage {
    this.pending = [];
    return new SimStorage(this, clock);
  }

  /**
   * The process died: writes in flight either reached the disk or not. Like a write-
   * ahead log, what survives is a prefix of them.
   */
  crash(): void {
    const inFlight = this.pending;
    this.pending = [];
    for (const write of inFlight) {
      if (!this.prng.chance(this.options.landsAtCrashProbability)) break;
      write.apply();
    }
  }

  /**
   * Queues a write; it lands after a simulated fsync, after every earlier write. The
   * promise resolves when it lands, or at once when `sync` is false.
   */
  submit(clock: ProcessClock, apply: () => void, sync: boolean): Promise<void> {
    return new Promise((resolve) => {
      if (!sync) resolve();
      const write: PendingWrite = { apply, resolve };
      this.pending.push(write);
      const latencyMs = this.prng.intBetween(
        this.options.fsyncLatencyMsMin,
        this.options.fsyncLatencyMsMax,
      );
      const now = clock.nowVirtualMs();
      const completionMs = Math.max(now + latencyMs, this.lastCompletionMs);
      this.lastCompletionMs = completionMs;
      clock.runAfter(completionMs - now, 'fsync', () => this.land(write));
    });
  }

  private land(write: PendingWrite): void {
    const position = this.pending.indexOf(write);
    if (position < 0) return;
    // Everything before it landed first (completions are ordered), so this is the head.
    this.pending.splice(position, 1);
    this.writes++;
    write.apply();
    write.resolve();
  }

  /**
   * Called after every change to the durable state: reports newly committed entries.
   * A stored snapshot holds only applied, so committed, state: its index is committed
   * even where the durable commit index is older (a node writes a new commit index
   * only with its next write, see HeldCommit), and the entries it covers that are
   * still in the log are reported with it.
   */
  reportCommits(): void {
    const snapshotIndex = this.durable.snapshot().metadata.index;
    const commit = Math.max(this.durable.initialState().hardState.commitIndex, snapshotIndex);
    const last = Math.min(commit, this.durable.lastIndex());
    // What a snapshot covers and compaction already removed cannot be reported.
    const first = Math.max(this.reportedCommit + 1, this.durable.firstIndex());
    if (last >= first) {
      const entries = this.durable.entries(
        logIndex(first),
        logIndex(last + 1),
        Number.POSITIVE_INFINITY,
      );
      this.onCommitted(entries);
    }
    this.reportedCommit = Math.max(this.reportedCommit, last, snapshotIndex);
  }
}

/** The WritableStorage one process of a node sees; reads come from the durable state. */
export class SimStorage extends MirroredReads implements WritableStorage {
  private closed = false;
  /** The newest snapshot any issued write stores (see LevelStorage). */
  private newestSnapshotIssued = 0;

  constructor(
    private readonly disk: SimDisk,
    private readonly clock: ProcessClock,
  ) {
    super(disk.durable);
  }

  persist(batch: PersistBatch): Promise<void> {
    const installs = batch.snapshot?.metadata.index ?? 0;
    if (installs > this.newestSnapshotIssued) this.newestSnapshotIssued = installs;
    return this.write(() => {
      if (batch.snapshot) this.mirror.applySnapshot(batch.snapshot);
      this.appendToMirror(batch.entries ?? []);
      if (batch.hardState) this.mirror.setHardState(batch.hardState);
    }, batch.mustSync !== false);
  }

  async createSnapshot(
    index: LogIndex,
    config: ClusterConfig,
    data: Uint8Array,
  ): Promise<Snapshot | null> {
    // As LevelStorage: a snapshot may be issued beside the log writes, and stores
    // nothing when the leader's newer one is on its way to disk.
    const stored = this.mirror.snapshot().metadata.index;
    if (this.newestSnapshotIssued > stored && index <= this.newestSnapshotIssued) return null;
    this.newestSnapshotIssued = Math.max(this.newestSnapshotIssued, index);
    let snapshot: Snapshot | null = null;
    await this.write(() => {
      snapshot = this.mirror.createSnapshot(index, config, data);
    });
    if (snapshot === null) throw new Error('snapshot write landed without a snapshot');
    return snapshot;
  }

  compact(index: LogIndex): Promise<void> {
    return this.write(() => this.mirror.compact(index));
  }

  get savedAddresses(): readonly StoredAddress[] {
    return this.disk.addresses;
  }

  saveAddresses(addresses: readonly StoredAddress[]): Promise<void> {
    const copy = addresses.map(({ id, peerAddress, clientAddress }) => ({
      id,
      peerAddress,
      clientAddress,
    }));
    return this.write(() => {
      this.disk.addresses = copy;
    });
  }

  get identity(): StoredIdentity | null {
    return this.disk.identity;
  }

  saveIdentity(identity: StoredIdentity): Promise<void> {
    const copy = { ...identity };
    return this.write(() => {
      this.disk.identity = copy;
    });
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private write(apply: () => void, sync = true): Promise<void> {
    if (this.closed) return Promise.reject(new Error('storage is closed'));
    return this.disk.submit(
      this.clock,
      () => {
        apply();
        this.disk.reportCommits();
      },
      sync,
    );
  }
}
