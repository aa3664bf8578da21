/**
 * Review of c0b9ff1 (compaction = a synced compaction point, then an unsynced native
 * range clear in the write queue; open drops log keys at or below the stored point).
 *
 * A crash sweep over real LevelDB: a script of appends, several compaction steps (some
 * while a local snapshot's chunks are being written beside them), a leader's snapshot
 * installed right after a compaction, and a last compaction. It is cut at every native
 * write (a batch or a range clear), before it or after it; a range
 * clear may also be cut half way, keeping either the low half of its deletions (what a
 * process kill between two of the clear's internal batches leaves) or the high half
 * only (what a power loss could leave of unsynced records: the page holding the first
 * ones lost, a later one kept). Reopened (twice), the store must open, keep every
 * acknowledged entry, snapshot and compaction, start its log right after its stored
 * compaction point, and hold no log key at or below it. HELD (passes on c0b9ff1).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ClusterConfig, Entry, HardState } from '../../src/raft/types.ts';
import { decodeCompactionPoint } from '../../src/storage/codec.ts';
import { decodeIndexKey } from '../../src/storage/keys.ts';
import { META_KEY } from '../../src/storage/level-layout.ts';
import { LevelStorage } from '../../src/storage/level-storage.ts';
import { logIndex as idx, term as tm } from '../../src/util/ids.ts';
import { entry, hardState, ids } from '../raft/harness.ts';
import { interceptWritesByKind, withRawDb } from '../support/level-writes.ts';

const [a, b, c] = ids('a', 'b', 'c');
const config: ClusterConfig = { voters: [a, b, c], learners: [] };
const CHUNK_BYTES = 8;

function data(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (seed * 31 + i * 7) & 0xff);
}
const SNAPSHOT_DATA = new Map<number, Uint8Array>([
  [1, new Uint8Array(0)],
  [30, data(40, 1)],
  [35, data(33, 2)],
  [60, data(27, 3)],
  [62, data(19, 4)],
]);

type Cut = 'before' | 'after' | 'lowHalf' | 'highHalf';

interface Acked {
  entries: Map<number, Entry>;
  hardState: HardState;
  snapshot: number;
  compacted: number;
}

describe('rcc: a crash at, or inside, every write of the two-step compaction', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dlm-rcc-'));
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await rm(dir, { recursive: true, force: true });
  });

  it("the open's clear drops log keys at or below the point and nothing else", async () => {
    const path = join(dir, 'bounds');
    const storage = await LevelStorage.open(path, {
      bootstrap: config,
      snapshotChunkBytes: 4,
      snapshotInstallChunkBytes: 4,
    });
    await storage.persist({
      entries: Array.from({ length: 30 }, (_, i) => entry(i + 2, 1)),
      hardState: hardState(1, a, 31),
    });
    await storage.createSnapshot(idx(20), config, data(17, 9));
    await storage.saveAddresses([{ id: b, peerAddress: 'x:1', clientAddress: 'x:2' }]);
    await storage.saveIdentity({ clusterId: 'k', nodeId: a });
    // A crash between the point's write and its clear.
    interceptWritesByKind(async (_write, kind, run) => {
      if (kind === 'clear') throw new Error('the process died');
      return run();
    });
    await expect(storage.compact(idx(15))).rejects.toThrow('the process died');
    vi.restoreAllMocks();
    await storage.close();
    const everything = () =>
      withRawDb(path, async (_s, db) =>
        (await db.iterator().all()).map(([k, v]) => [Buffer.from(k).toString('hex'), v] as const),
      );
    const before = await everything();
    const logPrefix = Buffer.from('!log!').toString('hex');
    const dropped = before.filter(([k]) => {
      if (!k.startsWith(logPrefix)) return false;
      return (decodeIndexKey(Buffer.from(k.slice(logPrefix.length), 'hex')) ?? 0) <= 15;
    });
    expect(dropped.length).toBe(14); // 2..15

    const reopened = await LevelStorage.open(path);
    expect([reopened.firstIndex(), reopened.lastIndex()]).toEqual([16, 31]);
    expect(reopened.savedAddresses.length).toBe(1);
    expect(reopened.identity?.clusterId).toBe('k');
    await reopened.close();
    const after = await everything();
    const keysOf = (rows: readonly (readonly [string, Uint8Array])[]) => rows.map(([k]) => k);
    expect(keysOf(after)).toEqual(keysOf(before).filter((k) => !keysOf(dropped).includes(k)));
  });

  async function script(storage: LevelStorage, acked: Acked): Promise<void> {
    const persist = async (
      entries: Entry[],
      hs: HardState,
      snapshot?: { index: number; term: number },
    ) => {
      await storage.persist({
        entries,
        hardState: hs,
        ...(snapshot === undefined
          ? {}
          : {
              snapshot: {
                metadata: { index: idx(snapshot.index), term: tm(snapshot.term), config },
                data: SNAPSHOT_DATA.get(snapshot.index) as Uint8Array,
              },
            }),
      });
      if (snapshot !== undefined) {
        for (const i of [...acked.entries.keys()]) if (i <= snapshot.index) acked.entries.delete(i);
        acked.snapshot = snapshot.index;
        acked.compacted = snapshot.index;
      }
      for (const e of entries) acked.entries.set(e.index, e);
      acked.hardState = hs;
    };
    const compact = async (index: number) => {
      await storage.compact(idx(index));
      acked.compacted = Math.max(acked.compacted, index);
    };
    const snapshot = async (index: number) => {
      const stored = await storage.createSnapshot(
        idx(index),
        config,
        SNAPSHOT_DATA.get(index) as Uint8Array,
      );
      if (stored !== null) acked.snapshot = Math.max(acked.snapshot, index);
    };

    await persist(
      Array.from({ length: 39 }, (_, i) => entry(i + 2, 1)),
      hardState(1, a, 40),
    );
    await snapshot(30);
    // Compactions while the next snapshot's chunks are written beside them.
    const local = snapshot(35);
    local.catch(() => {}); // awaited below, unless a compaction fails first
    await compact(12);
    await compact(25);
    await local;
    await persist(
      [41, 42, 43].map((i) => entry(i, 1)),
      hardState(1, a, 43),
    );
    await compact(33);
    // The leader's snapshot right after a compaction step.
    await persist(
      [61, 62, 63].map((i) => entry(i, 2)),
      hardState(2, null, 63),
      {
        index: 60,
        term: 2,
      },
    );
    await snapshot(62);
    await compact(61);
    await persist([entry(64, 2)], hardState(2, null, 64));
    await compact(62);
  }

  async function countWrites(): Promise<{ writes: number; clears: number[] }> {
    const path = join(dir, 'count');
    await (await LevelStorage.open(path, { bootstrap: config })).close();
    const storage = await LevelStorage.open(path, {
      snapshotChunkBytes: CHUNK_BYTES,
      snapshotInstallChunkBytes: CHUNK_BYTES,
    });
    let writes = 0;
    const clears: number[] = [];
    interceptWritesByKind((write, kind, run) => {
      writes = write;
      if (kind === 'clear') clears.push(write);
      return run();
    });
    await script(storage, {
      entries: new Map(),
      hardState: hardState(0, null, 0),
      snapshot: 1,
      compacted: 1,
    });
    vi.restoreAllMocks();
    await storage.close();
    return { writes, clears };
  }

  it('every cut leaves a store that opens with every acknowledged write and a clean log start', async () => {
    const { writes, clears } = await countWrites();
    // Five compactions, and the leader's snapshot's install (its entries behind it).
    expect(clears.length).toBe(6);
    let leftBehind = 0;
    for (let k = 1; k <= writes; k++) {
      const cuts: Cut[] = clears.includes(k)
        ? ['before', 'after', 'lowHalf', 'highHalf']
        : ['before', 'after'];
      for (const cut of cuts) {
        const label = `cut ${cut} write ${k} of ${writes}`;
        const path = join(dir, `run-${k}-${cut}`);
        const boot = await LevelStorage.open(path, { bootstrap: config });
        await boot.close();
        const storage = await LevelStorage.open(path, {
          snapshotChunkBytes: CHUNK_BYTES,
          snapshotInstallChunkBytes: CHUNK_BYTES,
        });
        let dead = false;
        interceptWritesByKind(async (write, kind, run) => {
          if (dead) throw new Error('the process died');
          if (write !== k) return run();
          dead = true;
          if (cut === 'before') throw new Error('the process died');
          if (cut === 'after' || kind !== 'clear') return run();
          // Half of the clear's range, by key count: the low keys, or the high ones.
          await run({ limit: 3, reverse: cut === 'highHalf' });
          throw new Error('the process died');
        });
        const acked: Acked = {
          entries: new Map(),
          hardState: hardState(0, null, 0),
          snapshot: 1,
          compacted: 1,
        };
        await script(storage, acked).catch(() => {});
        await new Promise((resolve) => setTimeout(resolve, 20));
        vi.restoreAllMocks();
        await storage.close().catch(() => {});
        // Log keys at or below the stored point, which the open must drop.
        leftBehind += await withRawDb(path, async (s) => {
          const point = decodeCompactionPoint(
            (await s.meta.get(META_KEY.compaction)) as Uint8Array,
          );
          const keys = (await s.log.keys().all()).map((key) => decodeIndexKey(key) ?? -1);
          return keys.some((key) => key <= point.index) ? 1 : 0;
        });

        for (const round of [1, 2]) {
          const reopened = await LevelStorage.open(path, {
            snapshotChunkBytes: CHUNK_BYTES,
            snapshotInstallChunkBytes: CHUNK_BYTES,
          });
          const at = `${label} (open ${round})`;
          const snap = reopened.snapshot();
          expect(snap.metadata.index, at).toBeGreaterThanOrEqual(acked.snapshot);
          expect(Buffer.from(snap.data).toString('hex'), at).toBe(
            Buffer.from(SNAPSHOT_DATA.get(snap.metadata.index) ?? [0xee]).toString('hex'),
          );
          const first = reopened.firstIndex();
          expect(first - 1, at).toBeGreaterThanOrEqual(acked.compacted);
          for (const [i, e] of acked.entries) {
            if (i < first) continue;
            expect(
              reopened.entries(idx(i), idx(i + 1), Number.MAX_SAFE_INTEGER),
              `${at}: ${i}`,
            ).toEqual([e]);
          }
          const hs = reopened.initialState().hardState;
          expect(hs.term, at).toBeGreaterThanOrEqual(acked.hardState.term);
          expect(hs.commitIndex, at).toBeGreaterThanOrEqual(acked.hardState.commitIndex);
          await reopened.close();
          const raw = await withRawDb(path, async (s) => ({
            point: decodeCompactionPoint((await s.meta.get(META_KEY.compaction)) as Uint8Array),
            keys: (await s.log.keys().all()).map((key) => decodeIndexKey(key) ?? -1),
          }));
          expect(raw.point.index, at).toBe(first - 1);
          expect(raw.keys[0] ?? first, at).toBe(first);
          expect(
            raw.keys.every((key, i) => key === first + i),
            at,
          ).toBe(true);
        }
      }
    }
    // The sweep did reach the state the change is about: entries behind the point.
    expect(leftBehind).toBeGreaterThan(5);
  }, 240_000);
});
