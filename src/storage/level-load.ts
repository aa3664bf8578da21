import { MemoryStorage } from '../raft/storage.ts';
import type { ClusterConfig, Entry, HardState, Snapshot } from '../raft/types.ts';
import {
  type CompactionPoint,
  decodeAddresses,
  decodeCompactionPoint,
  decodeEntry,
  decodeHardState,
  decodeIdentity,
  decodeSnapshot,
  decodeSnapshotManifest,
} from './codec.ts';
import { EntryArena } from './entry-arena.ts';
import { CorruptValueError, StorageCorruptionError } from './errors.ts';
import { decodeChunkKey, decodeIndexKey, encodeIndexKey } from './keys.ts';
import {
  type BatchOp,
  type Bytes,
  type Db,
  META_KEY,
  putCompactionPoint,
  putHardState,
  putIdentity,
  putSnapshotManifest,
  SNAPSHOT_KEY,
  SNAPSHOT_MANIFEST_KEY,
  type SublevelName,
  type Sublevels,
  writeBatch,
} from './level-layout.ts';
import { readChunks, type StoredChunks } from './snapshot-read.ts';
import type { StoredAddress, StoredIdentity } from './writable-storage.ts';

/** What an empty database starts as: a founding member, or a node joining a cluster. */
export type Bootstrap = ClusterConfig | 'join';

/**
 * Reads and verifies everything stored, and returns it as a MemoryStorage (the
 * mirror). An empty database is first initialized from `bootstrap`, in one synced batch.
 * Every value's checksum is checked here. After this only the latest snapshot's data is
 * read again, when a follower needs it (see DiskSnapshot).
 */
export async function loadMirror(
  path: string,
  db: Db,
  sublevels: Sublevels,
  bootstrap: Bootstrap | undefined,
  identity: StoredIdentity | undefined,
): Promise<{ mirror: MemoryStorage; place: SnapshotPlace }> {
  const manifestValue = await sublevels.snapshot.get(SNAPSHOT_MANIFEST_KEY);
  const oldValue = await sublevels.snapshot.get(SNAPSHOT_KEY);
  if (manifestValue === undefined && oldValue === undefined) {
    const mirror = await initialize(path, db, sublevels, bootstrap, identity);
    return { mirror, place: { stored: FIRST_MANIFEST, oldRecord: false, nextGeneration: 1 } };
  }
  if (manifestValue !== undefined && oldValue !== undefined) {
    // The batch that writes a manifest deletes the old record: both means damage.
    throw corrupt(path, 'snapshot', 'key latest', 'present beside a manifest');
  }
  let snapshot: Snapshot;
  let stored: StoredChunks | null = null;
  if (manifestValue !== undefined) {
    const manifest = decodeAt(
      path,
      'snapshot',
      'key manifest',
      manifestValue,
      decodeSnapshotManifest,
    );
    const { metadata, ...chunks } = manifest;
    snapshot = { metadata, data: await readChunks(path, sublevels, chunks) };
    stored = chunks;
  } else {
    snapshot = decodeAt(path, 'snapshot', 'key latest', oldValue as Bytes, decodeSnapshot);
  }
  const nextGeneration = await dropUnnamedChunks(path, db, sublevels, stored);
  const hardState = await readMeta(path, sublevels, 'hardState', decodeHardState);
  const compaction = await readMeta(path, sublevels, 'compaction', decodeCompactionPoint);
  const entries = await readLog(path, sublevels, compaction);
  const mirror = buildMirror(path, { snapshot, hardState, compaction, entries });
  return { mirror, place: { stored, oldRecord: stored === null, nextGeneration } };
}

/** Where the stored snapshot is, so that the write of the next one deletes it. */
export interface SnapshotPlace {
  /** The chunks of the stored manifest; null when the snapshot is an old one-value record. */
  stored: StoredChunks | null;
  /** The one-value record of the layout before chunks is stored (see level-layout.ts). */
  oldRecord: boolean;
  /** Above every generation in the database: the next snapshot's chunks go under it. */
  nextGeneration: number;
}

/** A new database's manifest: generation 0, no chunks (the founding snapshot has no data). */
const FIRST_MANIFEST: StoredChunks = {
  generation: 0,
  chunkCount: 0,
  dataBytes: 0,
  dataChecksum: 0,
};

/**
 * Deletes every chunk the manifest does not name: a crash, or a snapshot write that a
 * newer one overtook, left them. They are few (at most a snapshot's worth or two), so
 * one synced batch. Returns the generation after the highest found.
 */
async function dropUnnamedChunks(
  path: string,
  db: Db,
  sublevels: Sublevels,
  stored: StoredChunks | null,
): Promise<number> {
  let highest = stored?.generation ?? 0;
  const unnamed: BatchOp[] = [];
  for await (const key of sublevels.snapshotChunk.keys()) {
    const at = decodeChunkKey(key);
    if (at === undefined) {
      throw corrupt(path, 'snapshotChunk', `key ${hexOf(key)}`, 'not a chunk key');
    }
    highest = Math.max(highest, at[0]);
    if (at[0] !== stored?.generation) {
      unnamed.push({ type: 'del', sublevel: sublevels.snapshotChunk, key });
    }
  }
  if (unnamed.length > 0) await writeBatch(db, unnamed, true);
  return highest + 1;
}

/**
 * The first open. The records (and the identity, when given) are written in one batch,
 * so a crash leaves either an empty database (initialized again on the next open) or a
 * complete one; a database with keys but no snapshot is therefore corrupt, not new.
 */
async function initialize(
  path: string,
  db: Db,
  sublevels: Sublevels,
  bootstrap: Bootstrap | undefined,
  identity: StoredIdentity | undefined,
): Promise<MemoryStorage> {
  const anyKeys = await db.keys({ limit: 1 }).all();
  if (anyKeys.length > 0) throw corrupt(path, 'snapshot', 'key manifest', 'missing');
  if (bootstrap === undefined) {
    throw new Error(
      `storage: ${path} is empty and no bootstrap (cluster config or 'join') was given`,
    );
  }
  const mirror =
    bootstrap === 'join' ? MemoryStorage.joining() : MemoryStorage.bootstrap(bootstrap);
  const snapshot = mirror.snapshot();
  if (snapshot.data.byteLength > 0)
    throw new Error('a new store starts from a snapshot without data');
  const manifest = { metadata: snapshot.metadata, ...FIRST_MANIFEST };
  const ops: BatchOp[] = [
    putSnapshotManifest(sublevels, manifest),
    putCompactionPoint(sublevels, { index: snapshot.metadata.index, term: snapshot.metadata.term }),
    putHardState(sublevels, mirror.initialState().hardState),
    ...(identity === undefined ? [] : [putIdentity(sublevels, identity)]),
  ];
  await writeBatch(db, ops, true);
  return mirror;
}

/**
 * The saved member addresses, checked like every other record. Missing means none:
 * databases written before addresses were kept, and nodes that never saved any.
 */
export async function loadAddresses(path: string, sublevels: Sublevels): Promise<StoredAddress[]> {
  const value = await sublevels.meta.get(META_KEY.addresses);
  if (value === undefined) return [];
  return decodeAt(path, 'meta', 'key addresses', value, decodeAddresses);
}

/** The stored identity, checked like every other record; null in an older database. */
export async function loadIdentity(
  path: string,
  sublevels: Sublevels,
): Promise<StoredIdentity | null> {
  const value = await sublevels.meta.get(META_KEY.identity);
  if (value === undefined) return null;
  return decodeAt(path, 'meta', 'key identity', value, decodeIdentity);
}

async function readMeta<T>(
  path: string,
  sublevels: Sublevels,
  name: keyof typeof META_KEY,
  decode: (value: Bytes) => T,
): Promise<T> {
  const value = await sublevels.meta.get(META_KEY[name]);
  if (value === undefined) throw corrupt(path, 'meta', `key ${name}`, 'missing');
  return decodeAt(path, 'meta', `key ${name}`, value, decode);
}

/**
 * The stored log, which must run without gaps from just after the compaction point,
 * each value stored under its own index, with terms that never decrease (§5.3: a log's
 * terms only grow, since a leader appends in its own term after every earlier entry).
 */
async function readLog(
  path: string,
  sublevels: Sublevels,
  compaction: CompactionPoint,
): Promise<Entry[]> {
  await dropCompactedEntries(sublevels, compaction);
  const entries: Entry[] = [];
  let previous: CompactionPoint = compaction;
  for await (const [key, value] of sublevels.log.iterator()) {
    const entry = verifiedEntry(path, key, value, previous, compaction);
    entries.push(entry);
    previous = entry;
  }
  return entries;
}

/**
 * Deletes the entries at or below the compaction point. A compaction stores the point
 * (synced) and only then deletes the entries behind it, in a range clear of its own
 * (LevelStorage.compact), so a crash between the two, or during the clear, leaves some.
 * Unsynced like the clear: one that a crash undoes is simply done again at the next open.
 */
async function dropCompactedEntries(
  sublevels: Sublevels,
  compaction: CompactionPoint,
): Promise<void> {
  await sublevels.log.clear({ lte: encodeIndexKey(compaction.index) });
}

function verifiedEntry(
  path: string,
  key: Bytes,
  value: Bytes,
  previous: CompactionPoint,
  compaction: CompactionPoint,
): Entry {
  const index = decodeIndexKey(key);
  if (index === undefined) throw corrupt(path, 'log', `key ${hexOf(key)}`, 'not an index key');
  const where = `index ${index}`;
  const expectedIndex = previous.index + 1;
  if (index !== expectedIndex) {
    throw corrupt(path, 'log', where, unexpectedIndex(expectedIndex, compaction));
  }
  const entry = decodeAt(path, 'log', where, value, decodeEntry);
  if (entry.index !== index) {
    throw corrupt(path, 'log', where, `value holds index ${entry.index}`);
  }
  if (entry.term < previous.term) {
    throw corrupt(
      path,
      'log',
      where,
      `term ${entry.term} is below the previous term ${previous.term}`,
    );
  }
  return entry;
}

function unexpectedIndex(expectedIndex: number, compaction: CompactionPoint): string {
  return expectedIndex === compaction.index + 1
    ? `the log should start at ${expectedIndex}, after the compaction point ${compaction.index}`
    : `gap: expected index ${expectedIndex}`;
}

interface Stored {
  readonly snapshot: Snapshot;
  readonly hardState: HardState;
  readonly compaction: CompactionPoint;
  readonly entries: readonly Entry[];
}

/**
 * Rebuilds the MemoryStorage that the writes produced. MemoryStorage starts from a
 * snapshot at its compaction point, so it is built at the compaction point, given the
 * log, and then told about the real snapshot (which may be later: compaction can keep
 * entries that a snapshot already covers).
 */
function buildMirror(path: string, stored: Stored): MemoryStorage {
  const { snapshot, hardState, compaction, entries } = stored;
  const { index: snapshotIndex, term: snapshotTerm, config } = snapshot.metadata;
  if (compaction.index > snapshotIndex) {
    throw corrupt(
      path,
      'meta',
      'key compaction',
      `index ${compaction.index} is past the snapshot at ${snapshotIndex}`,
    );
  }
  const atCompaction: Snapshot = {
    metadata: { index: compaction.index, term: compaction.term, config },
    data: new Uint8Array(0),
  };
  const mirror = new MemoryStorage(atCompaction, hardState);
  // Each stored value's entry is a view into that value: in slabs, the log costs its bytes.
  mirror.append(new EntryArena().keep(entries));
  const logTerm = mirror.term(snapshotIndex);
  if (logTerm !== snapshotTerm) {
    throw corrupt(
      path,
      'snapshot',
      'key latest',
      `term ${snapshotTerm} at index ${snapshotIndex} disagrees with the log (${logTerm ?? 'no entry'})`,
    );
  }
  mirror.createSnapshot(snapshotIndex, config, snapshot.data);
  return mirror;
}

function decodeAt<T>(
  path: string,
  sublevel: SublevelName,
  where: string,
  value: Bytes,
  decode: (value: Bytes) => T,
): T {
  try {
    return decode(value);
  } catch (error) {
    if (error instanceof CorruptValueError) throw corrupt(path, sublevel, where, error.message);
    throw error;
  }
}

function corrupt(
  path: string,
  sublevel: SublevelName,
  where: string,
  reason: string,
): StorageCorruptionError {
  return new StorageCorruptionError(path, sublevel, where, reason);
}

function hexOf(key: Bytes): string {
  return `0x${Buffer.from(key).toString('hex')}`;
}
