/**
 * Review of mem12 (merge 294c14c), storage side: snapshots stored as chunks under a
 * manifest. A crash sweep over real LevelDB: a scripted run (a database of the previous
 * release's layout, its first conversion by a local snapshot, log writes, a leader's
 * snapshot installed WHILE a local snapshot is being written, another local snapshot,
 * compaction) is cut at every write, either just before it reaches LevelDB or just after
 * it (then every later write fails, as the process dies). Reopened, the store must
 * open, hold a snapshot whose data is exactly the data written for its index (never a
 * mix), hold every entry and hard state that was acknowledged, and hold nothing of a
 * snapshot that was overtaken. HELD (passes on main).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ClusterConfig, Entry, HardState } from '../../src/raft/types.ts';
import { decodeChunkKey } from '../../src/storage/keys.ts';
import {
  putCompactionPoint,
  putEntry,
  putHardState,
  putSnapshot,
  SNAPSHOT_KEY,
} from '../../src/storage/level-layout.ts';
import { LevelStorage } from '../../src/storage/level-storage.ts';
import { logIndex as idx, term as tm } from '../../src/util/ids.ts';
import { entry, hardState, ids } from '../raft/harness.ts';
import { crashAtWrite, interceptWrites, withRawDb } from '../support/level-writes.ts';

const [a, b, c] = ids('a', 'b', 'c');
const config: ClusterConfig = { voters: [a, b, c], learners: [] };
const CHUNK_BYTES = 8;

function data(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (seed * 31 + i * 7) & 0xff);
}

/** The data each snapshot index was written with in the script below. */
const SNAPSHOT_DATA = new Map<number, Uint8Array>([
  [5, data(50, 1)],
  [8, data(30, 2)],
  [12, data(41, 3)], // overtaken by the leader's at 20: must never be stored
  [20, data(37, 4)],
  [23, data(17, 5)],
]);

interface Acked {
  entries: Map<number, Entry>;
  hardState: HardState | null;
  snapshots: number[];
}

describe('rev-mem: a crash at every write of chunked snapshots', () => {
  let dir: string;
  const opened: LevelStorage[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dlm-rev-mem-'));
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    for (const s of opened.splice(0)) await s.close().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });

  async function oldDatabase(path: string): Promise<void> {
    // The previous release's layout: the snapshot in one value under "latest".
    await withRawDb(path, (s, db) =>
      db.batch(
        [
          putSnapshot(s, {
            metadata: { index: idx(5), term: tm(1), config },
            data: SNAPSHOT_DATA.get(5) as Uint8Array,
          }),
          putCompactionPoint(s, { index: idx(5), term: tm(1) }),
          putHardState(s, hardState(2, a, 5)),
          ...[6, 7, 8, 9, 10, 11, 12].map((i) => putEntry(s, entry(i, i < 9 ? 1 : 2))),
        ],
        { sync: true },
      ),
    );
  }

  /** The script; records what was acknowledged. Throws at the simulated crash. */
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
        acked.snapshots.push(snapshot.index);
      }
      for (const e of entries) acked.entries.set(e.index, e);
      for (const i of [...acked.entries.keys()]) {
        if (entries.length > 0 && i > (entries.at(-1)?.index ?? 0)) acked.entries.delete(i);
      }
      acked.hardState = hs;
    };
    // The first conversion from the old record.
    const first = await storage.createSnapshot(idx(8), config, SNAPSHOT_DATA.get(8) as Uint8Array);
    if (first !== null) acked.snapshots.push(8);
    await persist([entry(13, 2), entry(14, 2)], hardState(2, a, 14));
    // A local snapshot at 12 races a leader's snapshot at 20 (the leader's wins).
    const local = storage.createSnapshot(idx(12), config, SNAPSHOT_DATA.get(12) as Uint8Array);
    await Promise.resolve();
    const leaders = persist([], hardState(3, null, 20), { index: 20, term: 3 });
    const [localResult] = await Promise.all([local, leaders]);
    expect(localResult).toBeNull();
    await persist(
      [21, 22, 23, 24].map((i) => entry(i, 3)),
      hardState(3, null, 24),
    );
    const last = await storage.createSnapshot(idx(23), config, SNAPSHOT_DATA.get(23) as Uint8Array);
    if (last !== null) acked.snapshots.push(23);
    await storage.compact(idx(22));
    await persist([entry(25, 3)], hardState(3, null, 25));
  }

  async function countWrites(): Promise<number> {
    const path = join(dir, 'count');
    await oldDatabase(path);
    let calls = 0;
    interceptWrites((write, native) => {
      calls = write;
      return native();
    });
    const storage = await LevelStorage.open(path, {
      snapshotChunkBytes: CHUNK_BYTES,
      snapshotInstallChunkBytes: CHUNK_BYTES,
    });
    opened.push(storage);
    calls = 0;
    await script(storage, { entries: new Map(), hardState: null, snapshots: [] });
    vi.restoreAllMocks();
    return calls;
  }

  it('every crash point leaves an openable store: a whole snapshot, every acknowledged write', async () => {
    const writes = await countWrites();
    expect(writes).toBeGreaterThan(20);
    for (let k = 1; k <= writes; k++) {
      for (const applied of [false, true]) {
        const label = `crash ${applied ? 'after' : 'before'} write ${k} of ${writes}`;
        const path = join(dir, `run-${k}-${applied}`);
        await oldDatabase(path);
        const storage = await LevelStorage.open(path, {
          snapshotChunkBytes: CHUNK_BYTES,
          snapshotInstallChunkBytes: CHUNK_BYTES,
        });
        crashAtWrite(k, applied);
        const acked: Acked = { entries: new Map(), hardState: hardState(2, a, 5), snapshots: [5] };
        for (let i = 6; i <= 12; i++) acked.entries.set(i, entry(i, i < 9 ? 1 : 2));
        await script(storage, acked).catch(() => {});
        // Let writes still queued settle (they fail) before the store is closed.
        await new Promise((resolve) => setTimeout(resolve, 20));
        vi.restoreAllMocks();
        await storage.close().catch(() => {});

        const reopened = await LevelStorage.open(path, {
          snapshotChunkBytes: CHUNK_BYTES,
          snapshotInstallChunkBytes: CHUNK_BYTES,
        });
        const snap = reopened.snapshot();
        const index = snap.metadata.index;
        expect(index, label).not.toBe(12);
        expect(Buffer.from(snap.data).toString('hex'), label).toBe(
          Buffer.from(SNAPSHOT_DATA.get(index) ?? new Uint8Array([0xee])).toString('hex'),
        );
        expect(index, label).toBeGreaterThanOrEqual(Math.max(...acked.snapshots));
        for (const [i, e] of acked.entries) {
          if (i <= index) continue;
          expect(
            reopened.entries(idx(i), idx(i + 1), Number.MAX_SAFE_INTEGER),
            `${label}: entry ${i}`,
          ).toEqual([e]);
        }
        const hs = reopened.initialState().hardState;
        expect(hs.term, label).toBeGreaterThanOrEqual(acked.hardState?.term ?? 0);
        expect(hs.commitIndex, label).toBeGreaterThanOrEqual(acked.hardState?.commitIndex ?? 0);
        await reopened.close();
        // The second open finds nothing left over: only the manifest's chunks, and the
        // old record only while no manifest replaced it.
        const { gens, old } = await withRawDb(path, async (s) => {
          const found = new Set<number>();
          for await (const key of s.snapshotChunk.keys()) found.add(decodeChunkKey(key)?.[0] ?? -1);
          return { gens: found, old: await s.snapshot.get(SNAPSHOT_KEY) };
        });
        expect(gens.size, label).toBeLessThanOrEqual(1);
        expect(old === undefined, label).toBe(index !== 5);
      }
    }
  }, 120_000);
});
