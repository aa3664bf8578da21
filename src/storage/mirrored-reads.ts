import type { MemoryStorage, Storage } from '../raft/storage.ts';
import type { ClusterConfig, Entry, HardState, Snapshot } from '../raft/types.ts';
import type { LogIndex, Term } from '../util/ids.ts';
import { EntryArena } from './entry-arena.ts';

/**
 * The core's synchronous reads, answered from a MemoryStorage. Every write-side store
 * (LevelStorage, the runtime simulator's, the in-memory one) reads this way, so they
 * answer every read exactly as MemoryStorage does, and keeps its log the same way.
 */
export abstract class MirroredReads implements Storage {
  /** Where the data of the entries the mirror keeps is copied (see EntryArena). */
  private readonly arena = new EntryArena();

  protected constructor(protected readonly mirror: MemoryStorage) {}

  /** Appends persisted entries to the mirror, each one's data copied into the arena. */
  protected appendToMirror(entries: readonly Entry[]): void {
    this.mirror.append(this.arena.keep(entries));
  }

  initialState(): { readonly hardState: HardState; readonly config: ClusterConfig } {
    return this.mirror.initialState();
  }

  entries(lo: LogIndex, hi: LogIndex, bytesMax: number): readonly Entry[] {
    return this.mirror.entries(lo, hi, bytesMax);
  }

  term(index: LogIndex): Term | undefined {
    return this.mirror.term(index);
  }

  firstIndex(): LogIndex {
    return this.mirror.firstIndex();
  }

  lastIndex(): LogIndex {
    return this.mirror.lastIndex();
  }

  snapshot(): Snapshot {
    return this.mirror.snapshot();
  }

  snapshotDataBytes(): number {
    return this.mirror.snapshot().data.byteLength;
  }
}
