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
} from './codec.ts';
import { encodeIndexKey } from './keys.ts';
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
 *   snapshot  "latest"                -> the latest snapshot, metadata and data together
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

export const SUBLEVEL_NAMES = ['log', 'meta', 'snapshot'] as const;
export type SublevelName = (typeof SUBLEVEL_NAMES)[number];

const utf8 = new TextEncoder();
export const META_KEY = {
  hardState: utf8.encode('hardState'),
  compaction: utf8.encode('compaction'),
  addresses: utf8.encode('addresses'),
  identity: utf8.encode('identity'),
};
export const SNAPSHOT_KEY = utf8.encode('latest');

export function openSublevels(db: Db) {
  const options = { keyEncoding: 'view', valueEncoding: 'view' } as const;
  return {
    log: db.sublevel<Bytes, Bytes>('log', options),
    meta: db.sublevel<Bytes, Bytes>('meta', options),
    snapshot: db.sublevel<Bytes, Bytes>('snapshot', options),
  };
}
export type Sublevels = ReturnType<typeof openSublevels>;

// ------------------------------------------------------------------ operations

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

/** A snapshot record already encoded (codec's encodeSnapshotInSlices). */
export function putEncodedSnapshot(sublevels: Sublevels, value: Bytes): BatchOp {
  return { type: 'put', sublevel: sublevels.snapshot, key: SNAPSHOT_KEY, value };
}

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
