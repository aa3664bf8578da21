import type { MemoryStorage, Storage } from '../raft/storage.ts';
import type { ClusterConfig, Entry, HardState, Snapshot } from '../raft/types.ts';
import type { LogIndex, Term } from '../util/ids.ts';

/**
 * The core's synchronous reads, answered from a MemoryStorage. Both write-side stores
 * read this way, so they answer every read exactly as MemoryStorage does.
 */
export abstract class MirroredReads implements Storage {
  protected constructor(protected readonly mirror: MemoryStorage) {}

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
}
