/**
 * LevelStorage keeps the latest snapshot's data on disk and reads it when asked for
 * (src/storage/snapshot-read.ts, DiskSnapshot): the data was a second copy of the state
 * on every node (32 MB at 100,000 held locks). Real LevelDB; a full collection is forced
 * so that the data in hand is gone and must be read back.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Level } from 'level';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ClusterConfig, Entry } from '../../src/raft/types.ts';
import { LevelStorage } from '../../src/storage/index.ts';
import { AssertionError } from '../../src/util/assert.ts';
import { logIndex, nodeId, term } from '../../src/util/ids.ts';
import { interceptWritesByKind } from '../support/level-writes.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const config: ClusterConfig = { voters: [nodeId('n1'), nodeId('n2'), nodeId('n3')], learners: [] };
/** Small chunks, so that a snapshot spans several and every chunk path runs. */
const CHUNK_BYTES = 7;

function entries(from: number, to: number): Entry[] {
  return Array.from({ length: to - from + 1 }, (_, offset) => ({
    kind: 'normal' as const,
    index: logIndex(from + offset),
    term: term(1),
    data: new Uint8Array([from + offset]),
  }));
}

/** A snapshot's data that says which index it was taken at. */
function stateAt(index: number): Uint8Array {
  return new TextEncoder().encode(`the state machine at index ${index}, in some detail`);
}

/** Lets the job that last touched the data end (a WeakRef holds its target until then), then collects. */
async function collect(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  gc();
}

describe('LevelStorage keeps the latest snapshot data on disk', () => {
  let dir: string;
  let storage: LevelStorage;
  let getSync: ReturnType<typeof vi.spyOn>;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dlm-disk-snapshot-'));
    storage = await LevelStorage.open(join(dir, 'db'), {
      bootstrap: config,
      snapshotChunkBytes: CHUNK_BYTES,
      snapshotInstallChunkBytes: CHUNK_BYTES,
    });
    await storage.persist({ entries: entries(2, 20) });
    const level = Level.prototype as unknown as Record<'_getSync', (...args: unknown[]) => unknown>;
    getSync = vi.spyOn(level, '_getSync');
    iteratorsOpened = 0;
  });

  /** Resolves once the next LevelDB iterator opened (a background read) is closed. */
  let iteratorsOpened = 0;
  function endOfNextIterator(): Promise<void> {
    const level = Level.prototype as unknown as Record<
      '_iterator',
      (...args: unknown[]) => unknown
    >;
    const open = level._iterator;
    return new Promise((resolve) => {
      vi.spyOn(level, '_iterator').mockImplementation(function (this: unknown, ...args) {
        iteratorsOpened++;
        const iterator = open.apply(this, args) as { _close: () => Promise<void> };
        const close = iterator._close.bind(iterator);
        iterator._close = async () => {
          await close();
          resolve();
        };
        return iterator;
      });
    });
  }

  afterEach(async () => {
    vi.restoreAllMocks();
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('holds none of it once nothing else does, and reads it back whole', async () => {
    await storage.createSnapshot(logIndex(10), config, stateAt(10));
    expect(storage.snapshotDataBytes()).toBe(stateAt(10).byteLength);
    expect(getSync).not.toHaveBeenCalled();

    await collect();
    expect(storage.snapshot().data).toEqual(stateAt(10));
    // Read from disk, a chunk at a time: the store had kept no copy of its own.
    expect(getSync).toHaveBeenCalledTimes(Math.ceil(stateAt(10).byteLength / CHUNK_BYTES));
  });

  it('reads it once while a reader holds it (a transfer to a follower)', async () => {
    await storage.createSnapshot(logIndex(10), config, stateAt(10));
    await collect();
    const held = storage.snapshot().data;
    const reads = getSync.mock.calls.length;
    await collect();
    expect(storage.snapshot().data).toBe(held);
    expect(getSync.mock.calls.length).toBe(reads);
  });

  it('for a transfer, reads it in the background, and holds it until the transfer asks again', async () => {
    await storage.createSnapshot(logIndex(10), config, stateAt(10));
    expect(storage.snapshotDataReady()).toBe(true);
    await collect();
    const readDone = endOfNextIterator();

    expect(storage.snapshotDataReady()).toBe(false);
    expect(storage.snapshotDataReady()).toBe(false);
    await readDone;
    await new Promise((resolve) => setImmediate(resolve));
    // Held while nothing else holds it: a collection between the read and the transfer's
    // next ask must not make it read again.
    await collect();
    expect(storage.snapshotDataReady()).toBe(true);
    // Handed over in that ask: the transfer reads it in the same job, and holds it.
    const data = storage.snapshot().data;
    expect(data).toEqual(stateAt(10));
    // Never read with the event loop held.
    expect(getSync).not.toHaveBeenCalled();
    expect(iteratorsOpened).toBe(1);
  });

  it('the read is held no longer once handed over: it goes with the transfer that took it', async () => {
    await storage.createSnapshot(logIndex(10), config, stateAt(10));
    await collect();
    const readDone = endOfNextIterator();
    expect(storage.snapshotDataReady()).toBe(false);
    await readDone;
    await new Promise((resolve) => setImmediate(resolve));
    expect(storage.snapshotDataReady()).toBe(true);
    // Nothing took it in that job: it is the collector's, and the next ask reads again.
    await collect();
    expect(storage.snapshotDataReady()).toBe(false);
    expect(iteratorsOpened).toBe(2);
  });

  it('a background read that failed refuses the next write (the node stops), and is not tried again', async () => {
    await storage.createSnapshot(logIndex(10), config, stateAt(10));
    await collect();
    const iterators = vi
      .spyOn(Level.prototype as unknown as Record<'_iterator', () => unknown>, '_iterator')
      .mockImplementation(() => {
        throw new Error('injected: the disk is gone');
      });
    expect(storage.snapshotDataReady()).toBe(false);
    await new Promise((resolve) => setImmediate(resolve));
    // Never thrown into the core, which asks from anywhere (a client's write, say).
    expect(storage.snapshotDataReady()).toBe(false);
    expect(iterators).toHaveBeenCalledTimes(1);
    const refused = storage.persist({ entries: entries(21, 21) });
    await expect(refused).rejects.toThrow(/refusing to write after a failed write or read/);
    await expect(refused).rejects.toSatisfy((error: Error) =>
      /reading snapshot 10 back failed/.test(String((error.cause as Error).message)),
    );
  });

  it("reads the data of a leader's snapshot installed here", async () => {
    const metadata = { index: logIndex(30), term: term(2), config };
    await storage.persist({ snapshot: { metadata, data: stateAt(30) } });
    await collect();
    expect(storage.snapshot()).toEqual({ metadata, data: stateAt(30) });
    expect(getSync).toHaveBeenCalled();
  });

  it('reads it back after a restart', async () => {
    await storage.createSnapshot(logIndex(10), config, stateAt(10));
    await storage.close();
    storage = await LevelStorage.open(join(dir, 'db'), {
      snapshotChunkBytes: CHUNK_BYTES,
      snapshotInstallChunkBytes: CHUNK_BYTES,
    });
    await collect();
    expect(storage.snapshot().data).toEqual(stateAt(10));
  });

  // The chunks of the snapshot a new one replaces were deleted in the new one's manifest
  // batch. The mirror names the new one only once that batch resolves, so a read between
  // the two found the old one's chunks gone: now they are deleted after the switch.
  it('a read between a newer snapshot write and its resolving still finds the older data', async () => {
    await storage.createSnapshot(logIndex(10), config, stateAt(10));
    // Only what each read found is kept, never the data: a held copy would be returned
    // from memory instead of read.
    const seen: Array<{ index: number; asTaken: boolean }> = [];
    interceptWritesByKind(async (_write, _kind, run) => {
      await run();
      // The write is done, its promise not yet seen by LevelStorage.
      gc();
      const { metadata, data } = storage.snapshot();
      const asTaken = Buffer.from(data).equals(stateAt(metadata.index));
      seen.push({ index: metadata.index, asTaken });
    });
    await storage.createSnapshot(logIndex(15), config, stateAt(15));
    const metadata = { index: logIndex(30), term: term(2), config };
    await storage.persist({ snapshot: { metadata, data: stateAt(30) } });
    vi.restoreAllMocks();

    expect(seen.length).toBeGreaterThan(4);
    expect(seen.filter(({ asTaken }) => !asTaken)).toEqual([]);
    expect(seen.map(({ index }) => index)).toContain(10);
    expect(seen.map(({ index }) => index)).toContain(15);
    await collect();
    expect(storage.snapshot().data).toEqual(stateAt(30));
  });

  it('refuses to read a snapshot that a newer one replaced, by name', async () => {
    await storage.createSnapshot(logIndex(10), config, stateAt(10));
    const replaced = storage.snapshot();
    await storage.createSnapshot(logIndex(15), config, stateAt(15));
    await collect();
    expect(() => replaced.data).toThrow(AssertionError);
    expect(() => replaced.data).toThrow(/snapshot 10 after a newer one replaced it/);
  });

  it('refuses to read from a closed store, naming it', async () => {
    await storage.createSnapshot(logIndex(10), config, stateAt(10));
    const snapshot = storage.snapshot();
    await storage.close();
    await collect();
    expect(() => snapshot.data).toThrow(/read of snapshot 10 from closed storage .*db/);
    storage = await LevelStorage.open(join(dir, 'db'));
  });
});
