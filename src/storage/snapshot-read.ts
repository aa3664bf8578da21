import type { Snapshot, SnapshotMetadata } from '../raft/types.ts';
import { assert } from '../util/assert.ts';
import { decodeSnapshotChunk, type SnapshotManifest } from './codec.ts';
import { crc32c } from './crc32.ts';
import { CorruptValueError, StorageCorruptionError } from './errors.ts';
import { decodeChunkKey, encodeChunkKey } from './keys.ts';
import type { Bytes, Sublevels } from './level-layout.ts';

/** Where a stored snapshot's data is: its manifest without the metadata. */
export type StoredChunks = Omit<SnapshotManifest, 'metadata'>;

/** A JavaScript typed array holds at most this much; a manifest asking more is damaged. */
const DATA_BYTES_MAX = 2 ** 32 - 1;

/**
 * Joins a manifest's chunks, in order, into one buffer of the data's size (no value the
 * size of the whole snapshot is read), checking each chunk on its own (so a damaged one
 * is named) and all of them together against the manifest.
 */
class ChunkAssembler {
  private readonly data: Uint8Array;
  private offset = 0;
  private position = 0;
  private checksum = 0;

  constructor(
    private readonly path: string,
    private readonly chunks: StoredChunks,
  ) {
    if (chunks.dataBytes > DATA_BYTES_MAX) {
      throw new StorageCorruptionError(
        path,
        'snapshot',
        'key manifest',
        `data of ${chunks.dataBytes} bytes`,
      );
    }
    this.data = new Uint8Array(chunks.dataBytes);
  }

  /** The chunk stored under `key`, which must be the next one. */
  add(key: Bytes, value: Bytes): void {
    const { generation, dataBytes } = this.chunks;
    const where = `generation ${generation} chunk ${this.position}`;
    const at = decodeChunkKey(key);
    if (at === undefined || at[0] !== generation || at[1] !== this.position) {
      throw new StorageCorruptionError(
        this.path,
        'snapshotChunk',
        where,
        `found ${at?.[1] ?? 'a bad key'} instead`,
      );
    }
    let chunk: Uint8Array;
    try {
      chunk = decodeSnapshotChunk(value);
    } catch (error) {
      if (!(error instanceof CorruptValueError)) throw error;
      throw new StorageCorruptionError(this.path, 'snapshotChunk', where, error.message);
    }
    if (this.offset + chunk.byteLength > dataBytes) {
      const reason = `runs past the ${dataBytes} bytes of the manifest`;
      throw new StorageCorruptionError(this.path, 'snapshotChunk', where, reason);
    }
    this.data.set(chunk, this.offset);
    this.checksum = crc32c(chunk, this.checksum);
    this.offset += chunk.byteLength;
    this.position++;
  }

  /** The data, once every chunk the manifest names was added and they sum to it. */
  finish(): Uint8Array {
    const { generation, chunkCount, dataBytes, dataChecksum } = this.chunks;
    const { position, offset, checksum } = this;
    if (position !== chunkCount || offset !== dataBytes || checksum !== dataChecksum) {
      throw new StorageCorruptionError(
        this.path,
        'snapshotChunk',
        `generation ${generation}`,
        `${position} chunks of ${offset} bytes (checksum ${checksum}) where the manifest says ` +
          `${chunkCount} of ${dataBytes} (checksum ${dataChecksum})`,
      );
    }
    return this.data;
  }
}

/**
 * A stored snapshot's data, read through an iterator, which reads ahead in LevelDB's
 * threads and sees the database as it was when it began: at open, and in the background
 * for a transfer (DiskSnapshot.ready).
 */
export async function readChunks(
  path: string,
  sublevels: Sublevels,
  chunks: StoredChunks,
): Promise<Uint8Array> {
  const assembler = new ChunkAssembler(path, chunks);
  const { generation } = chunks;
  const range = { gte: encodeChunkKey(generation, 0), lt: encodeChunkKey(generation + 1, 0) };
  for await (const [key, value] of sublevels.snapshotChunk.iterator(range)) {
    assembler.add(key, value);
  }
  return assembler.finish();
}

/**
 * The same, read synchronously, a chunk at a time: for the core, which asks for a
 * snapshot's data in the middle of a step (a follower that needs a snapshot). Each read
 * is a LevelDB get on the event loop, from the page cache after a recent write.
 */
export function readChunksSync(
  path: string,
  sublevels: Sublevels,
  chunks: StoredChunks,
): Uint8Array {
  const assembler = new ChunkAssembler(path, chunks);
  for (let position = 0; position < chunks.chunkCount; position++) {
    const key = encodeChunkKey(chunks.generation, position);
    const value = sublevels.snapshotChunk.getSync(key);
    if (value === undefined) {
      const where = `generation ${chunks.generation} chunk ${position}`;
      throw new StorageCorruptionError(path, 'snapshotChunk', where, 'missing');
    }
    assembler.add(key, value);
  }
  return assembler.finish();
}

/** How a DiskSnapshot reads its data back: at once, or without holding the event loop. */
export interface SnapshotDataReader {
  readNow(snapshot: DiskSnapshot): Uint8Array;
  read(snapshot: DiskSnapshot): Promise<Uint8Array>;
  /** A background read failed: the store's next write must fail, and stop the node. */
  readFailed(snapshot: DiskSnapshot, error: unknown): void;
}

/**
 * A stored snapshot whose data stays on disk and is read when asked for. The data is
 * the size of the whole encoded state (32 MB at 100,000 held locks) and is needed only
 * to send the snapshot to a follower, which is rare: kept in memory, it was a second
 * copy of the state on every node for as long as the snapshot was the latest, and the
 * copy of the snapshot before it waited for a full collection (issue 12).
 *
 * The data last read or written is kept while anything else holds it (a transfer to a
 * follower under way holds it), so a transfer reads it once. The leader asks `ready()`
 * before a transfer: read back at once, 30 MB held the event loop 91-202 ms, so it is
 * read in the background, a chunk a turn, and held until the next `ready()` hands it to
 * the transfer. A read no transfer comes for (its leader deposed meanwhile) is held until
 * a newer snapshot replaces this one: the one copy every node used to keep. `data` still
 * reads at once when asked without `ready()` (a node restoring its state at start-up,
 * which has it in hand anyway, and tools). Only the snapshot the store names as its
 * latest may be read at once: the chunks of one it replaced are deleted.
 */
export class DiskSnapshot implements Snapshot {
  readonly metadata: SnapshotMetadata;
  /** An own, enumerable getter, so that the snapshot reads and compares as a plain one. */
  declare readonly data: Uint8Array;
  readonly #dataBytes: number;
  readonly #reader: SnapshotDataReader;
  #recent: WeakRef<Uint8Array>;
  /** Read in the background for a transfer, held until the next `ready()` or `data`. */
  #loaded: Uint8Array | null = null;
  #loading = false;
  #failed = false;

  constructor(
    metadata: SnapshotMetadata,
    dataBytes: number,
    recentData: Uint8Array,
    reader: SnapshotDataReader,
  ) {
    assert(recentData.byteLength === dataBytes, 'a snapshot data of another size');
    this.metadata = metadata;
    this.#dataBytes = dataBytes;
    this.#reader = reader;
    this.#recent = new WeakRef(recentData);
    Object.defineProperty(this, 'data', { enumerable: true, get: () => this.#data() });
  }

  get dataBytes(): number {
    return this.#dataBytes;
  }

  /**
   * Whether `data` is in memory. When it is not, starts reading it in the background
   * and says false. A read that failed is not tried again: the reader stops the store's
   * writes, and with them the node (see SnapshotDataReader.readFailed).
   */
  ready(): boolean {
    // Handed over: a WeakRef keeps its new target to the end of this job, and the caller
    // reads `data` in it (Raft's startSnapshotTransfer does, and then holds it).
    if (this.#handOverLoaded() !== null) return true;
    if (this.#recent.deref() !== undefined) return true;
    if (!this.#loading && !this.#failed) this.#load();
    return false;
  }

  #load(): void {
    this.#loading = true;
    this.#reader.read(this).then(
      (data) => {
        this.#loading = false;
        if (data.byteLength === this.#dataBytes) {
          this.#loaded = data;
          return;
        }
        const reason = `read ${data.byteLength} bytes of snapshot data, not ${this.#dataBytes}`;
        this.#fail(new Error(reason));
      },
      (error: unknown) => {
        this.#loading = false;
        this.#fail(error);
      },
    );
  }

  #fail(error: unknown): void {
    this.#failed = true;
    this.#reader.readFailed(this, error);
  }

  /** The background read, held no longer: whoever takes it holds it while needed. */
  #handOverLoaded(): Uint8Array | null {
    const loaded = this.#loaded;
    if (loaded !== null) {
      this.#recent = new WeakRef(loaded);
      this.#loaded = null;
    }
    return loaded;
  }

  #data(): Uint8Array {
    const loaded = this.#handOverLoaded();
    if (loaded !== null) return loaded;
    const held = this.#recent.deref();
    if (held !== undefined) return held;
    const data = this.#reader.readNow(this);
    assert(data.byteLength === this.#dataBytes, 'read a snapshot data of another size');
    this.#recent = new WeakRef(data);
    return data;
  }
}
