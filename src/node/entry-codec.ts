import { Packr, RESET_BUFFER_MODE } from 'msgpackr';
import type { LockCommand, LockSnapshot } from '../lock/index.ts';

/**
 * What a normal log entry carries: a lock command, and the id of the proposal that
 * created it so the node that took the client's call can answer it when it applies the
 * entry. Timer commands the leader proposes have no proposal id.
 */
export interface EntryPayload {
  readonly proposalId: string | null;
  readonly command: LockCommand;
}

// Options are pinned: the encoding is part of what every replica must agree on.
const PACKR_OPTIONS = { useRecords: false, mapsAsObjects: true, int64AsType: 'number' } as const;
const packr = new Packr(PACKR_OPTIONS);

/**
 * The entry's bytes in a buffer of their own. msgpackr returns a view into its working
 * buffer, which it reuses for the next pack and replaces, once nearly full, with one of
 * the same size: the log kept each entry's view, so a leader's few thousand retained
 * entries pinned every working buffer they were written into (measured, issue 12: 36 MB
 * of 4 and 16 MB buffers for 100 KB of entries on a leader holding 100,000 locks).
 */
export function encodeEntry(payload: EntryPayload): Uint8Array {
  return Buffer.from(packr.pack({ p: payload.proposalId, c: payload.command }));
}

/**
 * Why `data` is not a payload encodeEntry could have written, or null. A forwarded write
 * is proposed as its follower encoded it and applied by every replica: bytes that do not
 * decode to a payload (msgpack `nil` is one byte) would stop each replica at the same
 * index, and again after every restart, since the log keeps them. The command inside is
 * the state machine's to check (shape.ts): it refuses a malformed one without throwing.
 *
 * Nesting is bounded too: msgpackr decodes recursively, so how deep it can go depends on
 * the stack, and a warm process (smaller optimised frames) decodes payloads thousands of
 * levels deeper than a cold one. A deep payload this node decodes could stop a replica
 * that is just starting, at the same index on every restart (review test
 * review-fwd-depth). Bounding the depth far below any process's limit makes the answer
 * the same on every node.
 */
export function entryPayloadProblem(data: Uint8Array): string | null {
  let decoded: unknown;
  try {
    decoded = packr.unpack(data);
  } catch (error) {
    return `does not decode: ${(error as Error).message}`;
  }
  if (nestedDeeperThan(decoded, ENTRY_NESTING_MAX)) {
    return `nested deeper than ENTRY_NESTING_MAX (${ENTRY_NESTING_MAX}) levels`;
  }
  if (!isPlainObject(decoded)) return 'expected an entry payload { p, c }';
  const { p, c } = decoded;
  if (p !== null && typeof p !== 'string') return 'p: expected a proposal id or null';
  if (!isPlainObject(c)) return 'c: expected a command object';
  // Only a leader raises the behaviour version, once every member said it can apply it:
  // a forwarded raise to a version no node knows stopped every replica (review test
  // review-behaviour-forward), and again on every replay.
  return c.type === 'SetBehaviour'
    ? 'c: SetBehaviour is proposed by the leader, not forwarded'
    : null;
}

/**
 * The deepest a forwarded entry may nest (objects and arrays). An entry the node writes
 * itself nests at most 4 levels (payload, command, quota or rules, their values).
 */
export const ENTRY_NESTING_MAX = 16;

/**
 * Whether `value` nests more than `levelsMax` objects or arrays. Recursive, but never
 * deeper than `levelsMax` + 1 frames whatever the value, and allocates nothing: every
 * forwarded write passes here on the leader.
 */
function nestedDeeperThan(value: unknown, levelsMax: number): boolean {
  if (typeof value !== 'object' || value === null || value instanceof Uint8Array) return false;
  if (levelsMax === 0) return true;
  const container = value as Readonly<Record<string, unknown>>;
  for (const key in container) {
    if (nestedDeeperThan(container[key], levelsMax - 1)) return true;
  }
  return false;
}

function isPlainObject(value: unknown): value is Readonly<Record<string, unknown>> {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    !(value instanceof Uint8Array)
  );
}

export function decodeEntry(data: Uint8Array): EntryPayload {
  // msgpackr caches a DataView on the buffer it reads (a property it adds): read a view
  // of our own, so that the log's kept entries do not each carry one (120 bytes). A
  // Buffer, as msgpackr reads text from one faster than from a plain Uint8Array.
  const view = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const decoded = packr.unpack(view) as { p: string | null; c: LockCommand };
  const proposalId = decoded.p === null ? null : ownString(decoded.p);
  return { proposalId, command: withOwnStrings(decoded.c, ENTRY_NESTING_MAX) };
}

/**
 * Strings at least this long may come out of msgpackr as slices of a bigger string
 * (V8 makes a slice, not a copy, from 13 characters on).
 */
const SLICE_LENGTH_MIN = 13;

/**
 * `value` with every string in it (to `levelsMax` levels) replaced by one of its own.
 * msgpackr's native decoder reads all the strings of an entry as one string and hands
 * out slices of it, and a slice keeps the whole alive: a held lock's name and request
 * id kept its entry's every string (proposal id, type, mode, owner), 15 MB of
 * 170-byte strings behind 9 MB of slices at 100,000 held locks (heap snapshot,
 * issue 12). Mutates the decoded objects, which nothing else has seen.
 */
function withOwnStrings<T>(value: T, levelsMax: number): T {
  if (typeof value === 'string') return ownString(value) as T;
  if (typeof value !== 'object' || value === null || value instanceof Uint8Array) return value;
  if (levelsMax === 0) return value;
  const container = value as Record<string, unknown>;
  for (const key in container) container[key] = withOwnStrings(container[key], levelsMax - 1);
  return value;
}

/** A character a latin1 copy would not keep (surrogate halves included). */
const WIDE = /[\u0100-\uffff]/;

/**
 * A flat copy of a string that may be a slice. Names, ids and owners are nearly always
 * one-byte text, copied through a latin1 buffer: decoding an Acquire entry took 2.2 µs
 * with these copies where interning every string took 5.5 (1.0 with neither), and each
 * kept string costs the same 46 bytes. Interning was 4 % of a follower's CPU at 64
 * clients (V8 profile, issue 12). Other text is interned: V8 stores a property key as
 * an internalized, flat string, which the key enumeration hands back.
 */
function ownString(text: string): string {
  if (text.length < SLICE_LENGTH_MIN) return text;
  if (!WIDE.test(text)) return Buffer.from(text, 'latin1').toString('latin1');
  for (const key in { [text]: 0 }) return key;
  return text;
}

/**
 * The snapshot's encoder. msgpackr's working buffer is one for the whole process (every
 * Packr writes into it) and stays at the largest size it grew to: encoded in one piece, a
 * snapshot grew it to its own size (16 MB at 100,000 locks), and every later entry and
 * peer message was written into a buffer that large, a new one each time it filled up
 * (issue 12). Pieces of a snapshot are bounded (SNAPSHOT_SLICE_ITEMS) and each is
 * written over by the next (see encodeLockSnapshotParts), so they grow it to a few
 * hundred kilobytes at most.
 */
const snapshotPackr = new Packr(PACKR_OPTIONS);

/** The snapshot in one piece, by msgpackr itself (a fresh encoder, dropped afterwards). */
export function encodeLockSnapshot(snapshot: LockSnapshot): Uint8Array {
  return new Packr(PACKR_OPTIONS).pack(snapshot);
}

export function decodeLockSnapshot(data: Uint8Array): LockSnapshot {
  // Strings are left as msgpackr cuts them from its bulk strings: copying them cost more
  // time than it saved memory (docs/operations.md, "Memory").
  return packr.unpack(data) as LockSnapshot;
}

/**
 * Elements of a snapshot's arrays (sessions, locks, remembered results) encoded per
 * piece. A piece of 250 is some 40-70 KB: no piece, and no buffer msgpackr grows for
 * one, is large. Large transient buffers were most of a node's memory (issue 12):
 * glibc serves a freed large block's size from its heap from then on, and that heap
 * rarely shrinks, so each snapshot's multi-megabyte buffers left their peak resident.
 */
export const SNAPSHOT_SLICE_ITEMS = 250;

/**
 * The bytes of `encodeLockSnapshot`, encoded a slice at a time with `pause` running
 * between slices: the dedupe window (up to 100,000 remembered results, some 15 MB) took
 * hundreds of milliseconds in one piece, and every call and Raft message of the node
 * waited behind it. The snapshot must not change meanwhile: its arrays are the caller's
 * copies and what they hold is never mutated (the state machine replaces a remembered
 * result or a grant, it does not edit it).
 *
 * Each piece is copied into one buffer as soon as it is made, `sizeHintBytes` long at
 * first (the caller's guess: the last snapshot's size), so a snapshot leaves no pieces
 * behind. Kept as a list and joined once stored, the pieces were another buffer the
 * snapshot's size (38 MB at 100,000 held locks, in msgpackr's buffers) left to the next
 * major GC on every snapshot (issue 12).
 */
export async function encodeLockSnapshotInSlices(
  snapshot: LockSnapshot,
  pause: () => Promise<void>,
  sliceLength = SNAPSHOT_SLICE_ITEMS,
  sizeHintBytes = 0,
): Promise<Uint8Array> {
  const out = new GrowingBytes(sizeHintBytes);
  for (const piece of encodeLockSnapshotParts(snapshot, sliceLength)) {
    if (piece === SLICE_NEXT) await pause();
    else out.append(piece);
  }
  return out.finish();
}

/** The smallest buffer GrowingBytes starts with, whatever the hint. */
const GROWING_BYTES_MIN = 64 * 1024;

/** Bytes appended into one buffer, grown by half when full. */
class GrowingBytes {
  private bytes: Uint8Array;
  private length = 0;

  constructor(capacityBytes: number) {
    this.bytes = new Uint8Array(Math.max(GROWING_BYTES_MIN, Math.ceil(capacityBytes)));
  }

  append(piece: Uint8Array): void {
    const end = this.length + piece.byteLength;
    if (end > this.bytes.byteLength) this.grow(end);
    this.bytes.set(piece, this.length);
    this.length = end;
  }

  /**
   * The bytes appended. In a buffer of their own size when more than a sixteenth of
   * this one would be left unused: the caller keeps the result as long as the snapshot.
   */
  finish(): Uint8Array {
    const unused = this.bytes.byteLength - this.length;
    const used = this.bytes.subarray(0, this.length);
    return unused * 16 > this.length ? used.slice() : used;
  }

  private grow(neededBytes: number): void {
    const grown = new Uint8Array(Math.max(neededBytes, Math.ceil(this.bytes.byteLength * 1.5)));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
  }
}

/** Yielded before each slice of a long array: the caller may let the event loop run. */
const SLICE_NEXT = Symbol('slice next');

/**
 * MessagePack as msgpackr writes a plain object under the options pinned above: a map16
 * header (0xde, then the key count), then each own key and its value. An array longer
 * than `sliceLength` is written as its header followed by the elements of every slice,
 * each slice's own array header cut off (MessagePack writes each element on its own).
 *
 * A piece may be a view into msgpackr's working buffer, which the next piece is written
 * over (RESET_BUFFER_MODE: so that buffer does not fill and get replaced): the caller
 * copies each before asking for the next.
 */
function* encodeLockSnapshotParts(
  snapshot: LockSnapshot,
  sliceLength = SNAPSHOT_SLICE_ITEMS,
): Generator<Uint8Array | typeof SLICE_NEXT> {
  const keys = Object.keys(snapshot) as (keyof LockSnapshot)[];
  yield Uint8Array.of(MAP16, keys.length >>> 8, keys.length & 0xff);
  for (const key of keys) {
    yield snapshotPackr.pack(key, RESET_BUFFER_MODE);
    const value: unknown = snapshot[key];
    if (!Array.isArray(value) || value.length <= sliceLength) {
      yield snapshotPackr.pack(value, RESET_BUFFER_MODE);
      continue;
    }
    yield arrayHeader(value.length);
    for (let start = 0; start < value.length; start += sliceLength) {
      yield SLICE_NEXT;
      const slice = snapshotPackr.pack(value.slice(start, start + sliceLength), RESET_BUFFER_MODE);
      yield slice.subarray(arrayHeaderLength(slice));
    }
  }
}

const MAP16 = 0xde;
const EMPTY_ARRAY = 0x90;
const FIXARRAY_MAX = 15;
const ARRAY16 = 0xdc;
const ARRAY32 = 0xdd;

function arrayHeader(length: number): Uint8Array {
  if (length <= FIXARRAY_MAX) return Uint8Array.of(EMPTY_ARRAY | length);
  if (length <= 0xffff) return Uint8Array.of(ARRAY16, length >>> 8, length & 0xff);
  const header = new Uint8Array(5);
  header[0] = ARRAY32;
  new DataView(header.buffer).setUint32(1, length);
  return header;
}

function arrayHeaderLength(encoded: Uint8Array): number {
  const first = encoded[0] ?? 0;
  if (first === ARRAY16) return 3;
  if (first === ARRAY32) return 5;
  return 1;
}
