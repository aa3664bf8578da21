import { Packr } from 'msgpackr';
import type {
  ClusterConfig,
  ConfigChange,
  Entry,
  HardState,
  Snapshot,
  SnapshotMetadata,
} from '../raft/types.ts';
import { assert, assertNever } from '../util/assert.ts';
import { type LogIndex, logIndex, type NodeId, nodeId, type Term, term } from '../util/ids.ts';
import { crc32c } from './crc32.ts';
import { CorruptValueError } from './errors.ts';
import type { StoredAddress, StoredIdentity } from './writable-storage.ts';

/**
 * Stored values: a 4-byte big-endian CRC-32C, then a format version byte, then one
 * MessagePack array. The checksum covers everything after itself, so a flipped bit in
 * the version or the payload is caught before anything is decoded.
 *
 * Records are positional arrays, not objects: the layout is pinned here rather than in
 * property names, and it is small (an entry header is a few bytes).
 *
 *   entry       [index, term, 0]                                noop
 *               [index, term, 1, data]                          normal
 *               [index, term, 2, changeTag, nodeId]             config
 *   hard state  [term, votedFor | null, commitIndex]
 *   snapshot    [index, term, voters, learners, data]                 (written before issue 12's
 *                                                                     chunks; still read)
 *   manifest    [index, term, voters, learners, generation, chunks, dataBytes, dataChecksum]
 *   chunk       the raw bytes of one piece of a snapshot's data, not MessagePack: the
 *               checksum and version byte, then the bytes
 *   compaction  [index, term]
 *   addresses   [[nodeId, peerAddress, clientAddress], ...]     member addresses (not Raft state)
 *   identity    [clusterId, nodeId]                            '' = cluster not yet known
 */
export const FORMAT_VERSION = 1;
const CHECKSUM_BYTES = 4;
const HEADER_BYTES = CHECKSUM_BYTES + 1;

/**
 * Every option that changes the bytes is pinned, so a msgpackr upgrade that flips a
 * default cannot silently change what is written or how old values decode.
 */
const packr = new Packr({
  useRecords: false, // plain MessagePack: no record extension, no shared structures
  structuredClone: false,
  moreTypes: false, // typed arrays are written as plain `bin`
  bundleStrings: false,
  sequential: false,
  variableMapSize: false,
  useFloat32: 0, // FLOAT32_OPTIONS.NEVER; a const enum, not importable with isolatedModules
  useTimestamp32: false,
  encodeUndefinedAsNil: false,
  largeBigIntToFloat: false,
  mapsAsObjects: true,
  // Safe integers above 2^32 are written as float64 (exact); a uint64 written by any other
  // encoder still decodes to a number, which the shape checks then bound.
  int64AsType: 'number',
  // Binary fields are copied out by `bytes()` below, so decoding may return views.
  copyBuffers: false,
});

const ENTRY_KIND_TAG = { noop: 0, normal: 1, config: 2 } as const;
const CHANGE_TYPE_TAG = { addLearner: 0, promoteLearner: 1, removeNode: 2 } as const;

// ------------------------------------------------------------------ framing

function frame(record: readonly unknown[]): Uint8Array {
  const payload = packr.pack(record);
  const value = new Uint8Array(HEADER_BYTES + payload.byteLength);
  value[CHECKSUM_BYTES] = FORMAT_VERSION;
  value.set(payload, HEADER_BYTES);
  const checksum = crc32c(value.subarray(CHECKSUM_BYTES));
  new DataView(value.buffer).setUint32(0, checksum);
  return value;
}

/** Verifies the checksum and version, then decodes the payload. */
function unframe(value: Uint8Array): unknown {
  if (value.byteLength <= HEADER_BYTES) {
    throw new CorruptValueError(`value too short (${value.byteLength} bytes)`);
  }
  const stored = new DataView(value.buffer, value.byteOffset, value.byteLength).getUint32(0);
  const computed = crc32c(value.subarray(CHECKSUM_BYTES));
  if (stored !== computed) {
    throw new CorruptValueError(
      `checksum mismatch (stored ${hex(stored)}, computed ${hex(computed)})`,
    );
  }
  const version = value[CHECKSUM_BYTES];
  if (version !== FORMAT_VERSION) {
    throw new CorruptValueError(`unknown format version ${version} (expected ${FORMAT_VERSION})`);
  }
  try {
    return packr.unpack(value.subarray(HEADER_BYTES));
  } catch (error) {
    throw new CorruptValueError(`undecodable payload: ${(error as Error).message}`);
  }
}

function hex(checksum: number): string {
  return `0x${checksum.toString(16).padStart(8, '0')}`;
}

// ------------------------------------------------------------------ shape checks

function tuple(value: unknown, what: string, length: number): readonly unknown[] {
  if (!Array.isArray(value) || value.length !== length) {
    throw new CorruptValueError(`${what} is not an array of ${length}`);
  }
  return value;
}

function uint(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new CorruptValueError(`${what} is not a safe integer >= 0: ${String(value)}`);
  }
  return value;
}

const indexOf = (value: unknown, what: string): LogIndex => logIndex(uint(value, what));
const termOf = (value: unknown, what: string): Term => term(uint(value, what));

function nodeIdOf(value: unknown, what: string): NodeId {
  if (typeof value !== 'string' || value.length === 0) {
    throw new CorruptValueError(`${what} is not a node id`);
  }
  return nodeId(value);
}

function text(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new CorruptValueError(`${what} is not a string`);
  return value;
}

/** A fresh plain Uint8Array: msgpackr decodes `bin` as a Buffer view of the stored value. */
function bytes(value: unknown, what: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new CorruptValueError(`${what} is not binary`);
  return new Uint8Array(value);
}

function nodeIds(value: unknown, what: string): NodeId[] {
  if (!Array.isArray(value)) throw new CorruptValueError(`${what} is not an array`);
  return value.map((id, position) => nodeIdOf(id, `${what}[${position}]`));
}

// ------------------------------------------------------------------ entries

export function encodeEntry(entry: Entry): Uint8Array {
  const head = [entry.index, entry.term, ENTRY_KIND_TAG[entry.kind]] as const;
  switch (entry.kind) {
    case 'noop':
      return frame(head);
    case 'normal':
      return frameNormalEntry(entry.index, entry.term, entry.data);
    case 'config':
      return frame([...head, CHANGE_TYPE_TAG[entry.change.type], entry.change.nodeId]);
    default:
      return assertNever(entry, 'entry kind');
  }
}

/**
 * The bytes `frame([index, term, 1, data])` writes, without a MessagePack pass: the data
 * is the payload the node already encoded (src/node/entry-codec.ts), so it is copied
 * once into the value, behind a header of a few bytes. Every normal entry a node
 * persists comes through here. The header takes msgpackr's forms under the options pinned above
 * (codec.test.ts compares the two), so the stored format is unchanged.
 */
function frameNormalEntry(index: number, entryTerm: number, data: Uint8Array): Uint8Array {
  // The checksum's bytes stay zero here; they are written last, over the whole value.
  let headBytes = CHECKSUM_BYTES;
  entryHead[headBytes++] = FORMAT_VERSION;
  entryHead[headBytes++] = MSGPACK_FIXARRAY_4;
  headBytes = writeMsgpackUint(index, headBytes);
  headBytes = writeMsgpackUint(entryTerm, headBytes);
  entryHead[headBytes++] = ENTRY_KIND_TAG.normal;
  headBytes = writeMsgpackBinHeader(data.byteLength, headBytes);
  const value = new Uint8Array(headBytes + data.byteLength);
  value.set(entryHead.subarray(0, headBytes));
  value.set(data, headBytes);
  new DataView(value.buffer).setUint32(0, crc32c(value.subarray(CHECKSUM_BYTES)));
  return value;
}

const MSGPACK_FIXARRAY_4 = 0x94;
/** Checksum and version, the array and kind bytes, two integers of at most 9 bytes, a bin header. */
const ENTRY_HEAD_BYTES_MAX = HEADER_BYTES + 2 + 2 * 9 + 5;
/** Where frameNormalEntry builds a header; each call overwrites it before it reads it. */
const entryHead = new Uint8Array(ENTRY_HEAD_BYTES_MAX);
const entryHeadView = new DataView(entryHead.buffer);

/**
 * A safe integer >= 0 as msgpackr writes it without records or float32: a positive
 * fixint below 0x80, else the shortest of uint 8/16/32, else a float64 (exact for every
 * safe integer). Returns the position after it.
 */
function writeMsgpackUint(value: number, position: number): number {
  if (value < 0x80) {
    entryHead[position] = value;
    return position + 1;
  }
  if (value < 0x100) {
    entryHead[position] = 0xcc;
    entryHead[position + 1] = value;
    return position + 2;
  }
  if (value < 0x10000) {
    entryHead[position] = 0xcd;
    entryHeadView.setUint16(position + 1, value);
    return position + 3;
  }
  if (value <= 0xffffffff) {
    entryHead[position] = 0xce;
    entryHeadView.setUint32(position + 1, value);
    return position + 5;
  }
  entryHead[position] = 0xcb;
  entryHeadView.setFloat64(position + 1, value);
  return position + 9;
}

/** The header of a MessagePack `bin` of `length` bytes; returns the position after it. */
function writeMsgpackBinHeader(length: number, position: number): number {
  if (length < 0x100) {
    entryHead[position] = 0xc4;
    entryHead[position + 1] = length;
    return position + 2;
  }
  if (length < 0x10000) {
    entryHead[position] = 0xc5;
    entryHeadView.setUint16(position + 1, length);
    return position + 3;
  }
  entryHead[position] = 0xc6;
  entryHeadView.setUint32(position + 1, length);
  return position + 5;
}

export function decodeEntry(value: Uint8Array): Entry {
  const record = unframe(value);
  if (!Array.isArray(record) || record.length < 3) {
    throw new CorruptValueError('entry is not an array of at least 3');
  }
  const index = indexOf(record[0], 'entry index');
  const entryTerm = termOf(record[1], 'entry term');
  switch (record[2]) {
    case ENTRY_KIND_TAG.noop:
      tuple(record, 'noop entry', 3);
      return { kind: 'noop', index, term: entryTerm };
    case ENTRY_KIND_TAG.normal:
      tuple(record, 'normal entry', 4);
      return { kind: 'normal', index, term: entryTerm, data: bytes(record[3], 'entry data') };
    case ENTRY_KIND_TAG.config:
      tuple(record, 'config entry', 5);
      return { kind: 'config', index, term: entryTerm, change: decodeChange(record[3], record[4]) };
    default:
      throw new CorruptValueError(`unknown entry kind tag ${String(record[2])}`);
  }
}

function decodeChange(tag: unknown, id: unknown): ConfigChange {
  const changeNodeId = nodeIdOf(id, 'config change node id');
  switch (tag) {
    case CHANGE_TYPE_TAG.addLearner:
      return { type: 'addLearner', nodeId: changeNodeId };
    case CHANGE_TYPE_TAG.promoteLearner:
      return { type: 'promoteLearner', nodeId: changeNodeId };
    case CHANGE_TYPE_TAG.removeNode:
      return { type: 'removeNode', nodeId: changeNodeId };
    default:
      throw new CorruptValueError(`unknown config change tag ${String(tag)}`);
  }
}

// ------------------------------------------------------------------ hard state

export function encodeHardState(hardState: HardState): Uint8Array {
  return frame([hardState.term, hardState.votedFor, hardState.commitIndex]);
}

export function decodeHardState(value: Uint8Array): HardState {
  const [hsTerm, votedFor, commitIndex] = tuple(unframe(value), 'hard state', 3);
  return {
    term: termOf(hsTerm, 'hard state term'),
    votedFor: votedFor === null ? null : nodeIdOf(votedFor, 'hard state votedFor'),
    commitIndex: indexOf(commitIndex, 'hard state commitIndex'),
  };
}

// ------------------------------------------------------------------ snapshot

/**
 * The bytes `frame([index, term, voters, learners, data])` writes. The data is copied
 * once, behind a header, instead of passing through msgpackr: its working buffer would
 * grow to the snapshot's size (32 MB at 100,000 locks) and stay that size, and every
 * small value this module frames afterwards would fill and replace a buffer that large
 * (issue 12).
 */
export function encodeSnapshot(snapshot: Snapshot): Uint8Array {
  const value = unsummedSnapshotValue(snapshot.metadata, [snapshot.data]);
  new DataView(value.buffer).setUint32(0, crc32c(value.subarray(CHECKSUM_BYTES)));
  return value;
}

/** Bytes checksummed before `encodeSnapshotInSlices` lets the event loop run. */
const SNAPSHOT_CRC_SLICE_BYTES = 1 << 20;

/**
 * The same bytes as `encodeSnapshot`, the checksum taken a megabyte at a time, `pause`
 * running between: a 15 MB snapshot took 150-500 ms in one piece (encode, copy,
 * checksum), on the event loop.
 */
export async function encodeSnapshotInSlices(
  snapshot: Snapshot,
  pause: () => Promise<void>,
): Promise<Uint8Array> {
  return encodeSnapshotPartsInSlices(snapshot.metadata, [snapshot.data], pause);
}

/**
 * As `encodeSnapshotInSlices`, the data given as pieces to be joined (the node encodes
 * a snapshot in pieces): they are copied straight into the value, so that no buffer of
 * the whole data is made only to be copied once more (issue 12). The data ends the
 * value: `value.subarray(value.byteLength - dataBytes)` is the data.
 */
export async function encodeSnapshotPartsInSlices(
  metadata: SnapshotMetadata,
  parts: readonly Uint8Array[],
  pause: () => Promise<void>,
): Promise<Uint8Array> {
  const value = unsummedSnapshotValue(metadata, parts);
  let checksum = 0;
  for (let at = CHECKSUM_BYTES; at < value.byteLength; at += SNAPSHOT_CRC_SLICE_BYTES) {
    if (at > CHECKSUM_BYTES) await pause();
    checksum = crc32c(value.subarray(at, at + SNAPSHOT_CRC_SLICE_BYTES), checksum);
  }
  new DataView(value.buffer).setUint32(0, checksum);
  return value;
}

/**
 * A snapshot's stored value with its checksum left zero. The fields before the data are
 * encoded by msgpackr itself; the data is written as the smallest MessagePack bin form,
 * as msgpackr writes it (test/storage/codec.test.ts holds the two to the same bytes).
 */
function unsummedSnapshotValue(
  metadata: SnapshotMetadata,
  parts: readonly Uint8Array[],
): Uint8Array {
  const { index, term: snapshotTerm, config } = metadata;
  const dataBytes = parts.reduce((sum, part) => sum + part.byteLength, 0);
  // [index, term, voters, learners] as a 4-array; the 5-array differs only in the header.
  const fields = packr.pack([index, snapshotTerm, config.voters, config.learners]);
  assert(fields[0] === FIXARRAY_4, 'four fields encode as a fixarray');
  const binHeader = binHeaderOf(dataBytes);
  const value = new Uint8Array(HEADER_BYTES + fields.byteLength + binHeader.byteLength + dataBytes);
  value[CHECKSUM_BYTES] = FORMAT_VERSION;
  value.set(fields, HEADER_BYTES);
  value[HEADER_BYTES] = FIXARRAY_5;
  value.set(binHeader, HEADER_BYTES + fields.byteLength);
  let offset = HEADER_BYTES + fields.byteLength + binHeader.byteLength;
  for (const part of parts) {
    value.set(part, offset);
    offset += part.byteLength;
  }
  return value;
}

const FIXARRAY_4 = 0x94;
const FIXARRAY_5 = 0x95;

/** MessagePack's bin header: bin 8, 16 or 32, the smallest that holds the length. */
function binHeaderOf(length: number): Uint8Array {
  if (length <= 0xff) return Uint8Array.of(0xc4, length);
  if (length <= 0xffff) return Uint8Array.of(0xc5, length >>> 8, length & 0xff);
  const header = new Uint8Array(5);
  header[0] = 0xc6;
  new DataView(header.buffer).setUint32(1, length);
  return header;
}

export function decodeSnapshot(value: Uint8Array): Snapshot {
  const [index, snapshotTerm, voters, learners, data] = tuple(unframe(value), 'snapshot', 5);
  const config: ClusterConfig = {
    voters: nodeIds(voters, 'snapshot voters'),
    learners: nodeIds(learners, 'snapshot learners'),
  };
  return {
    metadata: {
      index: indexOf(index, 'snapshot index'),
      term: termOf(snapshotTerm, 'snapshot term'),
      config,
    },
    data: bytes(data, 'snapshot data'),
  };
}

// ------------------------------------------------------------------ compaction point

/** The last compacted position: entries up to `index` are gone, but `term` is still known. */
export interface CompactionPoint {
  readonly index: LogIndex;
  readonly term: Term;
}

export function encodeCompactionPoint(point: CompactionPoint): Uint8Array {
  return frame([point.index, point.term]);
}

export function decodeCompactionPoint(value: Uint8Array): CompactionPoint {
  const [index, pointTerm] = tuple(unframe(value), 'compaction point', 2);
  return { index: indexOf(index, 'compaction index'), term: termOf(pointTerm, 'compaction term') };
}

// ------------------------------------------------------------------ member addresses

/**
 * A value written here must decode, or the next open would refuse the whole database;
 * peers' entries are checked where they enter the address book, so a bad one here is a
 * bug, caught before it reaches the disk.
 */
export function encodeAddresses(addresses: readonly StoredAddress[]): Uint8Array {
  return frame(
    addresses.map(({ id, peerAddress, clientAddress }) => {
      assert(
        typeof id === 'string' &&
          id.length > 0 &&
          typeof peerAddress === 'string' &&
          typeof clientAddress === 'string',
        `not a member address: ${JSON.stringify({ id, peerAddress, clientAddress })}`,
      );
      return [id, peerAddress, clientAddress];
    }),
  );
}

export function decodeAddresses(value: Uint8Array): StoredAddress[] {
  const record = unframe(value);
  if (!Array.isArray(record)) throw new CorruptValueError('addresses is not an array');
  return record.map((item: unknown, position) => {
    const what = `addresses[${position}]`;
    const [id, peerAddress, clientAddress] = tuple(item, what, 3);
    return {
      id: nodeIdOf(id, `${what} node id`),
      peerAddress: text(peerAddress, `${what} peer address`),
      clientAddress: text(clientAddress, `${what} client address`),
    };
  });
}

// ------------------------------------------------------------------ identity

export function encodeIdentity(identity: StoredIdentity): Uint8Array {
  assert(
    typeof identity.clusterId === 'string' && identity.nodeId.length > 0,
    `not an identity: ${JSON.stringify(identity)}`,
  );
  return frame([identity.clusterId, identity.nodeId]);
}

export function decodeIdentity(value: Uint8Array): StoredIdentity {
  const [clusterId, id] = tuple(unframe(value), 'identity', 2);
  return {
    clusterId: text(clusterId, 'identity cluster id'),
    nodeId: nodeIdOf(id, 'identity node id'),
  };
}

// ------------------------------------------------------------------ chunked snapshot

/**
 * Where a snapshot stored in chunks is and how to check it whole: its data is the
 * concatenation of `chunkCount` chunk records of generation `generation`, `dataBytes`
 * long, whose CRC-32C is `dataChecksum` (each chunk also carries its own checksum, so
 * a damaged chunk is named; the whole checksum catches a chunk stored under the
 * wrong key).
 */
export interface SnapshotManifest {
  readonly metadata: SnapshotMetadata;
  readonly generation: number;
  readonly chunkCount: number;
  readonly dataBytes: number;
  readonly dataChecksum: number;
}

export function encodeSnapshotManifest(manifest: SnapshotManifest): Uint8Array {
  const { metadata, generation, chunkCount, dataBytes, dataChecksum } = manifest;
  const { index, term: manifestTerm, config } = metadata;
  return frame([
    index,
    manifestTerm,
    config.voters,
    config.learners,
    generation,
    chunkCount,
    dataBytes,
    dataChecksum,
  ]);
}

export function decodeSnapshotManifest(value: Uint8Array): SnapshotManifest {
  const [index, manifestTerm, voters, learners, generation, chunkCount, dataBytes, dataChecksum] =
    tuple(unframe(value), 'snapshot manifest', 8);
  return {
    metadata: {
      index: indexOf(index, 'manifest index'),
      term: termOf(manifestTerm, 'manifest term'),
      config: {
        voters: nodeIds(voters, 'manifest voters'),
        learners: nodeIds(learners, 'manifest learners'),
      },
    },
    generation: uint(generation, 'manifest generation'),
    chunkCount: uint(chunkCount, 'manifest chunk count'),
    dataBytes: uint(dataBytes, 'manifest data bytes'),
    dataChecksum: uint(dataChecksum, 'manifest data checksum'),
  };
}

/** One chunk's stored value: checksum, version, then a copy of the bytes. */
export function encodeSnapshotChunk(data: Uint8Array): Uint8Array {
  const value = new Uint8Array(HEADER_BYTES + data.byteLength);
  value[CHECKSUM_BYTES] = FORMAT_VERSION;
  value.set(data, HEADER_BYTES);
  new DataView(value.buffer).setUint32(0, crc32c(value.subarray(CHECKSUM_BYTES)));
  return value;
}

/** The bytes of a chunk, checked; a view of `value`. An empty chunk is never written. */
export function decodeSnapshotChunk(value: Uint8Array): Uint8Array {
  if (value.byteLength <= HEADER_BYTES) {
    throw new CorruptValueError(`chunk too short (${value.byteLength} bytes)`);
  }
  const stored = new DataView(value.buffer, value.byteOffset, value.byteLength).getUint32(0);
  const computed = crc32c(value.subarray(CHECKSUM_BYTES));
  if (stored !== computed) {
    throw new CorruptValueError(
      `checksum mismatch (stored ${hex(stored)}, computed ${hex(computed)})`,
    );
  }
  const version = value[CHECKSUM_BYTES];
  if (version !== FORMAT_VERSION) {
    throw new CorruptValueError(`unknown format version ${version} (expected ${FORMAT_VERSION})`);
  }
  return value.subarray(HEADER_BYTES);
}
