import { assert } from '../util/assert.ts';
import { type LogIndex, logIndex, type Term, term as toTerm } from '../util/ids.ts';
import {
  type ClusterConfig,
  type Entry,
  entrySizeBytes,
  type HardState,
  type Snapshot,
} from './types.ts';

/**
 * The read side of stable storage, as the core sees it. The host writes to storage
 * after each Ready (see `Ready`), so everything here has been persisted.
 *
 * Index ranges: the log holds entries in [firstIndex(), lastIndex()]. The entry just
 * before firstIndex() has been compacted, but its term is still known, so that the
 * leader can check a follower's prevLogTerm against it. If any method fails, the node
 * cannot go on: the host must stop it rather than guess.
 */
export interface Storage {
  /** What was persisted before the last crash or shutdown. */
  initialState(): { readonly hardState: HardState; readonly config: ClusterConfig };
  /** Entries in [lo, hi), stopping early once `bytesMax` is passed but returning at least one. */
  entries(lo: LogIndex, hi: LogIndex, bytesMax: number): readonly Entry[];
  /** The term at `index`, or undefined when it is compacted or beyond the last entry. */
  term(index: LogIndex): Term | undefined;
  firstIndex(): LogIndex;
  lastIndex(): LogIndex;
  /** The most recent snapshot. There is always one: a fresh node holds the bootstrap snapshot. */
  snapshot(): Snapshot;
  /**
   * False while the latest snapshot's data is on its way from disk: the leader then
   * starts no transfer, and tries again at the follower's next answer. Asking may start
   * the read. A store that keeps the data in memory leaves this out (always ready).
   */
  snapshotDataReady?(): boolean;
}

export const EMPTY_CONFIG: ClusterConfig = { voters: [], learners: [] };

/**
 * Storage kept in memory. Used by the simulator (as the synced part of a simulated
 * disk) and by tests. The log is `entries`, preceded by a compacted "dummy" position
 * at `compactedIndex` whose term is `compactedTerm`.
 */
export class MemoryStorage implements Storage {
  private hardState: HardState;
  private currentSnapshot: Snapshot;
  private compactedIndex: LogIndex;
  private compactedTerm: Term;
  private log: Entry[] = [];

  constructor(snapshot: Snapshot, hardState?: HardState) {
    this.currentSnapshot = snapshot;
    this.compactedIndex = snapshot.metadata.index;
    this.compactedTerm = snapshot.metadata.term;
    this.hardState = hardState ?? {
      term: snapshot.metadata.term,
      votedFor: null,
      commitIndex: snapshot.metadata.index,
    };
  }

  /**
   * Storage for a member of a new cluster. Every founding member starts from the same
   * snapshot at index 1, which holds the founding configuration, so that a node added
   * later learns that configuration from a snapshot rather than from nothing.
   */
  static bootstrap(config: ClusterConfig): MemoryStorage {
    return new MemoryStorage(bootstrapSnapshot(config));
  }

  /** Storage for a node that joins an existing cluster: it knows nothing until the leader's snapshot. */
  static joining(): MemoryStorage {
    return new MemoryStorage({
      metadata: { index: logIndex(0), term: toTerm(0), config: EMPTY_CONFIG },
      data: new Uint8Array(0),
    });
  }

  initialState(): { hardState: HardState; config: ClusterConfig } {
    return { hardState: this.hardState, config: this.currentSnapshot.metadata.config };
  }

  entries(lo: LogIndex, hi: LogIndex, bytesMax: number): readonly Entry[] {
    assert(lo >= this.firstIndex(), `entries(${lo}) is compacted (first ${this.firstIndex()})`);
    assert(hi <= this.lastIndex() + 1, `entries(.., ${hi}) is past the end ${this.lastIndex()}`);
    assert(lo <= hi, `entries range [${lo}, ${hi}) is inverted`);
    return takeWithinBytes(this.log, lo - this.firstIndex(), hi - this.firstIndex(), bytesMax);
  }

  term(index: LogIndex): Term | undefined {
    if (index === this.compactedIndex) return this.compactedTerm;
    if (index < this.compactedIndex || index > this.lastIndex()) return undefined;
    return this.log[index - this.firstIndex()]?.term;
  }

  firstIndex(): LogIndex {
    return logIndex(this.compactedIndex + 1);
  }

  lastIndex(): LogIndex {
    return logIndex(this.compactedIndex + this.log.length);
  }

  snapshot(): Snapshot {
    return this.currentSnapshot;
  }

  setHardState(hardState: HardState): void {
    this.hardState = hardState;
  }

  /** Appends entries, replacing any suffix they conflict with. */
  append(entries: readonly Entry[]): void {
    const first = entries[0];
    if (first === undefined) return;
    assert(first.index > this.compactedIndex, `append at ${first.index} overwrites compacted log`);
    assert(first.index <= this.lastIndex() + 1, `append at ${first.index} leaves a gap`);
    // Check everything before changing anything, so a refused append leaves no trace.
    for (const [offset, entry] of entries.entries()) {
      assert(entry.index === first.index + offset, 'appended entries must be contiguous');
    }
    this.log.length = first.index - this.firstIndex();
    this.log.push(...entries);
  }

  /** Replaces the whole log with a snapshot received from the leader. */
  applySnapshot(snapshot: Snapshot): void {
    assert(
      snapshot.metadata.index >= this.currentSnapshot.metadata.index,
      `snapshot ${snapshot.metadata.index} is older than ${this.currentSnapshot.metadata.index}`,
    );
    this.currentSnapshot = snapshot;
    this.compactedIndex = snapshot.metadata.index;
    this.compactedTerm = snapshot.metadata.term;
    this.log = [];
  }

  /** Records a snapshot of the state machine taken at `index` (which must be applied). */
  createSnapshot(index: LogIndex, config: ClusterConfig, data: Uint8Array): Snapshot {
    assert(index >= this.currentSnapshot.metadata.index, `snapshot at ${index} goes backwards`);
    const snapshotTerm = this.term(index);
    assert(snapshotTerm !== undefined, `no term known at snapshot index ${index}`);
    this.currentSnapshot = { metadata: { index, term: snapshotTerm, config }, data };
    return this.currentSnapshot;
  }

  /**
   * Swaps the latest snapshot for an equal one, of the same metadata, that holds its data
   * another way (a store that keeps it on disk until it is read: src/storage).
   */
  replaceSnapshot(snapshot: Snapshot): void {
    const { index, term } = this.currentSnapshot.metadata;
    assert(
      snapshot.metadata.index === index && snapshot.metadata.term === term,
      `snapshot ${snapshot.metadata.index} replaces snapshot ${index}`,
    );
    this.currentSnapshot = snapshot;
  }

  /** Drops entries up to and including `index`, which a snapshot must already cover. */
  compact(index: LogIndex): void {
    if (index <= this.compactedIndex) return;
    assert(index <= this.currentSnapshot.metadata.index, `compact(${index}) is past the snapshot`);
    const compactedTerm = this.term(index);
    assert(compactedTerm !== undefined, `no term at compaction index ${index}`);
    this.log.splice(0, index - this.compactedIndex);
    this.compactedIndex = index;
    this.compactedTerm = compactedTerm;
  }
}

export function bootstrapSnapshot(config: ClusterConfig): Snapshot {
  return {
    metadata: { index: logIndex(1), term: toTerm(1), config: normalizeConfig(config) },
    data: new Uint8Array(0),
  };
}

export function normalizeConfig(config: ClusterConfig): ClusterConfig {
  return { voters: [...config.voters].sort(), learners: [...config.learners].sort() };
}

/**
 * Entries from array position `from` up to `to`, cut once `bytesMax` is passed. When
 * nothing was spent before (`spentBytes` = 0) at least one entry is taken, so that an
 * entry larger than the limit still moves.
 */
export function takeWithinBytes(
  log: readonly Entry[],
  from: number,
  to: number,
  bytesMax: number,
  spentBytes = 0,
): Entry[] {
  const taken: Entry[] = [];
  let bytes = spentBytes;
  for (let position = from; position < to; position++) {
    const entry = log[position];
    assert(entry !== undefined, `missing log entry at position ${position}`);
    bytes += entrySizeBytes(entry);
    if ((taken.length > 0 || spentBytes > 0) && bytes > bytesMax) break;
    taken.push(entry);
  }
  return taken;
}
