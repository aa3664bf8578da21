import type { Level } from 'level';
import type { Entry, HardState, Snapshot } from '../raft/types.ts';
import type { LogIndex } from '../util/ids.ts';
import type { CompactionPoint } from './codec.ts';
import {
  encodeAddresses,
  encodeCompactionPoint,
  encodeEntry,
  encodeHardState,
  encodeIdentity,
  encodeSnapshot,
  encodeSnapshotChunk,
  encodeSnapshotManifest,
  type SnapshotManifest,
} from './codec.ts';
import { encodeChunkKey, encodeIndexKey } from './keys.ts';
import type { StoredAddress, StoredIdentity } from './writable-storage.ts';

/**
 * The on-disk layout. Three sublevels of one LevelDB database, so that one batch can
 * write all of them atomically:
 *
 *   log       8-byte big-endian index -> entry            (only entries after the compaction point)
 *   meta      "hardState"             -> hard state
 *             "compaction"            -> {index, term} of the last compacted position
 *             "addresses"             -> where members are reached (not Raft state; absent
 *                                        until first saved, read as none)
 *             "identity"              -> [clusterId, nodeId] this database belongs to (absent
 *                                        in databases written before it was kept)
 *   snapshot  "manifest"              -> the latest snapshot's metadata, and where its data is
 *             "latest"                -> the latest snapshot, metadata and data in one value: the
 *                                        layout before issue 12, read but no longer written (the
 *                                        first manifest written deletes it)
 *   snapshotChunk  8-byte generation, 4-byte position -> one piece of a snapshot's data
 *
 * A snapshot's data is stored in bounded chunks rather than one value: LevelDB copies a
 * value whole into its write batch, its log and its memtable, and a 30 MB value (100,000
 * held locks) left blocks that size in the allocator after every snapshot (issue 12).
 * Chunks are written under a generation no manifest names yet, each in a synced batch of
 * its own, and the manifest that names them goes in one batch after them: a crash at any
 * point leaves the old snapshot whole, or the new one. The chunks of the one it replaces
 * are deleted after that, once the node no longer reads them (LevelStorage.dropReplaced).
 * Chunks no manifest names (a crash, an abandoned write) are deleted at the next open.
 *
 * Keys and values are raw bytes ('view' encoding); the codec owns the value format.
 */
export type Bytes = Uint8Array;
export type Db = Level<Bytes, Bytes>;
export type Sublevel = ReturnType<typeof openSublevels>['log'];
export type BatchOp =
  | {
      readonly type: 'put';
      readonly sublevel: Sublevel;
      readonly key: Bytes;
      readonly value: Bytes;
    }
  | { readonly type: 'del'; readonly sublevel: Sublevel; readonly key: Bytes };

export const SUBLEVEL_NAMES = ['log', 'meta', 'snapshot', 'snapshotChunk'] as const;
export type SublevelName = (typeof SUBLEVEL_NAMES)[number];

const utf8 = new TextEncoder();
export const META_KEY = {
  hardState: utf8.encode('hardState'),
  compaction: utf8.encode('compaction'),
  addresses: utf8.encode('addresses'),
  identity: utf8.encode('identity'),
};
/** The snapshot record of the layout before chunks (see above). */
export const SNAPSHOT_KEY = utf8.encode('latest');
export const SNAPSHOT_MANIFEST_KEY = utf8.encode('manifest');

export function openSublevels(db: Db) {
  const options = { keyEncoding: 'view', valueEncoding: 'view' } as const;
  return {
    log: db.sublevel<Bytes, Bytes>('log', options),
    meta: db.sublevel<Bytes, Bytes>('meta', options),
    snapshot: db.sublevel<Bytes, Bytes>('snapshot', options),
    snapshotChunk: db.sublevel<Bytes, Bytes>('snapshotChunk', options),
  };
}
export type Sublevels = ReturnType<typeof openSublevels>;

// ------------------------------------------------------------------ operations

/**
 * Writes `ops` to `db` as one atomic LevelDB batch, fsynced before it resolves when
 * `sync`, through classic-level's `_batch`: the method abstract-level's public
 * `batch()` ends in, after its checks, encodings and sublevel prefixing, all of which
 * dlm's byte keys and values need only the prefix of (issue 12). Both public forms
 * allocated objects that outlived the young generation's collections, for a major GC
 * to free: some 1.8 KB a write on every node at one client, a fifth to a third of
 * what heap sampling saw freed only by major GCs (37,000 batches in one process: 1 MB
 * with `_batch`, 39 MB chained, 64 MB as an array). A write's own CPU, in one process,
 * is 0.52-0.62x theirs (scripts/bench-storage-batch.ts); across a cluster the
 * difference did not show above this machine's noise. Native copies are freed as
 * soon as the write is done, whatever their size.
 *
 * What abstract-level checked is checked here: the database must be open (classic-level
 * must not be handed a write after its close), and every key and value must be bytes
 * (its native side skips an op whose value is missing, rather than refuse the batch).
 */
export async function writeBatch(db: Db, ops: readonly BatchOp[], sync: boolean): Promise<void> {
  if (db.status !== 'open') {
    throw new Error(`LevelDB write refused: the database is ${db.status}, not open`);
  }
  const native = ops.map(nativeOp);
  await (db as unknown as NativeBatch)._batch(native, { sync });
}

/** The private method abstract-level's batch() calls on classic-level. */
interface NativeBatch {
  _batch(ops: NativeOp[], options: { sync: boolean }): Promise<void>;
}
type NativeOp = { type: 'put'; key: Bytes; value: Bytes } | { type: 'del'; key: Bytes };

function nativeOp(op: BatchOp, position: number): NativeOp {
  const key = prefixed(op.sublevel, op.key, position);
  if (op.type === 'del') return { type: 'del', key };
  const value = op.value as Bytes | undefined;
  if (!(value instanceof Uint8Array)) {
    throw new Error(`batch op ${position} (put): its value must be bytes, got ${typeof value}`);
  }
  return { type: 'put', key, value };
}

function prefixed(sublevel: Sublevel, key: Bytes, position: number): Bytes {
  if (!(key instanceof Uint8Array)) {
    throw new Error(`batch op ${position}: its key must be bytes, got ${typeof key}`);
  }
  const prefix = prefixOf(sublevel);
  const out = new Uint8Array(prefix.byteLength + key.byteLength);
  out.set(prefix);
  out.set(key, prefix.byteLength);
  return out;
}

/** A sublevel's key prefix in the root database ("!log!"), as abstract-level adds it. */
const PREFIXES = new WeakMap<Sublevel, Bytes>();
function prefixOf(sublevel: Sublevel): Bytes {
  let prefix = PREFIXES.get(sublevel);
  if (prefix === undefined) {
    prefix = sublevel.prefixKey(new Uint8Array(0), 'view', false);
    PREFIXES.set(sublevel, prefix);
  }
  return prefix;
}

export function putEntry(sublevels: Sublevels, entry: Entry): BatchOp {
  const key = encodeIndexKey(entry.index);
  return { type: 'put', sublevel: sublevels.log, key, value: encodeEntry(entry) };
}

export function delEntry(sublevels: Sublevels, index: LogIndex): BatchOp {
  return { type: 'del', sublevel: sublevels.log, key: encodeIndexKey(index) };
}

export function putHardState(sublevels: Sublevels, hardState: HardState): BatchOp {
  const value = encodeHardState(hardState);
  return { type: 'put', sublevel: sublevels.meta, key: META_KEY.hardState, value };
}

export function putCompactionPoint(sublevels: Sublevels, point: CompactionPoint): BatchOp {
  const value = encodeCompactionPoint(point);
  return { type: 'put', sublevel: sublevels.meta, key: META_KEY.compaction, value };
}

/** The one-value snapshot record of the layout before chunks: tests write old databases with it. */
export function putSnapshot(sublevels: Sublevels, snapshot: Snapshot): BatchOp {
  const value = encodeSnapshot(snapshot);
  return { type: 'put', sublevel: sublevels.snapshot, key: SNAPSHOT_KEY, value };
}

export function putAddresses(sublevels: Sublevels, addresses: readonly StoredAddress[]): BatchOp {
  const value = encodeAddresses(addresses);
  return { type: 'put', sublevel: sublevels.meta, key: META_KEY.addresses, value };
}

export function putIdentity(sublevels: Sublevels, identity: StoredIdentity): BatchOp {
  const value = encodeIdentity(identity);
  return { type: 'put', sublevel: sublevels.meta, key: META_KEY.identity, value };
}

export function putSnapshotManifest(sublevels: Sublevels, manifest: SnapshotManifest): BatchOp {
  const value = encodeSnapshotManifest(manifest);
  return { type: 'put', sublevel: sublevels.snapshot, key: SNAPSHOT_MANIFEST_KEY, value };
}

/** Deletes the one-value record of the layout before chunks (a no-op when absent). */
export function delOldSnapshot(sublevels: Sublevels): BatchOp {
  return { type: 'del', sublevel: sublevels.snapshot, key: SNAPSHOT_KEY };
}

export function putSnapshotChunk(
  sublevels: Sublevels,
  generation: number,
  position: number,
  data: Bytes,
): BatchOp {
  const key = encodeChunkKey(generation, position);
  return { type: 'put', sublevel: sublevels.snapshotChunk, key, value: encodeSnapshotChunk(data) };
}

/** Deletes chunks [0, count) of `generation`. */
export function delSnapshotChunks(
  sublevels: Sublevels,
  generation: number,
  count: number,
): BatchOp[] {
  return Array.from({ length: count }, (_, position) => ({
    type: 'del' as const,
    sublevel: sublevels.snapshotChunk,
    key: encodeChunkKey(generation, position),
  }));
}
