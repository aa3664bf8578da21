import { Level } from 'level';
import type { MemoryStorage } from '../raft/storage.ts';
import type { ClusterConfig, Entry, Snapshot, SnapshotMetadata } from '../raft/types.ts';
import { assert } from '../util/assert.ts';
import { type LogIndex, logIndex } from '../util/ids.ts';
import { crc32c } from './crc32.ts';
import { encodeIndexKey } from './keys.ts';
import {
  type BatchOp,
  type Bytes,
  type Db,
  delEntry,
  delOldSnapshot,
  delSnapshotChunks,
  openSublevels,
  putAddresses,
  putCompactionPoint,
  putEntry,
  putHardState,
  putIdentity,
  putSnapshotChunk,
  putSnapshotManifest,
  type Sublevels,
  writeBatch,
} from './level-layout.ts';
import {
  type Bootstrap,
  loadAddresses,
  loadIdentity,
  loadMirror,
  type SnapshotPlace,
} from './level-load.ts';
import { MirroredReads } from './mirrored-reads.ts';
import { DiskSnapshot, readChunks, readChunksSync, type StoredChunks } from './snapshot-read.ts';
import type {
  PersistBatch,
  StoredAddress,
  StoredIdentity,
  WritableStorage,
} from './writable-storage.ts';

export interface LevelStorageOptions {
  /**
   * How to start an EMPTY database: as a founding member with this config, or as a node
   * joining an existing cluster. A database that already holds state ignores it and
   * keeps what is stored: membership changes through the log, so the stored config is
   * newer than any config file, and refusing a mismatch would stop every node that
   * has seen a membership change. Without it, an empty or missing database is an error,
   * so a mistyped path does not silently start a blank node.
   */
  readonly bootstrap?: Bootstrap;
  /**
   * Stored with the bootstrap of an EMPTY database, in the same batch. A database that
   * already holds state keeps the identity it has (or its lack of one): deciding what a
   * mismatch means is the caller's job (src/node/cluster-identity.ts).
   */
  readonly identity?: StoredIdentity;
  /**
   * A snapshot's data is stored in chunks of at most this many bytes (level-layout.ts);
   * absent: SNAPSHOT_CHUNK_BYTES. Each chunk is one synced write.
   */
  readonly snapshotChunkBytes?: number;
  /**
   * The chunks of a snapshot installed from the leader (persist); absent:
   * INSTALL_CHUNK_BYTES. Nothing is written beside an install, so only the count of
   * synced writes matters there.
   */
  readonly snapshotInstallChunkBytes?: number;
  /**
   * LevelDB's write buffer (memtable) size; absent: LevelDB's default, 4 MB. The log
   * is written through it, and a crash replays it from LevelDB's log at the next open.
   */
  readonly writeBufferBytes?: number;
  /** LevelDB's cache of uncompressed blocks; absent: LevelDB's default, 8 MB. */
  readonly blockCacheBytes?: number;
}

/**
 * The default chunk of a stored snapshot (runtime.snapshotChunkBytes). Bounded so that
 * no LevelDB write copies a whole snapshot (30 MB at 100,000 held locks) into its batch
 * and memtable. Each chunk is a synced write that the Raft write issued after it waits
 * for, so a chunk's size is added to the next log write while a snapshot is stored: at
 * 1 MiB a small synced write then took 4-11 ms at p50 instead of 0.2-0.3, and a hot
 * lock's hand-offs nearly stopped for the 150-250 ms of the write. At 64 KiB the store
 * takes longer (about 250 synced writes for 16 MB) but holds each log write up about a
 * millisecond: a 64-client hot lock whose members snapshot every 20,000 entries measured
 * p99 185-201 ms against 269-272 at 1 MiB, at the same pairs/s (issue 12).
 */
export const SNAPSHOT_CHUNK_BYTES = 1 << 16;

/**
 * The default chunk of a snapshot installed from the leader
 * (runtime.snapshotInstallChunkBytes). The Ready loop writes an install and waits for
 * all of it, so no log write queues behind a chunk, and the node answers no peer until
 * it is done: here fewer synced writes are better. At 64 KiB a 32 MB install took
 * 396-472 ms against 220-269 at 1 MiB (review of 78d1f99), nearing an election timeout
 * at the documented store rate on a slower disk.
 */
export const INSTALL_CHUNK_BYTES = 1 << 20;

/**
 * Raft storage on LevelDB (classic-level).
 *
 * The core reads storage synchronously, so everything it can read (the log after the
 * compaction point, the hard state, the latest snapshot) is kept in memory, in a
 * MemoryStorage "mirror" that `open` loads and verifies. Reads never touch the disk.
 *
 * Crash semantics. Every write is ONE LevelDB batch (`writeBatch`) (a snapshot's data is
 * written first, in chunk writes that no record names until the write that stores the
 * snapshot's manifest: see level-layout.ts; the entries a compaction or an installed
 * snapshot leaves behind are deleted after its batch, in a range clear, see `compact`). A
 * LevelDB batch is atomic (it is one record in LevelDB's write-ahead log), so after a
 * crash the database holds either all of a write or none of it, and what survives of a
 * run of writes is a prefix of them (the log is appended in order; a synced write syncs
 * the records before it too). Writes are synced (the promise resolves only after an
 * fsync) except a `persist` whose batch says `mustSync: false`: the core says that of a
 * hard state whose only change is the commit index. Such a write survives a process crash
 * (it is in the OS's cache) but not a power loss; then the node restarts from an older
 * commit index (never below its snapshot's index, which the snapshot record holds) and
 * learns the rest from the leader, applying nothing beyond what it knows to be committed.
 * So no write the node makes is ever a synced write of the commit index alone. The mirror
 * is updated only after the write resolves: the core never reads state that a crash could
 * take back (the commit index it reads only at start-up). A write that fails leaves the
 * disk in an unknown state: the batch may be logged but not synced, or only part of its
 * record may be in LevelDB's log. Worse, LevelDB goes on taking writes after such a
 * failure (ENOSPC, say), but those that land after a torn record are dropped when the log
 * is replayed at the next open, although they were synced and acknowledged (measured:
 * test/storage/disk-full.test.ts). So after ANY failed write, an address or identity save
 * included, the store refuses every later write. Writes are issued one at a time, each
 * after the previous one settled: two batches in flight at once complete on different
 * threads in either order, so a write LevelDB put after a torn record could resolve
 * before the failure is known, and be acknowledged (found in review:
 * test/storage/storage-order.test.ts). The node must stop, and a restart reloads what is
 * durable.
 *
 * Member addresses are not Raft state, and are written apart from it: each save is its
 * own synced batch, queued behind the previous save (so the last one called wins); a
 * save and a Raft write take turns (saves are rare: a membership change).
 */
export class LevelStorage extends MirroredReads implements WritableStorage {
  private writeInFlight = false;
  /** A createSnapshot is under way; it may run beside persist and compact. */
  private snapshotInFlight = false;
  /**
   * The newest snapshot any issued write stores (a createSnapshot, or a persist that
   * installs the leader's): an older createSnapshot, encoded while it was on its way,
   * must not be written after it.
   */
  private newestSnapshotIssued: LogIndex;
  private failure: unknown = null;
  /** The last write issued; the next waits for it to settle (see the class comment). */
  private lastCommit: Promise<void> = Promise.resolve();
  private closed = false;
  private closing: Promise<void> | null = null;
  /** The tail of the queue of address saves; it never rejects (each caller sees its own). */
  private addressWrites: Promise<void> = Promise.resolve();

  private constructor(
    /** The database directory, as given to `open`; named in every corruption error. */
    readonly path: string,
    private readonly db: Db,
    private readonly sublevels: Sublevels,
    mirror: MemoryStorage,
    private addresses: readonly StoredAddress[],
    private storedIdentity: StoredIdentity | null,
    /** Where the stored snapshot is, as of the last write issued (writes run in order). */
    private readonly place: SnapshotPlace,
    private readonly chunkBytes: number,
    private readonly installChunkBytes: number,
  ) {
    super(mirror);
    for (const [name, bytes] of [
      ['snapshotChunkBytes', chunkBytes],
      ['snapshotInstallChunkBytes', installChunkBytes],
    ] as const) {
      assert(
        Number.isSafeInteger(bytes) && bytes >= 1,
        `${name} must be a positive integer, got ${bytes}`,
      );
    }
    this.newestSnapshotIssued = mirror.snapshot().metadata.index;
    if (place.stored !== null) this.keepDataOnDisk(place.stored);
  }

  /**
   * Opens (or, with `bootstrap`, creates) the database at `path`, reads every record and
   * verifies its checksum. Rejects with StorageCorruptionError naming the path, the
   * sublevel and the key of the first bad record.
   */
  static async open(path: string, options: LevelStorageOptions = {}): Promise<LevelStorage> {
    const db: Db = new Level<Bytes, Bytes>(path, { keyEncoding: 'view', valueEncoding: 'view' });
    await openOrExplain(db, path, options.bootstrap !== undefined, {
      ...(options.writeBufferBytes === undefined
        ? {}
        : { writeBufferSize: options.writeBufferBytes }),
      ...(options.blockCacheBytes === undefined ? {} : { cacheSize: options.blockCacheBytes }),
    });
    try {
      const sublevels = openSublevels(db);
      const { mirror, place } = await loadMirror(
        path,
        db,
        sublevels,
        options.bootstrap,
        options.identity,
      );
      const addresses = await loadAddresses(path, sublevels);
      const identity = await loadIdentity(path, sublevels);
      const chunkBytes = options.snapshotChunkBytes ?? SNAPSHOT_CHUNK_BYTES;
      const installChunkBytes = options.snapshotInstallChunkBytes ?? INSTALL_CHUNK_BYTES;
      return new LevelStorage(
        path,
        db,
        sublevels,
        mirror,
        addresses,
        identity,
        place,
        chunkBytes,
        installChunkBytes,
      );
    } catch (error) {
      await db.close();
      throw error;
    }
  }

  /**
   * Persists a Ready: the snapshot (replacing the whole log), then the entries (replacing
   * any suffix they conflict with), then the hard state, in one batch, synced unless the
   * batch says it need not be. A snapshot's data goes first, in chunks of their own
   * synced writes that nothing names until that batch's manifest does.
   */
  async persist(batch: PersistBatch): Promise<void> {
    this.assertWritable();
    const { snapshot = null, entries = [], hardState = null, mustSync = true } = batch;
    assert(
      mustSync || (snapshot === null && entries.length === 0),
      'entries and snapshots are always synced',
    );
    if (snapshot !== null && snapshot.metadata.index > this.newestSnapshotIssued) {
      this.newestSnapshotIssued = snapshot.metadata.index;
    }
    let chunks: StoredChunks | null = null;
    let replaced: StoredChunks | null = null;
    this.writeInFlight = true;
    try {
      // The leader's snapshot's chunks first, each in its own write; the batch below
      // names them. A crash before it leaves chunks no manifest names, dropped at open.
      chunks =
        snapshot === null ? null : await this.storeChunks(snapshot.data, this.installChunkBytes);
      const compactedBefore = this.compactedIndex();
      replaced = this.place.stored;
      const ops = [
        ...this.snapshotOps(snapshot, chunks),
        ...this.entryOps(snapshot, entries),
        ...(hardState === null ? [] : [putHardState(this.sublevels, hardState)]),
      ];
      if (ops.length === 0) return;
      await this.commit(ops, mustSync);
      if (snapshot !== null) await this.clearBehind(compactedBefore, snapshot.metadata.index);
    } finally {
      this.writeInFlight = false;
    }
    if (snapshot !== null && chunks !== null) {
      this.mirror.applySnapshot(snapshot);
      this.keepDataOnDisk(chunks);
      this.dropReplaced(replaced);
    }
    this.appendToMirror(entries);
    if (hardState !== null) this.mirror.setHardState(hardState);
  }

  /**
   * Stores a snapshot of the applied state, synced. Unlike the other Raft writes it may
   * be issued while a persist or compact is in flight (a large snapshot takes a while to
   * write, and the node's log writes must not wait for it): it only replaces the snapshot
   * record, which those writes do not plan against, and LevelDB applies the batches in
   * the order they were issued. Resolves null, writing nothing, when a snapshot at least
   * as new is on its way to disk (one the leader sent, being installed): an older one
   * stored after it would not cover the log that the newer one replaced. Going back
   * from the stored snapshot is a caller's bug, as before.
   */
  async createSnapshot(
    index: LogIndex,
    config: ClusterConfig,
    data: Uint8Array,
  ): Promise<Snapshot | null> {
    assert(!this.snapshotInFlight, 'createSnapshot while another is in flight');
    assert(!this.closed, `write to closed storage ${this.path}`);
    this.refuseAfterFailure();
    const current = this.mirror.snapshot().metadata.index;
    assert(index >= current, `snapshot at ${index} goes backwards from ${current}`);
    if (this.overtaken(index)) return null;
    const snapshotTerm = this.mirror.term(index);
    assert(snapshotTerm !== undefined, `no term known at snapshot index ${index}`);
    const metadata = { index, term: snapshotTerm, config };
    // The Raft writes go on meanwhile: the leader's snapshot may come.
    const dropped = () => this.overtaken(index) || index < this.mirror.snapshot().metadata.index;
    let written: { chunks: StoredChunks; replaced: StoredChunks | null };
    this.snapshotInFlight = true;
    try {
      const chunks = await this.storeChunks(data, this.chunkBytes, dropped);
      if (chunks === null) return null;
      if (dropped()) {
        await this.dropChunks(chunks.generation, chunks.chunkCount);
        return null;
      }
      this.newestSnapshotIssued = index;
      written = { chunks, replaced: this.place.stored };
      await this.commit(this.manifestOps(metadata, chunks), true);
    } finally {
      this.snapshotInFlight = false;
    }
    // Writes resolve in the order issued, so a newer snapshot issued after this one has
    // not reached the mirror yet.
    this.mirror.createSnapshot(index, config, data);
    this.keepDataOnDisk(written.chunks);
    this.dropReplaced(written.replaced);
    return this.mirror.snapshot();
  }

  /**
   * Writes `data` as the chunks of a new generation, each chunk one synced write (a
   * later synced write need not cover an earlier one once LevelDB has moved to a new
   * log file), letting other writes go between them. Returns null, having deleted what
   * it wrote, once `dropped` says the snapshot is no longer wanted.
   */
  private async storeChunks(
    data: Uint8Array,
    chunkBytes: number,
    dropped: () => boolean = () => false,
  ): Promise<StoredChunks | null> {
    const generation = this.place.nextGeneration++;
    let checksum = 0;
    let position = 0;
    for (let at = 0; at < data.byteLength; at += chunkBytes) {
      if (dropped()) {
        await this.dropChunks(generation, position);
        return null;
      }
      const chunk = data.subarray(at, at + chunkBytes);
      checksum = crc32c(chunk, checksum);
      await this.commit([putSnapshotChunk(this.sublevels, generation, position, chunk)], true);
      position++;
    }
    return { generation, chunkCount: position, dataBytes: data.byteLength, dataChecksum: checksum };
  }

  /** Chunks no manifest names (any more); unsynced, since the next open drops any that remain. */
  private async dropChunks(generation: number, count: number): Promise<void> {
    if (count > 0) await this.commit(delSnapshotChunks(this.sublevels, generation, count), false);
  }

  /**
   * The manifest of a snapshot whose chunks are stored (with the deletion of the record
   * of the layout before chunks, if any). `place` becomes the new one now, as the batch
   * is issued: writes run in the order issued. The chunks of the snapshot it replaces
   * are not deleted in this batch but once the mirror names the new one (`dropReplaced`):
   * until then the core may read them.
   */
  private manifestOps(metadata: SnapshotMetadata, chunks: StoredChunks): BatchOp[] {
    const ops = [
      putSnapshotManifest(this.sublevels, { metadata, ...chunks }),
      ...(this.place.oldRecord ? [delOldSnapshot(this.sublevels)] : []),
    ];
    this.place.stored = chunks;
    this.place.oldRecord = false;
    return ops;
  }

  /**
   * The mirror's latest snapshot becomes one whose data stays on disk, in `chunks`, and
   * is read when asked for (see DiskSnapshot). The data in hand is kept while anything
   * else holds it.
   */
  private keepDataOnDisk(chunks: StoredChunks): void {
    const latest = this.mirror.snapshot();
    assert(!(latest instanceof DiskSnapshot), 'the latest snapshot is on disk already');
    const { metadata, data } = latest;
    const reader = {
      readNow: (snapshot: DiskSnapshot) => this.readSnapshotDataNow(snapshot, chunks),
      read: (snapshot: DiskSnapshot) => this.readSnapshotData(snapshot, chunks),
      readFailed: (snapshot: DiskSnapshot, error: unknown) => {
        // Kept like a failed write's: the next write is refused, and the node stops.
        const index = snapshot.metadata.index;
        this.failure ??= new Error(`storage ${this.path}: reading snapshot ${index} back failed`, {
          cause: error,
        });
      },
    };
    this.mirror.replaceSnapshot(new DiskSnapshot(metadata, chunks.dataBytes, data, reader));
  }

  /** Without reading it: the data may be on disk. */
  override snapshotDataBytes(): number {
    const latest = this.mirror.snapshot();
    return latest instanceof DiskSnapshot ? latest.dataBytes : latest.data.byteLength;
  }

  /** See Storage.snapshotDataReady: the leader asks before a transfer. */
  snapshotDataReady(): boolean {
    const latest = this.mirror.snapshot();
    return !(latest instanceof DiskSnapshot) || latest.ready();
  }

  private readSnapshotDataNow(snapshot: DiskSnapshot, chunks: StoredChunks): Uint8Array {
    const { index } = snapshot.metadata;
    assert(!this.closed, `read of snapshot ${index} from closed storage ${this.path}`);
    // A replaced snapshot's chunks are deleted (`dropReplaced`): only the latest is read.
    assert(
      this.mirror.snapshot() === snapshot,
      `read of snapshot ${index} after a newer one replaced it`,
    );
    return readChunksSync(this.path, this.sublevels, chunks);
  }

  /**
   * In the background, through an iterator: it sees the database as it was when it
   * began, when the snapshot was the latest, whatever is deleted meanwhile.
   */
  private async readSnapshotData(
    snapshot: DiskSnapshot,
    chunks: StoredChunks,
  ): Promise<Uint8Array> {
    assert(
      !this.closed,
      `read of snapshot ${snapshot.metadata.index} from closed storage ${this.path}`,
    );
    return readChunks(this.path, this.sublevels, chunks);
  }

  /**
   * Deletes the chunks of the snapshot the mirror named before, now that it names the
   * new one. Issued now, so in order with every later write, and not waited for: a crash
   * before it leaves chunks no manifest names, which the next open drops; a failure is
   * kept like any write's and refuses the next.
   */
  private dropReplaced(replaced: StoredChunks | null): void {
    if (replaced === null) return;
    this.dropChunks(replaced.generation, replaced.chunkCount).catch(() => {});
  }

  /** A newer snapshot (the leader's, being installed) is on its way to disk. */
  private overtaken(index: LogIndex): boolean {
    const stored = this.mirror.snapshot().metadata.index;
    return this.newestSnapshotIssued > stored && index <= this.newestSnapshotIssued;
  }

  /**
   * Moves the compaction point to `index` (one small synced write), then deletes the
   * entries behind it with a range clear that LevelDB runs in its own thread. A delete
   * op each in batches cost the event loop 40 ms per 9,000 entries (44-51 ms of CPU),
   * against 2-2.5 ms cleared (8-15 ms of CPU; scripts/bench-storage-compact.ts), and
   * slowed every write for a few hundred ms after each snapshot (issue 12). The point
   * goes first, and synced: LevelDB's log keeps writes in order, but a later synced
   * write need not cover an earlier one in an older log file, so entries deleted while
   * the point that covers them was lost would leave a log that no longer starts after
   * its compaction point. A crash after the point leaves entries behind it, which the
   * next open deletes. The clear takes its turn like any write (see `commit`): nothing
   * runs beside it.
   */
  async compact(index: LogIndex): Promise<void> {
    this.assertWritable();
    const compactedIndex = this.compactedIndex();
    if (index <= compactedIndex) return;
    const snapshotIndex = this.mirror.snapshot().metadata.index;
    assert(index <= snapshotIndex, `compact(${index}) is past the snapshot at ${snapshotIndex}`);
    const compactedTerm = this.mirror.term(index);
    assert(compactedTerm !== undefined, `no term at compaction index ${index}`);
    this.writeInFlight = true;
    try {
      await this.commit([putCompactionPoint(this.sublevels, { index, term: compactedTerm })], true);
      this.mirror.compact(index);
      await this.clearBehind(compactedIndex, index);
    } finally {
      this.writeInFlight = false;
    }
  }

  /**
   * Deletes the stored entries in (from, to], behind a compaction point already stored
   * (see `compact`), in a range clear that LevelDB runs in its own thread.
   */
  private clearBehind(from: LogIndex, to: LogIndex): Promise<void> {
    return this.inTurn(() =>
      this.sublevels.log.clear({ gt: encodeIndexKey(from), lte: encodeIndexKey(to) }),
    );
  }

  get savedAddresses(): readonly StoredAddress[] {
    return this.addresses;
  }

  async saveAddresses(addresses: readonly StoredAddress[]): Promise<void> {
    assert(!this.closed, `write to closed storage ${this.path}`);
    this.refuseAfterFailure();
    // Copied and encoded now: what the caller changes afterwards is not this save.
    const saved = addresses.map(({ id, peerAddress, clientAddress }) => ({
      id,
      peerAddress,
      clientAddress,
    }));
    const op = putAddresses(this.sublevels, saved);
    const write = this.addressWrites.then(async () => {
      // Another write may have failed while this one waited its turn (commit refuses
      // then). A close that began meanwhile waits for this save: no reason to refuse it.
      await this.commit([op], true);
      this.addresses = saved;
    });
    this.addressWrites = write.catch(() => {});
    return write;
  }

  get identity(): StoredIdentity | null {
    return this.storedIdentity;
  }

  /**
   * One synced batch of its own. Not a Raft write: it may run beside one (LevelDB orders
   * the batches; neither touches the other's keys), but never after a failed write.
   */
  async saveIdentity(identity: StoredIdentity): Promise<void> {
    assert(!this.closed, `write to closed storage ${this.path}`);
    const saved: StoredIdentity = { clusterId: identity.clusterId, nodeId: identity.nodeId };
    await this.commit([putIdentity(this.sublevels, saved)], true);
    this.storedIdentity = saved;
  }

  /**
   * Refuses new writes at once, then lets the address saves already queued finish
   * before the database closes: each was promised to its caller, and the last one
   * holds the newest addresses.
   */
  async close(): Promise<void> {
    assert(!this.writeInFlight && !this.snapshotInFlight, 'close() while a write is in flight');
    this.closing ??= this.closeAfterAddressWrites();
    return this.closing;
  }

  private async closeAfterAddressWrites(): Promise<void> {
    this.closed = true;
    await this.addressWrites;
    // And the writes no caller waits for (`dropReplaced`).
    await this.lastCommit;
    await this.db.close();
  }

  // ---------------------------------------------------------------- planning

  /** A snapshot replaces the log: name its stored chunks, move the compaction point to it. */
  private snapshotOps(snapshot: Snapshot | null, chunks: StoredChunks | null): BatchOp[] {
    if (snapshot === null || chunks === null) return [];
    const { index, term } = snapshot.metadata;
    const current = this.mirror.snapshot().metadata.index;
    assert(index >= current, `snapshot ${index} is older than ${current}`);
    return [
      ...this.manifestOps(snapshot.metadata, chunks),
      putCompactionPoint(this.sublevels, { index, term }),
    ];
  }

  /**
   * Puts the new entries and deletes every stored log key past the new last index (a
   * conflicting suffix longer than the entries that replace it, or a log a snapshot
   * replaced). Checked in full before anything is written, so a bad append never
   * reaches the disk.
   */
  private entryOps(snapshot: Snapshot | null, entries: readonly Entry[]): BatchOp[] {
    const oldFirst = this.mirror.firstIndex();
    const oldLast = this.mirror.lastIndex();
    const compactedIndex = snapshot === null ? this.compactedIndex() : snapshot.metadata.index;
    const lastBefore = snapshot === null ? oldLast : snapshot.metadata.index;
    assertAppendable(entries, compactedIndex, lastBefore);
    const newLast = entries.at(-1)?.index ?? lastBefore;
    // Entries behind a snapshot the leader sent are not deleted here but cleared after
    // this batch stores the compaction point that covers them (`persist`): a follower
    // far behind may hold 100,000 of them, and a delete op each would hold the event
    // loop for seconds.
    const stale = indexesBetween(Math.max(oldFirst, newLast + 1), oldLast);
    return [
      ...stale.map((index) => delEntry(this.sublevels, index)),
      ...entries.map((entry) => putEntry(this.sublevels, entry)),
    ];
  }

  private compactedIndex(): LogIndex {
    return logIndex(this.mirror.firstIndex() - 1);
  }

  // ---------------------------------------------------------------- writing

  private assertWritable(): void {
    // Overlapping writes would each plan against a mirror the other is about to change.
    assert(!this.writeInFlight, 'LevelStorage writes must not overlap');
    assert(!this.closed, `write to closed storage ${this.path}`);
    this.refuseAfterFailure();
  }

  /**
   * After a failed write nothing more is written (see the class comment), nor after a
   * failed background read of the snapshot data: a node that cannot send its snapshot
   * must stop, and its next write stops it.
   */
  private refuseAfterFailure(): void {
    if (this.failure !== null) {
      throw new Error(`storage ${this.path}: refusing to write after a failed write or read`, {
        cause: this.failure,
      });
    }
  }

  /**
   * Every write to the database, Raft state or not: issued once the previous one
   * settled, and refused after a failed one (see the class comment). The first failure
   * is kept.
   */
  private commit(ops: BatchOp[], sync: boolean): Promise<void> {
    return this.inTurn(() => writeBatch(this.db, ops, sync));
  }

  /** Runs `write` once every write issued before it settled; a failure refuses the rest. */
  private inTurn(write: () => Promise<void>): Promise<void> {
    const turn = this.lastCommit.then(() => this.writeNow(write));
    this.lastCommit = turn.catch(() => {});
    return turn;
  }

  private async writeNow(write: () => Promise<void>): Promise<void> {
    this.refuseAfterFailure();
    try {
      await write();
    } catch (error) {
      this.failure ??= error;
      throw error;
    }
  }
}

/**
 * Opens LevelDB, naming the path and LevelDB's own reason on failure: its error says
 * only "Database failed to open", while the cause says "does not exist" or that the
 * LOCK is held (another node process is using this directory).
 */
async function openOrExplain(
  db: Db,
  path: string,
  createIfMissing: boolean,
  tuning: { readonly writeBufferSize?: number; readonly cacheSize?: number },
): Promise<void> {
  try {
    await db.open({ createIfMissing, ...tuning });
  } catch (error) {
    const reason = error instanceof Error && error.cause instanceof Error ? error.cause : error;
    throw new Error(`storage: cannot open ${path}: ${(reason as Error).message}`, { cause: error });
  }
}

/** Entries must be contiguous, start after the compacted index and leave no gap. */
function assertAppendable(
  entries: readonly Entry[],
  compactedIndex: number,
  lastIndex: number,
): void {
  const first = entries[0];
  if (first === undefined) return;
  assert(first.index > compactedIndex, `append at ${first.index} overwrites compacted log`);
  assert(first.index <= lastIndex + 1, `append at ${first.index} leaves a gap after ${lastIndex}`);
  entries.forEach((entry, position) => {
    assert(entry.index === first.index + position, 'appended entries must be contiguous');
  });
}

/** The indexes in [lo, hi], empty when hi < lo. */
function indexesBetween(lo: number, hi: number): LogIndex[] {
  const indexes: LogIndex[] = [];
  for (let index = lo; index <= hi; index++) indexes.push(logIndex(index));
  return indexes;
}
