import type { LockSnapshot } from '../lock/index.ts';
import { type ClusterConfig, entrySizeBytes } from '../raft/types.ts';
import type { WritableStorage } from '../storage/index.ts';
import { assert } from '../util/assert.ts';
import { type LogIndex, logIndex, type NodeId } from '../util/ids.ts';
import { encodeLockSnapshotInSlices, SNAPSHOT_SLICE_ITEMS } from './entry-codec.ts';

/**
 * Takes snapshots of the applied state and compacts the log behind them, without
 * holding up the node.
 *
 * Measured before (issue 12): a snapshot was taken inside the Ready loop in one piece.
 * Encoding the dedupe window (1.6 MB at 10,000 remembered results, 15 MB at 100,000)
 * held the event loop for 0.1-0.9 s, then storing it and deleting 9,000 log entries in
 * one batch (building that batch alone held the loop ~100-300 ms) held the Ready loop
 * as long again: no write was persisted, committed or answered meanwhile, and every
 * client saw the pause as its slowest call of the run.
 *
 * Now the state is copied at once (so it is the state at the applied index), encoded a
 * slice at a time with the event loop running between slices, and stored while the
 * Ready loop goes on (LevelStorage lets a snapshot write run beside Raft writes, and
 * drops one that a newer snapshot, installed from the leader, overtook). The log is
 * compacted only once the snapshot is durable, by the Ready loop itself (compaction
 * changes what the log's writes plan against, and the storage takes one write at a
 * time), in bounded steps (each a range clear in LevelDB's thread, see
 * LevelStorage.compact): after each Ready as many entries as it appended plus a slice,
 * so that the kept log shrinks under any load (a slice alone per Ready let it grow
 * without bound above 250 writes a Ready: 9,002 entries kept at 800 a Ready, found in
 * review), and a slice at a time while no Ready waits, so that it catches up when idle.
 * Durability is unchanged: nothing is deleted before the snapshot that covers it is on
 * disk.
 *
 * The members take their snapshots in turns (see `due`).
 */
export interface SnapshotterHost {
  readonly storage: WritableStorage;
  /** This node's id: its place among the members sets when it takes its turn. */
  readonly nodeId?: NodeId;
  appliedIndex(): LogIndex;
  /** A snapshot from the leader is waiting to be installed: do not take one now. */
  installPending(): boolean;
  /** Raft's compactionFloor(): the log a follower catching up will need. */
  compactionFloor?(): LogIndex | null;
  config(): ClusterConfig;
  /** The state machine's state at the applied index, in arrays of its own. */
  captureState(): LockSnapshot;
  /** A write failed or an invariant broke: the node must stop. */
  failed(error: unknown): void;
  /** A snapshot became durable and left log to compact: wake the idle Ready loop. */
  compactionDue?(): void;
  snapshotted(report: SnapshotReport): void;
}

export interface SnapshotterOptions {
  /** Snapshot once this many entries were applied since the last snapshot. */
  readonly snapshotEntriesThreshold: number;
  /** A turn is skipped while the log is smaller than the snapshot, up to this many entries (see logOutgrewSnapshot); absent: none skipped. */
  readonly snapshotEntriesMax?: number;
  /** Entries kept behind a snapshot, so a follower that lags a little needs no snapshot. */
  readonly compactionRetainEntries: number;
  /** Log entries one compaction step deletes beyond what the Ready appended; absent: COMPACTION_SLICE_ENTRIES. */
  readonly compactionSliceEntries?: number;
  /** Entries kept beyond compactionRetainEntries for a follower catching up; absent: 0. */
  readonly compactionHoldEntriesMax?: number;
  /** Runs between slices of the encoding; production lets the event loop turn. */
  readonly pause?: () => Promise<void>;
}

/** What one snapshot cost, step by step, for metrics and logs. */
export interface SnapshotReport {
  readonly index: LogIndex;
  readonly bytes: number;
  /** Copying the state machine's state (synchronous, in the Ready loop). */
  readonly captureMs: number;
  /** Encoding it in slices, the event loop running between them (wall-clock). */
  readonly encodeMs: number;
  /** Storing it, beside the Ready loop's own writes (wall-clock). */
  readonly writeMs: number;
  /** Epoch ms when the snapshot began: to match against client stalls. */
  readonly startedAtMs: number;
}

/**
 * Log entries deleted by one compaction step beyond what the Ready appended (the
 * default of runtime.compactionSliceEntries): at the default snapshot threshold, one
 * step a snapshot. LevelStorage clears them in LevelDB's own thread, about 1 µs an
 * entry; when each was a delete op in a batch (10-30 µs of the event loop), steps were
 * 250 entries, and the writes after every snapshot waited on a few hundred of them.
 */
export const COMPACTION_SLICE_ENTRIES = 10_000;

/** A new snapshot is encoded into a buffer this many times the last one's size. */
const SNAPSHOT_SIZE_HINT_FACTOR = 1.05;

const turnOfEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class Snapshotter {
  private running: Promise<void> | null = null;
  private compactTarget = 0;
  private stopped = false;
  /** A snapshot was asked for whatever the threshold (takeSoon). */
  private wanted = false;
  /** The config `turnPlace` was worked out for, and this node's place among its members. */
  private turnConfig: ClusterConfig | null = null;
  private turnPlace = { place: 0, members: 1 };
  /** The latest turn passed without a snapshot (the log was still smaller than one). */
  private turnSkipped = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly host: SnapshotterHost,
    private readonly options: SnapshotterOptions,
  ) {
    // A slice of 0 would leave the idle Ready loop compacting nothing, forever.
    assert(
      Number.isSafeInteger(this.sliceEntries) && this.sliceEntries >= 1,
      `compactionSliceEntries must be a positive integer, got ${this.sliceEntries}`,
    );
  }

  /** Is a snapshot being encoded or stored now? */
  get busy(): boolean {
    return this.running !== null;
  }

  /**
   * After each Ready's entries were applied: starts a snapshot in the background once
   * enough entries piled up since the last one, unless one is under way.
   */
  maybeStart(): void {
    if (this.running !== null || this.stopped) return;
    const applied = this.host.appliedIndex();
    const snapshotIndex = this.host.storage.snapshot().metadata.index;
    if (this.wanted ? applied <= snapshotIndex : !this.due(applied, snapshotIndex)) return;
    if (this.host.installPending()) return;
    this.wanted = false;
    const startedAtMs = epochNowMs();
    const captureStart = performance.now();
    const state = this.host.captureState();
    const captureMs = performance.now() - captureStart;
    const config = this.host.config();
    this.running = this.take(applied, config, state, { startedAtMs, captureMs })
      .catch((error: unknown) => this.host.failed(error))
      .finally(() => {
        this.running = null;
      });
  }

  /**
   * Whether the applied index has passed this node's next turn since `snapshotIndex`.
   * Turns come every snapshotEntriesThreshold entries, and each member's are offset by
   * its place among the members (sorted ids) times threshold / members. The members
   * apply the same log at about the same moment, so with one threshold they all took
   * their snapshots at once: every node encoding and storing together, on shared cores
   * and one disk, the commits behind them waited for the slowest of the leader and both
   * followers (issue 12: 64 clients' grants slowed to 20-45 ms apart for ~120 ms on 3
   * nodes). In turns, a follower's snapshot holds up no commit (the other followers
   * acknowledge), and only one node encodes at a time.
   */
  private due(applied: LogIndex, snapshotIndex: LogIndex): boolean {
    const threshold = this.options.snapshotEntriesThreshold;
    const offset = this.turnOffset(threshold);
    const turn = (index: number) => Math.floor((index - offset) / threshold);
    const now = turn(applied);
    if (now <= turn(snapshotIndex) || now <= this.turnSkipped) return false;
    if (this.logOutgrewSnapshot(applied, snapshotIndex)) return true;
    this.turnSkipped = now;
    return false;
  }

  /**
   * Whether a turn is taken: once the log since the last snapshot holds at least as
   * many bytes as that snapshot, or snapshotEntriesMax entries. A snapshot encodes and
   * stores the whole state, so a turn every threshold entries made its cost per write
   * grow with the state: with 100,000 remembered results (the dedupe window full) a
   * 15 MB snapshot every 10,000 writes of about 200 bytes, 1.5 KB of snapshot per write
   * (issue 12). Skipping turns until the log has outgrown the snapshot (Raft thesis
   * §5.1) keeps that cost at most about the log's own; the turns stay on the grid, so
   * the members still take theirs apart, and a restarted node decides from what it
   * stored. At or below the threshold, snapshotEntriesMax takes every turn.
   */
  private logOutgrewSnapshot(applied: LogIndex, snapshotIndex: LogIndex): boolean {
    const entriesMax = this.options.snapshotEntriesMax ?? 0;
    if (entriesMax <= this.options.snapshotEntriesThreshold) return true;
    if (applied - snapshotIndex >= entriesMax) return true;
    const { storage } = this.host;
    return this.logBytesAfter(snapshotIndex, applied) >= storage.snapshotDataBytes();
  }

  /** The bytes (entrySizeBytes) of the kept log's entries after `from` up to `to`. */
  private logBytesAfter(from: LogIndex, to: LogIndex): number {
    const { storage } = this.host;
    const lo = Math.max(from + 1, storage.firstIndex());
    const hi = Math.min(to, storage.lastIndex());
    let bytes = 0;
    if (hi < lo) return bytes;
    for (const entry of storage.entries(logIndex(lo), logIndex(hi + 1), Number.POSITIVE_INFINITY)) {
      bytes += entrySizeBytes(entry);
    }
    return bytes;
  }

  /**
   * threshold × place / members; 0 for a node that is not (or not yet) a member. Worked
   * out again only when the config changes (the core replaces it then), not after every
   * Ready.
   */
  private turnOffset(threshold: number): number {
    const { nodeId } = this.host;
    if (nodeId === undefined) return 0;
    const config = this.host.config();
    if (config !== this.turnConfig) {
      const members = [...config.voters, ...config.learners].sort();
      const place = members.indexOf(nodeId);
      this.turnPlace = { place: Math.max(0, place), members: Math.max(1, members.length) };
      this.turnConfig = config;
      // A skipped turn was numbered on the old grid; on the new one it could stand for
      // the next turn too, and delay it past snapshotEntriesMax (review).
      this.turnSkipped = Number.NEGATIVE_INFINITY;
    }
    return Math.floor((threshold * this.turnPlace.place) / this.turnPlace.members);
  }

  /** The next maybeStart takes a snapshot if anything was applied since the last one. */
  takeSoon(): void {
    this.wanted = true;
  }

  /** Log entries a durable snapshot covers (less those retained) that are still kept. */
  compactionBacklog(): number {
    const { storage } = this.host;
    const target = Math.min(this.compactTarget, storage.snapshot().metadata.index);
    return Math.max(0, this.heldFor(target) - (storage.firstIndex() - 1));
  }

  /** `target`, lowered to Raft's compaction floor when that is within the hold limit. */
  private heldFor(target: number): number {
    const floor = this.host.compactionFloor?.() ?? null;
    if (floor === null || floor >= target) return target;
    const holdMax = this.options.compactionHoldEntriesMax ?? 0;
    return target - floor <= holdMax ? floor : target;
  }

  /**
   * From the Ready loop, after a Ready that appended `appendedEntries`: one write that
   * deletes as many entries as that, plus a slice, of the log a durable snapshot covers.
   * So while a backlog is left the kept log shrinks by a slice per Ready whatever the
   * load, and the write costs at most about what the Ready's own did.
   */
  async compactStep(appendedEntries = 0): Promise<void> {
    const backlog = this.compactionBacklog();
    if (backlog === 0) return;
    const step = Math.min(backlog, appendedEntries + this.sliceEntries);
    const compacted = this.host.storage.firstIndex() - 1;
    await this.host.storage.compact(logIndex(compacted + step));
  }

  /**
   * From the Ready loop when no Ready waits: one slice, then a turn of the event loop,
   * so that the next Ready (or message, or timer) goes before the next slice.
   */
  async compactIdleSlice(): Promise<void> {
    await this.compactStep();
    // Not `pause`: that one runs between encoding slices (a test holds an encoding
    // there), and the Ready loop must never wait on it.
    await turnOfEventLoop();
  }

  private get sliceEntries(): number {
    return this.options.compactionSliceEntries ?? COMPACTION_SLICE_ENTRIES;
  }

  /** No new snapshot starts; waits for the one under way (the storage is closed next). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  private async take(
    index: LogIndex,
    config: ClusterConfig,
    state: LockSnapshot,
    started: { startedAtMs: number; captureMs: number },
  ): Promise<void> {
    const encodeStart = performance.now();
    // Into one buffer a little larger than the last snapshot: most states change little
    // between snapshots, so it is seldom grown and seldom copied to size (issue 12).
    const previousBytes = this.host.storage.snapshotDataBytes();
    const data = await encodeLockSnapshotInSlices(
      state,
      this.options.pause ?? turnOfEventLoop,
      SNAPSHOT_SLICE_ITEMS,
      previousBytes * SNAPSHOT_SIZE_HINT_FACTOR,
    );
    const writeStart = performance.now();
    // A snapshot from the leader was installed meanwhile: it covers more than this one.
    if (index <= this.host.storage.snapshot().metadata.index) return;
    const stored = await this.host.storage.createSnapshot(index, config, data);
    // Overtaken by a newer snapshot from the leader: that one covers more.
    if (stored === null) return;
    this.compactTarget = Math.max(this.compactTarget, index - this.options.compactionRetainEntries);
    if (this.compactionBacklog() > 0) this.host.compactionDue?.();
    this.host.snapshotted({
      index,
      bytes: data.byteLength,
      captureMs: started.captureMs,
      encodeMs: writeStart - encodeStart,
      writeMs: performance.now() - writeStart,
      startedAtMs: started.startedAtMs,
    });
  }
}

function epochNowMs(): number {
  return performance.timeOrigin + performance.now();
}
