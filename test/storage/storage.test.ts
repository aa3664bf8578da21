/**
 * The conformance suite against MemoryStorage and against LevelStorage on a real
 * LevelDB in a temp dir, then what only a durable store can get wrong: corruption found
 * at open, synced batches, and a failed write.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ClusterConfig } from '../../src/raft/types.ts';
import { encodeCompactionPoint, encodeEntry } from '../../src/storage/codec.ts';
import { StorageCorruptionError } from '../../src/storage/errors.ts';
import { decodeIndexKey, encodeIndexKey } from '../../src/storage/keys.ts';
import {
  type Db,
  META_KEY,
  openSublevels,
  SNAPSHOT_MANIFEST_KEY,
  type Sublevels,
} from '../../src/storage/level-layout.ts';
import { LevelStorage } from '../../src/storage/level-storage.ts';
import { MemoryWritableStorage } from '../../src/storage/memory-writable-storage.ts';
import type { WritableStorage } from '../../src/storage/writable-storage.ts';
import { AssertionError } from '../../src/util/assert.ts';
import { logIndex as idx, term as tm } from '../../src/util/ids.ts';
import { entry, hardState, ids } from '../raft/harness.ts';
import { spyOnNativeWrites } from '../support/level-writes.ts';
import { describeStorageConformance, readAll, type StorageFactory } from './conformance.ts';

const [a, b, c] = ids('a', 'b', 'c');
const config: ClusterConfig = { voters: [a, b, c], learners: [] };

// ------------------------------------------------------------------ factories

const memoryFactory: StorageFactory = {
  name: 'MemoryStorage',
  create: async (bootstrap, identity) =>
    bootstrap === 'join'
      ? MemoryWritableStorage.joining(identity)
      : MemoryWritableStorage.bootstrap(bootstrap, identity),
};

/** LevelStorage in fresh temp dirs; tracks what it opened so cleanup can close and remove it. */
function levelFactory(
  snapshotChunkBytes?: number,
): StorageFactory & { tempDir(): Promise<string> } {
  const chunking =
    snapshotChunkBytes === undefined
      ? {}
      : { snapshotChunkBytes, snapshotInstallChunkBytes: snapshotChunkBytes };
  const dirs: string[] = [];
  const open = new Set<LevelStorage>();
  const tempDir = async (): Promise<string> => {
    const dir = await mkdtemp(join(tmpdir(), 'dlm-storage-'));
    dirs.push(dir);
    return dir;
  };
  const opened = (storage: LevelStorage): LevelStorage => {
    open.add(storage);
    return storage;
  };
  return {
    name:
      snapshotChunkBytes === undefined
        ? 'LevelStorage'
        : `LevelStorage, snapshots in ${snapshotChunkBytes}-byte chunks`,
    tempDir,
    create: async (bootstrap, identity) =>
      opened(
        await LevelStorage.open(join(await tempDir(), 'n1'), {
          ...chunking,
          bootstrap,
          ...(identity === undefined ? {} : { identity }),
        }),
      ),
    async reopen(storage) {
      if (!(storage instanceof LevelStorage)) throw new Error('reopen: not a LevelStorage');
      await storage.close();
      open.delete(storage);
      // No bootstrap: a database that holds state must not need one.
      return opened(await LevelStorage.open(storage.path, chunking));
    },
    async cleanup() {
      for (const storage of open) await storage.close();
      open.clear();
      await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
      dirs.length = 0;
    },
  };
}

describeStorageConformance(memoryFactory);
const level = levelFactory();
describeStorageConformance(level);
// Every snapshot of the suite then spans several chunks, some ending short.
describeStorageConformance(levelFactory(3));

// ------------------------------------------------------------------ LevelStorage only

/** Opens the database behind LevelStorage's back, to damage it the way a disk might. */
async function withRawDb(
  path: string,
  damage: (sublevels: Sublevels, db: Db) => Promise<void>,
): Promise<void> {
  const db: Db = new Level<Uint8Array, Uint8Array>(path, {
    keyEncoding: 'view',
    valueEncoding: 'view',
  });
  await db.open({ createIfMissing: false });
  try {
    await damage(openSublevels(db), db);
  } finally {
    await db.close();
  }
}

/** The log index a root-level range bound names: the `log` sublevel's prefix, then the key. */
function logIndexIn(bound: Uint8Array | undefined): number | undefined {
  if (bound === undefined) return undefined;
  const prefix = new TextEncoder().encode('!log!');
  if (!prefix.every((byte, i) => bound[i] === byte)) return undefined;
  return decodeIndexKey(bound.subarray(prefix.byteLength));
}

async function flipByte(
  sublevel: Sublevels['log'],
  key: Uint8Array,
  offsetFromEnd = 1,
): Promise<void> {
  const value = await sublevel.get(key);
  if (value === undefined) throw new Error('no value to damage');
  const damaged = new Uint8Array(value);
  const at = damaged.byteLength - offsetFromEnd;
  damaged[at] = (damaged[at] ?? 0) ^ 0x01;
  await sublevel.put(key, damaged);
}

describe('LevelStorage', () => {
  let path: string;

  beforeEach(async () => {
    path = join(await level.tempDir(), 'n1');
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    await level.cleanup?.();
  });

  /** A closed database at `path` with entries 2..6 (terms 1,1,2,2,2) and a hard state. */
  async function stored(): Promise<void> {
    const storage = await LevelStorage.open(path, { bootstrap: config });
    await storage.persist({
      entries: [1, 1, 2, 2, 2].map((t, i) => entry(i + 2, t)),
      hardState: hardState(2, a, 4),
    });
    await storage.close();
  }

  describe('bootstrap', () => {
    it('is ignored by a database that holds state: what is stored wins', async () => {
      await stored();
      const other: ClusterConfig = { voters: [b], learners: [] };

      for (const bootstrap of [other, 'join'] as const) {
        const storage = await LevelStorage.open(path, { bootstrap });
        expect(storage.initialState().config).toEqual(config);
        expect(storage.lastIndex()).toBe(6);
        await storage.close();
      }
    });

    it('an identity given to a database that holds one is ignored: what is stored wins', async () => {
      const first = await LevelStorage.open(path, {
        bootstrap: config,
        identity: { clusterId: 'c-1', nodeId: a },
      });
      await first.close();

      const again = await LevelStorage.open(path, {
        bootstrap: config,
        identity: { clusterId: 'c-2', nodeId: b },
      });
      expect(again.identity).toEqual({ clusterId: 'c-1', nodeId: a });
      await again.close();
    });

    it('is required for an empty database, and nothing is created without it', async () => {
      await expect(LevelStorage.open(path)).rejects.toThrow(
        `storage: cannot open ${path}: Invalid argument: ${path}: does not exist`,
      );
      await expect(withRawDb(path, async () => {})).rejects.toThrow();
    });
  });

  it('refuses a second open of the same directory while the first holds it', async () => {
    const first = await LevelStorage.open(path, { bootstrap: config });

    await expect(LevelStorage.open(path)).rejects.toThrow(
      `storage: cannot open ${path}: IO error: lock`,
    );
    await first.close();
  });

  describe('corruption is refused at open, naming the path, the sublevel and the key', () => {
    it('a flipped byte in a log value', async () => {
      await stored();
      await withRawDb(path, (s) => flipByte(s.log, encodeIndexKey(idx(4))));

      const opening = LevelStorage.open(path);

      await expect(opening).rejects.toThrow(StorageCorruptionError);
      await expect(opening).rejects.toThrow(
        `storage corrupt: ${path} log index 4: checksum mismatch`,
      );
      await expect(opening).rejects.toMatchObject({ path, sublevel: 'log', where: 'index 4' });
    });

    it('a flipped byte in the checksum itself', async () => {
      await stored();
      await withRawDb(path, async (s) => {
        const key = encodeIndexKey(idx(2));
        const value = await s.log.get(key);
        if (value === undefined) throw new Error('missing');
        await flipByte(s.log, key, value.byteLength);
      });

      await expect(LevelStorage.open(path)).rejects.toThrow(
        `${path} log index 2: checksum mismatch`,
      );
    });

    it('a valid value stored under the wrong index', async () => {
      await stored();
      await withRawDb(path, (s) => s.log.put(encodeIndexKey(idx(4)), encodeEntry(entry(3, 1))));

      await expect(LevelStorage.open(path)).rejects.toThrow(
        `${path} log index 4: value holds index 3`,
      );
    });

    it('a missing entry in the middle of the log', async () => {
      await stored();
      await withRawDb(path, (s) => s.log.del(encodeIndexKey(idx(4))));

      await expect(LevelStorage.open(path)).rejects.toThrow(
        `${path} log index 5: gap: expected index 4`,
      );
    });

    it('a log whose terms go down', async () => {
      await stored();
      await withRawDb(path, (s) => s.log.put(encodeIndexKey(idx(6)), encodeEntry(entry(6, 1))));

      await expect(LevelStorage.open(path)).rejects.toThrow(
        `${path} log index 6: term 1 is below the previous term 2`,
      );
    });

    it('a damaged hard state', async () => {
      await stored();
      await withRawDb(path, (s) => flipByte(s.meta, META_KEY.hardState));

      await expect(LevelStorage.open(path)).rejects.toThrow(
        `${path} meta key hardState: checksum mismatch`,
      );
    });

    it('a damaged snapshot', async () => {
      await stored();
      await withRawDb(path, (s) => flipByte(s.snapshot, SNAPSHOT_MANIFEST_KEY));

      await expect(LevelStorage.open(path)).rejects.toThrow(
        `${path} snapshot key manifest: checksum mismatch`,
      );
    });

    it('damaged member addresses', async () => {
      await stored();
      const storage = await LevelStorage.open(path);
      await storage.saveAddresses([{ id: a, peerAddress: '127.0.0.1:7001', clientAddress: '' }]);
      await storage.close();
      await withRawDb(path, (s) => flipByte(s.meta, META_KEY.addresses));

      const opening = LevelStorage.open(path);

      await expect(opening).rejects.toThrow(StorageCorruptionError);
      await expect(opening).rejects.toThrow(`${path} meta key addresses: checksum mismatch`);
      await expect(opening).rejects.toMatchObject({ sublevel: 'meta', where: 'key addresses' });
    });

    it('a damaged identity', async () => {
      await stored();
      const storage = await LevelStorage.open(path);
      await storage.saveIdentity({ clusterId: 'c-1', nodeId: a });
      await storage.close();
      await withRawDb(path, (s) => flipByte(s.meta, META_KEY.identity));

      const opening = LevelStorage.open(path);

      await expect(opening).rejects.toThrow(`${path} meta key identity: checksum mismatch`);
      await expect(opening).rejects.toMatchObject({ sublevel: 'meta', where: 'key identity' });
    });

    it('an identity that does not decode as one', async () => {
      await stored();
      await withRawDb(path, (s) =>
        s.meta.put(META_KEY.identity, encodeCompactionPoint({ index: idx(1), term: tm(1) })),
      );

      await expect(LevelStorage.open(path)).rejects.toThrow(`${path} meta key identity: `);
    });

    it('a missing hard state', async () => {
      await stored();
      await withRawDb(path, (s) => s.meta.del(META_KEY.hardState));

      await expect(LevelStorage.open(path)).rejects.toThrow(`${path} meta key hardState: missing`);
    });

    it('a database with data but no snapshot is corrupt, not new', async () => {
      await stored();
      await withRawDb(path, (s) => s.snapshot.del(SNAPSHOT_MANIFEST_KEY));

      await expect(LevelStorage.open(path, { bootstrap: config })).rejects.toThrow(
        `${path} snapshot key manifest: missing`,
      );
    });

    it('a refused open releases the database', async () => {
      await stored();
      await withRawDb(path, (s) => flipByte(s.log, encodeIndexKey(idx(4))));
      await expect(LevelStorage.open(path)).rejects.toThrow(StorageCorruptionError);

      // LevelDB's LOCK would make this fail if the refused open had left the handle open.
      await expect(withRawDb(path, async () => {})).resolves.toBeUndefined();
    });
  });

  describe('a compaction cut short', () => {
    it('entries left at or below the compaction point are dropped at open; the log starts after it', async () => {
      await stored();
      const storage = await LevelStorage.open(path);
      await storage.createSnapshot(idx(4), config, new Uint8Array([1, 2]));
      await storage.close();
      // What a crash between the compaction point's write and its clear leaves.
      await withRawDb(path, (s) =>
        s.meta.put(META_KEY.compaction, encodeCompactionPoint({ index: idx(4), term: tm(2) })),
      );

      const reopened = await LevelStorage.open(path);
      expect([reopened.firstIndex(), reopened.lastIndex()]).toEqual([5, 6]);
      expect(reopened.entries(idx(5), idx(7), Infinity).map((e) => e.index)).toEqual([5, 6]);
      await reopened.close();
      await withRawDb(path, async (s) => {
        const keys = await s.log.keys().all();
        expect(keys.map((key) => decodeIndexKey(key))).toEqual([5, 6]);
      });
    });

    it('a gap after the compaction point is still corruption', async () => {
      await stored();
      await withRawDb(path, async (s) => {
        await s.meta.put(
          META_KEY.compaction,
          encodeCompactionPoint({ index: idx(2), term: tm(1) }),
        );
        await s.log.del(encodeIndexKey(idx(3)));
      });

      await expect(LevelStorage.open(path)).rejects.toThrow(
        `${path} log index 4: the log should start at 3, after the compaction point 2`,
      );
    });
  });

  describe('writes', () => {
    it('a persist that the core says needs no sync (a commit index alone) is one batch without sync', async () => {
      const writes = spyOnNativeWrites();
      let storage = await LevelStorage.open(path, { bootstrap: config });
      await storage.persist({ entries: [entry(2, 2)], hardState: hardState(2, a, 1) });

      await storage.persist({ hardState: hardState(2, a, 2), mustSync: false });

      expect(writes.batch.mock.calls.at(-1)?.[1]).toMatchObject({ sync: false });
      await storage.close();
      storage = await LevelStorage.open(path);
      expect(storage.initialState().hardState).toEqual(hardState(2, a, 2));
      await storage.close();
    });

    it('entries and snapshots are always synced, whatever the batch says', async () => {
      const storage = await LevelStorage.open(path, { bootstrap: config });

      await expect(storage.persist({ entries: [entry(2, 2)], mustSync: false })).rejects.toThrow(
        AssertionError,
      );
      expect(storage.lastIndex()).toBe(1);
      await storage.close();
    });

    it('every write is one batch with sync: true, and nothing is written any other way', async () => {
      const writes = spyOnNativeWrites();

      const storage = await LevelStorage.open(path, {
        bootstrap: config,
        identity: { clusterId: '', nodeId: a },
      });
      await storage.persist({
        entries: [1, 1, 2, 2].map((t, i) => entry(i + 2, t)),
        hardState: hardState(2, a, 3),
      });
      await storage.persist({ entries: [entry(4, 3)], hardState: hardState(3, b, 3) });
      await storage.createSnapshot(idx(3), config, new Uint8Array([1]));
      await storage.compact(idx(3));
      await storage.persist({
        snapshot: { metadata: { index: idx(9), term: tm(3), config }, data: new Uint8Array(0) },
      });
      await storage.saveAddresses([{ id: a, peerAddress: '127.0.0.1:7001', clientAddress: '' }]);
      await storage.saveIdentity({ clusterId: 'c-1', nodeId: a });
      await storage.close();

      // bootstrap (identity included), three persists, createSnapshot (its one chunk,
      // then its manifest), compact (its new compaction point), saveAddresses,
      // saveIdentity: nine synced batches. And a tenth, unsynced, after the install: the
      // deletion of the chunk of the snapshot it replaced (a crash before it leaves an
      // unnamed chunk, which the next open drops).
      expect(writes.batch).toHaveBeenCalledTimes(10);
      const synced = writes.batch.mock.calls.filter(
        ([, options]) => (options as { sync?: boolean }).sync === true,
      );
      expect(synced).toHaveLength(9);
      const unsynced = writes.batch.mock.calls.find(
        ([, options]) => (options as { sync?: boolean }).sync !== true,
      );
      expect(unsynced?.[0]).toEqual([expect.objectContaining({ type: 'del' })]);
      expect(writes.opTypes(5)).toEqual(['put']);
      expect(writes.put).not.toHaveBeenCalled();
      expect(writes.del).not.toHaveBeenCalled();
      // Two range clears, each once the compaction point that covers it was stored: the
      // log entries the compaction dropped, (1, 3], after batch 5; and those the leader's
      // snapshot replaced, (3, 9], after the install's batch 6.
      expect(writes.clear).toHaveBeenCalledTimes(2);
      const ranges = writes.clear.mock.calls.map(([range]) => range as Record<string, Uint8Array>);
      for (const range of ranges) {
        expect(Object.keys(range).filter((bound) => /^[gl]te?$/.test(bound))).toEqual([
          'gt',
          'lte',
        ]);
      }
      expect(ranges.map((range) => [logIndexIn(range.gt), logIndexIn(range.lte)])).toEqual([
        [1, 3],
        [3, 9],
      ]);
      for (const [clear, batch] of [
        [0, 5],
        [1, 6],
      ] as const) {
        expect(writes.clear.mock.invocationCallOrder[clear]).toBeGreaterThan(
          writes.batch.mock.invocationCallOrder[batch] ?? Number.POSITIVE_INFINITY,
        );
      }
    });

    it("installing the leader's snapshot over a long log leaves no entry behind it on disk", async () => {
      const storage = await LevelStorage.open(path, { bootstrap: config });
      const longLog = Array.from({ length: 5_000 }, (_, i) => entry(i + 2, 1));
      await storage.persist({ entries: longLog, hardState: hardState(1, a, 100) });

      const writes = spyOnNativeWrites();
      await storage.persist({
        snapshot: { metadata: { index: idx(9_000), term: tm(2), config }, data: new Uint8Array(0) },
        entries: [entry(9_001, 2)],
      });

      // The install's batch holds no delete per stale entry (at most the old snapshot's
      // chunks'); the range clear took them.
      const installOps = writes.opTypes(writes.batch.mock.calls.length - 1);
      expect(installOps.filter((type) => type === 'del').length).toBeLessThan(10);
      expect([storage.firstIndex(), storage.lastIndex()]).toEqual([9_001, 9_001]);
      await storage.close();
      await withRawDb(path, async (s) => {
        const keys = await s.log.keys().all();
        expect(keys.map((key) => decodeIndexKey(key))).toEqual([9_001]);
      });
    });

    it('a large value goes the same way, synced, and reads back whole', async () => {
      const writes = spyOnNativeWrites();
      const storage = await LevelStorage.open(path, { bootstrap: config });
      const big = new Uint8Array(64 * 1024).fill(7);
      await storage.createSnapshot(idx(1), config, big);
      await storage.close();

      // Bootstrap, the chunk, the manifest.
      expect(writes.batch).toHaveBeenCalledTimes(3);
      expect(writes.batch.mock.calls[1]?.[1]).toMatchObject({ sync: true });
      const reopened = await LevelStorage.open(path);
      expect(reopened.snapshot().data).toEqual(big);
      await reopened.close();
    });

    it('a persist that truncates deletes exactly the stale keys, in the same batch as the new ones', async () => {
      await stored();
      const writes = spyOnNativeWrites();
      const storage = await LevelStorage.open(path);

      await storage.persist({ entries: [entry(3, 3)], hardState: hardState(3, null, 2) });
      await storage.close();

      expect(writes.batch).toHaveBeenCalledTimes(1);
      // del 4, 5, 6; put 3; put hard state.
      expect(writes.opTypes(0)).toEqual(['del', 'del', 'del', 'put', 'put']);
    });

    it('a failed write leaves the state as it was, and later writes are refused', async () => {
      await stored();
      const storage = await LevelStorage.open(path);
      const before = readAll(storage);
      spyOnNativeWrites().batch.mockRejectedValueOnce(new Error('EIO'));

      await expect(storage.persist({ entries: [entry(7, 2)] })).rejects.toThrow('EIO');

      expect(readAll(storage)).toEqual(before);
      await expect(storage.persist({ entries: [entry(7, 2)] })).rejects.toThrow(
        /refusing to write after a failed write/,
      );
      await storage.close();
      const reopened = await LevelStorage.open(path);
      expect(readAll(reopened)).toEqual(before);
      await reopened.close();
    });

    it('a failed address save keeps the addresses as they were, and every later write is refused', async () => {
      // LevelDB may drop, at the next open, the writes it takes after a failed one
      // (test/storage/disk-full.test.ts), so an address save that fails is no exception.
      await stored();
      const storage = await LevelStorage.open(path);
      const old = [{ id: a, peerAddress: '127.0.0.1:7001', clientAddress: '' }];
      await storage.saveAddresses(old);
      spyOnNativeWrites().batch.mockRejectedValueOnce(new Error('EIO'));

      await expect(storage.saveAddresses([])).rejects.toThrow('EIO');

      expect(storage.savedAddresses).toEqual(old);
      const refused = /refusing to write after a failed write/;
      await expect(storage.persist({ entries: [entry(7, 2)] })).rejects.toThrow(refused);
      await expect(storage.saveAddresses(old)).rejects.toThrow(refused);
      await expect(storage.saveIdentity({ clusterId: 'c', nodeId: a })).rejects.toThrow(refused);
      await storage.close();
      const reopened = await LevelStorage.open(path);
      expect(reopened.lastIndex()).toBe(6);
      expect(reopened.savedAddresses).toEqual(old);
      await reopened.close();
    });

    it('a save issued while a Raft write is in flight waits for it (writes take turns, see storage-order.test.ts)', async () => {
      await stored();
      const storage = await LevelStorage.open(path);
      const writes = spyOnNativeWrites();
      let landRaftWrite: () => void = () => {};
      writes.batch.mockImplementationOnce(
        () =>
          new Promise<void>((resolve) => {
            landRaftWrite = resolve;
          }),
      );
      writes.batch.mockRejectedValueOnce(new Error('ENOSPC'));

      const persisting = storage.persist({ entries: [entry(7, 2)] });
      const saving = storage.saveAddresses([]);
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(writes.batch).toHaveBeenCalledTimes(1);
      landRaftWrite();
      await persisting;
      await expect(saving).rejects.toThrow('ENOSPC');
      await expect(storage.persist({ entries: [entry(8, 2)] })).rejects.toThrow(
        /refusing to write after a failed write/,
      );
      expect(storage.lastIndex()).toBe(7);
      await storage.close();
    });

    it('after a failed Raft write, address saves are refused too', async () => {
      await stored();
      const storage = await LevelStorage.open(path);
      spyOnNativeWrites().batch.mockRejectedValueOnce(new Error('EIO'));
      await expect(storage.persist({ entries: [entry(7, 2)] })).rejects.toThrow('EIO');

      await expect(storage.saveAddresses([])).rejects.toThrow(
        /refusing to write after a failed write/,
      );
      await storage.close();
    });

    it('refuses overlapping writes, and writes after close', async () => {
      await stored();
      const storage: WritableStorage = await LevelStorage.open(path);

      const first = storage.persist({ entries: [entry(7, 2)] });
      const second = storage.persist({ entries: [entry(8, 2)] });

      await expect(second).rejects.toThrow(AssertionError);
      await first;
      expect(storage.lastIndex()).toBe(7);
      await storage.close();
      await expect(storage.persist({ hardState: hardState(3, null, 2) })).rejects.toThrow(
        AssertionError,
      );
      await expect(storage.saveAddresses([])).rejects.toThrow(AssertionError);
    });

    it('the mirror changes only once the write is durable', async () => {
      await stored();
      const storage = await LevelStorage.open(path);

      const writing = storage.persist({ entries: [entry(7, 2)] });

      expect(storage.lastIndex()).toBe(6);
      await writing;
      expect(storage.lastIndex()).toBe(7);
      await storage.close();
    });
  });

  /**
   * A snapshot takes a while to encode and write, and the node's log writes do not wait
   * for it (src/node/snapshotter.ts): createSnapshot may run beside persist.
   */
  describe('a snapshot written beside the log writes', () => {
    const text = (value: string): Uint8Array => new TextEncoder().encode(value);

    it('is stored with the write beside it, both durable', async () => {
      await stored();
      let storage = await LevelStorage.open(path);

      const append = storage.persist({ entries: [entry(7, 2)], hardState: hardState(2, a, 5) });
      const snapshot = storage.createSnapshot(idx(5), config, text('sm@5'));
      await Promise.all([append, snapshot]);

      expect((await snapshot)?.metadata.index).toBe(5);
      await storage.close();
      storage = await LevelStorage.open(path);
      expect(storage.snapshot().metadata.index).toBe(5);
      expect(storage.snapshot().data).toEqual(text('sm@5'));
      expect(storage.lastIndex()).toBe(7);
      await storage.close();
    });

    it("stores nothing when the leader's newer snapshot is on its way to disk", async () => {
      await stored();
      let storage = await LevelStorage.open(path);
      const fromLeader = {
        metadata: { index: idx(9), term: tm(3), config },
        data: text('leader@9'),
      };

      const install = storage.persist({ snapshot: fromLeader, hardState: hardState(3, null, 9) });
      // Encoded from the state at 5 while the install was on its way: it covers less.
      const local = storage.createSnapshot(idx(5), config, text('local@5'));

      expect(await local).toBeNull();
      await install;
      await storage.close();
      storage = await LevelStorage.open(path);
      expect(storage.snapshot()).toEqual(fromLeader);
      expect(storage.firstIndex()).toBe(10);
      await storage.close();
    });

    it("stores nothing when the leader's snapshot came while it was being encoded", async () => {
      await stored();
      let storage = await LevelStorage.open(path);
      const fromLeader = {
        metadata: { index: idx(9), term: tm(3), config },
        data: text('leader@9'),
      };

      // Encoding yields to the event loop before anything is written.
      const local = storage.createSnapshot(idx(5), config, text('local@5'));
      const install = storage.persist({ snapshot: fromLeader, hardState: hardState(3, null, 9) });

      await install;
      expect(await local).toBeNull();
      await storage.close();
      storage = await LevelStorage.open(path);
      expect(storage.snapshot()).toEqual(fromLeader);
      await storage.close();
    });
  });
});
