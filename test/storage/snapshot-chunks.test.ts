/**
 * Snapshots stored in chunks (issue 12): what a database of the layout before them
 * reads as, how chunks are written and replaced, and what a crash or damage between
 * them leaves.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DEFAULT_RUNTIME_CONFIG } from '../../src/config/types.ts';
import type { ClusterConfig } from '../../src/raft/types.ts';
import { decodeSnapshotManifest } from '../../src/storage/codec.ts';
import { decodeChunkKey, encodeChunkKey } from '../../src/storage/keys.ts';
import {
  putCompactionPoint,
  putEntry,
  putHardState,
  putSnapshot,
  putSnapshotChunk,
  SNAPSHOT_KEY,
  SNAPSHOT_MANIFEST_KEY,
} from '../../src/storage/level-layout.ts';
import {
  INSTALL_CHUNK_BYTES as INSTALL_CHUNK_BYTES_DEFAULT,
  LevelStorage,
  SNAPSHOT_CHUNK_BYTES,
} from '../../src/storage/level-storage.ts';
import { logIndex as idx, term as tm } from '../../src/util/ids.ts';
import { entry, hardState, ids } from '../raft/harness.ts';
import { beforeEachWrite, withRawDb } from '../support/level-writes.ts';

const [a, b, c] = ids('a', 'b', 'c');
const config: ClusterConfig = { voters: [a, b, c], learners: [] };
const CHUNK_BYTES = 8;
/** A leader's snapshot, installed, goes in chunks of its own size. */
const INSTALL_CHUNK_BYTES = 16;

/** `length` bytes that differ from position to position, from `seed` on. */
function data(length: number, seed = 0): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (seed + i * 7) & 0xff);
}

/** [generation, position] of every stored chunk, in key order. */
function chunkKeys(path: string): Promise<(readonly [number, number])[]> {
  return withRawDb(path, async (s) => {
    const keys: (readonly [number, number])[] = [];
    for await (const key of s.snapshotChunk.keys()) {
      const at = decodeChunkKey(key);
      if (at === undefined) throw new Error('not a chunk key');
      keys.push(at);
    }
    return keys;
  });
}

function storedManifest(path: string) {
  return withRawDb(path, async (s) => {
    const value = await s.snapshot.get(SNAPSHOT_MANIFEST_KEY);
    return value === undefined ? undefined : decodeSnapshotManifest(value);
  });
}

describe('LevelStorage: snapshots in chunks', () => {
  it("stores in chunks of the config's default sizes when opened without them", () => {
    // The config cannot import storage (LevelDB's native module): the two must agree.
    expect(DEFAULT_RUNTIME_CONFIG.snapshotChunkBytes).toBe(SNAPSHOT_CHUNK_BYTES);
    expect(DEFAULT_RUNTIME_CONFIG.snapshotInstallChunkBytes).toBe(INSTALL_CHUNK_BYTES_DEFAULT);
  });

  let dir: string;
  let path: string;
  const opened: LevelStorage[] = [];
  const open = async (bootstrap = false): Promise<LevelStorage> => {
    const storage = await LevelStorage.open(path, {
      snapshotChunkBytes: CHUNK_BYTES,
      snapshotInstallChunkBytes: INSTALL_CHUNK_BYTES,
      ...(bootstrap ? { bootstrap: config } : {}),
    });
    opened.push(storage);
    return storage;
  };
  const close = async (storage: LevelStorage): Promise<void> => {
    opened.splice(opened.indexOf(storage), 1);
    await storage.close();
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dlm-chunks-'));
    path = join(dir, 'n1');
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    for (const storage of opened.splice(0)) await storage.close().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });

  /** Entries 2..6 (terms 1,1,2,2,2) after the bootstrap snapshot, closed. */
  async function withLog(): Promise<void> {
    const storage = await open(true);
    await storage.persist({
      entries: [1, 1, 2, 2, 2].map((t, i) => entry(i + 2, t)),
      hardState: hardState(2, a, 6),
    });
    await close(storage);
  }

  it('reads a database of the layout before chunks, and its next snapshot replaces the old record', async () => {
    // Exactly what the previous release wrote: the snapshot as one value under "latest".
    const oldData = data(50, 3);
    await withRawDb(path, (s, db) =>
      db.batch(
        [
          putSnapshot(s, { metadata: { index: idx(5), term: tm(2), config }, data: oldData }),
          putCompactionPoint(s, { index: idx(5), term: tm(2) }),
          putHardState(s, hardState(2, a, 7)),
          putEntry(s, entry(6, 2)),
          putEntry(s, entry(7, 2)),
        ],
        { sync: true },
      ),
    );

    let storage = await open();
    expect(storage.snapshot()).toEqual({ metadata: { index: 5, term: 2, config }, data: oldData });
    expect(storage.entries(idx(6), idx(8), Number.MAX_SAFE_INTEGER)).toEqual([
      entry(6, 2),
      entry(7, 2),
    ]);

    const newData = data(20, 9);
    await storage.createSnapshot(idx(7), config, newData);
    await close(storage);

    const oldRecord = await withRawDb(path, (s) => s.snapshot.get(SNAPSHOT_KEY));
    expect(oldRecord).toBeUndefined();
    expect((await chunkKeys(path)).map(([, position]) => position)).toEqual([0, 1, 2]);
    storage = await open();
    expect(storage.snapshot().data).toEqual(newData);
    expect(storage.snapshot().metadata).toEqual({ index: 7, term: 2, config });
  });

  it('stores a snapshot in bounded chunks, read back whole, and drops the previous snapshot with the new manifest', async () => {
    await withLog();
    let storage = await open();
    await storage.createSnapshot(idx(3), config, Buffer.concat([data(5), data(12, 1)]));
    const first = await withRawDbAfterClose(storage);
    expect(first.map(([, position]) => position)).toEqual([0, 1, 2]);

    storage = await open();
    expect(storage.snapshot().data).toEqual(Uint8Array.from([...data(5), ...data(12, 1)]));
    await storage.createSnapshot(idx(5), config, data(9, 4));
    const second = await withRawDbAfterClose(storage);
    // Only the new generation's chunks are left.
    expect(second.map(([, position]) => position)).toEqual([0, 1]);
    expect(new Set(second.map(([generation]) => generation)).size).toBe(1);
    expect(second[0]?.[0]).toBeGreaterThan(first[0]?.[0] ?? Number.POSITIVE_INFINITY);

    storage = await open();
    expect(storage.snapshot().data).toEqual(data(9, 4));
  });

  async function withRawDbAfterClose(storage: LevelStorage) {
    await close(storage);
    return chunkKeys(path);
  }

  it("a leader's snapshot is stored in chunks of the install size, and reads back after a restart", async () => {
    await withLog();
    let storage = await open();
    const leaders = data(30, 5);
    await storage.persist({
      snapshot: { metadata: { index: idx(20), term: tm(4), config }, data: leaders },
      hardState: hardState(4, null, 20),
    });
    await close(storage);
    // 30 bytes: 2 chunks of INSTALL_CHUNK_BYTES (4 of CHUNK_BYTES, a local snapshot's).
    expect(await chunkKeys(path)).toHaveLength(2);

    storage = await open();
    expect(storage.snapshot()).toEqual({
      metadata: { index: 20, term: 4, config },
      data: leaders,
    });
    expect(storage.firstIndex()).toBe(21);
  });

  it('a damaged chunk is named, and so is a missing one', async () => {
    await withLog();
    const storage = await open();
    await storage.createSnapshot(idx(4), config, data(20));
    await close(storage);
    const manifest = await storedManifest(path);
    const generation = manifest?.generation ?? -1;

    await withRawDb(path, async (s) => {
      const key = encodeChunkKey(generation, 1);
      const value = await s.snapshotChunk.get(key);
      if (value === undefined) throw new Error('no chunk 1');
      const damaged = new Uint8Array(value);
      damaged[damaged.byteLength - 1] = (damaged[damaged.byteLength - 1] ?? 0) ^ 1;
      await s.snapshotChunk.put(key, damaged);
    });
    await expect(open()).rejects.toThrow(
      `${path} snapshotChunk generation ${generation} chunk 1: checksum mismatch`,
    );

    await withRawDb(path, (s) => s.snapshotChunk.del(encodeChunkKey(generation, 1)));
    await expect(open()).rejects.toThrow(
      `${path} snapshotChunk generation ${generation} chunk 1: found 2 instead`,
    );

    await withRawDb(path, (s) => s.snapshotChunk.del(encodeChunkKey(generation, 2)));
    await expect(open()).rejects.toThrow(
      `${path} snapshotChunk generation ${generation}: 1 chunks of 8 bytes`,
    );
  });

  it('a chunk stored under the wrong generation is caught by the whole checksum', async () => {
    await withLog();
    const storage = await open();
    await storage.createSnapshot(idx(4), config, data(16));
    await close(storage);
    const generation = (await storedManifest(path))?.generation ?? -1;
    // A well-formed chunk with its own valid checksum, but not the bytes written.
    await withRawDb(path, (s, db) =>
      db.batch([putSnapshotChunk(s, generation, 1, data(8, 100))], { sync: true }),
    );

    await expect(open()).rejects.toThrow(
      `${path} snapshotChunk generation ${generation}: 2 chunks`,
    );
  });

  it('a crash between chunks leaves the old snapshot whole; the next open drops the orphans', async () => {
    await withLog();
    let storage = await open();
    await storage.createSnapshot(idx(3), config, data(10, 1));
    await close(storage);
    const before = await storedManifest(path);

    storage = await open();
    // The third chunk write fails: the process dies there, as far as the disk knows.
    beforeEachWrite((write) => {
      if (write === 3) throw new Error('the machine lost power');
    });
    await expect(storage.createSnapshot(idx(5), config, data(40, 2))).rejects.toThrow(
      'the machine lost power',
    );
    vi.restoreAllMocks();
    await close(storage);
    // Two chunks of the new generation were written, and no manifest names them.
    const orphans = (await chunkKeys(path)).filter(([g]) => g !== before?.generation);
    expect(orphans).toHaveLength(2);

    storage = await open();
    expect(storage.snapshot()).toEqual({
      metadata: { index: 3, term: 1, config },
      data: data(10, 1),
    });
    await close(storage);
    const left = await chunkKeys(path);
    expect(left.every(([g]) => g === before?.generation)).toBe(true);
    expect(left).toHaveLength(2);
  });

  it('the next snapshot goes under a generation above every chunk found at open', async () => {
    await withLog();
    // Orphans above the manifest's generation, as a crash mid-write leaves them.
    await withRawDb(path, (s, db) =>
      db.batch([putSnapshotChunk(s, 40, 0, data(8)), putSnapshotChunk(s, 41, 3, data(2))], {
        sync: true,
      }),
    );
    const storage = await open();
    await storage.createSnapshot(idx(6), config, data(3));
    await close(storage);

    expect((await storedManifest(path))?.generation).toBe(42);
    expect(await chunkKeys(path)).toEqual([[42, 0]]);
  });
});
