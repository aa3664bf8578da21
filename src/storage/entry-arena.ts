import type { Entry } from '../raft/types.ts';
import { assert } from '../util/assert.ts';

/**
 * Bytes of one slab of `EntryArena`. Entries of a lock service are a few hundred bytes,
 * so a slab holds hundreds; an entry larger than an eighth of it gets a buffer of its
 * own, so that no slab ends with more than an eighth unused.
 */
export const ENTRY_SLAB_BYTES = 64 * 1024;

/**
 * Copies the data of the log entries a node keeps in memory into slabs of its own, so
 * that the kept log costs about its bytes.
 *
 * Why (issue 12): an entry's data arrives as a view into a larger buffer, and a view
 * keeps the whole buffer. On the leader that is msgpackr's shared encoding buffer,
 * which the peer messages are encoded into too; on a follower the peer message it came
 * in. A heap snapshot of a leader holding 11,000 entries found 996 such 8 KB buffers
 * kept by them, some 700 bytes an entry for data of about 200. A node keeps every
 * entry since its last snapshot (up to `runtime.snapshotEntriesMax`, 100,000): at
 * 100,000 held locks the member furthest from its next snapshot kept 57,000.
 *
 * Slabs are filled in log order and the log is compacted from its start, so a slab is
 * freed once the entries in it are compacted (or replaced by a conflicting suffix).
 */
export class EntryArena {
  private slab = new Uint8Array(0);
  private used = 0;

  constructor(private readonly slabBytes = ENTRY_SLAB_BYTES) {
    assert(
      Number.isSafeInteger(slabBytes) && slabBytes >= 8,
      `slabBytes must be an integer of at least 8, got ${slabBytes}`,
    );
  }

  /** `entries`, each normal entry's data copied into the arena (the others as they are). */
  keep(entries: readonly Entry[]): Entry[] {
    return entries.map((entry) =>
      entry.kind === 'normal'
        ? { kind: 'normal', term: entry.term, index: entry.index, data: this.copy(entry.data) }
        : entry,
    );
  }

  private copy(data: Uint8Array): Uint8Array {
    const length = data.byteLength;
    // `new Uint8Array(view)` copies into a buffer of exactly its length.
    if (length * 8 > this.slabBytes) return new Uint8Array(data);
    if (this.used + length > this.slab.byteLength) {
      this.slab = new Uint8Array(this.slabBytes);
      this.used = 0;
    }
    const kept = this.slab.subarray(this.used, this.used + length);
    kept.set(data);
    this.used += length;
    return kept;
  }
}
