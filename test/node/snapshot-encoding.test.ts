/**
 * The snapshot is encoded a slice at a time (src/node/snapshotter.ts) and must be the
 * same bytes as the one-piece encoding: followers decode it, restarts decode it, and
 * older nodes must too. Every MessagePack array-length form is crossed: fixarray (up to
 * 15), array16 (up to 65,535) and array32.
 */
import { describe, expect, it } from 'vitest';
import {
  BEHAVIOUR_LATEST,
  type LockCommand,
  type LockSnapshot,
  LockStateMachine,
} from '../../src/lock/index.ts';
import {
  decodeLockSnapshot,
  encodeEntry,
  encodeLockSnapshot,
  encodeLockSnapshotInSlices,
} from '../../src/node/entry-codec.ts';
import { logIndex, sessionId } from '../../src/util/ids.ts';

/** A real state machine's snapshot, its dedupe window replaced by `count` results. */
function snapshotWithResults(count: number): LockSnapshot {
  const machine = new LockStateMachine();
  machine.apply(logIndex(1), {
    type: 'OpenSession',
    ttlMs: 10_000,
    clientName: 'bench',
    requestId: 'open-1',
  });
  machine.apply(logIndex(2), {
    type: 'Acquire',
    lock: 'held',
    sessionId: sessionId(1),
    mode: 'exclusive',
    waitMs: 0,
    requestId: 'acquire-2',
    owner: 'o',
    maxHoldMs: 0,
    lockDelayMs: 0,
  });
  const base = machine.snapshot();
  const sample = base.dedupe[0];
  if (sample === undefined) throw new Error('the machine remembered nothing');
  const dedupe = Array.from({ length: count }, (_, i) => [`Release/1/r-${i}`, sample[1]] as const);
  return { ...base, dedupe };
}

const noPause = async (): Promise<void> => {};

const RELEASE: LockCommand = {
  type: 'Release',
  lock: 'held',
  sessionId: sessionId(1),
  token: '2',
  requestId: 'release-between',
} as unknown as LockCommand;

describe('encodeLockSnapshotInSlices', () => {
  it.each([
    [0, 4],
    [1, 4],
    [5, 4],
    [15, 4],
    [16, 4],
    [17, 16],
    [1_000, 7],
    [65_535, 4_096],
    [65_536, 4_096],
    [70_001, 1_000],
  ])('%i results in slices of %i: the same bytes as one piece', async (count, slice) => {
    const snapshot = snapshotWithResults(count);
    let pauses = 0;

    const sliced = await encodeLockSnapshotInSlices(
      snapshot,
      async () => {
        pauses++;
      },
      slice,
    );

    expect(Buffer.from(sliced).equals(Buffer.from(encodeLockSnapshot(snapshot)))).toBe(true);
    expect(decodeLockSnapshot(sliced).dedupe).toHaveLength(count);
    // Sliced only when there is more than one slice.
    expect(pauses).toBe(count > slice ? Math.ceil(count / slice) : 0);
  });

  it.each([
    ['no hint: grown from the smallest buffer', 0],
    ['a hint a little too large: the buffer kept, its slack under a sixteenth', 1.04],
    ['a hint far too large: copied to its size', 3],
  ])('%s, the same bytes as one piece', async (_, factor) => {
    const snapshot = snapshotWithResults(3_000);
    const expected = Buffer.from(encodeLockSnapshot(snapshot));
    const sliced = await encodeLockSnapshotInSlices(
      snapshot,
      noPause,
      100,
      expected.byteLength * factor,
    );
    expect(Buffer.from(sliced).equals(expected)).toBe(true);
    const slack = sliced.buffer.byteLength - sliced.byteLength;
    if (factor === 1.04) expect(slack).toBeGreaterThan(0);
    expect(slack * 16).toBeLessThanOrEqual(sliced.byteLength);
  });

  it('is not written over by what msgpackr encodes between its slices', async () => {
    // The slices are encoded in msgpackr's working buffer, which every encoder of the
    // process shares (entries, peer messages): what is made meanwhile must not be lost.
    const snapshot = snapshotWithResults(2_000);
    const expected = Buffer.from(encodeLockSnapshot(snapshot));
    const between: { data: Uint8Array; copy: Buffer }[] = [];
    const sliced = await encodeLockSnapshotInSlices(
      snapshot,
      async () => {
        const data = encodeEntry({ proposalId: `p-${between.length}`, command: RELEASE });
        between.push({ data, copy: Buffer.from(data) });
      },
      50,
    );
    expect(Buffer.from(sliced).equals(expected)).toBe(true);
    expect(between.length).toBeGreaterThan(10);
    for (const { data, copy } of between) expect(Buffer.from(data).equals(copy)).toBe(true);
  });

  it('takes its copy at the call: a state changed afterwards is not in it', async () => {
    const machine = new LockStateMachine();
    for (let i = 1; i <= 50; i++) {
      machine.apply(logIndex(i), {
        type: 'OpenSession',
        ttlMs: 10_000,
        clientName: 'c',
        requestId: `open-${i}`,
      });
    }
    const snapshot = machine.snapshot();
    const expected = encodeLockSnapshot(snapshot);
    const encoding = encodeLockSnapshotInSlices(snapshot, noPause, 8);
    machine.apply(logIndex(51), {
      type: 'OpenSession',
      ttlMs: 10_000,
      clientName: 'c',
      requestId: 'open-51',
    });

    expect(Buffer.from(await encoding).equals(Buffer.from(expected))).toBe(true);
  });

  it('slices the sessions and the locks too: the same bytes as one piece, a pause per slice', async () => {
    const machine = new LockStateMachine();
    const sessions = 40;
    for (let i = 1; i <= sessions; i++) {
      machine.apply(logIndex(i), {
        type: 'OpenSession',
        ttlMs: 10_000,
        clientName: 'c',
        requestId: `open-${i}`,
      });
    }
    const locks = 1_100;
    for (let i = 0; i < locks; i++) {
      machine.apply(logIndex(sessions + 1 + i), {
        type: 'Acquire',
        lock: `lock-${i}`,
        sessionId: sessionId(1 + (i % sessions)),
        mode: i % 3 === 0 ? 'shared' : 'exclusive',
        waitMs: 0,
        requestId: `acquire-${i}`,
        owner: `owner-${i % 7}`,
        maxHoldMs: 0,
        lockDelayMs: 0,
      });
    }
    const snapshot = machine.snapshot();
    expect(snapshot.locks).toHaveLength(locks);
    let pauses = 0;

    const joined = Buffer.from(
      await encodeLockSnapshotInSlices(
        snapshot,
        async () => {
          pauses++;
        },
        16,
      ),
    );
    expect(joined.equals(Buffer.from(encodeLockSnapshot(snapshot)))).toBe(true);
    const sliced = [snapshot.sessions, snapshot.locks, snapshot.dedupe].filter(
      (array) => array.length > 16,
    );
    expect(pauses).toBe(sliced.reduce((sum, array) => sum + Math.ceil(array.length / 16), 0));
    expect(decodeLockSnapshot(joined)).toEqual(decodeLockSnapshot(encodeLockSnapshot(snapshot)));
  });
});

describe('decodeLockSnapshot', () => {
  it('decodes wide and long strings nine levels deep unchanged: restored, the same bytes', () => {
    const machine = new LockStateMachine();
    const owner = 'owner-ünïcode-€-and-long-enough-to-slice';
    machine.apply(logIndex(1), { type: 'SetBehaviour', version: BEHAVIOUR_LATEST });
    machine.apply(logIndex(2), {
      type: 'OpenSession',
      ttlMs: 10_000,
      clientName: 'a client name longer than thirteen',
      requestId: 'open-request-0001',
    });
    // A remembered AcquiredAll: its holders' owners are the deepest strings (9 levels).
    machine.apply(logIndex(3), {
      type: 'AcquireAll',
      locks: [
        { lock: 'orders/€-2026/first-lock', mode: 'exclusive' },
        { lock: 'orders/2026/second-lock', mode: 'exclusive' },
      ],
      sessionId: sessionId(2),
      waitMs: 0,
      requestId: 'acquire-all-request-0002',
      owner,
      maxHoldMs: 0,
      lockDelayMs: 0,
    });
    const bytes = encodeLockSnapshot(machine.snapshot());
    expect(machine.snapshot().dedupe.map(([, remembered]) => remembered.result.type)).toContain(
      'AcquiredAll',
    );

    const decoded = decodeLockSnapshot(bytes);

    expect(JSON.stringify(decoded)).toContain(owner);
    expect(Buffer.from(encodeLockSnapshot(decoded)).equals(Buffer.from(bytes))).toBe(true);
    const restored = new LockStateMachine();
    restored.restore(decoded);
    expect(Buffer.from(encodeLockSnapshot(restored.snapshot())).equals(Buffer.from(bytes))).toBe(
      true,
    );
  });
});
