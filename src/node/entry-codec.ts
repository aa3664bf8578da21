import { Packr } from 'msgpackr';
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
  const decoded = packr.unpack(data) as { p: string | null; c: LockCommand };
  return { proposalId: decoded.p, command: decoded.c };
}

/**
 * A snapshot is encoded by an encoder of its own, dropped afterwards: msgpackr keeps its
 * working buffer at the largest size it grew to, and the entries' encoder, grown to a
 * snapshot's size (16 MB at 100,000 locks), then allocated a buffer that large every
 * time one filled up (issue 12).
 */
function snapshotPackr(): Packr {
  return new Packr(PACKR_OPTIONS);
}

export function encodeLockSnapshot(snapshot: LockSnapshot): Uint8Array {
  return snapshotPackr().pack(snapshot);
}

export function decodeLockSnapshot(data: Uint8Array): LockSnapshot {
  return packr.unpack(data) as LockSnapshot;
}

/** Dedupe results encoded per slice before the encoder lets the event loop run. */
export const SNAPSHOT_DEDUPE_SLICE = 1_000;

/**
 * The same bytes as `encodeLockSnapshot`, encoded a slice at a time: the dedupe window
 * (up to 100,000 remembered results, some 15 MB) took hundreds of milliseconds in one
 * piece, and every call and Raft message of the node waited behind it. `pause` runs
 * between slices (production: let the event loop turn). The snapshot must not change
 * meanwhile: its arrays are the caller's copies and the results in them are never
 * mutated (the state machine replaces a remembered result, it does not edit it).
 *
 * MessagePack writes an array as a header (its length) then each element, each on its
 * own, so the dedupe array is written as its header followed by the elements of every
 * slice, each slice's own array header cut off. The object's other fields come first,
 * encoded with an empty dedupe that must be its last field.
 */
export async function encodeLockSnapshotInSlices(
  snapshot: LockSnapshot,
  pause: () => Promise<void>,
  sliceLength = SNAPSHOT_DEDUPE_SLICE,
): Promise<Uint8Array> {
  const { dedupe } = snapshot;
  if (dedupe.length <= sliceLength || Object.keys(snapshot).at(-1) !== 'dedupe') {
    return encodeLockSnapshot(snapshot);
  }
  const encoder = snapshotPackr();
  const head = encoder.pack({ ...snapshot, dedupe: [] });
  // An empty array is the single byte 0x90, last since dedupe is the last field.
  if (head.at(-1) !== EMPTY_ARRAY) return encodeLockSnapshot(snapshot);
  const parts: Uint8Array[] = [head.subarray(0, head.length - 1), arrayHeader(dedupe.length)];
  for (let start = 0; start < dedupe.length; start += sliceLength) {
    await pause();
    const slice = encoder.pack(dedupe.slice(start, start + sliceLength));
    parts.push(slice.subarray(arrayHeaderLength(slice)));
  }
  return concat(parts);
}

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

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}
