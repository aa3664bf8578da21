/**
 * Review of perf-stalls (snapshots off the hot path): the state copied at the snapshot's
 * index while later commands apply between encoding slices, the snapshot stored beside
 * the log writes on real LevelDB (fail-stop, close in flight, crash before/during
 * compaction), and the slicing-by-8 CRC against the byte-at-a-time one it replaced.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type LockCommand, LockStateMachine } from '../../src/lock/index.ts';
import {
  decodeLockSnapshot,
  encodeEntry,
  encodeLockSnapshot,
  encodeLockSnapshotInSlices,
} from '../../src/node/entry-codec.ts';
import { Snapshotter } from '../../src/node/snapshotter.ts';
import type { ClusterConfig, Entry } from '../../src/raft/types.ts';
import { decodeSnapshot, encodeSnapshot } from '../../src/storage/codec.ts';
import { crc32c } from '../../src/storage/crc32.ts';
import { LevelStorage } from '../../src/storage/level-storage.ts';
import { type LogIndex, logIndex, sessionId, term } from '../../src/util/ids.ts';
import { hardState, ids } from '../raft/harness.ts';
import { beforeEachWrite } from '../support/level-writes.ts';

const [a, b, c] = ids('a', 'b', 'c');
const config: ClusterConfig = { voters: [a, b, c], learners: [] };

// ------------------------------------------------------------------ a workload

/**
 * Drives a state machine with commands that REPLACE remembered results (retried
 * acquires, queued waiters promoted, withdrawals with attempts left, releases, closed
 * sessions) as well as add them: the ones a shared object mutated after the copy would
 * show up in.
 */
class Workload {
  private seed: number;
  private next = 1;
  private readonly acquires: { lock: string; sessionId: number; requestId: string; at: number }[] =
    [];
  readonly machine = new LockStateMachine();

  constructor(seed: number) {
    this.seed = seed;
  }

  private random(n: number): number {
    this.seed = (Math.imul(this.seed, 1103515245) + 12345) >>> 0;
    return (this.seed >>> 8) % n;
  }

  get appliedIndex(): number {
    return this.next - 1;
  }

  /** The command for the next index (what a log entry would carry). */
  command(): LockCommand {
    const index = this.next;
    if (index <= 12) {
      return {
        type: 'OpenSession',
        ttlMs: 60_000,
        clientName: `c${index}`,
        requestId: `o${index}`,
      };
    }
    const session = sessionId(1 + this.random(12));
    const roll = this.random(10);
    const old = this.acquires[this.random(Math.max(1, this.acquires.length))];
    if (roll < 2 && old !== undefined) {
      // A retry: the remembered result gets another open attempt (replaced, not edited).
      return {
        type: 'Acquire',
        lock: old.lock,
        sessionId: sessionId(old.sessionId),
        mode: 'exclusive',
        waitMs: 30_000,
        requestId: old.requestId,
        owner: 'o',
        maxHoldMs: 0,
        lockDelayMs: 0,
      };
    }
    if (roll < 3 && old !== undefined) {
      return {
        type: 'Withdraw',
        lock: old.lock,
        sessionId: sessionId(old.sessionId),
        requestId: old.requestId,
        attemptIndex: logIndex(old.at),
      };
    }
    if (roll < 4) {
      // A Revoke frees the lock; the head waiter is promoted (its Queued result rewritten).
      return { type: 'Revoke', lock: `l${this.random(8)}`, reason: 'review' };
    }
    if (roll < 5) {
      return { type: 'Promote', lock: `l${this.random(8)}`, afterIndex: logIndex(index - 1) };
    }
    if (roll < 6) {
      return { type: 'KeepAlive', sessionIds: [session] };
    }
    const lock = `l${this.random(8)}`;
    const requestId = `r${index}`;
    this.acquires.push({ lock, sessionId: session, requestId, at: index });
    return {
      type: 'Acquire',
      lock,
      sessionId: session,
      mode: this.random(3) === 0 ? 'shared' : 'exclusive',
      waitMs: this.random(2) === 0 ? 0 : 30_000,
      requestId,
      owner: 'o',
      maxHoldMs: 0,
      lockDelayMs: 0,
    };
  }

  /** Applies the next command; returns the log entry that carries it. */
  applyNext(entryTerm = 1): Entry {
    const index = this.next++;
    const command = this.command();
    this.machine.apply(logIndex(index), command);
    return {
      kind: 'normal',
      index: logIndex(index),
      term: term(entryTerm),
      data: new TextEncoder().encode(JSON.stringify(command)),
    };
  }

  /** Indexes 2.. (index 1 is the bootstrap snapshot's). */
  static startingAt2(seed: number): Workload {
    const workload = new Workload(seed);
    workload.next = 2;
    return workload;
  }
}

const same = (x: Uint8Array, y: Uint8Array): boolean => Buffer.from(x).equals(Buffer.from(y));

describe('review(perf-stalls): the snapshot is the state at its index', () => {
  it('commands applied between encoding slices (results replaced, evicted, promoted) do not leak in', async () => {
    const workload = new Workload(7);
    while (workload.machine.snapshot().dedupe.length < 3_000) workload.applyNext();
    const atK = workload.machine.snapshot();
    const expected = encodeLockSnapshot(workload.machine.snapshot());
    let pauses = 0;

    const sliced = await encodeLockSnapshotInSlices(
      atK,
      async () => {
        pauses++;
        // The node encodes entries with the same msgpackr (shared buffer) between slices.
        for (let i = 0; i < 200; i++) {
          encodeEntry({ proposalId: `p${i}`, command: workload.command() });
          workload.applyNext();
        }
      },
      250,
    );

    expect(pauses).toBeGreaterThan(10);
    // The machine moved on (sanity: the test would see a leak).
    expect(same(encodeLockSnapshot(workload.machine.snapshot()), expected)).toBe(false);
    expect(same(sliced, expected)).toBe(true);
    const restored = new LockStateMachine();
    restored.restore(decodeLockSnapshot(sliced));
    expect(same(encodeLockSnapshot(restored.snapshot()), expected)).toBe(true);
  });
});

// ------------------------------------------------------------------ real LevelDB

const dirs: string[] = [];
afterEach(() => {
  vi.restoreAllMocks();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function freshStorage(): Promise<{ path: string; storage: LevelStorage }> {
  const dir = mkdtempSync(join(tmpdir(), 'dlm-review-stalls-'));
  dirs.push(dir);
  const path = join(dir, 'n1');
  const storage = await LevelStorage.open(path, { bootstrap: config });
  return { path, storage };
}

/** Applies `count` commands and persists their entries (as the Ready loop would first). */
async function applyAndPersist(
  storage: LevelStorage,
  workload: Workload,
  count: number,
): Promise<void> {
  const entries: Entry[] = [];
  for (let i = 0; i < count; i++) entries.push(workload.applyNext());
  const last = entries.at(-1)?.index ?? 0;
  await storage.persist({ entries, hardState: hardState(1, a, last) });
}

/** Small, so that a few hundred entries take several compaction steps. */
const COMPACTION_SLICE_ENTRIES = 250;

function snapshotterOn(
  storage: LevelStorage,
  workload: Workload,
  options: { threshold: number; retain: number; pause?: () => Promise<void> },
) {
  const failures: unknown[] = [];
  const reports: LogIndex[] = [];
  const snapshotter = new Snapshotter(
    {
      storage,
      appliedIndex: () => logIndex(workload.appliedIndex),
      installPending: () => false,
      config: () => config,
      captureState: () => workload.machine.snapshot(),
      failed: (error) => failures.push(error),
      snapshotted: (report) => reports.push(report.index),
    },
    {
      snapshotEntriesThreshold: options.threshold,
      compactionRetainEntries: options.retain,
      compactionSliceEntries: COMPACTION_SLICE_ENTRIES,
      ...(options.pause === undefined ? {} : { pause: options.pause }),
    },
  );
  return { snapshotter, failures, reports };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2_000; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('review(perf-stalls): Snapshotter on real LevelDB', () => {
  it('stores the state at k, labeled k, while later entries are persisted and applied between slices', async () => {
    const { path, storage } = await freshStorage();
    const workload = Workload.startingAt2(11);
    while (workload.machine.snapshot().dedupe.length < 2_500) {
      await applyAndPersist(storage, workload, 200);
    }
    const k = workload.appliedIndex;
    const expected = encodeLockSnapshot(workload.machine.snapshot());
    let pauses = 0;
    const { snapshotter, failures, reports } = snapshotterOn(storage, workload, {
      threshold: 100,
      retain: 10,
      // The Ready loop goes on between slices: persist, then apply.
      pause: async () => {
        pauses++;
        await applyAndPersist(storage, workload, 50);
      },
    });

    snapshotter.maybeStart();
    await until(() => reports.length > 0 || failures.length > 0, 'the snapshot');
    await snapshotter.stop();
    await storage.close();

    expect(failures).toEqual([]);
    expect(pauses).toBeGreaterThan(1);
    expect(workload.appliedIndex).toBeGreaterThan(k);
    const reopened = await LevelStorage.open(path);
    try {
      expect(reopened.snapshot().metadata.index).toBe(k);
      expect(same(reopened.snapshot().data, expected)).toBe(true);
      expect(reopened.lastIndex()).toBe(workload.appliedIndex);
    } finally {
      await reopened.close();
    }
  });

  it('a persist that fails while the snapshot is encoded: the snapshot is not written, the node is told', async () => {
    const { path, storage } = await freshStorage();
    const workload = Workload.startingAt2(3);
    while (workload.machine.snapshot().dedupe.length < 1_500) {
      await applyAndPersist(storage, workload, 200);
    }
    let failNext = false;
    let batchesAfterFailure = 0;
    let failed = false;
    beforeEachWrite(() => {
      if (failed) batchesAfterFailure++;
      if (failNext) {
        failNext = false;
        failed = true;
        throw Object.assign(new Error('IO error: No space left on device'), { code: 'ENOSPC' });
      }
    });
    let persistOutcome = '';
    const { snapshotter, failures } = snapshotterOn(storage, workload, {
      threshold: 100,
      retain: 10,
      pause: async () => {
        if (failed) return;
        failNext = true;
        persistOutcome = await applyAndPersist(storage, workload, 5).then(
          () => 'acknowledged',
          (error: unknown) => String(error),
        );
      },
    });

    snapshotter.maybeStart();
    await until(() => failures.length > 0, 'the snapshot to fail');
    await snapshotter.stop();
    await storage.close();

    expect(persistOutcome).toContain('No space left');
    expect(String(failures[0])).toContain('refusing to write after a failed write');
    expect(batchesAfterFailure).toBe(0);
    const reopened = await LevelStorage.open(path);
    try {
      expect(reopened.snapshot().metadata.index).toBe(1);
    } finally {
      await reopened.close();
    }
  });

  it('a snapshot write that fails stops the node, and no later write is made', async () => {
    const { storage } = await freshStorage();
    const workload = Workload.startingAt2(5);
    await applyAndPersist(storage, workload, 300);
    let batches = 0;
    beforeEachWrite((write) => {
      batches = write;
      if (write === 1) throw Object.assign(new Error('IO error: EIO'), { code: 'EIO' });
    });
    const { snapshotter, failures } = snapshotterOn(storage, workload, {
      threshold: 100,
      retain: 10,
    });

    snapshotter.maybeStart();
    await until(() => failures.length > 0, 'the snapshot to fail');
    const persist = await applyAndPersist(storage, workload, 1).then(
      () => 'acknowledged',
      (error: unknown) => String(error),
    );
    await snapshotter.stop();
    await storage.close();

    expect(String(failures[0])).toContain('EIO');
    expect(persist).toContain('refusing to write after a failed write');
    expect(batches).toBe(1);
  });

  it('closed while a snapshot is in flight: stop waits for it, close succeeds, the store reopens', async () => {
    const { path, storage } = await freshStorage();
    const workload = Workload.startingAt2(9);
    while (workload.machine.snapshot().dedupe.length < 3_000) {
      await applyAndPersist(storage, workload, 300);
    }
    const k = workload.appliedIndex;
    const { snapshotter, failures } = snapshotterOn(storage, workload, {
      threshold: 100,
      retain: 10,
    });

    snapshotter.maybeStart();
    expect(snapshotter.busy).toBe(true);
    await snapshotter.stop();
    await storage.close();
    snapshotter.maybeStart(); // after stop: starts nothing

    expect(failures).toEqual([]);
    expect(snapshotter.busy).toBe(false);
    const reopened = await LevelStorage.open(path);
    try {
      expect(reopened.snapshot().metadata.index).toBe(k);
    } finally {
      await reopened.close();
    }
  });

  it('crash after the snapshot, and crash between compaction slices: reopens, never compacts past snapshot - retain', async () => {
    const { path, storage } = await freshStorage();
    const workload = Workload.startingAt2(13);
    await applyAndPersist(storage, workload, 1_200);
    const first = snapshotterOn(storage, workload, { threshold: 100, retain: 10 });
    first.snapshotter.maybeStart();
    await until(() => first.reports.length > 0, 'the first snapshot');
    const k1 = workload.appliedIndex;
    // Crash before any compaction: the snapshot is durable, the log untouched.
    await first.snapshotter.stop();
    await storage.close();

    let reopened = await LevelStorage.open(path);
    expect(reopened.snapshot().metadata.index).toBe(k1);
    expect(reopened.firstIndex()).toBe(2);
    expect(reopened.lastIndex()).toBe(k1);
    // The next process compacts only after its own next snapshot (nothing to go on).
    const second = snapshotterOn(reopened, workload, { threshold: 100, retain: 10 });
    await second.snapshotter.compactStep();
    expect(reopened.firstIndex()).toBe(2);
    await applyAndPersist(reopened, workload, 150);
    second.snapshotter.maybeStart();
    await until(() => second.reports.length > 0, 'the second snapshot');
    const k2 = workload.appliedIndex;
    // Two slices, then a crash in the middle of compaction.
    for (let i = 0; i < 2; i++) {
      const before = reopened.firstIndex();
      await second.snapshotter.compactStep();
      expect(reopened.firstIndex() - before).toBe(COMPACTION_SLICE_ENTRIES);
    }
    await second.snapshotter.stop();
    await reopened.close();

    reopened = await LevelStorage.open(path);
    try {
      expect(reopened.snapshot().metadata.index).toBe(k2);
      expect(reopened.firstIndex()).toBe(2 + 2 * COMPACTION_SLICE_ENTRIES);
      expect(reopened.lastIndex()).toBe(k2);
      // After this restart, compaction again waits for the next snapshot, and then
      // goes exactly to snapshot - retain, never further.
      const third = snapshotterOn(reopened, workload, { threshold: 100, retain: 10 });
      await applyAndPersist(reopened, workload, 120);
      third.snapshotter.maybeStart();
      await until(() => third.reports.length > 0, 'the third snapshot');
      const k3 = workload.appliedIndex;
      for (let i = 0; i < 20; i++) await third.snapshotter.compactStep();
      expect(reopened.firstIndex() - 1).toBe(k3 - 10);
      await third.snapshotter.stop();
    } finally {
      await reopened.close();
    }
  });
});

// ------------------------------------------------------------------ CRC

/** The byte-at-a-time CRC-32C that main used (the reference for old records). */
const BYTEWISE_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
    table[byte] = crc >>> 0;
  }
  return table;
})();

function bytewiseCrc32c(bytes: Uint8Array, crc = 0): number {
  let state = ~crc >>> 0;
  for (const byte of bytes) state = (BYTEWISE_TABLE[(state ^ byte) & 0xff] ?? 0) ^ (state >>> 8);
  return ~state >>> 0;
}

describe('review(perf-stalls): slicing-by-8 CRC-32C', () => {
  it('equals the byte-at-a-time CRC at every length, offset and continuation', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 300 }),
        fc.nat(16),
        fc.nat(),
        fc.nat(),
        (data, offset, cutSeed, seed) => {
          const view = data.subarray(Math.min(offset, data.length));
          const cut = view.length === 0 ? 0 : cutSeed % (view.length + 1);
          expect(crc32c(view)).toBe(bytewiseCrc32c(view));
          expect(crc32c(view, seed >>> 0)).toBe(bytewiseCrc32c(view, seed >>> 0));
          expect(crc32c(view.subarray(cut), crc32c(view.subarray(0, cut)))).toBe(
            bytewiseCrc32c(view),
          );
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('reads a snapshot record framed by the old CRC, and refuses it with any byte changed', () => {
    const data = Uint8Array.from({ length: 70_001 }, (_, i) => (i * 131 + (i >> 7)) & 0xff);
    const snapshot = {
      metadata: { index: logIndex(42), term: term(3), config },
      data,
    };
    const record = encodeSnapshot(snapshot);
    // Reframe with the old checksum: what main wrote is what this reads.
    const old = record.slice();
    new DataView(old.buffer).setUint32(0, bytewiseCrc32c(old.subarray(4)));
    expect(same(old, record)).toBe(true);
    expect(decodeSnapshot(old)).toEqual(snapshot);
    let seed = 1;
    for (let i = 0; i < 300; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const damaged = old.slice();
      const at = seed % damaged.length;
      damaged[at] = (damaged[at] ?? 0) ^ (1 + ((seed >>> 16) % 255));
      expect(() => decodeSnapshot(damaged)).toThrow();
    }
  });
});
