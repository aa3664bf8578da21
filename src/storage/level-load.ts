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
} from './codec.ts';
import { CorruptValueError, StorageCorruptionError } from './errors.ts';
import { decodeIndexKey } from './keys.ts';
import {
  type BatchOp,
  type Bytes,
  type Db,
  META_KEY,
  putCompactionPoint,
  putHardState,
  putIdentity,
  putSnapshot,
  SNAPSHOT_KEY,
  type SublevelName,
  type Sublevels,
} from './level-layout.ts';
import type { StoredAddress, StoredIdentity } from './writable-storage.ts';

/** What an empty database starts as: a founding member, or a node joining a cluster. */
export type Bootstrap = ClusterConfig | 'join';

/**
 * Reads and verifies everything stored, and returns it as a MemoryStorage (the
 * mirror). An empty database is first initialized from `bootstrap`, in one synced batch.
 * Every value's checksum is checked here; after this nothing is read from disk again.
 */
export async function loadMirror(
  path: string,
  db: Db,
  sublevels: Sublevels,
  bootstrap: Bootstrap | undefined,
  identity: StoredIdentity | undefined,
): Promise<MemoryStorage> {
  const snapshotValue = await sublevels.snapshot.get(SNAPSHOT_KEY);
  if (snapshotValue === undefined) return initialize(path, db, sublevels, bootstrap, identity);
  const snapshot = decodeAt(path, 'snapshot', 'key latest', snapshotValue, decodeSnapshot);
  const hardState = await readMeta(path, sublevels, 'hardState', decodeHardState);
  const compaction = await readMeta(path, sublevels, 'compaction', decodeCompactionPoint);
  const entries = await readLog(path, sublevels, compaction);
  return buildMirror(path, { snapshot, hardState, compaction, entries });
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
  if (anyKeys.length > 0) throw corrupt(path, 'snapshot', 'key latest', 'missing');
  if (bootstrap === undefined) {
    throw new Error(
      `storage: ${path} is empty and no bootstrap (cluster config or 'join') was given`,
    );
  }
  const mirror =
    bootstrap === 'join' ? MemoryStorage.joining() : MemoryStorage.bootstrap(bootstrap);
  const snapshot = mirror.snapshot();
  const ops: BatchOp[] = [
    putSnapshot(sublevels, snapshot),
    putCompactionPoint(sublevels, { index: snapshot.metadata.index, term: snapshot.metadata.term }),
    putHardState(sublevels, mirror.initialState().hardState),
    ...(identity === undefined ? [] : [putIdentity(sublevels, identity)]),
  ];
  await db.batch(ops, { sync: true });
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
  const entries: Entry[] = [];
  let previous: CompactionPoint = compaction;
  for await (const [key, value] of sublevels.log.iterator()) {
    const entry = verifiedEntry(path, key, value, previous, compaction);
    entries.push(entry);
    previous = entry;
  }
  return entries;
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
  mirror.append(entries);
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
